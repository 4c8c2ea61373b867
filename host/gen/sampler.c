/* sampler.c - the sampler loop, names, lists and helpers shared by the
 * per-kind files (see sampler.h for the contract, sampler_impl.h for the
 * private struct). */
#include "sampler_impl.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct sd_sampler_ops *const kind_ops[SD_SAMPLER_COUNT] = {
    [SD_SAMPLER_EULER] = &sd_sampler_euler_ops,
    [SD_SAMPLER_EULER_A] = &sd_sampler_euler_a_ops,
    [SD_SAMPLER_DDIM] = &sd_sampler_ddim_ops,
    [SD_SAMPLER_DPMPP_2M] = &sd_sampler_dpmpp_2m_ops,
    [SD_SAMPLER_DPMPP_2M_SDE] = &sd_sampler_dpmpp_2m_ops,
    [SD_SAMPLER_LCM] = &sd_sampler_lcm_ops,
    [SD_SAMPLER_PNDM] = &sd_sampler_pndm_ops,
    [SD_SAMPLER_LMS] = &sd_sampler_lms_ops,
};

static const char *const display_names[SD_SAMPLER_COUNT] = {
    [SD_SAMPLER_EULER] = "Euler",       [SD_SAMPLER_EULER_A] = "Euler a",
    [SD_SAMPLER_DDIM] = "DDIM",         [SD_SAMPLER_DPMPP_2M] = "DPM++ 2M",
    [SD_SAMPLER_DPMPP_2M_SDE] = "DPM++ 2M SDE", [SD_SAMPLER_LCM] = "LCM",
    [SD_SAMPLER_PNDM] = "PLMS",         [SD_SAMPLER_LMS] = "LMS",
};

static bool kind_has_karras(enum sd_sampler_kind k) {
    return k == SD_SAMPLER_EULER || k == SD_SAMPLER_LMS || k == SD_SAMPLER_DPMPP_2M || k == SD_SAMPLER_DPMPP_2M_SDE;
}

void sd_sampler_params_init(struct sd_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->kind = SD_SAMPLER_EULER_A;
    p->steps = 20;
    p->spacing = SD_SPACING_DEFAULT;
    p->steps_offset = 1;
    p->karras = false;
    p->prediction = SD_PRED_EPSILON;
    p->eta = 0.0f;
    p->clip_sample = false;
    p->lcm_original_steps = 50;
}

const char *sd_sampler_display_name(enum sd_sampler_kind kind, bool karras) {
    static const char *const karras_names[SD_SAMPLER_COUNT] = {
        [SD_SAMPLER_EULER] = "Euler Karras", [SD_SAMPLER_DPMPP_2M] = "DPM++ 2M Karras",
        [SD_SAMPLER_DPMPP_2M_SDE] = "DPM++ 2M SDE Karras", [SD_SAMPLER_LMS] = "LMS Karras",
    };
    if ((int)kind < 0 || kind >= SD_SAMPLER_COUNT) return "?";
    if (karras && karras_names[kind]) return karras_names[kind];
    return display_names[kind];
}

enum sd_spacing sd_sampler_default_spacing(enum sd_sampler_kind kind) {
    switch (kind) {
    case SD_SAMPLER_DDIM:
    case SD_SAMPLER_PNDM:
    case SD_SAMPLER_LCM: return SD_SPACING_LEADING;
    default: return SD_SPACING_LINSPACE;
    }
}

/* Aliases after normalisation (lower case, no ' ', '_', '-'). A trailing
 * "karras" (or "_ka" for k-diffusion names) is split off first. */
