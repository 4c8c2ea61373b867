/* test_redis_faults.c - the fault-injection run of the Redis scale-out
 * (issue 11 item 4): this test's own redis-server (AOF, appendfsync
 * always, unix socket in a temp dir), 3 `sdrt worker` processes on the tiny
 * model, 300 jobs submitted through host/queue as a front-end does, 5
 * SIGKILLs of random workers mid-run (each replaced by a new worker) and one
 * Redis kill + restart. At the end every job has exactly one result, its PNG
 * byte-identical to `sdrt txt2img` with the same settings, nothing pending,
 * nothing dead-lettered; the counts (submitted / completed / duplicated
 * executions / lost) and the time from a worker's death to its job's
 * completion elsewhere are printed. The same 300 jobs in the ASan build
 * (about 30 s there). */
#include "redis_harness.h"
#include "redis_worker_harness.h"
#include "test.h"

#define N_JOBS 300
#if defined(__SANITIZE_ADDRESS__)
#define BUILD_NOTE "ASan build"
#else
#define BUILD_NOTE "normal build"
#endif
#define N_WORKERS 3
#define N_KILLS 5
#define CLAIM_IDLE "2000"
#define TIMEOUT_S 240

static struct redis_srv rs;
static struct rw_proc workers[N_WORKERS];
static int n_started;

static const char *const worker_args[] = {"--model", "tests/models/tiny-sd1", "--claim-idle", CLAIM_IDLE, "--threads", "1",
                                          "--no-warmup", "--quiet", NULL};

static int start_worker(int slot) {
    char name[32];
    snprintf(name, sizeof name, "w%d", ++n_started);
    return rw_start(&workers[slot], rs.dir, rs.url, name, worker_args);
}

static long long stat_of(redisContext **c, const char *field) {
    for (int tries = 0; tries < 2; tries++) {
        if (!*c || (*c)->err) {
            if (*c) redisFree(*c);
            *c = redis_raw(&rs);
        }
        redisReply *r = *c ? redisCommand(*c, "HGET sdrt:stats %s", field) : NULL;
        if (r) {
            long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
            freeReplyObject(r);
            return v;
        }
    }
    return -1;
}

/* The jobs pending for consumer `name` (taken, not acknowledged): what a
 * killed worker held. Their ids as indexes f<i>. */
static int held_by(redisContext *c, const char *name, int *ids, int max) {
    int n = 0;
    redisReply *p = redisCommand(c, "XPENDING sdrt:jobs:tiny-sd1 workers - + %d %s", max, name);
    for (size_t k = 0; p && p->type == REDIS_REPLY_ARRAY && k < p->elements && n < max; k++) {
        redisReply *e = redisCommand(c, "XRANGE sdrt:jobs:tiny-sd1 %s %s", p->element[k]->element[0]->str,
                                     p->element[k]->element[0]->str);
        if (e && e->type == REDIS_REPLY_ARRAY && e->elements == 1) {
            const redisReply *f = e->element[0]->element[1];
            for (size_t i = 0; i + 1 < f->elements; i += 2)
                if (!strcmp(f->element[i]->str, "id") && f->element[i + 1]->str[0] == 'f') ids[n++] = atoi(f->element[i + 1]->str + 1);
        }
        if (e) freeReplyObject(e);
    }
    if (p) freeReplyObject(p);
    return n;
}

static int has_result(redisContext *c, int i) {
    redisReply *r = redisCommand(c, "EXISTS sdrt:result:f%d", i);
    int e = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r) freeReplyObject(r);
    return e;
}

