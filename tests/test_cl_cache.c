/* test_cl_cache.c - the OpenCL program-binary cache and precompiled mode, on
 * PoCL:
 *   cold start in an empty cache dir builds every program from source;
 *   a warm start (new backend in this process, and a second process)
 *   builds none and loads all from the cache, with identical results;
 *   corrupted, truncated and foreign cache files are rejected and rebuilt;
 *   a precompiled dir (opts.cl_precompiled_dir) loads every program from
 *   exported binaries with no source compilation and gives the same
 *   results; a missing binary makes only its ops fall back (cause
 *   "build-failed"); an export dir gets the binaries of the programs a run uses.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_impl.h"
#include "cl_test_util.h"

static int n_programs(void) { return sd_cl_n_sources - 1; /* less "common" */ }

/* A small graph touching GEMM, norms, softmax, attention and elementwise ops. */
static struct sd_tensor *b_graph(struct sd_graph *g, struct tc *tc) {
    struct sd_tensor *x = tc_input(tc, g, SD_F32, 4, (int64_t[]){1, 16, 8, 8});
    struct sd_tensor *h = sd_conv2d(g, x, tc_weight(tc, 4, (int64_t[]){16, 16, 3, 3}), tc_weight(tc, 1, (int64_t[]){16}), 1, 1);
    h = sd_group_norm(g, h, NULL, NULL, 4, 1e-5f, 1);
    h = sd_reshape(g, h, 3, (int64_t[]){1, 16, 64});
    struct sd_tensor *q = sd_linear(g, h, tc_weight(tc, 2, (int64_t[]){64, 64}), NULL);
    h = sd_attention(g, q, h, h, 4, 0.25f, 0);
    h = sd_softmax(g, sd_gelu(g, h), 1.0f, 0);
    return sd_layer_norm(g, h, NULL, NULL, 1e-5f);
}

static float *run_graph(struct sd_ctx *ctx, struct sd_backend *cl, struct sd_backend *cpu, struct tc *tc, int64_t *n,
                        int *on_cl, int *nc) {
    struct sd_backend *both[2] = {cl, cpu};
    return tc_run(ctx, both, 2, b_graph, tc, n, on_cl, nc);
}

/* Makes every program available (as a start that uses all ops would). */
static int touch_all(struct sd_backend *b) {
    struct sd_cl *cl = b->impl;
    int ok = 0;
    for (int i = 0; i < sd_cl_n_sources; i++)
        if (sd_cl_program_index(sd_cl_sources[i].name) >= 0 && sd_cl_program_ensure(cl, i) == SD_OK) ok++;
    return ok;
}

static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (l > sl && !strcmp(e->d_name + l - sl, suffix)) n++;
    }
    closedir(d);
    return n;
}

/* The options every OpenCL backend of this test gets (cache root,
 * precompiled and export dirs change between phases; the child process of
 * run_child gets them on its command line). */
static struct sd_runtime_opts clo;
static char cache_cl[320]; /* clo.cl_cache_dir + "/cl" */

/* Returns the path of the cache file holding `program` (by matching the
 * key the cache computes), for the corruption tests. */
static void cache_path(struct sd_backend *b, const char *program, char *path, size_t n) {
    struct sd_cl *cl = b->impl;
    const char *srcs[2] = {NULL, NULL};
    for (int i = 0; i < sd_cl_n_sources; i++) {
        if (!strcmp(sd_cl_sources[i].name, "common")) srcs[0] = sd_cl_sources[i].text;
        if (!strcmp(sd_cl_sources[i].name, program)) srcs[1] = sd_cl_sources[i].text;
    }
    char hex[33];
    sd_cl_cache_key(srcs, 2, cl->build_opts, &cl->info, hex);
    snprintf(path, n, "%s/%s.clbin", cache_cl, hex);
}

static unsigned long long hash_floats(const float *x, int64_t n) {
    return sd_fnv1a(x, (size_t)n * sizeof *x, SD_FNV1A_SEED);
}

