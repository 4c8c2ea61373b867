/* server.c - the HTTP layer (libmicrohttpd): bodies with a size limit,
 * auth (Bearer / Basic, constant-time), CORS, routing to the APIs,
 * synchronous requests suspended until their job ends, SSE as a chunked
 * content-reader response (suspended between events), start and stop (server.h). */
#include "srv.h"

#include "model_load.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

void sd_server_opts_init(struct sd_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1";
    o->port = 7860;
    o->threads = 8;
    o->queue_max = 64;
    o->timeout_s = 30;
    o->max_body = 32u << 20;
    o->max_side = 2048;
    o->max_steps = 150;
    o->max_batch = 8;
    o->max_n_iter = 16;
    o->max_prompt = 16384;
    o->preview_every = 5;
    o->keep_jobs = 256;
    o->warmup = 1;
    o->backoff_s = 60;
    sd_runtime_opts_init(&o->rt);
}

/* One connection's request. */
struct req {
    char *body;
    size_t len, cap;
    int too_big;
    struct job *job;              /* suspended on this job */
    json_t *(*resume)(struct srv *s, struct job *j, int *status);
    int openai;
};

/* An SSE stream's state (the content reader's cls). */
struct sse {
    struct srv *s;
    struct job *j;
    int next;                     /* next event index to send */
    size_t off;                   /* bytes of events[next] already sent */
    struct MHD_Connection *c;
};

void reply_error(struct reply *rp, struct perr *e, int openai) {
    rp->status = e->status ? e->status : 400;
    const char *type = rp->status == 401 ? "unauthorized" : rp->status == 404 ? "not_found"
                       : rp->status == 413 ? "payload_too_large" : rp->status == 503 ? "unavailable"
                       : rp->status >= 500 ? "server_error" : "invalid_request_error";
    if (openai)
        rp->json = json_pack("{s:{s:s,s:s,s:s*,s:n}}", "error", "message", e->msg, "type", type, "param",
                             e->field[0] ? e->field : NULL, "code");
    else
        rp->json = json_pack("{s:s,s:s,s:s*}", "error", type, "detail", e->msg, "field", e->field[0] ? e->field : NULL);
}

void reply_errorf(struct reply *rp, int status, const char *field, int openai, const char *fmt, ...) {
    struct perr e = {0};
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    perr_set(&e, status, field, "%s", m);
    reply_error(rp, &e, openai);
}

/* Constant-time equality (time depends on the lengths only). */
static int ct_equal(const char *a, size_t na, const char *b, size_t nb) {
    unsigned char d = (unsigned char)(na != nb);
    size_t n = na > nb ? na : nb;
    for (size_t i = 0; i < n; i++) d |= (unsigned char)((i < na ? a[i] : 0) ^ (i < nb ? b[i] : 0));
    return d == 0;
}

static int authorized(struct srv *s, struct MHD_Connection *c) {
    if (!s->api_key[0] && !s->api_auth[0]) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h) return 0;
    int ok = 0;
    if (s->api_key[0] && !strncasecmp(h, "Bearer ", 7))
        ok |= ct_equal(h + 7, strlen(h + 7), s->api_key, strlen(s->api_key));
    if (s->api_auth[0] && !strncasecmp(h, "Basic ", 6)) {
        size_t n = 0;
        uint8_t *up = b64_decode(h + 6, strlen(h + 6), &n);
        if (up) {
            /* Every user:pass of the list is compared, whichever matches. */
            for (const char *p = s->api_auth; *p;) {
                size_t len = strcspn(p, ",");
                ok |= ct_equal((const char *)up, n, p, len);
                p += len + (p[len] == ',');
            }
            free(up);
        }
    }
    return ok;
}

static enum MHD_Result send_json(struct srv *s, struct MHD_Connection *c, int status, json_t *j, int retry_after) {
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!txt) txt = strdup("null");
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(txt), txt, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (s->cors[0]) MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cors);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", s->api_auth[0] ? "Basic realm=\"sdrt\"" : "Bearer");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    if (status >= 400 && status < 500) {
        pthread_mutex_lock(&s->mu);
        s->errors_4xx++;
        pthread_mutex_unlock(&s->mu);
    }
    return ret;
}

