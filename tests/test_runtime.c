/* test_runtime.c - the runtime options, the log callback and per-job error
 * contexts.
 *
 * Graph: an embedding lookup (ids i32 [1, 6] into a table f32 [8, 4], both
 * graph inputs) followed by scale(x2, +1): the reference is computed here
 * from the table. An id outside [0, 8) makes the CPU backend fail at
 * compute time ("embedding: id 9 at position 2 ..."), so the error comes
 * from inside a backend, the path where a stored context could leak.
 *
 *   options: sd_runtime_opts_init defaults; an unknown op in cpu_disable or
 *   a bad convolution policy is refused with a message; names parse.
 *   log: with SD_DEBUG_SCHED | SD_DEBUG_GRAPH the placement and the plan
 *   arrive through the callback at SD_LOG_INFO, nothing at a quieter level,
 *   and the library writes nothing to stderr (fd 2 captured meanwhile).
 *   jobs on one runtime: job A's error lands in A's ctx only; job B after it
 *   on the same runtime succeeds with B's ctx untouched; a build error lands
 *   in the job's ctx too.
 *   jobs in two threads (one runtime each, in parallel): every failing job
 *   has its own error and every good job a clean ctx and the right numbers.
 */
#include <pthread.h>
#include <unistd.h>

#include "runtime.h"
#include "test.h"

#define V 8
#define C 4
#define L 6

static float table[V * C];

struct job { int32_t ids[L]; int fail_build; };

static struct sd_tensor *build(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    const struct job *j = user;
    struct sd_tensor *ids = sd_graph_input(g, "ids", SD_I32, 2, (int64_t[]){1, L});
    struct sd_tensor *tab = sd_graph_input(g, "table", SD_F32, 2, (int64_t[]){V, C});
    /* A shape the op rejects: the graph records a build error. */
    struct sd_tensor *e = j->fail_build ? sd_add(g, tab, ids) : sd_embedding(g, ids, tab);
    in[0] = ids, in[1] = tab;
    *n_in = 2;
    return sd_scale(g, e, 2.0f, 1.0f);
}

/* Runs job j on rt with errors to ctx; returns the status, out = result. */
static int run_job(struct sd_runtime *rt, struct sd_ctx *ctx, const struct job *j, float *out) {
    sd_runtime_set_ctx(rt, ctx);
    struct sd_graph_key key = {j->fail_build ? 2 : 1, 7, {L}, j->fail_build ? "bad graph" : "lookup"};
    const void *inputs[2] = {j->ids, table};
    return sd_runtime_run(rt, &key, build, (void *)j, inputs, out);
}

static double max_err(const struct job *j, const float *out) {
    double mx = 0;
    for (int r = 0; r < L; r++)
        for (int c = 0; c < C; c++) {
            double d = fabs(out[r * C + c] - (2.0 * table[j->ids[r] * C + c] + 1.0));
            mx = d > mx ? d : mx;
        }
    return mx;
}

static const struct job good = {{0, 3, 7, 1, 1, 5}, 0}, bad = {{0, 3, 9, 1, 1, 5}, 0}, bad_build = {{0}, 1};

/* ---- options ---- */

