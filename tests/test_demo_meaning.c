/* test_demo_meaning.c - the demo model (tests/models/demo, trained by
 * tests/reference/train_demo.py) draws what its prompt says, judged by a
 * classifier independent of the model (dominant colors and shape moments,
 * tests/demo_judge.c, shared with bench/bench_demo.c).
 *
 * The classifier is first checked on scenes drawn here (every caption, three
 * sizes and positions, also with the demo LoRA's orange: 100 %). Then, with
 * sdrt (CPU backend, f32, 32x32, Euler a 20 steps):
 *   - the grid: every color x shape x background the model knows (36 prompts,
 *     seeds 1000 + i) at CFG 7.5; the ok line gives the agreement (all three
 *     attributes, and per attribute). The issue asks for >= 90 %: GRID_MIN is
 *     33 of 36. The committed model judges 36/36 here (and 36/36, 35/36 with
 *     seeds 5000 + i, 9000 + i: tests/reference/README.md, "Demo model");
 *   - CFG: the same 36 seeds at CFG 1 judge no more attributes right than at
 *     CFG 7.5, and every image differs;
 *   - negative prompt and CFG: an empty prompt with a whole caption as the
 *     negative prompt (36 captions, seeds 500 + i): at CFG 7.5 the image
 *     avoids the negative's color and background, at CFG 1 (no guidance, so
 *     no negative prompt) they come at about chance;
 *   - img2img: a drawn red circle on white, prompt "a green square on a black
 *     background", 4 seeds: at strength 0.05 (one step) the judged
 *     attributes are the init image's, at 0.2 partly and at 0.8 all the
 *     prompt's;
 *   - parity: sdrt equals diffusers (tests/golden/demo.safetensors,
 *     tests/reference/gen_demo_goldens.py) for the same seed, on the diffusers
 *     folder and on the single file, on the CPU and on OpenCL (PoCL).
 * `test_demo_meaning FOLDER` runs only the meaning checks on another folder
 * (a training checkpoint exported with train_demo.py --resume-export).
 */
#include "demo_judge.h"
#include "safetensors.h"
#include "test_golden.h"
#include "test.h"

/* See cl_test_util.h: PoCL/LLVM-internal allocations are not our leaks. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libpocl.so\nleak:libLLVM\nleak:libclang\n"; }

#define GOLDEN "tests/golden/demo.safetensors"
/* Grid bounds: the 90 % (33 of 36), a few prompts below the
 * committed model's measured 36/36 so that another CPU's rounding cannot flip
 * the test; chance is 1 in 36. */
#define GRID_MIN 33
#define COLOR_MIN 34
#define S DEMO_S
/* Parity bounds, about 10x the measured worst (the ~1e-6 per-op differences
 * of float32 kernels, amplified by CFG and the sampler): CPU latents 6.2e-6,
 * images 3.9e-6; OpenCL (PoCL, other kernels, test_cl_models.c) 5.4e-6 and
 * 3.9e-6. */
#define LAT_ATOL 6e-5
#define LAT_RTOL 1e-5
#define IMG_ATOL 4e-5
#define IMG_RTOL 1e-5
#define CL_LAT_ATOL 6e-5
#define CL_IMG_ATOL 4e-5

/* On drawn scenes: every caption of the base colors judged among those
 * four, and every caption with the LoRA's orange too judged among all five. */
static void test_classifier(void) {
    static float img[3 * S * S];
    static const double at[3][3] = {{16, 16, 8}, {13, 19, 6.5}, {19, 14, 9.5}}; /* cx, cy, r */
    int ok = 0, n = 0;
    double lo[3][2] = {{9, 9}, {9, 9}, {9, 9}}, hi[3][2] = {{-9, -9}, {-9, -9}, {-9, -9}};
    for (int pal = DEMO_COLORS; pal <= DEMO_COLORS + 1; pal++)
        for (int c = 0; c < pal; c++)
            for (int s = 0; s < 3; s++)
                for (int b = 0; b < 3; b++)
                    for (int k = 0; k < 3; k++) {
                        demo_draw(img, c, s, b, at[k][0], at[k][1], at[k][2]);
                        struct demo_verdict v = demo_judge(img, pal);
                        ok += demo_agrees(v, c, s, b), n++;
                        lo[s][0] = fmin(lo[s][0], v.skew), hi[s][0] = fmax(hi[s][0], v.skew);
                        lo[s][1] = fmin(lo[s][1], v.aniso), hi[s][1] = fmax(hi[s][1], v.aniso);
                    }
    CHECK(ok == n, "classifier on %d drawn scenes (4 colors among 4, 5 with orange among 5): %d right (skewness "
          "circle %.2f..%.2f, square %.2f..%.2f, triangle %.2f..%.2f; anisotropy circle %.2f..%.2f, square "
          "%.2f..%.2f, triangle %.2f..%.2f)", n, ok, lo[0][0], hi[0][0], lo[1][0], hi[1][0], lo[2][0], hi[2][0],
          lo[0][1], hi[0][1], lo[1][1], hi[1][1], lo[2][1], hi[2][1]);
}

