/* rq_worker_monitor.c - `sdrt worker`'s monitor thread: heartbeats of the
 * entries it holds (XCLAIM JUSTID every claim_idle/3), their cancel/skip
 * flags, the worker's presence key, trimming of its job streams. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rq_worker_impl.h"

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

void *rqw_monitor(void *arg) {
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
        if (!w->quit) rqw_cv_wait_ms(w, RQW_TICK_MS);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}
