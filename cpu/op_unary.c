/* op_unary.c - elementwise activations on the CPU: GELU (exact, erf),
 * quick GELU (x*sigmoid(1.702x)), SiLU (x*sigmoid(x)), ReLU and tanh
 * (libm tanhf, scalar: TAESD applies it to the latent only).
 *
 * Same-shape f32 in and out; a flat parallel loop over vectorisable helpers
 * from cpu_math.h (max relative error ~2e-6, see there), in chunks of
 * SD_UNARY_CHUNK elements, AVX-512 16 lanes at a time where available.
 */
#include "cpu.h"
#include "cpu_math.h"

#include <math.h>

static inline float reluf(float x) { return x > 0.0f ? x : 0.0f; } /* NaN -> 0, as max(x, 0) below */
static inline float quick_gelu(float x) { return x / (1.0f + sd_expf(-1.702f * x)); }

/* y[i] = f(x[i]): 16 lanes at a time with the AVX-512 version vf where
 * available, the scalar f for the tail (or everything). */
#if SD_HAVE_AVX512
#define SD_UNARY_VEC(vf)                                                                   \
    for (; i + 16 <= i1; i += 16) _mm512_storeu_ps(y + i, vf(_mm512_loadu_ps(x + i)));
static inline __m512 quick_gelu16(__m512 x) {
    const __m512 e = sd_exp16(_mm512_mul_ps(x, _mm512_set1_ps(-1.702f)));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}
static inline __m512 relu16(__m512 x) { return _mm512_max_ps(x, _mm512_setzero_ps()); }
#else
#define SD_UNARY_VEC(vf)
#endif

#define SD_UNARY_CHUNK 4096

#define SD_UNARY_OP(fname, f, vf)                                                          \
    int fname(struct sd_cpu *cpu, struct sd_tensor *node) {                                \
        (void)cpu;                                                                         \
        const float *x = node->src[0]->data;                                               \
        float *y = node->data;                                                             \
        const int64_t n = sd_tensor_nelements(node);                                       \
        const int64_t nchunk = (n + SD_UNARY_CHUNK - 1) / SD_UNARY_CHUNK;                  \
        _Pragma("omp parallel for schedule(static)")                                       \
        for (int64_t c = 0; c < nchunk; c++) {                                             \
            int64_t i = c * SD_UNARY_CHUNK;                                                \
            const int64_t i1 = i + SD_UNARY_CHUNK < n ? i + SD_UNARY_CHUNK : n;            \
            SD_UNARY_VEC(vf)                                                               \
            for (; i < i1; i++) y[i] = f(x[i]);                                            \
        }                                                                                  \
        return SD_OK;                                                                      \
    }

SD_UNARY_OP(sd_cpu_op_gelu, sd_geluf, sd_gelu16)
SD_UNARY_OP(sd_cpu_op_quick_gelu, quick_gelu, quick_gelu16)
SD_UNARY_OP(sd_cpu_op_silu, sd_siluf, sd_silu16)
SD_UNARY_OP(sd_cpu_op_relu, reluf, relu16)

#undef SD_UNARY_VEC
#define SD_UNARY_VEC(vf)
SD_UNARY_OP(sd_cpu_op_tanh, tanhf, none)