/* Child process: a fresh start that makes every program and runs the graph;
 * prints the counts, times and a hash of the output. */
static int child_warm(const char *cache, const char *precompiled) {
    struct sd_ctx ctx = {0};
    sd_runtime_opts_init(&clo);
    clo.cl_cache_dir = strcmp(cache, "-") ? cache : NULL;
    clo.cl_precompiled_dir = strcmp(precompiled, "-") ? precompiled : NULL;
    double t0 = sd_time_s();
    struct sd_backend *cl = sd_cl_backend_new(&ctx, &clo), *cpu = sd_cpu_backend_new(&ctx, NULL);
    if (!cl || !cpu) return printf("child: %s\n", ctx.msg), 1;
    int ok = touch_all(cl);
    double t1 = sd_time_s();
    struct tc tc = {0};
    int64_t n = 0;
    int on_cl = 0, nc = 0;
    float *out = run_graph(&ctx, cl, cpu, &tc, &n, &on_cl, &nc);
    struct sd_cl_counts c;
    sd_cl_counts_get(&c);
    printf("child ok=%d built=%d cached=%d precompiled=%d load=%.2fs first_run=%.2fs hash=%llx\n", ok, c.built,
           c.cached, c.precompiled, t1 - t0, sd_time_s() - t1, out ? hash_floats(out, n) : 0ull);
    free(out);
    tc_free(&tc);
    sd_backend_free(cl);
    sd_backend_free(cpu);
    return 0;
}

struct child { int ok, built, cached, precompiled; double load, run; unsigned long long hash; };

static struct child run_child(void) {
    struct child r = {-1, -1, -1, -1, 0, 0, 0};
    char cmd[800], line[512];
    snprintf(cmd, sizeof cmd, "/proc/%d/exe --child-warm '%s' '%s'", (int)getpid(), clo.cl_cache_dir ? clo.cl_cache_dir : "-",
             clo.cl_precompiled_dir ? clo.cl_precompiled_dir : "-");
    FILE *p = popen(cmd, "r");
    if (!p) return r;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "child ok=%d built=%d cached=%d precompiled=%d load=%lfs first_run=%lfs hash=%llx", &r.ok,
                   &r.built, &r.cached, &r.precompiled, &r.load, &r.run, &r.hash) == 7)
            break;
    pclose(p);
    return r;
}

