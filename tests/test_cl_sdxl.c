/* test_cl_sdxl.c - the tiny SDXL model (tests/models/tiny-sdxl, diffusers
 * folder and SGM single file) on the OpenCL backend (PoCL here), every op
 * refused on the CPU backend so nothing silently falls back: both text
 * encoders (penultimate states, bigG's pooled projection - through the
 * embedding op on activations and, for the SGM file, a permute of
 * text_projection), the UNet with add_embedding, the VAE - against the
 * diffusers goldens, with the CPU bounds of test_sdxl.c (sdxl_parity.h). */
#include "cl_test_opts.h"
#include "sdxl_parity.h"

/* See cl_test_util.h: PoCL/LLVM-internal allocations are not our leaks. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libpocl.so\nleak:libLLVM\nleak:libclang\n"; }

int main(void) {
    struct sd_runtime_opts o;
    cl_test_device_only(&o);
    struct sd_ctx ctx = {0};
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    CHECK(rt != NULL, "opencl runtime (%s)", ctx.msg);
    struct sd_st_file *g = golden("sdxl");
    static const struct { const char *path, *config, *label; } models[] = {
        {"tests/models/tiny-sdxl", NULL, "tiny-sdxl (diffusers) on opencl"},
        {"tests/models/tiny-sdxl.safetensors", "tests/models/tiny-sdxl", "tiny-sdxl (SGM f16) on opencl"},
    };
    for (size_t i = 0; rt && g && i < sizeof models / sizeof models[0]; i++) {
        struct sd_model *m = NULL;
        if (sd_model_load(&ctx, models[i].path, models[i].config, &m)) {
            test_fail("%s: load: %s", models[i].label, ctx.msg);
            continue;
        }
        test_text(rt, m, models[i].label, g);
        test_unet(rt, m, models[i].label, g);
        test_vae(rt, m, models[i].label, g);
        sd_runtime_release_model(rt, m);
        sd_model_free(m);
    }
    sd_st_close(g);
    sd_runtime_free(rt);
    return test_summary();
}
