/* bench_ops.c - op benchmark: median time and GFLOP/s of SD's heaviest ops
 * on each backend, against the machine's sgemm peak measured in the same run.
 *
 *   build/bench/bench_ops            the table (what `make bench` runs)
 *   build/bench/bench_ops --conv     every conv2d algorithm on SD's conv shapes
 *                                    (the figures behind op_conv2d.c's rule)
 *   build/bench/bench_ops --linear   linear: matmul primitive vs dnnl_sgemm + bias
 *   -r N                             timed runs per case (default: adaptive, 3..15)
 *
 * Each case is run once to warm up (primitive creation, weight reorders,
 * scratch growth are not timed), then timed N times; the median is printed.
 * "peak%" is the achieved GFLOP/s over dnnl_sgemm(1024^3) measured at
 * start-up on all threads. The machine is shared: repeat and compare medians.
 *
 * Backends are columns: `backends[]` lists them (only "cpu" for now). An
 * OpenCL column is one more entry whose run() takes a node whose sources
 * are host tensors (it uploads once at warm-up, times compute plus
 * synchronise). A backend that cannot run a case prints "-".
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_dnnl.h"

/* The attention op lives on another branch until merged: weak, so this
 * bench links either way; the row prints "-" while it is absent. */
int sd_cpu_attention(struct sd_cpu *cpu, struct sd_tensor *node) __attribute__((weak));

/* ---- backends ---- */

struct bench_backend {
    const char *name;
    void *(*init)(struct sd_ctx *ctx);
    /* Returns SD_OK, SD_ERR_UNSUPPORTED (prints "-"), or an error. */
    int (*run)(void *impl, struct sd_tensor *node);
    void (*free)(void *impl);
};

static void *cpu_init(struct sd_ctx *ctx) {
    struct sd_cpu *cpu = calloc(1, sizeof *cpu);
    if (!cpu) return NULL;
    cpu->ctx = ctx;
    cpu->n_threads = omp_get_max_threads();
    if (sd_cpu_dnnl_init(cpu) != SD_OK) {
        free(cpu);
        return NULL;
    }
    return cpu;
}

static int cpu_run(void *impl, struct sd_tensor *node) {
    struct sd_cpu *cpu = impl;
    switch (node->op) {
    case SD_OP_CONV2D: return sd_cpu_conv2d(cpu, node);
    case SD_OP_LINEAR: return sd_cpu_linear(cpu, node);
    case SD_OP_MATMUL: return sd_cpu_matmul(cpu, node);
    case SD_OP_ATTENTION: return sd_cpu_attention ? sd_cpu_attention(cpu, node) : SD_ERR_UNSUPPORTED;
    default: return SD_ERR_UNSUPPORTED;
    }
}

static void cpu_free(void *impl) {
    struct sd_cpu *cpu = impl;
    if (!cpu) return;
    sd_cpu_dnnl_free(cpu);
    sd_free_aligned(cpu->scratch);
    free(cpu);
}

static const struct bench_backend backends[] = {
    {"cpu", cpu_init, cpu_run, cpu_free},
};
#define N_BACKENDS (int)(sizeof backends / sizeof backends[0])

/* ---- tensors and cases ---- */

static struct sd_tensor *tensor(int n, const int64_t *dims, uint64_t seed, float scale) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, n, dims);
    int64_t ne = sd_tensor_nelements(t);
    float *p = sd_malloc_aligned((size_t)ne * sizeof *p);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < ne; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = scale * (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    t->data = p;
    t->index = -1;
    return t;
}

static void node_free(struct sd_tensor *y) {
    if (!y) return;
    for (int i = 0; i < SD_MAX_SRC; i++)
        if (y->src[i]) {
            sd_free_aligned(y->src[i]->data);
            free(y->src[i]);
        }
    sd_free_aligned(y->data);
    free(y);
}

/* Builds a node of op `op` over freshly made sources. */
static struct sd_tensor *make_node(enum sd_op op, struct sd_tensor *out, struct sd_tensor *s0, struct sd_tensor *s1,
                                   struct sd_tensor *s2) {
    out->op = op;
    out->src[0] = s0, out->src[1] = s1, out->src[2] = s2;
    return out;
}

