/* test_lora.c - LoRA / LyCORIS (host/lora) against diffusers and numpy.
 *
 * the files in tests/lora/ and tests/golden/lora.safetensors come from
 * tests/reference/gen_lora.py: diffusers load_lora_weights + fuse_lora for
 * kohya LoRA, LoCon, PEFT, te-only, unet-only, SD2 and LCM-LoRA; two LoRAs
 * via set_adapters; LoHa / LoKr / Tucker / diff via the numpy formulas of
 * tests/reference/lyco_ref.py. Per case: a few merged weights (max abs err)
 * and the txt2img image (64x64, 4 steps) within 1/255. Then: switching sets,
 * back to no LoRA bit for bit (generation bytes and every weight's bytes
 * against a fresh load), prompt tags resolved in a folder (stem and
 * ss_output_name), the embedding cache keyed by the text-encoder set, SD2's
 * fused in_proj (single file), bad input refused before anything changes,
 * sha256 vectors and the key parser.
 *
 * Tolerances (~10x the measured error, tests/test.h policy): merged weights
 * are f32 sums of f16-exact factors (oneDNN sgemm vs torch), measured 0 ..
 * 6e-8; bound 1e-6. Images in [0, 1]: measured 2.4e-6 .. 8.3e-6; bound 1e-4
 * (test_pipeline's image bound), well inside the 1/255.
 */
#include "cl_test_opts.h"
#include "embed_cache.h"
#include "lora.h"
#include "model_load.h"
#include "pipeline.h"
#include "safetensors.h"
#include "sha256.h"
#include "test.h"
#include "tokenizer.h"
#include "weights.h"

#include <unistd.h>

#define GOLDEN "tests/golden/lora.safetensors"
static char tmpdir[64] = "/tmp/sdrt-lora-XXXXXX";
/* tmpdir/name, in one of 16 rotating buffers. */
static const char *tp(const char *name) {
    static char buf[16][128];
    static int k;
    char *b = buf[k++ % 16];
    snprintf(b, 128, "%s/%s", tmpdir, name);
    return b;
}
#define W_ATOL 1e-6
#define IMG_ATOL 1e-4

struct env {
    struct sd_ctx ctx;
    struct sd_model *m;
    struct sd_tokenizer *tok;
    struct sd_runtime *rt;
    struct sd_embed_cache *cache;
    struct sd_lora_state *ls;
    struct sd_pipeline p;
};

static void env_free(struct env *e) {
    if (e->ls && e->rt) sd_lora_apply(e->ls, NULL, 0, &e->rt, 1, NULL, NULL);
    sd_lora_state_free(e->ls);
    if (e->rt && e->m) sd_runtime_release_model(e->rt, e->m);
    sd_runtime_free(e->rt);
    sd_embed_cache_free(e->cache);
    sd_tokenizer_free(e->tok);
    sd_model_free(e->m);
    memset(e, 0, sizeof *e);
}

static int env_open_opts(struct env *e, const char *path, const char *config, const struct sd_runtime_opts *ro) {
    memset(e, 0, sizeof *e);
    if (sd_model_load(&e->ctx, path, config, &e->m)) goto fail;
    if (!(e->tok = sd_tokenizer_load_bpe_gz(&e->ctx, vocab_path()))) goto fail;
    bool v2 = e->m->family == SD_FAMILY_SD2;
    if (sd_tokenizer_set_family(e->tok, v2 ? SD_TOKENIZER_SD2 : SD_TOKENIZER_SD1)) goto fail;
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    if (!(e->rt = sd_runtime_new(&e->ctx, ro ? ro : &o))) goto fail;
    if (!(e->cache = sd_embed_cache_new(16u << 20))) goto fail;
    if (!(e->ls = sd_lora_state_new(&e->ctx, e->m))) goto fail;
    e->p = (struct sd_pipeline){.ctx = &e->ctx, .model = e->m, .rt = e->rt, .tok = e->tok, .cache = e->cache, .lora = e->ls};
    return 0;
fail:
    printf("  %s: %s\n", path, e->ctx.msg);
    env_free(e);
    return 1;
}

