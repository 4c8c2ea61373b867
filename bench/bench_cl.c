/* bench_cl.c - OpenCL vs CPU: per-op times on the 1-node graphs of
 * tests/cl_op_cases.h side by side, SGEMM GFLOP/s of both OpenCL GEMM
 * engines (CLBlast and kernels/gemm.cl) against the CPU (oneDNN), conv2d as
 * im2col + GEMM against CLBlastSconvgemm, and a small search over CLBlast
 * Xgemm parameter sets (CLBlastOverrideParameters).
 *
 *   bench_cl [ops] [gemm] [conv] [tune [--from SET]] [-n REPS] [--size N]
 *   (default: ops gemm, 3 reps, N = 1024)
 *
 * Times are medians of REPS runs of the backend's compute over the graph
 * after one warm-up run (which compiles programs, uploads weights and copies
 * inputs), synchronised, so transfers and compilation are excluded.
 */
#include <clblast_c.h>

#include "cl_op_cases.h"
#include "cl_impl.h"

static int reps = 3;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of `reps` computes of g on backends[0], or -1 on error. */
static double time_graph(struct sd_ctx *ctx, struct sd_backend **bk, int n, tc_build_fn build, struct tc *tc,
                         int *all_first) {
    tc->cur_w = 0;
    tc->n_in = 0;
    double res = -1, ts[32];
    struct sd_graph *g = sd_graph_new(ctx);
    struct sd_tensor *out = build(g, tc);
    sd_graph_output(g, out);
    struct sd_sched *s = NULL;
    if (!out || sd_graph_plan(g) != SD_OK || !(s = sd_sched_new(ctx, bk, n)) || sd_sched_alloc(s, g) != SD_OK)
        goto done;
    tc_fill_inputs(tc);
    if (sd_sched_compute(s, g) != SD_OK) goto done;
    *all_first = 1;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op != SD_OP_NONE && g->nodes[i]->op != SD_OP_RESHAPE && g->backend[i] != 0)
            *all_first = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = sd_time_s();
        if (bk[0]->iface->compute(bk[0], g, 0, g->n_nodes) != SD_OK || sd_backend_synchronize(bk[0]) != SD_OK)
            goto done;
        ts[r] = sd_time_s() - t0;
    }
    qsort(ts, reps, sizeof ts[0], cmp_d);
    res = ts[reps / 2];
done:
    if (res < 0) printf("  error: %s\n", ctx->msg);
    sd_sched_free(s);
    sd_graph_free(g);
    return res;
}

static struct sd_backend *cl_with_gemm(struct sd_ctx *ctx, const char *engine) {
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.cl_gemm = (enum sd_cl_gemm_engine)sd_cl_gemm_parse(engine);
    o.cl_cache_dir = getenv("SDRT_CACHE_DIR"); /* program binaries (none when unset) */
    struct sd_backend *b = sd_cl_backend_new(ctx, &o);
    if (!b) printf("opencl backend: %s\n", ctx->msg);
    return b;
}

/* All CPU timings first, then all OpenCL ones: PoCL's worker threads stay
 * busy for a while after OpenCL work and would slow the CPU backend's
 * OpenMP threads if the two alternated (seen as an ~8 ms floor per op). */
static void bench_ops(struct sd_ctx *ctx, struct sd_backend *cpu, struct sd_backend *cl) {
    struct sd_backend *both[2] = {cl, cpu};
    const size_t n = sizeof cases / sizeof cases[0];
    double t_cpu[sizeof cases / sizeof cases[0]];
    int on = 0;
    for (size_t i = 0; i < n; i++) {
        struct tc tc = {0};
        t_cpu[i] = time_graph(ctx, &cpu, 1, cases[i].build, &tc, &on);
        tc_free(&tc);
    }
    printf("%-40s %10s %10s %8s\n", "op (1-node graph)", "cpu ms", "opencl ms", "cl/cpu");
    for (size_t i = 0; i < n; i++) {
        struct tc tc = {0};
        int on_cl = 0;
        double tc_cl = time_graph(ctx, both, 2, cases[i].build, &tc, &on_cl);
        printf("%-40s %10.2f %10.2f %8.1f%s\n", cases[i].name, t_cpu[i] * 1e3, tc_cl * 1e3, tc_cl / t_cpu[i],
               on_cl ? "" : "  (not all on opencl)");
        fflush(stdout);
        tc_free(&tc);
    }
}

