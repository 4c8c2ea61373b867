/* conv1x1.h - 1x1 stride-1 unpadded convolutions as bf16 GEMMs with f32
 * accumulation (conv1x1_bf16.c; AVX-512 BF16 builds only): the pointwise
 * convs of a bf16 backend (proj_in/proj_out of SD 1.x transformers, resnet
 * shortcuts), planned and run by op_conv2d.c; the bf16 weight copy lives in
 * the weights cache (cpu_dnnl.c).
 */
#ifndef SDRT_CONV1X1_H
#define SDRT_CONV1X1_H

#include <stddef.h>
#include <stdint.h>

/* The weight w [Co][Ci] as bf16 pairs along Ci: up(Co, 6) x ceil(Ci/2) words. */
int64_t sd_conv1x1_bf16_weight_words(int64_t Co, int64_t Ci);
void sd_conv1x1_bf16_weights(const float *w, int64_t Co, int64_t Ci, uint32_t *a);

/* Pixels per work chunk for nthreads threads (the plan) and the per-thread
 * scratch (bytes) of a run with it. */
int64_t sd_conv1x1_bf16_chunk(int64_t N, int64_t Ci, int64_t P, int nthreads);
size_t sd_conv1x1_bf16_scratch(int64_t Ci, int64_t chunk);

/* y [N][Co][P] = a . x [N][Ci][P] + b (b may be NULL); scratch holds
 * nthreads x sd_conv1x1_bf16_scratch bytes, 64-byte aligned. */
void sd_conv1x1_bf16_run(int64_t N, int64_t Ci, int64_t P, int64_t Co, int64_t chunk, const float *x,
                         const uint32_t *a, const float *b, float *y, void *scratch, int nthreads);

#endif
