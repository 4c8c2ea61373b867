/* rq_impl.h - the job queue's connection state, shared by host/queue/rq_*.c. */
#ifndef SDRT_RQ_IMPL_H
#define SDRT_RQ_IMPL_H

#include <hiredis/hiredis.h>

#include "rq.h"

#define RQ_MAX_STREAMS 64
#define RQ_EVENTS_MAXLEN "1000"

struct sd_rq {
    struct sd_rq_opts o;
    struct sd_rq_url url;
    char prefix[64];
    char safe_url[600];
    redisContext *c;
    int outage;                   /* a reconnect is under way (logged once) */
    long reconnects;              /* successful reconnects after a lost connection */
    double outage_t0;
    int block_ms;                 /* the blocking time of the command being sent */
    char claim_cursor[RQ_MAX_STREAMS][48]; /* XAUTOCLAIM cursor per model (take's order) */
    char groups_made[RQ_MAX_STREAMS][128]; /* models whose group this connection ensured */
    int n_groups_made;
};

long long rq_now_ms(void);
/* Runs a Lua script with nk keys then na args (binary-safe lens or NULL). */
int rq_eval(struct sd_ctx *ctx, struct sd_rq *q, redisReply **out, const char *script, int nk, const char **keys,
            int na, const char **args, const size_t *arg_lens);
/* The string value of field `name` in a flat [field, value, ...] array, or NULL. */
const redisReply *rq_field(const redisReply *arr, const char *name);

#endif
