/* op_geglu.c - GEGLU on the CPU: x [..., 2C] -> a * gelu(g) [..., C], where
 * a = x[..., :C] and g = x[..., C:] (diffusers GEGLU: proj(x).chunk(2, -1)). */
#include "cpu.h"
#include "cpu_math.h"

int sd_cpu_op_geglu(struct sd_cpu *cpu, struct sd_tensor *node) {
    (void)cpu;
    const float *x = node->src[0]->data;
    float *y = node->data;
    const int64_t C = node->ne[3], rows = sd_tensor_nelements(node) / C;

    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *a = x + r * 2 * C, *g = a + C;
        float *yr = y + r * C;
        int64_t i = 0;
#if SD_HAVE_AVX512
        for (; i + 16 <= C; i += 16)
            _mm512_storeu_ps(yr + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), sd_gelu16(_mm512_loadu_ps(g + i))));
#endif
        for (; i < C; i++) yr[i] = a[i] * sd_geluf(g[i]);
    }
    return SD_OK;
}
