/* rq_worker.c - `sdrt worker --redis URL` (rq_worker.h): the device pool of
 * the server fed from Redis Streams; puller, monitor and publisher threads. */
#include "rq_worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "embed_cache.h"
#include "lora.h"
#include "model_load.h"
#include "req_wire.h"
#include "rq.h"
#include "srv.h"

#define RQW_SLOTS (SD_SERVER_MAX_DEVICES * 2)
#define RQW_BLOCK_MS 1000
#define RQW_TICK_MS 200
#define RQW_ALIVE_TTL_S 15
#define RQW_TRIM_EVERY_S 60
#define RQW_TRIM_KEEP_MS (10 * 60 * 1000) /* acknowledged entries stay 10 minutes (for inspection) */

/* An entry this worker holds, with its local job (a reference). */
struct slot {
    int used;
    unsigned gen;
    struct sd_rq_entry e;
    struct job *j;
    double last_beat;
};

enum { IT_EVENT, IT_SET, IT_FINISH };
struct item {
    struct item *next;
    int kind;
    char id[128];
    char *event, *data;           /* IT_EVENT; IT_FINISH: the final event */
    char *kv[10];                 /* IT_SET: field, value pairs */
    int n_kv, n_str;              /* pairs; strings held */
    int slot;                     /* IT_FINISH */
    unsigned gen;
    enum job_state state;
};

struct sd_rq_worker {
    struct sd_rq_worker_opts o;
    char url[1024], prefix[128], name[128];
    struct srv *s;
    struct sd_rq *q_pull, *q_mon, *q_pub;
    pthread_t th[3];
    int started[3];
    pthread_mutex_t mu;           /* slots, outbox, counters; taken after s->mu, never before it */
    pthread_cond_t cv;
    struct slot slots[RQW_SLOTS];
    int n_used;
    struct item *out_head, *out_tail;
    volatile int draining, aborting, quit, stop_io;
    volatile int pull_stop;       /* the puller's connection gives up reconnecting (draining or aborting) */
    struct sd_rq_worker_counts c;
    const char *models[SRV_MAX_MODELS];
    int n_models;
    long long t_start_ms;
};

