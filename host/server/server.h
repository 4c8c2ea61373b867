/* server.h - `sdrt serve`: an HTTP server (libmicrohttpd) with the A1111
 * /sdapi/v1 API, the OpenAI Images API, native async jobs with Server-Sent
 * Events, /health and /metrics (docs/server.md).
 *
 * Threads: libmicrohttpd's pool answers requests and never runs inference;
 * one worker thread per device (struct sd_server_opts.devices) takes jobs
 * from one FIFO queue (a free worker takes the oldest job: least-busy
 * placement) and runs them through the pipeline with its own runtime over
 * the shared model and embedding cache. A1111's synchronous calls suspend
 * their connection until the job ends. Library code: messages go to
 * opts.log, nothing is printed.
 */
#ifndef SDRT_SERVER_H
#define SDRT_SERVER_H

#include "runtime.h"

#define SD_SERVER_MAX_DEVICES 8

struct sd_server_device {
    enum sd_backend_kind backend; /* CPU or OPENCL */
    int cl_device;                /* OpenCL flat index */
};

struct sd_server_opts {
    const char *listen;           /* address to bind (default "127.0.0.1") */
    int port;                     /* 0 = any free port (sd_server_port says which) */
    const char *model;            /* model path loaded at start (or NULL: the first of models_dir) */
    const char *config;           /* diffusers folder describing single-file models, or NULL */
    const char *models_dir;       /* more models: *.safetensors and diffusers folders, or NULL */
    const char *vocab;            /* CLIP BPE vocabulary for single-file models */
    const char *lora_dir;         /* LoRA files for <lora:NAME:W> tags and `loras`, or NULL (no LoRAs) */
    const char *api_key;          /* Bearer token, or NULL */
    const char *api_auth;         /* "user:pass,user2:pass2" (HTTP Basic), or NULL */
    const char *cors_origin;      /* Access-Control-Allow-Origin, or NULL (no CORS headers) */
    int threads;                  /* HTTP thread pool size (default 8) */
    int queue_max;                /* most queued jobs before 503 (default 64) */
    int timeout_s;                /* connection idle timeout (default 30) */
    size_t max_body;              /* request body limit in bytes (default 32 MiB) */
    int max_side, max_steps, max_batch, max_n_iter, max_prompt; /* request limits */
    int preview_every;            /* default preview period in steps for jobs (0 = off) */
    int keep_jobs;                /* finished jobs kept for GET (default 256) */
    int warmup;                   /* run one tiny generation per worker at start (default 1) */
    int n_devices;
    struct sd_server_device devices[SD_SERVER_MAX_DEVICES]; /* default: one CPU worker */
    int backoff_s;                /* an unhealthy device rests this long (default 60) */
    int balance;                  /* SD_BALANCE_*: placement of jobs on workers */
    const char *redis_url;        /* front-end mode (docs/scale-out.md): jobs go to `sdrt worker`s through
                                   * Redis Streams (redis://[:pass@]host[:port][/db], unix:///path[?db=N]);
                                   * no model is loaded here, --model/--models-dir only name the models */
    const char *redis_prefix;     /* key prefix (default "sdrt") */
    struct sd_runtime_opts rt;    /* base runtime options (threads, log, ...) */
    struct sd_log log;
};

/* Placement: LEAST_BUSY (default) keeps one queue that every free worker
 * takes from (so queued work counts); ROUND_ROBIN and RANDOM pin each job
 * to a healthy worker when it is queued. */
enum { SD_BALANCE_LEAST_BUSY = 0, SD_BALANCE_ROUND_ROBIN, SD_BALANCE_RANDOM };

struct sd_server;

void sd_server_opts_init(struct sd_server_opts *o);
/* Loads the model(s), starts the workers (with warm-up) and the HTTP
 * daemon. Returns NULL with ctx set on failure. */
struct sd_server *sd_server_start(struct sd_ctx *ctx, const struct sd_server_opts *o);
int sd_server_port(const struct sd_server *s);
/* Stops accepting, cancels every job, joins the workers, frees all. */
void sd_server_stop(struct sd_server *s);

#endif
