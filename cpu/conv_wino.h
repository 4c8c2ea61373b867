/* conv_wino.h - 3x3 stride-1 convolutions padded by 1 on every side, by
 * Winograd F(2x2,3x3) or F(4x4,3x3) with bf16 GEMMs and f32 accumulation
 * (conv_wino_bf16.c; AVX-512 BF16 builds only). op_conv2d.c plans and runs
 * it as the SD_CONV_WINO algorithm of a bf16 backend; the transformed
 * weights live in the weights cache (cpu_dnnl.c) like a reordered copy.
 */
#ifndef SDRT_CONV_WINO_H
#define SDRT_CONV_WINO_H

#include <stddef.h>
#include <stdint.h>

struct sd_wino_shape {
    int64_t N, Ci, H, W, Co; /* x [N,Ci,H,W] -> y [N,Co,H,W] */
    int m;                   /* output tile: 2 = F(2x2,3x3), 4 = F(4x4,3x3) */
};

/* The transformed weights U = G g G^T of w [Co][Ci][3][3] for tile m, as
 * bf16 pairs along Ci: (m+2)^2 x up(Co, 6) x ceil(Ci/2) 32-bit words. */
int64_t sd_wino_bf16_weight_words(int64_t Co, int64_t Ci, int m);
void sd_wino_bf16_weights(const float *w, int64_t Co, int64_t Ci, int m, uint32_t *u);

/* Tile rows per work chunk for nthreads threads (the plan), and the
 * per-thread scratch (bytes) a run with that chunk needs. */
int64_t sd_wino_bf16_chunk_rows(const struct sd_wino_shape *s, int nthreads);
size_t sd_wino_bf16_scratch(const struct sd_wino_shape *s, int64_t chunk_rows);

/* y = conv3x3(x, w) + b (b may be NULL) with u from sd_wino_bf16_weights;
 * scratch holds nthreads x sd_wino_bf16_scratch bytes, 64-byte aligned. */
void sd_wino_bf16_run(const struct sd_wino_shape *s, int64_t chunk_rows, const float *x, const uint32_t *u,
                      const float *b, float *y, void *scratch, int nthreads);

#endif
