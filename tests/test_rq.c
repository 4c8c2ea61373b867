/* test_rq.c - the Redis job queue (host/queue) against a real redis-server
 * this test starts itself (unix socket + a free loopback port, AOF on):
 * URL parsing, AUTH/SELECT, submit/state/events/cancel/result, take with
 * deliveries, idempotent complete, dead letters, reclaim of a stale entry,
 * heartbeats keeping a live entry, reconnect across a Redis restart. */
#include <pthread.h>

#include "redis_harness.h"
#include "rq.h"
#include "test.h"

static void test_urls(void) {
    struct sd_ctx ctx = {0};
    struct sd_rq_url u;
    int ok = !sd_rq_url_parse(&ctx, "redis://localhost", &u) && !strcmp(u.host, "localhost") && u.port == 6379 &&
             u.db == 0 && !u.password[0] && !u.user[0] && !u.path[0];
    CHECK(ok, "rq url: redis://localhost = localhost:6379 db 0");
    ok = !sd_rq_url_parse(&ctx, "redis://:s%40cret@10.0.0.2:6380/5", &u) && !strcmp(u.host, "10.0.0.2") &&
         u.port == 6380 && u.db == 5 && !strcmp(u.password, "s@cret") && !u.user[0];
    CHECK(ok, "rq url: password (percent-decoded), port, db");
    ok = !sd_rq_url_parse(&ctx, "redis://alice:pw@h:1/", &u) && !strcmp(u.user, "alice") && !strcmp(u.password, "pw") &&
         u.port == 1 && u.db == 0;
    CHECK(ok, "rq url: user:password");
    ok = !sd_rq_url_parse(&ctx, "redis://[::1]:7000/2", &u) && !strcmp(u.host, "::1") && u.port == 7000 && u.db == 2;
    CHECK(ok, "rq url: [IPv6]:port");
    ok = !sd_rq_url_parse(&ctx, "unix:///run/redis/redis.sock?db=3&password=x%26y", &u) &&
         !strcmp(u.path, "/run/redis/redis.sock") && u.db == 3 && !strcmp(u.password, "x&y");
    CHECK(ok, "rq url: unix socket with db and password");
    const char *bad[] = {"", "http://x", "redis://", "redis://h:0", "redis://h:70000", "redis://h:12x", "redis://h/x",
                         "unix://relative", "unix:///s?dbx=1", "redis://:%zz@h"};
    int rejected = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) rejected += sd_rq_url_parse(&ctx, bad[i], &u) == SD_ERR_INVALID;
    CHECK(rejected == (int)(sizeof bad / sizeof bad[0]), "rq url: %d malformed URLs rejected (last: %s)", rejected, ctx.msg);
    CHECK(sd_rq_name_ok("tiny-sd1") && sd_rq_name_ok("v1-5_pruned.emaonly") && !sd_rq_name_ok("a:b") &&
              !sd_rq_name_ok("..") && !sd_rq_name_ok("") && !sd_rq_name_ok("a b"),
          "rq names: [A-Za-z0-9._-] only");
}

static struct sd_rq *open_q(struct sd_ctx *ctx, const char *url, int claim_idle_ms) {
    struct sd_rq_opts o;
    sd_rq_opts_init(&o);
    o.url = url;
    o.prefix = "t";
    o.claim_idle_ms = claim_idle_ms;
    o.retry_ms = 20000;
    struct sd_rq *q = NULL;
    if (sd_rq_open(ctx, &o, &q)) printf("  open %s: %s\n", url, ctx->msg);
    return q;
}

