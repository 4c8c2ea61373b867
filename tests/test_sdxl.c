/* test_sdxl.c - SDXL parity with diffusers/transformers on the tiny
 * SDXL-architecture model (tests/reference/gen_tiny_sdxl.py), loaded as a
 * diffusers folder (f32) and as an SGM single file (f16, f16-exact weights;
 * its heads come from the folder's configs via --config):
 *   - `sdrt info`-level facts: family, parameter counts per component equal
 *     to what diffusers reports for the same weights;
 *   - text encoder 1 (CLIP ViT-L layout) hidden_states[-2], text encoder 2
 *     (OpenCLIP bigG layout) hidden_states[-2] and its pooled, projected
 *     text_embeds;
 *   - the UNet with add_embedding (pooled text + 6 Fourier-embedded time
 *     ids) at batch 2, 16x16 and 9x11;
 *   - the VAE decode (SDXL scaling factor) and encode moments;
 *   - bad input: an SGM file without its second encoder, a folder without
 *     text_encoder_2/;
 *   - whole pipelines against diffusers' StableDiffusionXLPipeline /
 *     StableDiffusionXLImg2ImgPipeline (tests/reference/gen_sdxl_pipeline_goldens.py,
 *     CPU generator, same seeds): txt2img with Euler, DPM++ 2M (with a
 *     negative prompt), Euler a at batch 2, no CFG; img2img with Euler a at
 *     strength 0.6; base + refiner hand-off at 0.8 (Euler, where A1111's
 *     in-run switch equals diffusers' denoising_end / denoising_start);
 *     Turbo-style 1 step (Euler a, trailing timesteps, no CFG). Latents and images compared as in test_pipeline.c (atol
 *     3e-3 + rtol 1e-4 on latents of |x| ~ 20, 1e-4 on images in [0, 1]).
 * Tolerances: about 10x the measured error (printed in each ok line).
 */
#include "embed_cache.h"
#include "lora.h"
#include "prompt.h"
#include "sdxl_cond.h"
#include "model_load.h"
#include "model_run.h"
#include "pipeline.h"
#include "tokenizer.h"
#include "weights.h"
#include "safetensors.h"
#include "test.h"
#include "golden_st.h"
#include "sdxl_parity.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "png_io.h"

/* Parameter counts of diffusers' components for the same weights
 * (gen_tiny_sdxl.py prints them). */
static void test_counts(struct sd_model *m, const char *label) {
    CHECK(sd_weights_n_params(m->te) == 398512 && sd_weights_n_params(m->te2) == 599640 &&
              sd_weights_n_params(m->un) == 231772 && sd_weights_n_params(m->va) == 100247,
          "%s parameters per component as diffusers: te %lld, te2 %lld, unet %lld, vae %lld", label,
          (long long)sd_weights_n_params(m->te), (long long)sd_weights_n_params(m->te2), (long long)sd_weights_n_params(m->un),
          (long long)sd_weights_n_params(m->va));
    CHECK(m->unet.add_in == 60 && m->unet.add_n_ids == 6 && m->unet.add_time_dim == 8 && m->clip2.projection == 12 &&
              m->unet.context_dim == 20 && m->clip2.pad_id == 0 && m->clip.pad_id == 49407,
          "%s config: add_embedding %d = pooled %d + %d ids x %d, context %d, pads %d / %d", label, m->unet.add_in,
          m->clip2.projection, m->unet.add_n_ids, m->unet.add_time_dim, m->unet.context_dim, m->clip.pad_id, m->clip2.pad_id);
}

