/* rq_frontend.c - `sdrt serve --redis URL`: the HTTP server as a front-end
 * of Redis Streams (docs/scale-out.md, srv.h). A job is submitted to its
 * model's stream P:jobs:{model} (the wire request of req_wire.c, seed
 * resolved) and registered locally like a local job; one relay thread reads
 * the P:events:{id} streams of every unfinished local job (XREAD BLOCK) and
 * applies each event to the job object: running/step/preview update its
 * progress and are appended as SSE frames, the final event (result, error,
 * cancelled) makes it read P:result:{id} (images, seeds, infotexts) and end
 * the job, which resumes synchronous A1111/OpenAI requests. Cancel and skip
 * are flags in P:job:{id} that the worker running the job reads each step.
 * A job id this front-end does not know is looked up in Redis and mirrored.
 *
 * Connections: one for the HTTP threads (submit, cancel, lookups, stats;
 * serialised by a mutex), one for the relay thread. Each reconnects with
 * back-off on its own (host/queue); an outage delays, never loses, events:
 * the relay resumes every stream from the last entry id it applied. */
#include "srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "req_wire.h"
#include "rq.h"

#define RELAY_BLOCK_MS 100
#define RELAY_MAX_IDS 256

struct rqfe {
    struct srv *s;
    struct sd_rq *q, *rq;         /* HTTP threads' (under qmu), the relay's */
    pthread_mutex_t qmu;
    pthread_t th;
    int started;
    char url[1024], prefix[128];
    long relay_errors, relay_reconnects; /* under srv.mu */
    volatile int stop;            /* ends the relay connection's reconnecting */
};

static double unix_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A Redis time (unix ms) on the server's monotonic clock. */
static double local_time(double unix_ms) { return unix_ms > 0 ? sd_time_s() - (unix_s() - unix_ms / 1000.0) : 0; }

static enum job_state state_of(const char *st) {
    if (!st) return JOB_QUEUED;
    for (int k = 0; k < JOB_STATE_COUNT; k++)
        if (!strcmp(st, job_state_name((enum job_state)k))) return (enum job_state)k;
    return JOB_QUEUED;
}

/* Fills j's images and outcome from P:result:{id} (under no lock; j is
 * not yet finished, only the relay or adopt writes these). */
static int load_result(struct rqfe *f, struct sd_rq *q, struct job *j, enum job_state *st) {
    struct srv *s = f->s;
    struct sd_ctx ctx = {0};
    struct sd_rq_result r;
    memset(&r, 0, sizeof r);
    int found = 0;
    if (sd_rq_result(&ctx, q, j->id, &r, &found) || !found) { sd_rq_result_free(&r); return -1; }
    struct job_image *imgs = r.n > 0 ? calloc((size_t)r.n, sizeof *imgs) : NULL;
    int n = 0;
    for (int i = 0; imgs && i < r.n; i++) {
        imgs[n].png = r.images[i].png, imgs[n].len = r.images[i].len;
        imgs[n].seed = r.images[i].seed;
        imgs[n].infotext = r.images[i].infotext;
        r.images[i].png = NULL, r.images[i].infotext = NULL; /* moved */
        n++;
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < j->n_images; i++) { free(j->images[i].png); free(j->images[i].infotext); }
    free(j->images);
    j->images = imgs, j->n_images = n;
    if (n) j->r.seed = (long long)imgs[0].seed;
    *st = state_of(r.state[0] ? r.state : NULL);
    if (*st < JOB_DONE) *st = JOB_FAILED;
    if (*st == JOB_FAILED) snprintf(j->err, sizeof j->err, "%s", r.error && r.error[0] ? r.error : "the job failed on a worker");
    pthread_mutex_unlock(&s->mu);
    sd_rq_result_free(&r);
    return 0;
}