int main(int argc, char **argv) {
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    rw_init(argv[0]);
    if (redis_start(&rs, 0, NULL)) {
        test_fail("faults: could not start redis-server");
        redis_stop(&rs);
        return test_summary();
    }
    double t0 = sd_time_s();
    struct rw_job job = {"a lighthouse at dusk", 64, 2, 1, 1000};
    if (rw_reference(&job, N_JOBS, rs.dir)) {
        test_fail("faults: sdrt txt2img reference run failed");
        redis_stop(&rs);
        return test_summary();
    }
    double t_ref = sd_time_s() - t0;
    int started = 1;
    for (int k = 0; k < N_WORKERS; k++) started &= start_worker(k) == 0;
    struct sd_rq_opts o;
    sd_rq_opts_init(&o);
    o.url = rs.url;
    o.retry_ms = 60000;
    struct sd_rq *q = NULL;
    struct sd_ctx ctx = {0};
    if (!started || sd_rq_open(&ctx, &o, &q)) {
        test_fail("faults: workers or the producer did not start (%s)", ctx.msg);
        for (int k = 0; k < N_WORKERS; k++) rw_log_tail(&workers[k], 10);
        for (int k = 0; k < N_WORKERS; k++) rw_signal_wait(&workers[k], SIGKILL, 5);
        redis_stop(&rs);
        return test_summary();
    }
    /* Submit everything: the queue is the point (workers take as they free up). */
    int submitted = 0;
    for (int i = 0; i < N_JOBS; i++) {
        struct rw_job j = job;
        j.seed = job.seed + i;
        char id[16], *req = rw_wire(&j, "tiny-sd1");
        snprintf(id, sizeof id, "f%d", i);
        if (req && sd_rq_submit(&ctx, q, "tiny-sd1", id, req) == SD_OK) submitted++;
        free(req);
    }
    double t_sub = sd_time_s();
    /* Faults while the jobs run: a kill at each of 5 progress marks, the Redis
     * restart between the 2nd and 3rd. */
    unsigned seed = 12345;
    redisContext *c = redis_raw(&rs);
    int kills = 0, restarted = 0, lost_ids[N_KILLS][4], n_lost[N_KILLS];
    double t_kill[N_KILLS], failover_max = 0;
    int failover_n = 0;
    while (sd_time_s() - t0 < TIMEOUT_S) {
        long long done = stat_of(&c, "done");
        if (kills < N_KILLS && done < N_JOBS && done >= (long long)N_JOBS * (kills + 1) / (N_KILLS + 2)) {
            int k = (int)(rand_r(&seed) % N_WORKERS);
            rw_signal_wait(&workers[k], SIGKILL, 10);
            t_kill[kills] = sd_time_s();
            /* What it held (dead now: it cannot finish them). */
            n_lost[kills] = c ? held_by(c, workers[k].name, lost_ids[kills], 4) : 0;
            if (start_worker(k)) test_fail("faults: replacement worker %d did not start", n_started);
            kills++;
        }
        if (!restarted && kills >= 2 && done >= (long long)N_JOBS / 2) {
            if (c) redisFree(c);
            c = NULL;
            restarted = redis_restart(&rs) == 0 ? 1 : -1;
        }
        /* Failover time: from a kill to the completion (elsewhere) of what the
         * killed worker ran. Counted before the loop ends on `done`: the
         * jobs of a killed worker wait out claim-idle, so on a fast machine
         * they are the last to complete. */
        for (int k = 0; k < kills; k++)
            for (int m = 0; m < n_lost[k]; m++)
                if (lost_ids[k][m] >= 0 && c && has_result(c, lost_ids[k][m])) {
                    double dt = sd_time_s() - t_kill[k];
                    if (dt > failover_max) failover_max = dt;
                    failover_n++;
                    lost_ids[k][m] = -1;
                }
        if (done >= N_JOBS) break;
        redis_sleep_ms(50);
    }
    double t_run = sd_time_s() - t_sub;
    /* Let the last acknowledgements land, then stop the workers (SIGTERM: they drain). */
    redis_sleep_ms(200);
    int clean = 0;
    for (int k = 0; k < N_WORKERS; k++) clean += rw_signal_wait(&workers[k], SIGTERM, 30) == 0;
    if (!c || c->err) {
        if (c) redisFree(c);
        c = redis_raw(&rs);
    }
    /* Every job: one result, done, byte-identical to the CLI's image. */
    int completed = 0, identical = 0, firstbad = -1;
    for (int i = 0; i < N_JOBS; i++) {
        char id[16], ref[300];
        snprintf(id, sizeof id, "f%d", i);
        snprintf(ref, sizeof ref, "%s/ref-%d.png", rs.dir, i);
        struct sd_rq_result r;
        int found = 0;
        if (sd_rq_result(&ctx, q, id, &r, &found) == SD_OK && found && !strcmp(r.state, "done") && r.n == 1) {
            completed++;
            size_t n = 0;
            char *want = rw_read_file(ref, &n);
            if (want && n == r.images[0].len && !memcmp(want, r.images[0].png, n) && r.images[0].seed == (uint64_t)(job.seed + i))
                identical++;
            else if (firstbad < 0)
                firstbad = i;
            free(want);
        } else if (firstbad < 0) {
            firstbad = i;
        }
        if (found) sd_rq_result_free(&r);
    }
    json_t *st = NULL;
    sd_rq_stats(&ctx, q, &st);
    json_t *m = json_object_get(json_object_get(st, "models"), "tiny-sd1"), *sc = json_object_get(st, "stats");
    long long pend = json_integer_value(json_object_get(m, "pending")), dead = json_integer_value(json_object_get(m, "dead"));
    long long length = json_integer_value(json_object_get(m, "length"));
    long long dups = json_integer_value(json_object_get(sc, "duplicates")), done = json_integer_value(json_object_get(sc, "done"));
    json_decref(st);
    int lost = submitted - completed;
    int reconnected = 0;
    for (int k = 0; k < N_WORKERS; k++) reconnected += rw_log_has(&workers[k], "reconnecting");
    CHECK(submitted == N_JOBS && completed == N_JOBS && identical == N_JOBS && done == N_JOBS && pend == 0 && dead == 0 &&
              length == N_JOBS && kills == N_KILLS && restarted == 1 && lost == 0 && failover_n >= 1 && reconnected >= 1,
          "faults (%s): %d workers, %d SIGKILLs (each replaced), 1 Redis restart (AOF): submitted %d, completed %d "
          "(each once, byte-identical to sdrt txt2img: %d), duplicated executions %lld, lost %d, pending %lld, dead %lld; "
          "worker death -> its job done elsewhere: max %.1f s over %d jobs (claim-idle " CLAIM_IDLE " ms); "
          "%d workers logged the Redis outage and reconnected; "
          "%d jobs in %.1f s (%.1f jobs/s), reference CLI run %.1f s; first bad job %d",
          BUILD_NOTE, N_WORKERS, kills, submitted, completed, identical, dups, lost, pend, dead, failover_max, failover_n, reconnected,
          N_JOBS, t_run, N_JOBS / t_run, t_ref, firstbad);
    CHECK(clean == N_WORKERS, "faults: the %d workers alive at the end stop on SIGTERM with status 0 (%d did)", N_WORKERS, clean);
    sd_rq_close(q);
    if (c) redisFree(c);
    for (int k = 0; k < N_WORKERS; k++)
        if (workers[k].pid > 0) rw_signal_wait(&workers[k], SIGKILL, 5);
    redis_stop(&rs);
    return test_summary();
}