/* SSE: sends a job's stored events in order; with none to send while the
 * job lives, the connection is suspended (no HTTP thread waits) and the
 * job's next event resumes it. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct sse *x = cls;
    struct srv *s = x->s;
    struct job *j = x->j;
    ssize_t n = 0;
    pthread_mutex_lock(&s->mu);
    if (x->next < j->n_events) {
        const char *e = j->events[x->next];
        size_t len = strlen(e) - x->off;
        size_t k = len < max ? len : max;
        memcpy(buf, e + x->off, k);
        x->off += k;
        if (x->off == strlen(e)) x->next++, x->off = 0;
        n = (ssize_t)k;
    } else if (j->state >= JOB_DONE || s->stopping || job_watch(j, x->c)) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void sse_free(void *cls) {
    struct sse *x = cls;
    pthread_mutex_lock(&x->s->mu);
    job_unwatch(x->j, x->c);
    job_unref(x->s, x->j);
    pthread_mutex_unlock(&x->s->mu);
    free(x);
}

static enum MHD_Result send_reply(struct srv *s, struct MHD_Connection *c, struct req *q, struct reply *rp) {
    if (rp->suspend) {
        q->job = rp->suspend;
        q->resume = rp->resume;
        q->openai = rp->openai_err;
        pthread_mutex_lock(&s->mu);
        if (q->job->state < JOB_DONE) {
            q->job->waiter = c;
            MHD_suspend_connection(c);
        } else {
            pthread_mutex_unlock(&s->mu);
            int status = 200;
            json_t *j = q->resume(s, q->job, &status);
            return send_json(s, c, status, j, 0);
        }
        pthread_mutex_unlock(&s->mu);
        return MHD_YES;
    }
    if (rp->sse) {
        struct sse *x = calloc(1, sizeof *x);
        if (!x) {
            pthread_mutex_lock(&s->mu);
            job_unref(s, rp->sse);
            pthread_mutex_unlock(&s->mu);
            return MHD_NO;
        }
        x->s = s, x->j = rp->sse, x->next = rp->sse_from, x->c = c;
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, x, sse_free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        if (s->cors[0]) MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cors);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (rp->bytes || rp->static_body) {
        struct MHD_Response *r = rp->bytes ? MHD_create_response_from_buffer(rp->len, rp->bytes, MHD_RESPMEM_MUST_FREE)
                                           : MHD_create_response_from_buffer(strlen(rp->static_body), (void *)rp->static_body,
                                                                             MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", rp->ctype);
        if (s->cors[0]) MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cors);
        enum MHD_Result ret = MHD_queue_response(c, (unsigned)(rp->status ? rp->status : 200), r);
        MHD_destroy_response(r);
        return ret;
    }
    return send_json(s, c, rp->status ? rp->status : 200, rp->json, rp->retry_after);
}

static void route(struct srv *s, struct MHD_Connection *c, const char *method, const char *url, struct req *q,
                  struct reply *rp) {
    json_t *body = NULL;
    int is_openai = !strncmp(url, "/v1/images", 10) || !strncmp(url, "/v1/models", 10);
    if (q->len && (!strcmp(method, "POST") || !strcmp(method, "PUT"))) {
        json_error_t je;
        body = json_loadb(q->body, q->len, 0, &je);
        if (!body) {
            reply_errorf(rp, 400, "body", is_openai, "malformed JSON at line %d column %d: %s", je.line, je.column, je.text);
            return;
        }
    }
    if (!strcmp(url, "/health")) {
        pthread_mutex_lock(&s->mu);
        int busy = s->running;
        rp->json = json_pack("{s:s,s:s,s:i,s:i,s:i}", "status", "ok", "model", srv_model_name(s), "queue", s->qlen,
                             "running", busy, "workers", s->n_workers);
        pthread_mutex_unlock(&s->mu);
    } else if (!strcmp(url, "/") && !strcmp(method, "GET")) {
        rp->static_body = srv_page_html;
        rp->ctype = "text/html; charset=utf-8";
    } else if (!strcmp(url, "/metrics") && !strcmp(method, "GET")) {
        api_metrics(s, rp);
    } else if (!strncmp(url, "/sdapi/v1/", 10)) {
        if (!api_a1111(s, method, url + 10, body, q->body, q->len, rp))
            reply_errorf(rp, 404, NULL, 0, "no endpoint %s %s", method, url);
    } else if (is_openai) {
        if (!api_openai(s, method, url, body, rp)) reply_errorf(rp, 404, NULL, 1, "no endpoint %s %s", method, url);
    } else if (!strncmp(url, "/v1/jobs", 8)) {
        const char *lei = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
        if (!api_jobs(s, method, url, body, lei, rp)) reply_errorf(rp, 404, NULL, 0, "no endpoint %s %s", method, url);
    } else {
        reply_errorf(rp, 404, NULL, 0, "no endpoint %s %s", method, url);
    }
    json_decref(body);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    struct srv *s = cls;
    struct req *q = *con_cls;
    if (!q) {
        if (!(q = calloc(1, sizeof *q))) return MHD_NO;
        *con_cls = q;
        pthread_mutex_lock(&s->mu);
        s->requests++;
        pthread_mutex_unlock(&s->mu);
        return MHD_YES;
    }
    if (*upload_size) {
        if (!q->too_big && q->len + *upload_size > s->o.max_body) {
            q->too_big = 1;
            free(q->body);
            q->body = NULL, q->len = q->cap = 0;
        }
        if (!q->too_big) {
            if (q->len + *upload_size + 1 > q->cap) {
                size_t cap = (q->len + *upload_size + 1) * 2;
                if (cap > s->o.max_body + 1) cap = s->o.max_body + 1;
                char *n = realloc(q->body, cap);
                if (!n) return MHD_NO;
                q->body = n, q->cap = cap;
            }
            memcpy(q->body + q->len, upload, *upload_size);
            q->len += *upload_size;
            q->body[q->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->job) { /* resumed: the job ended */
        int status = 200;
        json_t *j = q->resume(s, q->job, &status);
        return send_json(s, c, status, j, 0);
    }
    struct reply rp = {0};
    if (!strcmp(method, "OPTIONS") && s->cors[0]) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cors);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        enum MHD_Result ret = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        return ret;
    }
    int is_openai = !strncmp(url, "/v1/images", 10) || !strncmp(url, "/v1/models", 10);
    if (strcmp(url, "/health") && !authorized(s, c)) {
        pthread_mutex_lock(&s->mu);
        s->auth_failures++;
        pthread_mutex_unlock(&s->mu);
        reply_errorf(&rp, 401, "Authorization", is_openai, "missing or wrong credentials (%s)",
                     s->api_key[0] ? "Authorization: Bearer KEY" : "HTTP Basic user:password");
        return send_reply(s, c, q, &rp);
    }
    if (q->too_big) {
        reply_errorf(&rp, 413, "body", is_openai, "request body is larger than the limit of %zu bytes", s->o.max_body);
        return send_reply(s, c, q, &rp);
    }
    route(s, c, method, url, q, &rp);
    return send_reply(s, c, q, &rp);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    struct srv *s = cls;
    struct req *q = *con_cls;
    if (!q) return;
    if (q->job) {
        pthread_mutex_lock(&s->mu);
        if (q->job->waiter == c) q->job->waiter = NULL;
        job_unref(s, q->job);
        pthread_mutex_unlock(&s->mu);
    }
    free(q->body);
    free(q);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    struct srv *s = cls;
    char m[512];
    vsnprintf(m, sizeof m, fmt, ap);
    size_t n = strlen(m);
    while (n && m[n - 1] == '\n') m[--n] = 0;
    sd_logf(&s->o.log, SD_LOG_WARN, "http: %s", m);
}