/* Decodes a preview event's data URL into j->preview (A1111 current_image). */
static void take_preview(struct job *j, json_t *d) {
    const char *u = json_string_value(json_object_get(d, "image"));
    const char *c = u ? strchr(u, ',') : NULL;
    if (!c) return;
    size_t n = 0;
    uint8_t *png = b64_decode(c + 1, strlen(c + 1), &n);
    if (!png) return;
    free(j->preview);
    j->preview = png, j->preview_len = n;
    j->preview_step = (int)json_integer_value(json_object_get(d, "step"));
}

/* The jobs of one read (their ids, in sd_rq_read_events' order). */
struct relay_batch {
    struct rqfe *f;
    const char **ids;
};

static int on_event(void *user, int index, const char *event, const char *data) {
    struct relay_batch *b = user;
    struct srv *s = b->f->s;
    json_t *d = data ? json_loads(data, 0, NULL) : NULL;
    if (!d) d = json_object();
    pthread_mutex_lock(&s->mu);
    struct job *j = job_find(s, b->ids[index]);
    if (!j || j->state >= JOB_DONE) goto done;
    if (!strcmp(event, "result") || !strcmp(event, "error") || !strcmp(event, "cancelled")) {
        j->rq_final = 1; /* the relay reads the result (until it has it) */
        goto done;
    }
    if (!strcmp(event, "queue") && !j->rq_adopted) goto done; /* announced here at submit */
    if (!strcmp(event, "running")) {
        const char *w = json_string_value(json_object_get(d, "worker"));
        const char *dev = json_string_value(json_object_get(d, "device"));
        snprintf(j->rq_device, sizeof j->rq_device, "%s%s%s", w ? w : "", w && dev ? "/" : "", dev ? dev : "");
        if (j->state == JOB_QUEUED) j->t_start = sd_time_s();
        j->state = JOB_RUNNING;
        j->step = 0;
    } else if (!strcmp(event, "step")) {
        j->state = JOB_RUNNING;
        j->step = (int)json_integer_value(json_object_get(d, "step"));
        j->n_steps = (int)json_integer_value(json_object_get(d, "steps"));
        j->iter = (int)json_integer_value(json_object_get(d, "iteration"));
        double sec = json_number_value(json_object_get(d, "seconds"));
        j->step_sum += sec;
        hist_add(&s->step_h, sec);
    } else if (!strcmp(event, "preview")) {
        take_preview(j, d);
    }
    job_event(s, j, event, d); /* the SSE frame, same data */
    d = NULL;
done:
    pthread_mutex_unlock(&s->mu);
    json_decref(d);
    return 0;
}

/* Ends job id with its result: 0, or -1 when the result could not be read (retried). */
static int finish(struct rqfe *f, struct sd_rq *q, const char *id) {
    struct srv *s = f->s;
    pthread_mutex_lock(&s->mu);
    struct job *j = job_find(s, id);
    if (j) job_ref(j);
    pthread_mutex_unlock(&s->mu);
    if (!j) return 0;
    enum job_state st = JOB_FAILED;
    int rc = load_result(f, q, j, &st);
    pthread_mutex_lock(&s->mu);
    if (!rc && j->state < JOB_DONE) {
        if (st == JOB_FAILED) sd_logf(&s->o.log, SD_LOG_WARN, "job %s failed: %s", j->id, j->err);
        job_finish(s, j, st);
    }
    job_unref(s, j);
    pthread_mutex_unlock(&s->mu);
    return rc ? -1 : 0;
}

