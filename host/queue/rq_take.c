/* rq_take.c - the worker side of the job queue: take (XAUTOCLAIM, then
 * XREADGROUP), heartbeat (XCLAIM JUSTID), events, job fields, flags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rq_impl.h"

void sd_rq_entry_free(struct sd_rq_entry *e) {
    if (!e) return;
    free(e->req);
    memset(e, 0, sizeof *e);
}

/* Fills e from a stream entry [id, [field, value, ...]] of `model`. */
static int entry_fill(struct sd_ctx *ctx, struct sd_rq *q, const char *model, const redisReply *en, struct sd_rq_entry *e) {
    memset(e, 0, sizeof *e);
    sd_rq_key(q, e->stream, sizeof e->stream, "jobs", model);
    snprintf(e->model, sizeof e->model, "%s", model);
    snprintf(e->entry_id, sizeof e->entry_id, "%s", en->element[0]->str);
    const redisReply *f = en->element[1];
    const redisReply *idv = rq_field(f, "id"), *rv = rq_field(f, "req");
    if (f->type != REDIS_REPLY_ARRAY) {
        snprintf(e->bad, sizeof e->bad, "entry %s has no fields", e->entry_id);
        return SD_OK;
    }
    if (idv && idv->len < sizeof e->id) memcpy(e->id, idv->str, idv->len);
    if (!idv || !sd_rq_name_ok(e->id)) {
        e->id[0] = 0;
        snprintf(e->bad, sizeof e->bad, "entry %s: missing or invalid job id (field 'id': 1..127 of [A-Za-z0-9._-])",
                 e->entry_id);
        return SD_OK;
    }
    if (!rv) {
        snprintf(e->bad, sizeof e->bad, "job %s: entry %s has no 'req' field (the wire request)", e->id, e->entry_id);
        return SD_OK;
    }
    e->req = malloc(rv->len + 1);
    if (!e->req) return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    memcpy(e->req, rv->str, rv->len);
    e->req[rv->len] = 0;
    if (strlen(e->req) != rv->len) snprintf(e->bad, sizeof e->bad, "job %s: 'req' holds a NUL byte", e->id);
    return SD_OK;
}

static int ensure_group(struct sd_ctx *ctx, struct sd_rq *q, const char *key) {
    const char *argv[6] = {"XGROUP", "CREATE", key, SD_RQ_GROUP, "0", "MKSTREAM"};
    struct sd_ctx tmp = {0};
    int st = sd_rq_command(&tmp, q, NULL, 6, argv, NULL);
    if (st && !strstr(tmp.msg, "BUSYGROUP")) return sd_errorf(ctx, st, "%s", tmp.msg);
    return SD_OK;
}

static int groups_ensure(struct sd_ctx *ctx, struct sd_rq *q, const char *const *models, int n) {
    for (int i = 0; i < n; i++) {
        int done = 0;
        for (int k = 0; k < q->n_groups_made; k++)
            if (!strcmp(q->groups_made[k], models[i])) done = 1;
        if (done) continue;
        char key[320];
        int st = ensure_group(ctx, q, sd_rq_key(q, key, sizeof key, "jobs", models[i]));
        if (st) return st;
        if (q->n_groups_made < RQ_MAX_STREAMS) snprintf(q->groups_made[q->n_groups_made++], 128, "%s", models[i]);
    }
    return SD_OK;
}

/* A command on a stream whose group vanished (a Redis restarted without
 * persistence, a stream deleted by hand): recreate the groups and retry once. */
static int stream_cmd(struct sd_ctx *ctx, struct sd_rq *q, redisReply **r, int argc, const char **argv,
                      const char *const *models, int n) {
    int st = sd_rq_command(ctx, q, (void **)r, argc, argv, NULL);
    if (st && strstr(ctx->msg, "NOGROUP")) {
        q->n_groups_made = 0;
        if ((st = groups_ensure(ctx, q, models, n)) == SD_OK) st = sd_rq_command(ctx, q, (void **)r, argc, argv, NULL);
    }
    return st;
}

static int deliveries_of(struct sd_ctx *ctx, struct sd_rq *q, const struct sd_rq_entry *e, int *count) {
    const char *argv[6] = {"XPENDING", e->stream, SD_RQ_GROUP, e->entry_id, e->entry_id, "1"};
    redisReply *r;
    int st = sd_rq_command(ctx, q, (void **)&r, 6, argv, NULL);
    if (st) return st;
    *count = 1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 4 && r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        *count = (int)r->element[0]->element[3]->integer;
    freeReplyObject(r);
    return SD_OK;
}

/* XREADGROUP of one new entry from models[i]'s stream (blocking up to
 * block_ms when > 0). */