static void test_auth(struct redis_srv *rs) {
    struct sd_ctx ctx = {0};
    char url[300];
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", rs->port);
    struct sd_rq_opts o;
    sd_rq_opts_init(&o);
    o.url = url;
    o.retry_ms = 0;
    struct sd_rq *q = NULL;
    int st = sd_rq_open(&ctx, &o, &q);
    CHECK(st == SD_ERR_IO && !q && strstr(ctx.msg, "AUTH"), "rq open: a wrong password fails with the AUTH error (%s)", ctx.msg);
    /* An ACL user with a password, on TCP, db 2. */
    redisContext *c = redis_raw(rs);
    redisReply *r = redisCommand(c, "ACL SETUSER bob on >b0bpw ~* &* +@all");
    int made = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    snprintf(url, sizeof url, "redis://bob:b0bpw@127.0.0.1:%d/2", rs->port);
    q = open_q(&ctx, url, 30000);
    st = q ? sd_rq_submit(&ctx, q, "m", "auth-job", "{}") : -1;
    r = redisCommand(c, "SELECT 2");
    if (r) freeReplyObject(r);
    r = redisCommand(c, "EXISTS t:job:auth-job");
    int in2 = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r) freeReplyObject(r);
    r = redisCommand(c, "SELECT 0");
    if (r) freeReplyObject(r);
    CHECK(made && st == SD_OK && in2, "rq open: redis://user:password@127.0.0.1:PORT/2 (ACL user, TCP, SELECT 2)");
    sd_rq_close(q);
    snprintf(url, sizeof url, "unix://%s?db=3&password=%s", rs->sock, rs->password);
    q = open_q(&ctx, url, 30000);
    st = q ? sd_rq_submit(&ctx, q, "m", "unix-job", "{}") : -1;
    r = redisCommand(c, "SELECT 3");
    if (r) freeReplyObject(r);
    r = redisCommand(c, "EXISTS t:job:unix-job");
    in2 = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r) freeReplyObject(r);
    r = redisCommand(c, "FLUSHALL");
    if (r) freeReplyObject(r);
    CHECK(st == SD_OK && in2, "rq open: unix:///path?db=3&password=... (SELECT 3)");
    sd_rq_close(q);
    redisFree(c);
}

struct evlog {
    char ev[16][32];
    char data[16][128];
    int n;
};
static int on_event(void *user, int idx, const char *event, const char *data) {
    struct evlog *l = user;
    (void)idx;
    if (l->n < 16) {
        snprintf(l->ev[l->n], 32, "%s", event);
        snprintf(l->data[l->n], 128, "%s", data);
        l->n++;
    }
    return 0;
}

static long long pending_count(redisContext *c, const char *stream) {
    redisReply *r = redisCommand(c, "XPENDING %s workers", stream);
    long long n = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 ? r->element[0]->integer : -1;
    if (r) freeReplyObject(r);
    return n;
}

