/* rq_worker.c - `sdrt worker --redis URL` (rq_worker.h): the device pool of
 * the server fed from Redis Streams; start, drain and stop, and the puller
 * (take an entry while a device is free, settle it or queue its job). */
#include "rq_worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "embed_cache.h"
#include "req_wire.h"
#include "rq_worker_impl.h"

void sd_rq_worker_opts_init(struct sd_rq_worker_opts *o) {
    memset(o, 0, sizeof *o);
    sd_server_opts_init(&o->srv);
    o->prefix = "sdrt";
    o->claim_idle_ms = 30000;
    o->max_attempts = 3;
    o->result_ttl_s = 3600;
}

long long rqw_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rqw_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void rqw_cv_wait_ms(struct sd_rq_worker *w, int ms) { /* under w->mu */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
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
        while (w->n_used >= w->s->n_workers && !w->quit && !w->draining && !w->aborting) rqw_cv_wait_ms(w, RQW_TICK_MS);
        pthread_mutex_unlock(&w->mu);
        if (w->quit || w->draining || w->aborting) break;
        struct sd_ctx ctx = {0};
        struct sd_rq_entry e;
        int got = 0;
        if (sd_rq_take(&ctx, w->q_pull, w->name, w->models, w->n_models, RQW_BLOCK_MS, &e, &got)) {
            if (!w->stop_io && !warned++) sd_logf(&w->s->o.log, SD_LOG_WARN, "taking jobs: %s", ctx.msg);
            rqw_sleep_ms(RQW_BLOCK_MS);
            continue;
        }
        warned = 0;
        if (!got) continue;
        handle_entry(w, &e);
        sd_rq_entry_free(&e);
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
    w->t_start_ms = rqw_now_ms();
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
    s->hooks = (struct srv_hooks){rqw_hook_event, rqw_hook_finish, w};
    pthread_mutex_unlock(&s->mu);
    void *(*fns[3])(void *) = {rqw_publisher, rqw_monitor, puller};
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
    while ((w->n_used > 0 || w->out_head) && !w->aborting) rqw_cv_wait_ms(w, RQW_TICK_MS);
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
        rqw_item_free(it);
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