static void *relay_main(void *arg) {
    struct rqfe *f = arg;
    struct srv *s = f->s;
    const char **ids = calloc(RELAY_MAX_IDS, sizeof *ids);
    char (*idbuf)[24] = calloc(RELAY_MAX_IDS, sizeof *idbuf);
    char (*last)[32] = calloc(RELAY_MAX_IDS, sizeof *last);
    char (*final)[24] = calloc(RELAY_MAX_IDS, sizeof *final);
    int down = 0;
    if (!ids || !idbuf || !last || !final) goto out;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        int n = 0, n_final = 0;
        for (int i = 0; i < s->n_jobs && n < RELAY_MAX_IDS; i++) {
            struct job *j = s->jobs[i];
            if (j->state >= JOB_DONE) continue;
            if (j->rq_final) { memcpy(final[n_final++], j->id, sizeof final[0]); continue; }
            memcpy(idbuf[n], j->id, sizeof idbuf[0]);
            snprintf(last[n], sizeof last[0], "%s", j->rq_last[0] ? j->rq_last : "0");
            ids[n] = idbuf[n];
            n++;
        }
        if (n_final) { /* results to read first */
            pthread_mutex_unlock(&s->mu);
            int failed = 0;
            for (int i = 0; i < n_final; i++) failed |= finish(f, f->rq, final[i]) != 0;
            if (failed) { struct timespec ts = {0, 200 * 1000000L}; nanosleep(&ts, NULL); }
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (!n) { /* nothing to follow: wait for a submit */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        struct relay_batch b = {.f = f, .ids = ids};
        struct sd_ctx ctx = {0};
        int rc = sd_rq_read_events(&ctx, f->rq, n, ids, last, RELAY_BLOCK_MS, on_event, &b);
        if (rc) {
            if (!down) sd_logf(&s->o.log, SD_LOG_WARN, "redis: reading job events: %s (retrying)", ctx.msg);
            down = 1;
            pthread_mutex_lock(&s->mu);
            f->relay_errors++;
            pthread_mutex_unlock(&s->mu);
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
        } else if (down) {
            sd_logf(&s->o.log, SD_LOG_INFO, "redis: job events flow again");
            down = 0;
        }
        long rec = sd_rq_reconnects(f->rq);
        pthread_mutex_lock(&s->mu);
        f->relay_reconnects = rec;
        for (int i = 0; i < n; i++) { /* where each stream was read to */
            struct job *j = job_find(s, idbuf[i]);
            if (j) snprintf(j->rq_last, sizeof j->rq_last, "%s", last[i]);
        }
    }
    pthread_mutex_unlock(&s->mu);
out:
    free(ids);
    free(idbuf);
    free(last);
    free(final);
    return NULL;
}

int rqfe_start(struct sd_ctx *ctx, struct srv *s) {
    struct rqfe *f = calloc(1, sizeof *f);
    if (!f) return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
    f->s = s;
    snprintf(f->url, sizeof f->url, "%s", s->o.redis_url);
    snprintf(f->prefix, sizeof f->prefix, "%s", s->o.redis_prefix && *s->o.redis_prefix ? s->o.redis_prefix : "sdrt");
    s->o.redis_url = s->o.redis_prefix = NULL;
    pthread_mutex_init(&f->qmu, NULL);
    s->rq = f;
    struct sd_rq_opts o;
    sd_rq_opts_init(&o);
    o.url = f->url;
    o.prefix = f->prefix;
    o.log = s->o.log;
    o.retry_ms = 10000; /* an HTTP request waits this long for Redis, then gets 503 */
    if (sd_rq_open(ctx, &o, &f->q)) return sd_error_wrap(ctx, "--redis");
    o.retry_ms = -1, o.stop = &f->stop; /* the relay waits for Redis as long as it takes */
    if (sd_rq_open(ctx, &o, &f->rq)) return sd_error_wrap(ctx, "--redis");
    if (pthread_create(&f->th, NULL, relay_main, f) != 0)
        return sd_errorf(ctx, SD_ERR_NOMEM, "cannot start the Redis relay thread");
    f->started = 1;
    sd_logf(&s->o.log, SD_LOG_INFO, "front-end of Redis %s (prefix %s): jobs go to `sdrt worker`s", f->url, f->prefix);
    return SD_OK;
}

void rqfe_stop(struct srv *s) {
    struct rqfe *f = s->rq;
    if (!f) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    f->stop = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    if (f->started) pthread_join(f->th, NULL);
    /* Jobs still running on workers end here (their requests resume); they
     * go on in Redis and another front-end serves them. */
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_jobs; i++) {
        struct job *j = s->jobs[i];
        if (j->state >= JOB_DONE) continue;
        snprintf(j->err, sizeof j->err, "this front-end stopped; job %s goes on in Redis: GET /v1/jobs/%s on another front-end",
                 j->id, j->id);
        job_finish(s, j, JOB_FAILED);
    }
    pthread_mutex_unlock(&s->mu);
    if (f->q) sd_rq_close(f->q);
    if (f->rq) sd_rq_close(f->rq);
    pthread_mutex_destroy(&f->qmu);
    free(f);
    s->rq = NULL;
}

