/* test_preview.c - latent preview: hand-computed pixels from the ComfyUI
 * factor table (sd-reference §8.1), clamping, plane layout; a model's own
 * factors (the demo model's, fitted for its VAE by
 * tests/reference/train_demo.py): read from the folder's vae/config.json and
 * the single file's metadata, passed by the step event, and on the demo
 * model's generations the preview of the final x0 is close to the final image
 * average-pooled to latent size (much closer than with SD 1.x's factors);
 * malformed factors are load errors naming what is wrong. */
#include "demo_judge.h"
#include "json.h"
#include "preview.h"
#include "safetensors.h"
#include "test.h"

#include <unistd.h>

#define S DEMO_S
#define L (S / 4) /* the demo VAE's factor is 4 */
/* Bounds on the mean absolute 8-bit error of the preview vs the pooled image
 * over the 12 prompts below: measured 33.8 with the model's own map and 51.4
 * with SD 1.x's (ratio 0.66). A linear map is a rough fit for this small VAE
 * (on the scenes it was fitted to: 32.0 vs 46.9 for SD 1.x's; a map of the
 * mean color alone: 72); the fully trained UNet's x0 lies on the scenes'
 * latents (with the earlier, undertrained UNet: 44.7 vs 54.0).
 * The own map must stay under OWN_MAX and at most OWN_RATIO of SD 1.x's. */
#define OWN_MAX 38.0
#define OWN_RATIO 0.75

static void test_tables(void) {
    /* 2x1 latent: pixel 0 = unit channel 0, pixel 1 = unit channel 3 */
    float lat[8] = {1, 0, 0, 0, 0, 0, 0, 1};
    uint8_t rgb[6];
    sd_preview_rgb8(lat, 2, 1, SD_PREVIEW_SD15, rgb);
    /* (0.3512+1)/2*255 = 172.278, (0.2297+1)/2*255 = 156.787, (0.3227+1)/2*255 = 168.644;
     * (-0.2120+1)/2*255 = 100.47, (-0.2616+1)/2*255 = 94.146, (-0.7177+1)/2*255 = 35.99 */
    CHECK(rgb[0] == 172 && rgb[1] == 157 && rgb[2] == 169 && rgb[3] == 100 && rgb[4] == 94 && rgb[5] == 36,
          "SD1.5 factors: unit channel 0 -> (172,157,169), unit channel 3 -> (100,94,36): got (%d,%d,%d) (%d,%d,%d)",
          rgb[0], rgb[1], rgb[2], rgb[3], rgb[4], rgb[5]);
    float big[8] = {10, -10, 0, 0, 0, 0, 0, 0};
    sd_preview_rgb8(big, 2, 1, SD_PREVIEW_SD15, rgb);
    CHECK(rgb[0] == 255 && rgb[1] == 255 && rgb[2] == 255 && rgb[3] == 0 && rgb[4] == 0 && rgb[5] == 0,
          "large values clamp to 0 and 255");
    float zero[4] = {0, 0, 0, 0};
    sd_preview_rgb8(zero, 1, 1, SD_PREVIEW_SDXL, rgb);
    /* bias only: (0.1084+1)/2*255 = 141.32, (-0.0175+1)/2*255 = 125.27, (-0.0011+1)/2*255 = 127.36 */
    CHECK(rgb[0] == 141 && rgb[1] == 125 && rgb[2] == 127, "SDXL bias on a zero latent -> (141,125,127)");
    /* an own map: factors and bias as given, preferred by sd_preview_rgb8_for */
    const struct sd_latent_rgb own = {.factors = {{0.5f, 0, 0}, {0, -0.5f, 0}, {0, 0, 0}, {0, 0, 1}},
                                      .bias = {0.1f, 0.2f, -0.2f}};
    sd_preview_rgb8_for(lat, 2, 1, &own, 1, rgb);
    /* pixel 0: (0.6, 0.2, -0.2) -> 204, 153, 102; pixel 1: (0.1, 0.2, 0.8) -> 140, 153, 230 */
    CHECK(rgb[0] == 204 && rgb[1] == 153 && rgb[2] == 102 && rgb[3] == 140 && rgb[4] == 153 && rgb[5] == 230,
          "own map (factors + bias) preferred over the family's: (204,153,102) (140,153,230), got (%d,%d,%d) "
          "(%d,%d,%d)", rgb[0], rgb[1], rgb[2], rgb[3], rgb[4], rgb[5]);
}

