/* op_layer_norm.c - LayerNorm over the last dim on the CPU.
 *
 * x [..., C], gamma/beta [C] or NULL (identity): per row, mean and biased
 * variance (two passes, float vector sums of one row merged in double),
 * y = (x - mu)/sqrt(var + eps)*gamma + beta. Rows in parallel.
 */
#include "cpu.h"

#include <math.h>

int sd_cpu_op_layer_norm(struct sd_cpu *cpu, struct sd_tensor *node) {
    (void)cpu;
    const struct sd_tensor *xt = node->src[0];
    const float *x = xt->data;
    const float *gamma = node->src[1] ? node->src[1]->data : NULL;
    const float *beta = node->src[2] ? node->src[2]->data : NULL;
    float *y = node->data;
    const int64_t C = xt->ne[3], rows = sd_tensor_nelements(xt) / C;
    const double eps = node->p.layer_norm.eps;

    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < C; i++) s += xr[i];
        const float mu = (float)((double)s / (double)C);
        float q = 0;
        #pragma omp simd reduction(+:q)
        for (int64_t i = 0; i < C; i++) q += (xr[i] - mu) * (xr[i] - mu);
        const float rstd = (float)(1.0 / sqrt((double)q / (double)C + eps));
        if (gamma && beta) {
            for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] - mu) * rstd * gamma[i] + beta[i];
        } else {
            for (int64_t i = 0; i < C; i++)
                yr[i] = (xr[i] - mu) * rstd * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
        }
    }
    return SD_OK;
}
