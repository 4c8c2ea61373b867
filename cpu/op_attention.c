/* op_attention.c - multi-head scaled dot-product attention on the CPU.
 *
 * q [B, Lq, H*d], k [B, Lk, H*d], v [B, Lk, H*dv] (channel = head*d + j)
 * -> out [B, Lq, H*dv] = softmax(scale * q.k^T) . v per (batch, head); with
 * p.attention.causal, query i sees keys j <= i.
 *
 * A backend computing in bf16 runs non-causal attention in
 * op_attention_bf16.c; this file is the f32 path (and the causal one).
 *
 * Flash-attention style: the Lq x Lk score matrix is never stored. A task is
 * one (batch, head, block of ATT_BQ queries); it walks the keys in blocks of
 * ATT_BK, computing the score tile S = (scale*Q_blk) . K_blk^T with
 * dnnl_sgemm, and keeps per query a running max m, running sum l and an
 * unnormalised output row O:
 *     m' = max(m, max_j S_j),  P_j = exp(S_j - m'),
 *     l  = l*exp(m - m') + sum_j P_j,  O = O*exp(m - m') + P . V_blk
 * and finally out = O / l.
 *
 * Parallelism and memory: the tasks, ordered (b, h, query block), are split
 * into one contiguous range per OpenMP thread, so a thread works through all
 * query blocks of one head before moving on. When the head's K and V rows
 * are strided (H > 1) the thread first copies them into contiguous [Lk][d]
 * and [Lk][dv] buffers (once per head, reused by every query block: the
 * tiles then stream from L2 without wasted cache-line halves). dnnl_sgemm
 * called inside the parallel region runs single-threaded. Each thread uses
 * its own slice of the backend scratch (packed K/V, Q block, S tile, O, m,
 * l), sized in the serial part before the parallel region.
 */
#include "cpu.h"
#include "cpu_dnnl.h"
#include "cpu_math.h"

#include <dnnl.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#ifndef ATT_BQ
#define ATT_BQ 128
#endif
#ifndef ATT_BK
#define ATT_BK 256
#endif

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* Per-thread workspace layout, in floats (each part 64-byte aligned). */
struct att_ws {
    int64_t kp, vp, qp, s, o, m, l, total;
};

static struct att_ws att_ws_layout(int64_t Lk, int64_t d, int64_t dv, int pack) {
    struct att_ws w;
    w.kp = 0;
    w.vp = w.kp + (pack ? round16(Lk * d) : 0);
    w.qp = w.vp + (pack ? round16(Lk * dv) : 0);
    w.s = w.qp + round16(ATT_BQ * d);
    w.o = w.s + ATT_BQ * ATT_BK;
    w.m = w.o + round16(ATT_BQ * dv);
    w.l = w.m + ATT_BQ;
    w.total = w.l + ATT_BQ;
    return w;
}

/* Softmax step of one score row s[0..nk) whose first nv (>= 1) entries are
 * visible: updates the running max *m and sum *l, overwrites s with P (0
 * where masked) and returns the factor exp(m_old - m_new) to rescale O by.
 * The AVX-512 path is the same computation 16 lanes at a time (two max
 * accumulators, masked tail). */
static inline float att_row(float *s, int64_t nk, int64_t nv, float *m, float *l) {
    float mx = *m, sum = 0;
#if SD_HAVE_AVX512
    int64_t j = 0;
    __m512 a0 = _mm512_set1_ps(mx), a1 = a0;
    for (; j + 32 <= nv; j += 32) {
        a0 = _mm512_max_ps(a0, _mm512_loadu_ps(s + j));
        a1 = _mm512_max_ps(a1, _mm512_loadu_ps(s + j + 16));
    }
    for (; j < nv; j += 16) {
        const __mmask16 k = nv - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nv - j)) - 1);
        a0 = _mm512_mask_max_ps(a0, k, a0, _mm512_maskz_loadu_ps(k, s + j));
    }
    mx = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (j = 0; j + 32 <= nv; j += 32) {
        const __m512 p0 = sd_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vmx));
        const __m512 p1 = sd_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), vmx));
        _mm512_storeu_ps(s + j, p0);
        _mm512_storeu_ps(s + j + 16, p1);
        s0 = _mm512_add_ps(s0, p0);
        s1 = _mm512_add_ps(s1, p1);
    }
    for (; j < nv; j += 16) {
        const __mmask16 k = nv - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nv - j)) - 1);
        const __m512 p0 = sd_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), vmx));
        _mm512_mask_storeu_ps(s + j, k, p0);
        s0 = _mm512_mask_add_ps(s0, k, s0, p0);
    }
    sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#else
    for (int64_t j = 0; j < nv; j++) mx = s[j] > mx ? s[j] : mx;
    for (int64_t j = 0; j < nv; j++) {
        s[j] = sd_expf(s[j] - mx);
        sum += s[j];
    }
#endif
    for (int64_t j = nv; j < nk; j++) s[j] = 0;
    const float corr = *m == -INFINITY ? 0.0f : sd_expf(*m - mx);
    *l = *l * corr + sum;
    *m = mx;
    return corr;
}