/* The refiner: bigG only, 5 time ids (original size, crop, aesthetic score). */
static void test_refiner(struct sd_runtime *rt, struct sd_st_file *g, const char *path, const char *config, const char *label) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    if (sd_model_load(&ctx, path, config, &m)) {
        test_fail("%s: load: %s", label, ctx.msg);
        return;
    }
    CHECK(m->family == SD_FAMILY_SDXL_REFINER && !m->te && m->te2 && m->unet.add_n_ids == 5 && m->unet.context_dim == 12 &&
              sd_weights_n_params(m->un) == 281868 && sd_weights_n_params(m->te2) == 599640,
          "%s detected as %s (%s): %d time ids, context %d, unet %lld parameters", label, sd_family_name(m->family),
          m->family_why, m->unet.add_n_ids, m->unet.context_dim, (long long)sd_weights_n_params(m->un));
    static const char *parts[6] = {"sample", "timestep", "context", "text_embeds", "time_ids", "out"};
    const struct sd_st_tensor *t[6];
    int ok = 1;
    for (int i = 0; i < 6; i++) {
        char n[64];
        snprintf(n, sizeof n, "refiner.%s", parts[i]);
        ok &= (t[i] = gt(g, n)) != NULL;
    }
    if (ok) {
        char what[160];
        snprintf(what, sizeof what, "%s unet (aesthetic-score add_embedding) 9x11 batch 2", label);
        float *out = malloc(sizeof(float) * (size_t)numel(t[5]));
        if (sd_run_unet_xl(rt, m, t[0]->data, 2, 9, 11, t[1]->data, t[2]->data, 77, t[3]->data, t[4]->data, out))
            test_fail("%s: %s", what, sd_runtime_ctx(rt)->msg);
        else
            compare(what, out, t[5]->data, numel(t[5]), 3e-5, 3e-4);
        free(out);
    }
    sd_runtime_release_model(rt, m);
    sd_model_free(m);
}

/* A copy of the SGM file without the tensors under `drop`: loading it must
 * fail with a message containing `want`. */
static void test_bad_single(const char *drop, const char *want, const char *what) {
    struct sd_ctx ctx = {0};
    struct sd_st_file *f = NULL;
    char path[] = "/tmp/sdrt_sdxl_bad_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || sd_st_open(&ctx, "tests/models/tiny-sdxl.safetensors", &f)) {
        test_fail("%s: setup (%s)", what, ctx.msg);
        return;
    }
    close(fd);
    struct sd_st_tensor *keep = malloc(sizeof *keep * (size_t)f->n_tensors);
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (strncmp(f->tensors[i].name, drop, strlen(drop))) keep[n++] = f->tensors[i];
    struct sd_model *m = NULL;
    if (sd_st_write(&ctx, path, keep, n, NULL)) {
        test_fail("%s: write: %s", what, ctx.msg);
    } else {
        int rc = sd_model_load(&ctx, path, "tests/models/tiny-sdxl", &m);
        CHECK(rc != SD_OK && !m && strstr(ctx.msg, want), "%s is refused: %s", what, ctx.msg);
    }
    sd_model_free(m);
    unlink(path);
    free(keep);
    sd_st_close(f);
}

/* A diffusers SDXL folder without text_encoder_2/ (links to the others). */
static void test_bad_folder(void) {
    char dir[] = "/tmp/sdrt_sdxl_dir_XXXXXX", cwd[1024], a[2048], b[2048];
    static const char *subs[] = {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "model_index.json"};
    if (!mkdtemp(dir) || !getcwd(cwd, sizeof cwd)) {
        test_fail("sdxl folder without text_encoder_2: setup");
        return;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        snprintf(a, sizeof a, "%s/tests/models/tiny-sdxl/%s", cwd, subs[i]);
        snprintf(b, sizeof b, "%s/%s", dir, subs[i]);
        if (symlink(a, b)) test_fail("symlink %s", b);
    }
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    int rc = sd_model_load(&ctx, dir, NULL, &m);
    CHECK(rc != SD_OK && !m && strstr(ctx.msg, "without text_encoder_2"), "SDXL folder without text_encoder_2 is refused: %s",
          ctx.msg);
    sd_model_free(m);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        snprintf(b, sizeof b, "%s/%s", dir, subs[i]);
        unlink(b);
    }
    rmdir(dir);
}

