/* test_samplers.c - noise schedule and samplers.
 *
 * References: sd-reference §10 numbers (schedule, spaced timesteps, Karras
 * sigmas, PNDM and LCM lists); tests/golden/samplers.bin from
 * tests/reference/gen_sampler_goldens.py: whole runs of diffusers 0.31
 * schedulers (torch 2.5.1 CPU generator) driven by the fake model below, for
 * every sampler kind, spacing, prediction type and img2img strength; and an
 * analytic check (a perfect denoiser for one point x0 makes Euler, Euler a
 * and DPM++ 2M land on x0).
 */
#include "golden.h"
#include "sampler.h"
#include "test.h"

#define SEED 1234
#define NLAT 256 /* (1, 4, 8, 8) */

/* ---- schedule numbers (§10) ------------------------------------------- */

static bool near(double got, double ref, double rtol) { return fabs(got - ref) <= rtol * fabs(ref) + 1e-9; }

static void test_schedule_numbers(void) {
    struct sd_noise_schedule s;
    sd_noise_schedule_init_sd(&s);
    CHECK(near(s.betas[0], 0.00085, 1e-6) && near(s.betas[999], 0.012, 1e-6), "betas[0] %.8g betas[999] %.8g",
          s.betas[0], s.betas[999]);
    CHECK(near(s.alphas_cumprod[0], 0.99915, 1e-6) && near(s.alphas_cumprod[999], 0.0046600985, 2e-6),
          "acp[0] %.8g acp[999] %.10g", s.alphas_cumprod[0], s.alphas_cumprod[999]);
    CHECK(near(s.sigmas[0], 0.029167, 2e-5) && near(s.sigmas[999], 14.614641, 1e-6), "sigma[0] %.7g sigma[999] %.8g",
          s.sigmas[0], s.sigmas[999]);
    CHECK(near(sd_sigma_at(&s, 1), 0.041314, 2e-5), "sigma at t=1: %.7g", sd_sigma_at(&s, 1));
    CHECK(near(sd_sigma_at(&s, 500.5), 0.5 * (s.sigmas[500] + (double)s.sigmas[501]), 1e-12) &&
              sd_sigma_at(&s, -3) == s.sigmas[0] && sd_sigma_at(&s, 1200) == s.sigmas[999],
          "sigma interpolation between and beyond table entries");
    CHECK(near(sd_sigma_to_t(&s, s.sigmas[500]), 500, 1e-6) && near(sd_sigma_to_t(&s, 1e-6), 0, 0) &&
              near(sd_sigma_to_t(&s, 100), 999, 0),
          "sigma_to_t inverts the table and clamps (t(sigma[500]) = %.6f)", sd_sigma_to_t(&s, s.sigmas[500]));
    struct sd_ctx ctx = {0};
    CHECK(sd_noise_schedule_init(&ctx, &s, SD_BETA_SCALED_LINEAR, 0.0, 0.012) == SD_ERR_INVALID &&
              strstr(ctx.msg, "betas"),
          "invalid beta range rejected: %s", ctx.msg);
}

static int check_list(const char *name, const double *got, const double *ref, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (fabs(got[i] - ref[i]) > tol) {
            printf("  %s[%d]: got %.6f ref %.6f\n", name, i, got[i], ref[i]);
            return 1;
        }
    return 0;
}

