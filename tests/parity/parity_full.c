/* parity_full.c - `make parity-full`: full-size SD-architecture checkpoints
 * (random weights, written by tests/reference/gen_full.py into models/) run
 * through sdrt and compared with diffusers' outputs for the same inputs:
 * one CLIP encode (2 prompts), one UNet evaluation at 64x64 latents batch 2,
 * one VAE decode to 512x512. Prints max abs error, max abs error relative to
 * max |ref|, and the mean relative error per component, plus load time,
 * resident memory after load and peak resident memory during the UNet step.
 * Exit status 1 if a component exceeds its tolerance.
 *
 *   build/tests/parity_full MODEL GOLDEN [--backend cpu|opencl]
 */
#include "model_load.h"
#include "model_run.h"
#include "safetensors.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long proc_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n + 1);
    if (f) fclose(f);
    return v;
}

static void reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f); /* resets VmHWM to the current RSS */
        fclose(f);
    }
}

static int64_t numel(const struct sd_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

static int report(const char *what, const float *got, const struct sd_st_tensor *ref, double tol_rel) {
    const float *r = ref->data;
    int64_t n = numel(ref);
    double max_abs = 0, max_ref = 0, sum_rel = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) bad++;
        double d = fabs((double)got[i] - r[i]);
        if (d > max_abs) max_abs = d;
        if (fabs(r[i]) > max_ref) max_ref = fabs(r[i]);
        sum_rel += d / (fabs(r[i]) + 1e-3);
    }
    double rel = max_abs / (max_ref > 0 ? max_ref : 1);
    int ok = bad == 0 && rel <= tol_rel;
    printf("%-12s max abs err %.3e   max |ref| %.3e   max abs err / max |ref| %.3e   mean rel err %.3e   %s\n", what,
           max_abs, max_ref, rel, sum_rel / (double)n, ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL GOLDEN [--backend cpu|opencl] [--precision f32|bf16|auto]\n", argv[0]);
        return 2;
    }
    int kind = SD_BACKEND_CPU;
    int prec = SD_PRECISION_F32;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--backend")) kind = sd_backend_kind_parse(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision")) prec = sd_precision_parse(argv[i + 1]);
        else prec = -1;
    }
    if (kind < 0 || prec < 0) return 2;
    /* f32: 1e-3 of max |ref|; bf16 (GEMM operands rounded to 8 mantissa
     * bits, errors compounding over the UNet's depth): 5e-2. */
    const double tol = prec == SD_PRECISION_F32 ? 1e-3 : 5e-2;
    struct sd_ctx ctx = {0};
    struct sd_st_file *g = NULL;
    struct sd_model *m = NULL;
    if (sd_st_open(&ctx, argv[2], &g)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    double t0 = sd_time_s();
    if (sd_model_load(&ctx, argv[1], NULL, &m) || sd_model_load_weights(m)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    double load_s = sd_time_s() - t0;
    long rss_load = proc_kb("VmRSS:");
    printf("%s: %s, %s weights; load (incl. conversion to f32) %.2f s; resident after load %.0f MiB\n", argv[1],
           sd_family_name(m->family), sd_dtype_name(m->file_dtype), load_s, rss_load / 1024.0);
    struct sd_runtime_opts ro;
    sd_runtime_opts_init(&ro);
    ro.backend = (enum sd_backend_kind)kind;
    ro.precision = (enum sd_precision)prec;
    printf("precision %s\n", sd_precision_name(prec));
    struct sd_runtime *rt = sd_runtime_new(&ctx, &ro);
    if (!rt) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    const struct sd_st_tensor *ids = sd_st_require(&ctx, g, "clip.input_ids"), *hid = sd_st_require(&ctx, g, "clip.last_hidden_state");
    const struct sd_st_tensor *x = sd_st_require(&ctx, g, "unet.sample"), *t = sd_st_require(&ctx, g, "unet.timestep");
    const struct sd_st_tensor *c = sd_st_require(&ctx, g, "unet.context"), *uo = sd_st_require(&ctx, g, "unet.out");
    const struct sd_st_tensor *z = sd_st_require(&ctx, g, "vae.z"), *img = sd_st_require(&ctx, g, "vae.image");
    if (!ids || !hid || !x || !t || !c || !uo || !z || !img) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    int fails = 0;
    float *out = malloc(sizeof(float) * (size_t)numel(img) + sizeof(float) * (size_t)numel(hid) + sizeof(float) * (size_t)numel(uo));
    if (!out) return 1;

    t0 = sd_time_s();
    if (sd_run_clip(rt, m, ids->data, (int)ids->shape[0], 0, out)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    printf("clip: %.2f s\n", sd_time_s() - t0);
    fails += report("clip", out, hid, tol);

    reset_peak();
    long rss_before = proc_kb("VmRSS:");
    t0 = sd_time_s();
    if (sd_run_unet(rt, m, x->data, (int)x->shape[0], (int)x->shape[2], (int)x->shape[3], t->data, c->data, (int)c->shape[1], out)) {
        fprintf(stderr, "%s\n", ctx.msg);
        return 1;
    }
    double unet_s = sd_time_s() - t0;
    long peak = proc_kb("VmHWM:");
    printf("unet: %.2f s (first call: builds the graph, creates primitives); resident before %.0f MiB, peak during %.0f MiB; activation arena %.0f MiB\n",
           unet_s, rss_before / 1024.0, peak / 1024.0, sd_runtime_arena_bytes(rt) / 1048576.0);
    fails += report("unet", out, uo, tol);

    t0 = sd_time_s();
    if (sd_run_vae_decode(rt, m, z->data, (int)z->shape[0], (int)z->shape[2], (int)z->shape[3], out)) { fprintf(stderr, "%s\n", ctx.msg); return 1; }
    printf("vae decode: %.2f s\n", sd_time_s() - t0);
    fails += report("vae_decode", out, img, tol);

    free(out);
    sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_model_free(m);
    sd_st_close(g);
    printf("%s\n", fails ? "parity: FAIL" : "parity: ok");
    return fails ? 1 : 0;
}
