/* parity_full_sdxl.c - a full-size random SDXL checkpoint (written by
 * tests/reference/gen_full_sdxl.py into models/, never committed) through
 * sdrt against diffusers' outputs for the same inputs: both text encoders
 * (penultimate states, pooled projection), the UNet with add_embedding at
 * 16x16 (CFG pair) and 12x10 latents, the VAE decode (32x32 -> 256x256)
 * and encode - the checks of tests/sdxl_parity.h with its bounds times
 * --scale (default 20: 20x the tiny model's bounds; the measured errors
 * are printed). Also prints the load time, the time per component and the
 * resident memory. CPU convolutions run with the low-memory policy unless
 * --conv auto (oneDNN's Winograd copies of the UNet's 3x3 weights would add
 * several GB to the ~14 GB of f32 weights on a 24 GB machine).
 *
 * --parts picks components (default text,unet,vae; with a subset only those
 * weights load, lazily: e.g. the text encoders and VAE on PoCL, whose
 * buffers are a second host copy of the weights).
 *
 *   build/tests/parity_full_sdxl MODEL GOLDEN [--backend cpu|opencl] [--scale X] [--conv auto|lowmem]
 *                                [--parts text,unet,vae] [--precision f32|bf16]
 * The f32 UNet does not fit 24 GB next to oneDNN's packed copies of its
 * linear weights (10.3 GB f32 + ~8 GB): on such a machine run the UNet
 * with --precision bf16 (packed bf16 copies; bf16 error, a wider --scale).
 */
#include "sdxl_parity.h"
#include "weights.h"

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

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL GOLDEN [--backend cpu|opencl] [--scale X] [--conv auto|lowmem]\n", argv[0]);
        return 2;
    }
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.conv = SD_CONV_POLICY_LOWMEM;
    const char *parts = "text,unet,vae";
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--backend")) o.backend = !strcmp(argv[i + 1], "opencl") ? SD_BACKEND_OPENCL : SD_BACKEND_CPU;
        else if (!strcmp(argv[i], "--scale")) sdxl_tol_scale = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--parts")) parts = argv[i + 1];
        else if (!strcmp(argv[i], "--precision") && sd_precision_parse(argv[i + 1]) >= 0)
            o.precision = (enum sd_precision)sd_precision_parse(argv[i + 1]);
        else if (!strcmp(argv[i], "--conv")) o.conv = !strcmp(argv[i + 1], "auto") ? SD_CONV_POLICY_AUTO : SD_CONV_POLICY_LOWMEM;
    }
    if (sdxl_tol_scale == 1.0) sdxl_tol_scale = 20;
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    double t0 = sd_time_s();
    const int all = strstr(parts, "text") && strstr(parts, "unet") && strstr(parts, "vae");
    if (sd_model_load(&ctx, argv[1], NULL, &m) || (all && sd_model_load_weights(m))) {
        fprintf(stderr, "load: %s\n", ctx.msg);
        return 1;
    }
    printf("%s: %s, loaded in %.1f s, resident %.0f MiB; parameters te %lld, te2 %lld, unet %lld, vae %lld\n", argv[1],
           sd_family_name(m->family), sd_time_s() - t0, proc_kb("VmRSS:") / 1024.0, (long long)sd_weights_n_params(m->te),
           (long long)sd_weights_n_params(m->te2), (long long)sd_weights_n_params(m->un), (long long)sd_weights_n_params(m->va));
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    struct sd_st_file *g = NULL;
    if (!rt || sd_st_open(&ctx, argv[2], &g)) {
        fprintf(stderr, "%s\n", ctx.msg);
        return 1;
    }
    if (strstr(parts, "text")) {
        t0 = sd_time_s();
        test_text(rt, m, "full-size SDXL", g);
        printf("text encoders: %.1f s\n", sd_time_s() - t0);
    }
    if (strstr(parts, "unet")) {
        t0 = sd_time_s();
        test_unet(rt, m, "full-size SDXL", g);
        printf("unet (2 cases, first builds the graphs): %.1f s; peak resident %.0f MiB\n", sd_time_s() - t0,
               proc_kb("VmHWM:") / 1024.0);
    }
    if (strstr(parts, "vae")) {
        t0 = sd_time_s();
        test_vae(rt, m, "full-size SDXL", g);
        printf("vae decode + encode: %.1f s\n", sd_time_s() - t0);
    }
    printf("peak resident %.0f MiB\n", proc_kb("VmHWM:") / 1024.0);
    sd_st_close(g);
    sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_model_free(m);
    return test_summary();
}
