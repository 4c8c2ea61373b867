/* noise_schedule.c - betas, alphas_cumprod, sigmas, spaced timesteps and
 * Karras sigmas, reproducing diffusers' arithmetic (see noise_schedule.h).
 *
 * Precision notes (checked against torch 2.5.1 / numpy 2.4):
 *  - torch.linspace(a, b, N, float32) equals fma(step, i, a) for i < N/2 and
 *    fma(-step, N-1-i, b) above, with a, b, step = (b-a)/(N-1) in float;
 *  - torch.cumprod on a float CPU tensor accumulates in double;
 *  - np.linspace(0, x, n) is k * (x/(n-1)) in double;
 *  - np.arange(a, 0, -s) fills a + i*((a - s) - a) after its first two values;
 *  - numpy round() is round-half-to-even (rint in the default FP mode).
 */
#include "noise_schedule.h"

#include <math.h>
#include <string.h>

const char *sd_spacing_name(enum sd_spacing s) {
    switch (s) {
    case SD_SPACING_LEADING: return "leading";
    case SD_SPACING_LINSPACE: return "linspace";
    case SD_SPACING_TRAILING: return "trailing";
    default: return "default";
    }
}

enum sd_spacing sd_spacing_parse(const char *name) {
    if (!name) return SD_SPACING_DEFAULT;
    if (!strcmp(name, "leading")) return SD_SPACING_LEADING;
    if (!strcmp(name, "linspace")) return SD_SPACING_LINSPACE;
    if (!strcmp(name, "trailing")) return SD_SPACING_TRAILING;
    return SD_SPACING_DEFAULT;
}

/* torch.linspace(a, b, n, dtype=float32), element i. */
static float torch_linspace_f32(float a, float b, int n, int i) {
    const float step = (b - a) / (float)(n - 1);
    if (i < n / 2) return fmaf(step, (float)i, a);
    return fmaf(-step, (float)(n - 1 - i), b);
}

int sd_noise_schedule_init(struct sd_ctx *ctx, struct sd_noise_schedule *s, enum sd_beta_schedule kind,
                           double beta_start, double beta_end) {
    const int n = SD_TRAIN_STEPS;
    if (!(beta_start > 0 && beta_end > 0 && beta_start < 1 && beta_end < 1))
        return sd_errorf(ctx, SD_ERR_INVALID, "noise schedule: betas must lie in (0, 1), got %g .. %g", beta_start,
                         beta_end);
    s->n_train = n;
    for (int i = 0; i < n; i++) {
        if (kind == SD_BETA_SCALED_LINEAR) {
            float r = torch_linspace_f32((float)sqrt(beta_start), (float)sqrt(beta_end), n, i);
            s->betas[i] = r * r;
        } else {
            s->betas[i] = torch_linspace_f32((float)beta_start, (float)beta_end, n, i);
        }
    }
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        float alpha = 1.0f - s->betas[i];
        acc *= (double)alpha;
        s->alphas_cumprod[i] = (float)acc;
        float a = s->alphas_cumprod[i];
        s->sigmas[i] = sqrtf((1.0f - a) / a);
        s->log_sigmas[i] = logf(s->sigmas[i]);
    }
    return SD_OK;
}

void sd_noise_schedule_init_sd(struct sd_noise_schedule *s) {
    sd_noise_schedule_init(NULL, s, SD_BETA_SCALED_LINEAR, 0.00085, 0.012);
}

double sd_sigma_at(const struct sd_noise_schedule *s, double t) {
    const int n = s->n_train;
    if (!(t > 0)) return s->sigmas[0];
    if (t >= n - 1) return s->sigmas[n - 1];
    int j = (int)floor(t);
    if (t == (double)j) return s->sigmas[j];
    double lo = s->sigmas[j], hi = s->sigmas[j + 1];
    double slope = hi - lo; /* (fp[j+1] - fp[j]) / (xp[j+1] - xp[j]), xp = 0..N-1 */
    return slope * (t - (double)j) + lo;
}

double sd_sigma_to_t(const struct sd_noise_schedule *s, double sigma) {
    const int n = s->n_train;
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    int lo = 0;
    for (int i = 0; i < n; i++)
        if (ls - (double)s->log_sigmas[i] >= 0) lo = i;
    if (lo > n - 2) lo = n - 2;
    int hi = lo + 1;
    double l = s->log_sigmas[lo], h = s->log_sigmas[hi];
    double w = (l - ls) / (l - h);
    if (w < 0) w = 0;
    if (w > 1) w = 1;
    return (1 - w) * lo + w * hi;
}

void sd_karras_sigmas(double sigma_min, double sigma_max, int n, double *out) {
    const double rho = 7.0;
    double min_inv = pow(sigma_min, 1.0 / rho), max_inv = pow(sigma_max, 1.0 / rho);
    double step = n > 1 ? 1.0 / (double)(n - 1) : 0.0;
    for (int k = 0; k < n; k++) {
        double ramp = (double)k * step;
        if (n > 1 && k == n - 1) ramp = 1.0; /* np.linspace sets the endpoint exactly */
        out[k] = pow(max_inv + ramp * (min_inv - max_inv), rho);
    }
}

/* round(arange(N, 0, -N/n)) - 1, first n values, descending. */
static void trailing(int N, int n, double *out) {
    const double step = -(double)N / (double)n;
    const double start = (double)N, second = start + step, delta = second - start;
    for (int i = 0; i < n; i++) {
        double v = i == 0 ? start : i == 1 ? second : start + (double)i * delta;
        out[i] = rint(v) - 1;
    }
}

int sd_schedule_timesteps(struct sd_ctx *ctx, const struct sd_noise_schedule *s, enum sd_timestep_rule rule,
                          enum sd_spacing spacing, int n, int steps_offset, double *out) {
    const int N = s->n_train;
    if (n < 1 || n > N)
        return sd_errorf(ctx, SD_ERR_INVALID, "steps must be in 1..%d, got %d", N, n);
    switch (spacing) {
    case SD_SPACING_LINSPACE:
        if (rule == SD_TS_DPM) {
            const double step = (double)(N - 1) / (double)n; /* linspace(0, N-1, n+1) */
            for (int i = 0; i < n; i++) out[i] = i == 0 ? (double)(N - 1) : rint((double)(n - i) * step);
        } else {
            const double step = n > 1 ? (double)(N - 1) / (double)(n - 1) : 0.0;
            for (int i = 0; i < n; i++) {
                int k = n - 1 - i;
                double v = (n > 1 && k == n - 1) ? (double)(N - 1) : (double)k * step;
                out[i] = rule == SD_TS_FLOAT ? (double)(float)v : rint(v);
            }
        }
        return SD_OK;
    case SD_SPACING_LEADING: {
        if (rule == SD_TS_DPM) {
            int ratio = N / (n + 1);
            for (int i = 0; i < n; i++) out[i] = (double)((n - i) * ratio + steps_offset);
        } else {
            int ratio = N / n;
            for (int i = 0; i < n; i++) out[i] = (double)((n - 1 - i) * ratio + steps_offset);
        }
        return SD_OK;
    }
    case SD_SPACING_TRAILING:
        trailing(N, n, out);
        return SD_OK;
    default:
        return sd_errorf(ctx, SD_ERR_INVALID, "timestep spacing %d is not one of leading, linspace, trailing",
                         (int)spacing);
    }
}
