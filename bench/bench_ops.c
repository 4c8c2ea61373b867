/* bench_ops.c - op benchmark: median time and GFLOP/s of SD's heaviest ops
 * on each backend, against the machine's sgemm peak measured in the same run.
 *
 *   build/bench/bench_ops            the table (what `make bench` runs)
 *   build/bench/bench_ops --conv     every conv2d algorithm on SD's conv shapes
 *                                    (the figures behind op_conv2d.c's rule)
 *   build/bench/bench_ops --linear   linear: matmul primitive vs dnnl_sgemm + bias
 *   -s TEXT                          --conv: only the shapes whose text contains TEXT
 *   -r N                             timed runs per case (default: adaptive, 3..15)
 *   --cpu-time                       time by process CPU seconds / threads (see clock_s)
 *   --precision f32|bf16|auto        the CPU backend's GEMM precision (default f32)
 *
 * The table runs each case as a 1-node graph through the scheduler, one
 * column per backend in `backends[]` (only "cpu" for now; an OpenCL column
 * is one more entry: its scheduler gets [opencl, cpu], and a case whose
 * node the scheduler does not place on it prints "-"). Each case is
 * computed once to warm up (primitive creation, weight reorders, scratch
 * growth are not timed), then timed N times; the median is printed, with
 * the GFLOP/s it means and its percentage of dnnl_sgemm(1024^3) measured at
 * start-up on all threads, best of 15 ("peak%"; Winograd convs and
 * attention kernels that skip work can exceed 100%). The machine is shared: repeat and
 * compare medians. --conv and --linear call the CPU op functions directly.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_dnnl.h"

/* ---- backends (table columns) ---- */

struct bench_backend {
    const char *name;
    /* Returns a new backend, or NULL (with ctx set) when unavailable. */
    struct sd_backend *(*new)(struct sd_ctx *ctx);
};

static int precision = SD_PRECISION_F32; /* --precision auto|f32|bf16 */

static struct sd_backend *cpu_new(struct sd_ctx *ctx) {
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.precision = (enum sd_precision)precision;
    return sd_cpu_backend_new(ctx, &o);
}

static const struct bench_backend backends[] = {
    {"cpu", cpu_new},
    /* {"opencl", opencl_new}, */
};
#define N_BACKENDS (int)(sizeof backends / sizeof backends[0])

/* ---- data ---- */

static void fill(float *p, int64_t n, uint64_t seed, float scale) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = scale * (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

/* A tensor with its own data (weights; nodes of the direct-call modes). */
static struct sd_tensor *tensor(int n, const int64_t *dims, uint64_t seed, float scale) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, n, dims);
    int64_t ne = sd_tensor_nelements(t);
    t->data = sd_malloc_aligned((size_t)ne * sizeof(float));
    fill(t->data, ne, seed, scale);
    t->index = -1;
    return t;
}

static void tensor_free(struct sd_tensor *t) {
    if (!t) return;
    sd_free_aligned(t->data);
    free(t);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *ts, int n) {
    qsort(ts, (size_t)n, sizeof *ts, cmp_double);
    return n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]);
}

static int fixed_runs;        /* -r N; 0 = adaptive */
static int use_cpu_time;      /* --cpu-time: process CPU seconds / threads instead of wall seconds */

/* The clock of every timing here: wall time, or with --cpu-time the
 * process's CPU time divided by the thread count: on a machine shared with
 * other jobs that is what the work would take if we had the cores to
 * ourselves (run it with OMP_WAIT_POLICY=passive, else threads spinning at
 * barriers count too). It cannot see load imbalance, so check rankings it
 * gives against wall-time runs. */