static int read_one(struct sd_ctx *ctx, struct sd_rq *q, const char *consumer, const char *const *models, int n, int i,
                    int block_ms, struct sd_rq_entry *e, int *got) {
    const char *argv[12];
    char key[320], bms[16];
    int a = 0;
    argv[a++] = "XREADGROUP";
    argv[a++] = "GROUP";
    argv[a++] = SD_RQ_GROUP;
    argv[a++] = consumer;
    argv[a++] = "COUNT";
    argv[a++] = "1";
    if (block_ms > 0) {
        snprintf(bms, sizeof bms, "%d", block_ms);
        argv[a++] = "BLOCK";
        argv[a++] = bms;
    }
    argv[a++] = "STREAMS";
    argv[a++] = sd_rq_key(q, key, sizeof key, "jobs", models[i]);
    argv[a++] = ">";
    redisReply *r;
    q->block_ms = block_ms > 0 ? block_ms : 0;
    int st = stream_cmd(ctx, q, &r, a, argv, models, n);
    q->block_ms = 0;
    if (st) return st;
    const redisReply *sr = r->type == REDIS_REPLY_ARRAY && r->elements == 1 ? r->element[0] : NULL;
    const redisReply *es = sr && sr->type == REDIS_REPLY_ARRAY && sr->elements == 2 ? sr->element[1] : NULL;
    const redisReply *en = es && es->type == REDIS_REPLY_ARRAY && es->elements >= 1 ? es->element[0] : NULL;
    if (en && en->type == REDIS_REPLY_ARRAY && en->elements == 2 && (st = entry_fill(ctx, q, models[i], en, e)) == SD_OK) {
        e->deliveries = 1;
        *got = 1;
    }
    freeReplyObject(r);
    return st;
}

int sd_rq_take(struct sd_ctx *ctx, struct sd_rq *q, const char *consumer, const char *const *models, int n,
               int block_ms, struct sd_rq_entry *e, int *got) {
    *got = 0;
    memset(e, 0, sizeof *e);
    if (n <= 0 || n > RQ_MAX_STREAMS) return sd_errorf(ctx, SD_ERR_INVALID, "redis: take from 1..%d models, not %d", RQ_MAX_STREAMS, n);
    int st = groups_ensure(ctx, q, models, n);
    if (st) return st;
    char key[320], idle[16];
    snprintf(idle, sizeof idle, "%d", q->o.claim_idle_ms);
    /* 1. A stale pending entry of a dead (or stuck) consumer. */
    for (int i = 0; i < n; i++) {
        char *cur = q->claim_cursor[i];
        if (!cur[0]) snprintf(cur, 48, "0-0");
        const char *argv[8] = {"XAUTOCLAIM", sd_rq_key(q, key, sizeof key, "jobs", models[i]), SD_RQ_GROUP, consumer,
                               idle, cur, "COUNT", "1"};
        redisReply *r;
        if ((st = stream_cmd(ctx, q, &r, 8, argv, models, n))) return st;
        const redisReply *ents = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 ? r->element[1] : NULL;
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STRING)
            snprintf(cur, 48, "%s", r->element[0]->str);
        for (size_t k = 0; ents && k < ents->elements && !*got; k++) {
            const redisReply *en = ents->element[k];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2) continue; /* deleted meanwhile */
            if ((st = entry_fill(ctx, q, models[i], en, e))) break;
            *got = 1;
        }
        freeReplyObject(r);
        if (st) return st;
        if (*got) {
            if ((st = deliveries_of(ctx, q, e, &e->deliveries))) sd_rq_entry_free(e), *got = 0;
            return st;
        }
    }
    /* 2. A new entry: each stream without blocking; then wait. One stream:
     * XREADGROUP blocks on it. Several: XREAD BLOCK on all of them (it takes
     * nothing: an XREADGROUP over several streams could hand out one entry
     * per stream, and the extra ones would wait, pending, until reclaimed)
     * and read each stream again once woken. */
    for (int i = 0; i < n; i++)
        if ((st = read_one(ctx, q, consumer, models, n, i, 0, e, got)) || *got) return st;
    if (block_ms <= 0) return SD_OK;
    if (n == 1) return read_one(ctx, q, consumer, models, n, 0, block_ms, e, got);
    const char *argv[6 + 2 * RQ_MAX_STREAMS];
    char keys[RQ_MAX_STREAMS][320], bms[16];
    int a = 0;
    snprintf(bms, sizeof bms, "%d", block_ms);
    argv[a++] = "XREAD";
    argv[a++] = "COUNT";
    argv[a++] = "1";
    argv[a++] = "BLOCK";
    argv[a++] = bms;
    argv[a++] = "STREAMS";
    for (int k = 0; k < n; k++) argv[a++] = sd_rq_key(q, keys[k], sizeof keys[k], "jobs", models[k]);
    for (int k = 0; k < n; k++) argv[a++] = "$";
    redisReply *r;
    q->block_ms = block_ms;
    st = sd_rq_command(ctx, q, (void **)&r, a, argv, NULL);
    q->block_ms = 0;
    if (st) return st;
    int woken = r->type == REDIS_REPLY_ARRAY;
    freeReplyObject(r);
    for (int i = 0; woken && i < n; i++)
        if ((st = read_one(ctx, q, consumer, models, n, i, 0, e, got)) || *got) return st;
    return SD_OK;
}

