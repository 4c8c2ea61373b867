/* op_attention_bf16.c - multi-head attention with bf16 operands and f32
 * accumulation, for CPU backends that compute in bf16 (AVX-512 BF16:
 * vdpbf16ps). Same contract as op_attention.c (non-causal only: the causal
 * text-encoder attention is small and stays in f32).
 *
 * Why a kernel of our own: at SD's head dims (40, 64, 80, 160) the two GEMMs
 * of attention are thin (q.k^T reduces over d = 40; P.V produces 40 columns),
 * which a general GEMM called per tile runs at a fraction of the machine's
 * bf16 rate. Here both run as register-tiled micro-kernels over operands
 * packed once in the layout vdpbf16ps wants (pairs of bf16 along the
 * reduction in each 32-bit lane):
 *   KP  per head, [key block of 16][d/2][16 keys] pairs (k[j][2p], k[j][2p+1])
 *   VP  per head, [key pair][dv rounded up to 16] pairs (v[2i][c], v[2i+1][c])
 *   QW  per query block, [query][d/2] pairs of scale*q
 *   PW  per score tile, [query][key pair] = the bf16 probabilities as stored
 * S = QW.KP is a tile of AB_R queries x 64 keys (24 accumulators), O += PW.VP
 * a tile of AB_R queries x up to 64 channels. The softmax is the online one
 * of op_attention.c (running max m, sum l, O rescaled when m grows), in f32;
 * only the probabilities fed to P.V are rounded to bf16, and l sums them as
 * rounded, so the rows of P.V/l still sum to one.
 *
 * Work split: tasks (batch, head, block of AB_BQ queries) in one contiguous
 * range per OpenMP thread; a thread packs a head's K and V once and runs all
 * its query blocks. Per-thread workspace from the backend scratch.
 */
#include "cpu.h"
#include "cpu_math.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#if SD_HAVE_AVX512_BF16
#include "gemm_bf16.h" /* sd_bf16_interleave */

#define AB_R 6    /* query rows per micro-tile */
#define AB_BQ 96  /* query rows per task, a multiple of AB_R */
#define AB_BK 256 /* keys per score tile, a multiple of 16 */

#define AB_INLINE static inline __attribute__((always_inline))

static int64_t up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }


/* S[r][16v + i] = sum_p QW[r][p] . KP[v][p][i] for r < AB_R, v < NJ; mv[r]
 * (16 lanes) keeps the running lane-wise max of row r's valid scores (the
 * first nval of the tile's 16*NJ). */
AB_INLINE void qk_tile(const uint32_t *qw, int64_t np, const uint32_t *kp, float *s, float *mv, int64_t nval,
                       const int NJ) {
    __m512 acc[AB_R][4];
    for (int r = 0; r < AB_R; r++)
        for (int v = 0; v < NJ; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        __m512bh kv[4];
        for (int v = 0; v < NJ; v++) kv[v] = (__m512bh)_mm512_loadu_si512(kp + (v * np + p) * 16);
        for (int r = 0; r < AB_R; r++) {
            const __m512bh qb = (__m512bh)_mm512_set1_epi32((int)qw[r * np + p]);
            for (int v = 0; v < NJ; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], qb, kv[v]);
        }
    }
    const __mmask16 last = nval >= 16 * NJ ? (__mmask16)0xffff : (__mmask16)((1u << (nval - 16 * (NJ - 1))) - 1);
    for (int r = 0; r < AB_R; r++) {
        __m512 mx = _mm512_loadu_ps(mv + r * 16);
        for (int v = 0; v < NJ; v++) {
            _mm512_storeu_ps(s + r * AB_BK + v * 16, acc[r][v]);
            mx = v < NJ - 1 ? _mm512_max_ps(mx, acc[r][v]) : _mm512_mask_max_ps(mx, last, mx, acc[r][v]);
        }
        _mm512_storeu_ps(mv + r * 16, mx);
    }
}