static long long xlen_of(redisContext *c, const char *key) {
    redisReply *r = redisCommand(c, "XLEN %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r) freeReplyObject(r);
    return n;
}

static void test_flow(struct redis_srv *rs) {
    struct sd_ctx ctx = {0};
    struct sd_rq *fe = open_q(&ctx, rs->url, 30000), *wk = open_q(&ctx, rs->url, 30000);
    if (!fe || !wk) {
        CHECK(0, "rq flow: connect");
        return;
    }
    int st = sd_rq_submit(&ctx, fe, "tiny-sd1", "job1", "{\"prompt\":\"a cat\",\"seed\":7}");
    int st2 = sd_rq_submit(&ctx, fe, "tiny-sd1", "job1", "{}");
    CHECK(st == SD_OK && st2 == SD_ERR_INVALID && strstr(ctx.msg, "exists"), "rq submit: once per id (%s)", ctx.msg);
    json_t *s = NULL;
    st = sd_rq_job_state(&ctx, fe, "job1", &s);
    CHECK(st == SD_OK && !strcmp(json_string_value(json_object_get(s, "state")), "queued") &&
              !strcmp(json_string_value(json_object_get(s, "model")), "tiny-sd1") &&
              json_integer_value(json_object_get(s, "created")) > 1700000000000LL &&
              json_integer_value(json_object_get(s, "seed")) == 7 && json_integer_value(json_object_get(s, "iters")) == 1,
          "rq job state: queued, model, created (unix ms), the request's seed, iters 1 by default");
    json_decref(s);
    st = sd_rq_job_state(&ctx, fe, "nope", &s);
    CHECK(st == SD_ERR_INVALID && strstr(ctx.msg, "not found"), "rq job state: unknown id -> not found");

    const char *models[2] = {"other", "tiny-sd1"};
    struct sd_rq_entry e;
    int got = 0;
    st = sd_rq_take(&ctx, wk, "w1", models, 2, 100, &e, &got);
    CHECK(st == SD_OK && got && !strcmp(e.id, "job1") && !strcmp(e.model, "tiny-sd1") && e.deliveries == 1 && !e.bad[0] &&
              e.req && strstr(e.req, "a cat"),
          "rq take: the entry of the model's stream, first delivery");
    struct sd_rq_entry e2;
    int got2 = 1;
    double t0 = sd_time_s();
    st = sd_rq_take(&ctx, wk, "w2", models, 2, 300, &e2, &got2);
    double waited = sd_time_s() - t0;
    CHECK(st == SD_OK && !got2 && waited > 0.25 && waited < 3, "rq take: nothing new -> waits block_ms (%.2f s) and returns none", waited);

    const char *kv[4] = {"state", "running", "worker", "w1"};
    st = sd_rq_job_set(&ctx, wk, "job1", 2, kv);
    st |= sd_rq_publish(&ctx, wk, "job1", "running", "{\"id\":\"job1\"}");
    st |= sd_rq_publish(&ctx, wk, "job1", "step", "{\"step\":1}");
    struct evlog lg = {0};
    char last[1][32] = {"0"};
    const char *ids[1] = {"job1"};
    st |= sd_rq_read_events(&ctx, fe, 1, ids, last, 0, on_event, &lg);
    CHECK(st == SD_OK && lg.n == 2 && !strcmp(lg.ev[0], "running") && !strcmp(lg.ev[1], "step") &&
              !strcmp(lg.data[1], "{\"step\":1}"),
          "rq events: published events read back in order");
    lg.n = 0;
    t0 = sd_time_s();
    st = sd_rq_read_events(&ctx, fe, 1, ids, last, 200, on_event, &lg);
    CHECK(st == SD_OK && lg.n == 0 && sd_time_s() - t0 > 0.15, "rq events: from the last id, blocking, none new");

    int cancel = 1, skip = 1;
    st = sd_rq_flags(&ctx, wk, "job1", &cancel, &skip);
    int c0 = cancel, s0 = skip;
    st |= sd_rq_cancel(&ctx, fe, "job1", 1);
    st |= sd_rq_flags(&ctx, wk, "job1", &cancel, &skip);
    int s1 = skip, c1 = cancel;
    st |= sd_rq_cancel(&ctx, fe, "job1", 0);
    st |= sd_rq_flags(&ctx, wk, "job1", &cancel, &skip);
    CHECK(st == SD_OK && !c0 && !s0 && s1 && !c1 && cancel, "rq cancel: skip then cancel flags reach the worker");
    CHECK(sd_rq_cancel(&ctx, fe, "nope", 0) == SD_ERR_INVALID, "rq cancel: unknown job -> not found");

    /* Binary PNG bytes (NUL included) and two images. */
    uint8_t png0[300], png1[5] = {0, 1, 0, 255, 0};
    for (int i = 0; i < 300; i++) png0[i] = (uint8_t)(i * 37);
    struct sd_rq_image im[2] = {{png0, sizeof png0, 18446744073709551615ull, "a cat\nSteps: 2"}, {png1, 5, 8, ""}};
    struct sd_rq_result res = {.state = "done", .n = 2, .images = im, .timings = "{\"total_s\":1.5}"};
    int written = 0, written2 = 1;
    st = sd_rq_complete(&ctx, wk, &e, "w1", &res, "result", "{\"id\":\"job1\",\"state\":\"done\"}", &written);
    st |= sd_rq_complete(&ctx, wk, &e, "w1", &res, "result", "{}", &written2);
    redisContext *c = redis_raw(rs);
    long long pend = pending_count(c, "t:jobs:tiny-sd1");
    CHECK(st == SD_OK && written && !written2 && pend == 0, "rq complete: written once, the second is a duplicate; pending 0");
    struct sd_rq_result back;
    int found = 0;
    st = sd_rq_result(&ctx, fe, "job1", &back, &found);

    int same = st == SD_OK && found && !strcmp(back.state, "done") && back.n == 2 && back.images[0].len == 300 &&
               !memcmp(back.images[0].png, png0, 300) && back.images[1].len == 5 && !memcmp(back.images[1].png, png1, 5) &&
               back.images[0].seed == 18446744073709551615ull && back.images[1].seed == 8 &&
               !strcmp(back.images[0].infotext, "a cat\nSteps: 2") && !strcmp(back.timings, "{\"total_s\":1.5}") &&
               !strcmp(back.worker, "w1") && !back.error;
    CHECK(same, "rq result: bytes, seeds (u64), infotexts, timings, worker read back exactly");
    sd_rq_result_free(&back);
    st = sd_rq_job_state(&ctx, fe, "job1", &s);
    CHECK(st == SD_OK && !strcmp(json_string_value(json_object_get(s, "state")), "done") &&
              json_integer_value(json_object_get(s, "ended")) > 0,
          "rq complete: the job's state is done with its end time");
    json_decref(s);
    lg.n = 0;
    st = sd_rq_read_events(&ctx, fe, 1, ids, last, 0, on_event, &lg);
    CHECK(st == SD_OK && lg.n == 1 && !strcmp(lg.ev[0], "result"), "rq complete: the final event follows the others");
    redisReply *r = redisCommand(c, "TTL t:result:job1");
    long long ttl = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -9;
    if (r) freeReplyObject(r);
    CHECK(ttl > 3000 && ttl <= 3600, "rq result: TTL result_ttl_s (%lld s)", ttl);
    sd_rq_entry_free(&e);
    st = sd_rq_result(&ctx, fe, "job9", &back, &found);
    CHECK(st == SD_OK && !found, "rq result: none yet -> found 0");

    /* Malformed entries: missing id, missing req. */
    r = redisCommand(c, "XADD t:jobs:tiny-sd1 * junk 1");
    if (r) freeReplyObject(r);
    r = redisCommand(c, "XADD t:jobs:tiny-sd1 * id job-noreq");
    if (r) freeReplyObject(r);
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        st = sd_rq_take(&ctx, wk, "w1", models, 2, 0, &e, &got);
        if (st == SD_OK && got && e.bad[0]) {
            bad++;
            st = sd_rq_dead_letter(&ctx, wk, &e, "w1", e.bad);
        }
        sd_rq_entry_free(&e);
    }
    r = redisCommand(c, "XLEN t:dead:tiny-sd1");
    long long dead = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r) freeReplyObject(r);
    found = 0;
    int st3 = sd_rq_result(&ctx, fe, "job-noreq", &back, &found);
    int failed = st3 == SD_OK && found && !strcmp(back.state, "failed") && back.error && strstr(back.error, "'req'");
    sd_rq_result_free(&back);
    CHECK(bad == 2 && dead == 2 && failed && pending_count(c, "t:jobs:tiny-sd1") == 0,
          "rq dead letter: 2 malformed entries dead-lettered, the one with an id gets a failed result; pending 0");

    json_t *stats = NULL;
    st = sd_rq_stats(&ctx, fe, &stats);
    json_t *m = json_object_get(json_object_get(stats, "models"), "tiny-sd1");
    CHECK(st == SD_OK && json_integer_value(json_object_get(m, "length")) == 3 &&
              json_integer_value(json_object_get(m, "pending")) == 0 && json_integer_value(json_object_get(m, "dead")) == 2 &&
              json_integer_value(json_object_get(json_object_get(stats, "stats"), "duplicates")) == 1 &&
              json_integer_value(json_object_get(json_object_get(stats, "stats"), "done")) == 1,
          "rq stats: length 3, pending 0, dead 2, done 1, duplicates 1");
    json_decref(stats);
    /* Trim: the 3 acknowledged entries but the last delivered one go; a new
     * (undelivered) entry and a pending one stay. */
    long long trimmed = -1, trimmed2 = -1, trimmed3 = -1;
    st = sd_rq_trim(&ctx, wk, "tiny-sd1", 0, &trimmed);
    st |= sd_rq_submit(&ctx, fe, "tiny-sd1", "late1", "{}");
    st |= sd_rq_submit(&ctx, fe, "tiny-sd1", "late2", "{}");
    st |= sd_rq_take(&ctx, wk, "w1", models, 2, 0, &e, &got); /* late1: pending */
    st |= sd_rq_trim(&ctx, wk, "tiny-sd1", 0, &trimmed2);
    long long len = xlen_of(c, "t:jobs:tiny-sd1");
    st |= sd_rq_trim(&ctx, wk, "tiny-sd1", 3600000, &trimmed3);
    st |= sd_rq_trim(&ctx, wk, "nostream", 0, &trimmed3);
    CHECK(st == SD_OK && got && trimmed == 2 && trimmed2 == 1 && len == 2 && trimmed3 == 0,
          "rq trim: acknowledged entries trimmed (2, then the last acknowledged 1), pending and undelivered kept (length %lld)", len);
    sd_rq_entry_free(&e);
    st = sd_rq_worker_alive(&ctx, wk, "w1", "{\"pid\":1}", 5);
    st |= sd_rq_worker_alive(&ctx, wk, "w-gone", "{\"pid\":2}", 1);
    redis_sleep_ms(1100);
    st |= sd_rq_stats(&ctx, fe, &stats);
    json_t *ws = json_object_get(stats, "workers");
    CHECK(st == SD_OK && json_array_size(ws) == 1 && !strcmp(json_string_value(json_object_get(json_array_get(ws, 0), "name")), "w1"),
          "rq stats: alive workers only (an expired one is dropped)");
    json_decref(stats);
    sd_rq_worker_gone(&ctx, wk, "w1");
    redisFree(c);
    sd_rq_close(fe);
    sd_rq_close(wk);
}