struct bench_case {
    char name[64], shape[96];
    double flop;
    struct sd_tensor *node;
};

static struct bench_case mk_conv(const char *name, int64_t N, int64_t Ci, int64_t H, int64_t W, int64_t Co, int k,
                                 int s, int pad) {
    struct bench_case c = {0};
    int64_t OH = (H + 2 * pad - k) / s + 1, OW = (W + 2 * pad - k) / s + 1;
    struct sd_tensor *x = tensor(4, (int64_t[]){N, Ci, H, W}, 1, 1.0f);
    struct sd_tensor *w = tensor(4, (int64_t[]){Co, Ci, k, k}, 2, 0.05f);
    struct sd_tensor *b = tensor(1, (int64_t[]){Co}, 3, 1.0f);
    struct sd_tensor *y = tensor(4, (int64_t[]){N, Co, OH, OW}, 0, 0.0f);
    c.node = make_node(SD_OP_CONV2D, y, x, w, b);
    y->p.conv2d = (struct sd_conv2d_params){s, s, pad, pad, pad, pad};
    c.flop = 2.0 * (double)(N * Co * OH * OW) * (double)(Ci * k * k);
    snprintf(c.name, sizeof c.name, "%s", name);
    snprintf(c.shape, sizeof c.shape, "[%lld,%lld,%lld,%lld]->%lld k%d s%d", (long long)N, (long long)Ci,
             (long long)H, (long long)W, (long long)Co, k, s);
    return c;
}

static struct bench_case mk_linear(const char *name, int64_t rows, int64_t in, int64_t out) {
    struct bench_case c = {0};
    struct sd_tensor *x = tensor(2, (int64_t[]){rows, in}, 4, 1.0f);
    struct sd_tensor *w = tensor(2, (int64_t[]){out, in}, 5, 0.05f);
    struct sd_tensor *b = tensor(1, (int64_t[]){out}, 6, 1.0f);
    struct sd_tensor *y = tensor(2, (int64_t[]){rows, out}, 0, 0.0f);
    c.node = make_node(SD_OP_LINEAR, y, x, w, b);
    c.flop = 2.0 * (double)rows * (double)in * (double)out;
    snprintf(c.name, sizeof c.name, "%s", name);
    snprintf(c.shape, sizeof c.shape, "x[%lld,%lld] w[%lld,%lld]", (long long)rows, (long long)in, (long long)out,
             (long long)in);
    return c;
}

static struct bench_case mk_attention(const char *name, int64_t B, int64_t Lq, int64_t Lk, int heads, int64_t d) {
    struct bench_case c = {0};
    int64_t C = heads * d;
    struct sd_tensor *q = tensor(3, (int64_t[]){B, Lq, C}, 7, 1.0f);
    struct sd_tensor *k = tensor(3, (int64_t[]){B, Lk, C}, 8, 1.0f);
    struct sd_tensor *v = tensor(3, (int64_t[]){B, Lk, C}, 9, 1.0f);
    struct sd_tensor *y = tensor(3, (int64_t[]){B, Lq, C}, 0, 0.0f);
    c.node = make_node(SD_OP_ATTENTION, y, q, k, v);
    y->p.attention = (struct sd_attention_params){heads, 1.0f / sqrtf((float)d), 0};
    c.flop = 4.0 * (double)B * heads * (double)Lq * (double)Lk * (double)d; /* q·kᵀ and p·v */
    snprintf(c.name, sizeof c.name, "%s", name);
    snprintf(c.shape, sizeof c.shape, "B%lld Lq%lld Lk%lld %dx%lld", (long long)B, (long long)Lq, (long long)Lk, heads,
             (long long)d);
    return c;
}

/* ---- timing ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fixed_runs;          /* -r N, 0 = adaptive */
static double target_s = 2.0;   /* adaptive: timed runs fill about this long (3..15 runs) */

/* Returns the median seconds of run(node) after one untimed warm-up run
 * (primitive creation, weight reorders), or minus the failing status. */