static const struct { const char *alias; enum sd_sampler_kind kind; } aliases[] = {
    {"euler", SD_SAMPLER_EULER},
    {"keuler", SD_SAMPLER_EULER},
    {"eulerdiscrete", SD_SAMPLER_EULER},
    {"eulerdiscretescheduler", SD_SAMPLER_EULER},
    {"eulera", SD_SAMPLER_EULER_A},
    {"keulera", SD_SAMPLER_EULER_A},
    {"eulerancestral", SD_SAMPLER_EULER_A},
    {"keulerancestral", SD_SAMPLER_EULER_A},
    {"eulerancestraldiscrete", SD_SAMPLER_EULER_A},
    {"eulerancestraldiscretescheduler", SD_SAMPLER_EULER_A},
    {"ddim", SD_SAMPLER_DDIM},
    {"ddimscheduler", SD_SAMPLER_DDIM},
    {"dpm++2m", SD_SAMPLER_DPMPP_2M},
    {"dpmpp2m", SD_SAMPLER_DPMPP_2M},
    {"kdpmpp2m", SD_SAMPLER_DPMPP_2M},
    {"dpmsolvermultistep", SD_SAMPLER_DPMPP_2M},
    {"dpmsolvermultistepscheduler", SD_SAMPLER_DPMPP_2M},
    {"dpm++2msde", SD_SAMPLER_DPMPP_2M_SDE},
    {"dpmpp2msde", SD_SAMPLER_DPMPP_2M_SDE},
    {"kdpmpp2msde", SD_SAMPLER_DPMPP_2M_SDE},
    {"lcm", SD_SAMPLER_LCM},
    {"lcmscheduler", SD_SAMPLER_LCM},
    {"plms", SD_SAMPLER_PNDM},
    {"pndm", SD_SAMPLER_PNDM},
    {"pndmscheduler", SD_SAMPLER_PNDM},
    {"lms", SD_SAMPLER_LMS},
    {"klms", SD_SAMPLER_LMS},
    {"lmsdiscrete", SD_SAMPLER_LMS},
    {"lmsdiscretescheduler", SD_SAMPLER_LMS},
};

#define VALID_SAMPLER_NAMES                                                                                 \
    "Euler, Euler a, DDIM, DPM++ 2M, DPM++ 2M Karras, DPM++ 2M SDE, DPM++ 2M SDE Karras, LCM, PLMS (PNDM), " \
    "LMS, LMS Karras, Euler Karras; aliases k_euler, k_euler_a, k_euler_ancestral, k_dpmpp_2m, "           \
    "k_dpmpp_2m_ka, k_dpmpp_2m_sde, k_dpmpp_2m_sde_ka, k_lms, k_lms_ka, euler_ancestral, dpmpp_2m, "       \
    "dpmpp_2m_sde, and diffusers class names such as EulerDiscreteScheduler; case, spaces, '_' and '-' "    \
    "are ignored"

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

int sd_sampler_parse_name(struct sd_ctx *ctx, const char *name, struct sd_sampler_params *p) {
    char norm[64];
    size_t n = 0;
    bool karras = false, ka = false;
    if (!name) return sd_errorf(ctx, SD_ERR_INVALID, "no sampler name given; valid names: " VALID_SAMPLER_NAMES);
    for (const char *c = name; *c; c++) {
        if (*c == ' ' || *c == '_' || *c == '-' || *c == '\t') continue;
        if (n + 1 >= sizeof norm) goto unknown;
        norm[n++] = (char)tolower((unsigned char)*c);
    }
    norm[n] = 0;
    if (ends_with(norm, n, "karras") && n > 6) {
        karras = true;
        n -= 6;
    } else if (norm[0] == 'k' && ends_with(norm, n, "ka") && n > 2) {
        /* k_dpmpp_2m_ka; try without the suffix only if the whole name is unknown */
        ka = true;
    }
    norm[n] = 0;
    for (int pass = 0; pass < (ka ? 2 : 1); pass++) {
        if (pass == 1) {
            n -= 2;
            norm[n] = 0;
            karras = true;
        }
        for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++) {
            if (strcmp(norm, aliases[i].alias) != 0) continue;
            enum sd_sampler_kind k = aliases[i].kind;
            if (karras && !kind_has_karras(k))
                return sd_errorf(ctx, SD_ERR_INVALID,
                                 "sampler '%s': Karras sigmas are not available for %s (only Euler, LMS, "
                                 "DPM++ 2M and DPM++ 2M SDE have them)",
                                 name, display_names[k]);
            p->kind = k;
            p->karras = karras;
            return SD_OK;
        }
    }
unknown:
    return sd_errorf(ctx, SD_ERR_INVALID, "unknown sampler '%s'; valid names: " VALID_SAMPLER_NAMES, name);
}

enum sd_spacing sd_sampler_spacing(const struct sd_sampler *s) {
    return s->p.spacing == SD_SPACING_DEFAULT ? sd_sampler_default_spacing(s->p.kind) : s->p.spacing;
}

int sd_sampler_alloc_lists(struct sd_sampler *s, int n_ts, bool with_sigmas) {
    s->n_ts = n_ts;
    s->timesteps = calloc((size_t)n_ts + 1, sizeof *s->timesteps);
    if (with_sigmas) s->sigmas = calloc((size_t)n_ts + 1, sizeof *s->sigmas);
    if (!s->timesteps || (with_sigmas && !s->sigmas))
        return sd_errorf(s->ctx, SD_ERR_NOMEM, "sampler: out of memory for %d timesteps", n_ts);
    return SD_OK;
}

