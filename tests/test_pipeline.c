/* test_pipeline.c - end-to-end generations (host/gen/pipeline.h) against
 * diffusers on the tiny models.
 *
 * tests/golden/pipeline.safetensors comes from
 * tests/reference/gen_pipeline_goldens.py: StableDiffusionPipeline,
 * StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline (CPU,
 * float32, torch.Generator("cpu").manual_seed(seed)) on tests/models/tiny-sd1,
 * tiny-sd1-inpaint (9-channel UNet) and tiny-sd2 (v prediction). The case
 * table below repeats the script's CASES and is checked against the file's
 * "cases" metadata. Per case the test compares, by name,
 *   <case>.latents  final latents in UNet space (sd_gen_params.latents_out)
 *   <case>.image    clamp(image/2 + 0.5, 0, 1), diffusers' output_type="np"
 * Also: the same seed twice gives identical bytes, 1 and 2 CPU threads give
 * identical bytes (on oneDNN's AVX-512 kernels; within the golden tolerance
 * below that), and a repeated prompt is served by the embedding cache.
 *
 * Tolerances. Every op is float32 on both sides but summation orders differ
 * (oneDNN/our kernels vs torch's), so each UNet call differs by ~1e-6
 * relative. The samplers then amplify: CFG multiplies the difference of the
 * two halves by the guidance scale (7.5), Euler-type updates multiply the
 * model output by sigma (up to ~14.6 at the first step of a linspace
 * schedule) and the tiny random models give latents of magnitude ~20..100.
 * Measured maxima are printed per case (8.6e-6..3.1e-4 abs on latents of
 * |x| <= 100, i.e. ~1e-6 relative; images <= 1e-5); the bounds are atol
 * 3e-3 + rtol 1e-4 on latents and 1e-4 + 1e-4 on images in [0, 1]: 12x the
 * worst case (t2i_batch2, 3.1e-4 on a latent near 0) and far below any real
 * mistake (a wrong RNG draw, timestep or blend changes the outputs by O(1)).
 */
#include "embed_cache.h"
#include "model_load.h"
#include "pipeline.h"
#include "safetensors.h"
#include "test_golden.h"
#include "test.h"
#include "tokenizer.h"

#include <dnnl.h>
#include <unistd.h>

#define GOLDEN "tests/golden/pipeline.safetensors"
#define LAT_ATOL 3e-3
#define LAT_RTOL 1e-4
#define IMG_ATOL 1e-4
#define IMG_RTOL 1e-4

enum mode { TXT2IMG, IMG2IMG, INPAINT };

struct pcase {
    const char *name;
    enum mode mode;
    const char *model, *sampler;
    int steps, width, height;
    float cfg;
    const char *prompt, *negative;
    int batch;
    float strength;
    uint64_t seed;
    int clip_skip;  /* A1111 numbering: 1 = last layer */
};

#define P_CAT "a photo of a cat"
#define P_LIGHT "a watercolor painting of a lighthouse at dawn, soft light"
#define P_ROBOT "a small robot reading a book in a library"
#define NEG "blurry, low quality, watermark"

