/* op_group_norm.c - GroupNorm (+ optional fused SiLU) on the CPU.
 *
 * x [N, C, ...] (n_dims >= 2; the trailing dims are flattened to S), gamma,
 * beta [C] or NULL (identity). Per sample n and group g of C/G consecutive
 * channels: mean and biased variance over the (C/G)*S values, then
 * y = (x - mu) / sqrt(var + eps) * gamma_c + beta_c, and y*sigmoid(y) when
 * p.group_norm.silu.
 *
 * A group's values are contiguous. Statistics are accurate at millions of
 * values: the group is cut into chunks of SD_GN_CHUNK floats; each chunk's
 * mean and sum of squared deviations are computed in float (two passes over
 * data in L1, vectorised), and chunks are merged in double with Chan's
 * parallel-variance formula. Then one pass writes y = x*a_c + b_c with
 * a_c = gamma_c/sigma, b_c = beta_c - mu*a_c. One task per (n, group).
 */
#include "cpu.h"
#include "cpu_math.h"

#include <math.h>

#define SD_GN_CHUNK 2048

/* Mean and biased variance of x[0..n) (n >= 1). */
static void gn_stats(const float *x, int64_t n, double *mean, double *var) {
    double cnt = 0, mu = 0, m2 = 0;
    for (int64_t c0 = 0; c0 < n; c0 += SD_GN_CHUNK) {
        const int64_t len = n - c0 < SD_GN_CHUNK ? n - c0 : SD_GN_CHUNK;
        const float *p = x + c0;
        float s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < len; i++) s += p[i];
        const float cm = s / (float)len;
        float q = 0;
        #pragma omp simd reduction(+:q)
        for (int64_t i = 0; i < len; i++) q += (p[i] - cm) * (p[i] - cm);
        /* Chan: merge (cnt, mu, m2) with (len, cm, q). */
        const double nb = (double)len, tot = cnt + nb, d = (double)cm - mu;
        mu += d * nb / tot;
        m2 += (double)q + d * d * cnt * nb / tot;
        cnt = tot;
    }
    *mean = mu;
    *var = m2 / cnt;
}

int sd_cpu_op_group_norm(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *xt = node->src[0];
    const float *x = xt->data;
    const float *gamma = node->src[1] ? node->src[1]->data : NULL;
    const float *beta = node->src[2] ? node->src[2]->data : NULL;
    float *y = node->data;
    const int G = node->p.group_norm.groups;
    const int silu = node->p.group_norm.silu;
    const double eps = node->p.group_norm.eps;
    const int64_t N = sd_tensor_dim(xt, 0), C = sd_tensor_dim(xt, 1);
    if (xt->n_dims < 2 || G < 1 || C % G)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "group_norm: %lld channels, %d groups", (long long)C, G);
    const int64_t S = sd_tensor_nelements(xt) / (N * C), cpg = C / G;

    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t g = 0; g < G; g++) {
            const int64_t off = (n * C + g * cpg) * S;
            double mu, var;
            gn_stats(x + off, cpg * S, &mu, &var);
            const double rstd = 1.0 / sqrt(var + eps);
            for (int64_t c = 0; c < cpg; c++) {
                const int64_t ch = g * cpg + c;
                const float a = (float)(rstd * (gamma ? gamma[ch] : 1.0f));
                const float b = (float)((beta ? beta[ch] : 0.0f) - mu * rstd * (gamma ? gamma[ch] : 1.0f));
                const float *xs = x + off + c * S;
                float *ys = y + off + c * S;
                int64_t i = 0;
                if (silu) {
#if SD_HAVE_AVX512
                    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
                    for (; i + 16 <= S; i += 16)
                        _mm512_storeu_ps(ys + i, sd_silu16(_mm512_fmadd_ps(_mm512_loadu_ps(xs + i), va, vb)));
#endif
                    for (; i < S; i++) ys[i] = sd_siluf(xs[i] * a + b);
                } else {
                    for (; i < S; i++) ys[i] = xs[i] * a + b;
                }
            }
        }
    }
    return SD_OK;
}
