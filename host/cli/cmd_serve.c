/* cmd_serve.c - `sdrt serve`: the HTTP server (host/server, docs/server.md).
 * Prints "sdrt: serving on http://ADDR:PORT" on stderr once it accepts
 * requests, and stops on SIGINT/SIGTERM. */
#include "cli_opts.h"
#include "cmd.h"
#include "server.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct opts {
    struct sd_server_opts s;
    const char *devices, *backend_unused, *precision;
    int port, threads_cpu, quiet, no_warmup, json;
    int max_body_mb;
};

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static int parse_balance(void *opts, const char *v) {
    struct opts *o = opts;
    if (!strcmp(v, "least-busy")) o->s.balance = SD_BALANCE_LEAST_BUSY;
    else if (!strcmp(v, "round-robin")) o->s.balance = SD_BALANCE_ROUND_ROBIN;
    else if (!strcmp(v, "random")) o->s.balance = SD_BALANCE_RANDOM;
    else { fprintf(stderr, "sdrt: --balance is least-busy, round-robin or random, got '%s'\n", v); return 2; }
    return 0;
}

#define O(field) CLI_OFF(struct opts, field)
static const struct cli_opt options[] = {
    {"model", 'm', CLI_STR, O(s.model), "PATH", "model loaded at start (single-file .safetensors or diffusers folder)", NULL, 0},
    {"models-dir", 0, CLI_STR, O(s.models_dir), "DIR", "more models (*.safetensors, diffusers folders) to switch among", NULL, 0},
    {"lora-dir", 0, CLI_STR, O(s.lora_dir), "DIR", "LoRA files for <lora:NAME:W> prompt tags and the jobs' `loras`\n"
                                                  "(NAME.safetensors or ss_output_name); listed by /sdapi/v1/loras", NULL, 0},
    {"config", 0, CLI_STR, O(s.config), "DIR", "diffusers folder whose config.json files describe single-file models", NULL, 0},
    {"vocab", 0, CLI_STR, O(s.vocab), "PATH", "CLIP BPE vocabulary for single-file models (default as txt2img)", NULL, 0},
    {"listen", 0, CLI_STR, O(s.listen), "ADDR", "address to bind (default 127.0.0.1; 0.0.0.0 = every interface)", NULL, 0},
    {"port", 0, CLI_INT, O(port), "N", "TCP port (default 7860; 0 = any free port, printed)", NULL, 0},
    {"api-key", 0, CLI_STR, O(s.api_key), "KEY", "require Authorization: Bearer KEY", NULL, 0},
    {"api-auth", 0, CLI_STR, O(s.api_auth), "USER:PASS,...", "require HTTP Basic credentials (as A1111's --api-auth)", NULL, 0},
    {"cors-origin", 0, CLI_STR, O(s.cors_origin), "ORIGIN", "send CORS headers for this origin (default: none)", NULL, 0},
    {"devices", 0, CLI_STR, O(devices), "LIST", "workers: cpu,opencl:0,opencl:1 (default cpu)", NULL, 0},
    {"balance", 0, CLI_FN, 0, "least-busy|round-robin|random", "placement of jobs on the devices (default least-busy:\n"
                                                                "a free device takes the oldest queued job)", parse_balance, 0},
    {"threads", 0, CLI_INT, O(threads_cpu), "N", "CPU threads per CPU worker (default: all cores)", NULL, 0},
    {"precision", 0, CLI_STR, O(precision), "auto|f32|bf16|f16", "compute precision as for txt2img (default auto: bf16\n"
                                                            "where the CPU has bf16 instructions)", NULL, 0},
    {"http-threads", 0, CLI_INT, O(s.threads), "N", "HTTP thread pool size (default 8)", NULL, 0},
    {"queue-max", 0, CLI_INT, O(s.queue_max), "N", "most queued jobs; more get 503 + Retry-After (default 64)", NULL, 0},
    {"timeout", 0, CLI_INT, O(s.timeout_s), "S", "idle connection timeout in seconds (default 30)", NULL, 0},
    {"max-body-mb", 0, CLI_INT, O(max_body_mb), "N", "request body limit in MiB (default 32)", NULL, 0},
    {"max-side", 0, CLI_INT, O(s.max_side), "N", "largest width/height a request may ask (default 2048)", NULL, 0},
    {"max-steps", 0, CLI_INT, O(s.max_steps), "N", "most steps a request may ask (default 150)", NULL, 0},
    {"max-batch", 0, CLI_INT, O(s.max_batch), "N", "largest batch_size / n (default 8)", NULL, 0},
    {"max-n-iter", 0, CLI_INT, O(s.max_n_iter), "N", "largest n_iter (default 16)", NULL, 0},
    {"max-prompt", 0, CLI_INT, O(s.max_prompt), "N", "longest prompt in bytes (default 16384)", NULL, 0},
    {"preview-every", 0, CLI_INT, O(s.preview_every), "N", "default preview period of jobs in steps (0 = off; default 5)", NULL, 0},
    {"keep-jobs", 0, CLI_INT, O(s.keep_jobs), "N", "finished jobs kept for GET /v1/jobs/{id} (default 256)", NULL, 0},
    {"backoff", 0, CLI_INT, O(s.backoff_s), "S", "seconds a device rests after a device error (default 60)", NULL, 0},
    {"redis", 0, CLI_STR, O(s.redis_url), "URL", "front-end of `sdrt worker`s (docs/scale-out.md): jobs go to Redis Streams;\n"
                                               "redis://[:PASS@]HOST[:PORT][/DB] or unix:///PATH[?db=N]; --model/--models-dir\n"
                                               "then only name the models (nothing is loaded here)", NULL, 0},
    {"redis-prefix", 0, CLI_STR, O(s.redis_prefix), "P", "Redis key prefix shared with the workers (default sdrt)", NULL, 0},
    {"no-warmup", 0, CLI_FLAG, O(no_warmup), NULL, "skip the warm-up generation at start", NULL, 0},
    {"quiet", 'q', CLI_FLAG, O(quiet), NULL, "log warnings only", NULL, 0},
    {NULL, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef O

static void usage(unsigned mode, FILE *f) {
    (void)mode;
    fprintf(f, "usage: sdrt serve --model MODEL [options]\n");
    cli_usage(f, options, 0);
    fprintf(f, "Endpoints and examples: docs/server.md.\n");
}

int parse_devices(struct sd_ctx *ctx, struct sd_server_opts *s, const char *list) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    s->n_devices = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (s->n_devices == SD_SERVER_MAX_DEVICES) return sd_errorf(ctx, SD_ERR_INVALID, "--devices: at most %d", SD_SERVER_MAX_DEVICES);
        struct sd_server_device *d = &s->devices[s->n_devices++];
        if (!strcmp(t, "cpu")) *d = (struct sd_server_device){SD_BACKEND_CPU, -1};
        else if (!strncmp(t, "opencl", 6)) {
            d->backend = SD_BACKEND_OPENCL;
            d->cl_device = -1;
            if (t[6] == ':' && cli_device_index(ctx, "--devices", t + 7, &d->cl_device)) return SD_ERR_INVALID;
            else if (t[6] && t[6] != ':') return sd_errorf(ctx, SD_ERR_INVALID, "--devices: unknown device '%s' (cpu, opencl:N)", t);
        } else {
            return sd_errorf(ctx, SD_ERR_INVALID, "--devices: unknown device '%s' (cpu, opencl:N)", t);
        }
    }
    return SD_OK;
}

