/* test_redis_frontend.c - `sdrt serve --redis` end to end (docs/scale-out.md):
 * the test starts its own redis-server (AOF, appendfsync always, a unix
 * socket in a temp dir, no TCP), two `sdrt worker`s on the tiny model and
 * two `sdrt serve --redis` front-ends, then as a client over HTTP: a native
 * job with its SSE events relayed (queue, running, step, preview, result)
 * and its image byte-identical to `sdrt txt2img`; the same job read through
 * the other front-end; an A1111 synchronous txt2img byte-identical to the
 * CLI; A1111 progress of a running job and interrupt reaching the worker
 * running it; DELETE of two running jobs and a queued one; a worker SIGKILLed mid-job and the job finished by the other
 * (time from the kill to the result measured); Redis killed and restarted
 * from its AOF with jobs in flight, every job finished, the front-end's
 * reconnects counted in /metrics; the queue metrics; the real `webuiapi`
 * package (build/testenv) against a front-end. Everything is stopped at
 * the end; every wait is bounded. */
#define _GNU_SOURCE
#include "test.h"
#include "png_io.h"
#include "http_client.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SLOW 4 /* ASan: every wait longer */
#else
#define SLOW 1
#endif
#define PREFIX "sdrt"
#define CLAIM_IDLE_MS 2000

uint8_t *b64_decode(const char *s, size_t n, size_t *out_len); /* host/server/base64.c */

static char bindir[PATH_MAX], dir[128], sock[192], url[256];
static pid_t redis_pid, worker_pid[2], fe_pid[2];
static int fe_port[2];
static char worker_name[2][32];
static int worker_gen;

static int broken; /* a worker died unexpectedly: the run has already failed (test_fail names the worker and its
                    * log), and the later waits end at once instead of running to their timeouts */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void use_fe(int k) { port = fe_port[k], server_pid = fe_pid[k]; }

/* redis-cli on the test's socket: the reply's first line (trimmed) into out. */
static int rcli(char *out, size_t cap, const char *args) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 10 redis-cli -s %s %s 2>/dev/null", sock, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    out[0] = 0;
    if (!fgets(out, (int)cap, p)) out[0] = 0;
    char rest[256];
    while (fgets(rest, sizeof rest, p)) {}
    int st = pclose(p);
    out[strcspn(out, "\r\n")] = 0;
    return st == 0 ? 0 : -1;
}

static int start_redis(void) {
    char logf[256];
    snprintf(logf, sizeof logf, "%s/redis.log", dir);
    redis_pid = fork();
    if (redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a crashed test */
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--dir", dir,
               "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", logf, (char *)NULL);
        _exit(127);
    }
    char r[64];
    for (int i = 0; i < 100 * SLOW; i++) {
        if (!rcli(r, sizeof r, "PING") && !strcmp(r, "PONG")) return 0;
        usleep(50000);
    }
    return -1;
}

