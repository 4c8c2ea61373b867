/* test_taesd.c - TAESD parity with diffusers' AutoencoderTiny (goldens by
 * tests/reference/gen_taesd.py): the tiny model (width 8, real block
 * counts) in the diffusers folder layout and in the original
 * taesd_encoder/taesd_decoder layout (same weights: same results), decode
 * and encode; sd_generate with taesd_decode (its image is the TAESD decode
 * of its own latents) and the TAESD preview (the final postprocess of that
 * decode); the real-size decoder (width 64, f16 file, original layout)
 * at a 32x32 latent. Errors: a file that is no TAESD, decode on an
 * encoder-only load.
 *
 * Tolerance: measured max abs err 2.1e-6 (tiny decode, |ref| <= 1), 4.2e-7
 * (tiny encode), 8e-6 (real-size decode) on the CPU backend (AVX-512);
 * bounds about 10x that.
 */
#include "model_load.h"
#include "pipeline.h"
#include "png_io.h"
#include "preview.h"
#include "taesd.h"
#include "test.h"
#include "golden_st.h"

static void check_model(struct sd_runtime *rt, struct sd_st_file *g, const char *path, const char *label) {
    struct sd_ctx *ctx = sd_runtime_ctx(rt);
    struct sd_taesd *t = NULL;
    if (sd_taesd_load(ctx, path, &t)) {
        test_fail("load %s: %s", path, ctx->msg);
        return;
    }
    char d[256];
    sd_taesd_describe(t, d, sizeof d);
    CHECK(t->has_encoder && t->has_decoder && t->latent_channels == 4 && t->width == 8 && t->downscale == 8 &&
              t->n_dec == 19 && t->n_enc == 15 && t->scaling_factor == 1.0f,
          "%s: %s", label, d);
    const struct sd_st_tensor *lat = gt(g, "tiny.decode.latents"), *img = gt(g, "tiny.decode.image");
    const struct sd_st_tensor *ein = gt(g, "tiny.encode.image"), *elat = gt(g, "tiny.encode.latents");
    double mx = 0;
    if (lat && img) {
        float *out = malloc(sizeof(float) * (size_t)numel(img));
        if (sd_run_taesd_decode(rt, t, lat->data, 1, (int)lat->shape[2], (int)lat->shape[3], out))
            test_fail("%s decode: %s", label, ctx->msg);
        else
            CHECK(!check_close("taesd decode", out, img->data, numel(img), 2e-5, 2e-4, &mx),
                  "%s decode 7x9 latent equals AutoencoderTiny.decode", label);
        free(out);
    }
    if (ein && elat) {
        float *out = malloc(sizeof(float) * (size_t)numel(elat));
        if (sd_run_taesd_encode(rt, t, ein->data, 1, (int)ein->shape[2], (int)ein->shape[3], out))
            test_fail("%s encode: %s", label, ctx->msg);
        else
            CHECK(!check_close("taesd encode", out, elat->data, numel(elat), 4e-6, 4e-5, &mx),
                  "%s encode 40x48 image equals AutoencoderTiny.encode latents", label);
        free(out);
    }
    sd_runtime_release_taesd(rt, t);
    sd_taesd_free(t);
}