/* O[r][16v + i] = corr[r] * O[r][16v + i] + sum_t PW[r][t] . VP[t][16v + i]
 * for r < AB_R, v < NC, t < npair; with HALF, also the 8 columns after
 * those, in 256-bit vectors (head dim 40 = 2 x 16 + 8: a 256-bit vdpbf16ps
 * costs half a 512-bit one, so P.V does no work on padding). */
AB_INLINE void pv_tile(const uint32_t *pw, const uint32_t *vp, int64_t cpad, int64_t npair, float *o,
                       const float *corr, const int NC, const int HALF) {
    __m512 acc[AB_R][4];
    __m256 acch[AB_R];
    for (int r = 0; r < AB_R; r++) {
        const __m512 c = _mm512_set1_ps(corr[r]);
        for (int v = 0; v < NC; v++) acc[r][v] = _mm512_mul_ps(c, _mm512_loadu_ps(o + r * cpad + v * 16));
        if (HALF) acch[r] = _mm256_mul_ps(_mm512_castps512_ps256(c), _mm256_loadu_ps(o + r * cpad + NC * 16));
    }
    for (int64_t t = 0; t < npair; t++) {
        __m512bh vv[4];
        __m256bh vh = (__m256bh)_mm256_setzero_si256();
        for (int v = 0; v < NC; v++) vv[v] = (__m512bh)_mm512_loadu_si512(vp + t * cpad + v * 16);
        if (HALF) vh = (__m256bh)_mm256_loadu_si256((const __m256i *)(vp + t * cpad + NC * 16));
        for (int r = 0; r < AB_R; r++) {
            const __m512bh pb = (__m512bh)_mm512_set1_epi32((int)pw[r * (AB_BK / 2) + t]);
            for (int v = 0; v < NC; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], pb, vv[v]);
            if (HALF) acch[r] = _mm256_dpbf16_ps(acch[r], (__m256bh)_mm512_castsi512_si256((__m512i)pb), vh);
        }
    }
    for (int r = 0; r < AB_R; r++) {
        for (int v = 0; v < NC; v++) _mm512_storeu_ps(o + r * cpad + v * 16, acc[r][v]);
        if (HALF) _mm256_storeu_ps(o + r * cpad + NC * 16, acch[r]);
    }
}

/* 2^t for t <= 0 (16 lanes): n = round(t), 2^(t-n) by a degree-3
 * polynomial fitted for the least relative error on [-1/2, 1/2] (7.5e-5, a
 * thirtieth of the bf16 rounding the result gets), scaled by 2^n with
 * vscalefps (underflows to 0). */
static inline __m512 exp2_16(__m512 t) {
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(5.5171672e-2f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4261114e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9326097e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.9992806e-1f));
    return _mm512_scalef_ps(p, n);
}

/* 16 bf16 back to f32 (exact). */
static inline __m512 bf16_to_ps(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

/* One score row s[0..nkp) with nk valid entries, whose lane-wise max is mv,
 * in units of log2 (q was scaled by log2(e)): updates the running max *m and
 * (l != NULL) the sum *l of the probabilities as rounded to bf16 (so that
 * P.V / l sums P to one), writes the bf16 probabilities (0 past nk) to pw
 * and returns the factor 2^(m_old - m_new) to rescale the row of O by. With
 * l NULL the sum is P.V's: a column of ones in VP (see pack_kv). */
static inline float softmax_row(const float *s, const float *mv, int64_t nk, int64_t nkp, uint16_t *pw, float *m,
                                float *l) {
    const float mnew = fmaxf(*m, _mm512_reduce_max_ps(_mm512_loadu_ps(mv)));
    const __m512 vm = _mm512_set1_ps(mnew);
    __m512 sum = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= nk; j += 16) {
        const __m256i h = (__m256i)_mm512_cvtneps_pbh(exp2_16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm)));
        _mm256_storeu_si256((__m256i *)(pw + j), h);
        if (l) sum = _mm512_add_ps(sum, bf16_to_ps(h));
    }
    if (j < nkp) { /* the tail: nk - j valid of 16 */
        const __mmask16 k = (__mmask16)((1u << (nk - j)) - 1);
        const __m512 p = _mm512_maskz_mov_ps(k, exp2_16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm)));
        const __m256i h = (__m256i)_mm512_cvtneps_pbh(p);
        _mm256_storeu_si256((__m256i *)(pw + j), h);
        if (l) sum = _mm512_add_ps(sum, bf16_to_ps(h));
    }
    const float corr = *m == -INFINITY ? 0.0f : exp2f(*m - mnew);
    if (l) *l = *l * corr + _mm512_reduce_add_ps(sum);
    *m = mnew;
    return corr;
}