static void test_spacing(void) {
    struct sd_noise_schedule s;
    sd_noise_schedule_init_sd(&s);
    double t[1000], ref[60];
    struct sd_ctx ctx = {0};
    sd_schedule_timesteps(&ctx, &s, SD_TS_INT, SD_SPACING_LEADING, 50, 1, t);
    for (int i = 0; i < 50; i++) ref[i] = 981 - 20 * i;
    CHECK(!check_list("leading50", t, ref, 50, 0), "leading 50: 981, 961, ..., 1");
    sd_schedule_timesteps(&ctx, &s, SD_TS_INT, SD_SPACING_LEADING, 20, 1, t);
    for (int i = 0; i < 20; i++) ref[i] = 951 - 50 * i;
    CHECK(!check_list("leading20", t, ref, 20, 0), "leading 20: 951, 901, ..., 1");
    sd_schedule_timesteps(&ctx, &s, SD_TS_FLOAT, SD_SPACING_LINSPACE, 20, 1, t);
    CHECK(t[0] == 999 && near(t[1], 946.42105, 1e-7) && near(t[2], 893.8421, 1e-7) && near(t[18], 52.578949, 1e-7) &&
              t[19] == 0,
          "linspace 20 (float): 999, %.5f, %.4f, ..., %.4f, 0", t[1], t[2], t[18]);
    sd_schedule_timesteps(&ctx, &s, SD_TS_INT, SD_SPACING_TRAILING, 20, 1, t);
    for (int i = 0; i < 20; i++) ref[i] = 999 - 50 * i;
    CHECK(!check_list("trailing20", t, ref, 20, 0), "trailing 20: 999, 949, ..., 49");
    sd_schedule_timesteps(&ctx, &s, SD_TS_DPM, SD_SPACING_LEADING, 20, 1, t);
    for (int i = 0; i < 20; i++) ref[i] = 941 - 47 * i;
    CHECK(!check_list("dpm_leading20", t, ref, 20, 0), "DPM leading 20: 941, 894, ..., 48");
    sd_schedule_timesteps(&ctx, &s, SD_TS_DPM, SD_SPACING_LINSPACE, 20, 1, t);
    CHECK(t[0] == 999 && t[1] == 949 && t[2] == 899 && t[18] == 100 && t[19] == 50,
          "DPM linspace 20: 999, 949, 899, ..., 100, 50");
    sd_schedule_timesteps(&ctx, &s, SD_TS_DPM, SD_SPACING_LINSPACE, 6, 1, t);
    CHECK(t[5] == 166 && t[4] == 333 && t[2] == 666, "DPM linspace 6 rounds 166.5 half to even (%g %g %g)", t[5],
          t[4], t[2]);
    sd_schedule_timesteps(&ctx, &s, SD_TS_INT, SD_SPACING_TRAILING, 61, 1, t);
    CHECK(t[60] == 15 && t[0] == 999, "trailing 61 keeps 61 entries (last %g)", t[60]);
    CHECK(sd_schedule_timesteps(&ctx, &s, SD_TS_INT, SD_SPACING_LEADING, 0, 1, t) == SD_ERR_INVALID &&
              sd_schedule_timesteps(&ctx, &s, SD_TS_INT, SD_SPACING_LEADING, 1001, 1, t) == SD_ERR_INVALID,
          "steps 0 and 1001 rejected: %s", ctx.msg);
}

static struct sd_sampler *mk(const char *name, int steps, enum sd_spacing sp, struct sd_ctx *ctx) {
    struct sd_sampler_params p;
    sd_sampler_params_init(&p);
    if (sd_sampler_parse_name(ctx, name, &p) != SD_OK) return NULL;
    p.steps = steps;
    p.spacing = sp;
    return sd_sampler_new(ctx, &p, NULL, NLAT);
}

