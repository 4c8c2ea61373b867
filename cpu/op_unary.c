/* op_unary.c - elementwise activations on the CPU: GELU (exact, erf),
 * quick GELU (x*sigmoid(1.702x)) and SiLU (x*sigmoid(x)).
 *
 * Same-shape f32 in and out; a flat parallel loop over vectorisable helpers
 * from cpu_math.h (max relative error ~2e-6, see there).
 */
#include "cpu.h"
#include "cpu_math.h"

static inline float quick_gelu(float x) { return x / (1.0f + sd_expf(-1.702f * x)); }

#define SD_UNARY_OP(fname, expr)                                   \
    int fname(struct sd_cpu *cpu, struct sd_tensor *node) {        \
        (void)cpu;                                                 \
        const float *x = node->src[0]->data;                       \
        float *y = node->data;                                     \
        const int64_t n = sd_tensor_nelements(node);               \
        _Pragma("omp parallel for simd schedule(static)")          \
        for (int64_t i = 0; i < n; i++) y[i] = expr(x[i]);          \
        return SD_OK;                                              \
    }

SD_UNARY_OP(sd_cpu_gelu, sd_geluf)
SD_UNARY_OP(sd_cpu_quick_gelu, quick_gelu)
SD_UNARY_OP(sd_cpu_silu, sd_siluf)