void sd_rq_worker_opts_init(struct sd_rq_worker_opts *o) {
    memset(o, 0, sizeof *o);
    sd_server_opts_init(&o->srv);
    o->prefix = "sdrt";
    o->claim_idle_ms = 30000;
    o->max_attempts = 3;
    o->result_ttl_s = 3600;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void cv_wait_ms(struct sd_rq_worker *w, int ms) { /* under w->mu */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

/* ---- the outbox (filled under s->mu by the hooks, drained by the publisher) ---- */

static void item_free(struct item *it) {
    free(it->event);
    free(it->data);
    for (int i = 0; i < it->n_str; i++) free(it->kv[i]);
    free(it);
}

static void push(struct sd_rq_worker *w, struct item *it) { /* under w->mu */
    if (w->out_tail) w->out_tail->next = it;
    else w->out_head = it;
    w->out_tail = it;
    pthread_cond_broadcast(&w->cv);
}

static struct slot *slot_of(struct sd_rq_worker *w, const struct job *j, int *idx) {
    for (int i = 0; i < RQW_SLOTS; i++)
        if (w->slots[i].used && w->slots[i].j == j) {
            if (idx) *idx = i;
            return &w->slots[i];
        }
    return NULL;
}

static struct item *item_set(const char *id, int n, const char *const *kv) {
    struct item *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->kind = IT_SET;
    snprintf(it->id, sizeof it->id, "%s", id);
    for (int i = 0; i < 2 * n && i < 10; i++) {
        if (!(it->kv[i] = strdup(kv[i]))) {
            item_free(it);
            return NULL;
        }
        it->n_str++;
    }
    it->n_kv = it->n_str / 2;
    return it;
}

static struct item *item_event(const char *id, const char *event, const char *data) {
    struct item *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->kind = IT_EVENT;
    snprintf(it->id, sizeof it->id, "%s", id);
    it->event = strdup(event);
    it->data = strdup(data);
    if (!it->event || !it->data) {
        item_free(it);
        return NULL;
    }
    return it;
}

/* The SSE data with "worker": NAME added. */
static char *with_worker(const char *data, const char *name, char *device, size_t dcap) {
    json_t *d = json_loads(data, 0, NULL);
    if (!json_is_object(d)) {
        json_decref(d);
        return strdup(data);
    }
    const char *dev = json_string_value(json_object_get(d, "device"));
    if (device) snprintf(device, dcap, "%s", dev ? dev : "");
    json_object_set_new(d, "worker", json_string(name));
    char *t = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return t;
}

static void hook_event(void *user, struct srv *s, struct job *j, const char *event, const char *data) {
    (void)s;
    struct sd_rq_worker *w = user;
    /* The local queue's positions mean nothing to clients; the final event
     * goes with the result (hook_finish). */
    if (!strcmp(event, "queue") || !strcmp(event, "result") || !strcmp(event, "error") || !strcmp(event, "cancelled"))
        return;
    pthread_mutex_lock(&w->mu);
    if (!slot_of(w, j, NULL)) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    char a[32], b[32], c[32], d[32], dev[96] = "";
    struct item *set = NULL, *ev = NULL;
    if (!strcmp(event, "running")) {
        char *t = with_worker(data, w->name, dev, sizeof dev);
        snprintf(a, sizeof a, "%lld", now_ms());
        const char *kv[8] = {"state", "running", "started", a, "worker", w->name, "device", dev};
        set = item_set(j->id, 4, kv);
        ev = t ? item_event(j->id, event, t) : NULL;
        free(t);
    } else {
        if (!strcmp(event, "step")) {
            snprintf(a, sizeof a, "%d", j->step);
            snprintf(b, sizeof b, "%d", j->n_steps);
            snprintf(c, sizeof c, "%d", j->iter);
            snprintf(d, sizeof d, "%d", j->r.n_iter);
            const char *kv[8] = {"step", a, "steps", b, "iter", c, "iters", d};
            set = item_set(j->id, 4, kv);
        }
        ev = item_event(j->id, event, data);
    }
    if (set) push(w, set);
    if (ev) push(w, ev);
    pthread_mutex_unlock(&w->mu);
}

static void hook_finish(void *user, struct srv *s, struct job *j) {
    struct sd_rq_worker *w = user;
    int idx;
    pthread_mutex_lock(&w->mu);
    struct slot *sl = slot_of(w, j, &idx);
    struct item *it = sl ? calloc(1, sizeof *it) : NULL;
    if (it) {
        it->kind = IT_FINISH;
        snprintf(it->id, sizeof it->id, "%s", j->id);
        it->slot = idx, it->gen = sl->gen, it->state = j->state;
        it->event = strdup(j->state == JOB_DONE ? "result" : j->state == JOB_FAILED ? "error" : "cancelled");
        json_t *st = job_status_json(s, j);
        json_object_set_new(st, "worker", json_string(w->name));
        it->data = json_dumps(st, JSON_COMPACT);
        json_decref(st);
        push(w, it);
    }
    pthread_mutex_unlock(&w->mu);
}

/* ---- settling an entry without running it ---- */

static void dead_letter(struct sd_rq_worker *w, struct sd_rq *q, const struct sd_rq_entry *e, const char *why) {
    struct sd_ctx ctx = {0};
    if (sd_rq_dead_letter(&ctx, q, e, w->name, why)) {
        sd_logf(&w->s->o.log, SD_LOG_WARN, "job %s: dead-lettering failed: %s", e->id, ctx.msg);
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->c.dead++;
    pthread_mutex_unlock(&w->mu);
    sd_logf(&w->s->o.log, SD_LOG_WARN, "job %s (entry %s of %s) dead-lettered: %s", e->id[0] ? e->id : "?", e->entry_id,
            e->model, why);
}

static void finish_empty(struct sd_rq_worker *w, struct sd_rq *q, const struct sd_rq_entry *e, const char *state,
                         const char *event) {
    struct sd_ctx ctx = {0};
    struct sd_rq_result r = {.n = 0};
    snprintf(r.state, sizeof r.state, "%s", state);
    json_t *d = json_pack("{s:s,s:s,s:[],s:s}", "id", e->id, "status", state, "images", "worker", w->name);
    char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    int written = 0;
    if (sd_rq_complete(&ctx, q, e, w->name, &r, event, data ? data : "{}", &written))
        sd_logf(&w->s->o.log, SD_LOG_WARN, "job %s: %s", e->id, ctx.msg);
    free(data);
    pthread_mutex_lock(&w->mu);
    if (written) w->c.cancelled++;
    pthread_mutex_unlock(&w->mu);
}

static void last_error(struct sd_rq *q, const char *id, char *out, size_t cap) {
    struct sd_ctx ctx = {0};
    json_t *st = NULL;
    snprintf(out, cap, "(none recorded)");
    if (sd_rq_job_state(&ctx, q, id, &st) == SD_OK) {
        const char *e = json_string_value(json_object_get(st, "error"));
        if (e && *e) snprintf(out, cap, "%s", e);
    }
    json_decref(st);
}

/* Checks e and queues its job locally (the slot takes e), or settles it. */
static void handle_entry(struct sd_rq_worker *w, struct sd_rq_entry *e) {
    struct srv *s = w->s;
    struct sd_rq *q = w->q_pull;
    struct sd_ctx ctx = {0};
    char why[1024];
    pthread_mutex_lock(&w->mu);
    w->c.taken++;
    pthread_mutex_unlock(&w->mu);
    if (e->bad[0]) {
        dead_letter(w, q, e, e->bad);
        return;
    }
    if (e->deliveries > w->o.max_attempts) {
        char err[700];
        last_error(q, e->id, err, sizeof err);
        snprintf(why, sizeof why, "job failed %d times; last error: %s", e->deliveries - 1, err);
        dead_letter(w, q, e, why);
        return;
    }
    int exists = 0, cancel = 0, skip = 0;
    if (sd_rq_has_result(&ctx, q, e->id, &exists) == SD_OK && exists) { /* delivered again after its result */
        sd_rq_ack(&ctx, q, e);
        pthread_mutex_lock(&w->mu);
        w->c.skipped++;
        pthread_mutex_unlock(&w->mu);
        sd_logf(&s->o.log, SD_LOG_INFO, "job %s has a result already: acknowledged", e->id);
        return;
    }
    if (sd_rq_flags(&ctx, q, e->id, &cancel, &skip) == SD_OK && cancel) {
        finish_empty(w, q, e, "cancelled", "cancelled");
        sd_logf(&s->o.log, SD_LOG_INFO, "job %s was cancelled while queued", e->id);
        return;
    }
    if (strlen(e->id) >= sizeof(((struct job *)0)->id)) {
        snprintf(why, sizeof why, "job id '%s' is longer than %zu characters", e->id, sizeof(((struct job *)0)->id) - 1);
        dead_letter(w, q, e, why);
        return;
    }
    json_error_t jerr;
    json_t *jr = json_loads(e->req, 0, &jerr);
    if (!jr) {
        snprintf(why, sizeof why, "malformed request: not JSON (%s at line %d column %d)", jerr.text, jerr.line, jerr.column);
        dead_letter(w, q, e, why);
        return;
    }
    struct gen_req r;
    enum job_origin origin;
    char model[128];
    int st = req_wire_decode(&ctx, jr, &r, model, sizeof model, &origin);
    json_decref(jr);
    if (st) {
        snprintf(why, sizeof why, "malformed request: %s", ctx.msg);
        dead_letter(w, q, e, why);
        return;
    }
    int idx = srv_model_find(s, model);
    if (strcmp(model, e->model) || idx < 0) {
        gen_req_free(&r);
        snprintf(why, sizeof why, "request for model '%s' in the stream of '%s'%s", model, e->model,
                 idx < 0 ? " (not a model of this worker)" : "");
        dead_letter(w, q, e, why);
        return;
    }
    r.model = idx;
    struct sd_gen_params g;
    gen_params_of(&r, &g);
    struct perr pe = {0};
    if (sd_gen_params_check(&ctx, &g)) {
        snprintf(why, sizeof why, "invalid request: %s", ctx.msg);
    } else if (srv_loras_prepare(s, &r, &pe)) {
        snprintf(why, sizeof why, "invalid request: %s", pe.msg);
    } else {
        why[0] = 0;
    }
    if (why[0]) {
        gen_req_free(&r);
        dead_letter(w, q, e, why);
        return;
    }
    struct job *j = job_new(s, origin);
    if (!j) {
        gen_req_free(&r);
        return; /* out of memory: left pending, reclaimed later */
    }
    j->r = r;
    snprintf(j->id, sizeof j->id, "%s", e->id);
    char att[16];
    snprintf(att, sizeof att, "%d", e->deliveries);
    const char *kv[2] = {"attempts", att};
    sd_rq_job_set(&ctx, q, e->id, 1, kv);
    pthread_mutex_lock(&w->mu);
    int k = 0;
    while (k < RQW_SLOTS && w->slots[k].used) k++;
    struct slot *sl = &w->slots[k < RQW_SLOTS ? k : 0];
    if (k < RQW_SLOTS) {
        sl->used = 1, sl->gen++, sl->e = *e, sl->j = j, sl->last_beat = sd_time_s();
        memset(e, 0, sizeof *e); /* the slot owns req now */
        w->n_used++;
    }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_lock(&s->mu);
    int rc = k >= RQW_SLOTS || s->stopping ? -1 : job_enqueue(s, j);
    if (rc) job_unref(s, j);
    pthread_mutex_unlock(&s->mu);
    if (rc && k < RQW_SLOTS) { /* left pending: another worker (or this one) reclaims it */
        pthread_mutex_lock(&w->mu);
        sd_rq_entry_free(&sl->e);
        sl->used = 0, sl->j = NULL;
        w->n_used--;
        pthread_mutex_unlock(&w->mu);
    }
}

static void *puller(void *arg) {
    struct sd_rq_worker *w = arg;
    int warned = 0;
    while (!w->quit && !w->draining && !w->aborting) {
        pthread_mutex_lock(&w->mu);
        while (w->n_used >= w->s->n_workers && !w->quit && !w->draining && !w->aborting) cv_wait_ms(w, RQW_TICK_MS);
        pthread_mutex_unlock(&w->mu);
        if (w->quit || w->draining || w->aborting) break;
        struct sd_ctx ctx = {0};
        struct sd_rq_entry e;
        int got = 0;
        if (sd_rq_take(&ctx, w->q_pull, w->name, w->models, w->n_models, RQW_BLOCK_MS, &e, &got)) {
            if (!w->stop_io && !warned++) sd_logf(&w->s->o.log, SD_LOG_WARN, "taking jobs: %s", ctx.msg);
            sleep_ms(RQW_BLOCK_MS);
            continue;
        }
        warned = 0;
        if (!got) continue;
        handle_entry(w, &e);
        sd_rq_entry_free(&e);
    }
    return NULL;
}

/* ---- the publisher ---- */

static int publish_finish(struct sd_rq_worker *w, struct item *it, struct sd_ctx *ctx) {
    struct slot *sl = &w->slots[it->slot];
    struct job *j = sl->j;
    if (it->state == JOB_FAILED) {
        /* Failed here (a device, a model that does not load here...): the
         * entry stays pending for another worker, unless this was the last
         * attempt. */
        if (sl->e.deliveries >= w->o.max_attempts) {
            char why[1024];
            snprintf(why, sizeof why, "job failed %d times; last error: %s", sl->e.deliveries, j->err);
            struct sd_ctx c2 = {0};
            const char *kv[2] = {"error", j->err};
            sd_rq_job_set(&c2, w->q_pub, j->id, 1, kv);
            if (sd_rq_dead_letter(ctx, w->q_pub, &sl->e, w->name, why)) return ctx->status;
            pthread_mutex_lock(&w->mu);
            w->c.dead++;
            pthread_mutex_unlock(&w->mu);
            sd_logf(&w->s->o.log, SD_LOG_WARN, "job %s dead-lettered: %s", j->id, why);
            return SD_OK;
        }
        const char *kv[6] = {"state", "queued", "error", j->err, "worker", ""};
        int st = sd_rq_job_set(ctx, w->q_pub, j->id, 3, kv);
        if (st) return st;
        pthread_mutex_lock(&w->mu);
        w->c.retried++;
        pthread_mutex_unlock(&w->mu);
        sd_logf(&w->s->o.log, SD_LOG_WARN, "job %s failed here (attempt %d of %d): %s; left for another worker", j->id,
                sl->e.deliveries, w->o.max_attempts, j->err);
        return SD_OK;
    }
    struct sd_rq_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.state, sizeof r.state, "%s", job_state_name(it->state));
    struct sd_rq_image *im = j->n_images ? calloc((size_t)j->n_images, sizeof *im) : NULL;
    if (j->n_images && !im) return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < j->n_images; i++)
        im[i] = (struct sd_rq_image){j->images[i].png, j->images[i].len, j->images[i].seed, j->images[i].infotext};
    r.n = j->n_images, r.images = im;
    char timings[160];
    snprintf(timings, sizeof timings, "{\"queue_s\":%.3f,\"run_s\":%.3f,\"total_s\":%.3f}",
             j->t_start > 0 ? j->t_start - j->t_created : 0.0, j->t_start > 0 ? j->t_end - j->t_start : 0.0,
             j->t_end - j->t_created);
    r.timings = timings;
    int written = 0;
    int st = sd_rq_complete(ctx, w->q_pub, &sl->e, w->name, &r, it->event, it->data, &written);
    free(im);
    if (st) return st;
    pthread_mutex_lock(&w->mu);
    if (!written) w->c.duplicates++;
    else if (it->state == JOB_DONE) w->c.done++;
    else w->c.cancelled++;
    pthread_mutex_unlock(&w->mu);
    if (!written) sd_logf(&w->s->o.log, SD_LOG_INFO, "job %s: another worker wrote its result first (a duplicate run)", j->id);
    return SD_OK;
}

static int publish(struct sd_rq_worker *w, struct item *it, struct sd_ctx *ctx) {
    switch (it->kind) {
    case IT_EVENT: return sd_rq_publish(ctx, w->q_pub, it->id, it->event, it->data);
    case IT_SET: return sd_rq_job_set(ctx, w->q_pub, it->id, it->n_kv, (const char *const *)it->kv);
    default: return publish_finish(w, it, ctx);
    }
}

static void release_slot(struct sd_rq_worker *w, int k) {
    struct job *j = w->slots[k].j;
    pthread_mutex_lock(&w->s->mu);
    job_unref(w->s, j);
    pthread_mutex_unlock(&w->s->mu);
    pthread_mutex_lock(&w->mu);
    sd_rq_entry_free(&w->slots[k].e);
    w->slots[k].used = 0, w->slots[k].j = NULL;
    w->n_used--;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *publisher(void *arg) {
    struct sd_rq_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->out_head && !w->quit) cv_wait_ms(w, RQW_TICK_MS);
        struct item *it = w->out_head;
        if (it) {
            w->out_head = it->next;
            if (!w->out_head) w->out_tail = NULL;
        }
        pthread_mutex_unlock(&w->mu);
        if (!it) break;
        /* The connection retries through outages; a result is retried until written. */
        struct sd_ctx ctx = {0};
        int logged = 0;
        while (publish(w, it, &ctx) != SD_OK && !w->aborting) {
            if (!logged++) sd_logf(&w->s->o.log, SD_LOG_WARN, "job %s: %s (retrying)", it->id, ctx.msg);
            sd_ctx_clear(&ctx);
            if (it->kind != IT_FINISH) break; /* progress is best effort; results are not */
            sleep_ms(RQW_TICK_MS);
        }
        if (it->kind == IT_FINISH && w->slots[it->slot].used && w->slots[it->slot].gen == it->gen) release_slot(w, it->slot);
        item_free(it);
    }
    return NULL;
}

