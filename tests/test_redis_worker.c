/* test_redis_worker.c - `sdrt worker --redis` against this test's own
 * redis-server, jobs submitted through host/queue as a front-end does:
 * usage errors; results byte-identical to `sdrt txt2img` with events and
 * job state; malformed entries dead-lettered while the worker keeps going;
 * a model switch on a worker with two models; a duplicate delivery
 * acknowledged without a second result; cancel of a running and of a queued
 * job; skip; heartbeats keeping a job that runs 2.5x --claim-idle; a job whose
 * model fails to load dead-lettered with its error after --max-attempts; an
 * invalid request failed at once; SIGTERM finishing the current job and
 * exiting 0; two devices; SIGTERM during a Redis outage. */
#include "redis_harness.h"
#include "redis_worker_harness.h"
#include "safetensors.h"
#include "test.h"

static struct redis_srv rs;
static char dir[256];

static struct sd_rq *open_q(void) {
    struct sd_rq_opts o;
    sd_rq_opts_init(&o);
    o.url = rs.url;
    struct sd_rq *q = NULL;
    struct sd_ctx ctx = {0};
    if (sd_rq_open(&ctx, &o, &q)) printf("  open: %s\n", ctx.msg);
    return q;
}

/* Waits up to timeout_s for job id's result: 1 found (r filled), 0 not. */
static int wait_result(struct sd_rq *q, const char *id, struct sd_rq_result *r, int timeout_s) {
    for (int i = 0; i < timeout_s * 20; i++) {
        struct sd_ctx ctx = {0};
        int found = 0;
        if (sd_rq_result(&ctx, q, id, r, &found) == SD_OK && found) return 1;
        redis_sleep_ms(50);
    }
    return 0;
}

static const char *job_field(struct sd_rq *q, const char *id, const char *field, char *buf, size_t cap) {
    struct sd_ctx ctx = {0};
    json_t *s = NULL;
    buf[0] = 0;
    if (sd_rq_job_state(&ctx, q, id, &s) == SD_OK) {
        json_t *v = json_object_get(s, field);
        if (json_is_string(v)) snprintf(buf, cap, "%s", json_string_value(v));
        else if (json_is_integer(v)) snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    }
    json_decref(s);
    return buf;
}

static int wait_state(struct sd_rq *q, const char *id, const char *state, int timeout_s) {
    char b[64];
    for (int i = 0; i < timeout_s * 20; i++) {
        if (!strcmp(job_field(q, id, "state", b, sizeof b), state)) return 1;
        redis_sleep_ms(50);
    }
    return 0;
}

struct evs {
    int running, step, result, worker_named;
};
static int count_ev(void *user, int idx, const char *event, const char *data) {
    struct evs *e = user;
    (void)idx;
    if (!strcmp(event, "running")) e->running++, e->worker_named += strstr(data, "\"worker\":\"w1\"") != NULL;
    if (!strcmp(event, "step")) e->step++;
    if (!strcmp(event, "result")) e->result++;
    return 0;
}

/* The value of field name in a flat [field, value, ...] reply, or NULL. */
static const redisReply *field_of(const redisReply *arr, const char *name) {
    for (size_t i = 0; arr && arr->type == REDIS_REPLY_ARRAY && i + 1 < arr->elements; i += 2)
        if (arr->element[i]->type == REDIS_REPLY_STRING && !strcmp(arr->element[i]->str, name)) return arr->element[i + 1];
    return NULL;
}