static void test_sampler_lists(void) {
    struct sd_ctx ctx = {0};
    struct sd_sampler *s = mk("Euler", 50, SD_SPACING_LEADING, &ctx);
    CHECK(s && near(sd_sampler_sigma(s, 0), 13.120411, 1e-6) && near(sd_sampler_init_noise_sigma(s), 13.158464, 1e-6),
          "Euler leading 50: sigma(981) %.7g, init_noise_sigma %.7g", sd_sampler_sigma(s, 0),
          sd_sampler_init_noise_sigma(s));
    CHECK(s && near(sd_sampler_sigma(s, 49), 0.041314, 2e-5) && sd_sampler_sigma(s, 50) == 0.0f,
          "Euler leading 50: sigma(1) %.6g, final sigma 0", sd_sampler_sigma(s, 49));
    sd_sampler_free(s);
    s = mk("Euler", 20, SD_SPACING_LEADING, &ctx);
    CHECK(s && near(sd_sampler_sigma(s, 0), 11.028331, 1e-6) && near(sd_sampler_init_noise_sigma(s), 11.073576, 1e-6),
          "Euler leading 20: sigma(951) %.7g, init_noise_sigma %.7g", sd_sampler_sigma(s, 0),
          sd_sampler_init_noise_sigma(s));
    sd_sampler_free(s);
    s = mk("Euler a", 20, SD_SPACING_DEFAULT, &ctx);
    CHECK(s && near(sd_sampler_init_noise_sigma(s), 14.614641, 1e-6) && sd_sampler_timestep(s, 0) == 999.0f,
          "Euler a default (linspace): init_noise_sigma %.8g", sd_sampler_init_noise_sigma(s));
    sd_sampler_free(s);
    s = mk("DPM++ 2M Karras", 20, SD_SPACING_DEFAULT, &ctx);
    static const int kt[20] = {999, 962, 921, 876, 827, 772, 710, 640, 561, 474, 380, 285, 197, 123, 69, 35, 15, 6, 2, 0};
    int bad = 0;
    for (int i = 0; s && i < 20; i++) bad += sd_sampler_timestep(s, i) != (float)kt[i];
    CHECK(s && !bad, "DPM++ 2M Karras 20 timesteps: 999, 962, 921, ..., 6, 2, 0");
    CHECK(s && near(sd_sampler_sigma(s, 0), 14.614641, 1e-6) && near(sd_sampler_sigma(s, 1), 11.725365, 1e-6) &&
              near(sd_sampler_sigma(s, 18), 0.048481, 2e-5) && near(sd_sampler_sigma(s, 19), 0.029167, 2e-5),
          "DPM++ 2M Karras 20 sigmas: %.8g %.8g ... %.6g %.6g", sd_sampler_sigma(s, 0), sd_sampler_sigma(s, 1),
          sd_sampler_sigma(s, 18), sd_sampler_sigma(s, 19));
    CHECK(s && sd_sampler_init_noise_sigma(s) == 1.0f, "DPM init_noise_sigma 1");
    sd_sampler_free(s);
    s = mk("PLMS", 50, SD_SPACING_DEFAULT, &ctx);
    bad = !s || sd_sampler_n_timesteps(s) != 51;
    static const float pt[6] = {981, 961, 961, 941, 921, 901};
    for (int i = 0; !bad && i < 6; i++) bad += sd_sampler_timestep(s, i) != pt[i];
    bad += !s || sd_sampler_timestep(s, 48) != 41 || sd_sampler_timestep(s, 49) != 21 || sd_sampler_timestep(s, 50) != 1;
    CHECK(!bad, "PNDM 50 steps: 51 calls 981, 961, 961, 941, 921, ..., 41, 21, 1");
    sd_sampler_free(s);
    static const struct { int n; float t[8]; } lcm[] = {
        {4, {999, 759, 499, 259}}, {8, {999, 879, 759, 639, 499, 379, 259, 139}}, {2, {999, 499}}};
    for (int c = 0; c < 3; c++) {
        s = mk("LCM", lcm[c].n, SD_SPACING_DEFAULT, &ctx);
        bad = !s;
        for (int i = 0; !bad && i < lcm[c].n; i++) bad += sd_sampler_timestep(s, i) != lcm[c].t[i];
        CHECK(!bad, "LCM %d steps: %g, %g, ...", lcm[c].n, lcm[c].t[0], lcm[c].t[1]);
        sd_sampler_free(s);
    }
    s = mk("DDIM", 50, SD_SPACING_DEFAULT, &ctx);
    /* diffusers: DDIM 50 steps, strength 0.8 -> timesteps[10:] = 781, 761, ...
     * (sd-reference §5.10 says 801, which is PNDM's list with its duplicate) */
    CHECK(s && sd_sampler_start_index(s, 0.8) == 10 && sd_sampler_timestep(s, 10) == 781,
          "img2img DDIM 50 steps strength 0.8: start at index 10, t=781");
    CHECK(s && sd_sampler_start_index(s, 0.01) == -1 && strstr(ctx.msg, "no denoising step"),
          "strength leaving no step rejected: %s", ctx.msg);
    sd_sampler_free(s);
}

/* ---- names and parameter errors ---------------------------------------- */

