/* sampler_pndm.c - PNDMScheduler with skip_prk_steps (PLMS), §5.4.
 *
 * List: spaced timesteps T (ascending) -> T[:-1] + [T[-2]] + [T[-1]],
 * reversed: n+1 model calls with the second timestep repeated. State: a
 * counter c, the last raw model outputs E (at most 4) and a saved sample S.
 *   c == 0:  E = [m], S = x, x <- prev(x, t, t - D, m)
 *   c == 1:  eps = (m + E[-1]) / 2, x <- prev(S, t + D, t, eps)  (E unchanged)
 *   c >= 2:  E <- E[-3:] + [m], eps = Adams-Bashforth of order |E|,
 *            x <- prev(x, t, t - D, eps)
 * with D = N div n and prev() the PNDM formula (v-prediction converted with
 * the sample prev() receives). The run restarts c at 0, as diffusers'
 * img2img does after slicing the list (§5.10: the correction then lands on a
 * non-repeated timestep; reproduced as is). The callback's x0 is the VP x0
 * of the raw output at the current x and t. */
#include <math.h>

#include "sampler_impl.h"

static int pndm_setup(struct sd_sampler *s) {
    const int n = s->p.steps;
    const int n_ts = n > 1 ? n + 1 : 1;
    int rc = sd_sampler_alloc_lists(s, n_ts, false);
    if (rc) return rc;
    double desc[SD_TRAIN_STEPS];
    rc = sd_schedule_timesteps(s->ctx, &s->sched, SD_TS_INT, sd_sampler_spacing(s), n, s->p.steps_offset, desc);
    if (rc) return rc;
    if (n == 1) {
        s->timesteps[0] = desc[0];
        return SD_OK;
    }
    /* descending desc[0] > desc[1] > ... ; result: desc[0], desc[1], desc[1], desc[2], ... */
    s->timesteps[0] = desc[0];
    for (int i = 1; i < n; i++) s->timesteps[i + 1] = desc[i];
    s->timesteps[1] = desc[1];
    return SD_OK;
}

/* x' = sqrt(a'/a) x - (a' - a) eps / (a sqrt(1-a') + sqrt(a (1-a) a')) */
static void pndm_prev(const struct sd_sampler *s, const float *x, int t, int tp, const float *eps_in, float *eps_buf,
                      float *out) {
    const int64_t n = s->n;
    const float a = s->sched.alphas_cumprod[t];
    const float ap = tp >= 0 ? s->sched.alphas_cumprod[tp] : s->sched.alphas_cumprod[0];
    const float b = 1.0f - a, bp = 1.0f - ap;
    const float *eps = eps_in;
    if (s->p.prediction == SD_PRED_V) {
        const float sa = sqrtf(a), sb = sqrtf(b);
        for (int64_t j = 0; j < n; j++) {
            float u = sa * eps_in[j];
            float v = sb * x[j];
            eps_buf[j] = u + v;
        }
        eps = eps_buf;
    }
    const float sc = sqrtf(ap / a);
    const float den1 = a * sqrtf(bp);
    float ab = a * b;
    ab = ab * ap;
    const float den = den1 + sqrtf(ab);
    const float da = ap - a;
    for (int64_t j = 0; j < n; j++) {
        float u = sc * x[j];
        float v = da * eps[j];
        v = v / den;
        out[j] = u - v;
    }
}

static int pndm_step(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng) {
    (void)rng;
    const int64_t n = s->n;
    const int D = s->sched.n_train / s->p.steps;
    int t = (int)s->timesteps[i];
    int tp = t - D;
    float *eps = s->x_in; /* x_in is free: PNDM passes x itself to the model */
    sd_sampler_x0_vp(s, t, x, m, s->x0);
    if (s->counter != 1) {
        float *slot = sd_sampler_hist_push(s, 4);
        for (int64_t j = 0; j < n; j++) slot[j] = m[j];
    } else {
        tp = t;
        t = t + D;
    }
    float **E = s->hist;
    const int k = s->n_hist;
    const float *src = x;
    if (k == 1 && s->counter == 0) {
        for (int64_t j = 0; j < n; j++) s->saved[j] = x[j];
        for (int64_t j = 0; j < n; j++) eps[j] = m[j];
    } else if (k == 1 && s->counter == 1) {
        for (int64_t j = 0; j < n; j++) {
            float u = m[j] + E[0][j];
            eps[j] = u / 2.0f;
        }
        src = s->saved;
    } else if (k == 2) {
        for (int64_t j = 0; j < n; j++) {
            float u = 3.0f * E[1][j];
            u = u - E[0][j];
            eps[j] = u / 2.0f;
        }
    } else if (k == 3) {
        for (int64_t j = 0; j < n; j++) {
            float u = 23.0f * E[2][j];
            float v = 16.0f * E[1][j];
            float w = 5.0f * E[0][j];
            u = u - v;
            u = u + w;
            eps[j] = u / 12.0f;
        }
    } else {
        const float c = (float)(1.0 / 24.0);
        for (int64_t j = 0; j < n; j++) {
            float u = 55.0f * E[3][j];
            float v = 59.0f * E[2][j];
            float w = 37.0f * E[1][j];
            float z = 9.0f * E[0][j];
            u = u - v;
            u = u + w;
            u = u - z;
            eps[j] = c * u;
        }
    }
    pndm_prev(s, src, t, tp, eps, s->noise, x);
    s->counter++;
    return SD_OK;
}

const struct sd_sampler_ops sd_sampler_pndm_ops = {
    .name = "pndm", .noise = SD_NOISE_VP, .sigma_space = false, .setup = pndm_setup, .step = pndm_step,
};
