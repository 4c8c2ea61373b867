/* srv.h - the server's internal structures, shared by its files (server.c:
 * HTTP, routing, auth, limits; jobs.c: job model and queue; workers.c:
 * device workers and models; api_*.c: the endpoints; metrics.c; page.c).
 *
 * Locking: one mutex (srv.mu) guards the queue, every job's state, events
 * and results, the workers' bookkeeping and the metrics. ev_cv is broadcast
 * on every job event (SSE readers and model switches wait on it), work_cv
 * when work or a device becomes available.
 */
#ifndef SDRT_SRV_H
#define SDRT_SRV_H

#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>

#include "embed_cache.h"
#include "pipeline.h"
#include "server.h"

enum job_state { JOB_QUEUED = 0, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED, JOB_STATE_COUNT };
enum job_origin { ORIGIN_NATIVE = 0, ORIGIN_A1111, ORIGIN_OPENAI };
enum job_mode { MODE_TXT2IMG = 0, MODE_IMG2IMG, MODE_INPAINT };

struct job_image {
    uint8_t *png;
    size_t len;
    uint64_t seed;
    char *infotext;
};

/* One LoRA of a request: before srv_loras_prepare, name (resolved in
 * --lora-dir) or path (inside --lora-dir); after it, both set. */
struct srv_lora {
    char *name;                   /* the "Lora hashes" name: the tag's NAME, else the file stem */
    char *path;
    float te, unet;
};
#define SRV_MAX_LORAS 8 /* sd_lora_apply takes at most 8 files at once */

/* What a request asks for (owned strings and arrays). */
struct gen_req {
    enum job_mode mode;
    char *prompt, *negative;
    int width, height, batch, n_iter, clip_skip;
    float cfg, strength;
    struct sd_sampler_params sampler;
    long long seed;               /* resolved (never -1 once queued) */
    float *init, *mask;           /* [3,h,w] in [-1,1]; [h,w] in [0,1] */
    int inpaint_fill;             /* A1111 inpainting_fill 0-3 (enum sd_inpaint_fill) */
    int preview_every;            /* steps; 0 = none */
    int model;                    /* override_settings.sd_model_checkpoint: index into srv.models;
                                   * -1 = the server's option (srv.opt_model) */
    int restore;                  /* override_settings_restore_afterwards (default 1): the
                                   * override is this request's only; 0: it becomes the option */
    struct srv_lora *loras;       /* explicit `loras` first, then the prompt's tags (the pipeline's order) */
    int n_loras;
    char *lora_key;               /* the set's identity ("" = none): equal keys, equal merged weights */
};

struct job {
    char id[24];
    int refs;
    enum job_origin origin;
    enum job_state state;
    struct gen_req r;
    json_t *echo;                 /* the request as received (A1111 "parameters") */
    int iter, step, n_steps;      /* progress: iteration (job_no), step done, steps per iteration */
    double t_created, t_start, t_end, step_sum;
    int cancel, skip;
    int exclude_worker, retried, worker;
    int pin;                      /* round-robin / random placement: the worker, else -1 */
    int ran_model;                /* the model it ran on (srv.models index), -1 before */
    int lora_bypassed;            /* times younger jobs with the model's active LoRA set went first */
    char *lora_hashes;            /* A1111 "name: hash, ..." of its set, set when it starts; NULL = none */
    struct job_image *images;
    int n_images;
    char err[600];
    int client_error;             /* the failure is the request's (its LoRA does not fit the model,
                                   * invalid or unsupported input): 422, not 500 (job_http_status) */
    char **events;                /* SSE frames "id: k\nevent: ...\ndata: ...\n\n", k = index */
    int n_events, cap_events;
    uint8_t *preview;             /* the latest preview PNG */
    size_t preview_len;
    int preview_step;
    struct MHD_Connection *waiter; /* a suspended synchronous request */
    struct MHD_Connection **watchers; /* suspended SSE streams waiting for the next event */
    int n_watchers, cap_watchers;
    struct job *next;             /* queue link */
    /* Redis front-end (rq_frontend.c): the job runs on some `sdrt worker`. */
    char rq_last[32];             /* the last event read from P:events:{id} ("0" = none yet) */
    char rq_device[96];           /* "worker/device" that runs it, from its running event */
    int rq_adopted;               /* submitted through another front-end, mirrored here */
    int rq_final;                 /* its final event was read; the result is read next */
};