static long long xlen(redisContext *c, const char *key) {
    redisReply *r = redisCommand(c, "XLEN %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r) freeReplyObject(r);
    return n;
}
static long long pending(redisContext *c, const char *stream) {
    redisReply *r = redisCommand(c, "XPENDING %s workers", stream);
    long long n = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 ? r->element[0]->integer : -1;
    if (r) freeReplyObject(r);
    return n;
}

static void test_results(struct sd_rq *q, struct rw_proc *w) {
    struct rw_job j = {"a red cube", 32, 2, 1, 500};
    if (rw_reference(&j, 4, dir)) {
        test_fail("worker: sdrt txt2img reference failed");
        return;
    }
    struct sd_ctx ctx = {0};
    int st = 0;
    for (int i = 0; i < 4; i++) {
        struct rw_job k = j;
        k.seed = j.seed + i;
        char id[32], *req = rw_wire(&k, "tiny-sd1");
        snprintf(id, sizeof id, "res%d", i);
        st |= sd_rq_submit(&ctx, q, "tiny-sd1", id, req);
        free(req);
    }
    int same = 0;
    for (int i = 0; i < 4; i++) {
        char id[32], ref[300];
        snprintf(id, sizeof id, "res%d", i);
        snprintf(ref, sizeof ref, "%s/ref-%d.png", dir, i);
        struct sd_rq_result r;
        size_t n = 0;
        char *want = rw_read_file(ref, &n);
        if (wait_result(q, id, &r, 60) && !strcmp(r.state, "done") && r.n == 1 && want && r.images[0].len == n &&
            !memcmp(r.images[0].png, want, n) && r.images[0].seed == (uint64_t)(j.seed + i) && r.timings &&
            strstr(r.timings, "run_s") && r.worker && !strcmp(r.worker, "w1"))
            same++;
        free(want);
        sd_rq_result_free(&r);
    }
    CHECK(st == SD_OK && same == 4, "worker: 4 jobs, each result PNG byte-identical to sdrt txt2img (seed, timings, worker)");
    struct evs e = {0};
    char last[1][32] = {"0"};
    const char *ids[1] = {"res0"};
    sd_rq_read_events(&ctx, q, 1, ids, last, 0, count_ev, &e);
    char b1[64], b2[64], b3[64];
    CHECK(e.running == 1 && e.worker_named == 1 && e.step == 2 && e.result == 1 &&
              !strcmp(job_field(q, "res0", "state", b1, sizeof b1), "done") &&
              !strcmp(job_field(q, "res0", "worker", b2, sizeof b2), "w1") && !strcmp(job_field(q, "res0", "step", b3, sizeof b3), "2"),
          "worker: events running (with worker) / 2 steps / result, P:job done by w1 at step 2");
    (void)w;
}

static void test_malformed(struct sd_rq *q, struct rw_proc *w, redisContext *c) {
    redisReply *r;
    const char *cmds[] = {"XADD sdrt:jobs:tiny-sd1 * junk 1", "XADD sdrt:jobs:tiny-sd1 * id bad1 req {not-json",
                          "XADD sdrt:jobs:tiny-sd1 * id bad2 req {\"v\":1}", "XADD sdrt:jobs:tiny-sd1 * id bad/3 req {}"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if ((r = redisCommand(c, cmds[i]))) freeReplyObject(r);
    /* A request for another model in this model's stream. */
    struct rw_job j = {"a red cube", 32, 2, 1, 500};
    char *req = rw_wire(&j, "other");
    r = redisCommand(c, "XADD sdrt:jobs:tiny-sd1 * id bad4 req %s", req);
    if (r) freeReplyObject(r);
    free(req);
    /* Then a good job: the worker is still there. */
    struct sd_ctx ctx = {0};
    req = rw_wire(&j, "tiny-sd1");
    int st = sd_rq_submit(&ctx, q, "tiny-sd1", "after-bad", req);
    free(req);
    struct sd_rq_result res;
    int ok = st == SD_OK && wait_result(q, "after-bad", &res, 60) && !strcmp(res.state, "done");
    sd_rq_result_free(&res);
    struct sd_rq_result f1, f2;
    int found1 = 0, found2 = 0;
    sd_rq_result(&ctx, q, "bad1", &f1, &found1);
    sd_rq_result(&ctx, q, "bad2", &f2, &found2);
    int errs = found1 && !strcmp(f1.state, "failed") && f1.error && strstr(f1.error, "not JSON") && found2 &&
               f2.error && strstr(f2.error, "missing field");
    sd_rq_result_free(&f1);
    sd_rq_result_free(&f2);
    CHECK(ok && errs && xlen(c, "sdrt:dead:tiny-sd1") == 5 && w->pid > 0 && kill(w->pid, 0) == 0 &&
              pending(c, "sdrt:jobs:tiny-sd1") == 0 && rw_log_has(w, "dead-lettered: request for model 'other'"),
          "worker: 5 malformed entries (no id, not JSON, missing fields, bad id, wrong model) dead-lettered with "
          "failed results; the worker keeps going; pending 0");
}

/* A job delivered again after its result was written: acknowledged, not run. */
static void test_duplicate(struct sd_rq *q, struct rw_proc *w, redisContext *c) {
    struct sd_ctx ctx = {0};
    json_t *s0 = NULL;
    sd_rq_stats(&ctx, q, &s0);
    long long done0 = json_integer_value(json_object_get(json_object_get(s0, "stats"), "done"));
    json_decref(s0);
    redisReply *r = redisCommand(c, "XRANGE sdrt:jobs:tiny-sd1 - + COUNT 1");
    const redisReply *req = r && r->type == REDIS_REPLY_ARRAY && r->elements ? field_of(r->element[0]->element[1], "req") : NULL;
    redisReply *a = req ? redisCommand(c, "XADD sdrt:jobs:tiny-sd1 * id res0 req %s", req->str) : NULL;
    if (a) freeReplyObject(a);
    if (r) freeReplyObject(r);
    for (int i = 0; i < 200 && !rw_log_has(w, "job res0 has a result already"); i++) redis_sleep_ms(50);
    json_t *s = NULL;
    sd_rq_stats(&ctx, q, &s);
    long long done = json_integer_value(json_object_get(json_object_get(s, "stats"), "done"));
    json_decref(s);
    CHECK(rw_log_has(w, "job res0 has a result already") && pending(c, "sdrt:jobs:tiny-sd1") == 0 && done == done0,
          "worker: a job delivered again after its result is acknowledged without a second result (done %lld -> %lld)",
          done0, done);
}

static void test_cancel(struct sd_rq *q) {
    struct sd_ctx ctx = {0};
    struct rw_job j = {"a long one", 32, 400, 1, 7};
    char *req = rw_wire(&j, "tiny-sd1");
    int st = sd_rq_submit(&ctx, q, "tiny-sd1", "cancel-run", req);
    st |= sd_rq_submit(&ctx, q, "tiny-sd1", "cancel-queued", req);
    st |= sd_rq_cancel(&ctx, q, "cancel-queued", 0);
    free(req);
    int running = wait_state(q, "cancel-run", "running", 60);
    char b[64];
    for (int i = 0; i < 200 && atoi(job_field(q, "cancel-run", "step", b, sizeof b)) < 2; i++) redis_sleep_ms(50);
    st |= sd_rq_cancel(&ctx, q, "cancel-run", 0);
    struct sd_rq_result r1, r2;
    int got1 = wait_result(q, "cancel-run", &r1, 60), got2 = wait_result(q, "cancel-queued", &r2, 60);
    CHECK(st == SD_OK && running && got1 && !strcmp(r1.state, "cancelled") && got2 && !strcmp(r2.state, "cancelled") && r2.n == 0,
          "worker: cancel reaches a running job (stopped at step %s of 400) and a queued one (not run)",
          job_field(q, "cancel-run", "step", b, sizeof b));
    sd_rq_result_free(&r1);
    sd_rq_result_free(&r2);
}

/* Skip ends the current iteration (no image for it), the next one runs. */
static void test_skip(struct sd_rq *q) {
    struct sd_ctx ctx = {0};
    struct rw_job j = {"skip me", 32, 150, 2, 40};
    char *req = rw_wire(&j, "tiny-sd1");
    int st = sd_rq_submit(&ctx, q, "tiny-sd1", "skip", req);
    free(req);
    int running = wait_state(q, "skip", "running", 60);
    char b[64];
    for (int i = 0; i < 200 && atoi(job_field(q, "skip", "step", b, sizeof b)) < 2; i++) redis_sleep_ms(20);
    st |= sd_rq_cancel(&ctx, q, "skip", 1);
    struct sd_rq_result r;
    int got = wait_result(q, "skip", &r, 120);
    CHECK(st == SD_OK && running && got && !strcmp(r.state, "done") && r.n == 1 && r.images[0].seed == 41,
          "worker: skip drops the running iteration, the next runs (1 image, seed 41)");
    if (got) sd_rq_result_free(&r);
}

/* A job running 2.5x --claim-idle (1 s) is not taken again: the heartbeats
 * keep its entry fresh (one delivery, no duplicate execution). */
static void test_heartbeat(struct sd_rq *q) {
    struct sd_ctx ctx = {0};
    struct rw_job j = {"a long one", 128, 1000, 1, 8};
    char *req = rw_wire(&j, "tiny-sd1");
    int st = sd_rq_submit(&ctx, q, "tiny-sd1", "long", req);
    free(req);
    int running = wait_state(q, "long", "running", 60);
    double t0 = sd_time_s();
    redis_sleep_ms(2500);
    char b[64], a[64];
    int still = !strcmp(job_field(q, "long", "state", b, sizeof b), "running");
    double ran = sd_time_s() - t0;
    st |= sd_rq_cancel(&ctx, q, "long", 0);
    struct sd_rq_result r;
    int got = wait_result(q, "long", &r, 60);
    json_t *s = NULL;
    sd_rq_stats(&ctx, q, &s);
    long long dups = json_integer_value(json_object_get(json_object_get(s, "stats"), "duplicates"));
    json_decref(s);
    CHECK(st == SD_OK && running && still && got && !strcmp(r.state, "cancelled") && dups == 0 &&
              !strcmp(job_field(q, "long", "attempts", a, sizeof a), "1"),
          "worker: a job running %.1f s with --claim-idle 1 s keeps its one delivery (heartbeats), no duplicate; "
          "then cancelled (%s %s, still %d, dups %lld)", ran, got ? r.state : "no result", got && r.error ? r.error : "",
          still, dups);
    if (got) sd_rq_result_free(&r);
}

/* The model "broken" is listed (--models-dir) but does not load: each
 * attempt fails, the entry is retried, then dead-lettered with the error. */
static void test_failing(struct sd_rq *q, redisContext *c) {
    struct sd_ctx ctx = {0};
    struct rw_job j = {"x", 32, 2, 1, 1};
    char *req = rw_wire(&j, "broken");
    double t0 = sd_time_s();
    int st = sd_rq_submit(&ctx, q, "broken", "fails", req);
    free(req);
    struct sd_rq_result r;
    int got = wait_result(q, "fails", &r, 60);
    double took = sd_time_s() - t0;
    redisReply *d = redisCommand(c, "XRANGE sdrt:dead:broken - +");
    const redisReply *err = d && d->type == REDIS_REPLY_ARRAY && d->elements == 1 ? field_of(d->element[0]->element[1], "error") : NULL;
    const redisReply *att = d && d->type == REDIS_REPLY_ARRAY && d->elements == 1 ? field_of(d->element[0]->element[1], "attempts") : NULL;
    CHECK(st == SD_OK && got && !strcmp(r.state, "failed") && r.error && strstr(r.error, "job failed 3 times; last error: model broken") &&
              err && strstr(err->str, "job failed 3 times") && att && !strcmp(att->str, "3") && pending(c, "sdrt:jobs:broken") == 0,
          "worker: a job failing on every attempt is dead-lettered after 3 with its error, in %.1f s (%s)", took,
          err ? err->str : "none");
    if (d) freeReplyObject(d);
    sd_rq_result_free(&r);
    /* A request every worker rejects (steps above the sampler's 1000) fails at once, on its first delivery. */
    struct rw_job bad = {"x", 32, 5000, 1, 1};
    req = rw_wire(&bad, "tiny-sd1");
    t0 = sd_time_s();
    st = sd_rq_submit(&ctx, q, "tiny-sd1", "invalid", req);
    free(req);
    got = wait_result(q, "invalid", &r, 60);
    took = sd_time_s() - t0;
    CHECK(st == SD_OK && got && !strcmp(r.state, "failed") && r.error && strstr(r.error, "invalid request: steps must be 1..1000") &&
              took < 5 && pending(c, "sdrt:jobs:tiny-sd1") == 0,
          "worker: an invalid request (5000 steps) fails at once on its first delivery (%.2f s): %s", took, r.error ? r.error : "");
    if (got) sd_rq_result_free(&r);
    /* A LoRA that does not fit the model (matches none of its weights) fails
     * the same on every worker: failed at once with the error naming it, not
     * retried --max-attempts times. */
    struct rw_job lj = {"x <lora:nomatch:1>", 32, 2, 1, 1};
    req = rw_wire(&lj, "tiny-sd1");
    t0 = sd_time_s();
    st = sd_rq_submit(&ctx, q, "tiny-sd1", "lora-misfit", req);
    free(req);
    got = wait_result(q, "lora-misfit", &r, 60);
    took = sd_time_s() - t0;
    CHECK(st == SD_OK && got && !strcmp(r.state, "failed") && r.error && strstr(r.error, "invalid request: ") &&
              strstr(r.error, "nomatch") && took < 5 && pending(c, "sdrt:jobs:tiny-sd1") == 0,
          "worker: a LoRA that does not fit the model fails at once on its first delivery (%.2f s): %s %.200s", took,
          got ? r.state : "no result", got && r.error ? r.error : "");
    if (got) sd_rq_result_free(&r);
}

static void test_sigterm(struct sd_rq *q, struct rw_proc *w) {
    struct sd_ctx ctx = {0};
    struct rw_job j = {"finish me", 32, 60, 1, 3};
    char *req = rw_wire(&j, "tiny-sd1");
    int st = sd_rq_submit(&ctx, q, "tiny-sd1", "term-run", req);
    free(req);
    int running = wait_state(q, "term-run", "running", 60);
    char b[64];
    for (int i = 0; i < 200 && atoi(job_field(q, "term-run", "step", b, sizeof b)) < 1; i++) redis_sleep_ms(50);
    int rc = rw_signal_wait(w, SIGTERM, 120);
    if (rc != 0) rw_log_tail(w, 30);
    struct sd_rq_result r;
    int got = wait_result(q, "term-run", &r, 1);
    json_t *s = NULL;
    sd_rq_stats(&ctx, q, &s);
    size_t alive = json_array_size(json_object_get(s, "workers"));
    json_decref(s);
    CHECK(st == SD_OK && running && rc == 0 && got && !strcmp(r.state, "done") && r.n == 1 && alive == 0 &&
              rw_log_has(w, "worker w1 stopped: taken"),
          "worker: SIGTERM mid-job finishes it (result done), exits 0 and leaves the workers list (rc %d)", rc);
    sd_rq_result_free(&r);
}

/* A job for the worker's second model (tiny-b: a link to the tiny model
 * under another name): the worker switches, the image is `sdrt txt2img
 * --model models/tiny-b` (whose infotext names tiny-b); then back. */
static void test_switch(struct sd_rq *q) {
    char cmd[PATH_MAX * 2], ref[300];
    snprintf(ref, sizeof ref, "%s/ref-b.png", dir);
    snprintf(cmd, sizeof cmd,
             "%s txt2img --model %s/models/tiny-b -p 'a red cube' -n 'blurry' --steps 2 -W 32 -H 32 --sampler 'Euler a' "
             "--cfg-scale 7.5 --seed 77 --threads 1 -q -o %s", rw_sdrt, dir, ref);
    if (system(cmd)) {
        test_fail("worker: sdrt txt2img on tiny-b failed");
        return;
    }
    struct sd_ctx ctx = {0};
    struct rw_job j = {"a red cube", 32, 2, 1, 77};
    char *req = rw_wire(&j, "tiny-b");
    int st = sd_rq_submit(&ctx, q, "tiny-b", "on-b", req);
    free(req);
    req = rw_wire(&j, "tiny-sd1");
    st |= sd_rq_submit(&ctx, q, "tiny-sd1", "back-on-a", req);
    free(req);
    struct sd_rq_result r, r2;
    size_t n = 0;
    char *want = rw_read_file(ref, &n);
    int got = wait_result(q, "on-b", &r, 60), got2 = wait_result(q, "back-on-a", &r2, 60);
    CHECK(st == SD_OK && got && !strcmp(r.state, "done") && r.n == 1 && want && r.images[0].len == n &&
              !memcmp(r.images[0].png, want, n) && strstr(r.images[0].infotext, "Model: tiny-b") && got2 &&
              !strcmp(r2.state, "done") && strstr(r2.images[0].infotext, "Model: tiny-sd1"),
          "worker: a job for its second model switches to it (byte-identical to sdrt txt2img on that model), the next "
          "one switches back");
    free(want);
    if (got) sd_rq_result_free(&r);
    if (got2) sd_rq_result_free(&r2);
}

/* A worker with two devices runs two jobs at once; same bytes. */
static void test_two_devices(struct sd_rq *q, const char *const *base_args) {
    const char *args[16];
    int a = 0;
    for (int i = 0; base_args[i]; i++) args[a++] = base_args[i];
    args[a++] = "--devices";
    args[a++] = "cpu,cpu";
    args[a] = NULL;
    struct rw_proc w2;
    if (rw_start(&w2, dir, rs.url, "w2", args)) {
        test_fail("worker: a worker with --devices cpu,cpu did not start");
        return;
    }
    struct sd_ctx ctx = {0};
    struct rw_job j = {"a red cube", 32, 2, 1, 500};
    int st = 0;
    for (int i = 0; i < 4; i++) {
        struct rw_job k = j;
        k.seed = j.seed + i;
        char id[32], *req = rw_wire(&k, "tiny-sd1");
        snprintf(id, sizeof id, "two%d", i);
        st |= sd_rq_submit(&ctx, q, "tiny-sd1", id, req);
        free(req);
    }
    int same = 0;
    char devs[4][64];
    for (int i = 0; i < 4; i++) {
        char id[32], ref[300];
        snprintf(id, sizeof id, "two%d", i);
        snprintf(ref, sizeof ref, "%s/ref-%d.png", dir, i);
        struct sd_rq_result r;
        size_t n = 0;
        char *want = rw_read_file(ref, &n);
        if (wait_result(q, id, &r, 60) && !strcmp(r.state, "done") && r.n == 1 && want && r.images[0].len == n &&
            !memcmp(r.images[0].png, want, n))
            same++;
        job_field(q, id, "device", devs[i], sizeof devs[i]);
        free(want);
        sd_rq_result_free(&r);
    }
    json_t *s = NULL;
    sd_rq_stats(&ctx, q, &s);
    size_t nd = 0;
    json_t *ws = json_object_get(s, "workers");
    for (size_t i = 0; i < json_array_size(ws); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(ws, i), "name")), "w2"))
            nd = json_array_size(json_object_get(json_array_get(ws, i), "devices"));
    json_decref(s);
    int rc = rw_signal_wait(&w2, SIGTERM, 60);
    CHECK(st == SD_OK && same == 4 && nd == 2 && rc == 0, "worker: --devices cpu,cpu: 4 jobs byte-identical (devices %s %s %s %s), "
          "2 devices announced, SIGTERM exit 0", devs[0], devs[1], devs[2], devs[3]);
}

