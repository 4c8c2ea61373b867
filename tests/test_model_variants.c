/* test_model_variants.c - models the first tiny models never exercised
 * (issue 8 item 6), against diffusers goldens (tests/golden/variants.safetensors,
 * tests/reference/gen_variants.py):
 *   - tiny-vae3: a VAE with 3 levels (image = 4 x latent): decode, encode,
 *     txt2img, img2img and 4-channel inpainting; two runs give the same bytes;
 *   - tiny-sd1-linear: an SD1 folder whose UNet has linear projections and
 *     which has no tokenizer/: family SD1 from the text encoder, SD1 pad;
 *   - tiny-sd2-v.safetensors / tiny-sd2-eps.safetensors: single SD2 files whose
 *     prediction type is detected (no flag), and a txt2img of the v file;
 *   - timestep spacing: Euler and DDIM with leading, linspace and trailing,
 *     and a folder whose scheduler_config.json sets timestep_spacing and
 *     steps_offset.
 * Tolerances are about 10x the largest error measured (printed per case).
 */
#include "embed_cache.h"
#include "model_load.h"
#include "pipeline.h"
#include "safetensors.h"
#include "test_golden.h"
#include "test.h"
#include "tokenizer.h"

#define GOLDEN "tests/golden/variants.safetensors"
#define SD2S_CONFIG "tests/models/tiny-sd2-small-config"
/* Measured (CPU, 1 thread): latents <= 1.6e-4 abs on |x| <= 79 (~2e-6
 * relative), images <= 1.3e-5, VAE decode/encode <= 3e-6 (printed per case);
 * the bounds are about 10x that. */
#define LAT_ATOL 5e-4
#define LAT_RTOL 2e-5
#define IMG_ATOL 1.5e-4
#define VAE_ATOL 3e-5

enum mode { TXT2IMG, IMG2IMG, INPAINT };

struct vcase {
    const char *name;
    enum mode mode;
    const char *model, *sampler;
    int steps, width, height;
    float cfg;
    const char *prompt;
    float strength;
    uint64_t seed;
    enum sd_spacing spacing; /* DEFAULT: the model's scheduler config / class default */
};

#define P_CAT "a photo of a cat"
#define P_LIGHT "a watercolor painting of a lighthouse at dawn, soft light"
#define P_ROBOT "a small robot reading a book in a library"

/* Same as CASES in tests/reference/gen_variants.py (checked against the metadata). */
static const struct vcase cases[] = {
    {"vae3_t2i_euler", TXT2IMG, "tiny-vae3", "Euler", 4, 64, 48, 7.5f, P_CAT, 1.0f, 41, SD_SPACING_DEFAULT},
    {"vae3_i2i_euler_a", IMG2IMG, "tiny-vae3", "Euler a", 4, 48, 32, 7.5f, P_LIGHT, 0.5f, 42, SD_SPACING_DEFAULT},
    {"vae3_inp4_ddim", INPAINT, "tiny-vae3", "DDIM", 4, 64, 64, 7.5f, P_ROBOT, 1.0f, 43, SD_SPACING_DEFAULT},
    {"linear_t2i_euler", TXT2IMG, "tiny-sd1-linear", "Euler", 4, 64, 64, 7.5f, P_CAT, 1.0f, 44, SD_SPACING_DEFAULT},
    {"sd2v_t2i_euler", TXT2IMG, "tiny-sd2-v.safetensors", "Euler", 4, 64, 64, 7.5f, P_LIGHT, 1.0f, 45, SD_SPACING_DEFAULT},
    {"sp_euler_leading", TXT2IMG, "tiny-sd1", "Euler", 4, 32, 32, 7.5f, P_CAT, 1.0f, 46, SD_SPACING_LEADING},
    {"sp_euler_linspace", TXT2IMG, "tiny-sd1", "Euler", 4, 32, 32, 7.5f, P_CAT, 1.0f, 46, SD_SPACING_LINSPACE},
    {"sp_euler_trailing", TXT2IMG, "tiny-sd1", "Euler", 4, 32, 32, 7.5f, P_CAT, 1.0f, 46, SD_SPACING_TRAILING},
    {"sp_ddim_leading", TXT2IMG, "tiny-sd1", "DDIM", 5, 32, 32, 7.5f, P_ROBOT, 1.0f, 47, SD_SPACING_LEADING},
    {"sp_ddim_linspace", TXT2IMG, "tiny-sd1", "DDIM", 5, 32, 32, 7.5f, P_ROBOT, 1.0f, 47, SD_SPACING_LINSPACE},
    {"sp_ddim_trailing", TXT2IMG, "tiny-sd1", "DDIM", 5, 32, 32, 7.5f, P_ROBOT, 1.0f, 47, SD_SPACING_TRAILING},
    {"sp_folder_euler", TXT2IMG, "tiny-sd1-sched", "Euler", 4, 32, 32, 7.5f, P_CAT, 1.0f, 48, SD_SPACING_DEFAULT},
    {"sp_folder_ddim", TXT2IMG, "tiny-sd1-sched", "DDIM", 5, 32, 32, 7.5f, P_ROBOT, 1.0f, 48, SD_SPACING_DEFAULT},
};
#define N_CASES ((int)(sizeof cases / sizeof *cases))

