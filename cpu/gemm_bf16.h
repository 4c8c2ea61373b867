/* gemm_bf16.h - the bf16 GEMM micro-kernel of our own convolutions
 * (conv_wino_bf16.c, conv1x1_bf16.c): C[r][0..16*NJ) = sum_k A[r][k] . B[k][..]
 * for SD_GEMM_R rows, where A and B hold bf16 pairs along k (a 32-bit word
 * = elements 2k and 2k+1) and vdpbf16ps accumulates in f32. A (the weights)
 * is broadcast one word at a time, B (the activations, packed by the
 * caller so that 16 consecutive words are 16 output columns) is loaded in
 * up to 4 vectors: 24 accumulators, 4 loads and 6 broadcasts per k.
 * Included only by AVX-512 BF16 builds' kernels.
 */
#ifndef SDRT_GEMM_BF16_H
#define SDRT_GEMM_BF16_H

#include <immintrin.h>
#include <stdint.h>

#define SD_GEMM_R 6 /* rows (output channels) per micro-tile */

/* C[r][16v + i] = sum_{k < K} A[r*lda + k] . B[k*ldb + 16v + i], r < SD_GEMM_R, v < NJ <= 4. */
static inline __attribute__((always_inline)) void sd_gemm_bf16_tile(const uint32_t *a, int64_t lda, int64_t K,
                                                                    const uint32_t *b, int64_t ldb, float *c,
                                                                    int64_t ldc, const int NJ) {
    __m512 acc[SD_GEMM_R][4];
    for (int r = 0; r < SD_GEMM_R; r++)
        for (int v = 0; v < NJ; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512bh bv[4];
        for (int v = 0; v < NJ; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + k * ldb + 16 * v);
        for (int r = 0; r < SD_GEMM_R; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r * lda + k]);
            for (int v = 0; v < NJ; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
        }
    }
    for (int r = 0; r < SD_GEMM_R; r++)
        for (int v = 0; v < NJ; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

/* The same over nv (>= 1) column vectors, 4 at a time, then the rest. */
static inline void sd_gemm_bf16_rows(const uint32_t *a, int64_t lda, int64_t K, const uint32_t *b, int64_t ldb,
                                     float *c, int64_t ldc, int64_t nv) {
    for (int64_t v0 = 0; v0 < nv; v0 += 4) {
        const uint32_t *bb = b + 16 * v0;
        float *cc = c + 16 * v0;
        switch (nv - v0 < 4 ? nv - v0 : 4) {
        case 1: sd_gemm_bf16_tile(a, lda, K, bb, ldb, cc, ldc, 1); break;
        case 2: sd_gemm_bf16_tile(a, lda, K, bb, ldb, cc, ldc, 2); break;
        case 3: sd_gemm_bf16_tile(a, lda, K, bb, ldb, cc, ldc, 3); break;
        default: sd_gemm_bf16_tile(a, lda, K, bb, ldb, cc, ldc, 4); break;
        }
    }
}

/* Interleaves 16 bf16 of a (low half) with 16 of b: word i = (a[i], b[i]). */
static inline __m512i sd_bf16_interleave(__m256i a, __m256i b) {
    const __m512i il = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                        21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(il, _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1));
}

#endif
