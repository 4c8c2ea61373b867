/* test_model_errors.c - bad checkpoints get clear errors, never a crash:
 * an SD1 file with an SDXL key but no SDXL UNet, a file that is not SD, a missing tensor, a
 * wrong shape, a truncated file, a missing diffusers component. Files are
 * derived from tests/models/tiny-sd1.safetensors into a temp dir. */
#include "model_load.h"
#include "model_run.h"
#include "safetensors.h"
#include "test.h"

#include <unistd.h>

static char dir[] = "/tmp/sdrt_bad_XXXXXX";

/* Copies the tiny model's tensors into path, dropping `drop` and replacing
 * the shape of `reshape` by a smaller one; extra adds one named tensor. */
static int derive(const char *path, const char *drop, const char *reshape, const char *extra) {
    struct sd_ctx ctx = {0};
    struct sd_st_file *f = NULL;
    if (sd_st_open(&ctx, "tests/models/tiny-sd1.safetensors", &f)) return -1;
    struct sd_st_tensor *t = calloc((size_t)f->n_tensors + 1, sizeof *t);
    int n = 0;
    static const float one[1] = {1};
    for (int i = 0; i < f->n_tensors; i++) {
        if (drop && !strcmp(f->tensors[i].name, drop)) continue;
        t[n] = f->tensors[i];
        if (reshape && !strcmp(t[n].name, reshape)) { /* drop the last input channel */
            t[n].shape[1] -= 1;
            t[n].nbytes = t[n].nbytes / (size_t)(t[n].shape[1] + 1) * (size_t)t[n].shape[1];
        }
        n++;
    }
    if (extra) t[n++] = (struct sd_st_tensor){.name = extra, .type = SD_F32, .dtype = "F32", .n_dims = 1, .shape = {1}, .nbytes = 4, .data = one};
    int rc = sd_st_write(&ctx, path, t, n, NULL);
    free(t);
    sd_st_close(f);
    return rc;
}

static void expect_load_error(const char *label, const char *path, const char *config, const char *want) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    int rc = sd_model_load(&ctx, path, config, &m);
    CHECK(rc != SD_OK && m == NULL && strstr(ctx.msg, want), "%s: load fails naming '%s': %s", label, want, ctx.msg);
    sd_model_free(m);
}

/* Loads fine (weights are lazy) but building the UNet graph must fail. */
static void expect_run_error(const char *label, const char *path, const char *want1, const char *want2) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    if (sd_model_load(&ctx, path, "tests/models/tiny-sd1", &m)) {
        CHECK(strstr(ctx.msg, want1) && strstr(ctx.msg, want2), "%s: error names '%s' and '%s': %s", label, want1, want2, ctx.msg);
        return;
    }
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    float x[2 * 4 * 8 * 8] = {0}, t[2] = {1, 1}, c[2 * 77 * 32] = {0}, out[2 * 4 * 8 * 8];
    int rc = sd_run_unet(rt, m, x, 2, 8, 8, t, c, 77, out);
    CHECK(rc != SD_OK && strstr(ctx.msg, want1) && strstr(ctx.msg, want2), "%s: error names '%s' and '%s': %s", label, want1,
          want2, ctx.msg);
    sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_model_free(m);
}

int main(void) {
    if (!mkdtemp(dir)) { test_fail("mkdtemp"); return 1; }
    char p[256];

    snprintf(p, sizeof p, "%s/sdxl.safetensors", dir);
    CHECK(derive(p, NULL, NULL, "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias") == 0, "write sdxl-like file");
    expect_load_error("SDXL-keyed file without add_embedding", p, NULL, "SDXL");

    snprintf(p, sizeof p, "%s/notsd.safetensors", dir);
    CHECK(derive(p, "model.diffusion_model.input_blocks.0.0.weight", NULL, NULL) == 0, "write non-SD file");
    expect_load_error("not an SD checkpoint", p, NULL, "not a Stable Diffusion checkpoint");

    snprintf(p, sizeof p, "%s/missing.safetensors", dir);
    CHECK(derive(p, "model.diffusion_model.input_blocks.1.0.in_layers.2.weight", NULL, NULL) == 0, "write file missing a tensor");
    expect_run_error("missing tensor", p, "missing tensor", "down_blocks.0.resnets.0.conv1.weight");

    snprintf(p, sizeof p, "%s/shape.safetensors", dir);
    CHECK(derive(p, NULL, "model.diffusion_model.input_blocks.1.0.in_layers.2.weight", NULL) == 0, "write file with a wrong shape");
    expect_run_error("wrong shape", p, "down_blocks.0.resnets.0.conv1.weight", "expected");

    /* Truncated: the first 60% of a valid file. */
    snprintf(p, sizeof p, "%s/truncated.safetensors", dir);
    FILE *in = fopen("tests/models/tiny-sd1.safetensors", "rb"), *out = fopen(p, "wb");
    if (in && out) {
        fseek(in, 0, SEEK_END);
        long n = ftell(in), keep = n * 6 / 10;
        fseek(in, 0, SEEK_SET);
        char *buf = malloc((size_t)keep);
        if (fread(buf, 1, (size_t)keep, in) == (size_t)keep) fwrite(buf, 1, (size_t)keep, out);
        free(buf);
    }
    if (in) fclose(in);
    if (out) fclose(out);
    expect_load_error("truncated file", p, NULL, "truncated.safetensors");

    expect_load_error("missing file", "/nonexistent/model.safetensors", NULL, "no such file");
    /* The tiny model's widths (8/12/20) do not fit SD's 32 GroupNorm groups:
     * without its config the loader says so instead of failing mid-run. */
    expect_load_error("non-standard config without --config", "tests/models/tiny-sd1.safetensors", NULL, "--config");

    /* A diffusers folder without its vae/. */
    snprintf(p, sizeof p, "%s/folder", dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp -r tests/models/tiny-sd1 %s && rm -rf %s/vae", p, p);
    CHECK(system(cmd) == 0, "copy tiny-sd1 folder");
    expect_load_error("diffusers folder without vae", p, NULL, "vae/");

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", dir);
    return test_summary();
}