int main(int argc, char **argv) {
    if (argc > 3 && !strcmp(argv[1], "--child-warm")) return child_warm(argv[2], argv[3]);
    char root[] = "/tmp/sdrt_cl_cache_XXXXXX";
    if (!mkdtemp(root)) return printf("FAIL mkdtemp\n"), 1;
    char cache[300], exp[300], exp2[300], cmd[700];
    struct child r;
    snprintf(cache, sizeof cache, "%s/cache", root);
    snprintf(exp, sizeof exp, "%s/export", root);
    snprintf(exp2, sizeof exp2, "%s/export2", root);
    mkdir(exp, 0755), mkdir(exp2, 0755);
    sd_runtime_opts_init(&clo);
    clo.cl_cache_dir = cache;
    snprintf(cache_cl, sizeof cache_cl, "%s/cl", cache);
    const int N = n_programs();
    struct sd_ctx ctx = {0};
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, NULL);
    CHECK(cpu != NULL, "cpu backend (%s)", ctx.msg);
    if (!cpu) return 1;
    struct sd_cl_counts c;
    struct tc tc = {0};
    int64_t n0 = 0, n1 = 0;
    int on_cl = 0, nc = 0;

    /* Cold start. */
    sd_cl_counts_reset();
    double t0 = sd_time_s();
    struct sd_backend *cl = sd_cl_backend_new(&ctx, &clo);
    CHECK(cl != NULL, "opencl backend (%s)", ctx.msg);
    if (!cl) return 1;
    int ok = touch_all(cl);
    double t_cold = sd_time_s() - t0;
    sd_cl_counts_get(&c);
    CHECK(ok == N && c.built == N && c.cached == 0, "cold start builds all %d programs from source (built %d, cached %d, %.2f s)",
          N, c.built, c.cached, t_cold);
    CHECK(count_files(cache_cl, ".clbin") == N, "cold start stored %d cache files in %s (%d)", N, cache_cl,
          count_files(cache_cl, ".clbin"));
    t0 = sd_time_s();
    float *ref = run_graph(&ctx, cl, cpu, &tc, &n0, &on_cl, &nc);
    double t_cold_run = sd_time_s() - t0;
    CHECK(ref && on_cl == nc, "graph runs on opencl (%d of %d nodes, first run %.2f s)", on_cl, nc, t_cold_run);
    CHECK(sd_cl_export_programs(cl, exp) == SD_OK && count_files(exp, ".bin") == N, "export wrote %d binaries (%s)", N,
          ctx.msg);
    sd_backend_free(cl);

    /* Warm start in this process. */
    sd_cl_counts_reset();
    t0 = sd_time_s();
    cl = sd_cl_backend_new(&ctx, &clo);
    ok = cl ? touch_all(cl) : 0;
    double t_warm = sd_time_s() - t0;
    sd_cl_counts_get(&c);
    CHECK(ok == N && c.built == 0 && c.cached == N, "warm start builds 0 programs, loads %d from cache (built %d, cached %d, %.2f s vs cold %.2f s)",
          N, c.built, c.cached, t_warm, t_cold);
    t0 = sd_time_s();
    float *got = cl ? run_graph(&ctx, cl, cpu, &tc, &n1, &on_cl, &nc) : NULL;
    double t_warm_run = sd_time_s() - t0;
    CHECK(ref && got && n0 == n1 && !memcmp(ref, got, n0 * sizeof(float)),
          "warm start result identical to cold start (first run %.2f s, cold %.2f s)", t_warm_run, t_cold_run);
    free(got);

    /* Warm start in a second process. */
    r = run_child();
    CHECK(r.ok == N && r.built == 0 && r.cached == N && r.hash == hash_floats(ref, n0),
          "second process compiles nothing, same result (ok %d, built %d, cached %d; start %.2f s, first graph run %.2f s)",
          r.ok, r.built, r.cached, r.load, r.run);

    /* Corrupted entries are ignored and rebuilt. */
    const char *victims[3] = {"softmax", "group_norm", "gemm"};
    const char *how[3] = {"payload byte flipped", "truncated", "foreign magic"};
    for (int v = 0; v < 3; v++) {
        char path[1400];
        cache_path(cl, victims[v], path, sizeof path);
        FILE *f = fopen(path, "r+b");
        long size = -1;
        if (f) {
            fseek(f, 0, SEEK_END);
            size = ftell(f);
            if (v == 0) { fseek(f, size / 2, SEEK_SET); int ch = fgetc(f); fseek(f, size / 2, SEEK_SET); fputc(ch ^ 0x55, f); }
            if (v == 2) { fseek(f, 0, SEEK_SET); fputs("NOTSDRT!", f); }
            fclose(f);
            if (v == 1 && truncate(path, size / 3) != 0) size = -1;
        }
        sd_cl_counts_reset();
        struct sd_backend *cl2 = sd_cl_backend_new(&ctx, &clo);
        ok = cl2 ? touch_all(cl2) : 0;
        sd_cl_counts_get(&c);
        got = cl2 ? run_graph(&ctx, cl2, cpu, &tc, &n1, &on_cl, &nc) : NULL;
        CHECK(size > 0 && ok == N && c.built == 1 && c.cached == N - 1 && c.cache_rejected == 1 && got &&
                  !memcmp(ref, got, n0 * sizeof(float)),
              "cache file of %s %s: rejected and rebuilt (built %d, cached %d, rejected %d), same result", victims[v],
              how[v], c.built, c.cached, c.cache_rejected);
        free(got);
        sd_backend_free(cl2);
        sd_cl_counts_reset();
        cl2 = sd_cl_backend_new(&ctx, &clo);
        ok = cl2 ? touch_all(cl2) : 0;
        sd_cl_counts_get(&c);
        CHECK(ok == N && c.built == 0, "rewritten %s entry loads on the next start (built %d)", victims[v], c.built);
        sd_backend_free(cl2);
    }
    sd_backend_free(cl);

    /* Precompiled mode: every program from the exported binaries, no source
     * compilation, no cache. */
    clo.cl_precompiled_dir = exp;
    clo.cl_cache_dir = NULL;
    sd_cl_counts_reset();
    cl = sd_cl_backend_new(&ctx, &clo);
    ok = cl ? touch_all(cl) : 0;
    got = cl ? run_graph(&ctx, cl, cpu, &tc, &n1, &on_cl, &nc) : NULL;
    sd_cl_counts_get(&c);
    double mx = 0;
    CHECK(ok == N && c.built == 0 && c.cached == 0 && c.precompiled == N,
          "precompiled mode loads all %d programs from binaries, compiles none (built %d, precompiled %d)", N, c.built,
          c.precompiled);
    CHECK(got && on_cl == nc && check_close("precompiled", got, ref, n0, 1e-5, 1e-5, &mx) == 0,
          "precompiled mode: all %d nodes on opencl, same results as source-built programs (max abs err %.2g; GEMM by gemm.cl in both)",
          nc, mx);
    /* The child must reproduce this process's precompiled result bit for bit.
     * (Not necessarily `ref`: on GPUs the source-built run uses CLBlast while
     * precompiled mode always uses gemm.cl, a different summation order.) */
    unsigned long long pre_hash = got ? hash_floats(got, n0) : 0;
    free(got);
    sd_backend_free(cl);
    r = run_child();
    CHECK(r.ok == N && r.built == 0 && r.cached == 0 && r.precompiled == N && r.hash == pre_hash,
          "precompiled mode in another process: %d programs from binaries, none compiled, bit-identical result",
          r.precompiled);

    /* A missing binary: only its ops fall back. */
    char missing[400];
    snprintf(missing, sizeof missing, "%s/softmax.bin", exp);
    unlink(missing);
    sd_cl_counts_reset();
    cl = sd_cl_backend_new(&ctx, &clo);
    got = cl ? run_graph(&ctx, cl, cpu, &tc, &n1, &on_cl, &nc) : NULL;
    sd_cl_counts_get(&c);
    /* softmax, and attention too where it runs as GEMMs + the softmax kernel */
    int want = nc - (cl && ((struct sd_cl *)cl->impl)->attn_gemm ? 2 : 1);
    CHECK(got && on_cl == want && c.built == 0 && check_close("missing", got, ref, n0, 1e-5, 1e-5, &mx) == 0,
          "precompiled mode with softmax.bin missing: ops needing it on cpu (%d of %d on opencl), nothing compiled, "
          "same result", on_cl, nc);
    free(got);
    sd_backend_free(cl);
    clo.cl_precompiled_dir = NULL;
    clo.cl_cache_dir = cache;

    /* An export dir (SDRT_CL_EXPORT in the sdrt command) gets what a run uses. */
    clo.cl_export_dir = exp2;
    cl = sd_cl_backend_new(&ctx, &clo);
    got = cl ? run_graph(&ctx, cl, cpu, &tc, &n1, &on_cl, &nc) : NULL;
    int ne = count_files(exp2, ".bin");
    CHECK(got && ne >= 6 && ne < N, "export dir got the %d programs the graph used", ne);
    free(got);
    sd_backend_free(cl);
    clo.cl_export_dir = NULL;

    free(ref);
    tc_free(&tc);
    sd_backend_free(cpu);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", root);
    return test_summary();
}