/* SIGTERM of an idle worker while Redis is down: it holds nothing, so it
 * exits at once instead of waiting for Redis (runs last: Redis stays down). */
static void test_sigterm_outage(void) {
    const char *args[] = {"--model", "tests/models/tiny-sd1", "--threads", "1", "--no-warmup", NULL};
    struct rw_proc w3;
    setenv("SDRT_REDIS_URL", rs.url, 1); /* w3 is told the URL by the environment */
    int started = rw_start(&w3, dir, NULL, "w3", args);
    unsetenv("SDRT_REDIS_URL");
    if (started) {
        test_fail("worker: w3 did not start");
        return;
    }
    redis_halt(&rs, SIGKILL);
    redis_sleep_ms(300);
    double t0 = sd_time_s();
    int rc = rw_signal_wait(&w3, SIGTERM, 20);
    double took = sd_time_s() - t0;
    if (rc != 0) rw_log_tail(&w3, 10);
    CHECK(rc == 0 && took < 10 && rw_log_has(&w3, "reconnecting"),
          "worker: (Redis URL from SDRT_REDIS_URL) SIGTERM while Redis is down and nothing is held exits 0 in %.1f s", took);
}

/* Usage errors: exit 2 with the reason, before loading anything. */
static void test_usage(void) {
    char cmd[PATH_MAX + 200];
    struct { const char *args, *want; } cases[] = {
        {"--model tests/models/tiny-sd1", "--redis URL (or SDRT_REDIS_URL) is required"},
        {"--redis http://x --model tests/models/tiny-sd1", "neither redis://"},
        {"--redis redis://h:99999 --model tests/models/tiny-sd1", "bad port"},
        {"--redis redis://h --model tests/models/tiny-sd1 --claim-idle 5", "--claim-idle must be >= 100"},
        {"--redis redis://h", "--model or --models-dir is required"},
    };
    int good = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        snprintf(cmd, sizeof cmd, "%s worker %s 2>&1", rw_sdrt, cases[i].args);
        FILE *p = popen(cmd, "r");
        char out[1024] = "";
        size_t len = p ? fread(out, 1, sizeof out - 1, p) : 0;
        out[len] = 0;
        int rc = p ? pclose(p) : -1;
        if (WIFEXITED(rc) && WEXITSTATUS(rc) == 2 && strstr(out, cases[i].want)) good++;
        else printf("  %s: rc %d, %s", cases[i].args, rc, out);
    }
    CHECK(good == n, "worker: %d usage errors exit 2 naming the problem", n);
}