static int env_open(struct demo_env *e, const char *path, int opencl) {
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    if (opencl) {
        o.backend = SD_BACKEND_OPENCL;
        o.cl_cache_dir = "/tmp/sdrt-test-cache";
    }
    if (demo_env_open(e, path, &o, vocab_path())) {
        test_fail("open %s%s: %s", path, opencl ? " on opencl" : "", e->ctx.msg);
        return 1;
    }
    return 0;
}

static void test_grid_and_cfg(struct demo_env *e) {
    static float hi[36][3 * S * S], lo[36][3 * S * S];
    int a_hi[3], a_lo[3];
    int n_hi = demo_grid(e, 7.5f, hi, a_hi, 1);
    CHECK(n_hi >= GRID_MIN && a_hi[0] >= COLOR_MIN,
          "demo grid (4 colors x 3 shapes x 3 backgrounds, CFG 7.5, Euler a 20 steps, 32x32): %d/36 = %.0f%% agree "
          "with the prompt in all three attributes (>= %d; chance 1/36): color %d, shape %d, background %d of 36 "
          "(color >= %d)", n_hi, 100.0 * n_hi / 36, GRID_MIN, a_hi[0], a_hi[1], a_hi[2], COLOR_MIN);
    int n_lo = demo_grid(e, 1.0f, lo, a_lo, 0);
    double min_diff = 1e9;
    for (int i = 0; i < 36; i++) {
        double d = 0;
        for (int k = 0; k < 3 * S * S; k++) d = fmax(d, fabs(hi[i][k] - lo[i][k]));
        min_diff = fmin(min_diff, d);
    }
    int t_hi = a_hi[0] + a_hi[1] + a_hi[2], t_lo = a_lo[0] + a_lo[1] + a_lo[2];
    CHECK(n_hi >= 0 && n_lo >= 0 && t_hi >= t_lo && min_diff > 0.1,
          "demo CFG 1 vs 7.5: the same seeds at CFG 1 judge %d of the 108 attributes right (color %d, shape %d, "
          "background %d; %d/36 prompts) vs %d at CFG 7.5 (no fewer); every image differs (min over prompts of the "
          "max pixel difference %.2f of 2)", t_lo, a_lo[0], a_lo[1], a_lo[2], n_lo, t_hi, min_diff);
}

/* An empty prompt with one whole caption as the negative prompt, for each of
 * the 36 captions: with guidance (CFG 7.5) the image moves away from the
 * negative's color and background; at CFG 1 the negative prompt is not used
 * and the unconditional image has them at about chance (9 colors and 12
 * backgrounds of 36 expected). Measured: 1 + 1 of 72 at CFG 7.5, 13 + 10 at
 * CFG 1. */
static void test_negative(struct demo_env *e) {
    static float out[3 * S * S];
    int same[2][3] = {{0}}, rc = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 36; i++) {
            int c = i / 9, s = (i / 3) % 3, b = i % 3;
            char neg[96];
            demo_caption(neg, sizeof neg, c, s, b);
            struct demo_run r = {.prompt = "", .negative = neg, .steps = 20, .cfg = k ? 1.0f : 7.5f,
                                 .seed = 500 + (uint64_t)i};
            rc |= demo_gen(e, &r, out, NULL);
            struct demo_verdict v = demo_judge(out, DEMO_COLORS);
            same[k][0] += v.color == c, same[k][1] += v.shape == s, same[k][2] += v.bg == b;
        }
    int n75 = same[0][0] + same[0][2], n1 = same[1][0] + same[1][2];
    CHECK(!rc && n75 <= 6 && n1 >= n75 + 10,
          "demo negative prompt: an empty prompt with a caption as the negative (36 captions), the negative's color "
          "and background judged %d of 72 times at CFG 7.5 (color %d, background %d; <= 6) vs %d at CFG 1 (no "
          "guidance: color %d, background %d; >= 10 more); the negative's shape %d vs %d", n75, same[0][0],
          same[0][2], n1, same[1][0], same[1][2], same[0][1], same[1][1]);
}

static int same_attrs(struct demo_verdict v, int c, int s, int b) { return (v.color == c) + (v.shape == s) + (v.bg == b); }

/* img2img from a drawn red circle on white toward "a green square on a black
 * background", 4 seeds, strengths 0.05 (one of 20 steps), 0.2 and 0.8: the
 * prompt's attributes are judged more often as the strength grows (measured
 * 0, 7, 12 of 12), the init image's less (12, 0, 0). */