static void test_names(void) {
    static const struct { const char *name; enum sd_sampler_kind kind; bool karras; } ok[] = {
        {"Euler", SD_SAMPLER_EULER, false},          {"euler a", SD_SAMPLER_EULER_A, false},
        {"Euler a", SD_SAMPLER_EULER_A, false},      {"k_euler_a", SD_SAMPLER_EULER_A, false},
        {"k_euler_ancestral", SD_SAMPLER_EULER_A, false}, {"k_euler", SD_SAMPLER_EULER, false},
        {"DDIM", SD_SAMPLER_DDIM, false},            {"DPM++ 2M", SD_SAMPLER_DPMPP_2M, false},
        {"dpm++ 2m karras", SD_SAMPLER_DPMPP_2M, true}, {"k_dpmpp_2m", SD_SAMPLER_DPMPP_2M, false},
        {"k_dpmpp_2m_ka", SD_SAMPLER_DPMPP_2M, true},   {"DPM++ 2M SDE Karras", SD_SAMPLER_DPMPP_2M_SDE, true},
        {"dpmpp_2m_sde", SD_SAMPLER_DPMPP_2M_SDE, false}, {"LCM", SD_SAMPLER_LCM, false},
        {"PLMS", SD_SAMPLER_PNDM, false},            {"pndm", SD_SAMPLER_PNDM, false},
        {"LMS", SD_SAMPLER_LMS, false},              {"k_lms", SD_SAMPLER_LMS, false},
        {"LMS Karras", SD_SAMPLER_LMS, true},        {"euler_ancestral", SD_SAMPLER_EULER_A, false},
        {"EulerDiscreteScheduler", SD_SAMPLER_EULER, false}, {"DPMSolverMultistepScheduler", SD_SAMPLER_DPMPP_2M, false},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        struct sd_ctx ctx = {0};
        struct sd_sampler_params p;
        sd_sampler_params_init(&p);
        if (sd_sampler_parse_name(&ctx, ok[i].name, &p) != SD_OK || p.kind != ok[i].kind || p.karras != ok[i].karras) {
            printf("  '%s' -> kind %d karras %d (%s)\n", ok[i].name, p.kind, p.karras, ctx.msg);
            bad++;
        }
    }
    CHECK(!bad, "%zu sampler names and aliases parse (case-insensitive)", sizeof ok / sizeof *ok);
    struct sd_ctx ctx = {0};
    struct sd_sampler_params p;
    sd_sampler_params_init(&p);
    CHECK(sd_sampler_parse_name(&ctx, "Heun", &p) == SD_ERR_INVALID && strstr(ctx.msg, "unknown sampler 'Heun'") &&
              strstr(ctx.msg, "DPM++ 2M Karras") && strstr(ctx.msg, "k_euler_a"),
          "unknown name lists the valid names: %.80s...", ctx.msg);
    CHECK(sd_sampler_parse_name(&ctx, "DDIM Karras", &p) == SD_ERR_INVALID && strstr(ctx.msg, "Karras"),
          "Karras on DDIM rejected: %s", ctx.msg);
    CHECK(strcmp(sd_sampler_display_name(SD_SAMPLER_DPMPP_2M, true), "DPM++ 2M Karras") == 0 &&
              strcmp(sd_sampler_display_name(SD_SAMPLER_EULER_A, false), "Euler a") == 0,
          "display names");

    sd_sampler_params_init(&p);
    p.steps = 0;
    CHECK(!sd_sampler_new(&ctx, &p, NULL, NLAT) && strstr(ctx.msg, "steps"), "steps 0 rejected: %s", ctx.msg);
    sd_sampler_params_init(&p);
    p.kind = SD_SAMPLER_EULER;
    p.eta = 0.5f;
    CHECK(!sd_sampler_new(&ctx, &p, NULL, NLAT) && strstr(ctx.msg, "eta"), "eta on Euler rejected: %s", ctx.msg);
    sd_sampler_params_init(&p);
    p.kind = SD_SAMPLER_LCM;
    p.steps = 60;
    CHECK(!sd_sampler_new(&ctx, &p, NULL, NLAT) && strstr(ctx.msg, "original_inference_steps"),
          "LCM with 60 steps rejected: %s", ctx.msg);
    sd_sampler_params_init(&p);
    p.kind = SD_SAMPLER_PNDM;
    p.karras = true;
    CHECK(!sd_sampler_new(&ctx, &p, NULL, NLAT) && strstr(ctx.msg, "Karras"), "Karras flag on PNDM rejected");
}