int rqfe_submit(struct srv *s, struct job *j, struct reply *rp) {
    struct rqfe *f = s->rq;
    const int oai = j->origin == ORIGIN_OPENAI;
    pthread_mutex_lock(&s->mu);
    const int want = j->r.model >= 0 ? j->r.model : s->opt_model >= 0 ? s->opt_model : 0;
    char model[128];
    snprintf(model, sizeof model, "%s", s->models[want].name);
    int queued = rqfe_queued(s), stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (stopping) { reply_errorf(rp, 503, NULL, oai, "the server is stopping"); return -1; }
    if (queued >= s->o.queue_max) {
        pthread_mutex_lock(&s->mu);
        s->rejected_full++;
        pthread_mutex_unlock(&s->mu);
        reply_errorf(rp, 503, NULL, oai, "this front-end has %d jobs queued (--queue-max); retry later", queued);
        rp->retry_after = 5;
        return -1;
    }
    json_t *w = NULL;
    char *txt = NULL;
    struct sd_ctx ctx = {0};
    int rc = req_wire_encode(&j->r, model, j->origin, &w);
    if (!rc && !(txt = json_dumps(w, JSON_COMPACT))) rc = sd_errorf(&ctx, SD_ERR_NOMEM, "out of memory");
    json_decref(w);
    if (rc) { free(txt); reply_errorf(rp, 500, NULL, oai, "cannot encode the job: %s", ctx.msg[0] ? ctx.msg : "out of memory"); return -1; }
    /* Registered first: its events are followed from the stream's start. */
    pthread_mutex_lock(&s->mu);
    j->ran_model = want;
    snprintf(j->rq_last, sizeof j->rq_last, "0");
    j->state = JOB_QUEUED;
    rc = job_register(s, j);
    if (!rc) job_event(s, j, "queue", json_pack("{s:s,s:i}", "status", "queued", "position", job_position(s, j)));
    pthread_mutex_unlock(&s->mu);
    if (rc) { free(txt); reply_errorf(rp, 500, NULL, oai, "out of memory"); return -1; }
    pthread_mutex_lock(&f->qmu);
    rc = sd_rq_submit(&ctx, f->q, model, j->id, txt);
    pthread_mutex_unlock(&f->qmu);
    free(txt);
    pthread_mutex_lock(&s->mu);
    if (rc) { /* never reached Redis: the job ends failed here */
        snprintf(j->err, sizeof j->err, "redis: %s", ctx.msg);
        job_finish(s, j, JOB_FAILED);
        s->rejected_full++;
    }
    pthread_cond_broadcast(&s->work_cv); /* the relay follows it */
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        reply_errorf(rp, 503, NULL, oai, "the job queue (Redis) is unavailable: %s; retry later", ctx.msg);
        rp->retry_after = 5;
        return -1;
    }
    return 0;
}