static const float *golden(const struct sd_st_file *f, const char *name, int64_t n) {
    const struct sd_st_tensor *t = sd_st_find(f, name);
    if (!t || t->type != SD_F32 || (n >= 0 && t->nbytes != (size_t)n * sizeof(float))) {
        printf("  golden: %s missing or not f32 with %lld elements\n", name, (long long)n);
        return NULL;
    }
    return t->data;
}

static int env_open(struct env *e, const char *path, const char *config) { return env_open_opts(e, path, config, NULL); }

/* txt2img 64x64 "a photo of a cat"; image in [0, 1] (malloc'd), NULL on error. */
static float *gen(struct env *e, const char *prompt, const char *sampler, float cfg, uint64_t seed,
                  const struct sd_lora_req *r, int n, const char *dir) {
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = prompt;
    g.width = g.height = 64;
    g.cfg_scale = cfg;
    g.seed = seed;
    g.sampler.steps = 4;
    g.loras = r;
    g.n_loras = n;
    g.lora_dir = dir;
    struct sd_ctx c = {0};
    if (sd_sampler_parse_name(&c, sampler, &g.sampler)) printf("  %s\n", c.msg);
    float *img = malloc(sizeof(float) * 3 * 64 * 64);
    if (sd_generate(&e->p, &g, img)) {
        free(img);
        return NULL;
    }
    for (int i = 0; i < 3 * 64 * 64; i++) {
        float v = img[i] / 2 + 0.5f;
        img[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
    return img;
}

/* Compares every "<c>.w.<te|unet>.<name>" golden with the model's weight. */
static int check_weights(struct env *e, const struct sd_st_file *gf, const char *c, double *err) {
    char pre[64];
    int bad = 0, n = 0;
    *err = 0;
    snprintf(pre, sizeof pre, "%s.w.", c);
    for (int i = 0; i < gf->n_tensors; i++) {
        const struct sd_st_tensor *t = &gf->tensors[i];
        if (strncmp(t->name, pre, strlen(pre))) continue;
        const char *rest = t->name + strlen(pre);
        int te = !strncmp(rest, "te.", 3);
        const char *name = rest + (te ? 3 : 5);
        struct sd_tensor *w = sd_weights_find(te ? e->m->te : e->m->un, name);
        double d = 0;
        if (!w || (size_t)sd_tensor_nelements(w) * 4 != t->nbytes) {
            printf("  %s: model has no '%s' of that size\n", c, name);
            bad = 1;
            continue;
        }
        bad |= check_close(name, w->data, t->data, sd_tensor_nelements(w), W_ATOL, 0, &d);
        if (d > *err) *err = d;
        n++;
    }
    return bad || n == 0;
}

static void req(struct sd_lora_req *r, const char *file, float te, float un) {
    static char paths[8][256];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 256, "tests/lora/%s.safetensors", file);
    *r = (struct sd_lora_req){p, te, un};
}

static void golden_case(struct env *e, const struct sd_st_file *gf, const char *c, const char *sampler, float cfg,
                        uint64_t seed, const struct sd_lora_req *r, int n, const char *prompt, const char *dir) {
    char key[96];
    snprintf(key, sizeof key, "%s.image", c);
    const float *ref = golden(gf, key, 3 * 64 * 64);
    float *img = ref ? gen(e, prompt ? prompt : "a photo of a cat", sampler, cfg, seed, r, n, dir) : NULL;
    double ew = 0, ei = 0;
    int has_w = 0;
    snprintf(key, sizeof key, "%s.w.", c);
    for (int i = 0; i < gf->n_tensors; i++) has_w |= !strncmp(gf->tensors[i].name, key, strlen(key));
    int bad = !img || (has_w && check_weights(e, gf, c, &ew));
    if (img) bad |= check_close(c, img, ref, 3 * 64 * 64, IMG_ATOL, 0, &ei);
    if (!img) printf("  %s: %s\n", c, e->ctx.msg);
    if (bad) test_fail("lora %s%s%s: weights err %.3g, image err %.3g", c, prompt ? " via " : "", prompt ? prompt : "", ew, ei);
    else test_ok("lora %s%s%s: merged weights max abs err %.2e, image %.2e (bound 1e-4)", c, prompt ? " via " : "",
                 prompt ? prompt : "", ew, ei);
    free(img);
}

/* Every te/un tensor of e has the bytes of a fresh load of path. */
static int same_as_fresh(struct env *e, const char *path, const char *config, int *n_cmp) {
    struct sd_ctx c = {0};
    struct sd_model *f = NULL;
    if (sd_model_load(&c, path, config, &f)) return printf("  %s\n", c.msg), 1;
    int bad = 0;
    *n_cmp = 0;
    struct sd_weights *ws[2][2] = {{e->m->te, f->te}, {e->m->un, f->un}};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < sd_weights_count(ws[k][0]); i++) {
            const char *name = sd_weights_name(ws[k][0], i);
            struct sd_tensor *a = sd_weights_find(ws[k][0], name), *b = sd_weights_find(ws[k][1], name);
            /* Deferred weights (weights.h): make their bytes before reading them. */
            if (a && b && (sd_weight_materialize(&c, a) || sd_weight_materialize(&c, b))) a = NULL;
            if (!a || !b || sd_tensor_nbytes(a) != sd_tensor_nbytes(b) || memcmp(a->data, b->data, sd_tensor_nbytes(a))) {
                if (bad++ < 3) printf("  %s differs from a fresh load\n", name);
            }
            (*n_cmp)++;
        }
    sd_model_free(f);
    return bad;
}