/* A stale entry is reclaimed with its delivery count; a heartbeat keeps a live one. */
static void test_reclaim(struct redis_srv *rs) {
    struct sd_ctx ctx = {0};
    struct sd_rq *a = open_q(&ctx, rs->url, 600), *b = open_q(&ctx, rs->url, 600);
    if (!a || !b) {
        CHECK(0, "rq reclaim: connect");
        return;
    }
    const char *models[1] = {"m2"};
    int st = sd_rq_submit(&ctx, a, "m2", "r1", "{}");
    struct sd_rq_entry e, e2;
    int got = 0, got2 = 0;
    st |= sd_rq_take(&ctx, a, "A", models, 1, 0, &e, &got);
    /* A heartbeats every 0.1 s for 1.5 s (2.5x the idle threshold): B finds nothing. */
    int stolen = 0;
    for (int i = 0; i < 15; i++) {
        redis_sleep_ms(100);
        st |= sd_rq_heartbeat(&ctx, a, "A", &e);
        st |= sd_rq_take(&ctx, b, "B", models, 1, 0, &e2, &got2);
        if (got2) stolen++, sd_rq_entry_free(&e2);
    }
    CHECK(st == SD_OK && got && stolen == 0, "rq heartbeat: a live entry is not reclaimed (1.5 s, idle threshold 0.6 s)");
    /* A dies: after the threshold B reclaims it as delivery 2. */
    redis_sleep_ms(800);
    st = sd_rq_take(&ctx, b, "B", models, 1, 0, &e2, &got2);
    CHECK(st == SD_OK && got2 && !strcmp(e2.id, "r1") && e2.deliveries == 2 && !strcmp(e2.entry_id, e.entry_id),
          "rq reclaim: a stale entry is taken by another consumer, deliveries 2");
    sd_rq_entry_free(&e);
    sd_rq_entry_free(&e2);
    sd_rq_close(a);
    sd_rq_close(b);
}