void rqfe_cancel(struct srv *s, const char *id, int skip) {
    struct rqfe *f = s->rq;
    struct sd_ctx ctx = {0};
    pthread_mutex_lock(&f->qmu);
    int rc = sd_rq_cancel(&ctx, f->q, id, skip);
    pthread_mutex_unlock(&f->qmu);
    if (rc) sd_logf(&s->o.log, SD_LOG_WARN, "job %s: cannot write the %s flag: %s", id, skip ? "skip" : "cancel", ctx.msg);
}

/* A field of the job's hash (sd_rq_job_state: numbers for the numeric ones). */
static const char *hget(json_t *h, const char *k) { return json_string_value(json_object_get(h, k)); }
static double hnum(json_t *h, const char *k) {
    json_t *v = json_object_get(h, k);
    return json_is_number(v) ? json_number_value(v) : json_is_string(v) ? atof(json_string_value(v)) : 0;
}
static int hint(json_t *h, const char *k) { return (int)hnum(h, k); }

int rqfe_adopt(struct srv *s, const char *id) {
    struct rqfe *f = s->rq;
    if (strlen(id) >= sizeof ((struct job *)0)->id) return -1;
    json_t *h = NULL;
    struct sd_ctx ctx = {0};
    pthread_mutex_lock(&f->qmu);
    int rc = sd_rq_job_state(&ctx, f->q, id, &h);
    pthread_mutex_unlock(&f->qmu);
    if (rc || !json_is_object(h)) { json_decref(h); return -1; }
    struct job *j = job_new(s, ORIGIN_NATIVE);
    if (!j) { json_decref(h); return -1; }
    snprintf(j->id, sizeof j->id, "%s", id);
    j->rq_adopted = 1;
    snprintf(j->rq_last, sizeof j->rq_last, "0");
    enum job_state st = state_of(hget(h, "state"));
    j->r.n_iter = hint(h, "iters") > 0 ? hint(h, "iters") : 1;
    j->r.sampler.steps = j->n_steps = hint(h, "steps");
    j->step = hint(h, "step"), j->iter = hint(h, "iter");
    j->r.seed = (long long)hnum(h, "seed");
    if (hnum(h, "created") > 0) j->t_created = local_time(hnum(h, "created"));
    if (hnum(h, "started") > 0) j->t_start = local_time(hnum(h, "started"));
    json_t *dev = json_object_get(h, "device");
    char dv[48] = "";
    if (json_is_string(dev)) snprintf(dv, sizeof dv, "%s", json_string_value(dev));
    else if (json_is_integer(dev)) snprintf(dv, sizeof dv, "%lld", (long long)json_integer_value(dev));
    if (hget(h, "worker")) snprintf(j->rq_device, sizeof j->rq_device, "%s%s%s", hget(h, "worker"), dv[0] ? "/" : "", dv);
    pthread_mutex_lock(&s->mu);
    j->ran_model = hget(h, "model") ? srv_model_find(s, hget(h, "model")) : -1;
    pthread_mutex_unlock(&s->mu);
    double ended = hnum(h, "ended") > 0 ? local_time(hnum(h, "ended")) : 0;
    enum job_state fin = st;
    int have_result = st >= JOB_DONE && !load_result(f, f->q, j, &fin);
    json_decref(h);
    if (st >= JOB_DONE && !have_result) { /* ended, its result gone (past its TTL) */
        fin = st;
        snprintf(j->err, sizeof j->err, "job %s ended (%s) and its result expired", id, job_state_name(st));
    }
    pthread_mutex_lock(&s->mu);
    struct job *other = job_find(s, id); /* two requests adopting at once */
    if (other || job_register(s, j)) {
        job_unref(s, j);
        pthread_mutex_unlock(&s->mu);
        return other ? 0 : -1;
    }
    j->state = st;
    if (st >= JOB_DONE) { /* ended: its final frame now (the relay follows the live ones) */
        j->state = fin;
        j->t_end = ended > 0 ? ended : sd_time_s();
        job_event(s, j, fin == JOB_DONE ? "result" : fin == JOB_FAILED ? "error" : "cancelled", job_status_json(s, j));
    }
    pthread_cond_broadcast(&s->work_cv);
    job_unref(s, j); /* the list's reference stays */
    pthread_mutex_unlock(&s->mu);
    return 0;
}