static int reap(pid_t pid, int timeout_s, int *status) {
    for (int i = 0; i < timeout_s * 20; i++) {
        if (waitpid(pid, status, WNOHANG) == pid) return 0;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return -1;
}

/* `sdrt worker` number k (a fresh name each start); ready when its heartbeat key exists. */
static int start_worker(int k) {
    snprintf(worker_name[k], sizeof worker_name[k], "w%d", worker_gen++);
    char sdrt[PATH_MAX + 16], logf[256];
    snprintf(sdrt, sizeof sdrt, "%s/../sdrt", bindir);
    snprintf(logf, sizeof logf, "%s/%s.log", dir, worker_name[k]);
    char idle[16];
    snprintf(idle, sizeof idle, "%d", CLAIM_IDLE_MS);
    worker_pid[k] = fork();
    if (worker_pid[k] == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        FILE *f = freopen(logf, "w", stderr);
        (void)f;
        execl(sdrt, sdrt, "worker", "--redis", url, "--model", "tests/models/tiny-sd1", "--threads", "1", "--name",
              worker_name[k], "--claim-idle", idle, (char *)NULL);
        _exit(127);
    }
    char key[128], r[64];
    snprintf(key, sizeof key, "EXISTS %s:worker:%s", PREFIX, worker_name[k]);
    for (int i = 0; i < 600 * SLOW; i++) {
        if (!rcli(r, sizeof r, key) && !strcmp(r, "1")) return 0;
        int st;
        if (waitpid(worker_pid[k], &st, WNOHANG) == worker_pid[k]) return -1;
        usleep(100000);
    }
    return -1;
}

static int start_fe(int k) {
    char sdrt[PATH_MAX + 16];
    snprintf(sdrt, sizeof sdrt, "%s/../sdrt", bindir);
    const char *argv[] = {sdrt, "serve", "--redis", url, "--model", "tiny-sd1", "--port", "0", "--http-threads", "4",
                          "--preview-every", "2", NULL};
    int rc = start_server_args(argv);
    fe_port[k] = port, fe_pid[k] = server_pid;
    return rc;
}

/* `sdrt txt2img` with the settings every job here uses. */
static char *reference_png(long long seed, int side, int steps, size_t *n) {
    char cmd[PATH_MAX * 2], out[128];
    snprintf(out, sizeof out, "%s/ref-%lld-%d-%d.png", dir, seed, side, steps);
    snprintf(cmd, sizeof cmd, "%s/../sdrt txt2img --model tests/models/tiny-sd1 -p 'a red cube' -n 'blurry' --steps %d "
             "-W %d -H %d --sampler 'Euler a' --cfg-scale 7.5 --seed %lld --threads 1 -q -o %s", bindir, steps, side, side, seed, out);
    if (system(cmd) != 0) return NULL;
    return test_read_file(out, n);
}

static char *job_body(long long seed, int side, int steps) {
    char *b = malloc(512);
    snprintf(b, 512, "{\"prompt\":\"a red cube\",\"negative_prompt\":\"blurry\",\"steps\":%d,\"width\":%d,\"height\":%d,"
             "\"sampler_name\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":%lld,\"preview_every\":2}", steps, side, side, seed);
    return b;
}

static json_t *call(const char *method, const char *path, const char *body, int *status) {
    struct resp r;
    if (http(method, path, NULL, NULL, body, body ? strlen(body) : 0, &r)) { *status = -1; return NULL; }
    *status = r.status;
    json_t *j = json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL);
    resp_free(&r);
    return j;
}

/* POST /v1/jobs on the current front-end: the id (static buffer per call site). */
static int submit(long long seed, int side, int steps, char id[32]) {
    char *b = job_body(seed, side, steps);
    int st;
    json_t *j = call("POST", "/v1/jobs", b, &st);
    free(b);
    const char *v = json_string_value(json_object_get(j, "id"));
    snprintf(id, 32, "%s", v ? v : "");
    json_decref(j);
    return st == 202 && v ? 0 : -1;
}

/* Whether a worker died that the test did not kill (then it says so, with its log's last line). */
static int worker_died(void) {
    for (int k = 0; k < 2 && !broken; k++) {
        int st;
        if (worker_pid[k] <= 0 || waitpid(worker_pid[k], &st, WNOHANG) != worker_pid[k]) continue;
        char logf[256], line[512], last[512] = "";
        snprintf(logf, sizeof logf, "%s/%s.log", dir, worker_name[k]);
        FILE *f = fopen(logf, "r");
        while (f && fgets(line, sizeof line, f)) snprintf(last, sizeof last, "%s", line);
        if (f) fclose(f);
        last[strcspn(last, "\n")] = 0;
        test_fail("redisfe: worker %s died (status 0x%x); its log ends: %s", worker_name[k], st, last);
        worker_pid[k] = -1;
        broken = 1;
    }
    return broken;
}

/* Polls GET /v1/jobs/{id} until cond(status json) or the timeout; returns the last status (caller frees). */
static json_t *wait_job(const char *id, int (*cond)(json_t *), double timeout_s) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double t0 = now_s();
    json_t *j = NULL;
    while (now_s() - t0 < timeout_s && !worker_died()) {
        int st;
        json_decref(j);
        j = call("GET", path, NULL, &st);
        if (st == 200 && cond(j)) return j;
        usleep(20000);
    }
    return j;
}