static int64_t gemm_n = 1024;
static struct sd_tensor *b_gemm(struct sd_graph *g, struct tc *tc) {
    return sd_linear(g, IN(tc, g, 3, 1, gemm_n, gemm_n), W(tc, 2, gemm_n, gemm_n), NULL);
}
static struct sd_tensor *b_gemm_nn(struct sd_graph *g, struct tc *tc) {
    return sd_matmul(g, IN(tc, g, 3, 1, gemm_n, gemm_n), IN(tc, g, 3, 1, gemm_n, gemm_n), 0, 0, 1.0f);
}

static double gflops(double s) { return s > 0 ? 2.0 * gemm_n * gemm_n * gemm_n / s / 1e9 : 0; }

static void bench_gemm(struct sd_ctx *ctx, struct sd_backend *cpu, struct sd_backend *cl_blast,
                       struct sd_backend *cl_own) {
    struct tc tc = {0};
    int on = 0;
    printf("sgemm %lldx%lldx%lld (GFLOP/s, median of %d):\n", (long long)gemm_n, (long long)gemm_n, (long long)gemm_n,
           reps);
    const char *names[2] = {"linear x.w^T", "matmul a.b"};
    tc_build_fn fns[2] = {b_gemm, b_gemm_nn};
    for (int k = 0; k < 2; k++) {
        double t_cpu = time_graph(ctx, &cpu, 1, fns[k], &tc, &on);
        struct sd_backend *b1[2] = {cl_blast, cpu}, *b2[2] = {cl_own, cpu};
        double t_blast = cl_blast ? time_graph(ctx, b1, 2, fns[k], &tc, &on) : -1;
        double t_own = cl_own ? time_graph(ctx, b2, 2, fns[k], &tc, &on) : -1;
        printf("  %-14s cpu (oneDNN) %7.1f   opencl CLBlast %7.1f   opencl gemm.cl %7.1f\n", names[k],
               gflops(t_cpu), gflops(t_blast), gflops(t_own));
        fflush(stdout);
        tc_free(&tc);
    }
}

/* Xgemm parameter order (CLBlast 1.5): GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN */
static const char *xgemm_names[16] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                                      "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"};
static const size_t xgemm_sets[][16] = {
    {0, 1, 32, 2, 8, 8, 32, 8, 8, 64, 0, 0, 0, 0, 4, 4},       /* CLBlast's Intel-CPU default */
    {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4},       /* 8x8 per item */
    {0, 1, 32, 2, 8, 8, 64, 8, 8, 128, 0, 0, 0, 0, 8, 8},      /* 8x16 per item, 8-wide */
    {0, 1, 16, 2, 8, 8, 64, 8, 8, 128, 0, 0, 0, 0, 8, 16},     /* 16-wide (AVX-512) */
    {0, 1, 32, 2, 16, 16, 128, 16, 16, 128, 0, 0, 0, 0, 8, 8}, /* 256-item groups */
    {0, 1, 32, 8, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4},       /* local-memory tiles */
    {0, 1, 16, 8, 8, 8, 64, 8, 8, 128, 1, 1, 0, 0, 8, 16},     /* 3 + 5 combined */
    {0, 1, 32, 8, 8, 8, 64, 8, 8, 128, 1, 1, 0, 0, 4, 16},
    {0, 1, 32, 2, 8, 8, 64, 8, 8, 128, 0, 0, 0, 0, 4, 16},
};
static int tune_from = 0;

static void bench_tune(struct sd_ctx *ctx, struct sd_backend *cpu, struct sd_backend *cl_blast) {
    struct tc tc = {0};
    int on = 0;
    cl_device_id dev;
    struct sd_cl *cl = cl_blast->impl;
    dev = cl->dev;
    printf("CLBlast Xgemm parameter search, linear %lld^3 (each set recompiles CLBlast's kernel):\n", (long long)gemm_n);
    for (size_t s = tune_from; s < sizeof xgemm_sets / sizeof xgemm_sets[0]; s++) {
        CLBlastStatusCode st = CLBlastOverrideParameters(dev, "Xgemm", CLBlastPrecisionSingle, 16, xgemm_names,
                                                         xgemm_sets[s]);
        printf("  set %zu {", s);
        for (int i = 2; i < 16; i++) printf("%s%s=%zu", i > 2 ? " " : "", xgemm_names[i], xgemm_sets[s][i]);
        if (st != CLBlastSuccess) {
            printf("}: override failed (%d)\n", (int)st);
            continue;
        }
        struct sd_backend *b1[2] = {cl_blast, cpu};
        double t0 = sd_time_s();
        double t = time_graph(ctx, b1, 2, b_gemm, &tc, &on);
        printf("}: %.1f GFLOP/s (first call incl. compile %.1f s)\n", gflops(t), sd_time_s() - t0 - t * reps);
        fflush(stdout);
        tc_free(&tc);
    }
}

