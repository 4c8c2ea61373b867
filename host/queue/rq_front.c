/* rq_front.c - the producer side of the job queue (a front-end): submit,
 * job state, result, event reading, cancel, stats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rq_impl.h"

long long rq_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rq_eval(struct sd_ctx *ctx, struct sd_rq *q, redisReply **out, const char *script, int nk, const char **keys,
            int na, const char **args, const size_t *arg_lens) {
    int argc = 3 + nk + na;
    const char **argv = malloc(sizeof *argv * (size_t)argc);
    size_t *lens = malloc(sizeof *lens * (size_t)argc);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    }
    char nks[16];
    snprintf(nks, sizeof nks, "%d", nk);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nks;
    for (int i = 0; i < nk; i++) argv[3 + i] = keys[i];
    for (int i = 0; i < na; i++) argv[3 + nk + i] = args[i];
    for (int i = 0; i < argc; i++) lens[i] = i >= 3 + nk && arg_lens ? arg_lens[i - 3 - nk] : strlen(argv[i]);
    int st = sd_rq_command(ctx, q, (void **)out, argc, argv, lens);
    free(argv);
    free(lens);
    return st;
}

const redisReply *rq_field(const redisReply *arr, const char *name) {
    if (!arr || arr->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < arr->elements; i += 2) {
        const redisReply *k = arr->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == strlen(name) && !memcmp(k->str, name, k->len)) {
            const redisReply *v = arr->element[i + 1];
            return v->type == REDIS_REPLY_STRING ? v : NULL;
        }
    }
    return NULL;
}

static const char SUBMIT_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.pcall('XGROUP', 'CREATE', KEYS[2], '" SD_RQ_GROUP "', '0', 'MKSTREAM')\n"
    "redis.call('HSET', KEYS[1], 'state', 'queued', 'model', ARGV[4], 'created', ARGV[3], 'attempts', '0',"
    " 'step', '0', 'steps', '0', 'iter', '0', 'iters', ARGV[7], 'seed', ARGV[6])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'req', ARGV[2], 't', ARGV[3])\n"
    "redis.call('SADD', KEYS[3], ARGV[4])\n"
    "redis.call('HINCRBY', KEYS[4], 'submitted', 1)\n"
    "return 1\n";

int sd_rq_submit(struct sd_ctx *ctx, struct sd_rq *q, const char *model, const char *id, const char *req_json) {
    if (!sd_rq_name_ok(model)) return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad model name '%s'", model ? model : "");
    if (!sd_rq_name_ok(id)) return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad job id '%s'", id ? id : "");
    char kjob[256], kstream[256], kmodels[128], kstats[128], t[32], ttl[16];
    const char *keys[4] = {sd_rq_key(q, kjob, sizeof kjob, "job", id), sd_rq_key(q, kstream, sizeof kstream, "jobs", model),
                           sd_rq_key(q, kmodels, sizeof kmodels, "models", NULL),
                           sd_rq_key(q, kstats, sizeof kstats, "stats", NULL)};
    snprintf(t, sizeof t, "%lld", rq_now_ms());
    snprintf(ttl, sizeof ttl, "%d", q->o.live_ttl_s);
    char seed[32] = "", iters[16] = "1";
    json_t *req = json_loads(req_json, 0, NULL), *sv = json_object_get(req, "seed"), *nv = json_object_get(req, "n_iter");
    if (json_is_integer(sv)) snprintf(seed, sizeof seed, "%" JSON_INTEGER_FORMAT, json_integer_value(sv));
    if (json_is_integer(nv)) snprintf(iters, sizeof iters, "%" JSON_INTEGER_FORMAT, json_integer_value(nv));
    json_decref(req);
    const char *args[7] = {id, req_json, t, model, ttl, seed, iters};
    redisReply *r;
    int st = rq_eval(ctx, q, &r, SUBMIT_LUA, 4, keys, 7, args, NULL);
    if (st) return sd_error_wrap(ctx, "submitting job %s", id);
    int added = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!added) return sd_errorf(ctx, SD_ERR_INVALID, "redis: job %s exists already", id);
    return SD_OK;
}

static int numeric_field(const char *k) {
    static const char *const num[] = {"created", "started", "ended", "step", "steps", "iter", "iters", "attempts", "seed"};
    for (size_t i = 0; i < sizeof num / sizeof num[0]; i++)
        if (!strcmp(k, num[i])) return 1;
    return 0;
}

int sd_rq_job_state(struct sd_ctx *ctx, struct sd_rq *q, const char *id, json_t **state) {
    *state = NULL;
    if (!sd_rq_name_ok(id)) return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad job id");
    char k[256];
    const char *argv[2] = {"HGETALL", sd_rq_key(q, k, sizeof k, "job", id)};
    redisReply *r;
    int st = sd_rq_command(ctx, q, (void **)&r, 2, argv, NULL);
    if (st) return st;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        return sd_errorf(ctx, SD_ERR_INVALID, "redis: job %s not found", id);
    }
    json_t *o = json_object();
    for (size_t i = 0; o && i + 1 < r->elements; i += 2) {
        const redisReply *kk = r->element[i], *v = r->element[i + 1];
        if (kk->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        char *end;
        long long n = strtoll(v->str, &end, 10);
        json_t *jv = numeric_field(kk->str) && v->len && !*end ? json_integer(n) : json_stringn(v->str, v->len);
        json_object_set_new(o, kk->str, jv);
    }
    freeReplyObject(r);
    if (!o) return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    json_object_set_new(o, "id", json_string(id));
    *state = o;
    return SD_OK;
}

void sd_rq_result_free(struct sd_rq_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n && r->images; i++) {
        free(r->images[i].png);
        free(r->images[i].infotext);
    }
    free(r->images);
    free(r->timings);
    free(r->worker);
    free(r->error);
    memset(r, 0, sizeof *r);
}

static char *dup_field(const redisReply *arr, const char *name) {
    const redisReply *v = rq_field(arr, name);
    if (!v) return NULL;
    char *s = malloc(v->len + 1);
    if (s) {
        memcpy(s, v->str, v->len);
        s[v->len] = 0;
    }
    return s;
}

int sd_rq_result(struct sd_ctx *ctx, struct sd_rq *q, const char *id, struct sd_rq_result *res, int *found) {
    memset(res, 0, sizeof *res);
    *found = 0;
    if (!sd_rq_name_ok(id)) return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad job id");
    char k[256];
    const char *argv[2] = {"HGETALL", sd_rq_key(q, k, sizeof k, "result", id)};
    redisReply *r;
    int st = sd_rq_command(ctx, q, (void **)&r, 2, argv, NULL);
    if (st) return st;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        return SD_OK;
    }
    const redisReply *sv = rq_field(r, "state"), *nv = rq_field(r, "n");
    int n = nv ? atoi(nv->str) : -1;
    if (!sv || sv->len >= sizeof res->state || n < 0 || n > 4096) {
        freeReplyObject(r);
        return sd_errorf(ctx, SD_ERR_FORMAT, "redis: result of job %s is malformed (state/n)", id);
    }
    memcpy(res->state, sv->str, sv->len);
    res->images = n ? calloc((size_t)n, sizeof *res->images) : NULL;
    if (n && !res->images) {
        freeReplyObject(r);
        return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    }
    res->n = n;
    for (int i = 0; i < n; i++) {
        char f[32];
        snprintf(f, sizeof f, "png:%d", i);
        const redisReply *p = rq_field(r, f);
        snprintf(f, sizeof f, "seed:%d", i);
        const redisReply *s = rq_field(r, f);
        snprintf(f, sizeof f, "infotext:%d", i);
        if (!p || !s) {
            freeReplyObject(r);
            sd_rq_result_free(res);
            return sd_errorf(ctx, SD_ERR_FORMAT, "redis: result of job %s lacks image %d", id, i);
        }
        res->images[i].png = malloc(p->len ? p->len : 1);
        res->images[i].infotext = dup_field(r, f);
        if (!res->images[i].png) {
            freeReplyObject(r);
            sd_rq_result_free(res);
            return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
        }
        memcpy(res->images[i].png, p->str, p->len);
        res->images[i].len = p->len;
        res->images[i].seed = strtoull(s->str, NULL, 10);
    }
    res->timings = dup_field(r, "timings");
    res->worker = dup_field(r, "worker");
    const redisReply *ev = rq_field(r, "error");
    if (ev && ev->len) res->error = dup_field(r, "error");
    freeReplyObject(r);
    *found = 1;
    return SD_OK;
}

int sd_rq_read_events(struct sd_ctx *ctx, struct sd_rq *q, int n, const char *const *ids, char (*last)[32],
                      int block_ms, sd_rq_event_fn cb, void *user) {
    if (n <= 0) return SD_OK;
    int argc = 4 + 2 * n + (block_ms > 0 ? 2 : 0);
    const char **argv = calloc((size_t)argc, sizeof *argv);
    char(*keys)[256] = calloc((size_t)n, sizeof *keys);
    if (!argv || !keys) {
        free(argv);
        free(keys);
        return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    }
    int a = 0;
    char bms[16];
    argv[a++] = "XREAD";
    argv[a++] = "COUNT";
    argv[a++] = "256";
    if (block_ms > 0) {
        snprintf(bms, sizeof bms, "%d", block_ms);
        argv[a++] = "BLOCK";
        argv[a++] = bms;
    }
    argv[a++] = "STREAMS";
    for (int i = 0; i < n; i++) argv[a++] = sd_rq_key(q, keys[i], sizeof keys[i], "events", ids[i]);
    for (int i = 0; i < n; i++) argv[a++] = last[i][0] ? last[i] : "0";
    redisReply *r;
    q->block_ms = block_ms > 0 ? block_ms : 0;
    int st = sd_rq_command(ctx, q, (void **)&r, a, argv, NULL);
    q->block_ms = 0;
    if (st) goto out;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t s = 0; s < r->elements && !st; s++) {
            const redisReply *sr = r->element[s];
            if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 || sr->element[0]->type != REDIS_REPLY_STRING) continue;
            int idx = -1;
            for (int i = 0; i < n; i++)
                if (!strcmp(keys[i], sr->element[0]->str)) idx = i;
            if (idx < 0) continue;
            const redisReply *es = sr->element[1];
            for (size_t e = 0; e < es->elements && !st; e++) {
                const redisReply *en = es->element[e];
                if (en->type != REDIS_REPLY_ARRAY || en->elements != 2) continue;
                snprintf(last[idx], sizeof last[idx], "%s", en->element[0]->str);
                const redisReply *ev = rq_field(en->element[1], "event"), *dv = rq_field(en->element[1], "data");
                if (ev && dv) st = cb(user, idx, ev->str, dv->str);
            }
        }
    }
    freeReplyObject(r);
out:
    free(argv);
    free(keys);
    return st;
}

static const char CANCEL_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], '1')\n"
    "return 1\n";

int sd_rq_cancel(struct sd_ctx *ctx, struct sd_rq *q, const char *id, int skip) {
    if (!sd_rq_name_ok(id)) return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad job id");
    char k[256];
    const char *keys[1] = {sd_rq_key(q, k, sizeof k, "job", id)};
    const char *args[1] = {skip ? "skip" : "cancel"};
    redisReply *r;
    int st = rq_eval(ctx, q, &r, CANCEL_LUA, 1, keys, 1, args, NULL);
    if (st) return st;
    int ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok ? SD_OK : sd_errorf(ctx, SD_ERR_INVALID, "redis: job %s not found", id);
}

static long long int_reply(struct sd_rq *q, struct sd_ctx *ctx, int argc, const char **argv, int *st) {
    redisReply *r;
    *st = sd_rq_command(ctx, q, (void **)&r, argc, argv, NULL);
    if (*st) return 0;
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return v;
}

/* Every model with a jobs stream (SCAN MATCH PREFIX:jobs:*), as a JSON array of names. */
static int scan_models(struct sd_ctx *ctx, struct sd_rq *q, json_t *names) {
    char pat[160], cur[32] = "0";
    snprintf(pat, sizeof pat, "%s:jobs:*", q->prefix);
    size_t plen = strlen(pat) - 1;
    do {
        const char *argv[8] = {"SCAN", cur, "MATCH", pat, "COUNT", "1000", "TYPE", "stream"};
        redisReply *r;
        int st = sd_rq_command(ctx, q, (void **)&r, 8, argv, NULL);
        if (st) return st;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            return sd_errorf(ctx, SD_ERR_FORMAT, "redis: unexpected SCAN reply");
        }
        snprintf(cur, sizeof cur, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const char *k = r->element[1]->element[i]->str;
            if (strlen(k) > plen && sd_rq_name_ok(k + plen)) json_array_append_new(names, json_string(k + plen));
        }
        freeReplyObject(r);
    } while (strcmp(cur, "0"));
    return SD_OK;
}

