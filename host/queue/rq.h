/* rq.h - the Redis Streams job queue (hiredis) shared by `sdrt serve --redis`
 * (the producer side: submit, state, result, events, cancel, stats) and
 * `sdrt worker --redis` (take, heartbeat, publish, complete, dead-letter).
 * docs/scale-out.md describes the design; the keys, with prefix P (default
 * "sdrt"):
 *   P:jobs:MODEL    stream of jobs for one model, consumer group "workers";
 *                   entry fields id, req (the wire request JSON), t (unix ms)
 *   P:job:ID        hash, the job's live state (state, model, created,
 *                   started, ended, step, steps, iter, iters, worker, device,
 *                   attempts, error, cancel, skip)
 *   P:events:ID     stream of the job's events (fields event, data)
 *   P:result:ID     hash written once (state, n, png:K, seed:K, infotext:K,
 *                   timings, worker, error), TTL result_ttl_s
 *   P:dead:MODEL    dead-letter stream (id, req, error, attempts, worker, t),
 *                   capped at about 10000 entries
 *   P:worker:NAME   a live worker's description (TTL), P:workers its names
 *   P:models        the models jobs were submitted for; P:stats counters
 *
 * A struct sd_rq is one connection, used by one thread at a time. Every
 * call reconnects on a lost connection with exponential back-off (100 ms ..
 * 5 s, logged once per outage) for up to opts.retry_ms (-1: until *stop is
 * set), so a Redis restart is invisible to callers but for the delay. Calls
 * whose effect must not repeat are Lua scripts that check first (submit,
 * complete, dead-letter), so a retried call is harmless. Errors are values
 * (SD_ERR_IO: Redis unreachable or an error reply; SD_ERR_INVALID: bad
 * URL or argument; SD_ERR_FORMAT: malformed data in Redis).
 */
#ifndef SDRT_RQ_H
#define SDRT_RQ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "sdrt.h"

#define SD_RQ_GROUP "workers"

struct sd_rq;

struct sd_rq_opts {
    const char *url;              /* redis://[[user]:password@]host[:port][/db], unix:///path[?db=N&password=P] */
    const char *prefix;           /* key prefix (default "sdrt") */
    int connect_timeout_ms;       /* per connection attempt (default 2000) */
    int cmd_timeout_ms;           /* per reply, added to a blocking read's block time (default 10000) */
    int retry_ms;                 /* how long one call keeps reconnecting (default 30000; -1 = until *stop) */
    int claim_idle_ms;            /* a pending entry idle this long is reclaimed (default 30000) */
    int max_attempts;             /* deliveries before the dead-letter stream (default 3) */
    int result_ttl_s;             /* TTL of a finished job's keys (default 3600) */
    int live_ttl_s;               /* TTL of a queued/running job's keys (default 86400) */
    const volatile int *stop;     /* optional: when *stop != 0 reconnecting gives up */
    struct sd_log log;            /* outages and reconnects (warn/info) */
};

void sd_rq_opts_init(struct sd_rq_opts *o);

/* Connects (AUTH, SELECT, PING): SD_OK with *out, or an error naming the URL
 * (without its password). The first connection is not retried unless
 * opts.retry_ms allows it. */
int sd_rq_open(struct sd_ctx *ctx, const struct sd_rq_opts *o, struct sd_rq **out);
void sd_rq_close(struct sd_rq *q);
const struct sd_rq_opts *sd_rq_opts_of(const struct sd_rq *q);
/* The URL with the password replaced by "***" (for messages). */
const char *sd_rq_url_safe(const struct sd_rq *q);
/* Changes how long one call keeps reconnecting (-1: until *stop). */
void sd_rq_set_retry(struct sd_rq *q, int retry_ms);
/* Successful reconnects of this connection after it was lost. */
long sd_rq_reconnects(const struct sd_rq *q);

/* Parsed URL (exposed for tests). */
struct sd_rq_url {
    char host[256];               /* "" for a unix socket */
    int port;
    char path[256];               /* unix socket path, "" for TCP */
    char user[128], password[256];
    int db;
};
int sd_rq_url_parse(struct sd_ctx *ctx, const char *url, struct sd_rq_url *u);

/* Names: model names and job ids must be 1..127 bytes of [A-Za-z0-9._-]
 * (and not "." or ".."), so that keys are unambiguous. */
int sd_rq_name_ok(const char *s);

/* ---- front-end ---- */

/* Queues job `id` for `model` with the wire request req_json: creates
 * P:job:ID (state queued; `seed` and `iters` from the request's "seed" and
 * "n_iter" when it has them) and XADDs the entry, atomically and once (a
 * second submit of the same id returns SD_ERR_INVALID "exists"). */
int sd_rq_submit(struct sd_ctx *ctx, struct sd_rq *q, const char *model, const char *id, const char *req_json);
/* P:job:ID as a JSON object (numbers for the numeric fields); SD_ERR_INVALID
 * with "not found" when the job is unknown (or expired). */
int sd_rq_job_state(struct sd_ctx *ctx, struct sd_rq *q, const char *id, json_t **state);

struct sd_rq_image {
    uint8_t *png;
    size_t len;
    uint64_t seed;
    char *infotext;
};
struct sd_rq_result {
    char state[16];               /* done, failed, cancelled */
    int n;
    struct sd_rq_image *images;
    char *timings;                /* JSON text or NULL */
    char *worker;                 /* who wrote it (or NULL) */
    char *error;                  /* NULL or the error */
};
void sd_rq_result_free(struct sd_rq_result *r);
/* The result: SD_OK and *found = 1 with r filled, or *found = 0 (not yet). */
int sd_rq_result(struct sd_ctx *ctx, struct sd_rq *q, const char *id, struct sd_rq_result *r, int *found);

