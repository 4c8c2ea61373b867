/* sampler_euler_a.c - EulerAncestralDiscreteScheduler:
 *   x0 = x - sigma m, d = (x - x0) / sigma,
 *   s_up = sqrt(s1^2 (s0^2 - s1^2) / s0^2), s_down = sqrt(s1^2 - s_up^2),
 *   x' = x + d (s_down - s0) + z s_up,   z = randn(n) drawn at every step
 * (the last one too, where s_up = 0), so the RNG stream matches diffusers.
 * No Karras option in diffusers; lists as Euler. */
#include <math.h>

#include "sampler_impl.h"

static int euler_a_setup(struct sd_sampler *s) { return sd_sampler_setup_sigma_list(s, false); }

static int euler_a_step(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng) {
    const int64_t n = s->n;
    const float s0 = s->sigmas[i], s1 = s->sigmas[i + 1];
    const float s0q = s0 * s0, s1q = s1 * s1;
    float up = s0q - s1q;
    up = s1q * up;
    up = up / s0q;
    up = sqrtf(up);
    const float upq = up * up;
    const float down = sqrtf(s1q - upq);
    const float dt = down - s0;
    sd_sampler_x0_ve(s, s0, x, m, s->x0);
    sd_rng_randn(rng, s->noise, n);
    for (int64_t j = 0; j < n; j++) {
        float d = x[j] - s->x0[j];
        d = d / s0;
        float step = d * dt;
        float v = x[j] + step;
        float z = s->noise[j] * up;
        x[j] = v + z;
    }
    return SD_OK;
}

const struct sd_sampler_ops sd_sampler_euler_a_ops = {
    .name = "euler_a", .noise = SD_NOISE_VE, .sigma_space = true, .setup = euler_a_setup, .step = euler_a_step,
};