int sd_rq_stats(struct sd_ctx *ctx, struct sd_rq *q, json_t **out) {
    *out = NULL;
    char k[256], k2[256];
    const char *argv[4] = {NULL, NULL};
    redisReply *workers = NULL, *stats = NULL;
    json_t *models = json_array();
    if (!models) return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    int st = scan_models(ctx, q, models);
    if (st) {
        json_decref(models);
        return st;
    }
    json_t *o = json_object(), *jm = json_object(), *jw = json_array(), *js = json_object();
    json_object_set_new(o, "models", jm);
    json_object_set_new(o, "workers", jw);
    json_object_set_new(o, "stats", js);
    for (size_t i = 0; !st && i < json_array_size(models); i++) {
        const char *m = json_string_value(json_array_get(models, i));
        json_t *e = json_object();
        json_object_set_new(jm, m, e);
        const char *a1[2] = {"XLEN", sd_rq_key(q, k, sizeof k, "jobs", m)};
        json_object_set_new(e, "length", json_integer(int_reply(q, ctx, 2, a1, &st)));
        if (st) break;
        redisReply *p;
        const char *a2[3] = {"XPENDING", k, SD_RQ_GROUP};
        if (sd_rq_command(ctx, q, (void **)&p, 3, a2, NULL) == SD_OK) {
            long long pend = p->type == REDIS_REPLY_ARRAY && p->elements >= 1 && p->element[0]->type == REDIS_REPLY_INTEGER
                                 ? p->element[0]->integer : 0;
            json_object_set_new(e, "pending", json_integer(pend));
            freeReplyObject(p);
        } else {
            json_object_set_new(e, "pending", json_integer(0)); /* no group yet */
        }
        const char *a3[2] = {"XLEN", sd_rq_key(q, k2, sizeof k2, "dead", m)};
        json_object_set_new(e, "dead", json_integer(int_reply(q, ctx, 2, a3, &st)));
    }
    json_decref(models);
    argv[0] = "SMEMBERS";
    argv[1] = sd_rq_key(q, k, sizeof k, "workers", NULL);
    if (!st) st = sd_rq_command(ctx, q, (void **)&workers, 2, argv, NULL);
    for (size_t i = 0; !st && workers->type == REDIS_REPLY_ARRAY && i < workers->elements; i++) {
        const char *name = workers->element[i]->str;
        const char *a[2] = {"GET", sd_rq_key(q, k2, sizeof k2, "worker", name)};
        redisReply *d;
        st = sd_rq_command(ctx, q, (void **)&d, 2, a, NULL);
        if (st) break;
        if (d->type == REDIS_REPLY_STRING) {
            json_t *w = json_loads(d->str, 0, NULL);
            if (!json_is_object(w)) {
                json_decref(w);
                w = json_object();
            }
            json_object_set_new(w, "name", json_string(name));
            json_array_append_new(jw, w);
        } else { /* expired: the worker died without saying so */
            const char *sr[3] = {"SREM", k, name};
            st = sd_rq_command(ctx, q, NULL, 3, sr, NULL);
        }
        freeReplyObject(d);
    }
    if (workers) freeReplyObject(workers);
    argv[0] = "HGETALL";
    argv[1] = sd_rq_key(q, k, sizeof k, "stats", NULL);
    if (!st) st = sd_rq_command(ctx, q, (void **)&stats, 2, argv, NULL);
    for (size_t i = 0; !st && stats->type == REDIS_REPLY_ARRAY && i + 1 < stats->elements; i += 2)
        json_object_set_new(js, stats->element[i]->str, json_integer(strtoll(stats->element[i + 1]->str, NULL, 10)));
    if (stats) freeReplyObject(stats);
    if (st) {
        json_decref(o);
        return st;
    }
    *out = o;
    return SD_OK;
}