/* Per-thread workspace, in 32-bit words, each part 64-byte aligned. */
struct ab_ws {
    int64_t kp, vp, qw, s, pw, o, mv, m, l, corr, total;
};

static struct ab_ws ab_layout(int64_t Lk, int64_t np, int64_t cpad) {
    const int64_t lkp = up(Lk, 16);
    struct ab_ws w;
    w.kp = 0;
    w.vp = w.kp + lkp * np;
    w.qw = w.vp + lkp / 2 * cpad;
    w.s = w.qw + up(AB_BQ * np, 16);
    w.pw = w.s + AB_BQ * AB_BK;
    w.o = w.pw + AB_BQ * AB_BK / 2;
    w.mv = w.o + AB_BQ * cpad;
    w.m = w.mv + AB_BQ * 16;
    w.l = w.m + AB_BQ;
    w.corr = w.l + AB_BQ;
    w.total = w.corr + AB_BQ;
    return w;
}

/* n (<= 16) floats of src times a into 16 bf16, zero past n. */
static inline __m256bh row16(const float *src, int64_t n, float a) {
    const __mmask16 k = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    return _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, src), _mm512_set1_ps(a)));
}

/* A row of n values times a as (n+1)/2 bf16 pairs (a zero pads an odd n);
 * writes exactly those words. */
static void pack_row(const float *src, int64_t n, float a, uint32_t *dst) {
    const int64_t n2 = (n + 1) / 2 * 2;
    for (int64_t c = 0; c < n2; c += 16) {
        const __mmask16 k = n2 - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n2 - c)) - 1);
        _mm256_mask_storeu_epi16((uint16_t *)dst + c, k, (__m256i)row16(src + c, n - c, a));
    }
}

/* Packs one head's K ([Lk] rows of stride ldk, d columns) into KP and V
 * (stride ldv, dv columns) into VP, zero-padded to 16 keys and cpad columns,
 * except that column dv, with `ones`, holds ones for the Lk keys: P.V
 * then sums the probabilities (as rounded to bf16) into O's column dv, and
 * rescales that sum with O (the softmax's l, at no cost in the padding). */
static void pack_kv(const float *K, int64_t ldk, const float *V, int64_t ldv, int64_t Lk, int64_t d, int64_t dv,
                    int64_t np, int64_t cpad, int ones, uint32_t *kp, uint32_t *vp) {
    const int64_t lkp = up(Lk, 16);
    uint32_t row[np];
    for (int64_t j = 0; j < lkp; j++) {
        uint32_t *dst = kp + (j / 16) * np * 16 + j % 16;
        if (j < Lk) pack_row(K + j * ldk, d, 1.0f, row);
        for (int64_t p = 0; p < np; p++) dst[p * 16] = j < Lk ? row[p] : 0;
    }
    /* VP row t: the pairs (v[2t][c], v[2t+1][c]), zeros past Lk and dv. */
    for (int64_t t = 0; t < lkp / 2; t++) {
        const float *v0 = V + 2 * t * ldv, *v1 = v0 + ldv;
        const float a0 = 2 * t < Lk ? 1.0f : 0.0f, a1 = 2 * t + 1 < Lk ? 1.0f : 0.0f;
        for (int64_t c = 0; c < cpad; c += 16) {
            const __m256bh b0 = row16(a0 != 0 ? v0 + c : v0, a0 != 0 ? dv - c : 0, a0);
            const __m256bh b1 = row16(a1 != 0 ? v1 + c : v1, a1 != 0 ? dv - c : 0, a1);
            _mm512_storeu_si512(vp + t * cpad + c, sd_bf16_interleave((__m256i)b0, (__m256i)b1));
        }
        if (ones) vp[t * cpad + dv] = (a0 != 0 ? 0x3f80u : 0) | (a1 != 0 ? 0x3f80u : 0) << 16; /* bf16 1.0 */
    }
}

