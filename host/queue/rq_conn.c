/* rq_conn.c - the Redis connection of the job queue: URL parsing, connect
 * (timeout, AUTH, SELECT, PING), commands with reconnect and back-off. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rq_impl.h"

void sd_rq_opts_init(struct sd_rq_opts *o) {
    memset(o, 0, sizeof *o);
    o->prefix = "sdrt";
    o->connect_timeout_ms = 2000;
    o->cmd_timeout_ms = 10000;
    o->retry_ms = 30000;
    o->claim_idle_ms = 30000;
    o->max_attempts = 3;
    o->result_ttl_s = 3600;
    o->live_ttl_s = 86400;
}

int sd_rq_name_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 127 || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* Percent-decodes src[0..n) into dst (cap bytes): 0, or -1 when malformed or too long. */
static int pct_decode(const char *src, size_t n, char *dst, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            char hx[3] = {src[i + 1], src[i + 2], 0};
            char *end;
            long v = strtol(hx, &end, 16);
            if (*end || !hx[0] || !hx[1]) return -1;
            c = (int)v;
            i += 2;
        }
        if (o + 1 >= cap) return -1;
        dst[o++] = (char)c;
    }
    dst[o] = 0;
    return 0;
}

static int parse_int(const char *s, size_t n, int lo, int hi, int *out) {
    if (n == 0 || n > 9) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int sd_rq_url_parse(struct sd_ctx *ctx, const char *url, struct sd_rq_url *u) {
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (!url || !*url) return sd_errorf(ctx, SD_ERR_INVALID, "redis: empty URL (want redis://host[:port][/db] or unix:///path)");
    if (!strncmp(url, "unix://", 7)) {
        const char *p = url + 7, *qm = strchr(p, '?');
        size_t plen = qm ? (size_t)(qm - p) : strlen(p);
        if (plen == 0 || p[0] != '/' || pct_decode(p, plen, u->path, sizeof u->path))
            return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad unix socket URL '%s' (want unix:///path/to/sock[?db=N])", url);
        for (const char *a = qm ? qm + 1 : NULL; a && *a;) {
            const char *amp = strchr(a, '&'), *eq = strchr(a, '=');
            size_t alen = amp ? (size_t)(amp - a) : strlen(a);
            if (!eq || eq > a + alen) return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad query in '%s'", url);
            size_t klen = (size_t)(eq - a), vlen = alen - klen - 1;
            if (klen == 2 && !strncmp(a, "db", 2)) {
                if (parse_int(eq + 1, vlen, 0, 1 << 20, &u->db))
                    return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad db number in '%s'", url);
            } else if (klen == 8 && !strncmp(a, "password", 8)) {
                if (pct_decode(eq + 1, vlen, u->password, sizeof u->password))
                    return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad password in unix socket URL");
            } else if (klen == 4 && !strncmp(a, "user", 4)) {
                if (pct_decode(eq + 1, vlen, u->user, sizeof u->user))
                    return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad user in unix socket URL");
            } else {
                return sd_errorf(ctx, SD_ERR_INVALID, "redis: unknown parameter '%.*s' in '%s' (db, user, password)",
                                 (int)klen, a, url);
            }
            a = amp ? amp + 1 : NULL;
        }
        return SD_OK;
    }
    if (strncmp(url, "redis://", 8))
        return sd_errorf(ctx, SD_ERR_INVALID, "redis: URL '%s' is neither redis://... nor unix:///...", url);
    const char *p = url + 8, *end = p + strlen(p);
    const char *slash = strchr(p, '/');
    const char *hostend = slash ? slash : end;
    const char *at = NULL;
    for (const char *c = p; c < hostend; c++)
        if (*c == '@') at = c; /* the last @ before the path: passwords may hold '@' only percent-encoded anyway */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (pct_decode(p, (size_t)(colon - p), u->user, sizeof u->user) ||
                pct_decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof u->password))
                return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad user or password in URL");
        } else if (pct_decode(p, (size_t)(at - p), u->password, sizeof u->password)) {
            return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad password in URL");
        }
        p = at + 1;
    }
    const char *portc = NULL;
    if (*p == '[') { /* [IPv6]:port */
        const char *rb = memchr(p, ']', (size_t)(hostend - p));
        if (!rb || rb == p + 1 || (size_t)(rb - p - 1) >= sizeof u->host)
            return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad IPv6 host in '%s'", url);
        memcpy(u->host, p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < hostend) {
            if (rb[1] != ':') return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad host in '%s'", url);
            portc = rb + 1;
        }
    } else {
        portc = memchr(p, ':', (size_t)(hostend - p));
        const char *he = portc ? portc : hostend;
        if (he == p || (size_t)(he - p) >= sizeof u->host)
            return sd_errorf(ctx, SD_ERR_INVALID, "redis: missing or too long host in '%s'", url);
        memcpy(u->host, p, (size_t)(he - p));
    }
    if (portc && parse_int(portc + 1, (size_t)(hostend - portc - 1), 1, 65535, &u->port))
        return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad port in '%s' (1..65535)", url);
    if (slash && slash + 1 < end && parse_int(slash + 1, (size_t)(end - slash - 1), 0, 1 << 20, &u->db))
        return sd_errorf(ctx, SD_ERR_INVALID, "redis: bad db number in '%s' (redis://host:port/DB)", url);
    return SD_OK;
}