/* Redis lost the stream (restarted without persistence, deleted by hand)
 * while a worker held entries: finishing them still works (no NOGROUP error
 * looping the worker), and the next take recreates the group. */
static void test_lost_stream(struct redis_srv *rs) {
    struct sd_ctx ctx = {0};
    struct sd_rq *q = open_q(&ctx, rs->url, 30000);
    if (!q) {
        CHECK(0, "rq lost stream: connect");
        return;
    }
    const char *models[1] = {"m4"};
    struct sd_rq_entry e1, e2;
    int g1 = 0, g2 = 0, got3 = 0;
    int st = sd_rq_submit(&ctx, q, "m4", "lost1", "{}") | sd_rq_submit(&ctx, q, "m4", "lost2", "{}");
    st |= sd_rq_take(&ctx, q, "L", models, 1, 0, &e1, &g1) | sd_rq_take(&ctx, q, "L", models, 1, 0, &e2, &g2);
    redisContext *c = redis_raw(rs);
    redisReply *r = redisCommand(c, "DEL t:jobs:m4");
    if (r) freeReplyObject(r);
    struct sd_rq_result res = {.state = "done", .n = 0};
    int written = 0;
    st |= sd_rq_complete(&ctx, q, &e1, "L", &res, "result", "{}", &written);
    int st2 = sd_rq_dead_letter(&ctx, q, &e2, "L", "gave up");
    struct sd_rq_result back;
    int found = 0;
    st2 |= sd_rq_result(&ctx, q, "lost2", &back, &found);
    int failed = found && !strcmp(back.state, "failed");
    if (found) sd_rq_result_free(&back);
    r = redisCommand(c, "XADD t:jobs:m4 * id lost3 req {}"); /* a stream without the group */
    if (r) freeReplyObject(r);
    struct sd_rq_entry e3;
    st2 |= sd_rq_take(&ctx, q, "L", models, 1, 0, &e3, &got3);
    CHECK(st == SD_OK && g1 && g2 && written && st2 == SD_OK && failed && got3 && !strcmp(e3.id, "lost3"),
          "rq lost stream: complete and dead-letter of entries whose stream vanished still write their results; "
          "the next take recreates the group (%s)", ctx.msg);
    sd_rq_entry_free(&e1);
    sd_rq_entry_free(&e2);
    sd_rq_entry_free(&e3);
    redisFree(c);
    sd_rq_close(q);
}