enum xmode { XT2I, XI2I, XREFINER, XTURBO, XINPAINT };

struct xcase {
    const char *name;
    enum xmode mode;
    const char *sampler;
    int steps, width, height;
    float cfg;
    const char *prompt, *negative;
    int batch;
    float strength;
    uint64_t seed;
};

#define NEG "blurry, low quality, watermark"
static const struct xcase xcases[] = {
    {"xl_t2i_euler", XT2I, "Euler", 4, 64, 64, 7.5f, "a photo of a cat", "", 1, 1.0f, 41},
    {"xl_t2i_dpmpp_2m_neg", XT2I, "DPM++ 2M", 4, 64, 48, 5.0f, "a watercolor painting of a lighthouse at dawn, soft light",
     NEG, 1, 1.0f, 42},
    {"xl_t2i_euler_a_b2", XT2I, "Euler a", 3, 48, 64, 7.5f, "a small robot reading a book in a library", NEG, 2, 1.0f, 43},
    {"xl_t2i_nocfg", XT2I, "Euler", 3, 64, 64, 1.0f, "a photo of a cat", "", 1, 1.0f, 44},
    {"xl_i2i_euler_a_s06", XI2I, "Euler a", 5, 64, 48, 7.5f, "a watercolor painting of a lighthouse at dawn, soft light", "",
     1, 0.6f, 45},
    /* strength: the refiner switch */
    {"xl_refiner_euler", XREFINER, "Euler", 10, 64, 64, 7.5f, "a photo of a cat", NEG, 1, 0.8f, 46},
    {"xl_turbo_1step", XTURBO, "Euler a", 1, 64, 64, 0.0f, "a photo of a cat", "", 1, 1.0f, 47},
    /* tests/models/tiny-sdxl-inpaint: 9-channel UNet */
    {"xl_inp9_euler_a", XINPAINT, "Euler a", 4, 64, 64, 7.5f, "a photo of a cat", NEG, 1, 1.0f, 48},
    {"xl_inp9_ddim_s075", XINPAINT, "DDIM", 4, 64, 64, 7.5f, "a small robot reading a book in a library", "", 1, 0.75f, 49},
};
static const char *const xmode_name[] = {"txt2img", "img2img", "base + refiner", "turbo (trailing, no CFG)",
                                         "inpaint (9-channel UNet)"};

static float *gcopy(struct sd_st_file *f, const char *name, int64_t n) {
    const struct sd_st_tensor *t = gt(f, name);
    if (!t || t->type != SD_F32 || t->nbytes != (size_t)n * sizeof(float)) return NULL;
    float *o = malloc(t->nbytes);
    memcpy(o, t->data, t->nbytes);
    return o;
}

