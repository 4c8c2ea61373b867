/* test_bf16.c - `precision bf16` on the CPU backend against diffusers in bf16.
 *
 * 1. The tiny SD1 model's CLIP, UNet (cases a, b), VAE decode and encode on a
 *    runtime with precision BF16, compared with
 *      - the f32 goldens (clip_sd1, unet_sd1, vae): the error bf16 costs, with
 *        its own tolerance (~10x the measured error, below);
 *      - diffusers run under torch.autocast(bf16) on the same inputs
 *        (tests/golden/bf16.safetensors, tests/reference/gen_bf16_goldens.py):
 *        printed beside ours, and ours must stay within 2x of diffusers' own
 *        bf16 error against f32 (we round only GEMM operands to bf16 and keep
 *        activations in f32; autocast also stores activations in bf16).
 *    A bf16 run must differ from f32 by more than f32 rounding (>= 1e-4):
 *    otherwise the precision option did not reach the kernels.
 * 2. The tiny pipeline, txt2img 64x64, 8 Euler steps, same seed, f32 vs bf16
 *    runtime: PSNR of the 8-bit images (printed; bound below).
 *
 * Measured (Zen 4, avx512_core_bf16, oneDNN 2.6.3), max abs error vs f32:
 *   ours bf16:           CLIP 0.023, UNet a 0.0043 / b 0.0030, decode 0.016, encode 0.0090
 *   diffusers autocast:  CLIP 0.034, UNet a 0.027 / b 0.023, decode 0.043, encode 0.014
 *   diffusers .to(bf16): CLIP 0.062, UNet a 0.038 / b 0.030, decode 0.96,  encode 0.051
 *   (|ref| up to 3.9, 2.6, 3.7, 1.1); pipeline PSNR bf16 vs f32: 53.8 dB
 * On CPUs without AVX-512 the backend computes in f32 (it warns) and part 1
 * checks f32 parity instead.
 */
#include "cpu_dnnl.h"
#include "golden_st.h"
#include "model_load.h"
#include "model_run.h"
#include "pipeline.h"
#include "embed_cache.h"
#include "tokenizer.h"
#include "test.h"

#include <math.h>

static int bf16_here; /* the backend really computes in bf16 here */

static double max_abs(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

/* One output: ours (got) vs the f32 golden ref and diffusers' bf16 (autocast) run. */
static void compare(const char *what, const float *got, const struct sd_st_tensor *ref, const struct sd_st_tensor *bf,
                    double atol, double rtol) {
    if (!ref || !bf) return;
    const int64_t n = numel(ref);
    double mx = 0;
    if (!bf16_here) { /* f32 fallback: the f32 parity bounds of test_models */
        if (check_close(what, got, ref->data, n, 2e-5, 2e-4, &mx)) test_fail("%s f32 fallback (max abs err %.3g)", what, mx);
        else test_ok("%s: no AVX-512, f32 parity", what);
        return;
    }
    const double e_ours = max_abs(got, ref->data, n), e_torch = max_abs(bf->data, ref->data, n);
    const double e_vs_torch = max_abs(got, bf->data, n);
    if (check_close(what, got, ref->data, n, atol, rtol, &mx)) test_fail("%s bf16 vs f32 golden (max abs err %.3g)", what, mx);
    else test_ok("%s bf16 close to the f32 golden", what);
    CHECK(e_ours >= 1e-4, "%s: bf16 is in effect (error vs f32 %.3g >= 1e-4)", what, e_ours);
    CHECK(e_ours <= 2 * e_torch,
          "%s: bf16 error vs f32 %.3g <= 2x diffusers autocast-bf16's %.3g (ours vs autocast %.3g)", what, e_ours,
          e_torch, e_vs_torch);
}

static void test_components(void) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.precision = SD_PRECISION_BF16;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    CHECK(rt != NULL, "bf16 runtime (%s)", ctx.msg);
    if (!rt) return;
    if (sd_model_load(&ctx, "tests/models/tiny-sd1", NULL, &m)) {
        test_fail("load tiny-sd1: %s", ctx.msg);
        sd_runtime_free(rt);
        return;
    }
    struct sd_st_file *gc = golden("clip_sd1"), *gu = golden("unet_sd1"), *gv = golden("vae"), *gb = golden("bf16");
    const struct sd_st_tensor *ids = gt(gc, "input_ids"), *last = gt(gc, "last_hidden_state");
    float *out;
    /* Tolerances: ~10x the errors measured above, with rtol for the larger values. */
    if (ids && last) {
        out = malloc(sizeof(float) * (size_t)numel(last));
        if (sd_run_clip(rt, m, ids->data, (int)ids->shape[0], 0, out)) test_fail("bf16 clip: %s", sd_runtime_ctx(rt)->msg);
        else compare("tiny-sd1 clip last_hidden_state", out, last, gt(gb, "autocast.clip.last_hidden_state"), 0.15, 0.1);
        free(out);
    }
    for (int c = 0; c < 2; c++) {
        char n[64];
        const char *k = c ? "b" : "a";
        snprintf(n, sizeof n, "%s.sample", k);
        const struct sd_st_tensor *x = gt(gu, n);
        snprintf(n, sizeof n, "%s.timestep", k);
        const struct sd_st_tensor *t = gt(gu, n);
        snprintf(n, sizeof n, "%s.context", k);
        const struct sd_st_tensor *cx = gt(gu, n);
        snprintf(n, sizeof n, "%s.out", k);
        const struct sd_st_tensor *ref = gt(gu, n);
        snprintf(n, sizeof n, "autocast.unet.%s.out", k);
        const struct sd_st_tensor *bf = gt(gb, n);
        if (!x || !t || !cx || !ref) continue;
        out = malloc(sizeof(float) * (size_t)numel(ref));
        snprintf(n, sizeof n, "tiny-sd1 unet case %s", k);
        if (sd_run_unet(rt, m, x->data, (int)x->shape[0], (int)x->shape[2], (int)x->shape[3], t->data, cx->data,
                        (int)cx->shape[1], out))
            test_fail("%s: %s", n, sd_runtime_ctx(rt)->msg);
        else compare(n, out, ref, bf, 0.04, 0.02);
        free(out);
    }
    const struct sd_st_tensor *z = gt(gv, "decode.z"), *img = gt(gv, "decode.image");
    const struct sd_st_tensor *ein = gt(gv, "encode.image"), *mom = gt(gv, "encode.moments");
    if (z && img) {
        out = malloc(sizeof(float) * (size_t)numel(img));
        if (sd_run_vae_decode(rt, m, z->data, (int)z->shape[0], (int)z->shape[2], (int)z->shape[3], out))
            test_fail("bf16 vae decode: %s", sd_runtime_ctx(rt)->msg);
        else compare("tiny-sd1 vae decode", out, img, gt(gb, "autocast.vae.decode.image"), 0.1, 0.1);
        free(out);
    }
    if (ein && mom) {
        out = malloc(sizeof(float) * (size_t)numel(mom));
        if (sd_run_vae_encode(rt, m, ein->data, (int)ein->shape[0], (int)ein->shape[2], (int)ein->shape[3], out))
            test_fail("bf16 vae encode: %s", sd_runtime_ctx(rt)->msg);
        else compare("tiny-sd1 vae encode moments", out, mom, gt(gb, "autocast.vae.encode.moments"), 0.06, 0.05);
        free(out);
    }
    sd_st_close(gc), sd_st_close(gu), sd_st_close(gv), sd_st_close(gb);
    sd_runtime_release_model(rt, m);
    sd_model_free(m);
    sd_runtime_free(rt);
}

