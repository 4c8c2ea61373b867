/* jobs.c - the job model: states, the bounded FIFO queue, SSE events,
 * cancel, and the finished-job history (srv.h). Everything here runs
 * under srv.mu except job_new. */
#include "srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const state_names[JOB_STATE_COUNT] = {"queued", "running", "done", "failed", "cancelled"};

const char *job_state_name(enum job_state st) { return state_names[st]; }

int job_http_status(const struct job *j) { return j->client_error ? 422 : 500; }

struct job *job_new(struct srv *s, enum job_origin origin) {
    struct job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->refs = 1;
    j->origin = origin;
    j->exclude_worker = -1;
    j->pin = -1;
    j->worker = -1;
    j->ran_model = -1;
    j->t_created = sd_time_s();
    pthread_mutex_lock(&s->mu);
    unsigned long long n = ++s->next_id;
    pthread_mutex_unlock(&s->mu);
    /* Unguessable enough to not collide across restarts; ordered within one. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(j->id, sizeof j->id, "%06llx%08lx", n, (unsigned long)((uint64_t)ts.tv_nsec * 2654435761u) & 0xffffffffu);
    return j;
}

void job_ref(struct job *j) { j->refs++; }

static void job_free(struct job *j) {
    gen_req_free(&j->r);
    json_decref(j->echo);
    free(j->lora_hashes);
    for (int i = 0; i < j->n_images; i++) {
        free(j->images[i].png);
        free(j->images[i].infotext);
    }
    free(j->images);
    for (int i = 0; i < j->n_events; i++) free(j->events[i]);
    free(j->events);
    free(j->preview);
    free(j->watchers);
    free(j);
}

void job_unref(struct srv *s, struct job *j) {
    (void)s;
    if (j && --j->refs == 0) job_free(j);
}

/* Keeps at most keep_jobs finished jobs (the oldest go first). */
static void jobs_trim(struct srv *s) {
    int finished = 0;
    for (int i = 0; i < s->n_jobs; i++) finished += s->jobs[i]->state >= JOB_DONE;
    for (int i = 0; i < s->n_jobs && finished > s->o.keep_jobs;) {
        if (s->jobs[i]->state >= JOB_DONE) {
            job_unref(s, s->jobs[i]);
            memmove(s->jobs + i, s->jobs + i + 1, sizeof *s->jobs * (size_t)(s->n_jobs - i - 1));
            s->n_jobs--, finished--;
        } else {
            i++;
        }
    }
}

/* Pins j to a healthy worker under round-robin / random placement. */
void job_place(struct srv *s, struct job *j) {
    j->pin = -1;
    if (s->o.balance == SD_BALANCE_LEAST_BUSY || s->n_workers < 2) return;
    double now = sd_time_s();
    for (int tries = 0; tries < s->n_workers; tries++) {
        int w = s->o.balance == SD_BALANCE_ROUND_ROBIN ? (int)(s->rr++ % (unsigned)s->n_workers)
                                                       : (int)(rand_r(&s->seed) % s->n_workers);
        if (w != j->exclude_worker && now >= s->workers[w].unhealthy_until) { j->pin = w; return; }
    }
}

int job_register(struct srv *s, struct job *j) {
    if (s->n_jobs == s->cap_jobs) {
        int cap = s->cap_jobs ? 2 * s->cap_jobs : 64;
        struct job **n = realloc(s->jobs, sizeof *n * (size_t)cap);
        if (!n) return -1;
        s->jobs = n, s->cap_jobs = cap;
    }
    s->jobs[s->n_jobs++] = j;
    job_ref(j);
    return 0;
}

int job_enqueue(struct srv *s, struct job *j) {
    if (s->qlen >= s->o.queue_max || job_register(s, j)) return -1;
    job_place(s, j);
    j->state = JOB_QUEUED;
    j->next = NULL;
    if (s->qtail) s->qtail->next = j;
    else s->qhead = j;
    s->qtail = j;
    s->qlen++;
    job_ref(j); /* the queue's */
    json_t *d = json_pack("{s:s,s:i}", "status", "queued", "position", s->qlen - 1);
    job_event(s, j, "queue", d);
    pthread_cond_broadcast(&s->work_cv);
    return 0;
}

int job_position(struct srv *s, const struct job *j) {
    int k = 0;
    if (s->rq) { /* front-end mode: this front-end's older queued jobs (the stream is shared) */
        if (j->state != JOB_QUEUED) return -1;
        for (int i = 0; i < s->n_jobs && s->jobs[i] != j; i++) k += s->jobs[i]->state == JOB_QUEUED;
        return k;
    }
    for (struct job *q = s->qhead; q; q = q->next, k++)
        if (q == j) return k;
    return -1;
}

struct job *job_find(struct srv *s, const char *id) {
    for (int i = 0; i < s->n_jobs; i++)
        if (!strcmp(s->jobs[i]->id, id)) return s->jobs[i];
    return NULL;
}

void job_event(struct srv *s, struct job *j, const char *event, json_t *data) {
    if (!data) return;
    char *txt = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    if (!txt) return;
    if (j->n_events == j->cap_events) {
        int cap = j->cap_events ? 2 * j->cap_events : 16;
        char **n = realloc(j->events, sizeof *n * (size_t)cap);
        if (!n) { free(txt); return; }
        j->events = n, j->cap_events = cap;
    }
    size_t len = strlen(txt) + strlen(event) + 48;
    char *f = malloc(len);
    if (f) {
        snprintf(f, len, "id: %d\nevent: %s\ndata: %s\n\n", j->n_events, event, txt);
        j->events[j->n_events++] = f;
    }
    if (s->hooks.event) s->hooks.event(s->hooks.user, s, j, event, txt);
    free(txt);
    for (int i = 0; i < j->n_watchers; i++) MHD_resume_connection(j->watchers[i]);
    j->n_watchers = 0;
    pthread_cond_broadcast(&s->ev_cv);
}

int job_watch(struct job *j, struct MHD_Connection *c) {
    if (j->n_watchers == j->cap_watchers) {
        int cap = j->cap_watchers ? 2 * j->cap_watchers : 4;
        struct MHD_Connection **n = realloc(j->watchers, sizeof *n * (size_t)cap);
        if (!n) return -1;
        j->watchers = n, j->cap_watchers = cap;
    }
    j->watchers[j->n_watchers++] = c;
    MHD_suspend_connection(c);
    return 0;
}

void job_unwatch(struct job *j, struct MHD_Connection *c) {
    for (int i = 0; i < j->n_watchers; i++)
        if (j->watchers[i] == c) {
            j->watchers[i] = j->watchers[--j->n_watchers];
            return;
        }
}

static void queue_remove(struct srv *s, struct job *j) {
    struct job **pp = &s->qhead, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            if (s->qtail == j) s->qtail = prev;
            s->qlen--;
            j->next = NULL;
            job_unref(s, j);
            return;
        }
}

