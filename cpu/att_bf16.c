/* att_bf16.c - the two GEMM tiles of the flash attention (op_attention.c) in
 * bf16 with f32 accumulation, on AVX-512 BF16 (vdpbf16ps): oneDNN 2.6 has
 * no public bf16 GEMM, and a primitive call per 128x256 tile costs about
 * as much as the tile.
 *
 * Layouts (bf16 as uint16, round to nearest even; pairs are what vdpbf16ps
 * multiplies and adds per 32-bit lane):
 *   Qb  [nq][d/2] pairs of (q[2c], q[2c+1]) * scale           (d even)
 *   Kb  [d/2][Lk] pairs of (k[j][2c], k[j][2c+1])               one head
 *   Vb  [Lk2/2][dv] pairs of (v[2i][c], v[2i+1][c]), Lk2 = Lk rounded up
 *       to even, the missing row zero
 * S = Qb . Kb^T (f32) for keys [j0, j0+nk); O += P . V for the same keys,
 * P (f32, after the softmax step) rounded to bf16 pairs on the fly; j0 even.
 * Callers check sd_att_bf16_ok() (CPU has avx512_bf16, d and dv even).
 */
#include "att_bf16.h"

#if SD_ATT_BF16

#include <string.h>

#include <immintrin.h>
#define ATT_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static inline uint16_t bf16_rne(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline uint32_t pair(float a, float b) { return (uint32_t)bf16_rne(a) | (uint32_t)bf16_rne(b) << 16; }

int sd_att_bf16_ok(int64_t d, int64_t dv) {
    return d % 2 == 0 && dv % 2 == 0 && __builtin_cpu_supports("avx512bf16");
}

void sd_att_pack_q(const float *q, int64_t ldq, int64_t nq, int64_t d, float scale, uint32_t *Qb) {
    for (int64_t r = 0; r < nq; r++)
        for (int64_t c = 0; c < d / 2; c++) Qb[r * (d / 2) + c] = pair(q[r * ldq + 2 * c] * scale, q[r * ldq + 2 * c + 1] * scale);
}

void sd_att_pack_kv(const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t Lk, int64_t d, int64_t dv,
                    uint32_t *Kb, uint32_t *Vb) {
    for (int64_t j = 0; j < Lk; j++)
        for (int64_t c = 0; c < d / 2; c++) Kb[c * Lk + j] = pair(k[j * ldk + 2 * c], k[j * ldk + 2 * c + 1]);
    for (int64_t i = 0; i < (Lk + 1) / 2; i++) {
        const float *v0 = v + 2 * i * ldv, *v1 = 2 * i + 1 < Lk ? v0 + ldv : NULL;
        for (int64_t c = 0; c < dv; c++) Vb[i * dv + c] = pair(v0[c], v1 ? v1[c] : 0.0f);
    }
}

/* The 32-bit pair at p in every lane (memcpy: p points into a float array). */
ATT_TARGET static inline __m512bh bcast(const char *p) {
    int v;
    memcpy(&v, p, 4);
    return (__m512bh)_mm512_set1_epi32(v);
}

ATT_TARGET void sd_att_qk(const uint32_t *Qb, int64_t nq, int64_t d, const uint32_t *Kb, int64_t Lk, int64_t j0,
                          int64_t nk, float *S) {
    const int64_t d2 = d / 2;
    for (int64_t j = 0; j < nk; j += 32) {
        const int64_t n0 = nk - j >= 16 ? 16 : nk - j, n1 = nk - j - 16 >= 16 ? 16 : (nk - j - 16 > 0 ? nk - j - 16 : 0);
        const __mmask16 m0 = (__mmask16)((1u << n0) - 1), m1 = (__mmask16)((1u << n1) - 1);
        const uint32_t *kb = Kb + j0 + j;
        int64_t r = 0;
        for (; r + 4 <= nq; r += 4) {
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int64_t c = 0; c < d2; c++) {
                const __m512bh k0 = (__m512bh)_mm512_maskz_loadu_epi32(m0, kb + c * Lk);
                const __m512bh k1 = (__m512bh)_mm512_maskz_loadu_epi32(m1, kb + c * Lk + 16);
                const uint32_t *qr = Qb + r * d2 + c;
                const __m512bh q0 = (__m512bh)_mm512_set1_epi32((int)qr[0]);
                const __m512bh q1 = (__m512bh)_mm512_set1_epi32((int)qr[d2]);
                const __m512bh q2 = (__m512bh)_mm512_set1_epi32((int)qr[2 * d2]);
                const __m512bh q3 = (__m512bh)_mm512_set1_epi32((int)qr[3 * d2]);
                a00 = _mm512_dpbf16_ps(a00, q0, k0), a01 = _mm512_dpbf16_ps(a01, q0, k1);
                a10 = _mm512_dpbf16_ps(a10, q1, k0), a11 = _mm512_dpbf16_ps(a11, q1, k1);
                a20 = _mm512_dpbf16_ps(a20, q2, k0), a21 = _mm512_dpbf16_ps(a21, q2, k1);
                a30 = _mm512_dpbf16_ps(a30, q3, k0), a31 = _mm512_dpbf16_ps(a31, q3, k1);
            }
            float *s = S + r * nk + j;
            _mm512_mask_storeu_ps(s, m0, a00), _mm512_mask_storeu_ps(s + 16, m1, a01);
            _mm512_mask_storeu_ps(s + nk, m0, a10), _mm512_mask_storeu_ps(s + nk + 16, m1, a11);
            _mm512_mask_storeu_ps(s + 2 * nk, m0, a20), _mm512_mask_storeu_ps(s + 2 * nk + 16, m1, a21);
            _mm512_mask_storeu_ps(s + 3 * nk, m0, a30), _mm512_mask_storeu_ps(s + 3 * nk + 16, m1, a31);
        }
        for (; r < nq; r++) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0;
            for (int64_t c = 0; c < d2; c++) {
                const __m512bh q0 = (__m512bh)_mm512_set1_epi32((int)Qb[r * d2 + c]);
                a0 = _mm512_dpbf16_ps(a0, q0, (__m512bh)_mm512_maskz_loadu_epi32(m0, kb + c * Lk));
                a1 = _mm512_dpbf16_ps(a1, q0, (__m512bh)_mm512_maskz_loadu_epi32(m1, kb + c * Lk + 16));
            }
            _mm512_mask_storeu_ps(S + r * nk + j, m0, a0), _mm512_mask_storeu_ps(S + r * nk + j + 16, m1, a1);
        }
    }
}