/* ---- the fake model and golden runs ------------------------------------- */

struct fake {
    double t[64];
    int n_calls;
    int fail_at;      /* call index that fails (-1: never) */
    int nan_at;       /* call index that returns NaN */
    struct sd_ctx *ctx;
};

static int fake_model(void *user, const float *x, float t, float *out) {
    struct fake *f = user;
    if (f->n_calls < 64) f->t[f->n_calls] = t;
    if (f->n_calls == f->fail_at) {
        f->n_calls++;
        return sd_errorf(f->ctx, SD_ERR_BACKEND, "unet exploded");
    }
    for (int j = 0; j < NLAT; j++) out[j] = (float)(0.5 * (double)x[j] + 0.1 * sin(0.01 * (double)t + 0.37 * j));
    if (f->n_calls == f->nan_at) out[17] = NAN;
    f->n_calls++;
    return SD_OK;
}

struct gcase {
    const char *name, *sampler;
    int steps;
    enum sd_spacing spacing;
    enum sd_prediction pred;
    float eta;
    bool clip;
    double strength;
};

#define LIN SD_SPACING_LINSPACE
#define LEAD SD_SPACING_LEADING
#define TRAIL SD_SPACING_TRAILING
#define DEF SD_SPACING_DEFAULT
#define EPS SD_PRED_EPSILON
#define VP SD_PRED_V

static const struct gcase gcases[] = {
    {"euler_lin20", "Euler", 20, DEF, EPS, 0, false, 1},
    {"euler_lead20", "Euler", 20, LEAD, EPS, 0, false, 1},
    {"euler_karras15", "Euler Karras", 15, DEF, EPS, 0, false, 1},
    {"euler_trail10_v", "Euler", 10, TRAIL, VP, 0, false, 1},
    {"euler_a_lin20", "Euler a", 20, DEF, EPS, 0, false, 1},
    {"euler_a_lead12_v", "Euler a", 12, LEAD, VP, 0, false, 1},
    {"ddim_lead20", "DDIM", 20, DEF, EPS, 0, false, 1},
    {"ddim_lead10_eta", "DDIM", 10, DEF, EPS, 0.5f, false, 1},
    {"ddim_lin25_v", "DDIM", 25, LIN, VP, 0, false, 1},
    {"ddim_trail8_clip", "DDIM", 8, TRAIL, EPS, 0, true, 1},
    {"dpm_lin20", "DPM++ 2M", 20, DEF, EPS, 0, false, 1},
    {"dpm_lead12_v", "DPM++ 2M", 12, LEAD, VP, 0, false, 1},
    {"dpm_karras20", "DPM++ 2M Karras", 20, DEF, EPS, 0, false, 1},
    {"dpm_karras7", "DPM++ 2M Karras", 7, DEF, EPS, 0, false, 1},
    {"dpm_trail6", "DPM++ 2M", 6, TRAIL, EPS, 0, false, 1},
    {"dpm_sde_karras15", "DPM++ 2M SDE Karras", 15, DEF, EPS, 0, false, 1},
    {"dpm_sde_lin10_v", "DPM++ 2M SDE", 10, DEF, VP, 0, false, 1},
    {"lcm4", "LCM", 4, DEF, EPS, 0, false, 1},
    {"lcm8_v", "LCM", 8, DEF, VP, 0, false, 1},
    {"lcm1", "LCM", 1, DEF, EPS, 0, false, 1},
    {"pndm_lead20", "PLMS", 20, DEF, EPS, 0, false, 1},
    {"pndm_lead10_v", "PNDM", 10, DEF, VP, 0, false, 1},
    {"pndm_lin15", "PLMS", 15, LIN, EPS, 0, false, 1},
    {"lms_lin20", "LMS", 20, DEF, EPS, 0, false, 1},
    {"lms_karras12", "LMS Karras", 12, DEF, EPS, 0, false, 1},
    {"lms_lead10_v", "LMS", 10, LEAD, VP, 0, false, 1},
    {"i2i_euler_lead20_s06", "Euler", 20, LEAD, EPS, 0, false, 0.6},
    {"i2i_euler_a_lin20_s05", "Euler a", 20, DEF, EPS, 0, false, 0.5},
    {"i2i_ddim_lead20_s075", "DDIM", 20, DEF, EPS, 0, false, 0.75},
    {"i2i_pndm_lead20_s08", "PLMS", 20, DEF, EPS, 0, false, 0.8},
    {"i2i_lms_lin20_s05", "LMS", 20, DEF, EPS, 0, false, 0.5},
    {"i2i_dpm_karras20_s07", "DPM++ 2M Karras", 20, DEF, EPS, 0, false, 0.7},
    {"i2i_lcm4_s05", "LCM", 4, DEF, EPS, 0, false, 0.5},
};

