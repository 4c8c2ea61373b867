/* bench_rq_workers.c - Redis scale-out throughput on one machine: jobs/s
 * with 1, 2 and 3 `sdrt worker` processes (tiny model, --threads 1 each)
 * pulling from one redis-server, and the time from a worker's SIGKILL to
 * the completion elsewhere of the job it held (claim-idle 2000 ms).
 * Usage: bench_rq_workers [JOBS (default 60)] [STEPS (default 10)] [SIDE (64)]. */
#include "redis_harness.h"
#include "redis_worker_harness.h"

static long long done_count(redisContext *c) {
    redisReply *r = redisCommand(c, "HGET sdrt:stats done");
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    if (r) freeReplyObject(r);
    return v;
}

static const char *const args[] = {"--model", "tests/models/tiny-sd1", "--claim-idle", "2000", "--threads", "1", "--no-warmup",
                                   "--quiet", NULL};

/* One run with n workers: jobs/s, or -1. */
static double run(int n, int jobs, int steps, int side, int kill_one, double *failover) {
    struct redis_srv rs;
    if (redis_start(&rs, 0, NULL)) return -1;
    struct rw_proc w[4];
    int ok = 1;
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "b%d", i);
        ok &= rw_start(&w[i], rs.dir, rs.url, name, args) == 0;
    }
    struct sd_rq_opts o;
    sd_rq_opts_init(&o);
    o.url = rs.url;
    struct sd_rq *q = NULL;
    struct sd_ctx ctx = {0};
    redisContext *c = redis_raw(&rs);
    double rate = -1;
    if (ok && !sd_rq_open(&ctx, &o, &q)) {
        double t0 = sd_time_s();
        for (int i = 0; i < jobs; i++) {
            struct rw_job j = {"a lighthouse", side, steps, 1, 100 + i};
            char id[16], *req = rw_wire(&j, "tiny-sd1");
            snprintf(id, sizeof id, "b%d", i);
            sd_rq_submit(&ctx, q, "tiny-sd1", id, req);
            free(req);
        }
        double t_kill = 0, t_done = 0;
        char held[32] = "";
        while ((done_count(c) < jobs || held[0]) && sd_time_s() - t0 < 600) {
            if (kill_one && !t_kill && done_count(c) >= jobs / 3) {
                rw_signal_wait(&w[0], SIGKILL, 10);
                t_kill = sd_time_s();
                redisReply *p = redisCommand(c, "XPENDING sdrt:jobs:tiny-sd1 workers - + 1 b0");
                if (p && p->type == REDIS_REPLY_ARRAY && p->elements == 1) {
                    redisReply *e = redisCommand(c, "XRANGE sdrt:jobs:tiny-sd1 %s %s", p->element[0]->element[0]->str,
                                                 p->element[0]->element[0]->str);
                    if (e && e->type == REDIS_REPLY_ARRAY && e->elements == 1)
                        snprintf(held, sizeof held, "%s", e->element[0]->element[1]->element[1]->str);
                    if (e) freeReplyObject(e);
                }
                if (p) freeReplyObject(p);
            }
            if (held[0]) {
                redisReply *e = redisCommand(c, "EXISTS sdrt:result:%s", held);
                if (e && e->integer == 1) *failover = sd_time_s() - t_kill, held[0] = 0;
                if (e) freeReplyObject(e);
            }
            if (!t_done && done_count(c) >= jobs) t_done = sd_time_s();
            redis_sleep_ms(10);
        }
        double t = (t_done > 0 ? t_done : sd_time_s()) - t0;
        if (done_count(c) >= jobs) rate = jobs / t;
    }
    for (int i = 0; i < n; i++)
        if (w[i].pid > 0) rw_signal_wait(&w[i], SIGTERM, 30);
    sd_rq_close(q);
    if (c) redisFree(c);
    redis_stop(&rs);
    return rate;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    rw_init(argv[0]);
    int jobs = argc > 1 ? atoi(argv[1]) : 60, steps = argc > 2 ? atoi(argv[2]) : 10, side = argc > 3 ? atoi(argv[3]) : 64;
    printf("redis scale-out: %d jobs, tiny-sd1 %dx%d, %d steps Euler a, workers --threads 1\n", jobs, side, side, steps);
    double r1 = 0;
    for (int n = 1; n <= 3; n++) {
        double f = 0, r = run(n, jobs, steps, side, 0, &f);
        if (n == 1) r1 = r;
        printf("  %d worker%s: %.2f jobs/s (x%.2f)\n", n, n > 1 ? "s" : " ", r, r1 > 0 ? r / r1 : 0);
    }
    double f = -1;
    run(3, jobs, steps, side, 1, &f);
    printf("  failover: SIGKILL of a busy worker -> its job completed by another in %.2f s (claim-idle 2000 ms)\n", f);
    return 0;
}