static void copy_opt(char *dst, size_t n, const char *src) { snprintf(dst, n, "%s", src ? src : ""); }

struct sd_server *sd_server_start(struct sd_ctx *ctx, const struct sd_server_opts *o) {
    struct srv *s = calloc(1, sizeof *s);
    if (!s) { sd_errorf(ctx, SD_ERR_NOMEM, "out of memory"); return NULL; }
    s->o = *o;
    s->t_start = sd_time_s();
    copy_opt(s->listen, sizeof s->listen, o->listen ? o->listen : "127.0.0.1");
    copy_opt(s->vocab, sizeof s->vocab, o->vocab);
    copy_opt(s->model_path, sizeof s->model_path, o->model);
    copy_opt(s->models_dir, sizeof s->models_dir, o->models_dir);
    copy_opt(s->config, sizeof s->config, o->config);
    copy_opt(s->lora_dir, sizeof s->lora_dir, o->lora_dir);
    copy_opt(s->api_key, sizeof s->api_key, o->api_key);
    copy_opt(s->api_auth, sizeof s->api_auth, o->api_auth);
    copy_opt(s->cors, sizeof s->cors, o->cors_origin);
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
        goto fail;
    }
    if (srv_models_scan(ctx, s) || srv_loras_scan(ctx, s)) goto fail;
    if (o->redis_url) { /* front-end: the models are names, the workers load them */
        s->cur_model = 0;
        if (rqfe_start(ctx, s)) goto fail;
    } else if (srv_model_switch(ctx, s, 0) || srv_workers_start(ctx, s)) {
        goto fail;
    }
    s->opt_model = s->cur_model;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (inet_pton(AF_INET, s->listen, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, s->listen, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else {
        sd_errorf(ctx, SD_ERR_INVALID, "--listen %s is not an IPv4 or IPv6 address", s->listen);
        goto fail;
    }
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handler, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(o->threads > 0 ? o->threads : 1),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                            MHD_OPTION_END);
    if (!s->d) {
        sd_errorf(ctx, SD_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this machine)", s->listen,
                  o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    return (struct sd_server *)s;
fail:
    sd_server_stop((struct sd_server *)s);
    return NULL;
}

int sd_server_port(const struct sd_server *sv) { return ((const struct srv *)sv)->port; }

void sd_server_stop(struct sd_server *sv) {
    struct srv *s = (struct srv *)sv;
    if (!s) return;
    srv_workers_stop(s); /* ends every job: suspended requests and streams resume */
    rqfe_stop(s);        /* front-end mode: the relay stops, unfinished jobs end here (not on the workers) */
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_jobs; i++) {
        struct job *j = s->jobs[i];
        for (int k = 0; k < j->n_watchers; k++) MHD_resume_connection(j->watchers[k]);
        j->n_watchers = 0;
    }
    pthread_mutex_unlock(&s->mu);
    if (s->d) MHD_stop_daemon(s->d);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_jobs; i++) job_unref(s, s->jobs[i]);
    pthread_mutex_unlock(&s->mu);
    free(s->jobs);
    sd_lora_state_free(s->lora); /* the runtimes released the model (srv_workers_stop) */
    free(s->lora_key);
    free(s->lora_hash);
    json_decref(s->lora_list);
    sd_model_free(s->model);
    sd_tokenizer_free(s->tok);
    sd_embed_cache_free(s->cache);
    json_decref(s->options);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->switch_mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->ev_cv);
    free(s);
}