static int load(struct sd_ctx *ctx, const char *name, struct sd_model **m) {
    char path[256];
    snprintf(path, sizeof path, "tests/models/%s", name);
    /* Tiny single files need their config folder (widths that SD's defaults do not fit). */
    const char *config = strstr(name, "tiny-sd2-") == name ? SD2S_CONFIG
                         : !strcmp(name, "tiny-sd1.safetensors") ? "tests/models/tiny-sd1" : NULL;
    return sd_model_load(ctx, path, config, m);
}

/* One model with what a pipeline needs; the tokenizer as the CLI picks it
 * when the folder has no tokenizer files: by the model's pad token. */
struct env {
    struct sd_ctx ctx;
    struct sd_model *m;
    struct sd_tokenizer *tok;
    struct sd_runtime *rt;
    struct sd_embed_cache *cache;
    struct sd_pipeline p;
};

static void env_free(struct env *e) {
    if (e->rt && e->m) sd_runtime_release_model(e->rt, e->m);
    sd_runtime_free(e->rt);
    sd_embed_cache_free(e->cache);
    sd_tokenizer_free(e->tok);
    sd_model_free(e->m);
    memset(e, 0, sizeof *e);
}

static int env_open(struct env *e, const char *name) {
    memset(e, 0, sizeof *e);
    if (load(&e->ctx, name, &e->m)) goto fail;
    if (!(e->tok = sd_tokenizer_load_bpe_gz(&e->ctx, vocab_path()))) goto fail;
    if (sd_tokenizer_set_family(e->tok, e->m->clip.pad_id == 0 ? SD_TOKENIZER_SD2 : SD_TOKENIZER_SD1)) goto fail;
    struct sd_runtime_opts ro;
    sd_runtime_opts_init(&ro);
    ro.threads = 1;
    if (!(e->rt = sd_runtime_new(&e->ctx, &ro))) goto fail;
    if (!(e->cache = sd_embed_cache_new(16u << 20))) goto fail;
    e->p = (struct sd_pipeline){.ctx = &e->ctx, .model = e->m, .rt = e->rt, .tok = e->tok, .cache = e->cache};
    return 0;
fail:
    printf("  %s: %s\n", name, e->ctx.msg);
    env_free(e);
    return 1;
}

static int64_t lat_size(const struct sd_model *m, const struct vcase *c) {
    const int f = sd_vae_downscale(&m->vae);
    return (int64_t)m->vae.latent_channels * (c->height / f) * (c->width / f);
}