static double clock_s(void) {
    if (!use_cpu_time) return sd_time_s();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ((double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec) / omp_get_max_threads();
}
static const char *only;      /* --conv -s SUBSTR: only shapes whose text contains it */
static double target_s = 2.0; /* adaptive: the timed runs fill about this long (3..15 runs) */

static int runs_for(double first) {
    if (fixed_runs > 0) return fixed_runs < 64 ? fixed_runs : 64;
    int n = (int)(target_s / (first > 1e-6 ? first : 1e-6));
    return n < 3 ? 3 : n > 15 ? 15 : n;
}

static double sgemm_peak(void) {
    const int64_t n = 1024;
    float *a = sd_malloc_aligned(n * n * sizeof *a), *b = sd_malloc_aligned(n * n * sizeof *b),
          *c = sd_malloc_aligned(n * n * sizeof *c);
    fill(a, n * n, 1, 1.0f);
    fill(b, n * n, 2, 1.0f);
    double ts[15];
    for (int i = 0; i < 17; i++) {
        double t0 = clock_s();
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (i >= 2) ts[i - 2] = clock_s() - t0;
    }
    sd_free_aligned(a), sd_free_aligned(b), sd_free_aligned(c);
    qsort(ts, 15, sizeof *ts, cmp_double);
    return 2.0 * (double)(n * n * n) / ts[0] * 1e-9; /* best of 15: a peak, and robust to neighbours */
}

/* ---- the table: 1-node graphs through the scheduler ---- */

enum case_kind { CASE_CONV, CASE_LINEAR, CASE_ATTENTION };

struct bench_case {
    const char *name;
    enum case_kind kind;
    int64_t d[8]; /* conv: N,Ci,H,W,Co,k,stride,pad; linear: rows,in,out; attention: B,Lq,Lk,heads,dhead */
    struct sd_tensor *w[2]; /* weights (conv, linear), shared by every backend's graph */
    double flop;
    char shape[64];
};

static void case_init(struct bench_case *c) {
    const int64_t *d = c->d;
    switch (c->kind) {
    case CASE_CONV: {
        int64_t OH = (d[2] + 2 * d[7] - d[5]) / d[6] + 1, OW = (d[3] + 2 * d[7] - d[5]) / d[6] + 1;
        c->w[0] = tensor(4, (int64_t[]){d[4], d[1], d[5], d[5]}, 2, 0.05f);
        c->w[1] = tensor(1, (int64_t[]){d[4]}, 3, 1.0f);
        c->flop = 2.0 * (double)(d[0] * d[4] * OH * OW) * (double)(d[1] * d[5] * d[5]);
        snprintf(c->shape, sizeof c->shape, "[%lld,%lld,%lld,%lld]->%lld k%lld s%lld", (long long)d[0],
                 (long long)d[1], (long long)d[2], (long long)d[3], (long long)d[4], (long long)d[5], (long long)d[6]);
        break;
    }
    case CASE_LINEAR:
        c->w[0] = tensor(2, (int64_t[]){d[2], d[1]}, 5, 0.05f);
        c->w[1] = tensor(1, (int64_t[]){d[2]}, 6, 1.0f);
        c->flop = 2.0 * (double)d[0] * (double)d[1] * (double)d[2];
        snprintf(c->shape, sizeof c->shape, "x[%lld,%lld] w[%lld,%lld]", (long long)d[0], (long long)d[1],
                 (long long)d[2], (long long)d[1]);
        break;
    case CASE_ATTENTION:
        c->flop = 4.0 * (double)d[0] * (double)d[3] * (double)d[1] * (double)d[2] * (double)d[4]; /* q·kᵀ, p·v */
        snprintf(c->shape, sizeof c->shape, "B%lld Lq%lld Lk%lld %lldx%lld", (long long)d[0], (long long)d[1],
                 (long long)d[2], (long long)d[3], (long long)d[4]);
        break;
    }
    for (int i = 0; i < 2; i++) /* model-owned constants for the graphs (sd_graph_weight) */
        if (c->w[i]) c->w[i]->flags |= SD_TF_WEIGHT;
}

/* Builds the case's graph; returns the node. */
static struct sd_tensor *case_build(struct sd_graph *g, struct bench_case *c) {
    const int64_t *d = c->d;
    struct sd_tensor *y = NULL;
    switch (c->kind) {
    case CASE_CONV:
        y = sd_conv2d(g, sd_graph_input(g, "x", SD_F32, 4, (int64_t[]){d[0], d[1], d[2], d[3]}), c->w[0], c->w[1],
                      (int)d[6], (int)d[7]);
        break;
    case CASE_LINEAR:
        y = sd_linear(g, sd_graph_input(g, "x", SD_F32, 2, (int64_t[]){d[0], d[1]}), c->w[0], c->w[1]);
        break;
    case CASE_ATTENTION: {
        int64_t C = d[3] * d[4];
        struct sd_tensor *q = sd_graph_input(g, "q", SD_F32, 3, (int64_t[]){d[0], d[1], C});
        struct sd_tensor *k = sd_graph_input(g, "k", SD_F32, 3, (int64_t[]){d[0], d[2], C});
        struct sd_tensor *v = sd_graph_input(g, "v", SD_F32, 3, (int64_t[]){d[0], d[2], C});
        y = sd_attention(g, q, k, v, (int)d[3], 1.0f / sqrtf((float)d[4]), 0);
        break;
    }
    }
    if (y) sd_graph_output(g, y);
    return y;
}

/* Times one case on backends[b] (host = the CPU backend for the scheduler).
 * Returns the median seconds, 0 when the backend does not run the node, or
 * -1 on an error (printed). */
static double time_case(struct bench_case *c, struct sd_backend *be, struct sd_backend *host, struct sd_ctx *ctx) {
    struct sd_backend *list[2] = {be, host};
    struct sd_graph *g = sd_graph_new(ctx);
    struct sd_sched *s = NULL;
    double result = -1;
    struct sd_tensor *y = case_build(g, c);
    if (!y || sd_graph_plan(g) != SD_OK) goto out;
    s = sd_sched_new(ctx, list, be == host ? 1 : 2);
    if (!s || sd_sched_alloc(s, g) != SD_OK) goto out;
    if (g->backend[y->index] != 0) { /* placed on the host instead: not this backend's number */
        result = 0;
        goto out;
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->flags & SD_TF_INPUT)
            fill(g->nodes[i]->data, sd_tensor_nelements(g->nodes[i]), 10 + (uint64_t)i, 1.0f);
    double t0 = clock_s();
    if (sd_sched_compute(s, g) != SD_OK) goto out; /* warm-up */
    double ts[64];
    t0 = clock_s();
    if (sd_sched_compute(s, g) != SD_OK) goto out;
    ts[0] = clock_s() - t0;
    int n = runs_for(ts[0]);
    for (int i = 1; i < n; i++) {
        t0 = clock_s();
        if (sd_sched_compute(s, g) != SD_OK) goto out;
        ts[i] = clock_s() - t0;
    }
    result = median(ts, n);
out:
    if (result < 0) fprintf(stderr, "%s %s: %s\n", sd_backend_name(be), c->name, ctx->msg);
    sd_ctx_clear(ctx);
    sd_sched_free(s);
    sd_graph_free(g);
    return result;
}

static void run_table(struct sd_backend **bes, struct sd_backend *host, struct sd_ctx *ctx, double peak) {
    struct bench_case cases[] = {
        {.name = "conv2d 3x3 320", .kind = CASE_CONV, .d = {2, 320, 64, 64, 320, 3, 1, 1}},
        {.name = "conv2d 3x3 512 vae", .kind = CASE_CONV, .d = {1, 512, 256, 256, 512, 3, 1, 1}},
        {.name = "linear 320->1280", .kind = CASE_LINEAR, .d = {4096, 320, 1280}},
        {.name = "attention self", .kind = CASE_ATTENTION, .d = {2, 4096, 4096, 8, 40}},
        {.name = "attention cross", .kind = CASE_ATTENTION, .d = {2, 4096, 77, 8, 40}},
    };
    printf("%-20s %-28s %7s", "case", "shape", "GFLOP");
    for (int b = 0; b < N_BACKENDS; b++) printf(" | %-9s %9s %6s", backends[b].name, "GFLOP/s", "peak%");
    printf("\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bench_case *c = &cases[i];
        case_init(c);
        printf("%-20s %-28s %7.2f", c->name, c->shape, c->flop * 1e-9);
        fflush(stdout);
        for (int b = 0; b < N_BACKENDS; b++) {
            double t = bes[b] ? time_case(c, bes[b], host, ctx) : 0;
            if (t <= 0) printf(" | %-9s %9s %6s", t < 0 ? "error" : "-", "-", "-");
            else {
                double gf = c->flop / t * 1e-9;
                printf(" | %7.1fms %9.1f %5.0f%%", t * 1e3, gf, 100.0 * gf / peak);
            }
            fflush(stdout);
        }
        printf("\n");
        if (sd_cpu_of(host)->dnnl->weight_bytes)
            printf("%-20s cpu weights cache holds %.1f MB of reordered copies\n", "",
                   (double)sd_cpu_of(host)->dnnl->weight_bytes / 1e6);
        /* The weights are freed next: drop their reordered copies. */
        sd_cpu_dnnl_weights_forget(sd_cpu_of(host));
        tensor_free(c->w[0]), tensor_free(c->w[1]);
    }
}

/* ---- --conv: every conv2d algorithm, direct op calls ---- */

static struct sd_tensor *conv_node(int64_t N, int64_t Ci, int64_t H, int64_t W, int64_t Co, int k, int s, int pad,
                                   int wino4) {
    int64_t OH = (H + 2 * pad - k) / s + 1, OW = (W + 2 * pad - k) / s + 1;
    struct sd_tensor *y = tensor(4, (int64_t[]){N, Co, OH, OW}, 0, 0.0f);
    y->op = SD_OP_CONV2D;
    y->src[0] = tensor(4, (int64_t[]){N, Ci, H, W}, 1, 1.0f);
    y->src[1] = tensor(4, (int64_t[]){Co, Ci, k, k}, 2, 0.05f);
    y->src[2] = tensor(1, (int64_t[]){Co}, 3, 1.0f);
    y->p.conv2d = (struct sd_conv2d_params){s, s, pad, pad, pad, pad, wino4};
    return y;
}

static void node_free(struct sd_tensor *y) {
    for (int i = 0; i < SD_MAX_SRC; i++) tensor_free(y->src[i]);
    tensor_free(y);
}

/* The conv shapes of SD1.5: UNet at 64x64 latents with batch 2 (CFG), VAE
 * decoder to 512x512 with batch 1. Algorithms are timed interleaved (one
 * run of each per round) and each keeps its best round, so a neighbour's
 * burst on the shared machine hits all of them alike. */
static void run_conv_algos(struct sd_cpu *cpu, double peak) {
    static const int algos[] = {SD_CONV_DIRECT, SD_CONV_WINO, SD_CONV_NCHW, SD_CONV_GEMM};
    enum { NA = sizeof algos / sizeof algos[0] };
    static const struct { int64_t N, Ci, H, W, Co; int k, s, pad; } sh[] = {
        {2, 4, 64, 64, 320, 3, 1, 1},     {2, 320, 64, 64, 320, 3, 1, 1},   {2, 320, 64, 64, 320, 3, 2, 1},
        {2, 320, 32, 32, 640, 3, 1, 1},   {2, 640, 32, 32, 640, 3, 1, 1},   {2, 640, 32, 32, 640, 3, 2, 1},
        {2, 640, 16, 16, 1280, 3, 1, 1},  {2, 1280, 16, 16, 1280, 3, 1, 1}, {2, 1280, 16, 16, 1280, 3, 2, 1},
        {2, 1280, 8, 8, 1280, 3, 1, 1},   {2, 2560, 8, 8, 1280, 3, 1, 1},   {2, 2560, 16, 16, 1280, 3, 1, 1},
        {2, 1920, 32, 32, 640, 3, 1, 1},  {2, 960, 64, 64, 320, 3, 1, 1},   {2, 320, 64, 64, 4, 3, 1, 1},
        {2, 320, 64, 64, 320, 1, 1, 0},   {2, 640, 32, 32, 640, 1, 1, 0},   {2, 1280, 16, 16, 1280, 1, 1, 0},
        {2, 960, 64, 64, 320, 1, 1, 0},   {2, 2560, 8, 8, 1280, 1, 1, 0},   {1, 4, 64, 64, 512, 3, 1, 1},
        {1, 512, 64, 64, 512, 3, 1, 1},   {1, 512, 128, 128, 512, 3, 1, 1}, {1, 512, 256, 256, 256, 3, 1, 1},
        {1, 256, 256, 256, 256, 3, 1, 1}, {1, 128, 256, 256, 128, 3, 1, 1}, {1, 128, 256, 256, 3, 3, 1, 1},
        {1, 512, 256, 256, 256, 1, 1, 0}, {1, 512, 64, 64, 512, 3, 2, 1},
    };
    printf("conv2d algorithms: GFLOP/s of the best of 3..7 interleaved rounds; sgemm peak %.1f;\n"
           "wino counted at direct-conv FLOPs; * = fastest; n/a = oneDNN has no such kernel for the shape\n",
           peak);
    printf("%-34s %7s", "shape", "GFLOP");
    for (int a = 0; a < NA; a++) printf(" %9s", sd_conv_algo_name(algos[a]));
    printf(" %14s  %s\n", "auto:picks", "impl(direct)");
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        /* wino4 as the models' graphs set it: the UNet's (batch 2), not the VAE's */
        struct sd_tensor *y =
            conv_node(sh[i].N, sh[i].Ci, sh[i].H, sh[i].W, sh[i].Co, sh[i].k, sh[i].s, sh[i].pad, sh[i].N == 2);
        double flop = 2.0 * (double)sd_tensor_nelements(y) * (double)(sh[i].Ci * sh[i].k * sh[i].k);
        char shape[64];
        snprintf(shape, sizeof shape, "[%lld,%lld,%lld,%lld]->%lld k%d s%d", (long long)sh[i].N, (long long)sh[i].Ci,
                 (long long)sh[i].H, (long long)sh[i].W, (long long)sh[i].Co, sh[i].k, sh[i].s);
        if (only && !strstr(shape, only)) {
            node_free(y);
            continue;
        }
        printf("%-34s %7.2f", shape, flop * 1e-9);
        fflush(stdout);
        double tmin[NA + 1];
        int ok[NA + 1];
        char impl[64] = "", picked[16] = "";
        for (int a = 0; a <= NA; a++) { /* warm-up; see what was built */
            int algo = a < NA ? algos[a] : SD_CONV_AUTO;
            sd_cpu_dnnl_set_conv_algo(cpu, algo);
            tmin[a] = 1e30;
            ok[a] = sd_cpu_op_conv2d(cpu, y) == SD_OK;
            const struct sd_dnnl_prim *e = cpu->dnnl->last;
            if (ok[a] && a < NA) ok[a] = e && e->algo == algo; /* fell back (wino -> direct) */
            if (algo == SD_CONV_DIRECT && e) snprintf(impl, sizeof impl, "%s", e->impl);
            if (a == NA && e) snprintf(picked, sizeof picked, "%s", sd_conv_algo_name(e->algo));
            sd_ctx_clear(cpu->ctx);
        }
        double spent = 0;
        int rounds = fixed_runs > 0 ? fixed_runs : 7;
        for (int r = 0; r < rounds && (fixed_runs > 0 || r < 3 || spent < 8.0); r++)
            for (int a = 0; a <= NA; a++) {
                if (!ok[a]) continue;
                sd_cpu_dnnl_set_conv_algo(cpu, a < NA ? algos[a] : SD_CONV_AUTO);
                double t0 = clock_s();
                sd_cpu_op_conv2d(cpu, y);
                double t = clock_s() - t0;
                spent += t;
                if (t < tmin[a]) tmin[a] = t;
            }
        int best = -1;
        for (int a = 0; a < NA; a++)
            if (ok[a] && (best < 0 || tmin[a] < tmin[best])) best = a;
        for (int a = 0; a < NA; a++) {
            if (!ok[a]) printf(" %9s", "n/a");
            else printf(" %8.1f%c", flop / tmin[a] * 1e-9, a == best ? '*' : ' ');
        }
        printf(" %7.1f:%-6s  %s\n", ok[NA] ? flop / tmin[NA] * 1e-9 : 0.0, picked, impl);
        fflush(stdout);
        sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_AUTO);
        sd_cpu_dnnl_weights_forget(cpu); /* the weights are freed next */
        node_free(y);
    }
}