static float *gget(const struct golden *g, const char *name, const char *field, int64_t *n) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", name, field);
    const struct golden_entry *e = golden_get(g, key);
    if (n) *n = e ? e->n : 0;
    return golden_f32(e);
}

static void test_golden_case(const struct golden *g, const struct gcase *c, const float *image_latents) {
    struct sd_ctx ctx = {0};
    struct sd_sampler_params p;
    sd_sampler_params_init(&p);
    int rc = sd_sampler_parse_name(&ctx, c->sampler, &p);
    p.steps = c->steps;
    p.spacing = c->spacing;
    p.prediction = c->pred;
    p.eta = c->eta;
    p.clip_sample = c->clip;
    struct sd_sampler *s = rc ? NULL : sd_sampler_new(&ctx, &p, NULL, NLAT);
    if (!s) {
        test_fail("golden %s: sampler_new: %s", c->name, ctx.msg);
        return;
    }
    float x[NLAT], noise[NLAT];
    struct sd_rng rng;
    sd_rng_seed(&rng, SEED);
    int start = 0;
    if (c->strength < 1.0) {
        start = sd_sampler_start_index(s, c->strength);
        sd_rng_randn(&rng, noise, NLAT);
        sd_sampler_add_noise(s, start, image_latents, noise, x);
    } else {
        sd_sampler_init_latents(s, &rng, x);
    }
    int64_t n_t = 0, n_init = 0, n_out = 0, n_sig = 0;
    float *ref_t = gget(g, c->name, "t", &n_t), *ref_init = gget(g, c->name, "init", &n_init);
    float *ref_out = gget(g, c->name, "out", &n_out), *ref_isig = gget(g, c->name, "init_sigma", NULL);
    char key[128];
    snprintf(key, sizeof key, "%s.sigmas", c->name);
    const struct golden_entry *se = NULL;
    for (int i = 0; i < g->count; i++)
        if (!strcmp(g->e[i].name, key)) se = &g->e[i];
    float *ref_sig = se ? golden_f32(se) : NULL;
    n_sig = se ? se->n : 0;
    /* diffusers' sigma-based schedulers (Euler, Euler a, DPM++, LMS) have a
     * sigma list and the golden must carry it; DDIM, PNDM and LCM have none.
     * A missing (or unexpected) list is a failure, never a skipped check. */
    const bool want_sig = p.kind != SD_SAMPLER_DDIM && p.kind != SD_SAMPLER_PNDM && p.kind != SD_SAMPLER_LCM;
    if (want_sig != (ref_sig != NULL))
        printf("  golden %s: %s\n", key, want_sig ? "missing (a sigma-based sampler)" : "present for a sampler without sigmas");

    double e_init = 0, e_out = 0;
    int bad = !ref_t || !ref_init || !ref_out || !ref_isig || n_init != NLAT || n_out != NLAT ||
              want_sig != (ref_sig != NULL);
    if (!bad) bad |= check_close("init", x, ref_init, NLAT, 1e-6, 1e-6, &e_init);
    if (!bad && fabs(sd_sampler_init_noise_sigma(s) - ref_isig[0]) > 1e-6 * fabs(ref_isig[0])) {
        printf("  init_noise_sigma %.8g vs %.8g\n", sd_sampler_init_noise_sigma(s), ref_isig[0]);
        bad = 1;
    }
    if (!bad && ref_sig) {
        if (n_sig != sd_sampler_n_timesteps(s) + 1) bad = 1, printf("  sigma list length %lld\n", (long long)n_sig);
        for (int i = 0; !bad && i < n_sig; i++)
            if (fabs(sd_sampler_sigma(s, i) - ref_sig[i]) > 2e-6 * fabs(ref_sig[i]) + 1e-9) {
                printf("  sigma[%d] %.9g vs %.9g\n", i, sd_sampler_sigma(s, i), ref_sig[i]);
                bad = 1;
            }
    }
    struct fake f = {.fail_at = -1, .nan_at = -1, .ctx = &ctx};
    if (!bad) {
        rc = sd_sampler_run(s, x, start, fake_model, &f, &rng, NULL, NULL);
        if (rc) printf("  run: %s\n", ctx.msg), bad = 1;
    }
    if (!bad && f.n_calls != n_t) printf("  %d model calls, diffusers made %lld\n", f.n_calls, (long long)n_t), bad = 1;
    for (int i = 0; !bad && i < f.n_calls; i++)
        if (fabs(f.t[i] - ref_t[i]) > 1e-5 * fabs(ref_t[i]) + 1e-6) {
            printf("  call %d: t %.8g vs %.8g\n", i, f.t[i], ref_t[i]);
            bad = 1;
        }
    /* atol/rtol: float32 op-for-op replay; ulp-level differences in scalar
     * coefficients (libm vs torch) grow over the run: measured 0 (bit-equal)
     * for most cases, at most 2.1e-6 (DPM++ 2M SDE Karras); 6e-6 + 6e-6*|ref|
     * is 10x that. */
    if (!bad) bad |= check_close("out", x, ref_out, NLAT, 6e-6, 6e-6, &e_out);
    CHECK(!bad, "golden %-24s %-20s %2d calls from %2d: final latents match diffusers (max diff %.2g)", c->name,
          c->sampler, f.n_calls, start, e_out);
    free(ref_t), free(ref_init), free(ref_out), free(ref_isig), free(ref_sig);
    sd_sampler_free(s);
}