struct two_submits {
    struct sd_rq *q;
    int st;
};
static void *submit_two(void *p) {
    struct two_submits *a = p;
    struct sd_ctx ctx = {0};
    redis_sleep_ms(300);
    a->st = sd_rq_submit(&ctx, a->q, "ma", "two-a", "{}") | sd_rq_submit(&ctx, a->q, "mb", "two-b", "{}");
    return NULL;
}

/* A blocking take over two streams that both get an entry while it waits
 * takes one; the other stays undelivered (not pending under this consumer). */
static void test_multi(struct redis_srv *rs) {
    struct sd_ctx ctx = {0};
    struct sd_rq *a = open_q(&ctx, rs->url, 30000), *b = open_q(&ctx, rs->url, 30000);
    if (!a || !b) {
        CHECK(0, "rq multi: connect");
        return;
    }
    const char *models[2] = {"ma", "mb"};
    struct sd_rq_entry e;
    int got = 0;
    int st = sd_rq_take(&ctx, a, "M", models, 2, 0, &e, &got); /* creates the groups */
    struct two_submits ts = {b, -1};
    pthread_t th;
    pthread_create(&th, NULL, submit_two, &ts);
    double t0 = sd_time_s();
    st |= sd_rq_take(&ctx, a, "M", models, 2, 3000, &e, &got);
    double waited = sd_time_s() - t0;
    pthread_join(th, NULL);
    redisContext *c = redis_raw(rs);
    long long pa = pending_count(c, "t:jobs:ma"), pb = pending_count(c, "t:jobs:mb");
    struct sd_rq_entry e2;
    int got2 = 0;
    st |= sd_rq_take(&ctx, a, "M", models, 2, 0, &e2, &got2);
    CHECK(st == SD_OK && ts.st == SD_OK && got && waited < 2.5 && pa + pb == 1 && got2 && strcmp(e.id, e2.id) &&
              e2.deliveries == 1,
          "rq take: blocking on 2 streams wakes on new entries (%.2f s), takes one, leaves the other undelivered "
          "(pending %lld + %lld), the next take gets it as a first delivery", waited, pa, pb);
    sd_rq_entry_free(&e);
    sd_rq_entry_free(&e2);
    redisFree(c);
    sd_rq_close(a);
    sd_rq_close(b);
}