/* ---- --linear: the op (matmul primitive, packed weights, fused bias)
 * against dnnl_sgemm('N','T') plus a bias pass, at SD's Linear shapes ---- */

static void run_linear_algos(struct sd_cpu *cpu, double peak) {
    static const struct { int64_t rows, in, out; } sh[] = {
        {8192, 320, 320},  {8192, 320, 2560}, {8192, 1280, 320}, {4096, 320, 1280}, {2048, 640, 640},
        {512, 1280, 1280}, {154, 768, 320},   {154, 768, 1280},  {154, 768, 3072},  {154, 3072, 768},
        {2, 320, 1280},    {2, 1280, 1280},
    };
    printf("linear: GFLOP/s of the best of 3..15 interleaved rounds; sgemm peak %.1f\n", peak);
    printf("%-28s %7s %11s %11s  %s\n", "shape", "GFLOP", "op(matmul)", "sgemm+bias", "impl");
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        const int64_t R = sh[i].rows, I = sh[i].in, O = sh[i].out;
        struct sd_tensor *y = tensor(2, (int64_t[]){R, O}, 0, 0.0f);
        y->op = SD_OP_LINEAR;
        y->src[0] = tensor(2, (int64_t[]){R, I}, 4, 1.0f);
        y->src[1] = tensor(2, (int64_t[]){O, I}, 5, 0.05f);
        y->src[2] = tensor(1, (int64_t[]){O}, 6, 1.0f);
        const float *x = y->src[0]->data, *w = y->src[1]->data, *b = y->src[2]->data;
        float *out = y->data;
        double flop = 2.0 * (double)(R * I * O), t_op = 1e30, t_gemm = 1e30, spent = 0;
        int rc = sd_cpu_op_linear(cpu, y);
        const char *impl = rc == SD_OK && cpu->dnnl->last ? cpu->dnnl->last->impl : "error";
        for (int r = 0; rc == SD_OK && r < 15 && (r < 3 || spent < 4.0); r++) {
            double t0 = clock_s();
            sd_cpu_op_linear(cpu, y);
            double t1 = clock_s();
            dnnl_sgemm('N', 'T', R, O, I, 1.0f, x, I, w, I, 0.0f, out, O);
#pragma omp parallel for
            for (int64_t rr = 0; rr < R; rr++)
                for (int64_t o = 0; o < O; o++) out[rr * O + o] += b[o];
            double t2 = clock_s();
            if (r > 0) { /* round 0 warms sgemm up */
                t_op = t1 - t0 < t_op ? t1 - t0 : t_op;
                t_gemm = t2 - t1 < t_gemm ? t2 - t1 : t_gemm;
            }
            spent += t2 - t0;
        }
        char shape[64];
        snprintf(shape, sizeof shape, "x[%lld,%lld] w[%lld,%lld]", (long long)R, (long long)I, (long long)O,
                 (long long)I);
        printf("%-28s %7.3f %11.1f %11.1f  %s\n", shape, flop * 1e-9, flop / t_op * 1e-9, flop / t_gemm * 1e-9, impl);
        sd_ctx_clear(cpu->ctx);
        sd_cpu_dnnl_weights_forget(cpu);
        node_free(y);
    }
}

