/* conv1x1_bf16.c - 1x1 convolutions as bf16 GEMMs (contract in conv1x1.h).
 *
 * y[n] = A . x[n] + b with A = w [Co][Ci] in bf16 pairs along Ci (prepared
 * once) and x[n] [Ci][P] (NCHW: each channel's P pixels contiguous). Work
 * chunks are (image, run of `chunk` pixels); a thread packs its chunk of x
 * as B [Ci/2][chunk] bf16 pairs (channels ci, ci+1 interleaved: 16
 * consecutive words = 16 pixels), then for each block of 6 output channels
 * runs the micro-kernel of gemm_bf16.h into a small f32 tile and writes the
 * tile's rows (+ bias) to y. oneDNN's bf16 1x1 on plain NCHW (gemm:jit, the
 * algorithm this replaces) measured ~256 GFLOP/s over a full-size UNet
 * step's 46 such convs on a 2-core Zen 4; the micro-kernel runs at 400+.
 */
#include "conv1x1.h"
#include "cpu_math.h"

#include <omp.h>
#include <string.h>

#if SD_HAVE_AVX512_BF16
#include "gemm_bf16.h"

static int64_t up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

int64_t sd_conv1x1_bf16_weight_words(int64_t Co, int64_t Ci) { return up(Co, SD_GEMM_R) * ((Ci + 1) / 2); }

void sd_conv1x1_bf16_weights(const float *w, int64_t Co, int64_t Ci, uint32_t *a) {
    const int64_t Co6 = up(Co, SD_GEMM_R), Ci2 = (Ci + 1) / 2;
    #pragma omp parallel for schedule(static)
    for (int64_t co = 0; co < Co6; co++)
        for (int64_t c2 = 0; c2 < Ci2; c2++) {
            const float lo = co < Co ? w[co * Ci + 2 * c2] : 0.0f;
            const float hi = co < Co && 2 * c2 + 1 < Ci ? w[co * Ci + 2 * c2 + 1] : 0.0f;
            a[co * Ci2 + c2] = sd_bf16_bits(lo) | sd_bf16_bits(hi) << 16;
        }
}

int64_t sd_conv1x1_bf16_chunk(int64_t N, int64_t Ci, int64_t P, int nthreads) {
    /* About 256 KiB of packed x per chunk (it stays in L2 while every
     * output channel block reads it), 64..1024 pixels, and at least two
     * chunks per thread where the image allows. */
    const int64_t Ci2 = (Ci + 1) / 2, nth = nthreads < 1 ? 1 : nthreads;
    int64_t c = 65536 / Ci2 / 64 * 64;
    c = c < 64 ? 64 : c > 1024 ? 1024 : c;
    while (c > 64 && N * ((P + c - 1) / c) < 2 * nth) c -= 64;
    return c;
}

size_t sd_conv1x1_bf16_scratch(int64_t Ci, int64_t chunk) {
    /* packed x (Ci/2 x chunk words) + the f32 tile (6 x chunk) */
    return (size_t)(((Ci + 1) / 2) * chunk + SD_GEMM_R * chunk) * sizeof(float);
}

void sd_conv1x1_bf16_run(int64_t N, int64_t Ci, int64_t P, int64_t Co, int64_t chunk, const float *x,
                         const uint32_t *a, const float *b, float *y, void *scratch, int nthreads) {
    const int64_t Ci2 = (Ci + 1) / 2, per = (P + chunk - 1) / chunk, ntask = N * per;
    const size_t stride = sd_conv1x1_bf16_scratch(Ci, chunk) / sizeof(float);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t t = 0; t < ntask; t++) {
        const int64_t n = t / per, p0 = (t % per) * chunk, np = P - p0 < chunk ? P - p0 : chunk;
        const int64_t nv = (np + 15) / 16;
        uint32_t *B = (uint32_t *)scratch + stride * (size_t)omp_get_thread_num();
        float *C = (float *)(B + Ci2 * chunk);
        const float *xn = x + n * Ci * P + p0;
        for (int64_t c2 = 0; c2 < Ci2; c2++) {
            const float *x0 = xn + 2 * c2 * P, *x1 = x0 + P;
            const int has1 = 2 * c2 + 1 < Ci;
            for (int64_t j = 0; j < nv * 16; j += 16) {
                const __mmask16 k = np - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (np - j)) - 1);
                const __m256i lo = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, x0 + j));
                const __m256i hi = has1 ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, x1 + j))
                                        : _mm256_setzero_si256();
                _mm512_storeu_si512(B + c2 * chunk + j, sd_bf16_interleave(lo, hi));
            }
        }
        for (int64_t co = 0; co < Co; co += SD_GEMM_R) {
            sd_gemm_bf16_rows(a + co * Ci2, Ci2, Ci2, B, chunk, C, chunk, nv);
            for (int64_t r = 0; r < SD_GEMM_R && co + r < Co; r++) {
                const __m512 bias = _mm512_set1_ps(b ? b[co + r] : 0.0f);
                float *yr = y + (n * Co + co + r) * P + p0;
                for (int64_t j = 0; j < np; j += 16) {
                    const __mmask16 k = np - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (np - j)) - 1);
                    _mm512_mask_storeu_ps(yr + j, k, _mm512_add_ps(_mm512_loadu_ps(C + r * chunk + j), bias));
                }
            }
        }
    }
}

#else /* no AVX-512 BF16 in this build */

int64_t sd_conv1x1_bf16_weight_words(int64_t Co, int64_t Ci) { return (void)Co, (void)Ci, 0; }
void sd_conv1x1_bf16_weights(const float *w, int64_t Co, int64_t Ci, uint32_t *a) { (void)w, (void)Co, (void)Ci, (void)a; }
int64_t sd_conv1x1_bf16_chunk(int64_t N, int64_t Ci, int64_t P, int nthreads) {
    return (void)N, (void)Ci, (void)P, (void)nthreads, 64;
}
size_t sd_conv1x1_bf16_scratch(int64_t Ci, int64_t chunk) { return (void)Ci, (void)chunk, 0; }
void sd_conv1x1_bf16_run(int64_t N, int64_t Ci, int64_t P, int64_t Co, int64_t chunk, const float *x,
                         const uint32_t *a, const float *b, float *y, void *scratch, int nthreads) {
    (void)N, (void)Ci, (void)P, (void)Co, (void)chunk, (void)x, (void)a, (void)b, (void)y, (void)scratch, (void)nthreads;
}

#endif