/* O[r][0..dv) += sum_j P[r][j] V[j0+j][.] for 4 rows at a time; Pp holds
 * each row's P as bf16 pairs (nk rounded up to even, zero padded). */
ATT_TARGET void sd_att_pv(float *S, int64_t nq, int64_t nk, const uint32_t *Vb, int64_t dv, int64_t j0, float *O) {
    const int64_t np = (nk + 1) / 2;
    /* P rows to pairs in place: pair i (bytes 4i..) is written after floats
     * 2i, 2i+1 (bytes 8i..) were read, so the row never overwrites unread data. */
    for (int64_t r = 0; r < nq; r++) {
        float *p = S + r * nk;
        for (int64_t i = 0; i < np; i++) {
            const uint32_t v = pair(p[2 * i], 2 * i + 1 < nk ? p[2 * i + 1] : 0.0f);
            memcpy((char *)p + 4 * i, &v, 4); /* aliasing-safe */
        }
    }
    const uint32_t *vb = Vb + (j0 / 2) * dv;
    for (int64_t c = 0; c < dv; c += 16) {
        const __mmask16 m = (__mmask16)(dv - c >= 16 ? 0xffffu : (1u << (dv - c)) - 1);
        int64_t r = 0;
        for (; r + 4 <= nq; r += 4) {
            float *o = O + r * dv + c;
            __m512 a0 = _mm512_maskz_loadu_ps(m, o), a1 = _mm512_maskz_loadu_ps(m, o + dv);
            __m512 a2 = _mm512_maskz_loadu_ps(m, o + 2 * dv), a3 = _mm512_maskz_loadu_ps(m, o + 3 * dv);
            const char *p0 = (const char *)(S + r * nk), *p1 = (const char *)(S + (r + 1) * nk);
            const char *p2 = (const char *)(S + (r + 2) * nk), *p3 = (const char *)(S + (r + 3) * nk);
            for (int64_t i = 0; i < np; i++) {
                const __m512bh v = (__m512bh)_mm512_maskz_loadu_epi32(m, vb + i * dv + c);
                a0 = _mm512_dpbf16_ps(a0, bcast(p0 + 4 * i), v);
                a1 = _mm512_dpbf16_ps(a1, bcast(p1 + 4 * i), v);
                a2 = _mm512_dpbf16_ps(a2, bcast(p2 + 4 * i), v);
                a3 = _mm512_dpbf16_ps(a3, bcast(p3 + 4 * i), v);
            }
            _mm512_mask_storeu_ps(o, m, a0), _mm512_mask_storeu_ps(o + dv, m, a1);
            _mm512_mask_storeu_ps(o + 2 * dv, m, a2), _mm512_mask_storeu_ps(o + 3 * dv, m, a3);
        }
        for (; r < nq; r++) {
            float *o = O + r * dv + c;
            __m512 a0 = _mm512_maskz_loadu_ps(m, o);
            const char *p0 = (const char *)(S + r * nk);
            for (int64_t i = 0; i < np; i++)
                a0 = _mm512_dpbf16_ps(a0, bcast(p0 + 4 * i),
                                      (__m512bh)_mm512_maskz_loadu_epi32(m, vb + i * dv + c));
            _mm512_mask_storeu_ps(o, m, a0);
        }
    }
}
#endif
