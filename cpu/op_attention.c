/* op_attention.c - multi-head scaled dot-product attention on the CPU.
 *
 * q [B, Lq, H*d], k [B, Lk, H*d], v [B, Lk, H*dv] (channel = head*d + j)
 * -> out [B, Lq, H*dv] = softmax(scale * q.k^T) . v per (batch, head); with
 * p.attention.causal, query i sees keys j <= i.
 *
 * Flash-attention style: the Lq x Lk score matrix is never stored. A task is
 * one (batch, head, block of ATT_BQ queries); it walks the keys in blocks of
 * ATT_BK, computing the score tile S = scale * Q_blk . K_blk^T with
 * dnnl_sgemm, and keeps per query a running max m, running sum l and an
 * unnormalised output row O:
 *     m' = max(m, max_j S_j),  P_j = exp(S_j - m'),
 *     l  = l*exp(m - m') + sum_j P_j,  O = O*exp(m - m') + P . V_blk
 * and finally out = O / l. Tasks run in parallel with OpenMP; dnnl_sgemm
 * called inside the parallel region runs single-threaded on its thread.
 * Each thread uses its own slice of the backend scratch (S tile, O, m, l),
 * sized in the serial part before the parallel region.
 */
#include "cpu.h"
#include "cpu_math.h"

#include <math.h>
#include <omp.h>
#include <dnnl.h>

#define ATT_BQ 64
#define ATT_BK 256

/* Floats per thread, each part rounded to a 64-byte multiple. */
static int64_t att_thread_floats(int64_t dv) {
    const int64_t r16 = 16;
    const int64_t s = ATT_BQ * ATT_BK, o = (ATT_BQ * dv + r16 - 1) / r16 * r16;
    return s + o + 2 * ATT_BQ;
}

int sd_cpu_attention(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *qt = node->src[0], *kt = node->src[1], *vt = node->src[2];
    const int H = node->p.attention.n_heads;
    const float scale = node->p.attention.scale;
    const int causal = node->p.attention.causal;
    const int64_t B = qt->ne[0] * qt->ne[1], Lq = qt->ne[2], Lk = kt->ne[2];
    const int64_t Cq = qt->ne[3], Cv = vt->ne[3];
    if (H < 1 || Cq % H || Cv % H || kt->ne[3] != Cq || vt->ne[2] != Lk || kt->ne[0] * kt->ne[1] != B ||
        vt->ne[0] * vt->ne[1] != B || Lk < 1)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "attention: incompatible q/k/v shapes for %d heads", H);
    const int64_t d = Cq / H, dv = Cv / H;
    const float *q = qt->data, *k = kt->data, *v = vt->data;
    float *out = node->data;

    const int nthr = omp_get_max_threads();
    const int64_t per = att_thread_floats(dv);
    float *scratch = sd_cpu_scratch(cpu, (size_t)(per * nthr) * sizeof(float));
    if (!scratch) return SD_ERR_NOMEM;

    const int64_t nqb = (Lq + ATT_BQ - 1) / ATT_BQ;
    int status = 0;

    #pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            for (int64_t qb = 0; qb < nqb; qb++) {
                float *S = scratch + per * omp_get_thread_num();
                float *O = S + ATT_BQ * ATT_BK;
                float *m = O + (per - ATT_BQ * ATT_BK - 2 * ATT_BQ);
                float *l = m + ATT_BQ;
                const int64_t i0 = qb * ATT_BQ, nq = Lq - i0 < ATT_BQ ? Lq - i0 : ATT_BQ;
                const float *Q = q + (b * Lq + i0) * Cq + h * d;
                for (int64_t r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0;
                for (int64_t r = 0; r < nq * dv; r++) O[r] = 0;
                /* Causal: keys beyond the block's last query are never seen. */
                const int64_t kend = causal ? (i0 + nq < Lk ? i0 + nq : Lk) : Lk;
                for (int64_t j0 = 0; j0 < kend; j0 += ATT_BK) {
                    const int64_t nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
                    const float *K = k + (b * Lk + j0) * Cq + h * d;
                    const float *V = v + (b * Lk + j0) * Cv + h * dv;
                    dnnl_status_t st = dnnl_sgemm('N', 'T', nq, nk, d, scale, Q, Cq, K, Cq, 0.0f, S, nk);
                    if (st != dnnl_success) {
                        #pragma omp atomic write
                        status = (int)st;
                    }
                    for (int64_t r = 0; r < nq; r++) {
                        float *s = S + r * nk;
                        const int64_t nv = causal ? (i0 + r - j0 + 1 < nk ? i0 + r - j0 + 1 : nk) : nk;
                        float mx = m[r];
                        for (int64_t j = 0; j < nv; j++) mx = s[j] > mx ? s[j] : mx;
                        float sum = 0;
                        #pragma omp simd reduction(+:sum)
                        for (int64_t j = 0; j < nv; j++) {
                            s[j] = sd_expf(s[j] - mx);
                            sum += s[j];
                        }
                        for (int64_t j = nv; j < nk; j++) s[j] = 0;
                        const float corr = m[r] == -INFINITY ? 0.0f : sd_expf(m[r] - mx);
                        l[r] = l[r] * corr + sum;
                        m[r] = mx;
                        float *o = O + r * dv;
                        for (int64_t j = 0; j < dv; j++) o[j] *= corr;
                    }
                    st = dnnl_sgemm('N', 'N', nq, dv, nk, 1.0f, S, nk, V, Cv, 1.0f, O, dv);
                    if (st != dnnl_success) {
                        #pragma omp atomic write
                        status = (int)st;
                    }
                }
                for (int64_t r = 0; r < nq; r++) {
                    const float inv = 1.0f / l[r];
                    float *y = out + (b * Lq + i0 + r) * Cv + h * dv;
                    const float *o = O + r * dv;
                    for (int64_t j = 0; j < dv; j++) y[j] = o[j] * inv;
                }
            }
        }
    }
    if (status)
        return sd_errorf(cpu->ctx, SD_ERR_DNNL, "attention: dnnl_sgemm failed with status %d", status);
    return SD_OK;
}