int main(int argc, char **argv) {
    int mode = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--conv") == 0) mode = 1;
        else if (strcmp(argv[i], "--linear") == 0) mode = 2;
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) fixed_runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--cpu-time") == 0) use_cpu_time = 1;
        else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc && sd_precision_parse(argv[i + 1]) >= 0)
            precision = sd_precision_parse(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--conv [-s shape-substring] | --linear] [-r runs] [--cpu-time] [--precision f32|bf16|auto]\n", argv[0]);
            return 2;
        }
    }
    struct sd_ctx ctx = {0};
    struct sd_backend *bes[N_BACKENDS], *host = NULL;
    for (int b = 0; b < N_BACKENDS; b++) {
        bes[b] = backends[b].new(&ctx);
        if (!bes[b]) fprintf(stderr, "backend %s unavailable: %s\n", backends[b].name, ctx.msg);
        else if (bes[b]->is_host && !host) host = bes[b];
        sd_ctx_clear(&ctx);
    }
    if (!host) {
        fprintf(stderr, "bench_ops: no CPU backend\n");
        return 1;
    }
    double peak = sgemm_peak();
    printf("bench_ops: %d threads, dnnl_sgemm 1024^3 peak %.1f GFLOP/s%s, precision %s (oneDNN ISA %s)\n",
           omp_get_max_threads(), peak, use_cpu_time ? " (cpu-time clock)" : "",
           sd_cpu_of(host)->dnnl->bf16 ? "bf16" : "f32", sd_dnnl_isa_name());
    if (mode == 1) run_conv_algos(sd_cpu_of(host), peak);
    else if (mode == 2) run_linear_algos(sd_cpu_of(host), peak);
    else run_table(bes, host, &ctx, peak);
    for (int b = 0; b < N_BACKENDS; b++) sd_backend_free(bes[b]);
    return 0;
}