void jobs_announce_positions(struct srv *s) {
    int k = 0;
    for (struct job *q = s->qhead; q; q = q->next, k++)
        job_event(s, q, "queue", json_pack("{s:s,s:i}", "status", "queued", "position", k));
}

void hist_add(struct hist *h, double v) {
    static const double le[HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    h->sum += v;
    h->count++;
    for (int i = 0; i < HIST_BUCKETS; i++)
        if (v <= le[i]) { h->b[i]++; break; }
}

json_t *job_status_json(struct srv *s, struct job *j) {
    json_t *o = json_pack("{s:s,s:s}", "id", j->id, "status", job_state_name(j->state));
    if (j->state == JOB_QUEUED) json_object_set_new(o, "position", json_integer(job_position(s, j)));
    if (j->state == JOB_RUNNING || j->state >= JOB_DONE) {
        double per = j->step ? j->step_sum / (j->iter * j->n_steps + j->step) : 0;
        int left = j->n_steps * j->r.n_iter - (j->iter * j->n_steps + j->step);
        json_object_set_new(o, "step", json_integer(j->step));
        json_object_set_new(o, "steps", json_integer(j->n_steps));
        json_object_set_new(o, "iteration", json_integer(j->iter));
        json_object_set_new(o, "iterations", json_integer(j->r.n_iter));
        if (j->state == JOB_RUNNING) json_object_set_new(o, "eta_seconds", json_real(per * (left > 0 ? left : 0)));
        if (j->worker >= 0) json_object_set_new(o, "device", json_string(s->workers[j->worker].name));
        else if (j->rq_device[0]) json_object_set_new(o, "device", json_string(j->rq_device)); /* front-end mode */
        if (j->t_start > 0) json_object_set_new(o, "started_at", json_real(j->t_start - s->t_start)); /* s since server start */
    }
    if (j->state == JOB_FAILED) json_object_set_new(o, "error", json_string(j->err));
    json_t *imgs = json_array();
    for (int i = 0; i < j->n_images; i++) {
        char url[96];
        snprintf(url, sizeof url, "/v1/jobs/%s/images/%d.png", j->id, i);
        json_array_append_new(imgs, json_pack("{s:s,s:I,s:s}", "url", url, "seed", (json_int_t)j->images[i].seed, "parameters",
                                              j->images[i].infotext ? j->images[i].infotext : ""));
    }
    json_object_set_new(o, "images", imgs);
    json_object_set_new(o, "seed", json_integer(j->r.seed));
    if (j->t_end > 0) json_object_set_new(o, "seconds", json_real(j->t_end - j->t_created));
    if (j->t_end > 0 && j->t_start > 0) json_object_set_new(o, "run_seconds", json_real(j->t_end - j->t_start));
    return o;
}

void job_finish(struct srv *s, struct job *j, enum job_state st) {
    j->state = st;
    j->t_end = sd_time_s();
    s->outcome[st]++;
    if (st == JOB_DONE) hist_add(&s->job_h, j->t_end - j->t_created);
    job_event(s, j, st == JOB_DONE ? "result" : st == JOB_FAILED ? "error" : "cancelled", job_status_json(s, j));
    if (s->hooks.finish) s->hooks.finish(s->hooks.user, s, j);
    if (j->waiter) {
        MHD_resume_connection(j->waiter);
        j->waiter = NULL;
    }
    jobs_trim(s);
    pthread_cond_broadcast(&s->ev_cv);
}

void job_cancel(struct srv *s, struct job *j) {
    if (j->state == JOB_QUEUED) {
        queue_remove(s, j);
        job_finish(s, j, JOB_CANCELLED);
        jobs_announce_positions(s);
    } else if (j->state == JOB_RUNNING) {
        j->cancel = 1;
    }
}