/* Same as CASES in tests/reference/gen_pipeline_goldens.py. */
static const struct pcase cases[] = {
    {"t2i_euler", TXT2IMG, "tiny-sd1", "Euler", 4, 64, 64, 7.5f, P_CAT, "", 1, 1.0f, 11, 1},
    {"t2i_euler_a", TXT2IMG, "tiny-sd1", "Euler a", 4, 64, 48, 7.5f, P_LIGHT, "", 1, 1.0f, 12, 1},
    {"t2i_ddim", TXT2IMG, "tiny-sd1", "DDIM", 5, 48, 64, 5.0f, P_ROBOT, "", 1, 1.0f, 13, 1},
    {"t2i_dpmpp_2m", TXT2IMG, "tiny-sd1", "DPM++ 2M", 4, 64, 64, 7.5f, P_CAT, "", 1, 1.0f, 14, 1},
    {"t2i_dpmpp_2m_karras", TXT2IMG, "tiny-sd1", "DPM++ 2M Karras", 5, 64, 64, 7.5f, P_CAT, "", 1, 1.0f, 15, 1},
    {"t2i_lms", TXT2IMG, "tiny-sd1", "LMS", 5, 64, 48, 7.5f, P_LIGHT, "", 1, 1.0f, 16, 1},
    {"t2i_plms", TXT2IMG, "tiny-sd1", "PLMS", 4, 64, 64, 7.5f, P_ROBOT, "", 1, 1.0f, 17, 1},
    {"t2i_lcm", TXT2IMG, "tiny-sd1", "LCM", 4, 64, 64, 1.0f, P_CAT, "", 1, 1.0f, 18, 1},
    {"t2i_euler_a_nocfg", TXT2IMG, "tiny-sd1", "Euler a", 4, 64, 64, 1.0f, P_LIGHT, "", 1, 1.0f, 19, 1},
    {"t2i_neg", TXT2IMG, "tiny-sd1", "DPM++ 2M", 4, 64, 64, 7.5f, P_ROBOT, NEG, 1, 1.0f, 20, 1},
    {"t2i_batch2", TXT2IMG, "tiny-sd1", "Euler a", 3, 64, 48, 7.5f, P_CAT, NEG, 2, 1.0f, 21, 1},
    {"t2i_sd2_v", TXT2IMG, "tiny-sd2", "Euler", 4, 64, 64, 7.5f, P_LIGHT, "", 1, 1.0f, 22, 1},
    {"t2i_clip_skip2", TXT2IMG, "tiny-sd1", "Euler", 4, 64, 64, 1.0f, P_ROBOT, "", 1, 1.0f, 32, 2},
    {"i2i_euler_a_s05", IMG2IMG, "tiny-sd1", "Euler a", 6, 64, 48, 7.5f, P_LIGHT, "", 1, 0.5f, 23, 1},
    {"i2i_euler_a_s10", IMG2IMG, "tiny-sd1", "Euler a", 4, 64, 48, 7.5f, P_LIGHT, "", 1, 1.0f, 24, 1},
    {"i2i_ddim_s05", IMG2IMG, "tiny-sd1", "DDIM", 6, 64, 48, 7.5f, P_CAT, "", 1, 0.5f, 25, 1},
    {"i2i_ddim_s10", IMG2IMG, "tiny-sd1", "DDIM", 4, 64, 48, 7.5f, P_CAT, "", 1, 1.0f, 26, 1},
    {"i2i_euler_a_s05_b2", IMG2IMG, "tiny-sd1", "Euler a", 6, 64, 48, 7.5f, P_ROBOT, "", 2, 0.5f, 27, 1},
    {"inp9_euler_a", INPAINT, "tiny-sd1-inpaint", "Euler a", 4, 64, 64, 7.5f, P_CAT, "", 1, 1.0f, 28, 1},
    {"inp9_ddim_s075", INPAINT, "tiny-sd1-inpaint", "DDIM", 4, 64, 64, 7.5f, P_ROBOT, "", 1, 0.75f, 29, 1},
    {"inp4_ddim", INPAINT, "tiny-sd1", "DDIM", 4, 64, 64, 7.5f, P_LIGHT, "", 1, 1.0f, 30, 1},
    {"inp4_euler_a_s075", INPAINT, "tiny-sd1", "Euler a", 4, 64, 64, 7.5f, P_CAT, NEG, 2, 0.75f, 31, 1},
};
#define N_CASES ((int)(sizeof cases / sizeof *cases))

static const struct pcase *case_named(const char *name) {
    for (int i = 0; i < N_CASES; i++)
        if (!strcmp(cases[i].name, name)) return &cases[i];
    return &cases[0];
}

static const char *mode_name(enum mode m) { return m == TXT2IMG ? "txt2img" : m == IMG2IMG ? "img2img" : "inpaint"; }

