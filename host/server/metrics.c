/* metrics.c - GET /metrics in the Prometheus text format: queue depth,
 * jobs by outcome, step and job latency histograms, per-device busy time
 * and health (srv.h). */
#include "srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double le[HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

struct buf { char *p; size_t len, cap; };

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q) return;
        b->p = q, b->cap = cap;
    }
}

static void hist(struct buf *b, const char *name, const char *help, const struct hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long cum = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        cum += h->b[i];
        put(b, "%s_bucket{le=\"%g\"} %ld\n", name, le[i], cum);
    }
    put(b, "%s_bucket{le=\"+Inf\"} %ld\n%s_sum %.6f\n%s_count %ld\n", name, h->count, name, h->sum, name, h->count);
}

void api_metrics(struct srv *s, struct reply *rp) {
    struct buf b = {0};
    pthread_mutex_lock(&s->mu);
    put(&b, "# HELP sdrt_queue_depth Jobs waiting in the queue.\n# TYPE sdrt_queue_depth gauge\nsdrt_queue_depth %d\n", s->qlen);
    put(&b, "# HELP sdrt_jobs_running Jobs running now.\n# TYPE sdrt_jobs_running gauge\nsdrt_jobs_running %d\n", s->running);
    put(&b, "# HELP sdrt_jobs_total Finished jobs by outcome.\n# TYPE sdrt_jobs_total counter\n");
    for (int st = JOB_DONE; st < JOB_STATE_COUNT; st++)
        put(&b, "sdrt_jobs_total{outcome=\"%s\"} %ld\n", job_state_name((enum job_state)st), s->outcome[st]);
    put(&b, "# HELP sdrt_jobs_rejected_total Jobs refused because the queue was full.\n# TYPE sdrt_jobs_rejected_total counter\n"
            "sdrt_jobs_rejected_total %ld\n", s->rejected_full);
    put(&b, "# HELP sdrt_job_retries_total Jobs retried on another device after a device error.\n"
            "# TYPE sdrt_job_retries_total counter\nsdrt_job_retries_total %ld\n", s->retries);
    put(&b, "# HELP sdrt_lora_switches_total Changes of the model's active LoRA set.\n"
            "# TYPE sdrt_lora_switches_total counter\nsdrt_lora_switches_total %ld\n", s->lora_switches);
    put(&b, "# HELP sdrt_http_requests_total HTTP requests.\n# TYPE sdrt_http_requests_total counter\n"
            "sdrt_http_requests_total %ld\n", s->requests);
    put(&b, "# HELP sdrt_http_client_errors_total 4xx responses.\n# TYPE sdrt_http_client_errors_total counter\n"
            "sdrt_http_client_errors_total %ld\n", s->errors_4xx);
    put(&b, "# HELP sdrt_auth_failures_total Requests with missing or wrong credentials.\n"
            "# TYPE sdrt_auth_failures_total counter\nsdrt_auth_failures_total %ld\n", s->auth_failures);
    hist(&b, "sdrt_step_seconds", "Sampling step latency.", &s->step_h);
    hist(&b, "sdrt_job_seconds", "Job latency from submission to result.", &s->job_h);
    put(&b, "# HELP sdrt_device_busy_seconds_total Seconds each device spent running jobs.\n"
            "# TYPE sdrt_device_busy_seconds_total counter\n");
    for (int i = 0; i < s->n_workers; i++)
        put(&b, "sdrt_device_busy_seconds_total{device=\"%s\"} %.6f\n", s->workers[i].name, s->workers[i].busy_s);
    put(&b, "# HELP sdrt_device_healthy 1 when the device takes jobs, 0 while it rests after a device error.\n"
            "# TYPE sdrt_device_healthy gauge\n");
    double now = sd_time_s();
    for (int i = 0; i < s->n_workers; i++)
        put(&b, "sdrt_device_healthy{device=\"%s\"} %d\n", s->workers[i].name, now >= s->workers[i].unhealthy_until);
    put(&b, "# HELP sdrt_device_failures_total Device errors per device.\n# TYPE sdrt_device_failures_total counter\n");
    for (int i = 0; i < s->n_workers; i++)
        put(&b, "sdrt_device_failures_total{device=\"%s\"} %d\n", s->workers[i].name, s->workers[i].failures);
    pthread_mutex_unlock(&s->mu);
    if (s->rq) { /* front-end mode: the Redis queue (rq_frontend.c) */
        char *q = rqfe_metrics(s);
        put(&b, "%s", q ? q : "");
        free(q);
    }
    if (!b.p) { reply_errorf(rp, 500, NULL, 0, "out of memory"); return; }
    rp->bytes = (uint8_t *)b.p, rp->len = b.len;
    rp->ctype = "text/plain; version=0.0.4";
}