static int is_final(json_t *j) {
    const char *s = json_string_value(json_object_get(j, "status"));
    return s && (!strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled"));
}
static int is_running(json_t *j) {
    const char *s = json_string_value(json_object_get(j, "status"));
    return s && !strcmp(s, "running") && json_integer_value(json_object_get(j, "step")) >= 1;
}
static const char *jstr(json_t *j, const char *k) { const char *v = json_string_value(json_object_get(j, k)); return v ? v : ""; }

static int image_equals(const char *id, int k, const char *ref, size_t ref_len) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s/images/%d.png", id, k);
    struct resp r;
    if (http("GET", path, NULL, NULL, NULL, 0, &r)) return 0;
    int eq = r.status == 200 && ref && r.len == ref_len && !memcmp(r.body, ref, ref_len);
    resp_free(&r);
    return eq;
}

/* A native job through front-end 1: SSE relayed from the worker, image = CLI. */
static char native_id[32];
static void test_native_sse(void) {
    use_fe(0);
    size_t rn = 0;
    char *ref = reference_png(11, 64, 6, &rn);
    CHECK(!submit(11, 64, 6, native_id), "native: POST /v1/jobs on front-end 1 -> 202 (%s)", native_id);
    json_decref(wait_job(native_id, is_final, 60.0 * SLOW)); /* then its stream is read whole, at once */
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s/events", native_id);
    struct resp r;
    int rc = http("GET", path, NULL, NULL, NULL, 0, &r);
    /* The stream ends with the job: the frames in order. */
    const char *want[] = {"event: queue", "event: running", "event: step", "event: preview", "event: result"};
    const char *p = rc ? NULL : r.body;
    int in_order = p != NULL;
    for (size_t i = 0; p && i < sizeof want / sizeof *want; i++) {
        const char *q = strstr(p, want[i]);
        if (!q) { in_order = 0; break; }
        p = q + 1;
    }
    int steps = 0;
    for (const char *q = rc ? NULL : r.body; q && (q = strstr(q, "event: step")); q++) steps++;
    int worker_named = !rc && (strstr(r.body, worker_name[0]) || strstr(r.body, worker_name[1]));
    CHECK(!rc && r.status == 200 && in_order && steps == 6 && worker_named,
          "native: SSE relayed from the worker: queue, running (names the worker), 6 steps, preview, result (%d step frames, %zu bytes)",
          steps, rc ? 0 : r.len);
    if (!rc) resp_free(&r);
    CHECK(image_equals(native_id, 0, ref, rn), "native: image byte-identical to sdrt txt2img (%zu bytes)", rn);
    free(ref);
}

/* The job of front-end 1 read through front-end 2 (its state, image and SSE from Redis). */
static void test_other_frontend(void) {
    use_fe(1);
    size_t rn = 0;
    char *ref = reference_png(11, 64, 6, &rn);
    int st;
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", native_id);
    json_t *j = call("GET", path, NULL, &st);
    json_t *img0 = json_array_get(json_object_get(j, "images"), 0);
    CHECK(st == 200 && !strcmp(jstr(j, "status"), "done") && json_integer_value(json_object_get(img0, "seed")) == 11 &&
          strstr(json_string_value(json_object_get(img0, "parameters")) ? json_string_value(json_object_get(img0, "parameters")) : "", "Seed: 11"),
          "frontends: a job submitted to front-end 1 is read on front-end 2 (status %s, seed and parameters)", jstr(j, "status"));
    json_decref(j);
    CHECK(image_equals(native_id, 0, ref, rn), "frontends: its image from front-end 2 byte-identical to sdrt txt2img");
    snprintf(path, sizeof path, "/v1/jobs/%s/events", native_id);
    struct resp r;
    int rc = http("GET", path, NULL, NULL, NULL, 0, &r);
    CHECK(!rc && r.status == 200 && strstr(r.body, "event: result"), "frontends: its SSE stream on front-end 2 ends with the result");
    if (!rc) resp_free(&r);
    j = call("GET", "/v1/jobs/ffffff00000000", NULL, &st);
    CHECK(st == 404, "frontends: an id Redis does not know -> 404 (%d)", st);
    json_decref(j);
    free(ref);
}