int sd_sampler_setup_sigma_list(struct sd_sampler *s, bool allow_karras) {
    const int n = s->p.steps;
    const enum sd_spacing sp = sd_sampler_spacing(s);
    int rc = sd_sampler_alloc_lists(s, n, true);
    if (rc) return rc;
    rc = sd_schedule_timesteps(s->ctx, &s->sched, SD_TS_FLOAT, sp, n, s->p.steps_offset, s->timesteps);
    if (rc) return rc;
    double *sig = malloc((size_t)n * sizeof *sig);
    if (!sig) return sd_errorf(s->ctx, SD_ERR_NOMEM, "sampler: out of memory");
    for (int i = 0; i < n; i++) sig[i] = sd_sigma_at(&s->sched, s->timesteps[i]);
    if (allow_karras && s->p.karras) {
        /* sigma_min/max from the spaced list (not the full table), §11.5.
         * Euler stores the fractional t as float32, LMS keeps float64. */
        double smin = sig[n - 1], smax = sig[0];
        sd_karras_sigmas(smin, smax, n, sig);
        for (int i = 0; i < n; i++) {
            double t = sd_sigma_to_t(&s->sched, sig[i]);
            s->timesteps[i] = s->p.kind == SD_SAMPLER_LMS ? t : (double)(float)t;
        }
    }
    float mx = 0;
    for (int i = 0; i < n; i++) {
        s->sigmas[i] = (float)sig[i];
        if (s->sigmas[i] > mx) mx = s->sigmas[i];
    }
    s->sigmas[n] = 0.0f;
    free(sig);
    if (sp == SD_SPACING_LINSPACE || sp == SD_SPACING_TRAILING) {
        s->init_sigma = mx;
    } else {
        float sq = mx * mx;
        s->init_sigma = sqrtf(sq + 1.0f);
    }
    return SD_OK;
}

float *sd_sampler_hist_push(struct sd_sampler *s, int keep) {
    if (s->n_hist >= keep) {
        float *oldest = s->hist[0];
        for (int i = 1; i < s->n_hist; i++) s->hist[i - 1] = s->hist[i];
        s->hist[s->n_hist - 1] = oldest;
        return oldest;
    }
    return s->hist[s->n_hist++];
}

void sd_sampler_x0_ve(const struct sd_sampler *s, float sigma, const float *x, const float *m, float *x0) {
    const int64_t n = s->n;
    if (s->p.prediction == SD_PRED_V) {
        const float sq = sigma * sigma;
        const float d = sq + 1.0f;
        const float c = -sigma / sqrtf(d);
        for (int64_t j = 0; j < n; j++) {
            float a = m[j] * c;
            float b = x[j] / d;
            x0[j] = a + b;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            float sm = sigma * m[j];
            x0[j] = x[j] - sm;
        }
    }
}

void sd_sampler_x0_vp(const struct sd_sampler *s, int t, const float *x, const float *m, float *x0) {
    const int64_t n = s->n;
    const float a = s->sched.alphas_cumprod[t];
    const float b = 1.0f - a;
    const float sa = sqrtf(a), sb = sqrtf(b);
    if (s->p.prediction == SD_PRED_V) {
        for (int64_t j = 0; j < n; j++) {
            float u = sa * x[j];
            float v = sb * m[j];
            x0[j] = u - v;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            float v = sb * m[j];
            float u = x[j] - v;
            x0[j] = u / sa;
        }
    }
}