static void test_pipeline(const char *path, const char *config, const char *rpath, const char *rconfig, const char *ipath,
                          const char *iconfig, const char *label) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL, *ref = NULL, *inp = NULL;
    struct sd_tokenizer *tok = NULL;
    struct sd_runtime *rt = NULL;
    struct sd_embed_cache *cache = sd_embed_cache_new(16u << 20);
    struct sd_st_file *gf = golden("sdxl_pipeline");
    if (sd_model_load(&ctx, path, config, &m) || !(tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path())) ||
        !(rt = sd_runtime_new(&ctx, NULL)) || !gf || sd_model_load(&ctx, rpath, rconfig, &ref) ||
        (ipath && sd_model_load(&ctx, ipath, iconfig, &inp))) {
        test_fail("%s pipeline setup: %s", label, ctx.msg);
        goto out;
    }
    struct sd_pipeline p = {.ctx = &ctx, .model = m, .rt = rt, .tok = tok, .cache = cache};
    for (size_t i = 0; i < sizeof xcases / sizeof xcases[0]; i++) {
        const struct xcase *c = &xcases[i];
        if (c->mode == XINPAINT && !inp) continue;
        p.model = c->mode == XINPAINT ? inp : m;
        if (c->mode == XINPAINT)
            CHECK(inp->family == SD_FAMILY_SDXL_INPAINT, "%s detected as %s (%s)", ipath, sd_family_name(inp->family),
                  inp->family_why);
        struct sd_gen_params g;
        sd_gen_params_init(&g);
        g.prompt = c->prompt, g.negative_prompt = c->negative;
        g.width = c->width, g.height = c->height, g.batch = c->batch, g.cfg_scale = c->cfg, g.seed = c->seed;
        g.strength = c->strength, g.sampler.steps = c->steps;
        if (c->mode == XREFINER) g.refiner = ref, g.refiner_switch = c->strength, g.strength = 1.0f;
        if (c->mode == XTURBO) g.sampler.spacing = SD_SPACING_TRAILING;
        if (sd_sampler_parse_name(&ctx, c->sampler, &g.sampler)) test_fail("%s: sampler %s", c->name, ctx.msg);
        const int64_t nl = (int64_t)c->batch * 4 * (c->height / 8) * (c->width / 8), ni = (int64_t)c->batch * 3 * c->height * c->width;
        char key[96];
        float *init = NULL, *mask = NULL;
        if (c->mode == XI2I || c->mode == XINPAINT) {
            snprintf(key, sizeof key, "init_image.%dx%d", c->width, c->height);
            g.init_image = init = gcopy(gf, key, 3LL * c->width * c->height);
        }
        if (c->mode == XINPAINT) {
            snprintf(key, sizeof key, "mask.%dx%d", c->width, c->height);
            g.mask = mask = gcopy(gf, key, (int64_t)c->width * c->height);
        }
        snprintf(key, sizeof key, "%s.latents", c->name);
        float *ref_lat = gcopy(gf, key, nl);
        snprintf(key, sizeof key, "%s.image", c->name);
        float *ref_img = gcopy(gf, key, ni);
        float *lat = malloc(sizeof(float) * (size_t)nl), *img = malloc(sizeof(float) * (size_t)ni);
        g.latents_out = lat;
        double e_lat = 0, e_img = 0, mag = 0;
        int bad = !ref_lat || !ref_img || ((c->mode == XI2I || c->mode == XINPAINT) && !init) || (c->mode == XINPAINT && !mask);
        if (!bad && sd_generate(&p, &g, img)) {
            printf("  %s: %s\n", c->name, ctx.msg);
            bad = 1;
        }
        if (!bad) {
            for (int64_t k = 0; k < ni; k++) {
                float v = img[k] / 2 + 0.5f;
                img[k] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
            for (int64_t k = 0; k < nl; k++) mag = fmax(mag, fabs(ref_lat[k]));
            bad |= check_close(c->name, lat, ref_lat, nl, 3e-3, 1e-4, &e_lat);
            bad |= check_close(c->name, img, ref_img, ni, 1e-4, 1e-4, &e_img);
        }
        if (bad) test_fail("%s pipeline %s: latents err %.3g, image err %.3g", label, c->name, e_lat, e_img);
        else test_ok("%s pipeline %s (%s %s, %d steps, %dx%d, batch %d) matches diffusers: latents max abs err %.2e "
                     "(|ref| <= %.1f), image %.2e", label, c->name, xmode_name[c->mode], c->sampler, c->steps,
                     c->width, c->height, c->batch, e_lat, mag, e_img);
        if (c->mode == XREFINER && !bad) { /* the hand-off matters: the base alone ends elsewhere */
            g.refiner = NULL;
            double d = 0;
            if (sd_generate(&p, &g, img)) test_fail("%s without the refiner: %s", c->name, ctx.msg);
            for (int64_t k = 0; k < nl; k++) d = fmax(d, fabs(lat[k] - ref_lat[k]));
            CHECK(d > 0.1, "%s: the base alone differs from the hand-off by %.3g (the refiner steps count)", c->name, d);
        }
        free(init), free(mask), free(ref_lat), free(ref_img), free(lat), free(img);
    }
out:
    if (rt && m) sd_runtime_release_model(rt, m);
    if (rt && ref) sd_runtime_release_model(rt, ref);
    if (rt && inp) sd_runtime_release_model(rt, inp);
    sd_model_free(ref);
    sd_model_free(inp);
    sd_runtime_free(rt);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
    sd_model_free(m);
    sd_st_close(gf);
}