/* ---- the monitor: heartbeats, cancel/skip flags, the worker's presence ---- */

static void announce(struct sd_rq_worker *w) {
    json_t *d = json_object(), *m = json_array(), *dv = json_array();
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    for (int i = 0; i < w->n_models; i++) json_array_append_new(m, json_string(w->models[i]));
    for (int i = 0; i < w->s->n_workers; i++) json_array_append_new(dv, json_string(w->s->workers[i].name));
    pthread_mutex_lock(&w->mu);
    long jobs = w->c.done + w->c.cancelled;
    int busy = w->n_used;
    pthread_mutex_unlock(&w->mu);
    json_object_set_new(d, "host", json_string(host));
    json_object_set_new(d, "pid", json_integer(getpid()));
    json_object_set_new(d, "models", m);
    json_object_set_new(d, "devices", dv);
    json_object_set_new(d, "started", json_integer(w->t_start_ms));
    json_object_set_new(d, "jobs", json_integer(jobs));
    json_object_set_new(d, "busy", json_integer(busy));
    json_object_set_new(d, "draining", json_boolean(w->draining));
    char *t = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    struct sd_ctx ctx = {0};
    if (t) sd_rq_worker_alive(&ctx, w->q_mon, w->name, t, RQW_ALIVE_TTL_S);
    free(t);
}