int srv_submit(struct srv *s, struct job *j, struct reply *rp) {
    struct sd_gen_params g;
    struct sd_ctx vctx = {0};
    gen_params_of(&j->r, &g);
    if (sd_gen_params_check(&vctx, &g)) {
        reply_errorf(rp, 422, NULL, j->origin == ORIGIN_OPENAI, "%s", vctx.msg);
        return -1;
    }
    struct perr e = {0};
    if (s->rq && !s->lora_dir[0]) { /* front-end without the LoRA files: the workers resolve the names */
        for (int i = 0; i < j->r.n_loras; i++)
            if (!j->r.loras[i].name) {
                reply_errorf(rp, 422, "loras", j->origin == ORIGIN_OPENAI, "loras[%d]: a front-end without --lora-dir "
                             "passes LoRAs by name only (the workers resolve them in their --lora-dir)", i);
                return -1;
            }
    } else if (srv_loras_prepare(s, &j->r, &e)) {
        reply_error(rp, &e, j->origin == ORIGIN_OPENAI);
        return -1;
    }
    /* A model override runs on that model (the worker switches); without
     * override_settings_restore_afterwards it also becomes the option. */
    if (j->r.model >= 0 && !j->r.restore) {
        pthread_mutex_lock(&s->mu);
        s->opt_model = j->r.model;
        pthread_mutex_unlock(&s->mu);
    }
    if (j->r.seed < 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        j->r.seed = (long long)(((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20)) & 0xffffffffu);
    }
    if (s->rq) return rqfe_submit(s, j, rp); /* front-end mode: to Redis */
    pthread_mutex_lock(&s->mu);
    int rc = s->stopping ? -1 : job_enqueue(s, j);
    if (rc) s->rejected_full++;
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        reply_errorf(rp, 503, NULL, j->origin == ORIGIN_OPENAI, "the queue is full (%d jobs); retry later", s->o.queue_max);
        rp->retry_after = 5;
        return -1;
    }
    return 0;
}
