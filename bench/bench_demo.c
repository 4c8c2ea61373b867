/* bench_demo.c - "does it still draw the right thing": the demo model's grid
 * (tests/models/demo: every color x shape x background it knows, 36 prompts,
 * seeds 1000 + i, Euler a 20 steps, CFG 7.5, 32x32) judged by the classifier
 * of tests/demo_judge.c, once per backend/precision that `make bench` times:
 * CPU f32, CPU bf16 (where the CPU has bf16 instructions), OpenCL.
 *
 *   build/bench/bench_demo [-m MODEL] [-t THREADS] [--modes cpu-f32,cpu-bf16,opencl]
 *
 * Prints per mode the prompts judged right in all three attributes and per
 * attribute, how many prompts' verdicts differ from CPU f32's (the
 * reference; tests/test_demo_meaning.c checks it against diffusers), and the
 * time. A mode that agrees with the prompts on more than MAX_DROP fewer
 * prompts than CPU f32 means a speed change broke what the model draws: the
 * bench says so and exits 1 (`make bench` stops there).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_dnnl.h"
#include "demo_judge.h"
#include "test.h"

/* bf16 rounding moves a few verdicts of this small, undertrained model (the
 * sampler amplifies per-op differences): measured here 2 of 36 verdicts
 * differ (12 prompts right vs 11 at f32); OpenCL (PoCL, f32): none. */
#define MAX_DROP 4

struct mode {
    const char *name;
    enum sd_backend_kind backend;
    enum sd_precision precision;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *model = "tests/models/demo", *only = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(a, "-m")) model = v, i++;
        else if (v && !strcmp(a, "-t")) threads = atoi(v), i++;
        else if (v && !strcmp(a, "--modes")) only = v, i++;
        else {
            fprintf(stderr, "usage: %s [-m MODEL] [-t THREADS] [--modes cpu-f32,cpu-bf16,opencl]\n", argv[0]);
            return 2;
        }
    }
    const struct mode modes[] = {
        {"cpu-f32", SD_BACKEND_CPU, SD_PRECISION_F32},
        {"cpu-bf16", SD_BACKEND_CPU, SD_PRECISION_BF16},
        {"opencl", SD_BACKEND_OPENCL, SD_PRECISION_F32},
    };
    static float ref[DEMO_GRID][3 * DEMO_S * DEMO_S], imgs[DEMO_GRID][3 * DEMO_S * DEMO_S];
    int ref_ok = -1, bad = 0;
    printf("bench_demo: %s, the 36-prompt grid (Euler a 20 steps, CFG 7.5, 32x32) judged per mode\n", model);
    for (size_t k = 0; k < sizeof modes / sizeof *modes; k++) {
        const struct mode *md = &modes[k];
        if (only && !strstr(only, md->name)) continue;
        if (md->precision == SD_PRECISION_BF16 && !sd_dnnl_has_bf16()) {
            printf("  %-9s skipped: this CPU has no bf16 instructions (avx512_bf16 / AMX)\n", md->name);
            continue;
        }
        struct sd_runtime_opts o;
        sd_runtime_opts_init(&o);
        o.backend = md->backend, o.precision = md->precision, o.threads = threads;
        if (md->backend == SD_BACKEND_OPENCL) o.cl_cache_dir = "/tmp/sdrt-test-cache";
        struct demo_env e;
        if (demo_env_open(&e, model, &o, vocab_path())) {
            printf("  %-9s cannot open: %s\n", md->name, e.ctx.msg);
            bad = 1;
            continue;
        }
        int attr[3];
        double t0 = now_s();
        int ok = demo_grid(&e, 7.5f, k == 0 ? ref : imgs, attr, 0);
        double secs = now_s() - t0;
        if (ok < 0) {
            printf("  %-9s failed: %s\n", md->name, e.ctx.msg);
            bad = 1;
        } else if (k == 0) {
            ref_ok = ok;
            printf("  %-9s %2d/36 prompts right (color %d, shape %d, background %d)  %.2f s (%.0f ms/image)\n",
                   md->name, ok, attr[0], attr[1], attr[2], secs, 1e3 * secs / DEMO_GRID);
        } else {
            int differ = 0;
            for (int i = 0; i < DEMO_GRID; i++) {
                struct demo_verdict a = demo_judge(ref[i], DEMO_COLORS), b = demo_judge(imgs[i], DEMO_COLORS);
                differ += a.color != b.color || a.shape != b.shape || a.bg != b.bg;
            }
            int drop = ref_ok >= 0 && ok < ref_ok - MAX_DROP;
            printf("  %-9s %2d/36 prompts right (color %d, shape %d, background %d), %d verdicts differ from "
                   "cpu-f32  %.2f s (%.0f ms/image)%s\n", md->name, ok, attr[0], attr[1], attr[2], differ, secs,
                   1e3 * secs / DEMO_GRID, drop ? "  MEANING LOST: more than 4 prompts fewer than cpu-f32" : "");
            bad |= drop;
        }
        demo_env_free(&e);
    }
    return bad;
}