struct worker {
    struct srv *s;
    int idx;
    pthread_t th;
    int started;
    struct sd_server_device dev;
    struct sd_runtime *rt;
    struct job *cur;
    double busy_s, unhealthy_until;
    int jobs_done, failures;
    char name[32];
};

struct model_entry {
    char name[128];               /* A1111 title / model_name */
    char path[PATH_MAX];
};

/* Jobs with another LoRA set than the model's active one wait until no
 * generation uses the model; meanwhile younger jobs with the active set
 * may go first, each waiting job at most this many times (workers.c). */
#define SRV_LORA_MAX_BYPASS 4

#define SRV_MAX_MODELS 64
#define HIST_BUCKETS 12

struct hist {
    double sum;
    long count, b[HIST_BUCKETS];  /* cumulative counts are computed when printed */
};

/* Observers of every job's events and ends (rq_worker.c publishes them to
 * Redis). Called under mu with the SSE data JSON; NULL members = none. */
struct job;
struct srv;
struct srv_hooks {
    void (*event)(void *user, struct srv *s, struct job *j, const char *event, const char *data_json);
    void (*finish)(void *user, struct srv *s, struct job *j);
    void *user;
};

struct srv {
    struct sd_server_opts o;
    char listen[64], vocab[PATH_MAX], model_path[PATH_MAX], models_dir[PATH_MAX], config[PATH_MAX];
    char api_key[256], api_auth[1024], cors[256];
    pthread_mutex_t mu, switch_mu;
    pthread_cond_t work_cv, ev_cv;
    struct MHD_Daemon *d;
    int port;
    struct model_entry models[SRV_MAX_MODELS];
    int n_models, cur_model;      /* cur_model: the one loaded (s->model) */
    int opt_model;                /* options' sd_model_checkpoint: what a job without an
                                   * override runs on (workers switch to it) */
    struct sd_model *model;
    struct sd_tokenizer *tok;
    int switching, running, stopping;
    int clip_skip;                /* options CLIP_stop_at_last_layers */
    json_t *options;              /* other options POSTed back, kept as given */
    struct sd_embed_cache *cache;
    struct srv_hooks hooks;       /* `sdrt worker` (rq_worker.c) observes the jobs; zero = none */
    /* LoRA (loras.c): the model's state and its active set. lora_users
     * generations hold the set (every running job, with or without LoRAs);
     * a switch happens only at lora_users == 0, by the one worker that set
     * lora_switching, and tells every worker's runtime. Guarded by mu. */
    char lora_dir[PATH_MAX];
    struct sd_lora_state *lora;
    struct sd_ctx lora_ctx;       /* the state's context between switches (a switch binds the job's) */
    char *lora_key;               /* the active set (NULL or "" = none) */
    char (*lora_hash)[16];        /* A1111 short hash of each file of the active set, in order */
    int lora_users, lora_switching;
    long lora_switches;
    json_t *lora_list;            /* GET /sdapi/v1/loras, from the last scan */
    struct worker workers[SD_SERVER_MAX_DEVICES];
    int n_workers;
    struct job *qhead, *qtail;
    int qlen;
    struct job **jobs;            /* every job still known (for GET), oldest first */
    int n_jobs, cap_jobs;
    unsigned long long next_id;
    unsigned rr, seed;            /* round-robin counter, random placement state */
    /* metrics */
    long requests, outcome[JOB_STATE_COUNT], rejected_full, errors_4xx, auth_failures, retries;
    struct hist step_h, job_h;
    double t_start;
    struct rqfe *rq;              /* Redis front-end mode (rq_frontend.c), NULL: local devices */
};