/* txt2img on tiny-sd1 at one precision into img [3, 64, 64]. */
static int generate(struct sd_model *m, struct sd_tokenizer *tok, enum sd_precision prec, float *img) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.precision = prec;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    struct sd_embed_cache *cache = sd_embed_cache_new(1u << 20);
    int rc = rt && cache ? SD_OK : SD_ERR_NOMEM;
    if (rc == SD_OK) {
        struct sd_pipeline p = {.ctx = &ctx, .model = m, .rt = rt, .tok = tok, .cache = cache};
        struct sd_gen_params g;
        sd_gen_params_init(&g);
        g.prompt = "a photograph of an astronaut riding a horse";
        g.negative_prompt = "blurry";
        g.width = g.height = 64;
        g.seed = 42;
        g.sampler.kind = SD_SAMPLER_EULER;
        g.sampler.steps = 8;
        rc = sd_generate(&p, &g, img);
        if (rc) printf("  generate (%s): %s\n", sd_precision_name(prec), ctx.msg);
        sd_runtime_release_model(rt, m);
    }
    sd_embed_cache_free(cache);
    sd_runtime_free(rt);
    return rc;
}

static void test_pipeline_psnr(void) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    const char *vocab = getenv("SDRT_VOCAB") && *getenv("SDRT_VOCAB") ? getenv("SDRT_VOCAB")
                                                                        : "build/vocab/bpe_simple_vocab_16e6.txt.gz";
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(&ctx, vocab);
    if (!tok || sd_model_load(&ctx, "tests/models/tiny-sd1", NULL, &m)) {
        test_fail("pipeline psnr: %s", ctx.msg);
        sd_tokenizer_free(tok);
        return;
    }
    const int n = 3 * 64 * 64;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    if (generate(m, tok, SD_PRECISION_F32, a) == SD_OK && generate(m, tok, SD_PRECISION_BF16, b) == SD_OK) {
        double se = 0;
        for (int i = 0; i < n; i++) { /* 8-bit images as the PNG writer makes them */
            double pa = floor(fmin(fmax((a[i] + 1) * 127.5, 0), 255) + 0.5);
            double pb = floor(fmin(fmax((b[i] + 1) * 127.5, 0), 255) + 0.5);
            se += (pa - pb) * (pa - pb);
        }
        const double mse = se / n, psnr = mse > 0 ? 10 * log10(255.0 * 255.0 / mse) : 99.0;
        if (bf16_here)
            CHECK(psnr >= 40.0 && psnr < 99.0, "tiny-sd1 txt2img 64x64 8 steps: bf16 vs f32 image PSNR %.1f dB (>= 40)", psnr);
        else
            CHECK(psnr >= 99.0, "tiny-sd1 txt2img: no AVX-512, bf16 falls back to f32 (PSNR %.1f dB)", psnr);
    } else {
        test_fail("pipeline psnr: generation failed");
    }
    free(a), free(b);
    sd_model_free(m);
    sd_tokenizer_free(tok);
}

int main(void) {
    bf16_here = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
    printf("# oneDNN ISA %s: bf16 %s\n", sd_dnnl_isa_name(),
           sd_dnnl_has_bf16() ? "native" : bf16_here ? "emulated" : "unavailable (f32 fallback)");
    test_components();
    test_pipeline_psnr();
    return test_summary();
}
