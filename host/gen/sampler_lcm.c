/* sampler_lcm.c - LCMScheduler (§5.9), for LCM models and LCM-LoRA.
 *
 * Timesteps: with k = N div original_steps (20), the distillation grid is
 * k*i - 1 for i = 1..original_steps, descending; n of them are picked at
 * indices floor(j * original_steps / n). spacing/steps_offset are ignored.
 * Step at position i (t' = next timestep, or t itself at the end):
 *   x0 from the model output (VP, clamped if clip_sample),
 *   c_skip = 0.25/((10t)^2 + 0.25), c_out = 10t/sqrt((10t)^2 + 0.25),
 *   den = c_out x0 + c_skip x,
 *   x' = den on the last step, else sqrt(acp[t']) den + sqrt(1-acp[t']) z
 * with z = randn(n). The step callback's x0 is `den` (diffusers' denoised). */
#include <math.h>

#include "sampler_impl.h"

static int lcm_setup(struct sd_sampler *s) {
    const int n = s->p.steps, orig = s->p.lcm_original_steps, N = s->sched.n_train;
    if (orig < 1 || orig > N)
        return sd_errorf(s->ctx, SD_ERR_INVALID, "LCM: original_inference_steps must be in 1..%d, got %d", N, orig);
    if (n > orig)
        return sd_errorf(s->ctx, SD_ERR_INVALID,
                         "LCM: steps (%d) cannot exceed original_inference_steps (%d); LCM uses 2-8 steps", n, orig);
    int rc = sd_sampler_alloc_lists(s, n, false);
    if (rc) return rc;
    const int k = N / orig;
    const double step = (double)orig / (double)n; /* np.linspace(0, orig, n, endpoint=False) */
    for (int i = 0; i < n; i++) {
        int idx = (int)floor((double)i * step);
        int origin_i = orig - 1 - idx; /* descending grid */
        s->timesteps[i] = (double)((origin_i + 1) * k - 1);
    }
    return SD_OK;
}

static int lcm_step(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng) {
    const int64_t n = s->n;
    const int t = (int)s->timesteps[i];
    const int tp = i + 1 < s->n_ts ? (int)s->timesteps[i + 1] : t;
    const float ap = s->sched.alphas_cumprod[tp];
    const float bp = 1.0f - ap;
    const long long st = (long long)t * 10;
    const float st2 = (float)(st * st);
    const float den_c = st2 + 0.25f;
    const float c_skip = 0.25f / den_c;
    const float c_out = (float)st / sqrtf(den_c);
    sd_sampler_x0_vp(s, t, x, m, s->x0);
    if (s->p.clip_sample)
        for (int64_t j = 0; j < n; j++) s->x0[j] = s->x0[j] < -1.0f ? -1.0f : s->x0[j] > 1.0f ? 1.0f : s->x0[j];
    for (int64_t j = 0; j < n; j++) {
        float u = c_out * s->x0[j];
        float v = c_skip * x[j];
        s->x0[j] = u + v; /* denoised */
    }
    if (i == s->p.steps - 1) {
        for (int64_t j = 0; j < n; j++) x[j] = s->x0[j];
        return SD_OK;
    }
    sd_rng_randn(rng, s->noise, n);
    const float sap = sqrtf(ap), sbp = sqrtf(bp);
    for (int64_t j = 0; j < n; j++) {
        float u = sap * s->x0[j];
        float v = sbp * s->noise[j];
        x[j] = u + v;
    }
    return SD_OK;
}

const struct sd_sampler_ops sd_sampler_lcm_ops = {
    .name = "lcm", .noise = SD_NOISE_VP, .sigma_space = false, .setup = lcm_setup, .step = lcm_step,
};
