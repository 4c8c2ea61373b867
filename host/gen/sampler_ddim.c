/* sampler_ddim.c - DDIMScheduler (§5.3):
 *   t' = t - N div n;  a = acp[t], a' = acp[t'] (acp[0] when t' < 0:
 *   set_alpha_to_one = false), x0/eps from the model output (clamped to
 *   [-1, 1] if clip_sample), var = (1-a')/(1-a) (1 - a/a'),
 *   std = eta sqrt(var),  x' = sqrt(a') x0 + sqrt(1 - a' - std^2) eps
 *   [+ std z, z = randn(n) only when eta > 0].
 * Integer timesteps (leading by default), identity input scaling. */
#include <math.h>

#include "sampler_impl.h"

static int ddim_setup(struct sd_sampler *s) {
    int rc = sd_sampler_alloc_lists(s, s->p.steps, false);
    if (rc) return rc;
    return sd_schedule_timesteps(s->ctx, &s->sched, SD_TS_INT, sd_sampler_spacing(s), s->p.steps, s->p.steps_offset,
                                 s->timesteps);
}

static int ddim_step(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng) {
    const int64_t n = s->n;
    const int t = (int)s->timesteps[i];
    const int tp = t - s->sched.n_train / s->p.steps;
    const float a = s->sched.alphas_cumprod[t];
    const float ap = tp >= 0 ? s->sched.alphas_cumprod[tp] : s->sched.alphas_cumprod[0];
    const float b = 1.0f - a;
    const float bp = 1.0f - ap;
    const float sa = sqrtf(a), sb = sqrtf(b), sap = sqrtf(ap);
    float var = bp / b;
    float ratio = a / ap;
    var = var * (1.0f - ratio);
    const float std = s->p.eta * sqrtf(var);
    const float stdq = std * std;
    float dir_c = 1.0f - ap;
    dir_c = sqrtf(dir_c - stdq);
    float *eps = s->noise; /* reused as scratch; noise is drawn after eps is consumed */
    sd_sampler_x0_vp(s, t, x, m, s->x0);
    if (s->p.prediction == SD_PRED_V) {
        for (int64_t j = 0; j < n; j++) {
            float u = sa * m[j];
            float v = sb * x[j];
            eps[j] = u + v;
        }
    } else {
        eps = (float *)m;
    }
    if (s->p.clip_sample)
        for (int64_t j = 0; j < n; j++) s->x0[j] = s->x0[j] < -1.0f ? -1.0f : s->x0[j] > 1.0f ? 1.0f : s->x0[j];
    for (int64_t j = 0; j < n; j++) {
        float d = dir_c * eps[j];
        float u = sap * s->x0[j];
        x[j] = u + d;
    }
    if (s->p.eta > 0.0f) {
        sd_rng_randn(rng, s->noise, n);
        for (int64_t j = 0; j < n; j++) {
            float z = std * s->noise[j];
            x[j] = x[j] + z;
        }
    }
    return SD_OK;
}

const struct sd_sampler_ops sd_sampler_ddim_ops = {
    .name = "ddim", .noise = SD_NOISE_VP, .sigma_space = false, .setup = ddim_setup, .step = ddim_step,
};