struct ev_seen { struct sd_lora_report rep; int steps, sdxl_steps; };
static int lora_event(void *user, const struct sd_gen_event *ev) {
    struct ev_seen *e = user;
    if (ev->kind == SD_EV_LORA && ev->lora) e->rep = *ev->lora;
    if (ev->kind == SD_EV_STEP) e->steps++, e->sdxl_steps += ev->sdxl; /* previews pick SDXL's latent->RGB map */
    return 0;
}

/* SDXL LoRAs (tests/reference/gen_lora_sdxl.py) against diffusers'
 * load_lora_weights + fuse_lora: kohya lora_te1_/lora_te2_ + SGM-named UNet
 * modules at 0.8, PEFT unet./text_encoder./text_encoder_2. at 0.7; every
 * module must match; then no LoRA gives the plain golden again (exact
 * restore). On the SGM file the bigG q/k/v are row slices of in_proj. */
static void test_lora(const char *path, const char *config, const char *label) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    struct sd_tokenizer *tok = NULL;
    struct sd_runtime *rt = NULL;
    struct sd_lora_state *ls = NULL;
    struct sd_embed_cache *cache = sd_embed_cache_new(16u << 20);
    struct sd_st_file *gl = golden("lora_sdxl"), *gp = golden("sdxl_pipeline");
    if (sd_model_load(&ctx, path, config, &m) || !(tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path())) ||
        !(rt = sd_runtime_new(&ctx, NULL)) || !(ls = sd_lora_state_new(&ctx, m)) || !gl || !gp) {
        test_fail("%s lora setup: %s", label, ctx.msg);
        goto out;
    }
    struct sd_pipeline p = {.ctx = &ctx, .model = m, .rt = rt, .tok = tok, .cache = cache, .lora = ls};
    static const struct { const char *name, *file; float mult; } cases[] = {
        {"sdxl_kohya", "tests/lora/sdxl_kohya.safetensors", 0.8f},
        {"sdxl_peft", "tests/lora/sdxl_peft.safetensors", 0.7f},
        {"xl_t2i_euler", NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sd_gen_params g;
        sd_gen_params_init(&g);
        g.prompt = "a photo of a cat", g.width = g.height = 64, g.cfg_scale = 7.5f, g.seed = 41, g.sampler.steps = 4;
        sd_sampler_parse_name(&ctx, "Euler", &g.sampler);
        struct sd_lora_req req = {cases[i].file, cases[i].mult, cases[i].mult};
        struct ev_seen seen = {0};
        struct sd_lora_report *const rp = &seen.rep;
        if (cases[i].file) g.loras = &req, g.n_loras = 1;
        g.on_event = lora_event, g.user = &seen;
        char key[96];
        struct sd_st_file *gf = cases[i].file ? gl : gp;
        snprintf(key, sizeof key, "%s.latents", cases[i].name);
        float *ref_lat = gcopy(gf, key, 4 * 8 * 8);
        snprintf(key, sizeof key, "%s.image", cases[i].name);
        float *ref_img = gcopy(gf, key, 3 * 64 * 64);
        float lat[4 * 8 * 8], *img = malloc(sizeof(float) * 3 * 64 * 64);
        g.latents_out = lat;
        double e_lat = 0, e_img = 0;
        int bad = !ref_lat || !ref_img;
        if (!bad && sd_generate(&p, &g, img)) {
            printf("  %s: %s\n", cases[i].name, ctx.msg);
            bad = 1;
        }
        if (!bad) {
            for (int k = 0; k < 3 * 64 * 64; k++) img[k] = img[k] / 2 + 0.5f < 0 ? 0 : img[k] / 2 + 0.5f > 1 ? 1 : img[k] / 2 + 0.5f;
            bad |= check_close(cases[i].name, lat, ref_lat, 4 * 8 * 8, 3e-3, 1e-4, &e_lat);
            bad |= check_close(cases[i].name, img, ref_img, 3 * 64 * 64, 1e-4, 1e-4, &e_img);
        }
        bad |= cases[i].file && (rp->matched == 0 || rp->unmatched != 0);
        bad |= seen.steps != 4 || seen.sdxl_steps != 4;
        if (bad) test_fail("%s lora %s: latents err %.3g, image err %.3g, %d modules matched, %d not; %d of %d step events "
                           "marked SDXL", label, cases[i].name, e_lat, e_img, rp->matched, rp->unmatched, seen.sdxl_steps,
                           seen.steps);
        else test_ok("%s %s%s matches diffusers (%d modules, none unmatched): latents err %.2e, image %.2e; step events "
                     "marked SDXL", label, cases[i].name, cases[i].file ? " LoRA" : " after the LoRAs (restored)", rp->matched,
                     e_lat, e_img);
        free(ref_lat), free(ref_img), free(img);
    }
    sd_lora_apply(ls, NULL, 0, &rt, 1, NULL, NULL);
out:
    sd_lora_state_free(ls);
    if (rt && m) sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
    sd_model_free(m);
    sd_st_close(gl);
    sd_st_close(gp);
}