/* jobs.c */
struct job *job_new(struct srv *s, enum job_origin origin); /* refs 1, under no lock */
void job_ref(struct job *j);                                 /* under mu */
void job_unref(struct srv *s, struct job *j);                /* under mu */
void gen_req_free(struct gen_req *r);
/* Adds j to the known jobs (under mu, a ref taken): 0, or -1 (out of memory). */
int job_register(struct srv *s, struct job *j);
/* Enqueues (under mu): 0, or -1 when the queue is full. */
int job_enqueue(struct srv *s, struct job *j);
void job_place(struct srv *s, struct job *j);                /* under mu */
int job_position(struct srv *s, const struct job *j);        /* under mu: 0-based, -1 if not queued */
struct job *job_find(struct srv *s, const char *id);          /* under mu, no ref taken */
/* Appends an SSE event (under mu) and wakes readers; data is a JSON object (stolen). */
void job_event(struct srv *s, struct job *j, const char *event, json_t *data);
/* Suspends an SSE connection until j's next event (under mu): 0, or -1 (out of memory). */
int job_watch(struct job *j, struct MHD_Connection *c);
void job_unwatch(struct job *j, struct MHD_Connection *c);
/* Cancels (under mu): a queued job ends now, a running one at its next step. */
void job_cancel(struct srv *s, struct job *j);
/* Marks a job finished (under mu): state, metrics, events, resumes its waiter. */
void job_finish(struct srv *s, struct job *j, enum job_state st);
const char *job_state_name(enum job_state st);
/* The HTTP status of a failed job's synchronous answer: 422 when the request
 * caused it (client_error), else 500. */
int job_http_status(const struct job *j);
json_t *job_status_json(struct srv *s, struct job *j);        /* under mu */
void jobs_announce_positions(struct srv *s);                  /* under mu */
void hist_add(struct hist *h, double v);

/* workers.c */
int srv_models_scan(struct sd_ctx *ctx, struct srv *s);
int srv_model_find(struct srv *s, const char *name);         /* index or -1; accepts title, name, file */
int srv_model_switch(struct sd_ctx *ctx, struct srv *s, int idx);
int srv_workers_start(struct sd_ctx *ctx, struct srv *s);
void srv_workers_stop(struct srv *s);
const char *srv_model_name(struct srv *s);
const char *srv_option_model_name(struct srv *s); /* the option's model (opt_model) */
void gen_params_of(const struct gen_req *r, struct sd_gen_params *g);                   /* the current model's name */

/* loras.c */
struct perr;
/* Scans --lora-dir (reading outside mu), then swaps s->lora_list: SD_OK or an error on ctx. */
int srv_loras_scan(struct sd_ctx *ctx, struct srv *s);
/* At submit: resolves r's explicit LoRAs and prompt tags in --lora-dir,
 * opens and validates each file, builds r->lora_key. 4xx on e. */
int srv_loras_prepare(struct srv *s, struct gen_req *r, struct perr *e);
int srv_lora_key_eq(const char *a, const char *b);
/* Makes j's set the model's active one (the caller set lora_switching, no
 * generation uses the model); every worker's runtime is told. Outside mu. */
int srv_lora_activate(struct srv *s, struct job *j, struct sd_ctx *ctx);
/* j->lora_hashes from the active set's hashes (under mu). */
void srv_lora_job_hashes(struct srv *s, struct job *j);

/* rq_frontend.c - `sdrt serve --redis URL` (docs/scale-out.md): jobs go to
 * Redis Streams for `sdrt worker`s instead of local devices; one relay
 * thread applies each job's Redis events to the local job object (so SSE,
 * progress and synchronous requests work unchanged). Calls outside mu. */