static void test_options(void) {
    struct sd_runtime_opts o;
    memset(&o, 0x5a, sizeof o);
    sd_runtime_opts_init(&o);
    CHECK(o.backend == SD_BACKEND_CPU && o.threads == 0 && o.conv == SD_CONV_POLICY_AUTO && o.cl_device == -1 &&
              o.cl_rowwise == -1 && o.cl_xgemm_tuned == 1 && o.cl_gemm == SD_CL_GEMM_AUTO && o.cl_attn == SD_CL_ATTN_AUTO &&
              !o.cpu_disable && !o.cl_disable && !o.cl_cache_dir && !o.log.fn && o.log.level == SD_LOG_INFO && !o.debug,
          "sd_runtime_opts_init: cpu, all cores, auto policies, first device, no cache, no log, no debug");
    CHECK(sd_backend_kind_parse("opencl") == SD_BACKEND_OPENCL && sd_backend_kind_parse("gpu") < 0 &&
              sd_conv_policy_parse("wino") == SD_CONV_POLICY_WINO && !strcmp(sd_conv_policy_name(SD_CONV_POLICY_LOWMEM), "lowmem") &&
              sd_cl_attn_parse("flash") == SD_CL_ATTN_FLASH && sd_cl_gemm_parse("clblast") == SD_CL_GEMM_CLBLAST &&
              sd_log_level_parse("debug") == SD_LOG_DEBUG && sd_log_level_parse("loud") < 0,
          "option value names parse, unknown ones are -1");
    struct sd_ctx ctx = {0};
    o.cpu_disable = "silu,bogus";
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    CHECK(!rt && ctx.status == SD_ERR_INVALID && strstr(ctx.msg, "unknown op 'bogus'"), "runtime: unknown op in cpu_disable refused: %s",
          ctx.msg);
    sd_runtime_free(rt);
    sd_runtime_opts_init(&o);
    o.conv = (enum sd_conv_policy)42;
    sd_ctx_clear(&ctx);
    rt = sd_runtime_new(&ctx, &o);
    CHECK(!rt && ctx.status == SD_ERR_INVALID && strstr(ctx.msg, "convolution policy 42"),
          "runtime: unknown convolution policy refused: %s", ctx.msg);
    sd_runtime_free(rt);
}

/* ---- log ---- */

struct capture { int n, info, warn_or_worse; char text[16384]; };

static void capture(void *user, int level, const char *msg) {
    struct capture *c = user;
    c->n++;
    c->info += level == SD_LOG_INFO;
    c->warn_or_worse += level <= SD_LOG_WARN;
    size_t len = strlen(c->text);
    snprintf(c->text + len, sizeof c->text - len, "%s\n", msg);
}

static void test_log(void) {
    char path[] = "/tmp/sdrt-test-runtime-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    fflush(stderr);
    if (fd >= 0) dup2(fd, 2);

    struct capture cap = {0}, quiet = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    o.debug = SD_DEBUG_SCHED | SD_DEBUG_GRAPH | SD_DEBUG_GRAPH_NODES;
    o.log = (struct sd_log){capture, &cap, SD_LOG_INFO};
    struct sd_ctx ctx = {0};
    float out[L * C];
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    int rc = rt ? run_job(rt, &ctx, &good, out) : -1;
    int rc_bad = rt ? run_job(rt, &ctx, &bad, out) : -1;
    sd_runtime_free(rt);
    o.log = (struct sd_log){capture, &quiet, SD_LOG_WARN};
    rt = sd_runtime_new(&ctx, &o);
    int rc2 = rt ? run_job(rt, &ctx, &good, out) : -1;
    sd_runtime_free(rt);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t stderr_bytes = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (fd >= 0) close(fd);
    unlink(path);

    CHECK(rc == SD_OK && cap.n == 2 && cap.info == 2 && strstr(cap.text, "split 0: cpu") && strstr(cap.text, "cause=preferred") &&
              strstr(cap.text, "graph: 2 ops") && strstr(cap.text, "activation arena"),
          "debug flags: placement and plan of the one graph built, through the callback at info (%d messages)", cap.n);
    CHECK(rc_bad == SD_ERR_INVALID && cap.warn_or_worse == 0, "a failing job is an error value, not a log message");
    CHECK(rc2 == SD_OK && quiet.n == 0, "log level warn: the debug output is not delivered (%d messages)", quiet.n);
    CHECK(stderr_bytes == 0, "the library wrote nothing to stderr (%lld bytes)", (long long)stderr_bytes);
}

/* ---- jobs on one runtime ---- */