struct sd_sampler *sd_sampler_new(struct sd_ctx *ctx, const struct sd_sampler_params *p,
                                  const struct sd_noise_schedule *sched, int64_t n) {
    struct sd_sampler *s = NULL;
    if ((int)p->kind < 0 || p->kind >= SD_SAMPLER_COUNT) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler: unknown kind %d", (int)p->kind);
        return NULL;
    }
    const char *nm = display_names[p->kind];
    if (p->steps < 1 || p->steps > SD_TRAIN_STEPS) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: steps must be in 1..%d, got %d", nm, SD_TRAIN_STEPS, p->steps);
        return NULL;
    }
    if (n <= 0) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: latent size must be positive, got %lld", nm, (long long)n);
        return NULL;
    }
    if (p->karras && !kind_has_karras(p->kind)) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: Karras sigmas are only available for Euler, LMS and DPM++ 2M", nm);
        return NULL;
    }
    if (p->eta != 0.0f && p->kind != SD_SAMPLER_DDIM) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: eta is a DDIM parameter (got eta %g)", nm, (double)p->eta);
        return NULL;
    }
    if (!(p->eta >= 0.0f && p->eta <= 1.0f)) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: eta must be in [0, 1], got %g", nm, (double)p->eta);
        return NULL;
    }
    if ((int)p->spacing < SD_SPACING_DEFAULT || p->spacing > SD_SPACING_TRAILING) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: unknown timestep spacing %d", nm, (int)p->spacing);
        return NULL;
    }
    if (p->prediction != SD_PRED_EPSILON && p->prediction != SD_PRED_V) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: unknown prediction type %d", nm, (int)p->prediction);
        return NULL;
    }
    if (p->steps_offset < 0 || p->steps_offset >= SD_TRAIN_STEPS) {
        sd_errorf(ctx, SD_ERR_INVALID, "sampler %s: steps_offset must be in 0..%d, got %d", nm, SD_TRAIN_STEPS - 1,
                  p->steps_offset);
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->ctx = ctx;
    s->p = *p;
    s->ops = kind_ops[p->kind];
    s->n = n;
    if (sched) s->sched = *sched;
    else sd_noise_schedule_init_sd(&s->sched);
    s->init_sigma = 1.0f;
    size_t bytes = (size_t)n * sizeof(float);
    s->x_in = sd_malloc_aligned(bytes);
    s->m = sd_malloc_aligned(bytes);
    s->x0 = sd_malloc_aligned(bytes);
    s->noise = sd_malloc_aligned(bytes);
    s->saved = sd_malloc_aligned(bytes);
    if (!s->x_in || !s->m || !s->x0 || !s->noise || !s->saved) goto nomem;
    for (int i = 0; i < SD_SAMPLER_HIST; i++)
        if (!(s->hist[i] = sd_malloc_aligned(bytes))) goto nomem;
    if (s->ops->setup(s) != SD_OK) goto fail;
    return s;
nomem:
    sd_errorf(ctx, SD_ERR_NOMEM, "sampler %s: out of memory for %lld latent floats", nm, (long long)n);
fail:
    sd_sampler_free(s);
    return NULL;
}

void sd_sampler_free(struct sd_sampler *s) {
    if (!s) return;
    free(s->timesteps);
    free(s->sigmas);
    sd_free_aligned(s->x_in);
    sd_free_aligned(s->m);
    sd_free_aligned(s->x0);
    sd_free_aligned(s->noise);
    sd_free_aligned(s->saved);
    for (int i = 0; i < SD_SAMPLER_HIST; i++) sd_free_aligned(s->hist[i]);
    free(s);
}

int sd_sampler_n_timesteps(const struct sd_sampler *s) { return s->n_ts; }

float sd_sampler_timestep(const struct sd_sampler *s, int i) {
    return i >= 0 && i < s->n_ts ? (float)s->timesteps[i] : NAN;
}

float sd_sampler_sigma(const struct sd_sampler *s, int i) {
    if (i < 0 || i > s->n_ts) return NAN;
    if (s->sigmas) return s->sigmas[i];
    if (i == s->n_ts) return s->sched.sigmas[0];
    return s->sched.sigmas[(int)s->timesteps[i]];
}

float sd_sampler_init_noise_sigma(const struct sd_sampler *s) { return s->init_sigma; }

int sd_sampler_start_index(struct sd_sampler *s, double strength) {
    const int n = s->p.steps;
    if (!(strength > 0.0 && strength <= 1.0)) {
        sd_errorf(s->ctx, SD_ERR_INVALID, "strength must be in (0, 1], got %g", strength);
        return -1;
    }
    int init = (int)floor((double)n * strength);
    if (init > n) init = n;
    int t_start = n - init;
    if (t_start < 0) t_start = 0;
    if (t_start >= s->n_ts) {
        sd_errorf(s->ctx, SD_ERR_INVALID, "strength %g with %d steps leaves no denoising step (need steps*strength >= 1)",
                  strength, n);
        return -1;
    }
    return t_start;
}