int sd_cpu_op_attention(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *qt = node->src[0], *kt = node->src[1], *vt = node->src[2];
    const int H = node->p.attention.n_heads;
    const float scale = node->p.attention.scale;
    const int causal = node->p.attention.causal;
    if (!causal && cpu->dnnl && cpu->dnnl->bf16 && sd_bf16_kernels_built())
        return sd_cpu_attention_bf16(cpu, node);
    const int64_t B = qt->ne[0] * qt->ne[1], Lq = qt->ne[2], Lk = kt->ne[2];
    const int64_t Cq = qt->ne[3], Cv = vt->ne[3];
    if (H < 1 || Cq % H || Cv % H || kt->ne[3] != Cq || vt->ne[2] != Lk || kt->ne[0] * kt->ne[1] != B ||
        vt->ne[0] * vt->ne[1] != B || Lk < 1)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "attention: incompatible q/k/v shapes for %d heads", H);
    const int64_t d = Cq / H, dv = Cv / H;
    const float *q = qt->data, *k = kt->data, *v = vt->data;
    float *out = node->data;

    const int pack = H > 1;
    const struct att_ws L = att_ws_layout(Lk, d, dv, pack);
    const int nthr = omp_get_max_threads();
    float *scratch = sd_cpu_scratch(cpu, (size_t)(L.total * nthr) * sizeof(float));
    if (!scratch) return SD_ERR_NOMEM;

    const int64_t nqb = (Lq + ATT_BQ - 1) / ATT_BQ, ntask = B * H * nqb;
    int status = 0;

    #pragma omp parallel
    {
        const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *ws = scratch + L.total * tid;
        float *Kp = ws + L.kp, *Vp = ws + L.vp, *Qp = ws + L.qp, *S = ws + L.s, *O = ws + L.o;
        float *m = ws + L.m, *l = ws + L.l;
        int64_t packed = -1; /* the (b, h) whose K/V sit in Kp/Vp */
        const int64_t t0 = ntask * tid / nth, t1 = ntask * (tid + 1) / nth;
        for (int64_t t = t0; t < t1; t++) {
            const int64_t bh = t / nqb, qb = t % nqb, b = bh / H, h = bh % H;
            /* This head's K and V: packed contiguous, or in place with row stride. */
            const float *Kh = k + b * Lk * Cq + h * d, *Vh = v + b * Lk * Cv + h * dv;
            int64_t ldk = Cq, ldv = Cv;
            if (pack) {
                if (packed != bh) {
                    for (int64_t j = 0; j < Lk; j++) {
                        memcpy(Kp + j * d, Kh + j * Cq, (size_t)d * sizeof *Kp);
                        memcpy(Vp + j * dv, Vh + j * Cv, (size_t)dv * sizeof *Vp);
                    }
                    packed = bh;
                }
                Kh = Kp, Vh = Vp, ldk = d, ldv = dv;
            }
            const int64_t i0 = qb * ATT_BQ, nq = Lq - i0 < ATT_BQ ? Lq - i0 : ATT_BQ;
            for (int64_t r = 0; r < nq; r++) {
                const float *qr = q + (b * Lq + i0 + r) * Cq + h * d;
                for (int64_t c = 0; c < d; c++) Qp[r * d + c] = qr[c] * scale;
                m[r] = -INFINITY, l[r] = 0;
            }
            memset(O, 0, (size_t)(nq * dv) * sizeof *O);
            /* Causal: keys beyond the block's last query are never seen. */
            const int64_t kend = causal ? (i0 + nq < Lk ? i0 + nq : Lk) : Lk;
            for (int64_t j0 = 0; j0 < kend; j0 += ATT_BK) {
                const int64_t nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
                dnnl_status_t st = dnnl_sgemm('N', 'T', nq, nk, d, 1.0f, Qp, d, Kh + j0 * ldk, ldk, 0.0f, S, nk);
                for (int64_t r = 0; r < nq; r++) {
                    const int64_t vis = causal ? i0 + r - j0 + 1 : nk;
                    const float corr = att_row(S + r * nk, nk, vis < nk ? vis : nk, m + r, l + r);
                    if (corr != 1.0f)
                        for (int64_t c = 0; c < dv; c++) O[r * dv + c] *= corr;
                }
                if (st == dnnl_success)
                    st = dnnl_sgemm('N', 'N', nq, dv, nk, 1.0f, S, nk, Vh + j0 * ldv, ldv, 1.0f, O, dv);
                if (st != dnnl_success) {
                    #pragma omp atomic write
                    status = (int)st;
                }
            }
            for (int64_t r = 0; r < nq; r++) {
                const float inv = 1.0f / l[r];
                float *y = out + (b * Lq + i0 + r) * Cv + h * dv;
                for (int64_t c = 0; c < dv; c++) y[c] = O[r * dv + c] * inv;
            }
        }
    }
    if (status) return sd_errorf(cpu->ctx, SD_ERR_BACKEND, "oneDNN: dnnl_sgemm(attention) = %d", (int)status);
    return SD_OK;
}
