/* cmd_bench.c - `sdrt bench`: times model components on a checkpoint.
 *
 * For each requested backend: one warm-up run (builds and plans the graph,
 * loads weights), then --runs timed runs of the CLIP encoder (2 prompts), one
 * UNet evaluation at batch 2 (a CFG step) and one VAE decode, printing the
 * median seconds and achieved GFLOP/s per phase, then (--profile) a table of
 * where the time goes per op. Inputs are seeded random values: timing does
 * not depend on them. --json prints the same figures (every timed run, the
 * medians, per op and per backend of each runtime) as one JSON object on
 * stdout, the human-readable lines going to stderr; bench/chart.py draws it.
 */
#include "cl.h"
#include "cli_opts.h"
#include "cmd.h"
#include "cpu.h"
#include "model_load.h"
#include "model_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void fill(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

/* --cpu-time: process CPU seconds divided by the threads, so that a
 * neighbour's load on a shared machine does not count (idle OpenMP threads
 * must sleep: OMP_WAIT_POLICY=passive). */
static int cpu_clock_threads;
static double bench_clock(void) {
    if (!cpu_clock_threads) return sd_time_s();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ((double)ts.tv_sec + ts.tv_nsec * 1e-9) / cpu_clock_threads;
}

struct phase { const char *name; double flops; double t[32]; int n; double first; /* the warm-up run */ };

enum { MAXB = 4, MAXRT = 4 };

static double median(struct phase *p) {
    qsort(p->t, (size_t)p->n, sizeof p->t[0], cmp_double);
    return p->n ? p->t[p->n / 2] : 0;
}

struct bench_opts {
    const char *model, *config, *comps, *backends, *device, *precision, *weight_cache, *weight_cache_max;
    int width, height, runs, threads, profile, batch, low_memory, cpu_time, json;
};

