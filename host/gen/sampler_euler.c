/* sampler_euler.c - EulerDiscreteScheduler (s_churn = 0, so deterministic):
 *   x0 = x - sigma_k m  (v: §5.5),  d = (x - x0) / sigma_k,
 *   x' = x + d (sigma_{k+1} - sigma_k).
 * Timesteps/sigmas per §5.5 (Karras optional), input scaled by
 * 1/sqrt(sigma^2 + 1), add_noise x0 + sigma noise. */
#include "sampler_impl.h"

static int euler_setup(struct sd_sampler *s) { return sd_sampler_setup_sigma_list(s, true); }

static int euler_step(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng) {
    (void)rng;
    const int64_t n = s->n;
    const float sigma = s->sigmas[i];
    const float dt = s->sigmas[i + 1] - sigma;
    sd_sampler_x0_ve(s, sigma, x, m, s->x0);
    for (int64_t j = 0; j < n; j++) {
        float d = x[j] - s->x0[j];
        d = d / sigma;
        float step = d * dt;
        x[j] = x[j] + step;
    }
    return SD_OK;
}

const struct sd_sampler_ops sd_sampler_euler_ops = {
    .name = "euler", .noise = SD_NOISE_VE, .sigma_space = true, .setup = euler_setup, .step = euler_step,
};