/* conv2d 3x3 [1,320,32,32]: our im2col + GEMM (the conv2d op) against
 * CLBlastSconvgemm on the same buffers (NCHW input, [Co,Ci,kh,kw] kernel). */
static void bench_conv(struct sd_ctx *ctx, struct sd_backend *cpu, struct sd_backend *cl_own) {
    const size_t C = 320, H = 32, W = 32, Co = 320;
    struct tc tc = {0};
    int on = 0;
    struct sd_backend *b2[2] = {cl_own, cpu};
    double t_ours = time_graph(ctx, b2, 2, b_conv3x3, &tc, &on);
    double flop = 2.0 * Co * H * W * C * 9;
    struct sd_cl *cl = cl_own->impl;
    size_t nx = C * H * W, nw = Co * C * 9, ny = Co * H * W;
    float *x = malloc(nx * 4), *w = malloc(nw * 4);
    fill_random(x, nx, 1), fill_random(w, nw, 2);
    cl_int err;
    cl_mem bx = clCreateBuffer(cl->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, nx * 4, x, &err);
    cl_mem bw = clCreateBuffer(cl->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, nw * 4, w, &err);
    cl_mem by = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, ny * 4, NULL, &err);
    double ts[32], t0 = sd_time_s(), first = 0;
    int st = 0;
    for (int r = 0; r <= reps && st == 0; r++) {
        double t1 = sd_time_s();
        cl_event ev = NULL;
        st = CLBlastSconvgemm(CLBlastKernelModeCrossCorrelation, C, H, W, 3, 3, 1, 1, 1, 1, 1, 1, Co, 1, bx, 0, bw, 0,
                              by, 0, &cl->queue, &ev);
        if (ev) clReleaseEvent(ev);
        clFinish(cl->queue);
        if (r == 0) first = sd_time_s() - t0;
        else ts[r - 1] = sd_time_s() - t1;
    }
    double t_cg = -1;
    if (st == 0) {
        qsort(ts, reps, sizeof ts[0], cmp_d);
        t_cg = ts[reps / 2];
    }
    printf("conv2d 3x3 [1,320,32,32] -> 320 (GFLOP/s): im2col + gemm.cl %.1f (%.1f ms)   CLBlastSconvgemm %.1f (%.1f ms, "
           "status %d, first call incl. compile %.1f s)\n",
           flop / t_ours / 1e9, t_ours * 1e3, t_cg > 0 ? flop / t_cg / 1e9 : 0, t_cg * 1e3, st, first);
    clReleaseMemObject(bx), clReleaseMemObject(bw), clReleaseMemObject(by);
    free(x), free(w);
    tc_free(&tc);
}

int main(int argc, char **argv) {
    int do_ops = 0, do_gemm = 0, do_tune = 0, do_conv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "ops")) do_ops = 1;
        else if (!strcmp(argv[i], "gemm")) do_gemm = 1;
        else if (!strcmp(argv[i], "tune")) do_tune = 1;
        else if (!strcmp(argv[i], "conv")) do_conv = 1;
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) gemm_n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) tune_from = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cl [ops] [gemm] [conv] [tune [--from SET]] [-n REPS] [--size N]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 32) reps = 3;
    if (!do_ops && !do_gemm && !do_tune && !do_conv) do_ops = do_gemm = 1;
    struct sd_ctx ctx = {0};
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, NULL);
    if (!cpu) {
        printf("cpu backend: %s\n", ctx.msg);
        return 1;
    }
    struct sd_backend *cl_blast = cl_with_gemm(&ctx, "clblast"), *cl_own = cl_with_gemm(&ctx, "own");
    if (!cl_blast || !cl_own) return 1;
    printf("device: %s (%s)\n", sd_cl_device_of(cl_own)->name, sd_cl_device_of(cl_own)->driver_version);
    if (do_ops) bench_ops(&ctx, cpu, getenv("SDRT_CL_GEMM") && !strcmp(getenv("SDRT_CL_GEMM"), "clblast") ? cl_blast : cl_own);
    if (do_gemm) bench_gemm(&ctx, cpu, cl_blast, cl_own);
    if (do_conv) bench_conv(&ctx, cpu, cl_own);
    if (do_tune) bench_tune(&ctx, cpu, cl_blast);
    sd_backend_free(cl_blast);
    sd_backend_free(cl_own);
    sd_backend_free(cpu);
    return 0;
}