static void *monitor(void *arg) {
    struct sd_rq_worker *w = arg;
    double beat_s = w->o.claim_idle_ms / 3000.0, last_announce = 0, last_trim = sd_time_s();
    while (!w->quit && !w->aborting) {
        struct { int k; unsigned gen; struct sd_rq_entry e; int beat; } snap[RQW_SLOTS];
        int n = 0;
        double now = sd_time_s();
        pthread_mutex_lock(&w->mu);
        for (int k = 0; k < RQW_SLOTS; k++) {
            struct slot *sl = &w->slots[k];
            if (!sl->used) continue;
            snap[n].k = k, snap[n].gen = sl->gen, snap[n].beat = now - sl->last_beat >= beat_s;
            snap[n].e = sl->e;
            snap[n].e.req = NULL; /* the slot keeps it */
            n++;
        }
        pthread_mutex_unlock(&w->mu);
        for (int i = 0; i < n && !w->aborting; i++) {
            struct sd_ctx ctx = {0};
            if (snap[i].beat) {
                if (sd_rq_heartbeat(&ctx, w->q_mon, w->name, &snap[i].e) == SD_OK) {
                    pthread_mutex_lock(&w->mu);
                    if (w->slots[snap[i].k].gen == snap[i].gen) w->slots[snap[i].k].last_beat = now;
                    pthread_mutex_unlock(&w->mu);
                }
            }
            int cancel = 0, skip = 0;
            if (sd_rq_flags(&ctx, w->q_mon, snap[i].e.id, &cancel, &skip) || (!cancel && !skip)) continue;
            if (skip) {
                const char *kv[2] = {"skip", "0"};
                sd_rq_job_set(&ctx, w->q_mon, snap[i].e.id, 1, kv);
            }
            pthread_mutex_lock(&w->s->mu);
            pthread_mutex_lock(&w->mu);
            struct slot *sl = &w->slots[snap[i].k];
            if (sl->used && sl->gen == snap[i].gen && sl->j) {
                if (cancel) sl->j->cancel = 1;
                if (skip) sl->j->skip = 1;
            }
            pthread_mutex_unlock(&w->mu);
            pthread_mutex_unlock(&w->s->mu);
        }
        if (now - last_trim >= RQW_TRIM_EVERY_S) { /* the job streams do not grow without bound */
            for (int i = 0; i < w->n_models && !w->aborting; i++) {
                struct sd_ctx ctx = {0};
                long long n = 0;
                if (sd_rq_trim(&ctx, w->q_mon, w->models[i], RQW_TRIM_KEEP_MS, &n) == SD_OK && n > 0)
                    sd_logf(&w->s->o.log, SD_LOG_DEBUG, "trimmed %lld acknowledged entries of %s", n, w->models[i]);
            }
            last_trim = now;
        }
        if (now - last_announce >= RQW_ALIVE_TTL_S / 3.0) {
            announce(w);
            last_announce = now;
        }
        pthread_mutex_lock(&w->mu);
        if (!w->quit) cv_wait_ms(w, RQW_TICK_MS);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

/* ---- start and stop ---- */

/* The server's state without HTTP (as sd_server_start up to its daemon). */
static struct srv *srv_new_local(struct sd_ctx *ctx, const struct sd_server_opts *o) {
    struct srv *s = calloc(1, sizeof *s);
    if (!s) {
        sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->t_start = sd_time_s();
    snprintf(s->vocab, sizeof s->vocab, "%s", o->vocab ? o->vocab : "");
    snprintf(s->model_path, sizeof s->model_path, "%s", o->model ? o->model : "");
    snprintf(s->models_dir, sizeof s->models_dir, "%s", o->models_dir ? o->models_dir : "");
    snprintf(s->config, sizeof s->config, "%s", o->config ? o->config : "");
    snprintf(s->lora_dir, sizeof s->lora_dir, "%s", o->lora_dir ? o->lora_dir : "");
    s->o.listen = s->o.vocab = s->o.model = s->o.models_dir = s->o.config = s->o.lora_dir = NULL;
    s->o.api_key = s->o.api_auth = s->o.cors_origin = NULL;
    s->cur_model = s->opt_model = -1;
    s->seed = (unsigned)time(NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->switch_mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->ev_cv, NULL);
    if (!(s->options = json_object()) || !(s->cache = sd_embed_cache_new(256u << 20))) {
        sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
        sd_server_stop((struct sd_server *)s);
        return NULL;
    }
    return s;
}

static int open_q(struct sd_ctx *ctx, struct sd_rq_worker *w, struct sd_rq **q, const volatile int *stop) {
    struct sd_rq_opts ro;
    sd_rq_opts_init(&ro);
    ro.url = w->url;
    ro.prefix = w->prefix;
    ro.claim_idle_ms = w->o.claim_idle_ms;
    ro.max_attempts = w->o.max_attempts;
    ro.result_ttl_s = w->o.result_ttl_s;
    ro.stop = stop;
    ro.log = w->o.srv.log;
    int st = sd_rq_open(ctx, &ro, q);
    if (!st) sd_rq_set_retry(*q, -1); /* from now on, every call waits for Redis to come back */
    return st;
}

struct sd_rq_worker *sd_rq_worker_start(struct sd_ctx *ctx, const struct sd_rq_worker_opts *o) {
    struct sd_rq_worker *w = calloc(1, sizeof *w);
    if (!w) {
        sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    w->o = *o;
    snprintf(w->url, sizeof w->url, "%s", o->url ? o->url : "");
    snprintf(w->prefix, sizeof w->prefix, "%s", o->prefix && *o->prefix ? o->prefix : "sdrt");
    if (o->name && *o->name) {
        snprintf(w->name, sizeof w->name, "%s", o->name);
    } else {
        char host[100] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(w->name, sizeof w->name, "%s:%d", host, (int)getpid());
    }
    w->o.url = w->o.prefix = w->o.name = NULL;
    w->t_start_ms = now_ms();
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (w->o.claim_idle_ms < 100 || w->o.max_attempts < 1 || w->o.result_ttl_s < 1) {
        sd_errorf(ctx, SD_ERR_INVALID, "--claim-idle must be >= 100 ms, --max-attempts and --result-ttl >= 1");
        goto fail;
    }
    if (open_q(ctx, w, &w->q_pull, &w->pull_stop) || open_q(ctx, w, &w->q_mon, &w->stop_io) ||
        open_q(ctx, w, &w->q_pub, &w->stop_io))
        goto fail;
    struct sd_server_opts so = o->srv;
    so.keep_jobs = 8; /* the results live in Redis */
    if (!(w->s = srv_new_local(ctx, &so))) goto fail;
    struct srv *s = w->s;
    if (srv_models_scan(ctx, s) || srv_loras_scan(ctx, s) || srv_model_switch(ctx, s, 0) || srv_workers_start(ctx, s))
        goto fail;
    s->opt_model = s->cur_model;
    for (int i = 0; i < s->n_models; i++) {
        if (sd_rq_name_ok(s->models[i].name)) w->models[w->n_models++] = s->models[i].name;
        else sd_logf(&s->o.log, SD_LOG_WARN, "model '%s' is not a valid stream name ([A-Za-z0-9._-]): not served", s->models[i].name);
    }
    if (!w->n_models) {
        sd_errorf(ctx, SD_ERR_INVALID, "no model with a valid stream name");
        goto fail;
    }
    pthread_mutex_lock(&s->mu);
    s->hooks = (struct srv_hooks){hook_event, hook_finish, w};
    pthread_mutex_unlock(&s->mu);
    void *(*fns[3])(void *) = {publisher, monitor, puller};
    for (int i = 0; i < 3; i++) {
        if (pthread_create(&w->th[i], NULL, fns[i], w)) {
            sd_errorf(ctx, SD_ERR_NOMEM, "cannot start a thread");
            goto fail;
        }
        w->started[i] = 1;
    }
    char list[1024] = "";
    for (int i = 0; i < w->n_models; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? "," : "", w->models[i]);
    sd_logf(&s->o.log, SD_LOG_INFO, "worker %s on %s: models %s, %d device%s, claim-idle %d ms, max-attempts %d",
            w->name, sd_rq_url_safe(w->q_pull), list, s->n_workers, s->n_workers == 1 ? "" : "s", w->o.claim_idle_ms,
            w->o.max_attempts);
    return w;
fail:
    w->aborting = w->stop_io = w->pull_stop = 1;
    sd_rq_worker_stop(w);
    return NULL;
}

void sd_rq_worker_drain(struct sd_rq_worker *w) {
    if (!w) return;
    w->draining = 1;
    w->pull_stop = 1; /* a take waiting for Redis to come back gives up: nothing is held there */
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    /* The puller first (an entry it is taking now becomes a job to finish), then the jobs. */
    if (w->started[2]) {
        pthread_join(w->th[2], NULL);
        w->started[2] = 0;
    }
    pthread_mutex_lock(&w->mu);
    while ((w->n_used > 0 || w->out_head) && !w->aborting) cv_wait_ms(w, RQW_TICK_MS);
    pthread_mutex_unlock(&w->mu);
}

void sd_rq_worker_abort(struct sd_rq_worker *w) { /* async-signal-safe: flags only */
    if (!w) return;
    w->aborting = 1;
    w->stop_io = 1;
    w->pull_stop = 1;
}

void sd_rq_worker_counts(struct sd_rq_worker *w, struct sd_rq_worker_counts *c) {
    pthread_mutex_lock(&w->mu);
    *c = w->c;
    pthread_mutex_unlock(&w->mu);
}

const char *sd_rq_worker_name(const struct sd_rq_worker *w) { return w->name; }

void sd_rq_worker_stop(struct sd_rq_worker *w) {
    if (!w) return;
    if (!w->aborting && w->started[0]) sd_rq_worker_drain(w);
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    w->stop_io = w->pull_stop = 1; /* drained (or aborted): nothing is left to write */
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 2; i >= 0; i--)
        if (w->started[i]) pthread_join(w->th[i], NULL);
    if (w->s) {
        struct srv *s = w->s;
        pthread_mutex_lock(&s->mu);
        s->hooks = (struct srv_hooks){0};
        for (int k = 0; k < RQW_SLOTS; k++)
            if (w->slots[k].used) {
                job_unref(s, w->slots[k].j);
                sd_rq_entry_free(&w->slots[k].e);
                w->slots[k].used = 0;
            }
        pthread_mutex_unlock(&s->mu);
        sd_server_stop((struct sd_server *)s);
    }
    while (w->out_head) {
        struct item *it = w->out_head;
        w->out_head = it->next;
        item_free(it);
    }
    if (w->q_mon && !w->aborting) {
        struct sd_ctx ctx = {0};
        sd_rq_worker_gone(&ctx, w->q_mon, w->name);
    }
    sd_rq_close(w->q_pull);
    sd_rq_close(w->q_mon);
    sd_rq_close(w->q_pub);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
