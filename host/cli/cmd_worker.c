/* cmd_worker.c - `sdrt worker --redis URL`: runs jobs from Redis Streams on
 * this machine's devices (host/server/rq_worker.c, docs/scale-out.md).
 * Prints "sdrt: worker NAME ready" on stderr once it takes jobs. SIGTERM or
 * SIGINT: stop taking jobs, finish the current ones, write their results,
 * exit 0; a second signal exits at once (unwritten results stay pending in
 * Redis for other workers). The last line is the worker's counts. */
#include "cli_opts.h"
#include "cmd.h"
#include "rq_worker.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct opts {
    struct sd_rq_worker_opts w;
    const char *devices, *precision;
    int threads_cpu, quiet, no_warmup;
};

static volatile sig_atomic_t signals;
static struct sd_rq_worker *the_worker;
static void on_signal(int sig) {
    (void)sig;
    if (++signals >= 2 && the_worker) sd_rq_worker_abort(the_worker); /* flags only */
}

#define O(field) CLI_OFF(struct opts, field)
static const struct cli_opt options[] = {
    {"redis", 0, CLI_STR, O(w.url), "URL", "Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or\n"
                                            "unix:///PATH/TO/SOCKET[?db=N&password=P] (default: $SDRT_REDIS_URL)", NULL, 0},
    {"redis-prefix", 0, CLI_STR, O(w.prefix), "P", "key prefix shared with the front-ends (default sdrt)", NULL, 0},
    {"name", 0, CLI_STR, O(w.name), "NAME", "consumer name in the group (default HOST:PID)", NULL, 0},
    {"claim-idle", 0, CLI_INT, O(w.claim_idle_ms), "MS", "a job pending this long without a heartbeat is taken over\n"
                                                         "(its worker died); default 30000", NULL, 0},
    {"max-attempts", 0, CLI_INT, O(w.max_attempts), "N", "deliveries before a job goes to the dead-letter stream (default 3)", NULL, 0},
    {"result-ttl", 0, CLI_INT, O(w.result_ttl_s), "S", "seconds results and job states are kept in Redis (default 3600)", NULL, 0},
    {"model", 'm', CLI_STR, O(w.srv.model), "PATH", "model loaded at start (its jobs stream: the file stem or folder name)", NULL, 0},
    {"models-dir", 0, CLI_STR, O(w.srv.models_dir), "DIR", "more models; the worker takes jobs for each of them", NULL, 0},
    {"lora-dir", 0, CLI_STR, O(w.srv.lora_dir), "DIR", "LoRA files the jobs name (resolved here)", NULL, 0},
    {"config", 0, CLI_STR, O(w.srv.config), "DIR", "diffusers folder whose config.json files describe single-file models", NULL, 0},
    {"vocab", 0, CLI_STR, O(w.srv.vocab), "PATH", "CLIP BPE vocabulary for single-file models (default as txt2img)", NULL, 0},
    {"devices", 0, CLI_STR, O(devices), "LIST", "devices: cpu,opencl:0,opencl:1 (default cpu); one job per device", NULL, 0},
    {"threads", 0, CLI_INT, O(threads_cpu), "N", "CPU threads per CPU device (default: all cores)", NULL, 0},
    {"precision", 0, CLI_STR, O(precision), "auto|f32|bf16|f16", "compute precision as for txt2img (default auto)", NULL, 0},
    {"backoff", 0, CLI_INT, O(w.srv.backoff_s), "S", "seconds a device rests after a device error (default 60)", NULL, 0},
    {"no-warmup", 0, CLI_FLAG, O(no_warmup), NULL, "skip the warm-up generation at start", NULL, 0},
    {"quiet", 'q', CLI_FLAG, O(quiet), NULL, "log warnings only", NULL, 0},
    {NULL, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef O

static void usage(unsigned mode, FILE *f) {
    (void)mode;
    fprintf(f, "usage: sdrt worker --redis URL --model MODEL [options]\n");
    cli_usage(f, options, 0);
    fprintf(f, "Design, keys and guarantees: docs/scale-out.md.\n");
}

int sd_cmd_worker(int argc, char **argv) {
    struct opts o;
    memset(&o, 0, sizeof o);
    sd_rq_worker_opts_init(&o.w);
    int rc = cli_parse("worker", options, 0, argc, argv, &o, usage, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    struct sd_ctx ctx = {0};
    struct cli_log log = {0};
    struct sd_server_opts *s = &o.w.srv;
    if (cli_runtime_opts(&ctx, &s->rt, &log)) goto usage_err;
    if (o.threads_cpu) s->rt.threads = o.threads_cpu;
    if (cli_precision(&ctx, &s->rt, o.precision)) goto usage_err;
    s->log = s->rt.log;
    s->log.level = o.quiet ? SD_LOG_WARN : SD_LOG_INFO;
    s->warmup = !o.no_warmup;
    if (!o.w.url) { /* the variable keeps a password out of the process list */
        const char *env = getenv("SDRT_REDIS_URL");
        if (env && *env) o.w.url = env;
    }
    if (!o.w.url) { sd_errorf(&ctx, SD_ERR_INVALID, "--redis URL (or SDRT_REDIS_URL) is required (see --help)"); goto usage_err; }
    if (!s->model && !s->models_dir) { sd_errorf(&ctx, SD_ERR_INVALID, "--model or --models-dir is required (see --help)"); goto usage_err; }
    if (o.w.claim_idle_ms < 100) { sd_errorf(&ctx, SD_ERR_INVALID, "--claim-idle must be >= 100 ms"); goto usage_err; }
    if (o.w.max_attempts < 1 || o.w.result_ttl_s < 1) { sd_errorf(&ctx, SD_ERR_INVALID, "--max-attempts and --result-ttl must be >= 1"); goto usage_err; }
    if (o.devices && parse_devices(&ctx, s, o.devices)) goto usage_err;
    char vocab[PATH_MAX];
    if (!s->vocab) s->vocab = cli_default_vocab(vocab, sizeof vocab);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sd_rq_worker *w = sd_rq_worker_start(&ctx, &o.w);
    if (!w) {
        fprintf(stderr, "sdrt: %s\n", ctx.msg);
        return ctx.status == SD_ERR_INVALID || ctx.status == SD_ERR_FORMAT ? 2 : 1;
    }
    the_worker = w;
    fprintf(stderr, "sdrt: worker %s ready\n", sd_rq_worker_name(w));
    fflush(stderr);
    while (!signals) pause();
    fprintf(stderr, "sdrt: worker %s stopping: finishing the current jobs\n", sd_rq_worker_name(w));
    fflush(stderr);
    sd_rq_worker_drain(w);
    struct sd_rq_worker_counts c;
    sd_rq_worker_counts(w, &c);
    char name[128];
    snprintf(name, sizeof name, "%s", sd_rq_worker_name(w));
    int aborted = signals >= 2;
    sd_rq_worker_stop(w);
    the_worker = NULL;
    fprintf(stderr, "sdrt: worker %s %s: taken %ld, done %ld, cancelled %ld, failed here %ld, dead-lettered %ld, "
                    "duplicates %ld, acknowledged without running %ld\n",
            name, aborted ? "aborted" : "stopped", c.taken, c.done, c.cancelled, c.retried, c.dead, c.duplicates, c.skipped);
    return aborted ? 1 : 0;
usage_err:
    fprintf(stderr, "sdrt: %s\n", ctx.msg);
    return 2;
}
