/* op_timestep_embed.c - sinusoidal timestep embedding on the CPU (diffusers
 * Timesteps, sd-reference 3.2): t f32 [B] -> [B, dim],
 *   half = dim/2, freq[i] = exp(-ln(max_period)*i/(half - shift)),
 *   arg = t*freq[i], emb = [cos(arg), sin(arg)] if flip_sin_to_cos else
 *   [sin(arg), cos(arg)].
 * Like diffusers, the exponent, freq and arg are rounded to float32 at each
 * step (at t~1000 that rounding is ~1e-4 rad, visible in the output); sin
 * and cos of the float argument are evaluated accurately (in double). */
#include "cpu.h"

#include <math.h>

int sd_cpu_op_timestep_embedding(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_timestep_params p = node->p.timestep;
    const float *t = node->src[0]->data;
    float *y = node->data;
    const int64_t B = sd_tensor_nelements(node->src[0]), half = p.dim / 2;
    if (p.dim < 2 || p.dim % 2 || node->ne[3] != p.dim)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "timestep_embedding: dim %d (output last dim %lld)", p.dim,
                         (long long)node->ne[3]);
    const float neg_log = (float)-log((double)p.max_period);
    const float denom = (float)half - p.shift;
    for (int64_t b = 0; b < B; b++) {
        float *yr = y + b * p.dim;
        for (int64_t i = 0; i < half; i++) {
            const float e = neg_log * (float)i / denom;
            const float freq = (float)exp((double)e); /* correctly rounded, as torch.exp nearly always is */
            const float arg = t[b] * freq;
            const float c = (float)cos((double)arg), s = (float)sin((double)arg);
            yr[i] = p.flip_sin_to_cos ? c : s;
            yr[half + i] = p.flip_sin_to_cos ? s : c;
        }
    }
    return SD_OK;
}
