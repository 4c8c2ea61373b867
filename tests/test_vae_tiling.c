/* test_vae_tiling.c - tiled VAE decode and encode equal diffusers'
 * AutoencoderKL.enable_tiling() on the tiny-sd1 VAE (sample_size 64: 8-latent
 * tiles, 4 x 3 tiles with narrow edge tiles; goldens by
 * tests/reference/gen_tiling.py), and the untiled arena estimate equals
 * the arena the runtime then allocates for the untiled graph, and
 * sd_generate tiles exactly when asked or when the estimate exceeds
 * memory_budget (its image then equals the tiled decode of its latents).
 *
 * Tolerance: measured max abs err 4.8e-6 (decode, |ref| <= ~2) and 2.3e-6
 * (encode) on the CPU backend (AVX-512); bounds about 10x that.
 */
#include "model_load.h"
#include "model_run.h"
#include "pipeline.h"
#include "vae_tiling.h"
#include "test.h"
#include "golden_st.h"

static int saw_tiled;
static int on_event(void *user, const struct sd_gen_event *ev) {
    (void)user;
    if (ev->kind == SD_EV_PHASE && !strcmp(ev->phase, "vae_decode")) saw_tiled = ev->tiled;
    return 0;
}

/* One 160x128 txt2img per case: the image must equal the tiled (or untiled)
 * decode of the run's own latents, and the phase event must say which. */