int sd_cmd_serve(int argc, char **argv) {
    struct opts o;
    memset(&o, 0, sizeof o);
    sd_server_opts_init(&o.s);
    o.port = o.s.port;
    o.max_body_mb = (int)(o.s.max_body >> 20);
    int rc = cli_parse("serve", options, 0, argc, argv, &o, usage, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    struct sd_ctx ctx = {0};
    struct cli_log log = {0};
    if (cli_runtime_opts(&ctx, &o.s.rt, &log)) goto usage_err;
    if (o.threads_cpu) o.s.rt.threads = o.threads_cpu;
    if (cli_precision(&ctx, &o.s.rt, o.precision)) goto usage_err;
    o.s.log = o.s.rt.log;
    o.s.log.level = o.quiet ? SD_LOG_WARN : SD_LOG_INFO;
    o.s.port = o.port;
    o.s.warmup = !o.no_warmup;
    if (o.port < 0 || o.port > 65535) { sd_errorf(&ctx, SD_ERR_INVALID, "--port must be 0..65535 (got %d)", o.port); goto usage_err; }
    if (o.max_body_mb < 1) { sd_errorf(&ctx, SD_ERR_INVALID, "--max-body-mb must be >= 1"); goto usage_err; }
    o.s.max_body = (size_t)o.max_body_mb << 20;
    if (o.s.queue_max < 1 || o.s.max_side < 8 || o.s.max_steps < 1 || o.s.max_batch < 1 || o.s.max_n_iter < 1 ||
        o.s.max_prompt < 1 || o.s.threads < 1 || o.s.timeout_s < 1 || o.s.keep_jobs < 1 || o.s.preview_every < 0) {
        sd_errorf(&ctx, SD_ERR_INVALID, "limits (--queue-max, --max-*, --http-threads, --timeout, --keep-jobs) must be >= 1");
        goto usage_err;
    }
    if (!o.s.model && !o.s.models_dir) { sd_errorf(&ctx, SD_ERR_INVALID, "--model or --models-dir is required (see --help)"); goto usage_err; }
    if (o.devices && parse_devices(&ctx, &o.s, o.devices)) goto usage_err;
    char vocab[PATH_MAX];
    if (!o.s.vocab) o.s.vocab = cli_default_vocab(vocab, sizeof vocab);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sd_server *srv = sd_server_start(&ctx, &o.s);
    if (!srv) {
        fprintf(stderr, "sdrt: %s\n", ctx.msg);
        return ctx.status == SD_ERR_INVALID || ctx.status == SD_ERR_IO || ctx.status == SD_ERR_FORMAT ? 2 : 1;
    }
    fprintf(stderr, "sdrt: serving on http://%s:%d%s\n", o.s.listen, sd_server_port(srv), o.s.redis_url ? " (Redis front-end)" : "");
    fflush(stderr);
    while (!stop_flag) pause();
    fprintf(stderr, "sdrt: stopping\n");
    sd_server_stop(srv);
    return 0;
usage_err:
    fprintf(stderr, "sdrt: %s\n", ctx.msg);
    return 2;
}