static void test_ldm_names(struct env *e);

static void test_sd1(const struct sd_st_file *gf) {
    struct env e;
    if (env_open(&e, "tests/models/tiny-sd1", NULL)) return test_fail("lora: cannot open tiny-sd1");
    struct sd_lora_req r[2];
    /* The no-LoRA image first: also fills the embedding cache. */
    float *none = gen(&e, "a photo of a cat", "Euler", 7.5f, 11, NULL, 0, NULL);
    CHECK(none != NULL, "lora: no-LoRA generation on tiny-sd1");
    if (!none) return env_free(&e);
    req(&r[0], "sd1_te", 1, 1);
    golden_case(&e, gf, "te_only", "Euler", 7.5f, 11, r, 1, NULL, NULL); /* a stale cached embedding would fail */
    req(&r[0], "sd1_kohya", 0.8f, 0.8f);
    golden_case(&e, gf, "kohya", "Euler", 7.5f, 11, r, 1, NULL, NULL);
    req(&r[0], "sd1_unet", 1, 1);
    golden_case(&e, gf, "unet_only", "Euler", 7.5f, 11, r, 1, NULL, NULL);
    req(&r[0], "sd1_kohya", 0, 1); /* the unet half of sd1_kohya by multipliers */
    golden_case(&e, gf, "unet_only", "Euler", 7.5f, 11, r, 1, NULL, NULL);
    req(&r[0], "sd1_locon", 1, 1);
    golden_case(&e, gf, "locon", "Euler", 7.5f, 11, r, 1, NULL, NULL);
    req(&r[0], "sd1_peft", 0.7f, 0.7f);
    golden_case(&e, gf, "peft", "Euler", 7.5f, 11, r, 1, NULL, NULL);
    req(&r[0], "sd1_kohya", 0.6f, 0.6f);
    req(&r[1], "sd1_locon", 1.3f, 1.3f);
    golden_case(&e, gf, "two", "Euler", 7.5f, 11, r, 2, NULL, NULL);
    req(&r[0], "sd1_lyco", 0.9f, 0.9f);
    golden_case(&e, gf, "lyco", "Euler", 7.5f, 11, r, 1, NULL, NULL);
    req(&r[0], "sd1_lcm", 1, 1);
    golden_case(&e, gf, "lcm", "LCM", 1.0f, 18, r, 1, NULL, NULL);
    /* Prompt tags, resolved in the folder by stem and by ss_output_name. */
    golden_case(&e, gf, "kohya", "Euler", 7.5f, 11, NULL, 0, "a photo of a cat<lora:kohya_alias:0.8>", "tests/lora");
    golden_case(&e, gf, "unet_only", "Euler", 7.5f, 11, NULL, 0, "a photo of a cat <lora:sd1_kohya:0:1>", "tests/lora");
    golden_case(&e, gf, "two", "Euler", 7.5f, 11, NULL, 0,
                "<lora:sd1_locon:te=1.3:unet=1.3>a photo of a cat<lora:sd1_kohya:0.6>", "tests/lora");
    /* Only tensors whose contributions changed are merged again. */
    {
        struct sd_lora_req two[2];
        struct sd_lora_report r1 = {0}, r2 = {0}, r3 = {0};
        req(&two[0], "sd1_kohya", 0.8f, 0.8f);
        req(&two[1], "sd1_locon", 1, 1);
        int ok = !sd_lora_apply(e.ls, two, 2, &e.rt, 1, NULL, &r1) && !sd_lora_apply(e.ls, two, 2, &e.rt, 1, NULL, &r2);
        two[1].unet_mult = 0.5f;
        ok = ok && !sd_lora_apply(e.ls, two, 2, &e.rt, 1, NULL, &r3);
        CHECK(ok && r2.tensors_changed == 0 && r3.tensors_changed == 86 && r3.tensors_patched == 296,
              "lora: the same set again merges nothing (%d); changing one LoRA's weight re-merges only its %d of %d tensors",
              r2.tensors_changed, r3.tensors_changed, r3.tensors_patched);
    }
    /* Back to none: the same bytes as before any LoRA, and every weight as a fresh load. */
    float *again = gen(&e, "a photo of a cat", "Euler", 7.5f, 11, NULL, 0, NULL);
    int n_cmp = 0;
    CHECK(again && !memcmp(again, none, sizeof(float) * 3 * 64 * 64),
          "lora: back to no LoRA on tiny-sd1 gives the no-LoRA image bit for bit");
    CHECK(!same_as_fresh(&e, "tests/models/tiny-sd1", NULL, &n_cmp),
          "lora: after 12 sets, all %d text-encoder and UNet tensors have the bytes of a fresh load", n_cmp);
    free(again);

    /* PEFT alpha from the metadata: alpha 4 at rank 2 doubles the delta. */
    {
        struct sd_st_file *pf = NULL;
        struct sd_ctx c = {0};
        int ok = sd_st_open(&c, "tests/lora/sd1_peft.safetensors", &pf) == SD_OK;
        const char *meta[] = {"lora_adapter_metadata", "{\"r\": 2, \"lora_alpha\": 4}", NULL};
        ok = ok && sd_st_write(&c, tp("lora_peft_alpha.safetensors"), pf->tensors, pf->n_tensors, meta) == SD_OK;
        sd_st_close(pf);
        struct sd_lora_req a = {tp("lora_peft_alpha.safetensors"), 0.35f, 0.35f};
        double ew = 0;
        ok = ok && sd_lora_apply(e.ls, &a, 1, &e.rt, 1, NULL, NULL) == SD_OK && !check_weights(&e, gf, "peft", &ew);
        CHECK(ok, "lora: PEFT lora_alpha from the safetensors metadata (x0.35 at alpha/r = 2 == x0.7 at 1): err %.2e", ew);
    }
    {   /* ... and from adapter_config.json beside the file */
        struct sd_st_file *pf = NULL;
        struct sd_ctx c = {0};
        int ok = sd_st_open(&c, "tests/lora/sd1_peft.safetensors", &pf) == SD_OK;
        ok = ok && sd_st_write(&c, tp("lora_peft_cfg.safetensors"), pf->tensors, pf->n_tensors, NULL) == SD_OK;
        sd_st_close(pf);
        FILE *fp = fopen(tp("adapter_config.json"), "w");
        if (fp) fputs("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}\n", fp), fclose(fp);
        struct sd_lora_req a = {tp("lora_peft_cfg.safetensors"), 0.35f, 0.35f};
        double ew = 0;
        ok = ok && fp && sd_lora_apply(e.ls, &a, 1, &e.rt, 1, NULL, NULL) == SD_OK && !check_weights(&e, gf, "peft", &ew);
        CHECK(ok, "lora: PEFT lora_alpha from adapter_config.json beside the file: err %.2e", ew);
    }

    /* Bad input: refused before sampling, the model unchanged. */
    struct bad { const char *what, *file; } bads[8];
    struct bad bads0[] = {
        {"truncated file", tp("lora_bad_trunc.safetensors")},
        {"unknown key family", tp("lora_bad_family.safetensors")},
        {"shape that does not fit its target", tp("lora_bad_shape.safetensors")},
        {"rank 0", tp("lora_bad_rank0.safetensors")},
        {"absurd rank", tp("lora_bad_rank.safetensors")},
        {"up/down ranks differ", tp("lora_bad_pair.safetensors")},
        {"DoRA", tp("lora_bad_dora.safetensors")},
        {"nothing matches", tp("lora_bad_nomatch.safetensors")},
    };
    memcpy(bads, bads0, sizeof bads);
    {
        struct sd_ctx c = {0};
        FILE *fp = fopen("tests/lora/sd1_te.safetensors", "rb");
        char buf[8192];
        size_t got = fp ? fread(buf, 1, sizeof buf, fp) : 0;
        if (fp) fclose(fp);
        fp = fopen(bads[0].file, "wb");
        if (fp) fwrite(buf, 1, got / 2, fp), fclose(fp);
        static float z[80000];
        const char *to_k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k";
        char k1[160], k2[160];
        snprintf(k1, sizeof k1, "%s.lora_down.weight", to_k);
        snprintf(k2, sizeof k2, "%s.lora_up.weight", to_k);
        struct sd_st_tensor t[2] = {{.name = k1, .type = SD_F32, .n_dims = 2}, {.name = k2, .type = SD_F32, .n_dims = 2}};
        const int64_t shapes[][4] = {{2, 8, 8, 2}, {2, 9, 8, 2}, {0, 8, 8, 0}, {9000, 1, 8, 9000}, {2, 8, 8, 3}, {2, 8, 8, 2}, {2, 8, 8, 2}};
        for (int k = 1; k < 8; k++) {
            t[0].shape[0] = shapes[k - 1][0], t[0].shape[1] = shapes[k - 1][1];
            t[1].shape[0] = shapes[k - 1][2], t[1].shape[1] = shapes[k - 1][3];
            t[0].nbytes = (size_t)(t[0].shape[0] * t[0].shape[1]) * 4, t[1].nbytes = (size_t)(t[1].shape[0] * t[1].shape[1]) * 4;
            t[0].data = t[1].data = z;
            char n1[160], n2[160];
            if (k == 1) snprintf(n1, sizeof n1, "model.foo.lora_down.weight"), t[0].name = n1;
            else t[0].name = k1;
            t[1].name = k2;
            struct sd_st_tensor tt[3] = {t[0], t[1]};
            int nt = 2;
            if (k == 6) tt[nt++] = (struct sd_st_tensor){.name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k.dora_scale", .type = SD_F32, .n_dims = 1, .shape = {8}, .nbytes = 32, .data = z};
            if (k == 7) {
                snprintf(n1, sizeof n1, "lora_unet_no_such_block.lora_down.weight");
                snprintf(n2, sizeof n2, "lora_unet_no_such_block.lora_up.weight");
                tt[0].name = n1, tt[1].name = n2;
            }
            if (sd_st_write(&c, bads[k].file, tt, nt, NULL)) printf("  %s\n", c.msg);
        }
    }
    for (size_t k = 0; k < sizeof bads / sizeof *bads; k++) {
        struct sd_lora_req b = {bads[k].file, 1, 1};
        float *img = gen(&e, "a photo of a cat", "Euler", 7.5f, 11, &b, 1, NULL);
        char msg[300];
        snprintf(msg, sizeof msg, "%s", e.ctx.msg);
        float *after = gen(&e, "a photo of a cat", "Euler", 7.5f, 11, NULL, 0, NULL);
        CHECK(!img && after && !memcmp(after, none, sizeof(float) * 3 * 64 * 64),
              "lora: %s refused (\"%.150s\"), the next generation without it is the no-LoRA image", bads[k].what, msg);
        free(img), free(after);
    }
    {
        float *img = gen(&e, "a cat <lora:no_such_lora:1>", "Euler", 7.5f, 11, NULL, 0, "tests/lora");
        CHECK(!img && strstr(e.ctx.msg, "no_such_lora"), "lora: a NAME missing from --lora-dir is an error: %.120s", e.ctx.msg);
        free(img);
    }
    CHECK(!same_as_fresh(&e, "tests/models/tiny-sd1", NULL, &n_cmp), "lora: after the refused files, the weights are a fresh load's (%d tensors)", n_cmp);
    test_ldm_names(&e);
    free(none);
    env_free(&e);
}

/* kohya names with LDM paths match the same weights as diffusers paths. */
static void test_ldm_names(struct env *e) {
    static const char *pairs[][2] = {
        {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q", "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"},
        {"lora_unet_input_blocks_1_1_proj_in", "lora_unet_down_blocks_0_attentions_0_proj_in"},
        {"lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_down_blocks_0_resnets_0_conv1"},
        {"lora_unet_input_blocks_3_0_op", "lora_unet_down_blocks_0_downsamplers_0_conv"},
        {"lora_unet_input_blocks_4_0_skip_connection", "lora_unet_down_blocks_1_resnets_0_conv_shortcut"},
        {"lora_unet_middle_block_1_proj_out", "lora_unet_mid_block_attentions_0_proj_out"},
        {"lora_unet_middle_block_2_out_layers_3", "lora_unet_mid_block_resnets_1_conv2"},
        {"lora_unet_output_blocks_3_0_emb_layers_1", "lora_unet_up_blocks_1_resnets_0_time_emb_proj"},
        {"lora_unet_output_blocks_2_1_conv", "lora_unet_up_blocks_0_upsamplers_0_conv"},
        {"lora_unet_output_blocks_11_1_transformer_blocks_0_ff_net_2", "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2"},
    };
    struct sd_lora_keymap *km = sd_lora_keymap_new(&e->ctx, e->m);
    int bad = !km;
    for (size_t i = 0; km && i < sizeof pairs / sizeof *pairs; i++) {
        struct sd_lora_target a, b;
        int fa = sd_lora_keymap_find(km, pairs[i][0], 0, &a), fb = sd_lora_keymap_find(km, pairs[i][1], 0, &b);
        if (!fa || !fb || a.w != b.w || a.idx != b.idx) {
            printf("  %s -> %s: %d %d\n", pairs[i][0], pairs[i][1], fa, fb);
            bad = 1;
        }
    }
    sd_lora_keymap_free(km);
    CHECK(!bad, "lora: %zu kohya names with LDM paths (input/middle/output blocks, resnets, samplers) match the "
                "diffusers-path targets", sizeof pairs / sizeof *pairs);
}

/* SD1 single file (LDM names renamed at load; 1x1-conv proj_in/out). */
static void test_sd1_single(const struct sd_st_file *gf) {
    struct env e;
    if (env_open(&e, "tests/models/tiny-sd1.safetensors", "tests/models/tiny-sd1"))
        return test_fail("lora: cannot open tests/models/tiny-sd1.safetensors");
    printf("# tests/models/tiny-sd1.safetensors\n");
    struct sd_lora_req r[2];
    req(&r[0], "sd1_kohya", 0.6f, 0.6f);
    req(&r[1], "sd1_locon", 1.3f, 1.3f);
    golden_case(&e, gf, "two", "Euler", 7.5f, 11, r, 2, NULL, NULL);
    req(&r[0], "sd1_peft", 0.7f, 0.7f);
    golden_case(&e, gf, "peft", "Euler", 7.5f, 11, r, 1, NULL, NULL);
    sd_lora_apply(e.ls, NULL, 0, &e.rt, 1, NULL, NULL);
    int n = 0;
    CHECK(!same_as_fresh(&e, "tests/models/tiny-sd1.safetensors", "tests/models/tiny-sd1", &n),
          "lora: tests/models/tiny-sd1.safetensors restored to a fresh load's bytes (%d tensors)", n);
    env_free(&e);
}

/* SD2: the diffusers folder, and the single file whose q/k/v are rows of in_proj. */
static void test_sd2(const struct sd_st_file *gf) {
    const char *paths[] = {"tests/models/tiny-sd2", "tests/models/tiny-sd2.safetensors"};
    static const char *qkv[] = {"text_model.encoder.layers.0.self_attn.q_proj.weight",
                                "text_model.encoder.layers.0.self_attn.k_proj.weight",
                                "text_model.encoder.layers.1.self_attn.v_proj.weight"};
    float merged[3][32 * 32];
    for (int i = 0; i < 2; i++) {
        struct env e;
        const char *config = i ? "tests/models/tiny-sd2" : NULL;
        if (env_open(&e, paths[i], config)) {
            test_fail("lora: cannot open %s", paths[i]);
            continue;
        }
        struct sd_lora_req r;
        req(&r, "sd2_kohya", 1, 1);
        printf("# %s\n", paths[i]);
        golden_case(&e, gf, "sd2", "Euler", 7.5f, 22, &r, 1, NULL, NULL);
        /* the folder's separate q/k/v after the merge == the single file's rows of in_proj */
        int same = 1;
        for (int k = 0; k < 3; k++) {
            struct sd_tensor *t = sd_weights_find(e.m->te, qkv[k]);
            if (!t || sd_tensor_nelements(t) != 32 * 32) { same = 0; continue; }
            if (i == 0) memcpy(merged[k], t->data, sizeof merged[k]);
            else same &= !memcmp(merged[k], t->data, sizeof merged[k]);
        }
        if (i == 1) {
            struct sd_tensor *in = sd_weights_find(e.m->te, "text_model.encoder.layers.0.self_attn.in_proj.weight");
            struct sd_tensor *q = sd_weights_find(e.m->te, qkv[0]);
            CHECK(same && in && q && q->data == in->data,
                  "lora: SD2 single file: q/k/v deltas land in the rows of the fused in_proj (bytes equal the folder's "
                  "merged q/k/v, the slices follow in_proj's private copy)");
        }
        sd_lora_apply(e.ls, NULL, 0, &e.rt, 1, NULL, NULL);
        int n = 0;
        CHECK(!same_as_fresh(&e, paths[i], config, &n), "lora: %s restored to a fresh load's bytes (%d tensors)", paths[i], n);
        env_free(&e);
    }
}

/* OpenCL: merged weights reach the device (weights_changed re-uploads exactly
 * the changed tensors), switching sets, and back to the no-LoRA bytes. */
static void test_opencl(const struct sd_st_file *gf) {
    /* every op on the device: a CPU fallback would not exercise the uploads */
    struct sd_runtime_opts o;
    cl_test_device_only(&o);
    struct env e;
    if (env_open_opts(&e, "tests/models/tiny-sd1", NULL, &o)) return test_fail("lora: opencl runtime on tiny-sd1");
    printf("# opencl\n");
    float *none = gen(&e, "a photo of a cat", "Euler", 7.5f, 11, NULL, 0, NULL);
    struct sd_lora_req r;
    req(&r, "sd1_kohya", 0.8f, 0.8f);
    golden_case(&e, gf, "kohya", "Euler", 7.5f, 11, &r, 1, NULL, NULL);
    req(&r, "sd1_locon", 1, 1);
    golden_case(&e, gf, "locon", "Euler", 7.5f, 11, &r, 1, NULL, NULL);
    float *again = gen(&e, "a photo of a cat", "Euler", 7.5f, 11, NULL, 0, NULL);
    CHECK(none && again && !memcmp(none, again, sizeof(float) * 3 * 64 * 64),
          "lora: opencl, back to no LoRA after two sets gives the no-LoRA image bit for bit");
    free(none), free(again);
    env_free(&e);
}

static void test_sha256(void) {
    char hex[65];
    sd_sha256_hex("", 0, hex);
    int ok = !strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sd_sha256_hex("abc", 3, hex);
    ok &= !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sd_sha256_hex(m, strlen(m), hex);
    ok &= !strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sd_sha256_hex(a, 1000000, hex);
    ok &= !strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
    CHECK(ok, "sha256: FIPS 180-2 vectors (empty, abc, 448-bit, a million a)");
    struct sd_ctx c = {0};
    struct sd_lora_file *lf = NULL;
    ok = sd_lora_file_open(&c, "tests/lora/sd1_kohya.safetensors", &lf) == SD_OK;
    /* python: hashlib.sha256(data[8 + header_len:]).hexdigest()[:12] (A1111 addnet_hash_safetensors) */
    CHECK(ok && !strcmp(sd_lora_file_hash(lf), "8f0a7d2284ff") && !strcmp(lf->format, "kohya LoRA") && lf->n_te == 18 &&
          lf->n_unet == 192 && lf->min_rank == 4 && lf->mods[0].alpha == 2.0f,
          "lora: sd1_kohya is a kohya LoRA of 18 + 192 modules, rank 4, alpha 2, A1111 hash %s", ok ? lf->hash : "?");
    sd_lora_file_free(lf);
}

static void test_keys(void) {
    static const struct { const char *key, *mod; enum sd_lora_role role; } k[] = {
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "lora_unet_down_blocks_0_attentions_0_proj_in", SD_LR_DOWN},
        {"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha", "lora_te_text_model_encoder_layers_0_mlp_fc1", SD_LR_ALPHA},
        {"unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.lora_B.weight",
         "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0", SD_LR_UP},
        {"text_encoder.text_model.encoder.layers.3.self_attn.k_proj.lora_A.default.weight",
         "lora_te_text_model_encoder_layers_3_self_attn_k_proj", SD_LR_DOWN},
        {"unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight",
         "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_out_0", SD_LR_UP},
        {"text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora.down.weight",
         "lora_te_text_model_encoder_layers_0_self_attn_q_proj", SD_LR_DOWN},
        {"text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.down.weight",
         "lora_te_text_model_encoder_layers_0_mlp_fc1", SD_LR_DOWN},
        {"base_model.model.down_blocks.1.resnets.0.conv1.lora_A.weight", "lora_unet_down_blocks_1_resnets_0_conv1", SD_LR_DOWN},
        {"lora_unet_input_blocks_1_1_proj_in.hada_w1_a", "lora_unet_input_blocks_1_1_proj_in", SD_LR_HADA_W1A},
        {"lora_unet_x.lokr_w2_b", "lora_unet_x", SD_LR_LOKR_W2B},
        {"lora_unet_x.dora_scale", "lora_unet_x", SD_LR_DORA},
        {"model.diffusion_model.x.weight", NULL, 0},
        {"lora_te1_text_model_x.lora_down.weight", "lora_te1_text_model_x", SD_LR_DOWN}, /* SDXL (test_sdxl.c) */
        {"text_encoder_2.text_model.x.lora_B.weight", "lora_te2_text_model_x", SD_LR_UP},
        {".lora_down.weight", NULL, 0},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        char mod[256];
        enum sd_lora_role role = SD_LR_COUNT;
        int ok = sd_lora_parse_key(k[i].key, mod, sizeof mod, &role, NULL);
        if (ok != (k[i].mod != NULL) || (ok && (strcmp(mod, k[i].mod) || role != k[i].role))) {
            printf("  %s -> %d '%s' role %d\n", k[i].key, ok, ok ? mod : "", (int)role);
            bad++;
        }
    }
    CHECK(!bad, "lora: key parser on %zu kohya / PEFT / diffusers / LyCORIS / foreign names", sizeof k / sizeof *k);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return printf("FAIL lora: mkdtemp\n"), 1;
    test_sha256();
    test_keys();
    struct sd_ctx c = {0};
    struct sd_st_file *gf = NULL;
    if (sd_st_open(&c, GOLDEN, &gf)) {
        test_fail("lora: %s", c.msg);
        return 1;
    }
    test_sd1(gf);
    test_sd1_single(gf);
    test_sd2(gf);
    test_opencl(gf);
    sd_st_close(gf);
    unlink(tp("adapter_config.json"));
    const char *files[] = {"lora_peft_alpha", "lora_peft_cfg", "lora_bad_trunc", "lora_bad_family", "lora_bad_shape", "lora_bad_rank0",
                           "lora_bad_rank", "lora_bad_pair", "lora_bad_dora", "lora_bad_nomatch"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char f[96];
        snprintf(f, sizeof f, "%s.safetensors", files[i]);
        unlink(tp(f));
    }
    rmdir(tmpdir);
    return test_summary();
}