static void pipeline_case(struct sd_runtime *rt, struct sd_model *m, int force, uint64_t budget, int expect_tiled) {
    struct sd_ctx *ctx = sd_runtime_ctx(rt);
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(ctx, "build/vocab/bpe_simple_vocab_16e6.txt.gz");
    struct sd_embed_cache *cache = sd_embed_cache_new(1u << 20);
    struct sd_pipeline p = {.ctx = ctx, .model = m, .rt = rt, .tok = tok, .cache = cache};
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = "a cat";
    g.width = 160, g.height = 128, g.sampler.steps = 2, g.seed = 7;
    g.vae_tiling = force, g.memory_budget = budget, g.on_event = on_event;
    const int h = 16, w = 20, lat = 4 * h * w, n = 3 * 128 * 160;
    float *x = malloc(sizeof(float) * lat), *img = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
    g.latents_out = x;
    saw_tiled = -1;
    int rc = tok && cache ? sd_generate(&p, &g, img) : SD_ERR_NOMEM;
    const float inv = 1.0f / m->vae.scaling_factor; /* as the pipeline scales */
    for (int i = 0; !rc && i < lat; i++) x[i] *= inv;
    if (!rc) rc = expect_tiled ? sd_vae_decode_tiled(rt, m, x, 1, h, w, 0, ref) : sd_run_vae_decode(rt, m, x, 1, h, w, ref);
    double mx = 0;
    if (rc) test_fail("sd_generate force %d budget %llu: %s", force, (unsigned long long)budget, ctx->msg);
    else
        CHECK(saw_tiled == expect_tiled && !check_close("pipeline decode", img, ref, n, 0, 0, &mx),
              "sd_generate --vae-tiling %d, budget %llu B: decoded %s, as the %s VAE decodes its latents", force,
              (unsigned long long)budget, saw_tiled ? "in tiles" : "whole", expect_tiled ? "tiled" : "untiled");
    free(x), free(img), free(ref);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
}

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime *rt = sd_runtime_new(&ctx, NULL);
    struct sd_model *m = NULL;
    CHECK(rt != NULL, "cpu runtime (%s)", ctx.msg);
    if (!rt || sd_model_load(&ctx, "tests/models/tiny-sd1", NULL, &m)) {
        test_fail("load tiny-sd1: %s", ctx.msg);
        sd_runtime_free(rt);
        return test_summary();
    }
    CHECK(sd_vae_tile_default(m) == 64, "tile from vae/config.json sample_size: %d px", sd_vae_tile_default(m));
    struct sd_st_file *g = golden("vae_tiling");
    const struct sd_st_tensor *z = gt(g, "decode.z"), *img = gt(g, "decode.image");
    const struct sd_st_tensor *ein = gt(g, "encode.image"), *mom = gt(g, "encode.moments");
    double mx = 0;
    if (z && img) {
        float *out = malloc(sizeof(float) * (size_t)numel(img));
        if (sd_vae_decode_tiled(rt, m, z->data, 1, (int)z->shape[2], (int)z->shape[3], 0, out))
            test_fail("tiled decode: %s", ctx.msg);
        else
            CHECK(!check_close("tiled decode", out, img->data, numel(img), 5e-5, 5e-4, &mx),
                  "tiled decode %lldx%lld latent (4x3 tiles of 8) equals diffusers' tiled_decode",
                  (long long)z->shape[3], (long long)z->shape[2]);
        free(out);
    }
    if (ein && mom) {
        float *out = malloc(sizeof(float) * (size_t)numel(mom));
        if (sd_vae_encode_tiled(rt, m, ein->data, 1, (int)ein->shape[2], (int)ein->shape[3], 0, out))
            test_fail("tiled encode: %s", ctx.msg);
        else
            CHECK(!check_close("tiled encode", out, mom->data, numel(mom), 2.5e-5, 2.5e-4, &mx),
                  "tiled encode %lldx%lld image (4x3 tiles of 64 px) equals diffusers' _tiled_encode moments",
                  (long long)ein->shape[3], (long long)ein->shape[2]);
        free(out);
    }
    /* A tile that is no multiple of 4*f is refused with a message. */
    float dummy[4 * 8 * 8] = {0}, dimg[3 * 64 * 64];
    CHECK(sd_vae_decode_tiled(rt, m, dummy, 1, 8, 8, 40, dimg) == SD_ERR_INVALID && strstr(ctx.msg, "multiple of 32"),
          "tile 40 px refused (%s)", ctx.msg);
    sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);

    /* The estimate is the planned arena of the untiled graph: a fresh
     * runtime that runs that graph allocates exactly that. */
    rt = sd_runtime_new(&ctx, NULL);
    size_t est_dec = 0, est_enc = 0, est_small = 0;
    int rc = sd_vae_arena_estimate(&ctx, m, 1, 20, 15, &est_dec);
    rc = rc ? rc : sd_vae_arena_estimate(&ctx, m, 1, 10, 8, &est_small);
    rc = rc ? rc : sd_vae_arena_estimate(&ctx, m, 0, 152, 112, &est_enc);
    float *out = malloc(sizeof(float) * 3 * 160 * 120);
    rc = rc ? rc : sd_run_vae_decode(rt, m, z ? z->data : dummy, 1, 20, 15, out);
    CHECK(!rc && est_dec == sd_runtime_arena_bytes(rt) && est_small < est_dec && est_enc > 0,
          "arena estimate: decode 20x15 %zu B (runtime allocated %zu), 10x8 %zu B, encode 152x112 %zu B", est_dec,
          sd_runtime_arena_bytes(rt), est_small, est_enc);
    free(out);
    size_t est_gen = 0;
    if (sd_vae_arena_estimate(&ctx, m, 1, 16, 20, &est_gen)) test_fail("estimate 20x16: %s", ctx.msg);
    pipeline_case(rt, m, 1, 0, 1);
    pipeline_case(rt, m, 0, est_gen - 1, 1);
    pipeline_case(rt, m, 0, est_gen, 0);
    pipeline_case(rt, m, 0, 0, 0);
    /* The default tile (64 px) is halved while its own arena exceeds the budget. */
    size_t t64 = 0, t32 = 0;
    int tiled = 0, tile = 0;
    rc = sd_vae_arena_estimate(&ctx, m, 1, 8, 8, &t64);
    rc = rc ? rc : sd_vae_arena_estimate(&ctx, m, 1, 4, 4, &t32);
    rc = rc ? rc : sd_vae_want_tiles(&ctx, m, 1, 16, 20, 0, t64, 0, &tiled, &tile);
    CHECK(!rc && tiled && tile == 64, "budget = one 64-px tile's arena (%zu B): tiles of %d px", t64, tile);
    rc = rc ? rc : sd_vae_want_tiles(&ctx, m, 1, 16, 20, 0, t64 - 1, 0, &tiled, &tile);
    CHECK(!rc && tiled && tile == 32 && t32 < t64, "budget 1 B below it: tiles of %d px (arena %zu B)", tile, t32);
    rc = rc ? rc : sd_vae_want_tiles(&ctx, m, 1, 16, 20, 0, 1, 0, &tiled, &tile);
    CHECK(!rc && tiled && tile == 32, "budget 1 B: the smallest tile, %d px (a multiple of 4 x 8)", tile);
    rc = rc ? rc : sd_vae_want_tiles(&ctx, m, 1, 16, 20, 0, 1, 64, &tiled, &tile);
    CHECK(!rc && tiled && tile == 64, "an explicit tile is kept: %d px", tile);
    rc = rc ? rc : sd_vae_want_tiles(&ctx, m, 1, 8, 6, 1, 0, 0, &tiled, &tile);
    CHECK(!rc && !tiled && tile == 64, "forced tiling of a 48x64 image (not larger than a tile): not tiled");
    /* ...and the tiled call itself runs the untiled VAE then, as diffusers does. */
    float *a = malloc(sizeof(float) * 3 * 64 * 48), *b = malloc(sizeof(float) * 3 * 64 * 48);
    rc = rc ? rc : sd_run_vae_decode(rt, m, z ? z->data : dummy, 1, 8, 6, a);
    rc = rc ? rc : sd_vae_decode_tiled(rt, m, z ? z->data : dummy, 1, 8, 6, 0, b);
    CHECK(!rc && !memcmp(a, b, sizeof(float) * 3 * 64 * 48), "sd_vae_decode_tiled of one tile's size = untiled decode");
    free(a), free(b);
    sd_st_close(g);
    sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_model_free(m);
    return test_summary();
}
