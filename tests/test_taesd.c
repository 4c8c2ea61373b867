/* test_taesd.c - TAESD parity with diffusers' AutoencoderTiny (goldens by
 * tests/reference/gen_taesd.py): the tiny model (width 8, real block
 * counts) in the diffusers folder layout and in the original
 * taesd_encoder/taesd_decoder layout (same weights: same results), decode
 * and encode; the real-size decoder (width 64, f16 file, original layout)
 * at a 32x32 latent. Errors: a file that is no TAESD, decode on an
 * encoder-only load.
 *
 * Tolerance: measured max abs err 2.1e-6 (tiny decode, |ref| <= 1), 4.2e-7
 * (tiny encode), 8e-6 (real-size decode) on the CPU backend (AVX-512);
 * bounds about 10x that.
 */
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
    sd_st_close(g);
    sd_runtime_free(rt);
    return test_summary();
}