static void test_schedule_golden(const struct golden *g) {
    struct sd_noise_schedule s;
    sd_noise_schedule_init_sd(&s);
    float *b = golden_f32(golden_get(g, "schedule.betas")), *a = golden_f32(golden_get(g, "schedule.acp"));
    float *sg = golden_f32(golden_get(g, "schedule.sigmas"));
    int nb = 0, na = 0, ns = 0;
    for (int i = 0; b && a && sg && i < 1000; i++) {
        nb += memcmp(&b[i], &s.betas[i], 4) != 0;
        na += memcmp(&a[i], &s.alphas_cumprod[i], 4) != 0;
        ns += fabsf(sg[i] - s.sigmas[i]) > 1.2e-7f * sg[i];
    }
    CHECK(b && a && sg && nb == 0 && na == 0 && ns == 0,
          "betas and alphas_cumprod equal diffusers' bit for bit, sigmas within an ulp (%d %d %d differ)", nb, na, ns);
    free(b), free(a), free(sg);
}

/* ---- analytic check and loop behaviour ---------------------------------- */

/* A perfect denoiser for the single point x0: eps = (x_t - sqrt(a) x0)/sqrt(1-a)
 * with the VP input x_t at the timestep's noise level. */
struct perfect {
    float x0[NLAT];
    const struct sd_noise_schedule *sc;
};

static int perfect_model(void *user, const float *x, float t, float *out) {
    struct perfect *p = user;
    double sig = sd_sigma_at(p->sc, t);
    double a = 1.0 / (sig * sig + 1.0);
    for (int j = 0; j < NLAT; j++) out[j] = (float)((x[j] - sqrt(a) * p->x0[j]) / sqrt(1.0 - a));
    return SD_OK;
}

static void test_perfect_denoiser(void) {
    static const char *names[] = {"Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "Euler Karras"};
    struct sd_noise_schedule sc;
    sd_noise_schedule_init_sd(&sc);
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        struct sd_ctx ctx = {0};
        struct sd_sampler *s = mk(names[k], 12, SD_SPACING_DEFAULT, &ctx);
        struct perfect p = {.sc = &sc};
        fill_random(p.x0, NLAT, 5);
        float x[NLAT];
        struct sd_rng rng;
        sd_rng_seed(&rng, 3);
        sd_sampler_init_latents(s, &rng, x);
        int rc = sd_sampler_run(s, x, 0, perfect_model, &p, &rng, NULL, NULL);
        double mx = 0;
        int bad = rc || check_close("x0", x, p.x0, NLAT, 1e-6, 1e-6, &mx); /* measured <= 1.2e-7 */
        CHECK(!bad, "%s with a perfect denoiser lands on x0 (max diff %.2g)", names[k], mx);
        sd_sampler_free(s);
    }
}

