/* op_softmax.c - softmax over the last dim of scale*x on the CPU.
 *
 * x [..., R, L]: each row of L values; with p.softmax.causal, row i (index in
 * the last-but-one dim R) sees only columns j <= i and the rest are 0.
 * y_j = exp(s*x_j - max) / sum. Rows in parallel.
 */
#include "cpu.h"
#include "cpu_math.h"

#include <math.h>

int sd_cpu_op_softmax(struct sd_cpu *cpu, struct sd_tensor *node) {
    (void)cpu;
    const struct sd_tensor *xt = node->src[0];
    const float *x = xt->data;
    float *y = node->data;
    const int64_t L = xt->ne[3], R = xt->ne[2], rows = sd_tensor_nelements(xt) / L;
    const float scale = node->p.softmax.scale;
    const int causal = node->p.softmax.causal;

    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * L;
        float *yr = y + r * L;
        const int64_t i = r % R;
        const int64_t n = causal ? (i + 1 < L ? i + 1 : L) : L;
        float mx = -INFINITY;
        #pragma omp simd reduction(max:mx)
        for (int64_t j = 0; j < n; j++) mx = xr[j] * scale > mx ? xr[j] * scale : mx;
        float s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < n; j++) {
            yr[j] = sd_expf(xr[j] * scale - mx);
            s += yr[j];
        }
        const float inv = 1.0f / s;
        for (int64_t j = 0; j < n; j++) yr[j] *= inv;
        for (int64_t j = n; j < L; j++) yr[j] = 0;
    }
    return SD_OK;
}
