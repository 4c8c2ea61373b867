/* rq_done.c - how a job leaves the queue: its result written once with the
 * XACK (sd_rq_complete), or the dead-letter stream (sd_rq_dead_letter),
 * each one Lua script so that a retried or repeated call changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rq_impl.h"

/* KEYS: result, job, events, stream, stats. ARGV: entry_id, ttl, state,
 * worker, error, timings, event, data, now, n, then the image fields. */
static const char COMPLETE_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  redis.call('XACK', KEYS[4], '" SD_RQ_GROUP "', ARGV[1])\n"
    "  redis.call('HINCRBY', KEYS[5], 'duplicates', 1)\n"
    "  return 0\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'state', ARGV[3], 'n', ARGV[10], 'worker', ARGV[4], 'error', ARGV[5],"
    " 'timings', ARGV[6], unpack(ARGV, 11))\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "redis.call('HSET', KEYS[2], 'state', ARGV[3], 'ended', ARGV[9], 'error', ARGV[5], 'worker', ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
    "if ARGV[7] ~= '' then\n"
    "  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '" RQ_EVENTS_MAXLEN "', '*', 'event', ARGV[7], 'data', ARGV[8])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[2])\n"
    "end\n"
    "redis.call('XACK', KEYS[4], '" SD_RQ_GROUP "', ARGV[1])\n"
    "redis.call('HINCRBY', KEYS[5], ARGV[3], 1)\n"
    "return 1\n";

int sd_rq_complete(struct sd_ctx *ctx, struct sd_rq *q, const struct sd_rq_entry *e, const char *worker,
                   const struct sd_rq_result *r, const char *event, const char *data_json, int *written) {
    *written = 0;
    if (!sd_rq_name_ok(e->id)) return sd_errorf(ctx, SD_ERR_INVALID, "redis: complete: bad job id");
    char kr[256], kj[256], ke[256], ks[128], ttl[16], now[32], n[16];
    const char *keys[5] = {sd_rq_key(q, kr, sizeof kr, "result", e->id), sd_rq_key(q, kj, sizeof kj, "job", e->id),
                           sd_rq_key(q, ke, sizeof ke, "events", e->id), e->stream, sd_rq_key(q, ks, sizeof ks, "stats", NULL)};
    int na = 10 + 6 * r->n;
    const char **args = calloc((size_t)na, sizeof *args);
    size_t *lens = calloc((size_t)na, sizeof *lens);
    char(*names)[24] = calloc((size_t)(3 * r->n + 1), sizeof *names);
    char(*seeds)[24] = calloc((size_t)(r->n + 1), sizeof *seeds);
    if (!args || !lens || !names || !seeds) {
        free(args), free(lens), free(names), free(seeds);
        return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    }
    snprintf(ttl, sizeof ttl, "%d", q->o.result_ttl_s);
    snprintf(now, sizeof now, "%lld", rq_now_ms());
    snprintf(n, sizeof n, "%d", r->n);
    const char *fixed[10] = {e->entry_id, ttl, r->state, worker ? worker : "", r->error ? r->error : "",
                             r->timings ? r->timings : "", event ? event : "", data_json ? data_json : "{}", now, n};
    for (int i = 0; i < 10; i++) args[i] = fixed[i];
    for (int i = 0; i < r->n; i++) {
        const char **a = args + 10 + 6 * i;
        snprintf(names[3 * i], 24, "png:%d", i);
        snprintf(names[3 * i + 1], 24, "seed:%d", i);
        snprintf(names[3 * i + 2], 24, "infotext:%d", i);
        snprintf(seeds[i], 24, "%llu", (unsigned long long)r->images[i].seed);
        a[0] = names[3 * i];
        a[1] = (const char *)r->images[i].png;
        lens[10 + 6 * i + 1] = r->images[i].len;
        a[2] = names[3 * i + 1];
        a[3] = seeds[i];
        a[4] = names[3 * i + 2];
        a[5] = r->images[i].infotext ? r->images[i].infotext : "";
    }
    for (int i = 0; i < na; i++)
        if (!(i >= 10 && (i - 10) % 6 == 1)) lens[i] = strlen(args[i]);
    redisReply *rep;
    int st = rq_eval(ctx, q, &rep, COMPLETE_LUA, 5, keys, na, args, lens);
    free(args), free(lens), free(names), free(seeds);
    if (st) return sd_error_wrap(ctx, "writing the result of job %s", e->id);
    *written = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    return SD_OK;
}

/* KEYS: dead, result, job, events, stream, stats. ARGV: entry_id, ttl, id,
 * req, error, attempts, worker, now, data (the final event), valid id.
 * Does nothing when the entry is no longer pending (a repeated call); goes
 * ahead when the group is gone (a Redis that lost its data). */
static const char DEAD_LUA[] =
    "local p = redis.pcall('XPENDING', KEYS[5], '" SD_RQ_GROUP "', ARGV[1], ARGV[1], 1)\n"
    "if p.err == nil and #p == 0 then return 0 end\n" /* no group (Redis lost its data): dead-letter anyway */
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', 'id', ARGV[3], 'req', ARGV[4], 'error', ARGV[5], 'attempts', ARGV[6],"
    " 'worker', ARGV[7], 't', ARGV[8])\n"
    "redis.call('HINCRBY', KEYS[6], 'dead', 1)\n"
    "if ARGV[10] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then\n"
    "  redis.call('HSET', KEYS[2], 'state', 'failed', 'n', '0', 'worker', ARGV[7], 'error', ARGV[5], 'timings', '')\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
    "  redis.call('HSET', KEYS[3], 'state', 'failed', 'ended', ARGV[8], 'error', ARGV[5], 'worker', ARGV[7],"
    " 'attempts', ARGV[6])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[2])\n"
    "  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '" RQ_EVENTS_MAXLEN "', '*', 'event', 'error', 'data', ARGV[9])\n"
    "  redis.call('EXPIRE', KEYS[4], ARGV[2])\n"
    "  redis.call('HINCRBY', KEYS[6], 'failed', 1)\n"
    "end\n"
    "redis.call('XACK', KEYS[5], '" SD_RQ_GROUP "', ARGV[1])\n"
    "return 1\n";

int sd_rq_dead_letter(struct sd_ctx *ctx, struct sd_rq *q, const struct sd_rq_entry *e, const char *worker,
                      const char *error) {
    int valid = sd_rq_name_ok(e->id);
    const char *id = valid ? e->id : "-";
    char kd[256], kr[256], kj[256], ke[256], ks[128], ttl[16], now[32], att[16];
    const char *keys[6] = {sd_rq_key(q, kd, sizeof kd, "dead", e->model), sd_rq_key(q, kr, sizeof kr, "result", id),
                           sd_rq_key(q, kj, sizeof kj, "job", id), sd_rq_key(q, ke, sizeof ke, "events", id), e->stream,
                           sd_rq_key(q, ks, sizeof ks, "stats", NULL)};
    snprintf(ttl, sizeof ttl, "%d", q->o.result_ttl_s);
    snprintf(now, sizeof now, "%lld", rq_now_ms());
    snprintf(att, sizeof att, "%d", e->deliveries);
    json_t *d = json_pack("{s:s,s:s,s:s}", "id", e->id, "status", "failed", "error", error ? error : "");
    char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (!data) return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    const char *args[10] = {e->entry_id, ttl, e->id, e->req ? e->req : "", error ? error : "", att,
                            worker ? worker : "", now, data, valid ? "1" : "0"};
    redisReply *r;
    int st = rq_eval(ctx, q, &r, DEAD_LUA, 6, keys, 10, args, NULL);
    free(data);
    if (st) return sd_error_wrap(ctx, "dead-lettering entry %s", e->entry_id);
    freeReplyObject(r);
    return SD_OK;
}

/* KEYS: the jobs stream. ARGV: now - keep as "MS-0". */
static const char TRIM_LUA[] =
    "local function less(a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am < bm or (am == bm and as < bs)\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local cut = ARGV[1]\n"
    "local found = false\n"
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  local name, last\n"
    "  for i = 1, #g, 2 do\n"
    "    if g[i] == 'name' then name = g[i + 1] end\n"
    "    if g[i] == 'last-delivered-id' then last = g[i + 1] end\n"
    "  end\n"
    "  if name == '" SD_RQ_GROUP "' then found = true; if less(last, cut) then cut = last end end\n"
    "end\n"
    "if not found then return 0 end\n"
    "local p = redis.call('XPENDING', KEYS[1], '" SD_RQ_GROUP "')\n"
    "if p[1] > 0 and less(p[2], cut) then cut = p[2] end\n"
    "return redis.call('XTRIM', KEYS[1], 'MINID', cut)\n";

int sd_rq_trim(struct sd_ctx *ctx, struct sd_rq *q, const char *model, long long keep_ms, long long *trimmed) {
    *trimmed = 0;
    if (!sd_rq_name_ok(model)) return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad model name");
    char k[256], cut[48];
    const char *keys[1] = {sd_rq_key(q, k, sizeof k, "jobs", model)};
    long long t = rq_now_ms() - (keep_ms > 0 ? keep_ms : 0);
    snprintf(cut, sizeof cut, "%lld-0", t > 0 ? t : 0);
    const char *args[1] = {cut};
    redisReply *r;
    int st = rq_eval(ctx, q, &r, TRIM_LUA, 1, keys, 1, args, NULL);
    if (st) return st;
    if (r->type == REDIS_REPLY_INTEGER) *trimmed = r->integer;
    freeReplyObject(r);
    return SD_OK;
}