static void test_jobs_one_runtime(void) {
    struct sd_ctx setup = {0}, a = {0}, b = {0}, c = {0}, d = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    struct sd_runtime *rt = sd_runtime_new(&setup, &o);
    CHECK(rt != NULL, "cpu runtime (%s)", setup.msg);
    if (!rt) return;
    float out[L * C];
    int ra = run_job(rt, &a, &bad, out);
    CHECK(ra == SD_ERR_INVALID && a.status == SD_ERR_INVALID && strstr(a.msg, "embedding: id 9 at position 2") &&
              setup.status == SD_OK && !setup.msg[0],
          "job A's backend error lands in A's ctx only: %s", a.msg);
    memset(out, 0, sizeof out);
    int rb = run_job(rt, &b, &good, out);
    double e = max_err(&good, out);
    CHECK(rb == SD_OK && b.status == SD_OK && !b.msg[0] && e == 0 && strstr(a.msg, "id 9"),
          "job B on the same runtime right after: ok, B's ctx clean, A's kept (max err %g)", e);
    int rc = run_job(rt, &c, &bad_build, out);
    CHECK(rc == SD_ERR_INVALID && c.status == SD_ERR_INVALID && strstr(c.msg, "bad graph: ") && !b.msg[0] && setup.status == SD_OK,
          "a build error lands in the job's ctx: %s", c.msg);
    int rd = run_job(rt, &d, &good, out);
    CHECK(rd == SD_OK && d.status == SD_OK && !d.msg[0] && sd_runtime_ctx(rt) == &d,
          "the next job after a failed build: ok, clean ctx");
    sd_runtime_free(rt);
}

/* ---- jobs in two threads ---- */

#define JOBS 25

struct worker { int fail; struct sd_ctx ctx[JOBS]; int rc[JOBS]; double err[JOBS]; int setup_ok; };

static void *work(void *arg) {
    struct worker *w = arg;
    struct sd_ctx setup = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    struct sd_runtime *rt = sd_runtime_new(&setup, &o);
    w->setup_ok = rt != NULL;
    for (int i = 0; rt && i < JOBS; i++) {
        struct job j = good;
        if (w->fail) j.ids[i % L] = V + i; /* each job its own bad id */
        float out[L * C] = {0};
        w->rc[i] = run_job(rt, &w->ctx[i], &j, out);
        w->err[i] = w->fail ? 0 : max_err(&j, out);
    }
    sd_runtime_free(rt);
    return NULL;
}

static void test_jobs_two_threads(void) {
    static struct worker wf = {.fail = 1}, wg = {.fail = 0};
    pthread_t tf, tg;
    int started = pthread_create(&tf, NULL, work, &wf) == 0;
    started += pthread_create(&tg, NULL, work, &wg) == 0;
    if (started > 0) pthread_join(tf, NULL);
    if (started > 1) pthread_join(tg, NULL);
    int own = 0, clean = 0;
    double mx = 0;
    for (int i = 0; i < JOBS; i++) {
        char want[96];
        snprintf(want, sizeof want, "embedding: id %d at position %d ", V + i, i % L);
        own += wf.rc[i] == SD_ERR_INVALID && strstr(wf.ctx[i].msg, want) != NULL;
        clean += wg.rc[i] == SD_OK && wg.ctx[i].status == SD_OK && !wg.ctx[i].msg[0];
        mx = wg.err[i] > mx ? wg.err[i] : mx;
    }
    CHECK(started == 2 && wf.setup_ok && wg.setup_ok && own == JOBS && clean == JOBS && mx == 0,
          "two runtimes in two threads: %d/%d failing jobs carry their own id, %d/%d good jobs clean and exact", own, JOBS,
          clean, JOBS);
}

int main(void) {
    for (int i = 0; i < V * C; i++) table[i] = (float)(i * 0.25 - 3.0);
    test_options();
    test_log();
    test_jobs_one_runtime();
    test_jobs_two_threads();
    return test_summary();
}