int sd_rq_ack(struct sd_ctx *ctx, struct sd_rq *q, const struct sd_rq_entry *e) {
    const char *argv[4] = {"XACK", e->stream, SD_RQ_GROUP, e->entry_id};
    return sd_rq_command(ctx, q, NULL, 4, argv, NULL);
}

int sd_rq_heartbeat(struct sd_ctx *ctx, struct sd_rq *q, const char *consumer, const struct sd_rq_entry *e) {
    const char *argv[7] = {"XCLAIM", e->stream, SD_RQ_GROUP, consumer, "0", e->entry_id, "JUSTID"};
    return sd_rq_command(ctx, q, NULL, 7, argv, NULL);
}

static const char PUBLISH_LUA[] =
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', '" RQ_EVENTS_MAXLEN "', '*', 'event', ARGV[1], 'data', ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "return 1\n";

int sd_rq_publish(struct sd_ctx *ctx, struct sd_rq *q, const char *id, const char *event, const char *data_json) {
    char k[256], ttl[16];
    const char *keys[1] = {sd_rq_key(q, k, sizeof k, "events", id)};
    snprintf(ttl, sizeof ttl, "%d", q->o.live_ttl_s);
    const char *args[3] = {event, data_json ? data_json : "{}", ttl};
    redisReply *r;
    int st = rq_eval(ctx, q, &r, PUBLISH_LUA, 1, keys, 3, args, NULL);
    if (!st) freeReplyObject(r);
    return st;
}

static const char JOBSET_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV))\n"
    "return 1\n";

int sd_rq_job_set(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int n, const char *const *kv) {
    if (n <= 0) return SD_OK;
    char k[256];
    const char *keys[1] = {sd_rq_key(q, k, sizeof k, "job", id)};
    redisReply *r;
    int st = rq_eval(ctx, q, &r, JOBSET_LUA, 1, keys, 2 * n, (const char **)kv, NULL);
    if (!st) freeReplyObject(r);
    return st;
}

int sd_rq_flags(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int *cancel, int *skip) {
    *cancel = *skip = 0;
    char k[256];
    const char *argv[4] = {"HMGET", sd_rq_key(q, k, sizeof k, "job", id), "cancel", "skip"};
    redisReply *r;
    int st = sd_rq_command(ctx, q, (void **)&r, 4, argv, NULL);
    if (st) return st;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        *cancel = r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, "1");
        *skip = r->element[1]->type == REDIS_REPLY_STRING && !strcmp(r->element[1]->str, "1");
    }
    freeReplyObject(r);
    return SD_OK;
}

int sd_rq_has_result(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int *exists) {
    char k[256];
    const char *argv[2] = {"EXISTS", sd_rq_key(q, k, sizeof k, "result", id)};
    redisReply *r;
    *exists = 0;
    int st = sd_rq_command(ctx, q, (void **)&r, 2, argv, NULL);
    if (st) return st;
    *exists = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return SD_OK;
}

int sd_rq_worker_alive(struct sd_ctx *ctx, struct sd_rq *q, const char *name, const char *desc_json, int ttl_s) {
    char k[256], ks[128], ttl[16];
    snprintf(ttl, sizeof ttl, "%d", ttl_s < 1 ? 1 : ttl_s);
    const char *a1[5] = {"SET", sd_rq_key(q, k, sizeof k, "worker", name), desc_json, "EX", ttl};
    int st = sd_rq_command(ctx, q, NULL, 5, a1, NULL);
    const char *a2[3] = {"SADD", sd_rq_key(q, ks, sizeof ks, "workers", NULL), name};
    if (!st) st = sd_rq_command(ctx, q, NULL, 3, a2, NULL);
    return st;
}

int sd_rq_worker_gone(struct sd_ctx *ctx, struct sd_rq *q, const char *name) {
    char k[256], ks[128];
    const char *a1[2] = {"DEL", sd_rq_key(q, k, sizeof k, "worker", name)};
    int st = sd_rq_command(ctx, q, NULL, 2, a1, NULL);
    const char *a2[3] = {"SREM", sd_rq_key(q, ks, sizeof ks, "workers", NULL), name};
    if (!st) st = sd_rq_command(ctx, q, NULL, 3, a2, NULL);
    return st;
}