/* Reads new events of n jobs (XREAD, blocking up to block_ms; 0 = do not
 * block): for each, cb(user, index, event, data), and last[index] is
 * advanced (start with "0" for every event, "$" for new ones only).
 * Returns SD_OK (no events within block_ms is not an error) or an error;
 * a non-zero cb return stops and is returned. */
typedef int (*sd_rq_event_fn)(void *user, int index, const char *event, const char *data);
int sd_rq_read_events(struct sd_ctx *ctx, struct sd_rq *q, int n, const char *const *ids, char (*last)[32],
                      int block_ms, sd_rq_event_fn cb, void *user);
/* Sets the job's cancel (skip = 0) or skip (skip = 1) flag; a queued job is
 * cancelled by the worker that takes it. SD_ERR_INVALID when unknown. */
int sd_rq_cancel(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int skip);
/* {"models": {MODEL: {"length", "pending", "dead"}} for every P:jobs:*
 * stream, "workers": [{name, ...description}] (alive ones), "stats":
 * {submitted, done, failed, cancelled, dead, duplicates}}. */
int sd_rq_stats(struct sd_ctx *ctx, struct sd_rq *q, json_t **out);

/* ---- worker ---- */

struct sd_rq_entry {
    char stream[320];             /* the key it came from */
    char model[128];
    char entry_id[48];            /* the stream entry's id */
    char id[128];                 /* the job id ("" when missing) */
    char *req;                    /* the wire request (NULL when missing) */
    int deliveries;               /* this delivery's number (1 = first) */
    char bad[256];                /* "" or why the entry is malformed */
};
void sd_rq_entry_free(struct sd_rq_entry *e);

/* Takes one entry for any of the models: first a stale pending one
 * (XAUTOCLAIM, idle >= claim_idle_ms), else a new one (XREADGROUP, waiting
 * up to block_ms). Creates the groups when missing. SD_OK with *got = 1 and
 * e filled (e->bad says whether the entry is malformed), or *got = 0. */
int sd_rq_take(struct sd_ctx *ctx, struct sd_rq *q, const char *consumer, const char *const *models, int n,
               int block_ms, struct sd_rq_entry *e, int *got);
/* XACKs e without writing anything (its job has a result already). */
int sd_rq_ack(struct sd_ctx *ctx, struct sd_rq *q, const struct sd_rq_entry *e);
/* Keeps e claimed by consumer (XCLAIM JUSTID, resets its idle time). */
int sd_rq_heartbeat(struct sd_ctx *ctx, struct sd_rq *q, const char *consumer, const struct sd_rq_entry *e);
/* Appends an event to P:events:ID (MAXLEN ~ 1000) with the job's TTL. */
int sd_rq_publish(struct sd_ctx *ctx, struct sd_rq *q, const char *id, const char *event, const char *data_json);
/* HSETs n field/value pairs on P:job:ID (only while it exists). */
int sd_rq_job_set(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int n, const char *const *kv);
/* The job's cancel and skip flags (0 when the job is unknown). */
int sd_rq_flags(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int *cancel, int *skip);
/* Whether P:result:ID exists already. */
int sd_rq_has_result(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int *exists);
/* Writes r as the result of e's job once, sets the job's final state,
 * appends the final event (event, data_json) and XACKs e, in one script.
 * *written = 1, or 0 when a result existed (the entry is only XACKed: a
 * duplicate execution, counted in P:stats "duplicates"). */
int sd_rq_complete(struct sd_ctx *ctx, struct sd_rq *q, const struct sd_rq_entry *e, const char *worker,
                   const struct sd_rq_result *r, const char *event, const char *data_json, int *written);
/* Moves e to P:dead:MODEL with the error, writes a failed result (unless
 * one exists) and XACKs e, in one script. */
int sd_rq_dead_letter(struct sd_ctx *ctx, struct sd_rq *q, const struct sd_rq_entry *e, const char *worker,
                      const char *error);
/* Trims P:jobs:MODEL of entries that are acknowledged and older than
 * keep_ms (XTRIM MINID below the oldest pending entry, the group's last
 * delivered one and now - keep_ms); *trimmed = entries removed. Nothing is
 * trimmed from a stream without the group. */
int sd_rq_trim(struct sd_ctx *ctx, struct sd_rq *q, const char *model, long long keep_ms, long long *trimmed);
/* Announces a live worker: P:worker:NAME = desc_json with TTL ttl_s, NAME in P:workers. */
int sd_rq_worker_alive(struct sd_ctx *ctx, struct sd_rq *q, const char *name, const char *desc_json, int ttl_s);
/* Removes P:worker:NAME and NAME from P:workers (a clean exit). */
int sd_rq_worker_gone(struct sd_ctx *ctx, struct sd_rq *q, const char *name);

/* Runs one command (argv with lengths; NULL lens = strlen), with the
 * reconnect policy; *reply (redisReply *, free with freeReplyObject) may be
 * NULL to discard. An error reply is SD_ERR_IO with its text. */
int sd_rq_command(struct sd_ctx *ctx, struct sd_rq *q, void **reply, int argc, const char **argv, const size_t *lens);
/* The full key PREFIX:a:b (b may be NULL) into buf. */
const char *sd_rq_key(const struct sd_rq *q, char *buf, size_t cap, const char *a, const char *b);

#endif