/* The factors of the folder's vae/config.json, parsed here. */
static int config_map(struct sd_latent_rgb *out) {
    struct sd_ctx ctx = {0};
    FILE *f = fopen("tests/models/demo/vae/config.json", "rb");
    char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    struct sd_json *j = NULL;
    if (!n || sd_json_parse(&ctx, buf, n, &j)) return 1;
    const struct sd_json *fa = sd_json_get(j, "latent_rgb_factors"), *b = sd_json_get(j, "latent_rgb_bias");
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 3; k++) out->factors[c][k] = (float)sd_json_num(sd_json_at(sd_json_at(fa, c), k), NAN);
    for (int k = 0; k < 3; k++) out->bias[k] = (float)sd_json_num(sd_json_at(b, k), NAN);
    sd_json_free(j);
    return 0;
}

struct last_step {
    float x0[4 * L * L];
    const struct sd_latent_rgb *map;
    int steps, w, h, sdxl;
};

static int on_step(void *user, const struct sd_gen_event *ev) {
    struct last_step *ls = user;
    if (ev->kind != SD_EV_STEP || ev->channels != 4 || ev->w != L || ev->h != L) return 0;
    memcpy(ls->x0, ev->x0, sizeof ls->x0);
    ls->map = ev->latent_rgb, ls->steps++, ls->w = ev->w, ls->h = ev->h, ls->sdxl = ev->sdxl;
    return 0;
}

/* Mean absolute difference (8-bit) of an L x L preview and img [3, S, S] in
 * [-1, 1] as 8-bit RGB average-pooled over 4x4 blocks. */
static double pooled_err(const uint8_t *rgb, const float *img) {
    double e = 0;
    for (int y = 0; y < L; y++)
        for (int x = 0; x < L; x++)
            for (int k = 0; k < 3; k++) {
                double m = 0;
                for (int dy = 0; dy < 4; dy++)
                    for (int dx = 0; dx < 4; dx++) {
                        float v = roundf((img[k * S * S + (4 * y + dy) * S + 4 * x + dx] / 2 + 0.5f) * 255);
                        m += v < 0 ? 0 : v > 255 ? 255 : v;
                    }
                e += fabs(m / 16 - rgb[(y * L + x) * 3 + k]);
            }
    return e / (L * L * 3);
}

static void test_demo_model(void) {
    struct sd_latent_rgb want;
    struct demo_env e, e1;
    if (config_map(&want)) {
        test_fail("demo model: no latent_rgb_factors / latent_rgb_bias in tests/models/demo/vae/config.json");
        return;
    }
    if (demo_env_open(&e, "tests/models/demo", NULL, vocab_path())) {
        test_fail("open tests/models/demo: %s", e.ctx.msg);
        return;
    }
    int single = !demo_env_open(&e1, "build/models/demo.safetensors", NULL, vocab_path());
    CHECK(e.m->has_latent_rgb && !memcmp(&e.m->latent_rgb, &want, sizeof want) && single && e1.m->has_latent_rgb &&
              !memcmp(&e1.m->latent_rgb, &want, sizeof want),
          "demo model's preview factors read from vae/config.json and from the single file's sdrt_latent_rgb "
          "(factors[0] %.5f %.5f %.5f, bias %.5f %.5f %.5f)%s%s", (double)want.factors[0][0],
          (double)want.factors[0][1], (double)want.factors[0][2], (double)want.bias[0], (double)want.bias[1],
          (double)want.bias[2], single ? "" : ": single file: ", single ? "" : e1.ctx.msg);
    if (single) demo_env_free(&e1);
    static float img[3 * S * S];
    uint8_t own[L * L * 3], sd15[L * L * 3];
    double e_own = 0, e_sd15 = 0, worst = 0;
    int n = 0, events_ok = 1;
    for (int i = 0; i < DEMO_GRID; i += 3, n++) { /* 12 prompts: every color, shape and background */
        char p[96];
        demo_caption(p, sizeof p, i / 9, (i / 3) % 3, i % 3);
        struct last_step ls = {0};
        struct demo_run r = {.prompt = p, .steps = 20, .cfg = 7.5f, .seed = 1000 + (uint64_t)i, .on_event = on_step,
                             .user = &ls};
        if (demo_gen(&e, &r, img, NULL)) {
            events_ok = 0;
            break;
        }
        events_ok &= ls.steps == 20 && ls.map == &e.m->latent_rgb && !ls.sdxl;
        sd_preview_rgb8_for(ls.x0, ls.w, ls.h, ls.map, ls.sdxl, own);
        sd_preview_rgb8(ls.x0, ls.w, ls.h, SD_PREVIEW_SD15, sd15);
        double a = pooled_err(own, img);
        e_own += a, e_sd15 += pooled_err(sd15, img), worst = fmax(worst, a);
    }
    e_own /= n, e_sd15 /= n;
    CHECK(events_ok && e_own <= OWN_MAX && e_own <= OWN_RATIO * e_sd15,
          "demo model: the %dx%d preview of the final x0 (its own factors, from the step event) vs the 32x32 image "
          "pooled 4x4: mean abs error %.1f of 255 (worst prompt %.1f; <= %.0f) vs %.1f with SD 1.x's factors "
          "(own <= %.1f x that), %d prompts", L, L, e_own, worst, OWN_MAX, e_sd15, OWN_RATIO, n);
    demo_env_free(&e);
}