int sd_cpu_attention_bf16(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *qt = node->src[0], *kt = node->src[1], *vt = node->src[2];
    const int H = node->p.attention.n_heads;
    const int64_t B = qt->ne[0] * qt->ne[1], Lq = qt->ne[2], Lk = kt->ne[2];
    const int64_t Cq = qt->ne[3], Cv = vt->ne[3];
    if (node->p.attention.causal)
        return sd_errorf(cpu->ctx, SD_ERR_UNSUPPORTED, "attention bf16: causal attention runs in f32");
    if (H < 1 || Cq % H || Cv % H || kt->ne[3] != Cq || vt->ne[2] != Lk || kt->ne[0] * kt->ne[1] != B ||
        vt->ne[0] * vt->ne[1] != B || Lk < 1)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "attention: incompatible q/k/v shapes for %d heads", H);
    const int64_t d = Cq / H, dv = Cv / H, np = (d + 1) / 2, cpad = up(dv, 16);
    /* P.V's columns: nvz 512-bit vectors, then 8 in a 256-bit one where that
     * covers the rest (dv = 40: 2 + 8); where that leaves a column past dv,
     * the softmax's sums come from P.V (ones in VP, pack_kv). */
    const int64_t nvz = dv / 16 + (dv % 16 > 8), half = dv % 16 > 0 && dv % 16 <= 8;
    const int ones = dv < nvz * 16 + 8 * half;
    /* Scores in units of log2: the softmax then needs 2^x, not e^x. */
    const float qscale = node->p.attention.scale * 1.44269504088896341f;
    const float *q = qt->data, *k = kt->data, *v = vt->data;
    float *out = node->data;

    const struct ab_ws L = ab_layout(Lk, np, cpad);
    const int nthr = omp_get_max_threads();
    uint32_t *scratch = sd_cpu_scratch(cpu, (size_t)(L.total * nthr) * sizeof(uint32_t));
    if (!scratch) return SD_ERR_NOMEM;
    const int64_t nqb = (Lq + AB_BQ - 1) / AB_BQ, ntask = B * H * nqb;

    #pragma omp parallel
    {
        const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
        uint32_t *ws = scratch + L.total * tid;
        uint32_t *KP = ws + L.kp, *VP = ws + L.vp, *QW = ws + L.qw, *PW = ws + L.pw;
        float *S = (float *)(ws + L.s), *O = (float *)(ws + L.o), *mv = (float *)(ws + L.mv);
        float *m = (float *)(ws + L.m), *l = (float *)(ws + L.l), *corr = (float *)(ws + L.corr);
        int64_t packed = -1;
        const int64_t t0 = ntask * tid / nth, t1 = ntask * (tid + 1) / nth;
        for (int64_t t = t0; t < t1; t++) {
            const int64_t bh = t / nqb, qb = t % nqb, b = bh / H, h = bh % H;
            if (packed != bh) {
                pack_kv(k + b * Lk * Cq + h * d, Cq, v + b * Lk * Cv + h * dv, Cv, Lk, d, dv, np, cpad, ones, KP, VP);
                packed = bh;
            }
            const int64_t i0 = qb * AB_BQ, nq = Lq - i0 < AB_BQ ? Lq - i0 : AB_BQ, nqp = up(nq, AB_R);
            for (int64_t r = 0; r < nqp; r++) {
                if (r < nq) pack_row(q + (b * Lq + i0 + r) * Cq + h * d, d, qscale, QW + r * np);
                else memset(QW + r * np, 0, (size_t)np * sizeof *QW);
                m[r] = -INFINITY, l[r] = 0;
            }
            memset(O, 0, (size_t)(nqp * cpad) * sizeof *O);
            for (int64_t j0 = 0; j0 < Lk; j0 += AB_BK) {
                const int64_t nk = Lk - j0 < AB_BK ? Lk - j0 : AB_BK, nkp = up(nk, 16), nv = nkp / 16;
                const uint32_t *kb = KP + (j0 / 16) * np * 16;
                for (int64_t r = 0; r < nqp; r++) _mm512_storeu_ps(mv + r * 16, _mm512_set1_ps(-INFINITY));
                for (int64_t r0 = 0; r0 < nqp; r0 += AB_R)
                    for (int64_t v0 = 0; v0 < nv; v0 += 4) {
                        const uint32_t *qw = QW + r0 * np, *kv = kb + v0 * np * 16;
                        float *s = S + r0 * AB_BK + v0 * 16, *mr = mv + r0 * 16;
                        const int64_t nval = nk - v0 * 16;
                        switch (nv - v0 < 4 ? nv - v0 : 4) {
                        case 1: qk_tile(qw, np, kv, s, mr, nval, 1); break;
                        case 2: qk_tile(qw, np, kv, s, mr, nval, 2); break;
                        case 3: qk_tile(qw, np, kv, s, mr, nval, 3); break;
                        default: qk_tile(qw, np, kv, s, mr, nval, 4); break;
                        }
                    }
                for (int64_t r = 0; r < nqp; r++)
                    corr[r] = softmax_row(S + r * AB_BK, mv + r * 16, nk, nkp, (uint16_t *)(PW + r * (AB_BK / 2)),
                                          m + r, ones ? NULL : l + r);
                const uint32_t *vb = VP + (j0 / 2) * cpad;
                for (int64_t r0 = 0; r0 < nqp; r0 += AB_R)
                    for (int64_t c0 = 0;; c0 += 4) { /* nvz full vectors, 4 a call, the half with the last */
                        const int64_t nz = nvz - c0 >= 4 ? 4 : nvz - c0;
                        const int hf = half && nz < 4;
                        if (nz == 0 && !hf) break;
                        const uint32_t *pw = PW + r0 * (AB_BK / 2), *vv = vb + c0 * 16;
                        float *o = O + r0 * cpad + c0 * 16;
                        const int64_t n2 = nkp / 2;
                        switch (nz * 2 + hf) {
                        case 1: pv_tile(pw, vv, cpad, n2, o, corr + r0, 0, 1); break;
                        case 2: pv_tile(pw, vv, cpad, n2, o, corr + r0, 1, 0); break;
                        case 3: pv_tile(pw, vv, cpad, n2, o, corr + r0, 1, 1); break;
                        case 4: pv_tile(pw, vv, cpad, n2, o, corr + r0, 2, 0); break;
                        case 5: pv_tile(pw, vv, cpad, n2, o, corr + r0, 2, 1); break;
                        case 6: pv_tile(pw, vv, cpad, n2, o, corr + r0, 3, 0); break;
                        case 7: pv_tile(pw, vv, cpad, n2, o, corr + r0, 3, 1); break;
                        default: pv_tile(pw, vv, cpad, n2, o, corr + r0, 4, 0); break;
                        }
                        if (nz < 4) break;
                    }
            }
            for (int64_t r = 0; r < nq; r++) {
                const float inv = 1.0f / (ones ? O[r * cpad + dv] : l[r]);
                float *y = out + (b * Lq + i0 + r) * Cv + h * dv;
                for (int64_t c = 0; c < dv; c++) y[c] = O[r * cpad + c] * inv;
            }
        }
    }
    return SD_OK;
}

#else /* no AVX-512 BF16 in this build: attention stays in f32 */

int sd_cpu_attention_bf16(struct sd_cpu *cpu, struct sd_tensor *node) {
    (void)node;
    return sd_errorf(cpu->ctx, SD_ERR_UNSUPPORTED, "attention bf16: built without AVX-512 BF16");
}

#endif