#define O(field) CLI_OFF(struct bench_opts, field)
static const struct cli_opt options[] = {
    {"model", 'm', CLI_STR, O(model), "PATH", "single-file .safetensors or diffusers folder (required)", NULL, 0},
    {"config", 0, CLI_STR, O(config), "DIR", "diffusers folder describing a single-file model", NULL, 0},
    {"components", 0, CLI_STR, O(comps), "LIST", "of clip,unet,vae (default all three)", NULL, 0},
    {"backends", 0, CLI_STR, O(backends), "LIST", "of cpu,opencl,auto, timed side by side (default cpu)", NULL, 0},
    {"device", 0, CLI_STR, O(device), "N", "the OpenCL device, numbered as `sdrt devices` lists them", NULL, 0},
    {"width", 'W', CLI_INT, O(width), "N", "image width (default 512)", NULL, 0},
    {"height", 'H', CLI_INT, O(height), "N", "image height (default 512)", NULL, 0},
    {"batch", 0, CLI_INT, O(batch), "N", "UNet batch (default 2 = one CFG step)", NULL, 0},
    {"runs", 0, CLI_INT, O(runs), "N", "timed runs, 1..32 (default 3; the median is shown)", NULL, 0},
    {"threads", 0, CLI_INT, O(threads), "N", "CPU threads (default: all cores)", NULL, 0},
    {"low-memory", 0, CLI_FLAG, O(low_memory), NULL, "CPU convolutions keep no transformed weight copies", NULL, 0},
    {"precision", 0, CLI_STR, O(precision), "auto|f32|bf16|f16", "GEMM-class compute precision (default auto: bf16 where\n"
                                                            "the CPU has bf16 instructions; f16: OpenCL half weights)", NULL, 0},
    {"weight-cache", 0, CLI_STR, O(weight_cache), "DIR|off", "prepared-weight cache root as for txt2img (default: the cache root)", NULL, 0},
    {"weight-cache-max", 0, CLI_STR, O(weight_cache_max), "SIZE", "its size limit as for txt2img (default 32G)", NULL, 0},
    {"cpu-time", 0, CLI_FLAG, O(cpu_time), NULL, "time phases by process CPU seconds / threads (stable on a shared\n"
                                                  "machine; run with OMP_WAIT_POLICY=passive)", NULL, 0},
    {"profile", 0, CLI_FLAG, O(profile), NULL, "add a per-op table (the warm-up and one profiled run after the timed ones)", NULL, 0},
    {"json", 0, CLI_FLAG, O(json), NULL, "one JSON object on stdout (runs, medians, per op and backend); the\n"
                                          "tables go to stderr", NULL, 0},
    {NULL, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef O

static void usage(unsigned mode, FILE *f) {
    (void)mode;
    fprintf(f, "usage: sdrt bench --model MODEL [options]\n"
               "  Times one CLIP encode (2 prompts), one UNet evaluation (batch 2 = one CFG step) and one\n"
               "  VAE decode per backend, side by side: median seconds; --profile adds a per-op table\n"
               "  (seconds, GFLOP/s and minor page faults per backend, of the warm-up and of one profiled\n"
               "  run after the timed ones).\n");
    cli_usage(f, options, 0);
}

int sd_cmd_bench(int argc, char **argv) {
    struct bench_opts bo = {.comps = "clip,unet,vae", .backends = "cpu", .width = 512, .height = 512, .runs = 3, .batch = 2};
    int prc = cli_parse("bench", options, 0, argc, argv, &bo, usage, NULL, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    const char *model = bo.model, *config = bo.config, *comps = bo.comps, *backends = bo.backends;
    int width = bo.width, height = bo.height, runs = bo.runs, profile = bo.profile, batch = bo.batch;
    if (!model) { fprintf(stderr, "sdrt: bench: --model is required\n"); return 2; }
    if (width % 8 || height % 8 || width < 8 || height < 8) {
        fprintf(stderr, "sdrt: bench: width and height must be positive multiples of 8 (got %dx%d)\n", width, height);
        return 2;
    }
    if (batch < 1 || batch > 64) { fprintf(stderr, "sdrt: bench: --batch must be 1..64 (got %d)\n", batch); return 2; }
    FILE *txt = bo.json ? stderr : stdout;
    struct sd_ctx ctx = {0};
    struct cli_log log = {0};
    struct sd_runtime_opts ro;
    sd_runtime_opts_init(&ro);
    if (cli_runtime_opts(&ctx, &ro, &log) || (bo.device && cli_device_index(&ctx, "--device", bo.device, &ro.cl_device)) ||
        cli_precision(&ctx, &ro, bo.precision) || cli_weight_cache(&ro, bo.weight_cache) ||
        cli_weight_cache_max(&ctx, &ro, bo.weight_cache_max)) {
        fprintf(stderr, "sdrt: %s\n", ctx.msg);
        return 2;
    }
    if (bo.threads > 0) ro.threads = bo.threads;
    if (bo.low_memory) ro.conv = SD_CONV_POLICY_LOWMEM;
    if (bo.cpu_time) cpu_clock_threads = bo.threads > 0 ? bo.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (runs < 1 || runs > 32) runs = runs < 1 ? 1 : 32;
    struct sd_model *m = NULL;
    double t0 = sd_time_s(), load_s = 0;
    if (sd_model_load(&ctx, model, config, &m) || sd_model_load_weights(m)) {
        fprintf(stderr, "sdrt: %s\n", ctx.msg);
        sd_model_free(m);
        return 1;
    }
    load_s = sd_time_s() - t0;
    fprintf(txt, "model %s (%s), loaded in %.2f s; %dx%d, UNet batch %d, %d runs (median)\n", model, sd_family_name(m->family),
            load_s, width, height, batch, runs);
    fprintf(txt, "cpu: precision %s -> %s (oneDNN ISA %s)%s\n", sd_precision_name(ro.precision),
           sd_cpu_precision_bf16(ro.precision) ? "bf16" : "f32", sd_cpu_isa(),
           cpu_clock_threads ? "; times are process CPU seconds / threads" : "");
    const int f = sd_vae_downscale(&m->vae), h = height / f, w = width / f, L = m->clip.max_pos;
    const int lat = m->unet.in_channels, ctxd = m->unet.context_dim, lc = m->unet.out_channels;
    if (width % f || height % f) {
        fprintf(stderr, "sdrt bench: width and height must be multiples of %d for this model's VAE (got %dx%d)\n", f, width,
                height);
        sd_model_free(m);
        return 2;
    }
    float *x = malloc(sizeof(float) * (size_t)batch * lat * h * w), *out = malloc(sizeof(float) * (size_t)batch * lc * h * w);
    float *ctxv = malloc(sizeof(float) * (size_t)batch * L * ctxd), *t = malloc(sizeof(float) * (size_t)batch);
    float *img = malloc(sizeof(float) * 3 * (size_t)height * width), *z = malloc(sizeof(float) * lc * (size_t)h * w);
    const bool xl = sd_family_is_xl(m->family);
    const int hid = m->te ? m->clip.hidden : 1, hid2 = xl && m->te2 ? m->clip2.hidden + m->clip2.projection : 1;
    float *emb = malloc(sizeof(float) * 2 * (size_t)L * (hid > hid2 ? hid : hid2));
    /* SDXL: pooled text and time ids for the UNet's add_embedding */
    const int pw = xl ? m->unet.add_in - m->unet.add_n_ids * m->unet.add_time_dim : 0, ni = xl ? m->unet.add_n_ids : 0;
    float *pooled = xl ? calloc((size_t)batch * (pw > 0 ? pw : 1), sizeof(float)) : NULL;
    float *tids = xl ? malloc(sizeof(float) * (size_t)batch * (ni > 0 ? ni : 1)) : NULL;
    int32_t eos[2];
    for (int i = 0; xl && tids && i < batch * ni; i++) tids[i] = i % ni == 4 && ni == 5 ? 6.0f : (i % ni == 2 || i % ni == 3) ? 0 : (float)(i % 2 ? width : height);
    int32_t *ids = malloc(sizeof(int32_t) * 2 * (size_t)L);
    int rc = 0;
    if (!x || !out || !ctxv || !t || !img || !z || !emb || !ids || (xl && (!pooled || !tids))) {
        fprintf(stderr, "sdrt: out of memory\n");
        rc = 1;
        goto done;
    }
    fill(x, (size_t)batch * lat * h * w, 1);
    fill(ctxv, (size_t)batch * L * ctxd, 2);
    fill(z, (size_t)lc * h * w, 3);
    for (int i = 0; i < batch; i++) t[i] = 981.0f;
    for (int i = 0; i < 2 * L; i++) ids[i] = i % L == 0 ? 49406 : (i % L < 8 ? 320 + i % L : 49407);
    sd_clip_eos_rows(ids, 2, L, eos);

    char list[256];
    snprintf(list, sizeof list, "%s", backends);
    const char *names[MAXB];
    double med[MAXB][3] = {{0}}, arena[MAXB] = {0};
    int have[MAXB][3] = {{0}};
    struct phase all[MAXB][3];
    struct sd_op_profile prof[MAXB][SD_OP_COUNT], first_run[MAXB][SD_OP_COUNT];
    /* Per backend of each runtime (an `auto` runtime has a device and the CPU). */
    static struct sd_op_profile prof_be[MAXB][MAXRT][SD_OP_COUNT];
    char be_names[MAXB][MAXRT][32];
    const char *cl_compute[MAXB] = {0}; /* what an OpenCL device computes in (sd_cl_precision_of) */
    int n_be[MAXB] = {0};
    memset(prof, 0, sizeof prof);
    memset(first_run, 0, sizeof first_run);
    memset(prof_be, 0, sizeof prof_be);
    int nb = 0;
    for (char *save = NULL, *bn = strtok_r(list, ",", &save); bn && nb < MAXB; bn = strtok_r(NULL, ",", &save)) {
        int kind = sd_backend_kind_parse(bn);
        if (kind < 0) { fprintf(stderr, "sdrt: bench: unknown backend '%s' (cpu, opencl, auto)\n", bn); rc = 2; goto done; }
        ro.backend = (enum sd_backend_kind)kind;
        struct sd_runtime *rt = sd_runtime_new(&ctx, &ro);
        if (!rt) { fprintf(stderr, "sdrt: %s\n", ctx.msg); rc = 1; goto done; }
        for (int b = 0; b < sd_runtime_n_backends(rt); b++) {
            struct sd_backend *be = sd_runtime_backend(rt, b);
            if (!sd_cl_is_backend(be)) continue;
            cl_compute[nb] = sd_cl_precision_of(be);
            fprintf(txt, "opencl: %s, precision %s -> %s\n", sd_cl_device_of(be)->name, sd_precision_name(ro.precision),
                    cl_compute[nb]);
        }
        struct phase ph[3] = {{"clip", 0, {0}, 0, 0}, {"unet", 0, {0}, 0, 0}, {"vae_decode", 0, {0}, 0, 0}};
        /* r = 0: warm-up; 1..runs: timed; runs + 1 (with --profile): the profiled run. */
        const int last = runs + (profile ? 1 : 0);
        for (int r = 0; r <= last && rc == 0; r++) {
            const int prof_run = profile && r == last;
            sd_runtime_set_profile(rt, prof_run || (profile && r == 0)); /* the warm-up too: first-run costs */
            double s;
            if (strstr(comps, "clip") && (m->te || m->te2)) { /* SDXL: both encoders */
                s = bench_clock();
                if (xl) {
                    if ((m->te && sd_run_clip_xl(rt, m, 1, ids, NULL, 2, emb)) || (m->te2 && sd_run_clip_xl(rt, m, 2, ids, eos, 2, emb)))
                        rc = 1;
                } else if (sd_run_clip(rt, m, ids, 2, 0, emb)) {
                    rc = 1;
                }
                if (r > 0 && !prof_run) ph[0].t[ph[0].n++] = bench_clock() - s;
                else if (r == 0) ph[0].first = bench_clock() - s;
            }
            if (!rc && strstr(comps, "unet")) {
                s = bench_clock();
                if (sd_run_unet_xl(rt, m, x, batch, h, w, t, ctxv, L, pooled, tids, out)) rc = 1;
                if (r > 0 && !prof_run) ph[1].t[ph[1].n++] = bench_clock() - s;
                else if (r == 0) ph[1].first = bench_clock() - s;
            }
            if (!rc && strstr(comps, "vae") && m->va) {
                s = bench_clock();
                if (sd_run_vae_decode(rt, m, z, 1, h, w, img)) rc = 1;
                if (r > 0 && !prof_run) ph[2].t[ph[2].n++] = bench_clock() - s;
                else if (r == 0) ph[2].first = bench_clock() - s;
            }
            if (r == 0) {
                arena[nb] = sd_runtime_arena_bytes(rt) / 1048576.0;
                fprintf(txt, "[%s] warm-up done; activation arena %.1f MiB\n", bn, arena[nb]);
            }
            for (int b = 0; profile && r == 0 && b < sd_runtime_n_backends(rt); b++)
                for (int op = 0; op < SD_OP_COUNT; op++) {
                    const struct sd_op_profile *q = sd_runtime_profile(rt, b, (enum sd_op)op);
                    first_run[nb][op].seconds += q->seconds, first_run[nb][op].faults += q->faults;
                    first_run[nb][op].calls += q->calls;
                }
        }
        if (rc) { fprintf(stderr, "sdrt: %s\n", ctx.msg); sd_runtime_free(rt); goto done; }
        names[nb] = bn;
        memcpy(all[nb], ph, sizeof ph);
        for (int p = 0; p < 3; p++)
            if (ph[p].n) med[nb][p] = median(&ph[p]), have[nb][p] = 1;
        /* Per op, summed over the runtime's backends (an op the device refused
         * shows up under its CPU fallback; --profile per backend below). */
        for (int b = 0; profile && b < sd_runtime_n_backends(rt); b++)
            for (int op = 0; op < SD_OP_COUNT; op++) {
                const struct sd_op_profile *q = sd_runtime_profile(rt, b, (enum sd_op)op);
                prof[nb][op].seconds += q->seconds, prof[nb][op].flops += q->flops, prof[nb][op].calls += q->calls;
                prof[nb][op].faults += q->faults;
                if (b < MAXRT) prof_be[nb][b][op] = *q;
            }
        for (int b = 0; profile && b < sd_runtime_n_backends(rt) && b < MAXRT; b++, n_be[nb]++)
            snprintf(be_names[nb][b], sizeof be_names[nb][b], "%s", sd_runtime_backend_name(rt, b));
        if (profile && sd_runtime_n_backends(rt) > 1) {
            fprintf(txt, "[%s] per backend:\n", bn);
            sd_runtime_profile_print(rt, txt);
        }
        sd_runtime_free(rt);
        nb++;
    }
    /* Side by side: phases (median seconds), then ops (seconds, GFLOP/s). */
    fprintf(txt, "\n%-12s", "phase");
    for (int b = 0; b < nb; b++) fprintf(txt, " %14s", names[b]);
    fprintf(txt, "\n");
    static const char *pn[3] = {"clip", "unet", "vae_decode"};
    for (int p = 0; p < 3; p++) {
        fprintf(txt, "%-12s", pn[p]);
        for (int b = 0; b < nb; b++)
            if (have[b][p]) fprintf(txt, " %12.3f s", med[b][p]);
            else fprintf(txt, " %14s", "-");
        fprintf(txt, "\n");
        int any = 0;
        for (int b = 0; b < nb; b++) any |= have[b][p];
        if (!any) continue;
        fprintf(txt, "%-12s", " first run"); /* the warm-up: graph build, primitives, weight copies */
        for (int b = 0; b < nb; b++)
            if (have[b][p]) fprintf(txt, " %12.3f s", all[b][p].first);
            else fprintf(txt, " %14s", "-");
        fprintf(txt, "\n");
    }
    if (profile) {
        /* First run (the warm-up: primitive creation, weight copies, fresh
         * buffers) beside a steady one; faults = minor page faults. */
        fprintf(txt, "\n%-20s", "op (one run each)");
        for (int b = 0; b < nb; b++) fprintf(txt, " %10s 1st s %9s %12s s %8s %8s", names[b], "1st flt", names[b], "GFLOP/s", "faults");
        fprintf(txt, "\n");
        for (int op = 0; op < SD_OP_COUNT; op++) {
            int any = 0;
            for (int b = 0; b < nb; b++) any |= prof[b][op].calls > 0;
            if (!any) continue;
            fprintf(txt, "%-20s", sd_op_name((enum sd_op)op));
            for (int b = 0; b < nb; b++) {
                const struct sd_op_profile *q = &prof[b][op];
                fprintf(txt, " %16.3f %9ld %14.3f %8.1f %8ld", first_run[b][op].seconds, first_run[b][op].faults, q->seconds,
                        q->seconds > 0 ? q->flops / q->seconds * 1e-9 : 0.0, q->faults);
            }
            fprintf(txt, "\n");
        }
    }
    if (bo.json) {
        printf("{\"model\": ");
        cli_json_str(stdout, model);
        printf(", \"family\": \"%s\", \"width\": %d, \"height\": %d, \"unet_batch\": %d, \"runs\": %d, \"threads\": %d, "
               "\"precision\": \"%s\", \"cpu_compute\": \"%s\", \"isa\": ", sd_family_name(m->family), width, height, batch,
               runs, bo.threads > 0 ? bo.threads : (int)sysconf(_SC_NPROCESSORS_ONLN), sd_precision_name(ro.precision), sd_cpu_precision_bf16(ro.precision) ? "bf16" : "f32");
        cli_json_str(stdout, sd_cpu_isa());
        printf(", \"low_memory\": %s, \"clock\": \"%s\", \"load_s\": %.4f, \"backends\": [", bo.low_memory ? "true" : "false",
               cpu_clock_threads ? "process_cpu_per_thread" : "wall", load_s);
        for (int b = 0; b < nb; b++) {
            printf("%s\n  {\"name\": ", b ? "," : "");
            cli_json_str(stdout, names[b]);
            printf(", \"opencl_compute\": ");
            if (cl_compute[b]) cli_json_str(stdout, cl_compute[b]);
            else printf("null");
            printf(", \"arena_mib\": %.1f, \"phases\": {", arena[b]);
            int first = 1;
            for (int p = 0; p < 3; p++) {
                if (!have[b][p]) continue;
                printf("%s\"%s\": {\"median_s\": %.5f, \"runs_s\": [", first ? "" : ", ", all[b][p].name, med[b][p]);
                for (int k = 0; k < all[b][p].n; k++) printf("%s%.5f", k ? ", " : "", all[b][p].t[k]);
                printf("], \"first_s\": %.5f}", all[b][p].first);
                first = 0;
            }
            printf("}, \"ops\": [");
            for (int op = 0, k = 0; profile && op < SD_OP_COUNT; op++) {
                const struct sd_op_profile *q = &prof[b][op];
                if (!q->calls) continue;
                printf("%s\n    {\"op\": \"%s\", \"calls\": %d, \"seconds\": %.5f, \"gflops\": %.1f}", k++ ? "," : "",
                       sd_op_name((enum sd_op)op), q->calls, q->seconds, q->seconds > 0 ? q->flops / q->seconds * 1e-9 : 0.0);
            }
            printf("], \"by_backend\": [");
            for (int e = 0; e < n_be[b]; e++) {
                printf("%s\n    {\"backend\": ", e ? "," : "");
                cli_json_str(stdout, be_names[b][e]);
                printf(", \"ops\": [");
                for (int op = 0, k = 0; op < SD_OP_COUNT; op++) {
                    const struct sd_op_profile *q = &prof_be[b][e][op];
                    if (!q->calls) continue;
                    printf("%s{\"op\": \"%s\", \"calls\": %d, \"seconds\": %.5f}", k++ ? ", " : "", sd_op_name((enum sd_op)op),
                           q->calls, q->seconds);
                }
                printf("]}");
            }
            printf("]}");
        }
        printf("\n]}\n");
    }
done:
    free(x); free(out); free(ctxv); free(t); free(img); free(z); free(emb); free(ids); free(pooled); free(tids);
    sd_model_free(m);
    return rc;
}