struct progress {
    int calls, last_step, stop_at;
    double x0_err;
    const float *target;
};

static int on_step(void *user, const struct sd_step_info *info) {
    struct progress *p = user;
    p->calls++;
    p->last_step = info->step;
    if (info->step == info->n_steps - 1)
        for (int j = 0; j < NLAT; j++) p->x0_err = fmax(p->x0_err, fabs(info->x0[j] - info->x[j]));
    return p->stop_at >= 0 && info->step == p->stop_at;
}

static void test_loop_behaviour(void) {
    struct sd_ctx ctx = {0};
    struct sd_sampler *s = mk("Euler", 10, SD_SPACING_DEFAULT, &ctx);
    float x[NLAT];
    struct sd_rng rng;
    sd_rng_seed(&rng, 1);
    sd_sampler_init_latents(s, &rng, x);
    struct fake f = {.fail_at = 3, .nan_at = -1, .ctx = &ctx};
    int rc = sd_sampler_run(s, x, 0, fake_model, &f, &rng, NULL, NULL);
    CHECK(rc == SD_ERR_BACKEND && strstr(ctx.msg, "step 4/10") && strstr(ctx.msg, "unet exploded"),
          "callback failure stops the run with its status and the step: %s", ctx.msg);
    sd_ctx_clear(&ctx);
    struct fake f2 = {.fail_at = -1, .nan_at = 2, .ctx = &ctx};
    rc = sd_sampler_run(s, x, 0, fake_model, &f2, &rng, NULL, NULL);
    CHECK(rc == SD_ERR_BACKEND && strstr(ctx.msg, "non-finite"), "NaN model output reported: %s", ctx.msg);
    struct progress pr = {.stop_at = -1};
    struct fake f3 = {.fail_at = -1, .nan_at = -1, .ctx = &ctx};
    rc = sd_sampler_run(s, x, 0, fake_model, &f3, &rng, on_step, &pr);
    CHECK(rc == SD_OK && pr.calls == 10 && pr.last_step == 9 && pr.x0_err == 0,
          "step callback: 10 calls, x0 equals the result at the last (sigma 0) step");
    struct progress pr2 = {.stop_at = 4};
    rc = sd_sampler_run(s, x, 0, fake_model, &f3, &rng, on_step, &pr2);
    CHECK(rc == SD_ERR_CANCELLED && pr2.calls == 5 && strstr(ctx.msg, "5/10"), "cancel from the callback: %s", ctx.msg);
    CHECK(sd_sampler_run(s, x, 10, fake_model, &f3, &rng, NULL, NULL) == SD_ERR_INVALID,
          "start index past the end rejected");
    sd_sampler_free(s);
    s = mk("Euler a", 5, SD_SPACING_DEFAULT, &ctx);
    CHECK(sd_sampler_run(s, x, 0, fake_model, &f3, NULL, NULL, NULL) == SD_ERR_INVALID && strstr(ctx.msg, "rng"),
          "ancestral sampler without rng rejected: %s", ctx.msg);
    sd_sampler_free(s);
    sd_sampler_free(NULL);
}

int main(void) {
    test_schedule_numbers();
    test_spacing();
    test_sampler_lists();
    test_names();
    struct golden *g = golden_load("tests/golden/samplers.bin");
    CHECK(g != NULL, "load tests/golden/samplers.bin");
    if (g) {
        test_schedule_golden(g);
        float *img = golden_f32(golden_get(g, "image_latents"));
        for (size_t i = 0; i < sizeof gcases / sizeof *gcases; i++) test_golden_case(g, &gcases[i], img);
        free(img);
    }
    golden_free(g);
    test_perfect_denoiser();
    test_loop_behaviour();
    return test_summary();
}