/* A1111 prompt handling on both encoders (no diffusers reference: diffusers
 * truncates at 77 and has no emphasis syntax): BREAK makes a second chunk
 * that each encoder sees alone, the pooled vector is the first chunk's, and
 * emphasis weights are A1111's mean-restoring rescale applied to each
 * encoder's half of the context separately. */
static void test_prompt_chunks(void) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    struct sd_tokenizer *tok = NULL;
    struct sd_runtime *rt = NULL;
    struct sd_embed_cache *cache = sd_embed_cache_new(16u << 20);
    if (sd_model_load(&ctx, "tests/models/tiny-sdxl", NULL, &m) || !(tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path())) ||
        !(rt = sd_runtime_new(&ctx, NULL))) {
        test_fail("prompt chunks setup: %s", ctx.msg);
    } else {
        struct sd_pipeline p = {.ctx = &ctx, .model = m, .rt = rt, .tok = tok, .cache = cache};
        const int W = sd_sdxl_context_width(m), P = sd_sdxl_pooled_width(m), L = 77, d1 = m->clip.hidden;
        float *a = NULL, *b = NULL, *ab = NULL, *wt = NULL, pa[64], pb[64], pab[64], pw[64];
        int na = 0, nb = 0, nab = 0, nw = 0, cached = 0;
        int rc = sd_sdxl_encode_prompt(&p, "a photo of a cat", &a, &na, pa, &cached) ||
                 sd_sdxl_encode_prompt(&p, "a dog", &b, &nb, pb, &cached) ||
                 sd_sdxl_encode_prompt(&p, "a photo of a cat BREAK a dog", &ab, &nab, pab, &cached) ||
                 sd_sdxl_encode_prompt(&p, "a photo of a (cat:1.5)", &wt, &nw, pw, &cached);
        if (rc) {
            test_fail("prompt chunks: %s", ctx.msg);
        } else {
            CHECK(W == 20 && P == 12 && na == 1 && nb == 1 && nab == 2 && nw == 1 &&
                      !memcmp(ab, a, sizeof(float) * L * W) && !memcmp(ab + L * W, b, sizeof(float) * L * W) &&
                      !memcmp(pab, pa, sizeof(float) * P),
                  "SDXL prompt 'A BREAK B': 2 chunks, each encoded alone by both encoders (context %d wide), pooled of "
                  "the first", W);
            /* expected weighting: per encoder, z *= w, then * mean(z) / mean(z w) per chunk */
            float *z1 = malloc(sizeof(float) * L * d1), *z2 = malloc(sizeof(float) * L * (W - d1)), w[77];
            for (int t = 0; t < L; t++) {
                memcpy(z1 + t * d1, a + t * W, sizeof(float) * d1);
                memcpy(z2 + t * (W - d1), a + t * W + d1, sizeof(float) * (W - d1));
                w[t] = t == 5 ? 1.5f : 1.0f; /* BOS a photo of a cat: "cat" is token 5 */
            }
            sd_prompt_apply_weights(z1, w, 1, L, d1);
            sd_prompt_apply_weights(z2, w, 1, L, W - d1);
            double e = 0;
            for (int t = 0; t < L; t++) {
                for (int k = 0; k < d1; k++) e = fmax(e, fabs(wt[t * W + k] - z1[t * d1 + k]));
                for (int k = 0; k < W - d1; k++) e = fmax(e, fabs(wt[t * W + d1 + k] - z2[t * (W - d1) + k]));
            }
            double moved = 0;
            for (int k = 0; k < L * W; k++) moved = fmax(moved, fabs(wt[k] - a[k]));
            CHECK(e == 0 && moved > 0.01 && !memcmp(pw, pa, sizeof(float) * P),
                  "SDXL emphasis (cat:1.5): A1111's rescale per encoder (max diff %g; changed the context by %.3g), pooled "
                  "unweighted", e, moved);
            free(z1), free(z2);
        }
        struct sd_gen_params g;
        sd_gen_params_init(&g);
        g.prompt = "a cat", g.width = 60, g.height = 64, g.sampler.steps = 1;
        float *img = malloc(sizeof(float) * 3 * 60 * 64);
        int grc = sd_generate(&p, &g, img);
        CHECK(grc == SD_ERR_INVALID && strstr(ctx.msg, "multiples of 8"), "SDXL at 60x64 is refused: %s", ctx.msg);
        free(img);
        free(a), free(b), free(ab), free(wt);
    }
    if (rt && m) sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
    sd_model_free(m);
}