static double time_node(const struct bench_backend *be, void *impl, struct sd_tensor *node) {
    int rc = be->run(impl, node);
    if (rc != SD_OK) return -(double)rc;
    double ts[64];
    int n = fixed_runs > 0 ? (fixed_runs < 64 ? fixed_runs : 64) : 3;
    for (int i = 0; i < n; i++) {
        double t0 = sd_time_s();
        if ((rc = be->run(impl, node)) != SD_OK) return -(double)rc;
        ts[i] = sd_time_s() - t0;
        if (i == 0 && !fixed_runs) { /* size the run count from the first sample */
            int want = (int)(target_s / (ts[0] > 1e-6 ? ts[0] : 1e-6));
            n = want < 3 ? 3 : want > 15 ? 15 : want;
        }
    }
    qsort(ts, (size_t)n, sizeof *ts, cmp_double);
    return n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]);
}

static double sgemm_peak(void) {
    const int64_t n = 1024;
    float *a = sd_malloc_aligned(n * n * sizeof *a), *b = sd_malloc_aligned(n * n * sizeof *b),
          *c = sd_malloc_aligned(n * n * sizeof *c);
    for (int64_t i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    double ts[15];
    for (int i = 0; i < 17; i++) {
        double t0 = sd_time_s();
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (i >= 2) ts[i - 2] = sd_time_s() - t0;
    }
    qsort(ts, 15, sizeof *ts, cmp_double);
    sd_free_aligned(a), sd_free_aligned(b), sd_free_aligned(c);
    return 2.0 * (double)(n * n * n) / ts[7] * 1e-9;
}

/* ---- modes ---- */

static void print_header(void) {
    printf("%-22s %-28s %8s", "case", "shape", "GFLOP");
    for (int b = 0; b < N_BACKENDS; b++) printf(" | %10s %9s %6s", backends[b].name, "GFLOP/s", "peak%");
    printf("\n");
}

static void run_cases(struct bench_case *cases, int n, void **impls, struct sd_ctx *ctx, double peak) {
    print_header();
    for (int i = 0; i < n; i++) {
        struct bench_case *c = &cases[i];
        printf("%-22s %-28s %8.2f", c->name, c->shape, c->flop * 1e-9);
        fflush(stdout);
        for (int b = 0; b < N_BACKENDS; b++) {
            double t = impls[b] ? time_node(&backends[b], impls[b], c->node) : -SD_ERR_UNSUPPORTED;
            if (t < 0) {
                printf(" | %10s %9s %6s", "-", "-", "-");
                if (-t != SD_ERR_UNSUPPORTED) fprintf(stderr, "%s %s: %s\n", backends[b].name, c->name, ctx->msg);
                sd_ctx_clear(ctx);
            } else {
                double gf = c->flop / t * 1e-9;
                printf(" | %8.2fms %9.1f %5.0f%%", t * 1e3, gf, 100.0 * gf / peak);
            }
            fflush(stdout);
        }
        printf("\n");
    }
}

/* --conv: every algorithm on the conv shapes of SD1.5 (UNet at 64x64
 * latents, batch 2 for CFG; VAE decoder at 512x512, batch 1). */
static void run_conv_algos(struct sd_cpu *cpu, double peak) {
    static const int algos[] = {SD_CONV_DIRECT, SD_CONV_WINO, SD_CONV_NCHW, SD_CONV_GEMM};
    struct { int64_t N, Ci, H, W, Co; int k, s, pad; } sh[] = {
        {2, 4, 64, 64, 320, 3, 1, 1},      {2, 320, 64, 64, 320, 3, 1, 1},  {2, 320, 64, 64, 320, 3, 2, 1},
        {2, 320, 32, 32, 640, 3, 1, 1},    {2, 640, 32, 32, 640, 3, 1, 1},  {2, 640, 32, 32, 640, 3, 2, 1},
        {2, 640, 16, 16, 1280, 3, 1, 1},   {2, 1280, 16, 16, 1280, 3, 1, 1}, {2, 1280, 16, 16, 1280, 3, 2, 1},
        {2, 1280, 8, 8, 1280, 3, 1, 1},    {2, 2560, 8, 8, 1280, 3, 1, 1},  {2, 2560, 16, 16, 1280, 3, 1, 1},
        {2, 1920, 32, 32, 640, 3, 1, 1},   {2, 960, 64, 64, 320, 3, 1, 1},  {2, 320, 64, 64, 4, 3, 1, 1},
        {2, 320, 64, 64, 320, 1, 1, 0},    {2, 640, 32, 32, 640, 1, 1, 0},  {2, 1280, 16, 16, 1280, 1, 1, 0},
        {2, 960, 64, 64, 320, 1, 1, 0},    {2, 2560, 8, 8, 1280, 1, 1, 0},
        {1, 4, 64, 64, 512, 3, 1, 1},      {1, 512, 64, 64, 512, 3, 1, 1},  {1, 512, 128, 128, 512, 3, 1, 1},
        {1, 512, 256, 256, 256, 3, 1, 1},  {1, 256, 256, 256, 256, 3, 1, 1}, {1, 128, 256, 256, 128, 3, 1, 1},
        {1, 128, 256, 256, 3, 3, 1, 1},    {1, 512, 256, 256, 256, 1, 1, 0}, {1, 512, 64, 64, 512, 3, 2, 1},
    };
    enum { NA = sizeof algos / sizeof algos[0] };
    printf("conv2d algorithms: GFLOP/s of the best of 3..7 interleaved rounds (robust to a shared machine);\n"
           "sgemm peak %.1f; wino counted at direct-conv FLOPs; * = fastest, n/a = not built for the shape\n", peak);
    printf("%-34s %7s", "shape", "GFLOP");
    for (int a = 0; a < NA; a++) printf(" %9s", sd_conv_algo_name(algos[a]));
    printf(" %9s  %s\n", "auto", "impl(direct)");
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        struct bench_case c = mk_conv("", sh[i].N, sh[i].Ci, sh[i].H, sh[i].W, sh[i].Co, sh[i].k, sh[i].s, sh[i].pad);
        printf("%-34s %7.2f", c.shape, c.flop * 1e-9);
        fflush(stdout);
        double tmin[NA + 1];
        int ok[NA + 1];
        char impl[64] = "", auto_name[16] = "";
        /* Warm-up: one run each (creation, weight reorder) and check what was built. */
        for (int a = 0; a <= NA; a++) {
            int algo = a < NA ? algos[a] : SD_CONV_AUTO;
            sd_cpu_dnnl_set_conv_algo(cpu, algo);
            tmin[a] = 1e30;
            ok[a] = cpu_run(cpu, c.node) == SD_OK;
            const struct sd_dnnl_prim *e = cpu->dnnl->last;
            if (ok[a] && a < NA) ok[a] = e && e->algo == algo; /* fell back (wino -> direct): n/a */
            if (algo == SD_CONV_DIRECT && e) snprintf(impl, sizeof impl, "%s", e->impl);
            if (a == NA && e) snprintf(auto_name, sizeof auto_name, "%s", sd_conv_algo_name(e->algo));
            sd_ctx_clear(cpu->ctx);
        }
        double spent = 0;
        for (int r = 0; r < 7 && (r < 3 || spent < 8.0); r++)
            for (int a = 0; a <= NA; a++) {
                if (!ok[a]) continue;
                sd_cpu_dnnl_set_conv_algo(cpu, a < NA ? algos[a] : SD_CONV_AUTO);
                double t0 = sd_time_s();
                cpu_run(cpu, c.node);
                double t = sd_time_s() - t0;
                spent += t;
                if (t < tmin[a]) tmin[a] = t;
            }
        int best = -1;
        for (int a = 0; a < NA; a++)
            if (ok[a] && (best < 0 || tmin[a] < tmin[best])) best = a;
        for (int a = 0; a < NA; a++) {
            if (!ok[a]) printf(" %9s", "n/a");
            else printf(" %8.1f%c", c.flop / tmin[a] * 1e-9, a == best ? '*' : ' ');
        }
        printf(" %6.1f:%-6s %s\n", c.flop / tmin[NA] * 1e-9, auto_name, impl);
        fflush(stdout);
        sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_AUTO);
        sd_cpu_dnnl_weights_forget(cpu); /* the weights are freed next */
        node_free(c.node);
    }
}

