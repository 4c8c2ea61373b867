/* rq_worker.h - `sdrt worker --redis URL` (docs/scale-out.md): the server's
 * device pool (workers.c: a worker thread per device, model switches, LoRA
 * sets, the embedding cache) with no HTTP, fed from Redis Streams.
 *
 * Threads: a puller takes an entry (host/queue sd_rq_take) only while a
 * local device is free, checks it (malformed, too many attempts, a result
 * already written, cancelled while queued, invalid request, unknown model or
 * LoRA: each settled at once), turns it into a local job and queues it; a
 * monitor keeps the entries it holds claimed (XCLAIM JUSTID every
 * claim_idle/3), relays the cancel/skip flags to the running jobs and
 * announces the worker (P:worker:NAME) and trims acknowledged entries older
 * than 10 minutes from its job streams (every minute); a publisher writes the jobs'
 * events, progress and results (the result, the final event and the XACK
 * in one script), retrying through Redis outages until written. A job that
 * fails while running stays pending for another worker (its error in
 * P:job:ID); after max_attempts deliveries it is dead-lettered. Each thread
 * has its own connection. Library code: messages go to opts.srv.log.
 */
#ifndef SDRT_RQ_WORKER_H
#define SDRT_RQ_WORKER_H

#include "server.h"

struct sd_rq_worker_opts {
    struct sd_server_opts srv;    /* model(s), devices, LoRA dir, vocab, runtime, log, warm-up */
    const char *url;              /* Redis URL (rq.h) */
    const char *prefix;           /* key prefix (default "sdrt") */
    const char *name;             /* consumer name (default HOST:PID) */
    int claim_idle_ms;            /* default 30000 */
    int max_attempts;             /* default 3 */
    int result_ttl_s;             /* default 3600 */
};

struct sd_rq_worker_counts {
    long taken, done, cancelled, dead, duplicates, skipped, retried;
};

struct sd_rq_worker;

void sd_rq_worker_opts_init(struct sd_rq_worker_opts *o);
/* Loads the model, starts the devices (warm-up) and the threads once Redis
 * answers. NULL with ctx set on failure. */
struct sd_rq_worker *sd_rq_worker_start(struct sd_ctx *ctx, const struct sd_rq_worker_opts *o);
/* Stops taking jobs; returns once every job taken has finished and its
 * result is written (SIGTERM). */
void sd_rq_worker_drain(struct sd_rq_worker *w);
/* Gives up at once: unwritten results are dropped (their entries stay
 * pending and are reclaimed by other workers). */
void sd_rq_worker_abort(struct sd_rq_worker *w);
void sd_rq_worker_counts(struct sd_rq_worker *w, struct sd_rq_worker_counts *c);
const char *sd_rq_worker_name(const struct sd_rq_worker *w);
/* Drains (unless aborted), stops the threads and devices, frees. */
void sd_rq_worker_stop(struct sd_rq_worker *w);

#endif