struct reply;
int rqfe_start(struct sd_ctx *ctx, struct srv *s);
void rqfe_stop(struct srv *s);
/* Submits j (its seed resolved) to its model's stream and registers it: 0, or -1 with rp filled. */
int rqfe_submit(struct srv *s, struct job *j, struct reply *rp);
/* Writes the cancel (or skip) flag of job id to Redis: the worker running it stops at its next step. */
void rqfe_cancel(struct srv *s, const char *id, int skip);
/* A job submitted through another front-end, read from Redis and mirrored
 * locally (then followed like the local ones): 0, or -1 when Redis has none. */
int rqfe_adopt(struct srv *s, const char *id);
/* The queue's /metrics lines (malloc'd text, NULL on error). */
char *rqfe_metrics(struct srv *s);
struct job *rqfe_current(struct srv *s); /* under mu: the running job A1111's progress means */
int rqfe_queued(struct srv *s);          /* under mu: this front-end's queued jobs */

/* Request parsing helpers (reqparse.c). A parse error fills err/field and returns -1. */
struct perr {
    int status;
    char field[64];
    char msg[512];
};
int perr_set(struct perr *e, int status, const char *field, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int req_int(json_t *o, const char *key, int *out, int lo, int hi, struct perr *e);
int req_llong(json_t *o, const char *key, long long *out, struct perr *e);
int req_float(json_t *o, const char *key, float *out, float lo, float hi, struct perr *e);
int req_str(json_t *o, const char *key, const char **out, size_t max_len, struct perr *e);
int req_bool(json_t *o, const char *key, int *out, struct perr *e);
/* The native `loras: [{"name"|"path", "weight", "te", "unet"}]` field into
 * r->loras (at most SRV_MAX_LORAS; exactly one of name and path each). */
int req_loras(struct srv *s, json_t *o, struct gen_req *r, struct perr *e);
/* Decodes a base64 PNG (raw or data: URL) into [3,h,w] (or a [h,w] mask when
 * is_mask) resized to w x h when *w, *h > 0, else sized from the image. */
int req_image(struct srv *s, const char *field, const char *b64, int is_mask, float **out, int *w, int *h, struct perr *e);
/* Fills the size/steps/sampler/... fields common to every API from o;
 * `a1111` picks A1111's defaults (steps 50, cfg 7, Euler). */
int req_gen_common(struct srv *s, json_t *o, struct gen_req *r, int a1111, struct perr *e);

/* base64.c */
char *b64_encode(const uint8_t *d, size_t n, size_t *out_len);
/* Returns the decoded bytes (malloc'd) or NULL when s is not base64. */
uint8_t *b64_decode(const char *s, size_t n, size_t *out_len);

/* Replies: the HTTP layer (server.c) sends what a handler fills in. */
struct reply {
    int status;
    json_t *json;                 /* body, or */
    uint8_t *bytes;               /* raw body (freed) with ctype */
    size_t len;
    const char *ctype;
    const char *static_body;      /* constant body (not freed) */
    struct job *suspend;          /* wait for this job (a ref), then call `resume` */
    json_t *(*resume)(struct srv *s, struct job *j, int *status);
    struct job *sse;              /* stream this job's events (a ref) */
    int sse_from;                 /* first event index */
    int retry_after;              /* seconds; adds Retry-After */
    int openai_err;
};
void reply_error(struct reply *rp, struct perr *e, int openai);
void reply_errorf(struct reply *rp, int status, const char *field, int openai, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

int api_a1111(struct srv *s, const char *method, const char *path, json_t *body, const char *raw, size_t raw_len,
              struct reply *rp);
int api_openai(struct srv *s, const char *method, const char *path, json_t *body, struct reply *rp);
int api_jobs(struct srv *s, const char *method, const char *path, json_t *body, const char *last_event_id,
             struct reply *rp);
void api_metrics(struct srv *s, struct reply *rp);
extern const char srv_page_html[];

/* Shared by the APIs: runs the request through the queue. */
int srv_submit(struct srv *s, struct job *j, struct reply *rp);
json_t *a1111_result(struct srv *s, struct job *j, int *status);

#endif