/* --linear: our op (matmul primitive, packed weights, fused bias) against
 * dnnl_sgemm('N','T') plus a bias pass, at SD's Linear shapes. */
static void run_linear_algos(struct sd_cpu *cpu, double peak) {
    struct { int64_t rows, in, out; } sh[] = {
        {8192, 320, 320}, {8192, 320, 2560}, {8192, 1280, 320}, {4096, 320, 1280}, {2048, 640, 640},
        {512, 1280, 1280}, {154, 768, 320}, {154, 768, 1280}, {154, 768, 3072}, {154, 3072, 768}, {2, 320, 1280},
        {2, 1280, 1280},
    };
    printf("linear, GFLOP/s (median; sgemm peak %.1f)\n", peak);
    printf("%-28s %7s %12s %12s  %s\n", "shape", "GFLOP", "op(matmul)", "sgemm+bias", "impl");
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        struct bench_case c = mk_linear("", sh[i].rows, sh[i].in, sh[i].out);
        double t0 = time_node(&backends[0], cpu, c.node);
        const char *impl = cpu->dnnl->last ? cpu->dnnl->last->impl : "";
        const float *x = c.node->src[0]->data, *w = c.node->src[1]->data, *b = c.node->src[2]->data;
        float *y = c.node->data;
        const int64_t R = sh[i].rows, I = sh[i].in, O = sh[i].out;
        double ts[15];
        int n = 0;
        for (int r = 0; r < 17; r++) {
            double s = sd_time_s();
            dnnl_sgemm('N', 'T', R, O, I, 1.0f, x, I, w, I, 0.0f, y, O);
#pragma omp parallel for
            for (int64_t rr = 0; rr < R; rr++)
                for (int64_t o = 0; o < O; o++) y[rr * O + o] += b[o];
            if (r >= 2) ts[n++] = sd_time_s() - s;
            if (r >= 4 && (sd_time_s() - s) * (r + 1) > 3.0) break;
        }
        qsort(ts, (size_t)n, sizeof *ts, cmp_double);
        printf("%-28s %7.3f %12.1f %12.1f  %s\n", c.shape, c.flop * 1e-9, c.flop / t0 * 1e-9, c.flop / ts[n / 2] * 1e-9,
               impl);
        node_free(c.node);
        sd_cpu_dnnl_weights_forget(cpu);
    }
}

