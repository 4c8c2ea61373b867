/* sampler_lms.c - LMSDiscreteScheduler, order 4 (§5.7).
 *
 * Keeps the last four derivatives d_j = (x - x0_j)/sigma_j (newest last). At
 * list position k with o = min(k+1, 4) (k counts from the start of the full
 * list, as diffusers' step_index does, even when img2img starts later):
 *   coef_c = integral over [sigma_k, sigma_{k+1}] of the Lagrange basis
 *            polynomial prod_{j != c} (tau - sigma_{k-j})/(sigma_{k-c} - sigma_{k-j})
 *   x' = x + sum_c coef_c d_{newest-c}, over the derivatives available.
 * diffusers integrates with scipy quad (epsrel 1e-4) on float32 sigmas; the
 * integrand is a polynomial of degree <= 3, so 3-point Gauss-Legendre in
 * double is exact and agrees with it to ~1e-7 relative. */
#include <math.h>

#include "sampler_impl.h"

static int lms_setup(struct sd_sampler *s) { return sd_sampler_setup_sigma_list(s, true); }

static double lms_coef(const float *sig, int order, int k, int c) {
    static const double gx[3] = {-0.7745966692414834, 0.0, 0.7745966692414834};
    static const double gw[3] = {0.5555555555555556, 0.8888888888888888, 0.5555555555555556};
    const double a = sig[k], b = sig[k + 1];
    const double half = 0.5 * (b - a), mid = 0.5 * (a + b);
    double sum = 0;
    for (int q = 0; q < 3; q++) {
        double tau = mid + half * gx[q];
        double prod = 1.0;
        for (int j = 0; j < order; j++) {
            if (j == c) continue;
            prod *= (tau - (double)sig[k - j]) / ((double)sig[k - c] - (double)sig[k - j]);
        }
        sum += gw[q] * prod;
    }
    return sum * half;
}

static int lms_step(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng) {
    (void)rng;
    const int64_t n = s->n;
    const float sigma = s->sigmas[i];
    sd_sampler_x0_ve(s, sigma, x, m, s->x0);
    float *d = sd_sampler_hist_push(s, 4);
    for (int64_t j = 0; j < n; j++) {
        float u = x[j] - s->x0[j];
        d[j] = u / sigma;
    }
    const int order = i + 1 < 4 ? i + 1 : 4;
    float coef[4];
    for (int c = 0; c < order; c++) coef[c] = (float)lms_coef(s->sigmas, order, i, c);
    const int terms = order < s->n_hist ? order : s->n_hist;
    for (int64_t j = 0; j < n; j++) {
        float acc = coef[0] * s->hist[s->n_hist - 1][j];
        for (int c = 1; c < terms; c++) {
            float t = coef[c] * s->hist[s->n_hist - 1 - c][j];
            acc = acc + t;
        }
        x[j] = x[j] + acc;
    }
    return SD_OK;
}

const struct sd_sampler_ops sd_sampler_lms_ops = {
    .name = "lms", .noise = SD_NOISE_VE, .sigma_space = true, .setup = lms_setup, .step = lms_step,
};