int sd_sampler_add_noise(struct sd_sampler *s, int index, const float *x0, const float *noise, float *out) {
    const int64_t n = s->n;
    if (index < 0 || index > s->n_ts)
        return sd_errorf(s->ctx, SD_ERR_INVALID, "add_noise: index %d outside 0..%d", index, s->n_ts);
    if (index == s->n_ts) { /* the end of the run: the clean latent */
        if (out != x0) memmove(out, x0, (size_t)n * sizeof *out);
        return SD_OK;
    }
    switch (s->ops->noise) {
    case SD_NOISE_VP: {
        const float a = s->sched.alphas_cumprod[(int)s->timesteps[index]];
        const float sa = sqrtf(a), sb = sqrtf(1.0f - a);
        for (int64_t j = 0; j < n; j++) {
            float u = sa * x0[j];
            float v = sb * noise[j];
            out[j] = u + v;
        }
        break;
    }
    case SD_NOISE_VE: {
        const float sg = s->sigmas[index];
        for (int64_t j = 0; j < n; j++) {
            float v = noise[j] * sg;
            out[j] = x0[j] + v;
        }
        break;
    }
    case SD_NOISE_DPM: {
        const float sg = s->sigmas[index];
        const float sq = sg * sg;
        const float alpha = 1.0f / sqrtf(sq + 1.0f);
        const float st = sg * alpha;
        for (int64_t j = 0; j < n; j++) {
            float u = alpha * x0[j];
            float v = st * noise[j];
            out[j] = u + v;
        }
        break;
    }
    }
    return SD_OK;
}

void sd_sampler_init_latents(struct sd_sampler *s, struct sd_rng *rng, float *x) {
    sd_rng_randn(rng, x, s->n);
    if (s->init_sigma != 1.0f)
        for (int64_t j = 0; j < s->n; j++) x[j] = x[j] * s->init_sigma;
}

static bool sampler_needs_rng(const struct sd_sampler *s) {
    switch (s->p.kind) {
    case SD_SAMPLER_EULER_A:
    case SD_SAMPLER_DPMPP_2M_SDE:
    case SD_SAMPLER_LCM: return true;
    case SD_SAMPLER_DDIM: return s->p.eta > 0.0f;
    default: return false;
    }
}

int sd_sampler_run(struct sd_sampler *s, float *x, int start_index, sd_denoise_fn denoise, void *user,
                   struct sd_rng *rng, sd_step_fn on_step, void *step_user) {
    const int64_t n = s->n;
    const char *nm = sd_sampler_display_name(s->p.kind, s->p.karras);
    if (start_index < 0 || start_index >= s->n_ts)
        return sd_errorf(s->ctx, SD_ERR_INVALID, "sampler %s: start index %d outside 0..%d", nm, start_index,
                         s->n_ts - 1);
    if (!denoise) return sd_errorf(s->ctx, SD_ERR_INVALID, "sampler %s: no denoise callback", nm);
    if (!rng && sampler_needs_rng(s))
        return sd_errorf(s->ctx, SD_ERR_INVALID, "sampler %s draws noise every step and needs an rng", nm);
    s->n_hist = 0;
    s->counter = 0;
    const int n_run = s->n_ts - start_index;
    for (int i = start_index; i < s->n_ts; i++) {
        const float t = (float)s->timesteps[i];
        const float *in = x;
        if (s->ops->sigma_space) {
            const float sg = s->sigmas[i];
            const float sq = sg * sg;
            const float d = sqrtf(sq + 1.0f);
            for (int64_t j = 0; j < n; j++) s->x_in[j] = x[j] / d;
            in = s->x_in;
        }
        int rc = denoise(user, in, t, s->m);
        if (rc != SD_OK) {
            if (s->ctx && s->ctx->status == SD_OK) sd_errorf(s->ctx, rc, "denoise callback failed (status %d)", rc);
            sd_error_wrap(s->ctx, "sampler %s step %d/%d (t=%g)", nm, i - start_index + 1, n_run, (double)t);
            return rc;
        }
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(s->m[j]))
                return sd_errorf(s->ctx, SD_ERR_BACKEND,
                                 "sampler %s step %d/%d (t=%g): model output has a non-finite value (%g at %lld)",
                                 nm, i - start_index + 1, n_run, (double)t, (double)s->m[j], (long long)j);
        rc = s->ops->step(s, i, s->m, x, rng);
        if (rc != SD_OK) return rc;
        if (on_step) {
            struct sd_step_info info = {
                .step = i - start_index, .n_steps = n_run, .index = i, .t = t, .n = n, .x = x, .x0 = s->x0,
            };
            if (on_step(step_user, &info) != 0)
                return sd_errorf(s->ctx, SD_ERR_CANCELLED, "sampler %s: cancelled after step %d/%d", nm,
                                 i - start_index + 1, n_run);
        }
    }
    return SD_OK;
}