/* One loaded model with its tokenizer, runtime and cache. */
struct env {
    const char *name;
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

static int env_open(struct env *e, const char *name, int n_threads) {
    char path[256];
    memset(e, 0, sizeof *e);
    e->name = name;
    snprintf(path, sizeof path, "tests/models/%s", name);
    if (sd_model_load(&e->ctx, path, NULL, &e->m)) goto fail;
    if (!(e->tok = sd_tokenizer_load_bpe_gz(&e->ctx, vocab_path()))) goto fail;
    bool v2 = e->m->family == SD_FAMILY_SD2 || e->m->family == SD_FAMILY_SD2_INPAINT;
    if (sd_tokenizer_set_family(e->tok, v2 ? SD_TOKENIZER_SD2 : SD_TOKENIZER_SD1)) goto fail;
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = n_threads;
    if (!(e->rt = sd_runtime_new(&e->ctx, &o))) goto fail;
    if (!(e->cache = sd_embed_cache_new(16u << 20))) goto fail;
    e->p = (struct sd_pipeline){.ctx = &e->ctx, .model = e->m, .rt = e->rt, .tok = e->tok, .cache = e->cache};
    return 0;
fail:
    printf("  %s: %s\n", name, e->ctx.msg);
    env_free(e);
    return 1;
}

/* A golden tensor as a malloc'd float copy (the mapping need not be aligned);
 * NULL (printed) if absent or of the wrong size. */
static void params_for(const struct pcase *c, const struct sd_st_file *gf, struct sd_gen_params *g, float **init,
                       float **mask) {
    struct sd_ctx ctx = {0};
    char key[64];
    sd_gen_params_init(g);
    g->prompt = c->prompt;
    g->negative_prompt = c->negative;
    g->width = c->width, g->height = c->height, g->batch = c->batch;
    g->cfg_scale = c->cfg;
    g->seed = c->seed;
    g->strength = c->strength;
    g->clip_skip = c->clip_skip;
    g->sampler.steps = c->steps;
    if (sd_sampler_parse_name(&ctx, c->sampler, &g->sampler)) printf("  %s\n", ctx.msg);
    *init = *mask = NULL;
    if (c->mode != TXT2IMG) {
        snprintf(key, sizeof key, "init_image.%dx%d", c->width, c->height);
        g->init_image = *init = test_golden_copy(gf, key, 3LL * c->width * c->height);
    }
    if (c->mode == INPAINT) {
        snprintf(key, sizeof key, "mask.%dx%d", c->width, c->height);
        g->mask = *mask = test_golden_copy(gf, key, (int64_t)c->width * c->height);
    }
}

/* Runs one case; returns 0 on success with *lat / *img malloc'd. */
static int generate(struct env *e, const struct pcase *c, const struct sd_st_file *gf, float **lat, float **img) {
    struct sd_gen_params g;
    float *init, *mask;
    params_for(c, gf, &g, &init, &mask);
    const int64_t nl = (int64_t)c->batch * 4 * (c->height / 8) * (c->width / 8);
    const int64_t ni = (int64_t)c->batch * 3 * c->height * c->width;
    *lat = malloc(sizeof(float) * nl);
    *img = malloc(sizeof(float) * ni);
    g.latents_out = *lat;
    int rc = (c->mode != TXT2IMG && !init) || (c->mode == INPAINT && !mask) ? SD_ERR_INVALID
                                                                            : sd_generate(&e->p, &g, *img);
    if (rc) printf("  %s: sd_generate: %s\n", c->name, e->ctx.msg);
    free(init);
    free(mask);
    if (rc) {
        free(*lat), free(*img);
        *lat = *img = NULL;
    }
    return rc;
}

static struct env *env_get(struct env envs[3], const char *model) {
    for (int i = 0; i < 3; i++)
        if (envs[i].m && !strcmp(envs[i].name, model)) return &envs[i];
    for (int i = 0; i < 3; i++)
        if (!envs[i].m) return env_open(&envs[i], model, 1) ? NULL : &envs[i];
    return NULL;
}

static void test_case(struct env envs[3], const struct pcase *c, const struct sd_st_file *gf) {
    struct env *e = env_get(envs, c->model);
    if (!e) { test_fail("%s: cannot open %s", c->name, c->model); return; }
    const int64_t nl = (int64_t)c->batch * 4 * (c->height / 8) * (c->width / 8);
    const int64_t ni = (int64_t)c->batch * 3 * c->height * c->width;
    char key[96];
    snprintf(key, sizeof key, "%s.latents", c->name);
    float *ref_lat = test_golden_copy(gf, key, nl);
    snprintf(key, sizeof key, "%s.image", c->name);
    float *ref_img = test_golden_copy(gf, key, ni);
    float *lat = NULL, *img = NULL;
    double e_lat = 0, e_img = 0, mag = 0;
    int bad = !ref_lat || !ref_img || generate(e, c, gf, &lat, &img);
    if (!bad) {
        for (int64_t i = 0; i < ni; i++) { /* diffusers postprocess: (x / 2 + 0.5).clamp(0, 1) */
            float v = img[i] / 2 + 0.5f;
            img[i] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
        for (int64_t i = 0; i < nl; i++) mag = fmax(mag, fabs(ref_lat[i]));
        bad |= check_close(c->name, lat, ref_lat, nl, LAT_ATOL, LAT_RTOL, &e_lat);
        bad |= check_close(c->name, img, ref_img, ni, IMG_ATOL, IMG_RTOL, &e_img);
    }
    if (bad) test_fail("pipeline %s (%s %s %s %d steps %dx%d b%d): latents err %.3g, image err %.3g", c->name,
                       mode_name(c->mode), c->model, c->sampler, c->steps, c->width, c->height, c->batch, e_lat, e_img);
    else test_ok("pipeline %s (%s %s %s): latents max abs err %.2e (|ref| <= %.1f), image %.2e", c->name,
                 mode_name(c->mode), c->model, c->sampler, e_lat, mag, e_img);
    free(ref_lat), free(ref_img), free(lat), free(img);
}

/* The file's "cases" metadata must describe the same runs as the table. */
static void test_metadata(const struct sd_st_file *gf) {
    struct sd_ctx ctx = {0};
    const char *fmt = sd_json_str(sd_json_get(gf->metadata, "format"));
    const char *ver = sd_json_str(sd_json_get(gf->metadata, "version"));
    const char *cs = sd_json_str(sd_json_get(gf->metadata, "cases"));
    struct sd_json *doc = NULL;
    int bad = !fmt || strcmp(fmt, "sdrt-golden") || !ver || strcmp(ver, "1") || !cs ||
              sd_json_parse(&ctx, cs, strlen(cs), &doc) || sd_json_len(doc) != (size_t)N_CASES;
    for (int i = 0; !bad && i < N_CASES; i++) {
        const struct sd_json *j = sd_json_at(doc, (size_t)i);
        const struct pcase *c = &cases[i];
        const char *name = sd_json_str(sd_json_get(j, "name")), *mode = sd_json_str(sd_json_get(j, "mode"));
        const char *model = sd_json_str(sd_json_get(j, "model")), *sampler = sd_json_str(sd_json_get(j, "sampler"));
        const char *prompt = sd_json_str(sd_json_get(j, "prompt")), *neg = sd_json_str(sd_json_get(j, "negative"));
        int ok = name && !strcmp(name, c->name) && mode && !strcmp(mode, mode_name(c->mode)) && model &&
                 !strcmp(model, c->model) && sampler && !strcmp(sampler, c->sampler) && prompt &&
                 !strcmp(prompt, c->prompt) && neg && !strcmp(neg, c->negative) &&
                 sd_json_int(sd_json_get(j, "steps"), -1) == c->steps &&
                 sd_json_int(sd_json_get(j, "width"), -1) == c->width &&
                 sd_json_int(sd_json_get(j, "height"), -1) == c->height &&
                 sd_json_int(sd_json_get(j, "batch"), -1) == c->batch &&
                 sd_json_int(sd_json_get(j, "seed"), -1) == (int64_t)c->seed &&
                 sd_json_int(sd_json_get(j, "clip_skip"), -1) == c->clip_skip &&
                 sd_json_num(sd_json_get(j, "cfg"), -1) == (double)c->cfg &&
                 sd_json_num(sd_json_get(j, "strength"), -1) == (double)c->strength;
        if (!ok) printf("  case %d (%s) differs from the golden's metadata\n", i, c->name);
        bad |= !ok;
    }
    sd_json_free(doc);
    CHECK(!bad, "pipeline golden metadata: format sdrt-golden v1, %d cases as in the table", N_CASES);
}

static int event_count_clip_cached(void *user, const struct sd_gen_event *ev) {
    int *cached = user;
    if (ev->kind == SD_EV_PHASE && !strcmp(ev->phase, "clip")) *cached = ev->cached;
    return 0;
}

/* Same seed twice: identical bytes; the second run takes both embeddings
 * from the cache (no CLIP run). A different seed gives a different image. */
static void test_repeat_and_cache(struct env envs[3], const struct sd_st_file *gf) {
    const struct pcase *c = case_named("t2i_euler_a"); /* ancestral: uses the RNG every step */
    struct env *e = env_get(envs, c->model);
    if (!e) { test_fail("repeat: no model"); return; }
    struct { int hits, misses; size_t bytes; } s0, s1;
    sd_embed_cache_stats(e->cache, &s0.hits, &s0.misses, &s0.bytes);
    float *l1 = NULL, *i1 = NULL, *l2 = NULL, *i2 = NULL, *l3 = NULL, *i3 = NULL;
    int cached = -1;
    struct sd_gen_params g;
    float *init, *mask;
    const int64_t ni = 3LL * c->height * c->width, nl = 4LL * (c->height / 8) * (c->width / 8);
    int rc = generate(e, c, gf, &l1, &i1);
    if (!rc) { /* the second run through an event callback to see the clip phase */
        params_for(c, gf, &g, &init, &mask);
        g.on_event = event_count_clip_cached, g.user = &cached;
        l2 = malloc(sizeof(float) * nl), i2 = malloc(sizeof(float) * ni);
        g.latents_out = l2;
        rc = sd_generate(&e->p, &g, i2);
    }
    sd_embed_cache_stats(e->cache, &s1.hits, &s1.misses, &s1.bytes);
    CHECK(!rc && !memcmp(l1, l2, sizeof(float) * nl) && !memcmp(i1, i2, sizeof(float) * ni),
          "pipeline same seed twice: identical latents and image bytes");
    /* the first run may or may not have hit (earlier cases used the prompt);
     * the second must hit for both the prompt and the empty negative */
    CHECK(!rc && cached == 1 && s1.hits - s0.hits >= 2 && s1.bytes > 0,
          "pipeline embedding cache: repeated prompt served from the cache (clip cached=%d, hits +%d, %zu bytes)",
          cached, s1.hits - s0.hits, s1.bytes);
    if (!rc) {
        g.seed = c->seed + 1, g.on_event = NULL;
        l3 = malloc(sizeof(float) * nl), i3 = malloc(sizeof(float) * ni);
        g.latents_out = l3;
        rc = sd_generate(&e->p, &g, i3);
    }
    CHECK(!rc && memcmp(l1, l3, sizeof(float) * nl), "pipeline another seed gives other latents");
    /* One cache shared by runtimes (a server's pool): a runtime made as
     * e's (1 thread, f32) is served e's embeddings; one that rounds
     * differently (bf16) encodes the prompt itself, so its image never
     * depends on which runtime encoded first. */
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    struct sd_runtime *same = sd_runtime_new(&e->ctx, &o);
    o.precision = SD_PRECISION_BF16;
    struct sd_runtime *other = sd_runtime_new(&e->ctx, &o);
    int hit[2] = {0};
    struct sd_runtime *rts[2] = {same, other};
    for (int k = 0; k < 2 && !rc; k++) {
        struct sd_pipeline p = e->p;
        p.rt = rts[k];
        sd_embed_cache_stats(e->cache, &s0.hits, &s0.misses, &s0.bytes);
        rc = !rts[k] || sd_generate(&p, &g, i3);
        sd_embed_cache_stats(e->cache, &s1.hits, &s1.misses, &s1.bytes);
        hit[k] = s1.hits - s0.hits;
        if (rts[k]) sd_runtime_release_model(rts[k], e->m);
    }
    CHECK(!rc && hit[0] >= 2 && hit[1] == 0 && sd_runtime_numerics(same) == sd_runtime_numerics(e->rt) &&
              sd_runtime_numerics(other) != sd_runtime_numerics(e->rt),
          "embedding cache shared by runtimes: one made the same way hits (+%d), a bf16 one encodes its own (+%d hits)",
          hit[0], hit[1]);
    sd_runtime_free(same);
    sd_runtime_free(other);
    free(l1), free(i1), free(l2), free(i2), free(l3), free(i3);
}

struct cancel_at {
    int step, decoded;
    float *x0;
    size_t n;
};

static int cancel_at_step(void *user, const struct sd_gen_event *ev) {
    struct cancel_at *c = user;
    if (ev->kind == SD_EV_PHASE && !strcmp(ev->phase, "vae_decode")) c->decoded = 1;
    if (ev->kind != SD_EV_STEP || ev->step != c->step) return 0;
    memcpy(c->x0, ev->x0, c->n * sizeof(float));
    return 1;
}

/* decode_on_cancel (A1111's interrupt): cancelled at step 2, the images are
 * the VAE decode of that step's x0 prediction, bit for bit; without it,
 * nothing is decoded. */
static int count_steps(void *user, const struct sd_gen_event *ev) {
    if (ev->kind == SD_EV_STEP) ++*(int *)user;
    return 0;
}

/* img2img runs int(steps * strength) steps with strength the decimal the user
 * wrote, computed in double as diffusers does: 20 x 0.7 = 14.000000000000002
 * -> 14 (0.7f * 20 in float precision would give 13), 100 x 0.29 =
 * 28.999999999999996 -> 28. */
static void test_strength_steps(struct env envs[3], const struct sd_st_file *gf) {
    static const struct { int steps; float strength; int want; } k[] = {{20, 0.7f, 14}, {100, 0.29f, 28}, {10, 0.3f, 3}};
    const struct pcase *c = case_named("i2i_ddim_s05");
    struct env *e = env_get(envs, c->model);
    if (!e) { test_fail("strength steps: no model"); return; }
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        struct sd_gen_params g;
        float *init, *mask;
        params_for(c, gf, &g, &init, &mask);
        int n = 0;
        g.sampler.steps = k[i].steps, g.strength = k[i].strength, g.on_event = count_steps, g.user = &n;
        float *img = malloc(sizeof(float) * 3 * (size_t)c->height * c->width);
        int rc = img ? sd_generate(&e->p, &g, img) : -1;
        CHECK(!rc && n == k[i].want, "img2img %d steps x strength %g: %d denoising steps (diffusers: %d)", k[i].steps,
              (double)k[i].strength, n, k[i].want);
        free(img), free(init), free(mask);
    }
}

static void test_decode_on_cancel(struct env envs[3], const struct sd_st_file *gf) {
    const struct pcase *c = case_named("t2i_euler_a");
    struct env *e = env_get(envs, c->model);
    if (!e) { test_fail("decode_on_cancel: no model"); return; }
    struct sd_gen_params g;
    float *init, *mask;
    params_for(c, gf, &g, &init, &mask);
    const int h = c->height / 8, w = c->width / 8;
    const size_t nl = (size_t)4 * h * w, ni = (size_t)3 * c->height * c->width;
    struct cancel_at ca = {.step = 1, .x0 = malloc(sizeof(float) * nl), .n = nl};
    float *img = malloc(sizeof(float) * ni), *ref = malloc(sizeof(float) * ni), *lat = malloc(sizeof(float) * nl);
    g.on_event = cancel_at_step, g.user = &ca, g.decode_on_cancel = 1;
    int rc = sd_generate(&e->p, &g, img);
    const float inv = 1.0f / e->m->vae.scaling_factor; /* as the pipeline scales */
    for (size_t i = 0; i < nl; i++) lat[i] = ca.x0[i] * inv;
    int rc2 = sd_run_vae_decode(e->rt, e->m, lat, 1, h, w, ref);
    CHECK(rc == SD_ERR_CANCELLED && ca.decoded && !rc2 && !memcmp(img, ref, sizeof(float) * ni),
          "pipeline decode_on_cancel: cancelled at step 2 of %d -> the image of that step's x0, bit for bit (rc %d, decoded %d, decode %d, "
          "differ %d)", c->steps, rc, ca.decoded, rc2, memcmp(img, ref, sizeof(float) * ni) != 0);
    sd_ctx_clear(&e->ctx);
    ca.decoded = 0, g.decode_on_cancel = 0;
    rc = sd_generate(&e->p, &g, img);
    CHECK(rc == SD_ERR_CANCELLED && !ca.decoded, "pipeline cancel without decode_on_cancel: no decode (rc %d)", rc);
    sd_ctx_clear(&e->ctx);
    free(ca.x0), free(img), free(ref), free(lat), free(init), free(mask);
}

/* 1 vs 2 CPU threads on fresh runtimes (txt2img with CFG, and 9-channel
 * inpaint with VAE encode): identical bytes where oneDNN runs its AVX-512
 * kernels, whose reductions do not depend on the thread count. Its AVX2-only
 * kernels split some reductions by thread (measured: bytes differ, values
 * agree to the summation-order level), so there the two runs are held to the
 * golden tolerance instead, and the line says which rule applied. */
static void test_threads(const struct sd_st_file *gf) {
    const struct pcase *pick[2] = {case_named("t2i_euler"), case_named("inp9_euler_a")};
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    const int exact = (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
    for (int k = 0; k < 2; k++) {
        const struct pcase *c = pick[k];
        float *lat[2] = {0}, *img[2] = {0};
        int rc = 0;
        for (int t = 0; t < 2 && !rc; t++) {
            struct env e;
            rc = env_open(&e, c->model, t + 1) || generate(&e, c, gf, &lat[t], &img[t]);
            env_free(&e);
        }
        const int64_t nl = (int64_t)c->batch * 4 * (c->height / 8) * (c->width / 8);
        const int64_t ni = (int64_t)c->batch * 3 * c->height * c->width;
        if (exact) {
            CHECK(!rc && !memcmp(lat[0], lat[1], sizeof(float) * nl) && !memcmp(img[0], img[1], sizeof(float) * ni),
                  "pipeline %s: 1 thread and 2 threads give identical bytes (oneDNN ISA 0x%x, AVX-512)", c->name,
                  (unsigned)isa);
        } else {
            double el = 0, ei = 0;
            CHECK(!rc && !check_close("threads latents", lat[1], lat[0], nl, 3e-3, 1e-4, &el) &&
                      !check_close("threads image", img[1], img[0], ni, 1e-4, 1e-4, &ei),
                  "pipeline %s: 1 and 2 threads agree within the golden tolerance (oneDNN ISA 0x%x below AVX-512: its "
                  "kernels split reductions by thread; max abs diff latents %.2g, image %.2g)", c->name, (unsigned)isa,
                  el, ei);
        }
        free(lat[0]), free(lat[1]), free(img[0]), free(img[1]);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    /* The tiny models run thousands of microsecond-sized parallel regions;
     * with libgomp's default wait policy the idle thread spins between them,
     * which on a loaded 2-core machine doubles the wall time (measured 17 s
     * -> 7 s under ASan). libgomp reads the policy when it is loaded, before
     * main, so the test re-executes itself once with it set. Results do not
     * depend on the wait policy. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    struct sd_ctx ctx = {0};
    struct sd_st_file *gf = NULL;
    if (sd_st_open(&ctx, GOLDEN, &gf)) {
        test_fail("pipeline: %s", ctx.msg);
        return test_summary();
    }
    test_metadata(gf);
    struct env envs[3];
    memset(envs, 0, sizeof envs);
    for (int i = 0; i < N_CASES; i++) test_case(envs, &cases[i], gf);
    test_repeat_and_cache(envs, gf);
    test_decode_on_cancel(envs, gf);
    test_strength_steps(envs, gf);
    for (int i = 0; i < 3; i++) env_free(&envs[i]);
    test_threads(gf);
    sd_st_close(gf);
    return test_summary();
}
