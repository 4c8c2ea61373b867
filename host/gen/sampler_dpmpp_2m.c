/* sampler_dpmpp_2m.c - DPMSolverMultistepScheduler, solver_order 2,
 * midpoint, algorithm dpmsolver++ ("DPM++ 2M") or sde-dpmsolver++ ("DPM++ 2M
 * SDE"), final_sigmas_type "zero" (§5.8).
 *
 * Works in VP space (identity input scaling, init_noise_sigma 1). With
 * alpha(s) = 1/sqrt(s^2+1), sig(s) = s alpha(s), lambda = ln alpha - ln sig,
 * the model output becomes the data prediction m0 = (x - sig_k m)/alpha_k
 * (v: alpha_k x - sig_k m); h = lambda_{k+1} - lambda_k and
 *   first order:  x' = (sig_{k+1}/sig_k) x - alpha_{k+1}(e^-h - 1) m0
 *   second order: r0 = h_{k-1}/h, D1 = (m0 - m1)/r0,
 *                 x' = (sig_{k+1}/sig_k) x - alpha_{k+1}(e^-h - 1)(m0 + D1/2)
 * (SDE: x' = (sig'/sig e^-h) x + alpha'(1 - e^-2h)(m0 [+ D1/2])
 *        + sig' sqrt(1 - e^-2h) z, with z = randn(n) drawn every step.)
 * First order on the first step of a run and always on the last (sigma 0,
 * where x' = m0 exactly); second order elsewhere. Timesteps: §5.2 DPM rules,
 * or Karras over the full sigma table with t = round(sigma_to_t(sigma)). */
#include <math.h>
#include <stdlib.h>

#include "sampler_impl.h"

static int dpm_setup(struct sd_sampler *s) {
    const int n = s->p.steps;
    int rc = sd_sampler_alloc_lists(s, n, true);
    if (rc) return rc;
    double *sig = malloc((size_t)n * sizeof *sig);
    if (!sig) return sd_errorf(s->ctx, SD_ERR_NOMEM, "sampler: out of memory");
    if (s->p.karras) {
        const struct sd_noise_schedule *sc = &s->sched;
        sd_karras_sigmas(sc->sigmas[0], sc->sigmas[sc->n_train - 1], n, sig);
        for (int i = 0; i < n; i++) s->timesteps[i] = rint(sd_sigma_to_t(sc, sig[i]));
    } else {
        rc = sd_schedule_timesteps(s->ctx, &s->sched, SD_TS_DPM, sd_sampler_spacing(s), n, s->p.steps_offset,
                                   s->timesteps);
        if (rc) {
            free(sig);
            return rc;
        }
        for (int i = 0; i < n; i++) sig[i] = sd_sigma_at(&s->sched, s->timesteps[i]);
    }
    for (int i = 0; i < n; i++) s->sigmas[i] = (float)sig[i];
    s->sigmas[n] = 0.0f;
    free(sig);
    return SD_OK;
}

struct dpm_coef {
    float alpha, sig, lambda;
};

static struct dpm_coef dpm_coef(float sigma) {
    struct dpm_coef c;
    const float sq = sigma * sigma;
    c.alpha = 1.0f / sqrtf(sq + 1.0f);
    c.sig = sigma * c.alpha;
    c.lambda = logf(c.alpha) - logf(c.sig);
    return c;
}

static int dpm_step(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng) {
    const int64_t n = s->n;
    const bool sde = s->p.kind == SD_SAMPLER_DPMPP_2M_SDE;
    const struct dpm_coef c0 = dpm_coef(s->sigmas[i]);
    /* model output -> data prediction, pushed into the history (newest last) */
    float *m0 = sd_sampler_hist_push(s, 2);
    if (s->p.prediction == SD_PRED_V) {
        for (int64_t j = 0; j < n; j++) {
            float u = c0.alpha * x[j];
            float v = c0.sig * m[j];
            m0[j] = u - v;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            float v = c0.sig * m[j];
            float u = x[j] - v;
            m0[j] = u / c0.alpha;
        }
    }
    for (int64_t j = 0; j < n; j++) s->x0[j] = m0[j];
    if (sde) sd_rng_randn(rng, s->noise, n);

    const bool last = i == s->n_ts - 1;
    const bool first_order = s->counter < 1 || last;
    if (s->counter < 2) s->counter++;

    if (s->sigmas[i + 1] == 0.0f) {
        /* sigma' = 0: alpha' = 1, sig' = 0, e^-h = 0, so x' = m0 for both
         * variants (diffusers computes 0*x + m0 through log(0) = -inf). */
        for (int64_t j = 0; j < n; j++) x[j] = m0[j];
        return SD_OK;
    }
    const struct dpm_coef ct = dpm_coef(s->sigmas[i + 1]);
    const float h = ct.lambda - c0.lambda;
    const float emh = expf(-h);
    const float ratio = ct.sig / c0.sig;
    const float *m1 = first_order ? NULL : s->hist[s->n_hist - 2];
    float r0_inv = 0.0f;
    if (!first_order) {
        const struct dpm_coef c1 = dpm_coef(s->sigmas[i - 1]);
        const float h0 = c0.lambda - c1.lambda;
        const float r0 = h0 / h;
        r0_inv = 1.0f / r0;
    }
    if (!sde) {
        const float cd = ct.alpha * (emh - 1.0f);
        const float cd1 = 0.5f * cd;
        for (int64_t j = 0; j < n; j++) {
            float u = ratio * x[j];
            float v = cd * m0[j];
            float r = u - v;
            if (m1) {
                float d1 = m0[j] - m1[j];
                d1 = r0_inv * d1;
                float w = cd1 * d1;
                r = r - w;
            }
            x[j] = r;
        }
    } else {
        const float e2 = expf(-2.0f * h);
        const float cx = ratio * emh;
        const float cd = ct.alpha * (1.0f - e2);
        const float cd1 = 0.5f * cd;
        const float cz = ct.sig * sqrtf(1.0f - e2);
        for (int64_t j = 0; j < n; j++) {
            float u = cx * x[j];
            float v = cd * m0[j];
            float r = u + v;
            if (m1) {
                float d1 = m0[j] - m1[j];
                d1 = r0_inv * d1;
                float w = cd1 * d1;
                r = r + w;
            }
            float z = cz * s->noise[j];
            x[j] = r + z;
        }
    }
    return SD_OK;
}

const struct sd_sampler_ops sd_sampler_dpmpp_2m_ops = {
    .name = "dpmpp_2m", .noise = SD_NOISE_DPM, .sigma_space = false, .setup = dpm_setup, .step = dpm_step,
};