struct submitter {
    struct sd_rq *q;
    struct sd_ctx ctx;
    int st;
    double took;
};
static void *submit_later(void *p) {
    struct submitter *a = p;
    redis_sleep_ms(200);
    double t0 = sd_time_s();
    a->st = sd_rq_submit(&a->ctx, a->q, "m3", "during", "{}");
    a->took = sd_time_s() - t0;
    return NULL;
}

static void log_count(void *user, int level, const char *msg) {
    (void)level;
    (void)msg;
    ++*(int *)user;
}

/* Redis killed and restarted (AOF): a call made during the outage succeeds
 * once it is back, and what was acknowledged before is still there. */
static void test_restart(struct redis_srv *rs) {
    struct sd_ctx ctx = {0};
    int logs = 0;
    struct sd_rq_opts o;
    sd_rq_opts_init(&o);
    o.url = rs->url;
    o.prefix = "t";
    o.log = (struct sd_log){log_count, &logs, SD_LOG_INFO};
    struct sd_rq *q = NULL;
    int st = sd_rq_open(&ctx, &o, &q);
    st |= sd_rq_submit(&ctx, q, "m3", "before", "{}");
    /* The server is killed, a submit is made meanwhile (another thread), the
     * server comes back after 0.7 s (started from this thread: it is our child). */
    struct submitter sub = {q, {0}, -1, 0};
    pthread_t th;
    redis_halt(rs, SIGKILL);
    pthread_create(&th, NULL, submit_later, &sub);
    redis_sleep_ms(700);
    int relaunched = redis_launch(rs);
    pthread_join(th, NULL);
    st |= sub.st;
    double took = sub.took;
    json_t *s1 = NULL, *s2 = NULL;
    st |= sd_rq_job_state(&ctx, q, "before", &s1);
    st |= sd_rq_job_state(&ctx, q, "during", &s2);
    CHECK(st == SD_OK && relaunched == 0 && s1 && s2 && logs == 2 && sd_rq_reconnects(q) == 1,
          "rq reconnect: a submit during a Redis restart succeeds after %.2f s, the earlier job survived (AOF), "
          "2 log lines (lost, reconnected), 1 reconnect counted",
          took);
    json_decref(s1);
    json_decref(s2);
    sd_rq_close(q);
    /* Nothing listening and retry_ms 0: an error naming the URL, at once. */
    o.url = "unix:///nonexistent/redis.sock";
    o.retry_ms = 0;
    st = sd_rq_open(&ctx, &o, &q);
    CHECK(st == SD_ERR_IO && strstr(ctx.msg, "/nonexistent/redis.sock"), "rq open: unreachable -> %s", ctx.msg);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    test_urls();
    struct redis_srv rs;
    if (redis_start(&rs, 1, "hunter2")) {
        test_fail("rq: could not start redis-server in %s", rs.dir);
        redis_stop(&rs);
        return test_summary();
    }
    test_auth(&rs);
    test_flow(&rs);
    test_reclaim(&rs);
    test_multi(&rs);
    test_lost_stream(&rs);
    test_restart(&rs);
    redis_stop(&rs);
    return test_summary();
}