/* Runs case c on e; *lat, *img malloc'd (img post-processed like diffusers' "np"). */
static int generate(struct env *e, const struct vcase *c, const struct sd_st_file *gf, float **lat, float **img) {
    struct sd_gen_params g;
    char key[64];
    sd_gen_params_init(&g);
    g.prompt = c->prompt;
    g.width = c->width, g.height = c->height, g.cfg_scale = c->cfg, g.seed = c->seed, g.strength = c->strength;
    g.sampler.steps = c->steps;
    g.sampler.spacing = c->spacing;
    int rc = sd_sampler_parse_name(&e->ctx, c->sampler, &g.sampler);
    float *init = NULL, *mask = NULL;
    if (c->mode != TXT2IMG) {
        snprintf(key, sizeof key, "init_image.%dx%d", c->width, c->height);
        g.init_image = init = test_golden_copy(gf, key, 3LL * c->width * c->height);
        rc |= !init;
    }
    if (c->mode == INPAINT) {
        snprintf(key, sizeof key, "mask.%dx%d", c->width, c->height);
        g.mask = mask = test_golden_copy(gf, key, (int64_t)c->width * c->height);
        rc |= !mask;
    }
    const int64_t ni = 3LL * c->width * c->height;
    *lat = malloc(sizeof(float) * lat_size(e->m, c));
    *img = malloc(sizeof(float) * ni);
    g.latents_out = *lat;
    if (!rc && (rc = sd_generate(&e->p, &g, *img))) printf("  %s: %s\n", c->name, e->ctx.msg);
    for (int64_t i = 0; !rc && i < ni; i++) {
        float v = (*img)[i] / 2 + 0.5f;
        (*img)[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
    free(init), free(mask);
    return rc;
}

static void test_case(const struct vcase *c, const struct sd_st_file *gf) {
    struct env e;
    if (env_open(&e, c->model)) { test_fail("variant %s: cannot open %s", c->name, c->model); return; }
    const int64_t nl = lat_size(e.m, c), ni = 3LL * c->width * c->height;
    char key[96];
    snprintf(key, sizeof key, "%s.latents", c->name);
    float *ref_lat = test_golden_copy(gf, key, nl);
    snprintf(key, sizeof key, "%s.image", c->name);
    float *ref_img = test_golden_copy(gf, key, ni);
    float *lat = NULL, *img = NULL;
    double e_lat = 0, e_img = 0, mag = 0;
    int bad = !ref_lat || !ref_img || generate(&e, c, gf, &lat, &img);
    if (!bad) {
        for (int64_t i = 0; i < nl; i++) mag = fmax(mag, fabs(ref_lat[i]));
        bad |= check_close(c->name, lat, ref_lat, nl, LAT_ATOL, LAT_RTOL, &e_lat);
        bad |= check_close(c->name, img, ref_img, ni, IMG_ATOL, 0, &e_img);
    }
    if (bad) test_fail("variant %s (%s %s): latents err %.3g, image err %.3g", c->name, c->model, c->sampler, e_lat, e_img);
    else test_ok("variant %s (%s %s, latent %dx%d): latents max abs err %.2e (|ref| <= %.1f), image %.2e", c->name, c->model,
                 c->sampler, c->width / sd_vae_downscale(&e.m->vae), c->height / sd_vae_downscale(&e.m->vae), e_lat, mag,
                 e_img);
    /* The sampler's timesteps for that model and case equal diffusers' list. */
    snprintf(key, sizeof key, "%s.timesteps", c->name);
    const struct sd_st_tensor *tt = sd_st_find(gf, key);
    struct sd_sampler_params sp;
    sd_sampler_params_init(&sp);
    sd_sampler_parse_name(&e.ctx, c->sampler, &sp);
    sp.steps = c->steps;
    sp.spacing = c->spacing != SD_SPACING_DEFAULT ? c->spacing : sd_spacing_parse(e.m->timestep_spacing);
    if (e.m->steps_offset >= 0) sp.steps_offset = e.m->steps_offset;
    struct sd_sampler *s = sd_sampler_new(&e.ctx, &sp, NULL, 16);
    int ok = tt && s && tt->nbytes == sizeof(float) * (size_t)sd_sampler_n_timesteps(s);
    char list[160] = "";
    for (int i = 0, o = 0; ok && i < sd_sampler_n_timesteps(s); i++) {
        float want;
        memcpy(&want, (const char *)tt->data + sizeof(float) * (size_t)i, sizeof want);
        ok = sd_sampler_timestep(s, i) == want;
        o += snprintf(list + o, sizeof list - (size_t)o, "%s%g", i ? " " : "", (double)want);
    }
    if (c->mode == TXT2IMG)
        CHECK(ok, "variant %s: %s timesteps [%s] as diffusers (spacing %s, steps_offset %d)", c->name, c->sampler, list,
              sd_spacing_name(sp.spacing), sp.steps_offset);
    sd_sampler_free(s);
    free(ref_lat), free(ref_img), free(lat), free(img);
    env_free(&e);
}

/* The 3-level VAE's decoder and encoder against diffusers. */
static void test_vae3(const struct sd_st_file *gf) {
    struct env e;
    if (env_open(&e, "tiny-vae3")) { test_fail("vae3: cannot open tiny-vae3"); return; }
    const struct sd_model *m = e.m;
    CHECK(m->vae.n_levels == 3 && sd_vae_downscale(&m->vae) == 4 && m->vae.latent_channels == 4,
          "vae3: 3 levels, image = 4 x latent (levels %d, factor %d)", m->vae.n_levels, sd_vae_downscale(&m->vae));
    float *z = test_golden_copy(gf, "vae3.decode.z", 2 * 4 * 6 * 5), *ref = test_golden_copy(gf, "vae3.decode.image", 2 * 3 * 24 * 20);
    float *out = malloc(sizeof(float) * 2 * 3 * 24 * 20);
    double err = 0;
    int bad = !z || !ref || sd_run_vae_decode(e.rt, e.m, z, 2, 6, 5, out) ||
              check_close("vae3 decode", out, ref, 2 * 3 * 24 * 20, VAE_ATOL, 0, &err);
    CHECK(!bad, "vae3 decode [2,4,6,5] -> [2,3,24,20] as diffusers (max abs err %.2e)", err);
    free(z), free(ref), free(out);
    float *img = test_golden_copy(gf, "vae3.encode.image", 3 * 48 * 40), *mom = test_golden_copy(gf, "vae3.encode.moments", 8 * 12 * 10);
    out = malloc(sizeof(float) * 8 * 12 * 10);
    err = 0;
    bad = !img || !mom || sd_run_vae_encode(e.rt, e.m, img, 1, 48, 40, out) ||
          check_close("vae3 encode", out, mom, 8 * 12 * 10, VAE_ATOL, 0, &err);
    CHECK(!bad, "vae3 encode [1,3,48,40] -> moments [1,8,12,10] as diffusers (max abs err %.2e)", err);
    free(img), free(mom), free(out);
    env_free(&e);
}

/* Two txt2img runs on fresh runtimes give the same bytes (the bug: memory
 * nobody wrote made three runs give three images), and sizes that are not
 * multiples of the VAE factor are refused. */
static void test_vae3_repeat(const struct sd_st_file *gf) {
    const struct vcase *c = &cases[0];
    float *lat[2] = {0}, *img[2] = {0};
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        struct env e;
        rc = env_open(&e, c->model) || generate(&e, c, gf, &lat[k], &img[k]);
        env_free(&e);
    }
    CHECK(!rc && !memcmp(img[0], img[1], sizeof(float) * 3 * c->width * c->height) &&
              !memcmp(lat[0], lat[1], sizeof(float) * 4 * (c->width / 4) * (c->height / 4)),
          "vae3 txt2img twice: identical bytes");
    for (int k = 0; k < 2; k++) free(lat[k]), free(img[k]);
    struct env e;
    if (env_open(&e, c->model)) { test_fail("vae3 size: cannot open"); return; }
    rc = sd_gen_check_size(&e.ctx, e.m, 36, 40);
    CHECK(rc == SD_OK, "vae3: 36x40 (multiples of 4) accepted");
    rc = sd_gen_check_size(&e.ctx, e.m, 34, 40);
    CHECK(rc == SD_ERR_INVALID && strstr(e.ctx.msg, "multiples of 4"), "vae3: 34x40 refused ('%s')", e.ctx.msg);
    env_free(&e);
}

static void test_family(void) {
    static const struct { const char *model; enum sd_family family; int pad; const char *why; } want[] = {
        {"tiny-sd1-linear", SD_FAMILY_SD1, 49407, "quick_gelu"},
        {"tiny-sd1", SD_FAMILY_SD1, 49407, "quick_gelu"},
        {"tiny-sd2", SD_FAMILY_SD2, 0, "hidden_act gelu"},
        {"tiny-sd1-inpaint", SD_FAMILY_SD1_INPAINT, 49407, "quick_gelu"},
        {"tiny-sd2-v.safetensors", SD_FAMILY_SD2, 0, "cond_stage_model.model"},
        {"tiny-sd1.safetensors", SD_FAMILY_SD1, 49407, "cond_stage_model.transformer"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        struct sd_ctx ctx = {0};
        struct sd_model *m = NULL;
        int rc = load(&ctx, want[i].model, &m);
        CHECK(!rc && m->family == want[i].family && m->clip.pad_id == want[i].pad && strstr(m->family_why, want[i].why),
              "family %s: %s, pad %d (%s)", want[i].model, rc ? ctx.msg : sd_family_name(m->family), rc ? -1 : m->clip.pad_id,
              rc ? "" : m->family_why);
        sd_model_free(m);
    }
    /* tiny-sd1-linear has linear projections and no tokenizer/ folder: the
     * SD1 tokenizer pads with <|endoftext|>. */
    struct env e;
    int ok = !env_open(&e, "tiny-sd1-linear");
    int ids[8], n = 0;
    ok = ok && e.m->unet.linear_proj && e.tok->pad_id == 49407 && !sd_tokenizer_encode(e.tok, "a cat", ids, 8, &n) && n == 2;
    CHECK(ok, "tiny-sd1-linear: linear projections, SD1 tokenizer (pad %d)", ok ? e.tok->pad_id : -1);
    env_free(&e);
}

static void test_prediction(void) {
    static const struct { const char *model; enum sd_prediction p; const char *why; } want[] = {
        {"tiny-sd2-v.safetensors", SD_PRED_V, "detected: std of output_blocks.11.1.transformer_blocks.0.norm1.bias = 0.2"},
        {"tiny-sd2-eps.safetensors", SD_PRED_EPSILON, "detected: std of output_blocks.11.1.transformer_blocks.0.norm1.bias = 0.04"},
        {"tiny-sd2", SD_PRED_V, "scheduler_config.json: prediction_type v_prediction"},
        {"tiny-sd1", SD_PRED_EPSILON, "has no prediction_type"},
        {"tiny-sd1.safetensors", SD_PRED_EPSILON, "SD 1.x single file"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        struct sd_ctx ctx = {0};
        struct sd_model *m = NULL;
        int rc = load(&ctx, want[i].model, &m);
        CHECK(!rc && m->prediction == want[i].p && strstr(m->prediction_why, want[i].why), "prediction %s: %s (%s)",
              want[i].model, rc ? ctx.msg : m->prediction == SD_PRED_V ? "v" : "epsilon", rc ? "" : m->prediction_why);
        sd_model_free(m);
    }
    /* A --config folder whose scheduler_config.json states prediction_type
     * decides over the detection (tiny-sd2's says v_prediction). */
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    int rc = sd_model_load(&ctx, "tests/models/tiny-sd2-eps.safetensors", "tests/models/tiny-sd2", &m);
    CHECK(!rc && m->prediction == SD_PRED_V && strstr(m->prediction_why, "tests/models/tiny-sd2/scheduler"),
          "prediction: tiny-sd2-eps with --config tiny-sd2 follows its scheduler config (%s)", rc ? ctx.msg : m->prediction_why);
    sd_model_free(m);
    m = NULL;
    rc = sd_model_load(&ctx, "tests/models/tiny-sd1-sched", NULL, &m);
    CHECK(!rc && !strcmp(m->timestep_spacing, "leading") && m->steps_offset == 0,
          "tiny-sd1-sched: scheduler_config.json timestep_spacing '%s', steps_offset %d", rc ? "?" : m->timestep_spacing,
          rc ? -2 : m->steps_offset);
    sd_model_free(m);
    m = NULL;
    rc = sd_model_load(&ctx, "tests/models/tiny-sd1", NULL, &m);
    CHECK(!rc && !m->timestep_spacing[0] && m->steps_offset == 1,
          "tiny-sd1: no timestep_spacing (class defaults), steps_offset %d", rc ? -2 : m->steps_offset);
    sd_model_free(m);
}

static void test_metadata(const struct sd_st_file *gf) {
    struct sd_ctx ctx = {0};
    const char *cs = sd_json_str(sd_json_get(gf->metadata, "cases"));
    struct sd_json *doc = NULL;
    int bad = !cs || sd_json_parse(&ctx, cs, strlen(cs), &doc) || sd_json_len(doc) != (size_t)N_CASES;
    for (int i = 0; !bad && i < N_CASES; i++) {
        const struct sd_json *j = sd_json_at(doc, (size_t)i);
        const struct vcase *c = &cases[i];
        const char *name = sd_json_str(sd_json_get(j, "name")), *model = sd_json_str(sd_json_get(j, "model"));
        const char *sampler = sd_json_str(sd_json_get(j, "sampler")), *prompt = sd_json_str(sd_json_get(j, "prompt"));
        const char *spacing = sd_json_str(sd_json_get(j, "spacing"));
        int ok = name && !strcmp(name, c->name) && model && !strcmp(model, c->model) && sampler &&
                 !strcmp(sampler, c->sampler) && prompt && !strcmp(prompt, c->prompt) &&
                 sd_spacing_parse(spacing) == c->spacing && sd_json_int(sd_json_get(j, "steps"), -1) == c->steps &&
                 sd_json_int(sd_json_get(j, "width"), -1) == c->width &&
                 sd_json_int(sd_json_get(j, "height"), -1) == c->height &&
                 sd_json_int(sd_json_get(j, "seed"), -1) == (int64_t)c->seed &&
                 sd_json_num(sd_json_get(j, "cfg"), -1) == (double)c->cfg &&
                 sd_json_num(sd_json_get(j, "strength"), -1) == (double)c->strength;
        if (!ok) printf("  case %d (%s) differs from the golden's metadata\n", i, c->name);
        bad |= !ok;
    }
    sd_json_free(doc);
    CHECK(!bad, "variants golden metadata: %d cases as in the table", N_CASES);
}

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_st_file *gf = NULL;
    if (sd_st_open(&ctx, GOLDEN, &gf)) {
        test_fail("open %s: %s", GOLDEN, ctx.msg);
        return 1;
    }
    test_metadata(gf);
    test_family();
    test_prediction();
    test_vae3(gf);
    test_vae3_repeat(gf);
    for (int i = 0; i < N_CASES; i++) test_case(&cases[i], gf);
    sd_st_close(gf);
    return test_failures ? 1 : 0;
}