static struct timeval tv_ms(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

static int reply_err(struct sd_ctx *ctx, redisReply *r, const char *what) {
    int st = sd_errorf(ctx, SD_ERR_IO, "redis: %s: %s", what, r && r->str ? r->str : "no reply");
    if (r) freeReplyObject(r);
    return st;
}

/* One connection attempt: SD_OK with q->c set, or an error (q->c NULL). */
static int rq_connect_once(struct sd_ctx *ctx, struct sd_rq *q) {
    const struct sd_rq_url *u = &q->url;
    redisContext *c = u->path[0] ? redisConnectUnixWithTimeout(u->path, tv_ms(q->o.connect_timeout_ms))
                                 : redisConnectWithTimeout(u->host, u->port, tv_ms(q->o.connect_timeout_ms));
    if (!c) return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory connecting to %s", q->safe_url);
    if (c->err) {
        int st = sd_errorf(ctx, SD_ERR_IO, "redis: connecting to %s: %s", q->safe_url, c->errstr);
        redisFree(c);
        return st;
    }
    redisSetTimeout(c, tv_ms(q->o.cmd_timeout_ms));
    redisReply *r;
    if (u->password[0]) {
        r = u->user[0] ? redisCommand(c, "AUTH %s %s", u->user, u->password) : redisCommand(c, "AUTH %s", u->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            int st = r ? reply_err(ctx, r, "AUTH") : sd_errorf(ctx, SD_ERR_IO, "redis: AUTH on %s: %s", q->safe_url, c->errstr);
            redisFree(c);
            return st;
        }
        freeReplyObject(r);
    }
    if (u->db) {
        r = redisCommand(c, "SELECT %d", u->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            int st = r ? reply_err(ctx, r, "SELECT") : sd_errorf(ctx, SD_ERR_IO, "redis: SELECT on %s: %s", q->safe_url, c->errstr);
            redisFree(c);
            return st;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "PING");
    if (!r || r->type == REDIS_REPLY_ERROR) {
        int st = r ? reply_err(ctx, r, "PING") : sd_errorf(ctx, SD_ERR_IO, "redis: PING on %s: %s", q->safe_url, c->errstr);
        redisFree(c);
        return st;
    }
    freeReplyObject(r);
    q->c = c;
    return SD_OK;
}

/* Reconnects with back-off until connected, the retry budget is spent or
 * *stop is set. */
static int rq_reconnect(struct sd_ctx *ctx, struct sd_rq *q, double t0) {
    int wait = 100;
    for (;;) {
        if (q->c) {
            redisFree(q->c);
            q->c = NULL;
        }
        if (rq_connect_once(ctx, q) == SD_OK) {
            q->reconnects++;
            if (q->outage) {
                sd_logf(&q->o.log, SD_LOG_INFO, "redis: reconnected to %s after %.1f s", q->safe_url,
                        sd_time_s() - q->outage_t0);
                q->outage = 0;
            }
            return SD_OK;
        }
        if (!q->outage) {
            q->outage = 1;
            q->outage_t0 = sd_time_s();
            sd_logf(&q->o.log, SD_LOG_WARN, "%s; reconnecting with back-off", ctx ? ctx->msg : "redis: connection lost");
        }
        double spent = (sd_time_s() - t0) * 1000;
        if (q->o.stop && *q->o.stop) return sd_error_wrap(ctx, "stopping");
        if (q->o.retry_ms >= 0 && spent + wait > q->o.retry_ms) return ctx ? ctx->status : SD_ERR_IO;
        sleep_ms(wait);
        wait = wait * 2 > 5000 ? 5000 : wait * 2;
    }
}

int sd_rq_command(struct sd_ctx *ctx, struct sd_rq *q, void **reply, int argc, const char **argv, const size_t *lens) {
    if (reply) *reply = NULL;
    size_t *l = NULL;
    if (!lens) {
        l = malloc(sizeof *l * (size_t)argc);
        if (!l) return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
        for (int i = 0; i < argc; i++) l[i] = strlen(argv[i]);
        lens = l;
    }
    double t0 = sd_time_s();
    int st = SD_OK;
    for (;;) {
        if (!q->c && (st = rq_reconnect(ctx, q, t0)) != SD_OK) break;
        redisSetTimeout(q->c, tv_ms(q->o.cmd_timeout_ms + q->block_ms));
        redisReply *r = redisCommandArgv(q->c, argc, argv, lens);
        if (!r) { /* I/O error, EOF or timeout: the connection is unusable */
            sd_errorf(ctx, SD_ERR_IO, "redis: %s on %s: %s", argv[0], q->safe_url, q->c->errstr[0] ? q->c->errstr : "connection lost");
            redisFree(q->c);
            q->c = NULL;
            if (q->o.stop && *q->o.stop) {
                st = SD_ERR_IO;
                break;
            }
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            /* LOADING (a restarted server reading its AOF) is an outage too. */
            if (!strncmp(r->str, "LOADING", 7) || !strncmp(r->str, "BUSY ", 5) || !strncmp(r->str, "MASTERDOWN", 10)) {
                sd_errorf(ctx, SD_ERR_IO, "redis: %s", r->str);
                freeReplyObject(r);
                double spent = (sd_time_s() - t0) * 1000;
                if ((q->o.stop && *q->o.stop) || (q->o.retry_ms >= 0 && spent > q->o.retry_ms)) {
                    st = SD_ERR_IO;
                    break;
                }
                sleep_ms(100);
                continue;
            }
            st = sd_errorf(ctx, SD_ERR_IO, "redis: %s: %s", argv[0], r->str);
            freeReplyObject(r);
            break;
        }
        if (reply)
            *reply = r;
        else
            freeReplyObject(r);
        break;
    }
    free(l);
    return st;
}

int sd_rq_open(struct sd_ctx *ctx, const struct sd_rq_opts *o, struct sd_rq **out) {
    *out = NULL;
    struct sd_rq *q = calloc(1, sizeof *q);
    if (!q) return sd_errorf(ctx, SD_ERR_NOMEM, "redis: out of memory");
    q->o = *o;
    if (!q->o.prefix || !*q->o.prefix) q->o.prefix = "sdrt";
    int st = sd_rq_url_parse(ctx, o->url, &q->url);
    if (st) {
        free(q);
        return st;
    }
    snprintf(q->prefix, sizeof q->prefix, "%s", q->o.prefix);
    q->o.prefix = q->prefix;
    q->o.url = NULL;
    const struct sd_rq_url *u = &q->url;
    if (u->path[0])
        snprintf(q->safe_url, sizeof q->safe_url, "unix://%s%s", u->path, u->password[0] ? "?password=***" : "");
    else
        snprintf(q->safe_url, sizeof q->safe_url, "redis://%s%s%s%s:%d/%d", u->user, u->password[0] ? ":***" : "",
                 u->user[0] || u->password[0] ? "@" : "", u->host, u->port, u->db);
    st = rq_connect_once(ctx, q);
    if (st && q->o.retry_ms != 0) st = rq_reconnect(ctx, q, sd_time_s());
    q->reconnects = 0;
    if (st) {
        free(q);
        return st;
    }
    *out = q;
    return SD_OK;
}

void sd_rq_close(struct sd_rq *q) {
    if (!q) return;
    if (q->c) redisFree(q->c);
    free(q);
}

const struct sd_rq_opts *sd_rq_opts_of(const struct sd_rq *q) { return &q->o; }
const char *sd_rq_url_safe(const struct sd_rq *q) { return q->safe_url; }
void sd_rq_set_retry(struct sd_rq *q, int retry_ms) { q->o.retry_ms = retry_ms; }
long sd_rq_reconnects(const struct sd_rq *q) { return q->reconnects; }

const char *sd_rq_key(const struct sd_rq *q, char *buf, size_t cap, const char *a, const char *b) {
    if (b)
        snprintf(buf, cap, "%s:%s:%s", q->prefix, a, b);
    else
        snprintf(buf, cap, "%s:%s", q->prefix, a);
    return buf;
}
