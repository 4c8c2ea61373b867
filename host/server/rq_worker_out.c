/* rq_worker_out.c - `sdrt worker`'s outbox: the srv hooks turn a held
 * job's events, progress and end into items (under s->mu); the publisher
 * thread writes them to Redis in order (results retried until written). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rq_worker_impl.h"

/* ---- the outbox (filled under s->mu by the hooks, drained by the publisher) ---- */

void rqw_item_free(struct item *it) {
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
            rqw_item_free(it);
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
        rqw_item_free(it);
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

void rqw_hook_event(void *user, struct srv *s, struct job *j, const char *event, const char *data) {
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
        snprintf(a, sizeof a, "%lld", rqw_now_ms());
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

void rqw_hook_finish(void *user, struct srv *s, struct job *j) {
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

/* ---- the publisher ---- */

static int publish_finish(struct sd_rq_worker *w, struct item *it, struct sd_ctx *ctx) {
    struct slot *sl = &w->slots[it->slot];
    struct job *j = sl->j;
    if (it->state == JOB_FAILED) {
        /* Failed here (a device, a model that does not load here...): the
         * entry stays pending for another worker, unless this was the last
         * attempt. A failure that is the request's (a LoRA that does not fit
         * the model: client_error) fails the same everywhere: at once. */
        if (sl->e.deliveries >= w->o.max_attempts || j->client_error) {
            char why[1024];
            if (j->client_error) snprintf(why, sizeof why, "invalid request: %s", j->err);
            else snprintf(why, sizeof why, "job failed %d times; last error: %s", sl->e.deliveries, j->err);
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

void *rqw_publisher(void *arg) {
    struct sd_rq_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->out_head && !w->quit) rqw_cv_wait_ms(w, RQW_TICK_MS);
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
            rqw_sleep_ms(RQW_TICK_MS);
        }
        if (it->kind == IT_FINISH && w->slots[it->slot].used && w->slots[it->slot].gen == it->gen) release_slot(w, it->slot);
        rqw_item_free(it);
    }
    return NULL;
}
