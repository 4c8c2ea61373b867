/* api_jobs.c - native async jobs: POST /v1/jobs (202 + id), GET
 * /v1/jobs/{id}, GET /v1/jobs/{id}/events (SSE, Last-Event-ID), GET
 * /v1/jobs/{id}/images/{k}.png, DELETE /v1/jobs/{id} (srv.h). */
#include "srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void create(struct srv *s, json_t *body, struct reply *rp) {
    struct perr e = {0};
    struct job *j = job_new(s, ORIGIN_NATIVE);
    if (!j) { reply_errorf(rp, 500, NULL, 0, "out of memory"); return; }
    const char *init = NULL, *mask = NULL;
    int rc = req_gen_common(s, body, &j->r, 0, &e);
    if (!rc) rc = req_loras(s, body, &j->r, &e);
    if (!rc) rc = req_str(body, "init_image", &init, s->o.max_body, &e) || req_str(body, "mask", &mask, s->o.max_body, &e);
    if (!rc && init) {
        j->r.mode = MODE_IMG2IMG;
        j->r.strength = mask ? 1.0f : 0.75f;
        rc = req_float(body, "strength", &j->r.strength, 0.001f, 1.0f, &e) ||
             req_image(s, "init_image", init, 0, &j->r.init, &j->r.width, &j->r.height, &e);
        if (!rc && mask) {
            j->r.mode = MODE_INPAINT;
            rc = req_image(s, "mask", mask, 1, &j->r.mask, &j->r.width, &j->r.height, &e);
        }
    } else if (!rc && mask) {
        rc = perr_set(&e, 422, "mask", "needs init_image");
    }
    if (rc || srv_submit(s, j, rp)) {
        if (rc) reply_error(rp, &e, 0);
        pthread_mutex_lock(&s->mu);
        job_unref(s, j);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_lock(&s->mu);
    rp->json = job_status_json(s, j);
    char url[64];
    snprintf(url, sizeof url, "/v1/jobs/%s/events", j->id);
    json_object_set_new(rp->json, "events", json_string(url));
    rp->status = 202;
    job_unref(s, j);
    pthread_mutex_unlock(&s->mu);
}

int api_jobs(struct srv *s, const char *method, const char *path, json_t *body, const char *last_event_id,
             struct reply *rp) {
    if (!strcmp(path, "/v1/jobs")) {
        if (!strcmp(method, "POST")) {
            if (!body) reply_errorf(rp, 422, "body", 0, "expected a JSON object");
            else create(s, body, rp);
            return 1;
        }
        if (!strcmp(method, "GET")) {
            pthread_mutex_lock(&s->mu);
            json_t *a = json_array();
            for (int i = 0; i < s->n_jobs; i++) json_array_append_new(a, job_status_json(s, s->jobs[i]));
            pthread_mutex_unlock(&s->mu);
            rp->json = json_pack("{s:o}", "jobs", a);
            return 1;
        }
        return 0;
    }
    if (strncmp(path, "/v1/jobs/", 9)) return 0;
    char id[32];
    const char *rest = path + 9;
    size_t n = strcspn(rest, "/");
    if (n == 0 || n >= sizeof id) return 0;
    memcpy(id, rest, n);
    id[n] = 0;
    rest += n;
    pthread_mutex_lock(&s->mu);
    struct job *j = job_find(s, id);
    if (!j && s->rq) { /* front-end mode: a job submitted through another front-end */
        pthread_mutex_unlock(&s->mu);
        int found = !rqfe_adopt(s, id);
        pthread_mutex_lock(&s->mu);
        if (found) j = job_find(s, id);
    }
    if (!j) {
        pthread_mutex_unlock(&s->mu);
        reply_errorf(rp, 404, "id", 0, "no job %s (finished jobs are kept for the last %d)", id, s->o.keep_jobs);
        return 1;
    }
    int k;
    char tail[8];
    if (!*rest && !strcmp(method, "GET")) {
        rp->json = job_status_json(s, j);
    } else if (!*rest && !strcmp(method, "DELETE") && s->rq) {
        /* front-end mode: the flag goes to Redis; the worker ends the job (a
         * queued one when it takes it) and its cancelled event comes back */
        if (j->state < JOB_DONE) j->cancel = 1;
        int live = j->state < JOB_DONE;
        rp->json = job_status_json(s, j);
        pthread_mutex_unlock(&s->mu);
        if (live) rqfe_cancel(s, id, 0);
        return 1;
    } else if (!*rest && !strcmp(method, "DELETE")) {
        job_cancel(s, j);
        rp->json = job_status_json(s, j);
    } else if (!strcmp(rest, "/events") && !strcmp(method, "GET")) {
        int from = 0;
        if (last_event_id) {
            char *end;
            long v = strtol(last_event_id, &end, 10);
            if (end != last_event_id && v >= 0 && v < 1000000) from = (int)v + 1;
        }
        job_ref(j);
        rp->sse = j, rp->sse_from = from;
    } else if (sscanf(rest, "/images/%d.pn%1[g]%c", &k, tail, tail + 1) == 2 && !strcmp(method, "GET")) {
        if (k < 0 || k >= j->n_images) {
            reply_errorf(rp, 404, "image", 0, "job %s has %d image%s", id, j->n_images, j->n_images == 1 ? "" : "s");
        } else if ((rp->bytes = malloc(j->images[k].len))) {
            memcpy(rp->bytes, j->images[k].png, j->images[k].len);
            rp->len = j->images[k].len;
            rp->ctype = "image/png";
        }
    } else {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    pthread_mutex_unlock(&s->mu);
    return 1;
}