static void test_img2img(struct demo_env *e) {
    static float init[3 * S * S], out[3 * S * S];
    demo_draw(init, 0, 0, 0, 16, 16, 8); /* a red circle on a white background */
    const char *p = "a green square on a black background";
    const float strength[3] = {0.05f, 0.2f, 0.8f};
    int to_prompt[3] = {0}, to_init[3] = {0}, rc = 0;
    for (int k = 0; k < 3; k++)
        for (int seed = 0; seed < 4; seed++) {
            struct demo_run r = {.prompt = p, .steps = 20, .cfg = 7.5f, .seed = 77 + (uint64_t)seed, .init = init,
                            .strength = strength[k]};
            rc |= demo_gen(e, &r, out, NULL);
            struct demo_verdict v = demo_judge(out, DEMO_COLORS);
            to_prompt[k] += same_attrs(v, 1, 1, 1), to_init[k] += same_attrs(v, 0, 0, 0);
        }
    CHECK(!rc && to_prompt[2] >= to_prompt[1] && to_prompt[1] >= to_prompt[0] && to_prompt[2] >= to_prompt[0] + 8 &&
              to_init[0] >= to_init[1] && to_init[1] >= to_init[2] && to_init[0] >= to_init[2] + 8,
          "demo img2img from a red circle on white toward \"%s\" (4 seeds, 12 attributes), strength 0.05 / 0.2 / "
          "0.8: the prompt's attributes judged %d / %d / %d times (growing, >= 8 more at 0.8), the init image's "
          "%d / %d / %d (falling, >= 8 fewer at 0.8)", p, to_prompt[0], to_prompt[1], to_prompt[2], to_init[0],
          to_init[1], to_init[2]);
}

/* Same as CASES in tests/reference/gen_demo_goldens.py. */
static const struct gcase {
    const char *name, *sampler;
    int steps;
    float cfg;
    const char *prompt, *negative;
    float strength;
    uint64_t seed;
    int img2img;
} gcases[] = {
    {"t2i_euler_a", "Euler a", 20, 7.5f, "a blue triangle on a black background", "", 1.0f, 42, 0},
    {"t2i_dpmpp_2m_neg", "DPM++ 2M", 12, 5.0f, "a yellow square on a gray background",
     "a red circle on a white background", 1.0f, 43, 0},
    {"i2i_euler_a_s075", "Euler a", 20, 7.5f, "a green square on a black background", "", 0.75f, 44, 1},
};

static void test_parity(struct demo_env *e, const char *label, const struct sd_st_file *gf, double lat_atol,
                        double img_atol) {
    const int64_t nl = 4 * (S / 4) * (S / 4), ni = 3 * S * S;
    float *init = test_golden_copy(gf, "init_image", ni);
    for (size_t i = 0; i < sizeof gcases / sizeof *gcases; i++) {
        const struct gcase *c = &gcases[i];
        char key[96];
        snprintf(key, sizeof key, "%s.latents", c->name);
        float *rl = test_golden_copy(gf, key, nl);
        snprintf(key, sizeof key, "%s.image", c->name);
        float *ri = test_golden_copy(gf, key, ni);
        float *lat = malloc(sizeof(float) * nl), *img = malloc(sizeof(float) * ni);
        struct demo_run r = {.prompt = c->prompt, .negative = c->negative, .sampler = c->sampler, .steps = c->steps,
                        .cfg = c->cfg, .strength = c->strength, .seed = c->seed, .init = c->img2img ? init : NULL};
        double el = 0, ei = 0;
        int bad = !rl || !ri || (c->img2img && !init) || demo_gen(e, &r, img, lat);
        if (!bad) {
            for (int64_t k = 0; k < ni; k++) {
                float v = img[k] / 2 + 0.5f;
                img[k] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
            bad |= check_close(c->name, lat, rl, nl, lat_atol, LAT_RTOL, &el);
            bad |= check_close(c->name, img, ri, ni, img_atol, IMG_RTOL, &ei);
        }
        if (bad) test_fail("demo parity %s %s (%s %d steps cfg %.1f): latents err %.3g, image err %.3g", label,
                           c->name, c->sampler, c->steps, c->cfg, el, ei);
        else test_ok("demo parity %s %s (%s %d steps cfg %.1f) equals diffusers: latents max abs err %.2e, "
                     "image %.2e", label, c->name, c->sampler, c->steps, c->cfg, el, ei);
        free(rl), free(ri), free(lat), free(img);
    }
    free(init);
}

int main(int argc, char **argv) {
    test_classifier();
    if (argc > 1) { /* a training checkpoint's folder (train_demo.py --resume-export): the meaning checks only */
        struct demo_env e;
        if (!env_open(&e, argv[1], 0)) {
            test_grid_and_cfg(&e);
            test_img2img(&e);
            demo_env_free(&e);
        }
        return test_summary();
    }
    struct sd_ctx ctx = {0};
    struct sd_st_file *gf = NULL;
    if (sd_st_open(&ctx, GOLDEN, &gf)) test_fail("open %s: %s", GOLDEN, ctx.msg);
    struct demo_env e;
    if (!env_open(&e, "tests/models/demo", 0)) {
        test_grid_and_cfg(&e);
        test_negative(&e);
        test_img2img(&e);
        test_parity(&e, "cpu folder", gf, LAT_ATOL, IMG_ATOL);
        demo_env_free(&e);
    }
    if (!env_open(&e, "build/models/demo.safetensors", 0)) {
        test_parity(&e, "cpu single file", gf, LAT_ATOL, IMG_ATOL);
        demo_env_free(&e);
    }
    if (!env_open(&e, "tests/models/demo", 1)) {
        test_parity(&e, "opencl folder", gf, CL_LAT_ATOL, CL_IMG_ATOL);
        demo_env_free(&e);
    }
    sd_st_close(gf);
    return test_summary();
}