int main(int argc, char **argv) {
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    rw_init(argv[0]);
    test_usage();
    if (redis_start(&rs, 0, NULL)) {
        test_fail("worker: could not start redis-server");
        redis_stop(&rs);
        return test_summary();
    }
    snprintf(dir, sizeof dir, "%s", rs.dir);
    char models[300], broken[400];
    snprintf(models, sizeof models, "%s/models", dir);
    mkdir(models, 0755);
    snprintf(broken, sizeof broken, "%s/broken.safetensors", models);
    char tiny[PATH_MAX], link[400];
    snprintf(link, sizeof link, "%s/tiny-b", models);
    if (!realpath("tests/models/tiny-sd1", tiny) || symlink(tiny, link)) test_fail("worker: cannot link %s", link);
    FILE *f = fopen(broken, "wb");
    if (f) fputs("this is not a safetensors file", f), fclose(f);
    /* A well-formed kohya LoRA for a module no SD model has: it parses, and
     * applying it fails (matches nothing) on every worker. */
    char loras[300], nomatch[400];
    snprintf(loras, sizeof loras, "%s/loras", dir);
    mkdir(loras, 0755);
    snprintf(nomatch, sizeof nomatch, "%s/nomatch.safetensors", loras);
    static float down[4 * 8], up[8 * 4];
    struct sd_st_tensor lt[2] = {
        {.name = "lora_unet_no_such_block_proj.lora_down.weight", .type = SD_F32, .n_dims = 2, .shape = {4, 8}, .nbytes = sizeof down, .data = down},
        {.name = "lora_unet_no_such_block_proj.lora_up.weight", .type = SD_F32, .n_dims = 2, .shape = {8, 4}, .nbytes = sizeof up, .data = up}};
    struct sd_ctx lctx = {0};
    if (sd_st_write(&lctx, nomatch, lt, 2, NULL)) test_fail("worker: %s", lctx.msg);
    const char *args[] = {"--model", "tests/models/tiny-sd1", "--models-dir", models, "--claim-idle", "1000",
                          "--threads", "1", "--no-warmup", "--lora-dir", loras, NULL};
    struct rw_proc w;
    struct sd_rq *q = open_q();
    redisContext *c = redis_raw(&rs);
    if (!q || rw_start(&w, dir, rs.url, "w1", args)) {
        test_fail("worker: sdrt worker did not start (log %s)", w.log);
    } else {
        test_results(q, &w);
        test_malformed(q, &w, c);
        test_switch(q);
        test_duplicate(q, &w, c);
        test_cancel(q);
        test_skip(q);
        test_heartbeat(q);
        test_failing(q, c);
        test_sigterm(q, &w);
        test_two_devices(q, args);
        test_sigterm_outage();
    }
    if (w.pid > 0) rw_signal_wait(&w, SIGKILL, 10);
    sd_rq_close(q);
    if (c) redisFree(c);
    redis_stop(&rs);
    return test_summary();
}