/* A1111's synchronous txt2img through front-end 2: the worker's PNG, byte for byte. */
static void test_a1111_sync(void) {
    use_fe(1);
    size_t rn = 0;
    char *ref = reference_png(12, 64, 4, &rn);
    char *b = job_body(12, 64, 4);
    int st;
    json_t *j = call("POST", "/sdapi/v1/txt2img", b, &st);
    free(b);
    const char *img = json_string_value(json_array_get(json_object_get(j, "images"), 0));
    size_t n = 0;
    uint8_t *png = img ? b64_decode(img, strlen(img), &n) : NULL;
    CHECK(st == 200 && png && ref && n == rn && !memcmp(png, ref, n), "a1111: synchronous txt2img through front-end 2 "
          "byte-identical to sdrt txt2img (%zu bytes)", n);
    json_t *info = json_loads(jstr(j, "info"), 0, NULL);
    CHECK(json_integer_value(json_object_get(info, "seed")) == 12 && !strcmp(jstr(info, "sd_model_name"), "tiny-sd1"),
          "a1111: info names seed 12 and the model");
    json_decref(info);
    json_decref(j);
    free(png);
    free(ref);
}

struct bg { const char *body; int fe, status; json_t *out; double t_end; };
static void *bg_txt2img(void *arg) {
    struct bg *g = arg;
    struct resp r;
    /* http() reads the global port: the main thread stays on the same front-end meanwhile. */
    if (!http("POST", "/sdapi/v1/txt2img", NULL, NULL, g->body, strlen(g->body), &r)) {
        g->status = r.status;
        g->out = json_loadb(r.body, r.len, 0, NULL);
        resp_free(&r);
    } else {
        g->status = -1;
    }
    g->t_end = now_s();
    return NULL;
}

/* A1111 progress of a job running on a worker, then interrupt reaching that worker. */
static void test_progress_interrupt(void) {
    use_fe(0);
    const int steps = 150;
    char *b = job_body(13, 128, steps);
    struct bg g = {.body = b, .fe = 0};
    pthread_t th;
    pthread_create(&th, NULL, bg_txt2img, &g);
    double t0 = now_s();
    json_t *pr = NULL;
    int step = 0, st = 0;
    double progress = 0;
    char job[64] = "";
    while (now_s() - t0 < 60.0 * SLOW && !worker_died()) {
        json_decref(pr);
        pr = call("GET", "/sdapi/v1/progress", NULL, &st);
        json_t *s = json_object_get(pr, "state");
        step = (int)json_integer_value(json_object_get(s, "sampling_step"));
        progress = json_number_value(json_object_get(pr, "progress"));
        snprintf(job, sizeof job, "%s", jstr(s, "job"));
        if (st == 200 && step >= 3) break;
        usleep(20000);
    }
    CHECK(step >= 3 && progress > 0.01 && progress < 1 && json_integer_value(json_object_get(json_object_get(pr, "state"),
          "sampling_steps")) == steps && job[0], "a1111: progress of the job running on a worker (step %d of %d, progress %.3f, job %s)",
          step, steps, progress, job);
    json_decref(pr);
    double t_int = now_s();
    json_t *j = call("POST", "/sdapi/v1/interrupt", "{}", &st);
    CHECK(st == 200 && json_is_true(json_object_get(j, "interrupted")), "a1111: interrupt -> 200 interrupted");
    json_decref(j);
    pthread_join(th, NULL);
    char key[128], state[64] = "", wstep[32] = "";
    snprintf(key, sizeof key, "HGET %s:job:%s state", PREFIX, job);
    rcli(state, sizeof state, key);
    snprintf(key, sizeof key, "HGET %s:job:%s step", PREFIX, job);
    rcli(wstep, sizeof wstep, key);
    json_t *info = json_loads(jstr(g.out, "info"), 0, NULL);
    CHECK(g.status == 200 && !strcmp(state, "cancelled") && atoi(wstep) < steps && json_array_size(json_object_get(g.out, "images")) == 1,
          "a1111: interrupt reached the worker: the job stopped at step %s of %d (state in Redis: %s), the request returned "
          "%.2f s after the interrupt with the interrupted image", wstep, steps, state, g.t_end - t_int);
    json_decref(info);
    json_decref(g.out);
    free(b);
}