/* Writes path = src with the first `from` replaced by `to`. */
static int edit_copy(const char *src, const char *path, const char *from, const char *to) {
    FILE *f = fopen(src, "rb");
    static char buf[16384], out[16384];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    char *at = strstr(buf, from);
    if (!at) return 1;
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
    f = fopen(path, "wb");
    if (!f) return 1;
    fputs(out, f);
    return fclose(f);
}

static void expect_load_error(const char *label, const char *path, const char *want) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    int rc = sd_model_load(&ctx, path, NULL, &m);
    CHECK(rc != SD_OK && !m && strstr(ctx.msg, want), "%s: load fails naming '%s': %s", label, want, ctx.msg);
    sd_model_free(m);
}

/* The single file's tensors again with metadata sdrt_latent_rgb = value. */
static int write_single(const char *path, const char *value) {
    struct sd_ctx ctx = {0};
    struct sd_st_file *f = NULL;
    if (sd_st_open(&ctx, "build/models/demo.safetensors", &f)) return 1;
    const char *meta[] = {"sdrt_latent_rgb", value, NULL};
    int rc = sd_st_write(&ctx, path, f->tensors, f->n_tensors, meta);
    sd_st_close(f);
    return rc;
}

static void test_malformed(void) {
    char dir[] = "/tmp/sdrt_preview_XXXXXX", cmd[512], p[256], cfg[300];
    if (!mkdtemp(dir)) {
        test_fail("mkdtemp");
        return;
    }
    snprintf(p, sizeof p, "%s/demo", dir);
    snprintf(cfg, sizeof cfg, "%s/vae/config.json", p);
    snprintf(cmd, sizeof cmd, "cp -r tests/models/demo %s", p);
    CHECK(system(cmd) == 0, "copy the demo folder");
    CHECK(!edit_copy("tests/models/demo/vae/config.json", cfg, "\"latent_rgb_factors\": [", "\"latent_rgb_factors\": [[1, 2, 3], "),
          "edit vae/config.json");
    expect_load_error("folder with 5 rows of factors", p, "vae/config.json: latent_rgb_factors must be 4 rows");
    CHECK(!edit_copy("tests/models/demo/vae/config.json", cfg, "\"latent_rgb_factors\": [\n    [", "\"latent_rgb_factors\": [\n    [\"x\", "),
          "edit vae/config.json");
    expect_load_error("folder with a string in a row", p, "latent_rgb_factors row 0 must be 3 finite numbers");
    CHECK(!edit_copy("tests/models/demo/vae/config.json", cfg, "\"latent_rgb_bias\": [", "\"latent_rgb_bias\": \"x\", \"x\": ["),
          "edit vae/config.json");
    expect_load_error("folder with a string bias", p, "latent_rgb_bias must be 3 finite numbers");
    snprintf(p, sizeof p, "%s/single.safetensors", dir);
    CHECK(!write_single(p, "{\"factors\": [[1, 2, 3]], \"bias\": [0, 0, 0]}"), "write single file");
    expect_load_error("single file with 1 row", p, "metadata sdrt_latent_rgb: latent_rgb_factors must be 4 rows");
    CHECK(!write_single(p, "{\"bias\": [0, 0, 0]}"), "write single file");
    expect_load_error("single file with a bias only", p, "metadata sdrt_latent_rgb: latent_rgb_bias without latent_rgb_factors");
    CHECK(!write_single(p, "[1, 2]"), "write single file");
    expect_load_error("single file with an array", p, "metadata sdrt_latent_rgb: expected a JSON object");
    CHECK(!write_single(p, "{factors"), "write single file");
    expect_load_error("single file with malformed JSON", p, "metadata sdrt_latent_rgb");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", dir);
}

int main(void) {
    test_tables();
    test_demo_model();
    test_malformed();
    return test_summary();
}