int main(int argc, char **argv) {
    int mode = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--conv") == 0) mode = 1;
        else if (strcmp(argv[i], "--linear") == 0) mode = 2;
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) fixed_runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--conv | --linear] [-r runs]\n", argv[0]);
            return 2;
        }
    }
    struct sd_ctx ctx = {0};
    void *impls[N_BACKENDS];
    for (int b = 0; b < N_BACKENDS; b++) {
        impls[b] = backends[b].init(&ctx);
        if (!impls[b]) fprintf(stderr, "backend %s unavailable: %s\n", backends[b].name, ctx.msg);
        sd_ctx_clear(&ctx);
    }
    double peak = sgemm_peak();
    printf("bench_ops: %d threads, dnnl_sgemm 1024^3 peak %.1f GFLOP/s\n", omp_get_max_threads(), peak);
    if (mode && !impls[0]) return 1;
    if (mode == 1) run_conv_algos(impls[0], peak);
    else if (mode == 2) run_linear_algos(impls[0], peak);
    else {
        struct bench_case cases[] = {
            mk_conv("conv2d 3x3 320", 2, 320, 64, 64, 320, 3, 1, 1),
            mk_conv("conv2d 3x3 512 (vae)", 1, 512, 256, 256, 512, 3, 1, 1),
            mk_linear("linear 320->1280", 4096, 320, 1280),
            mk_attention("attention self", 2, 4096, 4096, 8, 40),
            mk_attention("attention cross", 2, 4096, 77, 8, 40),
        };
        int n = sizeof cases / sizeof cases[0];
        run_cases(cases, n, impls, &ctx, peak);
        for (int i = 0; i < n; i++) node_free(cases[i].node);
    }
    for (int b = 0; b < N_BACKENDS; b++)
        if (impls[b]) backends[b].free(impls[b]);
    return 0;
}