struct job *rqfe_current(struct srv *s) {
    struct job *best = NULL;
    for (int i = 0; i < s->n_jobs; i++) {
        struct job *j = s->jobs[i];
        if (j->state != JOB_RUNNING) continue;
        if (!best || (j->origin == ORIGIN_A1111 && best->origin != ORIGIN_A1111) || j->t_start < best->t_start) best = j;
    }
    return best;
}

int rqfe_queued(struct srv *s) {
    int n = 0;
    for (int i = 0; i < s->n_jobs; i++) n += s->jobs[i]->state == JOB_QUEUED;
    return n;
}

/* Appends printf output to a growing string. */
static void cat(char **p, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char **p, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *q = n >= 0 ? realloc(*p, *len + (size_t)n + 1) : NULL;
    if (!q) return;
    va_start(ap, fmt);
    vsnprintf(q + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *p = q, *len += (size_t)n;
}

char *rqfe_metrics(struct srv *s) {
    struct rqfe *f = s->rq;
    json_t *st = NULL;
    struct sd_ctx ctx = {0};
    pthread_mutex_lock(&f->qmu);
    int rc = sd_rq_stats(&ctx, f->q, &st);
    long reconnects = sd_rq_reconnects(f->q);
    pthread_mutex_unlock(&f->qmu);
    pthread_mutex_lock(&s->mu);
    reconnects += f->relay_reconnects;
    pthread_mutex_unlock(&s->mu);
    char *p = NULL;
    size_t len = 0;
    cat(&p, &len, "# HELP sdrt_redis_up 1 when this front-end reached Redis for this scrape.\n# TYPE sdrt_redis_up gauge\n"
                  "sdrt_redis_up %d\n", rc == 0);
    cat(&p, &len, "# HELP sdrt_redis_reconnects_total Reconnections of this front-end to Redis.\n"
                  "# TYPE sdrt_redis_reconnects_total counter\nsdrt_redis_reconnects_total %ld\n", reconnects);
    json_t *models = json_object_get(st, "models"), *workers = json_object_get(st, "workers");
    static const char *const gauges[][3] = {
        {"length", "sdrt_redis_stream_length", "Entries in the model's job stream (XLEN)."},
        {"pending", "sdrt_redis_pending", "Jobs delivered to a worker and not acknowledged (XPENDING)."},
        {"dead", "sdrt_redis_dead_letters", "Entries in the model's dead-letter stream."}};
    for (size_t g = 0; g < sizeof gauges / sizeof *gauges; g++) {
        cat(&p, &len, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g][1], gauges[g][2], gauges[g][1]);
        const char *m;
        json_t *v;
        json_object_foreach(models, m, v)
            cat(&p, &len, "%s{model=\"%s\"} %lld\n", gauges[g][1], m, (long long)json_integer_value(json_object_get(v, gauges[g][0])));
    }
    cat(&p, &len, "# HELP sdrt_redis_workers Workers alive (their heartbeat key exists).\n# TYPE sdrt_redis_workers gauge\n"
                  "sdrt_redis_workers %zu\n", json_array_size(workers));
    cat(&p, &len, "# HELP sdrt_redis_worker_jobs_total Jobs each alive worker finished.\n# TYPE sdrt_redis_worker_jobs_total counter\n");
    size_t i;
    json_t *w;
    json_array_foreach(workers, i, w)
        cat(&p, &len, "sdrt_redis_worker_jobs_total{worker=\"%s\"} %lld\n", json_string_value(json_object_get(w, "name")) ? json_string_value(json_object_get(w, "name")) : "",
            (long long)json_integer_value(json_object_get(w, "jobs")));
    json_decref(st);
    return p;
}