static int is_cancelled(json_t *j) { return !strcmp(json_string_value(json_object_get(j, "status")) ?
                                                     json_string_value(json_object_get(j, "status")) : "", "cancelled"); }

/* DELETE /v1/jobs/{id}: two running jobs (one per worker) stop on their
 * workers; a third, still queued, is cancelled by the worker that takes it
 * without running. */
static void test_delete(void) {
    use_fe(1);
    char ids[3][32];
    int ok = 1;
    for (int i = 0; i < 3; i++) ok &= !submit(41 + i, 128, 150, ids[i]);
    json_t *a = wait_job(ids[0], is_running, 60.0 * SLOW), *b = wait_job(ids[1], is_running, 60.0 * SLOW);
    CHECK(ok && is_running(a) && is_running(b), "delete: two 150-step jobs running (one per worker), a third queued");
    json_decref(a);
    json_decref(b);
    int st, all = 1;
    for (int i = 2; i >= 0; i--) {
        char path[96];
        snprintf(path, sizeof path, "/v1/jobs/%s", ids[i]);
        json_decref(call("DELETE", path, NULL, &st));
        all &= st == 200;
    }
    int cancelled = 0, steps_run = 0;
    for (int i = 0; i < 3; i++) {
        json_t *j = wait_job(ids[i], is_final, 60.0 * SLOW);
        cancelled += is_cancelled(j);
        if (i < 2) steps_run += (int)json_integer_value(json_object_get(j, "step"));
        json_decref(j);
    }
    char key[128], started[32] = "";
    snprintf(key, sizeof key, "HGET %s:job:%s started", PREFIX, ids[2]);
    rcli(started, sizeof started, key);
    CHECK(all && cancelled == 3 && steps_run < 2 * 150 && !started[0],
          "delete: all 3 cancelled through the front-end (the running ones at steps summing to %d of 300; the queued one "
          "never started)", steps_run);
}

/* Which worker index runs a job, from its status's device "NAME/..." */
static int worker_of(json_t *j) {
    const char *d = jstr(j, "device");
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(worker_name[k]);
        if (!strncmp(d, worker_name[k], n) && (d[n] == '/' || !d[n])) return k;
    }
    return -1;
}

static double failover_s = -1;
/* A worker SIGKILLed mid-job: the job is reclaimed and finished by the other. */
static void test_kill_worker(void) {
    use_fe(0);
    const int steps = 60, side = 128;
    size_t rn = 0;
    char *ref = reference_png(21, side, steps, &rn);
    char id[32];
    CHECK(!submit(21, side, steps, id), "kill: job submitted (%s)", id);
    json_t *j = wait_job(id, is_running, 60.0 * SLOW);
    int k = worker_of(j);
    CHECK(k >= 0 && is_running(j), "kill: job running on worker %s (step %lld)", k >= 0 ? worker_name[k] : "?",
          (long long)json_integer_value(json_object_get(j, "step")));
    json_decref(j);
    if (k < 0) { free(ref); return; }
    use_fe(1); /* the running job as the other front-end sees it (mirrored from Redis, then followed) */
    j = wait_job(id, is_running, 10.0 * SLOW);
    CHECK(is_running(j) && worker_of(j) == k, "kill: front-end 2 shows the job running on %s too (step %lld)", worker_name[k],
          (long long)json_integer_value(json_object_get(j, "step")));
    json_decref(j);
    use_fe(0);
    double t_kill = now_s();
    kill(worker_pid[k], SIGKILL);
    int st;
    waitpid(worker_pid[k], &st, 0);
    j = wait_job(id, is_final, 120.0 * SLOW);
    double t_done = now_s();
    int k2 = worker_of(j);
    failover_s = t_done - t_kill;
    CHECK(!strcmp(jstr(j, "status"), "done") && k2 >= 0 && k2 != k && image_equals(id, 0, ref, rn),
          "kill: worker %s SIGKILLed mid-job, the job finished on %s %.2f s later (claim idle %d ms), image byte-identical "
          "to sdrt txt2img", worker_name[k], k2 >= 0 ? worker_name[k2] : jstr(j, "device"), failover_s, CLAIM_IDLE_MS);
    json_decref(j);
    CHECK(!start_worker(k), "kill: a fresh worker %s joins", worker_name[k]);
    free(ref);
}

