/* bench_cpu_ops.c - timings of the CPU OpenMP kernels at SD shapes: attention
 * (GFLOP/s = 4*B*H*Lq*Lk*d / t), group_norm and permute (GB/s of bytes read +
 * written), with dnnl_sgemm at 1024^3 as the machine's practical peak.
 * Prints the median of SDRT_BENCH_REPS (default 5) runs per case. On a
 * shared machine wall time is noisy, so figures use the process CPU time
 * divided by the thread count ("cpu-equivalent" time: what an idle machine
 * would take with perfect balance); run with OMP_WAIT_POLICY=passive so that
 * waiting threads do not burn CPU time. The wall-clock median is printed too.
 *   build/bench/bench_cpu_ops [attention|group_norm|permute|...]
 */
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu.h"
#include <math.h>

static struct sd_ctx ctx;
static struct sd_cpu cpu;
static int reps = 5;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static struct sd_tensor *mk(int nd, const int64_t *dims) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, nd, dims);
    int64_t n = sd_tensor_nelements(t);
    float *d = sd_malloc_aligned((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    t->data = d;
    return t;
}

static void tfree(struct sd_tensor *t) {
    if (t) sd_free_aligned(t->data);
    free(t);
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double last_wall;

/* Median cpu-equivalent seconds of fn(node) over reps runs (one warm-up);
 * the median wall time goes to last_wall. */
static double time_op(int (*fn)(struct sd_cpu *, struct sd_tensor *), struct sd_tensor *node) {
    double t[64], w[64];
    if (fn(&cpu, node) != SD_OK) { fprintf(stderr, "op failed: %s\n", ctx.msg); exit(1); }
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime(), c0 = cpu_s();
        fn(&cpu, node);
        t[r] = (cpu_s() - c0) / cpu.n_threads;
        w[r] = omp_get_wtime() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    qsort(w, (size_t)reps, sizeof *w, cmp_d);
    last_wall = w[reps / 2];
    return t[reps / 2];
}

static void bench_sgemm(void) {
    const int64_t n = 1024;
    float *a = sd_malloc_aligned(n * n * 4), *b = sd_malloc_aligned(n * n * 4), *c = sd_malloc_aligned(n * n * 4);
    for (int64_t i = 0; i < n * n; i++) a[i] = b[i] = 0.001f * (float)(i % 1000);
    dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_s();
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = (cpu_s() - c0) / cpu.n_threads;
        best = t < best ? t : best;
    }
    printf("%-44s %8.2f ms %7.1f GFLOP/s (best)\n", "dnnl_sgemm 1024^3", best * 1e3, 2.0 * n * n * n / best * 1e-9);
    sd_free_aligned(a), sd_free_aligned(b), sd_free_aligned(c);
}

static void bench_attention(int64_t B, int64_t Lq, int64_t Lk, int H, int64_t d, int causal, const char *what) {
    struct sd_tensor *q = mk(3, (int64_t[]){B, Lq, H * d}), *k = mk(3, (int64_t[]){B, Lk, H * d});
    struct sd_tensor *v = mk(3, (int64_t[]){B, Lk, H * d});
    struct sd_tensor *y = mk(3, (int64_t[]){B, Lq, H * d});
    y->op = SD_OP_ATTENTION;
    y->src[0] = q, y->src[1] = k, y->src[2] = v;
    y->p.attention = (struct sd_attention_params){H, 1.0f / sqrtf((float)d), causal};
    double t = time_op(sd_cpu_op_attention, y);
    double fl = 4.0 * B * H * Lq * Lk * d * (causal ? 0.5 : 1.0);
    char name[96];
    snprintf(name, sizeof name, "attention %s B%lld %lldx%lld H%d d%lld%s", what, (long long)B, (long long)Lq,
             (long long)Lk, H, (long long)d, causal ? " causal" : "");
    printf("%-44s %8.2f ms %7.1f GFLOP/s  (wall %.2f ms)\n", name, t * 1e3, fl / t * 1e-9, last_wall * 1e3);
    tfree(q), tfree(k), tfree(v), tfree(y);
}

static void bench_group_norm(int64_t N, int64_t C, int64_t H, int64_t W, int silu) {
    struct sd_tensor *x = mk(4, (int64_t[]){N, C, H, W}), *g = mk(1, &C), *b = mk(1, &C);
    struct sd_tensor *y = mk(4, (int64_t[]){N, C, H, W});
    y->op = SD_OP_GROUP_NORM;
    y->src[0] = x, y->src[1] = g, y->src[2] = b;
    y->p.group_norm = (struct sd_group_norm_params){32, 1e-5f, silu};
    double t = time_op(sd_cpu_op_group_norm, y);
    char name[96];
    snprintf(name, sizeof name, "group_norm [%lld,%lld,%lld,%lld]%s", (long long)N, (long long)C, (long long)H,
             (long long)W, silu ? " +silu" : "");
    printf("%-44s %8.2f ms %7.1f GB/s  (wall %.2f ms)\n", name, t * 1e3, 2.0 * (double)sd_tensor_nbytes(x) / t * 1e-9, last_wall * 1e3);
    tfree(x), tfree(g), tfree(b), tfree(y);
}

static void bench_permute(int64_t N, int64_t C, int64_t H, int64_t W, int to_nhwc) {
    int64_t in[4] = {N, C, H, W}, out[4] = {N, H, W, C};
    if (!to_nhwc) { in[1] = H, in[2] = W, in[3] = C; out[1] = C, out[2] = H, out[3] = W; }
    struct sd_tensor *x = mk(4, in), *y = mk(4, out);
    y->op = SD_OP_PERMUTE;
    y->src[0] = x;
    int p1[4] = {0, 2, 3, 1}, p2[4] = {0, 3, 1, 2};
    memcpy(y->p.permute.perm, to_nhwc ? p1 : p2, sizeof p1);
    double t = time_op(sd_cpu_op_permute, y);
    char name[96];
    snprintf(name, sizeof name, "permute [%lld,%lld,%lld,%lld] %s", (long long)in[0], (long long)in[1],
             (long long)in[2], (long long)in[3], to_nhwc ? "NCHW->NHWC" : "NHWC->NCHW");
    printf("%-44s %8.2f ms %7.1f GB/s  (wall %.2f ms)\n", name, t * 1e3, 2.0 * (double)sd_tensor_nbytes(x) / t * 1e-9, last_wall * 1e3);
    tfree(x), tfree(y);
}

int main(int argc, char **argv) {
    cpu.ctx = &ctx;
    cpu.n_threads = omp_get_max_threads();
    if (getenv("SDRT_BENCH_REPS")) reps = atoi(getenv("SDRT_BENCH_REPS"));
    if (reps < 1 || reps > 64) reps = 5;
    const char *only = argc > 1 ? argv[1] : "";
    printf("threads %d, median of %d\n", cpu.n_threads, reps);
    if (!*only || strstr("sgemm", only)) bench_sgemm();
    if (!*only || strstr("attention", only)) {
        bench_attention(2, 4096, 4096, 8, 40, 0, "self");
        bench_attention(2, 1024, 1024, 8, 80, 0, "self");
        bench_attention(2, 256, 256, 8, 160, 0, "self");
        bench_attention(2, 64, 64, 8, 160, 0, "self");
        bench_attention(2, 4096, 77, 8, 40, 0, "cross");
        bench_attention(2, 1024, 77, 8, 80, 0, "cross");
        bench_attention(2, 77, 77, 12, 64, 1, "clip");
        bench_attention(1, 4096, 4096, 1, 512, 0, "vae");
    }
    if (!*only || strstr("group_norm", only)) {
        bench_group_norm(2, 320, 64, 64, 1);
        bench_group_norm(2, 1280, 8, 8, 1);
        bench_group_norm(1, 512, 64, 64, 0);
        bench_group_norm(1, 128, 512, 512, 1);
    }
    if (!*only || strstr("permute", only)) {
        bench_permute(2, 320, 64, 64, 1);
        bench_permute(2, 320, 64, 64, 0);
        bench_permute(1, 512, 64, 64, 1);
    }
    sd_free_aligned(cpu.scratch);
    return 0;
}