static void pipeline_case(struct sd_runtime *rt) {
    struct sd_ctx *ctx = sd_runtime_ctx(rt);
    struct sd_model *m = NULL;
    struct sd_taesd *t = NULL;
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(ctx, "build/vocab/bpe_simple_vocab_16e6.txt.gz");
    struct sd_embed_cache *cache = sd_embed_cache_new(1u << 20);
    if (!tok || !cache || sd_model_load(ctx, "tests/models/tiny-sd1", NULL, &m) ||
        sd_taesd_load(ctx, "tests/models/tiny-taesd-raw/taesd_decoder.safetensors", &t)) {
        test_fail("pipeline setup: %s", ctx->msg);
    } else {
        struct sd_pipeline p = {.ctx = ctx, .model = m, .rt = rt, .tok = tok, .cache = cache};
        struct sd_gen_params g;
        sd_gen_params_init(&g);
        g.prompt = "a cat";
        g.width = 64, g.height = 48, g.sampler.steps = 2, g.seed = 3, g.taesd_decode = t;
        enum { LAT = 4 * 6 * 8, N = 3 * 48 * 64 };
        float x[LAT], img[N], ref[N];
        uint8_t rgb[N], rgb_ref[N];
        g.latents_out = x;
        double mx = 0;
        if (sd_generate(&p, &g, img) || sd_run_taesd_decode(rt, t, x, 1, 6, 8, ref) ||
            sd_preview_taesd_rgb8(rt, t, x, 8, 6, rgb)) {
            test_fail("sd_generate with taesd_decode: %s", ctx->msg);
        } else {
            sd_image_to_rgb8(ref, 64, 48, rgb_ref);
            CHECK(!check_close("pipeline taesd", img, ref, N, 0, 0, &mx) && !memcmp(rgb, rgb_ref, sizeof rgb),
                  "sd_generate taesd_decode = TAESD decode of its latents; TAESD preview = its 8-bit image");
        }
        /* A TAESD of another latent size is refused before anything runs. */
        t->latent_channels = 8;
        CHECK(sd_generate(&p, &g, img) == SD_ERR_INVALID && strstr(ctx->msg, "8-channel"), "mismatched TAESD refused (%s)",
              ctx->msg);
        t->latent_channels = 4;
        sd_runtime_release_model(rt, m);
        sd_runtime_release_taesd(rt, t);
    }
    sd_taesd_free(t);
    sd_model_free(m);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
}

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime *rt = sd_runtime_new(&ctx, NULL);
    struct sd_st_file *g = golden("taesd");
    CHECK(rt != NULL, "cpu runtime (%s)", ctx.msg);
    if (!rt || !g) return test_summary();
    check_model(rt, g, "tests/models/tiny-taesd", "tiny AutoencoderTiny folder");
    check_model(rt, g, "tests/models/tiny-taesd-raw/taesd_decoder.safetensors", "tiny taesd_decoder (+ encoder beside it)");
    check_model(rt, g, "tests/models/tiny-taesd-raw", "tiny taesd folder");

    struct sd_taesd *t = NULL;
    const struct sd_st_tensor *lat = gt(g, "full.decode.latents"), *img = gt(g, "full.decode.image");
    if (sd_taesd_load(&ctx, "tests/models/taesd-decoder-f16.safetensors", &t)) {
        test_fail("load real-size taesd: %s", ctx.msg);
    } else if (lat && img) {
        CHECK(!t->has_encoder && t->has_decoder && t->width == 64 && t->n_dec == 19, "real-size decoder only, width %d",
              t->width);
        float *out = malloc(sizeof(float) * (size_t)numel(img));
        double mx = 0;
        if (sd_run_taesd_decode(rt, t, lat->data, 1, 32, 32, out)) test_fail("real-size decode: %s", ctx.msg);
        else
            CHECK(!check_close("taesd full decode", out, img->data, numel(img), 8e-5, 8e-4, &mx),
                  "real-size TAESD decoder (f16 file) 32x32 latent equals AutoencoderTiny.decode");
        CHECK(sd_run_taesd_encode(rt, t, out, 1, 256, 256, out) == SD_ERR_INVALID && strstr(ctx.msg, "no encoder"),
              "encode without an encoder refused (%s)", ctx.msg);
        free(out);
        sd_runtime_release_taesd(rt, t);
    }
    sd_taesd_free(t);
    t = NULL;
    CHECK(sd_taesd_load(&ctx, "tests/golden/vae.safetensors", &t) == SD_ERR_FORMAT && !t && strstr(ctx.msg, "not a TAESD"),
          "a safetensors file that is no TAESD refused (%s)", ctx.msg);
    pipeline_case(rt);
    sd_st_close(g);
    sd_runtime_free(rt);
    return test_summary();
}