static long metric(const char *body, const char *name) {
    const char *p = strstr(body, name);
    return p ? atol(p + strlen(name)) : -1;
}

/* Redis SIGKILLed with jobs in flight and restarted from its AOF: every job finishes. */
static void test_redis_restart(void) {
    enum { N = 6 };
    char ids[N][32];
    int fe[N], ok_submit = 1;
    for (int i = 0; i < N; i++) {
        fe[i] = i % 2;
        use_fe(fe[i]);
        ok_submit &= !submit(31 + i, 64, 8, ids[i]);
    }
    CHECK(ok_submit, "restart: %d jobs submitted through both front-ends", N);
    usleep(100000);
    kill(redis_pid, SIGKILL);
    int st;
    waitpid(redis_pid, &st, 0);
    usleep(700000);
    CHECK(!start_redis(), "restart: redis-server killed and restarted from its AOF");
    int done = 0, same = 0;
    for (int i = 0; i < N; i++) {
        use_fe(fe[i]);
        json_t *j = wait_job(ids[i], is_final, 120.0 * SLOW);
        size_t rn = 0;
        char *ref = reference_png(31 + i, 64, 8, &rn);
        done += !strcmp(jstr(j, "status"), "done");
        same += image_equals(ids[i], 0, ref, rn);
        json_decref(j);
        free(ref);
    }
    CHECK(done == N && same == N, "restart: all %d jobs done after the restart (%d), images byte-identical (%d)", N, done, same);
    use_fe(0);
    struct resp r;
    long rec = -1;
    if (!http("GET", "/metrics", NULL, NULL, NULL, 0, &r)) {
        rec = metric(r.body, "\nsdrt_redis_reconnects_total ");
        resp_free(&r);
    }
    CHECK(rec > 0, "restart: the front-end reconnected (sdrt_redis_reconnects_total %ld)", rec);
}

/* The queue in /metrics; the SIGKILLed worker leaves the alive count when
 * its heartbeat key expires (15 s after its last beat). */
static void test_metrics(void) {
    use_fe(1);
    long len = -1, pend = -1, dead = -1, workers = -1, up = -1;
    double t0 = now_s();
    while (now_s() - t0 < 40.0) {
        struct resp r;
        if (http("GET", "/metrics", NULL, NULL, NULL, 0, &r)) break;
        len = metric(r.body, "\nsdrt_redis_stream_length{model=\"tiny-sd1\"} ");
        pend = metric(r.body, "\nsdrt_redis_pending{model=\"tiny-sd1\"} ");
        dead = metric(r.body, "\nsdrt_redis_dead_letters{model=\"tiny-sd1\"} ");
        workers = metric(r.body, "\nsdrt_redis_workers ");
        up = metric(r.body, "\nsdrt_redis_up ");
        resp_free(&r);
        if (workers == 2) break;
        usleep(250000);
    }
    CHECK(up == 1 && len >= 0 && pend == 0 && dead == 0 && workers == 2,
          "metrics: stream length %ld, pending %ld, dead letters %ld, workers alive %ld (the killed one gone after "
          "%.1f s), redis up %ld", len, pend, dead, workers, now_s() - t0, up);
    char out[64], cmd[128];
    snprintf(cmd, sizeof cmd, "XPENDING %s:jobs:tiny-sd1 workers", PREFIX);
    rcli(out, sizeof out, cmd);
    CHECK(!strcmp(out, "0"), "metrics: XPENDING says 0 pending (%s)", out);
}

