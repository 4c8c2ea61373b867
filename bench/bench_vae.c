/* bench_vae.c - time one VAE decode (whole or tiled) of a random latent.
 *
 *   build/bench/bench_vae -m MODEL [-s PX] [--tiling] [--tile PX] [--budget BYTES] [-r N] [-t THREADS]
 *                         [--low-memory] [--taesd PATH] [--precision f32|bf16|auto]
 *
 * Decodes a seeded random latent of PX x PX pixels (default 512) with the
 * model's VAE: untiled, tiled (--tiling), or tiled only when the untiled
 * activation arena would exceed --budget (as `sdrt txt2img --memory-budget`).
 * Prints the untiled arena estimate, the arena the runtime allocated, and
 * the first (graph build, weight preparation) and following decode times.
 * --low-memory: the CPU conv policy of `sdrt --low-memory` (no transformed
 * weight copies). --precision: the CPU backend's (default f32, the
 * library's default; `sdrt` defaults to auto). --taesd PATH: decode with that TAESD instead (without
 * -m); with -m too, the model's VAE and the TAESD decode the same latent
 * alternately, N times each, in one process (a fair ratio on a busy
 * machine), and the medians are printed.
 * Run it under /usr/bin/time -v for the peak resident memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_load.h"
#include "model_run.h"
#include "taesd.h"
#include "vae_tiling.h"
#include "test.h"

int main(int argc, char **argv) {
    const char *model = NULL, *taesd = NULL;
    int px = 512, tiling = 0, tile = 0, reps = 2, threads = 0, lowmem = 0, precision = SD_PRECISION_F32;
    unsigned long long budget = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tiling")) tiling = 1;
        else if (!strcmp(a, "--low-memory")) lowmem = 1;
        else if (v && !strcmp(a, "--taesd")) taesd = v, i++;
        else if (v && !strcmp(a, "-m")) model = v, i++;
        else if (v && !strcmp(a, "-s")) px = atoi(v), i++;
        else if (v && !strcmp(a, "--tile")) tile = atoi(v), i++;
        else if (v && !strcmp(a, "--budget")) budget = strtoull(v, NULL, 10), i++;
        else if (v && !strcmp(a, "-r")) reps = atoi(v), i++;
        else if (v && !strcmp(a, "-t")) threads = atoi(v), i++;
        else if (v && !strcmp(a, "--precision") && sd_precision_parse(v) >= 0) precision = sd_precision_parse(v), i++;
        else {
            fprintf(stderr, "usage: %s -m MODEL [-s PX] [--tiling] [--tile PX] [--budget BYTES] [-r N] [-t THREADS] "
                            "[--low-memory] [--taesd PATH] [--precision f32|bf16|auto]\n", argv[0]);
            return 2;
        }
    }
    if ((!model && !taesd) || px < 8 || reps < 1) {
        fprintf(stderr, "%s: -m MODEL is required; -s >= 8, -r >= 1\n", argv[0]);
        return 2;
    }
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts ro;
    sd_runtime_opts_init(&ro);
    ro.threads = threads;
    ro.precision = (enum sd_precision)precision;
    if (lowmem) ro.conv = SD_CONV_POLICY_LOWMEM;
    struct sd_model *m = NULL;
    struct sd_runtime *rt = NULL;
    if (taesd && model) {
        struct sd_taesd *t = NULL;
        if (sd_model_load(&ctx, model, NULL, &m) || sd_taesd_load(&ctx, taesd, &t) || !(rt = sd_runtime_new(&ctx, &ro))) {
            fprintf(stderr, "bench_vae: %s\n", ctx.msg);
            return 1;
        }
        const int f = t->downscale, h = px / f, lc = t->latent_channels;
        float *x = malloc(sizeof(float) * (size_t)lc * h * h), *z = malloc(sizeof(float) * (size_t)lc * h * h);
        float *img = malloc(sizeof(float) * 3 * (size_t)px * px);
        double tv[64], tt[64];
        fill_random(x, (int64_t)lc * h * h, 1);
        for (int64_t i = 0; i < (int64_t)lc * h * h; i++) x[i] *= 1.5f, z[i] = x[i] / m->vae.scaling_factor;
        int rc = SD_OK;
        if (reps > 64) reps = 64;
        for (int r = -1; r < reps && !rc; r++) { /* r = -1: untimed warm-up of both */
            double t0 = sd_time_s();
            rc = sd_run_vae_decode(rt, m, z, 1, h, h, img);
            double t1 = sd_time_s();
            if (!rc) rc = sd_run_taesd_decode(rt, t, x, 1, h, h, img);
            if (r >= 0) tv[r] = t1 - t0, tt[r] = sd_time_s() - t1;
            if (r >= 0 && !rc) printf("  run %d: vae %.3f s, taesd %.3f s\n", r + 1, tv[r], tt[r]);
        }
        if (!rc) {
            for (int i = 0; i < reps; i++)
                for (int j = i + 1; j < reps; j++) {
                    double a;
                    if (tv[j] < tv[i]) a = tv[i], tv[i] = tv[j], tv[j] = a;
                    if (tt[j] < tt[i]) a = tt[i], tt[i] = tt[j], tt[j] = a;
                }
            printf("%dx%d decode, median of %d: vae %.3f s, taesd %.3f s (%.1fx faster)\n", px, px, reps, tv[reps / 2],
                   tt[reps / 2], tv[reps / 2] / tt[reps / 2]);
        } else {
            fprintf(stderr, "bench_vae: %s\n", ctx.msg);
        }
        free(x), free(z), free(img);
        sd_runtime_release_taesd(rt, t);
        sd_runtime_release_model(rt, m);
        sd_runtime_free(rt);
        sd_taesd_free(t);
        sd_model_free(m);
        return rc ? 1 : 0;
    }
    if (taesd) {
        struct sd_taesd *t = NULL;
        if (sd_taesd_load(&ctx, taesd, &t) || !(rt = sd_runtime_new(&ctx, &ro))) {
            fprintf(stderr, "bench_vae: %s\n", ctx.msg);
            return 1;
        }
        const int h = px / t->downscale, lc = t->latent_channels;
        float *z = malloc(sizeof(float) * (size_t)lc * h * h), *img = malloc(sizeof(float) * 3 * (size_t)px * px);
        fill_random(z, (int64_t)lc * h * h, 1);
        for (int64_t i = 0; i < (int64_t)lc * h * h; i++) z[i] *= 1.5f;
        printf("taesd decode %dx%d (latent %dx%d)\n", px, px, h, h);
        int rc = SD_OK;
        for (int r = 0; r < reps && !rc; r++) {
            double t0 = sd_time_s();
            if (!(rc = sd_run_taesd_decode(rt, t, z, 1, h, h, img)))
                printf("  run %d: %.3f s (arena allocated %.1f MiB)\n", r + 1, sd_time_s() - t0,
                       sd_runtime_arena_bytes(rt) / 1048576.0);
        }
        if (rc) fprintf(stderr, "bench_vae: %s\n", ctx.msg);
        free(z), free(img);
        sd_runtime_release_taesd(rt, t);
        sd_runtime_free(rt);
        sd_taesd_free(t);
        return rc ? 1 : 0;
    }
    if (sd_model_load(&ctx, model, NULL, &m) || !(rt = sd_runtime_new(&ctx, &ro))) {
        fprintf(stderr, "bench_vae: %s\n", ctx.msg);
        return 1;
    }
    const int f = sd_vae_downscale(&m->vae), h = px / f, lc = m->vae.latent_channels;
    float *z = malloc(sizeof(float) * (size_t)lc * h * h), *img = malloc(sizeof(float) * 3 * (size_t)px * px);
    fill_random(z, (int64_t)lc * h * h, 1);
    for (int64_t i = 0; i < (int64_t)lc * h * h; i++) z[i] *= 1.5f / m->vae.scaling_factor;
    size_t est = 0;
    int tiled = 0, rc = sd_vae_arena_estimate(&ctx, m, 1, h, h, &est);
    if (!rc) rc = sd_vae_want_tiles(&ctx, m, 1, h, h, tiling, budget, tile, &tiled, &tile);
    printf("vae decode %dx%d (latent %dx%d): untiled arena estimate %.1f MiB -> %s", px, px, h, h, est / 1048576.0,
           tiled ? "tiled" : "whole");
    if (tiled) {
        size_t tb = 0;
        const int ts = tile ? tile : sd_vae_tile_default(m);
        if (!sd_vae_arena_estimate(&ctx, m, 1, ts / f, ts / f, &tb))
            printf(", tile %d px (arena of one tile %.1f MiB)", ts, tb / 1048576.0);
    }
    printf("\n");
    for (int r = 0; r < reps && !rc; r++) {
        double t0 = sd_time_s();
        rc = tiled ? sd_vae_decode_tiled(rt, m, z, 1, h, h, tile, img) : sd_run_vae_decode(rt, m, z, 1, h, h, img);
        if (!rc)
            printf("  run %d: %.3f s (arena allocated %.1f MiB)\n", r + 1, sd_time_s() - t0,
                   sd_runtime_arena_bytes(rt) / 1048576.0);
    }
    if (rc) fprintf(stderr, "bench_vae: %s\n", ctx.msg);
    free(z), free(img);
    sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_model_free(m);
    return rc ? 1 : 0;
}