/* `sdrt` (next to this test binary) with args; output to /dev/null; the exit status. */
static char sdrt_bin[PATH_MAX];
static int run_sdrt(const char *const *args) {
    const char *argv[40] = {sdrt_bin};
    int n = 1;
    while (args[n - 1] && n < 39) argv[n] = args[n - 1], n++;
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        execv(sdrt_bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *out = "/tmp/sdrt_test_sdxl_cli.png";
    unlink(out);
    const char *bad[] = {"txt2img", "--model", "tests/models/tiny-sdxl-refiner", "--prompt", "a cat", "--steps", "2", "-W", "64",
                         "-H", "64", "--output", out, NULL};
    int st = run_sdrt(bad);
    CHECK(st == 2 && access(out, F_OK) != 0, "sdrt txt2img with a refiner as the model: exit %d (2), no output file", st);
    const char *ok[] = {"txt2img", "--model", "tests/models/tiny-sdxl.safetensors", "--config", "tests/models/tiny-sdxl",
                        "--refiner", "tests/models/tiny-sdxl-refiner", "--refiner-switch", "0.8", "--sampler", "Euler",
                        "--prompt", "a cat", "--negative-prompt", "blurry", "--steps", "5", "-W", "64", "-H", "48", "--seed",
                        "3", "--output", out, NULL};
    st = run_sdrt(ok);
    char *params = NULL;
    struct sd_ctx ctx = {0};
    if (st == 0) sd_png_read_text(&ctx, out, "parameters", &params);
    CHECK(st == 0 && params &&
              strstr(params, "Size: 64x48, Model: tiny-sdxl, RNG: CPU, Refiner: tiny-sdxl-refiner, Refiner switch at: 0.8, "),
          "sdrt txt2img --refiner: exit %d, PNG parameters as A1111 writes them: %s", st, params ? params : ctx.msg);
    free(params);
    unlink(out);
}

int main(int argc, char **argv) {
    (void)argc;
    setenv("OMP_WAIT_POLICY", "passive", 0); /* tiny models: idle OpenMP threads sleep (see test_pipeline.c) */
    setenv("SDRT_PRECISION", "f32", 1);       /* the CLI's parity mode (test_cli.c) */
    snprintf(sdrt_bin, sizeof sdrt_bin, "%s", argv[0]);
    char *slash = strrchr(sdrt_bin, '/');
    if (slash) snprintf(slash, sizeof sdrt_bin - (size_t)(slash - sdrt_bin), "/../sdrt");
    else snprintf(sdrt_bin, sizeof sdrt_bin, "../sdrt");
    struct { const char *path, *config, *label; int single; } cases[] = {
        {"tests/models/tiny-sdxl", NULL, "tiny-sdxl (diffusers)", 0},
        {"tests/models/tiny-sdxl.safetensors", "tests/models/tiny-sdxl", "tiny-sdxl (SGM single file f16)", 1},
    };
    struct sd_ctx ctx = {0};
    struct sd_runtime *rt = sd_runtime_new(&ctx, NULL);
    CHECK(rt != NULL, "cpu runtime (%s)", ctx.msg);
    struct sd_st_file *g = golden("sdxl");
    for (size_t i = 0; rt && g && i < sizeof cases / sizeof cases[0]; i++) {
        struct sd_model *m = NULL;
        if (sd_model_load(&ctx, cases[i].path, cases[i].config, &m)) {
            test_fail("%s: load: %s", cases[i].label, ctx.msg);
            continue;
        }
        CHECK(m->family == SD_FAMILY_SDXL && m->single_file == cases[i].single, "%s detected as %s (%s)", cases[i].label,
              sd_family_name(m->family), m->family_why);
        test_counts(m, cases[i].label);
        test_text(rt, m, cases[i].label, g);
        test_unet(rt, m, cases[i].label, g);
        test_vae(rt, m, cases[i].label, g);
        sd_runtime_release_model(rt, m);
        sd_model_free(m);
    }
    if (rt && g) test_refiner(rt, g, "tests/models/tiny-sdxl-refiner", NULL, "tiny-sdxl-refiner (diffusers)");
    if (rt && g)
        test_refiner(rt, g, "tests/models/tiny-sdxl-refiner.safetensors", "tests/models/tiny-sdxl-refiner",
                     "tiny-sdxl-refiner (SGM single file f16)");
    sd_st_close(g);
    sd_runtime_free(rt);
    test_bad_single("conditioner.embedders.1.", "conditioner.embedders.1", "SGM file without its second encoder (bigG)");
    test_bad_single("conditioner.embedders.0.", "only the bigG text encoder",
                    "SGM base file without CLIP ViT-L (a base taken for a refiner)");
    test_bad_folder();
    test_cli();
    test_prompt_chunks();
    test_lora("tests/models/tiny-sdxl", NULL, "tiny-sdxl (diffusers)");
    test_lora("tests/models/tiny-sdxl.safetensors", "tests/models/tiny-sdxl", "tiny-sdxl (SGM f16)");
    test_pipeline("tests/models/tiny-sdxl", NULL, "tests/models/tiny-sdxl-refiner", NULL, "tests/models/tiny-sdxl-inpaint",
                  NULL, "tiny-sdxl (diffusers)");
    /* the inpainting single file (SGM names, 9-channel conv_in) with the folder as config for what
       the tiny widths do not tell (head counts) */
    test_pipeline("tests/models/tiny-sdxl.safetensors", "tests/models/tiny-sdxl", "tests/models/tiny-sdxl-refiner.safetensors",
                  "tests/models/tiny-sdxl-refiner", "tests/models/tiny-sdxl-inpaint.safetensors",
                  "tests/models/tiny-sdxl-inpaint", "tiny-sdxl (SGM f16)");
    return test_summary();
}