/* The real webuiapi package against front-end 2: txt2img and progress. */
static void test_webuiapi(void) {
    size_t rn = 0;
    char *ref = reference_png(14, 64, 4, &rn);
    char refpath[160], outpath[160], cmd[2048], line[512];
    snprintf(refpath, sizeof refpath, "%s/ref-14-64-4.png", dir);
    snprintf(outpath, sizeof outpath, "%s/webuiapi.png", dir);
    snprintf(cmd, sizeof cmd, "timeout %d build/testenv/bin/python -c '\n"
             "import sys, webuiapi\n"
             "from PIL import Image\n"
             "api = webuiapi.WebUIApi(host=\"127.0.0.1\", port=%d)\n"
             "r = api.txt2img(prompt=\"a red cube\", negative_prompt=\"blurry\", seed=14, steps=4, width=64, height=64,\n"
             "                sampler_name=\"Euler a\", cfg_scale=7.5)\n"
             "ok = list(r.image.convert(\"RGB\").getdata()) == list(Image.open(\"%s\").convert(\"RGB\").getdata())\n"
             "p = api.get_progress()\n"
             "print(\"ok\" if ok else \"differ\", r.info[\"seed\"], \"progress\" in p, r.image.info.get(\"parameters\", \"\")[:40].replace(chr(10), \" \"))\n"
             "' 2>&1", 120 * SLOW, fe_port[1], refpath);
    FILE *p = popen(cmd, "r");
    char last[512] = "";
    while (p && fgets(line, sizeof line, p)) snprintf(last, sizeof last, "%s", line);
    int st = p ? pclose(p) : -1;
    last[strcspn(last, "\n")] = 0;
    CHECK(st == 0 && !strncmp(last, "ok 14 True", 10), "webuiapi: txt2img through front-end 2 gives the CLI's pixels, "
          "progress answers (%s)", last);
    free(ref);
}

int main(int argc, char **argv) {
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    setenv("SDRT_PRECISION", "f32", 1); /* workers and CLI references in the same (parity) mode */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    snprintf(bindir, sizeof bindir, "%s", n > 0 ? exe : argv[0]);
    char *slash = strrchr(bindir, '/');
    if (slash) *slash = 0;
    snprintf(dir, sizeof dir, "/tmp/sdrt-test-redisfe-%d", (int)getpid());
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    snprintf(url, sizeof url, "unix://%s", sock);
    if (mkdir(dir, 0700)) { test_fail("redisfe: cannot make %s", dir); return 1; }
    if (start_redis()) { test_fail("redisfe: redis-server did not answer PING on %s", sock); return 1; }
    test_ok("redisfe: redis-server on %s (AOF, appendfsync always)", sock);
    int started = !start_worker(0) && !start_worker(1);
    CHECK(started, "redisfe: two sdrt workers joined (%s, %s)", worker_name[0], worker_name[1]);
    int fes = started && !start_fe(0) && !start_fe(1);
    CHECK(fes, "redisfe: two sdrt serve --redis front-ends (ports %d, %d)", fe_port[0], fe_port[1]);
    void (*const tests[])(void) = {test_native_sse, test_other_frontend, test_a1111_sync, test_progress_interrupt,
                                   test_delete, test_kill_worker, test_redis_restart, test_webuiapi, test_metrics};
    for (size_t i = 0; fes && i < sizeof tests / sizeof *tests && !worker_died(); i++) tests[i]();
    /* Stop everything: front-ends and workers on SIGTERM (exit 0), then Redis. */
    for (int k = 0; k < 2; k++)
        if (fe_pid[k] > 0) { use_fe(k); stop_server(); }
    int wok = 1;
    for (int k = 0; k < 2; k++)
        if (worker_pid[k] > 0) {
            kill(worker_pid[k], SIGTERM);
            int st = 0;
            wok &= !reap(worker_pid[k], 30 * SLOW, &st) && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
    CHECK(wok, "redisfe: workers stop on SIGTERM with status 0");
    kill(redis_pid, SIGTERM);
    int st;
    reap(redis_pid, 10, &st);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) test_fail("redisfe: cannot remove %s", dir);
    return test_failures ? 1 : 0;
}
