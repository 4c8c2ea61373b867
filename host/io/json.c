/* json.c - strict JSON parser into a DOM (see json.h for the contract).
 *
 * How it works: a recursive-descent parser. Values of the container being
 * parsed are pushed on one growable stack; when the container closes, its
 * children are copied into a contiguous array in the document's arena (so a
 * container's kids are adjacent and nothing is reallocated afterwards) and
 * popped. All nodes and indexes come from a chunked arena; all strings go to
 * one buffer of len+1 bytes, which always suffices: an unescaped string plus
 * its NUL is never longer than its quoted source text.
 */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

struct json_block {
    struct json_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

/* The root node comes first so that sd_json_free can find the document. */
struct json_doc {
    struct sd_json root;
    struct json_block *blocks;
    char *strings;
};

struct parser {
    struct sd_ctx *ctx;
    const char *start, *end;
    struct json_doc *doc;
    char *sp;                  /* next free byte in doc->strings */
    struct sd_json *stk;       /* children of the open containers */
    size_t n, cap;
};

static void *arena_alloc(struct json_doc *doc, size_t size) {
    size = (size + 15) & ~(size_t)15;
    struct json_block *b = doc->blocks;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        if (b && b->cap * 2 > cap && b->cap < (1u << 24)) cap = b->cap * 2;
        if (cap < size) cap = size;
        struct json_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->cap = cap;
        nb->used = 0;
        /* A block bigger than the usual goes behind the current one so the
         * current one's free space is still used. */
        if (b && cap == size && b->cap - b->used > 256) {
            nb->next = b->next;
            b->next = nb;
            nb->used = size;
            return nb->data;
        }
        nb->next = b;
        doc->blocks = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

static int fail(struct parser *ps, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct parser *ps, const char *at, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sd_errorf(ps->ctx, SD_ERR_FORMAT, "json: %s at byte %zu%s", what, (size_t)(at - ps->start),
                     at >= ps->end ? " (end of input)" : "");
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static int push(struct parser *ps, const struct sd_json *v) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        struct sd_json *s = realloc(ps->stk, cap * sizeof *s);
        if (!s) return sd_errorf(ps->ctx, SD_ERR_NOMEM, "json: out of memory");
        ps->stk = s;
        ps->cap = cap;
    }
    ps->stk[ps->n++] = *v;
    return SD_OK;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p (p+4 <= end checked by the caller); -1 if bad. */
static long hex4(const char *p) {
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval((unsigned char)p[k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static char *put_utf8(char *d, unsigned long cp) {
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xc0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xe0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *d++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *d++ = (char)(0xf0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *d++ = (char)(0x80 | (cp & 0x3f));
    }
    return d;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    int n;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;       /* no overlong forms */
        if (c == 0xed) hi = 0x9f;       /* no UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;       /* <= U+10FFFF */
    } else return 0;
    if (end - p < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (int k = 2; k < n; k++)
        if ((p[k] & 0xc0) != 0x80) return 0;
    return n;
}

/* Parses the string whose opening quote is at ps-position p; on success sets
 * *out and *outlen and returns the position after the closing quote, or NULL. */
static const char *parse_string(struct parser *ps, const char *p, const char **out, size_t *outlen) {
    const char *q0 = p, *end = ps->end;
    char *d = ps->sp, *d0 = d;
    p++;
    for (;;) {
        const char *run = p;
        while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' && *p != '\\') p++;
        memcpy(d, run, (size_t)(p - run));
        d += p - run;
        if (p >= end) {
            fail(ps, q0, "unterminated string");
            return NULL;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) {
            fail(ps, p, "control character 0x%02x in string", c);
            return NULL;
        }
        if (c >= 0x80) {
            int n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (!n) {
                fail(ps, p, "invalid UTF-8 in string");
                return NULL;
            }
            memcpy(d, p, (size_t)n);
            d += n;
            p += n;
            continue;
        }
        /* backslash */
        if (end - p < 2) {
            fail(ps, q0, "unterminated string");
            return NULL;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case '"': *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '/': *d++ = '/'; break;
        case 'b': *d++ = '\b'; break;
        case 'f': *d++ = '\f'; break;
        case 'n': *d++ = '\n'; break;
        case 'r': *d++ = '\r'; break;
        case 't': *d++ = '\t'; break;
        case 'u': {
            long cp = end - p >= 4 ? hex4(p) : -1;
            if (cp < 0) {
                fail(ps, p - 2, "invalid \\u escape");
                return NULL;
            }
            p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                fail(ps, p - 6, "unpaired low surrogate \\u%04lx", (unsigned long)cp);
                return NULL;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                if (lo < 0xdc00 || lo > 0xdfff) {
                    fail(ps, p - 6, "unpaired high surrogate \\u%04lx", (unsigned long)cp);
                    return NULL;
                }
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            d = put_utf8(d, (unsigned long)cp);
            break;
        }
        default:
            fail(ps, p - 2, "invalid escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
            return NULL;
        }
    }
    *d = 0;
    *out = d0;
    *outlen = (size_t)(d - d0);
    ps->sp = d + 1;
    return p + 1;
}

static const char *parse_number(struct parser *ps, const char *p, struct sd_json *v) {
    const char *s = p, *end = ps->end;
    int neg = 0, integer = 1;
    if (*p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') {
        fail(ps, s, "invalid number");
        return NULL;
    }
    uint64_t u = 0;
    int overflow = 0;
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') {
            fail(ps, s, "invalid number (leading zero)");
            return NULL;
        }
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            unsigned dgt = (unsigned)(*p - '0');
            if (u > (UINT64_MAX - dgt) / 10) overflow = 1;
            else u = u * 10 + dgt;
            p++;
        }
    }
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') {
            fail(ps, p, "invalid number (digit expected after '.')");
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') {
            fail(ps, p, "invalid number (digit expected in exponent)");
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    v->type = SD_JSON_NUM;
    if (integer && !overflow && (neg ? u <= (uint64_t)INT64_MAX + 1 : u <= (uint64_t)INT64_MAX)) {
        v->is_int = 1;
        v->i = neg ? (int64_t)(0 - u) : (int64_t)u;
        if (u <= (1ull << 53)) {
            v->num = neg ? -(double)u : (double)u;
            return p;
        }
    }
    /* strtod needs a NUL-terminated copy (text need not be terminated). */
    size_t n = (size_t)(p - s);
    char small[128], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) {
        sd_errorf(ps->ctx, SD_ERR_NOMEM, "json: out of memory");
        return NULL;
    }
    memcpy(buf, s, n);
    buf[n] = 0;
    v->num = strtod(buf, NULL);
    if (buf != small) free(buf);
    return p;
}

static uint64_t hash_key(const char *s, size_t n) { return sd_fnv1a(s, n, SD_FNV1A_SEED); }

static int same_key(const struct sd_json *a, const char *k, size_t klen) {
    return a->klen == klen && memcmp(a->key, k, klen) == 0;
}

/* Builds obj's hash index (when large) and rejects duplicate keys. */
static int index_object(struct parser *ps, struct sd_json *obj, const char *at) {
    size_t n = obj->n;
    if (n <= 8) {
        for (size_t a = 1; a < n; a++)
            for (size_t b = 0; b < a; b++)
                if (same_key(&obj->kids[b], obj->kids[a].key, obj->kids[a].klen))
                    return fail(ps, at, "duplicate key \"%s\" in object", obj->kids[a].key);
        return SD_OK;
    }
    if (n > (1u << 30)) return fail(ps, at, "object has too many members");
    size_t cap = sd_hmap_slots_for(n);
    struct sd_hmap *idx = arena_alloc(ps->doc, sizeof *idx);
    struct sd_hmap_slot *slots = arena_alloc(ps->doc, cap * sizeof *slots);
    if (!idx || !slots) return sd_errorf(ps->ctx, SD_ERR_NOMEM, "json: out of memory");
    sd_hmap_init_fixed(idx, slots, cap); /* sized for n: every put below fits */
    for (size_t k = 0; k < n; k++) {
        const struct sd_json *m = &obj->kids[k];
        uint64_t h = hash_key(m->key, m->klen);
        struct sd_hmap_iter it;
        for (uint32_t j = sd_hmap_find(idx, h, &it); j != SD_HMAP_NONE; j = sd_hmap_next(idx, &it))
            if (same_key(&obj->kids[j], m->key, m->klen))
                return fail(ps, at, "duplicate key \"%s\" in object", m->key);
        if (sd_hmap_insert(idx, &it, (uint32_t)k) != SD_OK) return sd_errorf(ps->ctx, SD_ERR_NOMEM, "json: out of memory");
    }
    obj->index = idx;
    return SD_OK;
}

/* Moves the children pushed since `base` into the arena as v's kids. */
static int close_container(struct parser *ps, struct sd_json *v, size_t base) {
    v->n = ps->n - base;
    if (v->n) {
        v->kids = arena_alloc(ps->doc, v->n * sizeof *v->kids);
        if (!v->kids) return sd_errorf(ps->ctx, SD_ERR_NOMEM, "json: out of memory");
        memcpy(v->kids, ps->stk + base, v->n * sizeof *v->kids);
    }
    ps->n = base;
    return SD_OK;
}

static const char *parse_value(struct parser *ps, const char *p, struct sd_json *v, int depth);

static const char *parse_array(struct parser *ps, const char *p, struct sd_json *v, int depth) {
    size_t base = ps->n;
    v->type = SD_JSON_ARR;
    p = skip_ws(p + 1, ps->end);
    if (p < ps->end && *p == ']') return close_container(ps, v, base) ? NULL : p + 1;
    for (;;) {
        struct sd_json child;
        p = parse_value(ps, p, &child, depth + 1);
        if (!p || push(ps, &child)) return NULL;
        p = skip_ws(p, ps->end);
        if (p < ps->end && *p == ',') {
            p = skip_ws(p + 1, ps->end);
            continue;
        }
        if (p < ps->end && *p == ']') break;
        fail(ps, p, "expected ',' or ']'");
        return NULL;
    }
    return close_container(ps, v, base) ? NULL : p + 1;
}

static const char *parse_object(struct parser *ps, const char *p, struct sd_json *v, int depth) {
    const char *at = p;
    size_t base = ps->n;
    v->type = SD_JSON_OBJ;
    p = skip_ws(p + 1, ps->end);
    if (p < ps->end && *p == '}') return close_container(ps, v, base) ? NULL : p + 1;
    for (;;) {
        struct sd_json child;
        const char *key;
        size_t klen;
        if (p >= ps->end || *p != '"') {
            fail(ps, p, "expected '\"' (object key)");
            return NULL;
        }
        p = parse_string(ps, p, &key, &klen);
        if (!p) return NULL;
        p = skip_ws(p, ps->end);
        if (p >= ps->end || *p != ':') {
            fail(ps, p, "expected ':'");
            return NULL;
        }
        p = skip_ws(p + 1, ps->end);
        p = parse_value(ps, p, &child, depth + 1);
        if (!p) return NULL;
        child.key = key;
        child.klen = klen;
        if (push(ps, &child)) return NULL;
        p = skip_ws(p, ps->end);
        if (p < ps->end && *p == ',') {
            p = skip_ws(p + 1, ps->end);
            continue;
        }
        if (p < ps->end && *p == '}') break;
        fail(ps, p, "expected ',' or '}'");
        return NULL;
    }
    if (close_container(ps, v, base) || index_object(ps, v, at)) return NULL;
    return p + 1;
}

static const char *parse_literal(struct parser *ps, const char *p, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - p) < n || memcmp(p, word, n) != 0) {
        fail(ps, p, "invalid literal (expected '%s')", word);
        return NULL;
    }
    return p + n;
}

/* Parses one value at p (whitespace already skipped) into *v. */
static const char *parse_value(struct parser *ps, const char *p, struct sd_json *v, int depth) {
    memset(v, 0, sizeof *v);
    if (p >= ps->end) {
        fail(ps, p, "expected a value");
        return NULL;
    }
    switch (*p) {
    case '{':
    case '[':
        if (depth >= SD_JSON_MAX_DEPTH) {
            fail(ps, p, "nesting deeper than %d", SD_JSON_MAX_DEPTH);
            return NULL;
        }
        return *p == '{' ? parse_object(ps, p, v, depth) : parse_array(ps, p, v, depth);
    case '"':
        v->type = SD_JSON_STR;
        return parse_string(ps, p, &v->s, &v->slen);
    case 't': v->type = SD_JSON_BOOL; v->b = 1; return parse_literal(ps, p, "true");
    case 'f': v->type = SD_JSON_BOOL; return parse_literal(ps, p, "false");
    case 'n': v->type = SD_JSON_NULL; return parse_literal(ps, p, "null");
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) return parse_number(ps, p, v);
        if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) fail(ps, p, "unexpected '%c'", *p);
        else fail(ps, p, "unexpected byte 0x%02x", (unsigned char)*p);
        return NULL;
    }
}

int sd_json_parse(struct sd_ctx *ctx, const char *text, size_t len, struct sd_json **out) {
    *out = NULL;
    struct parser ps = {.ctx = ctx, .start = text, .end = text + len};
    struct json_doc *doc = calloc(1, sizeof *doc);
    if (!doc || !(doc->strings = malloc(len + 1))) {
        free(doc);
        return sd_errorf(ctx, SD_ERR_NOMEM, "json: out of memory (%zu-byte document)", len);
    }
    ps.doc = doc;
    ps.sp = doc->strings;
    const char *p = text;
    if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) p += 3;
    p = skip_ws(p, ps.end);
    p = parse_value(&ps, p, &doc->root, 0);
    if (p) {
        p = skip_ws(p, ps.end);
        if (p < ps.end) {
            fail(&ps, p, "unexpected data after the JSON value");
            p = NULL;
        }
    }
    free(ps.stk);
    if (!p) {
        sd_json_free(&doc->root);
        return ctx && ctx->status ? ctx->status : SD_ERR_FORMAT;
    }
    *out = &doc->root;
    return SD_OK;
}

void sd_json_free(struct sd_json *root) {
    if (!root) return;
    struct json_doc *doc = (struct json_doc *)root;
    for (struct json_block *b = doc->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(doc->strings);
    free(doc);
}

const struct sd_json *sd_json_get(const struct sd_json *obj, const char *key) {
    if (!obj || obj->type != SD_JSON_OBJ || !key) return NULL;
    size_t klen = strlen(key);
    if (obj->index) {
        struct sd_hmap_iter it;
        for (uint32_t k = sd_hmap_find(obj->index, hash_key(key, klen), &it); k != SD_HMAP_NONE;
             k = sd_hmap_next(obj->index, &it))
            if (same_key(&obj->kids[k], key, klen)) return &obj->kids[k];
        return NULL;
    }
    for (size_t k = 0; k < obj->n; k++)
        if (same_key(&obj->kids[k], key, klen)) return &obj->kids[k];
    return NULL;
}

size_t sd_json_len(const struct sd_json *v) {
    return v && (v->type == SD_JSON_ARR || v->type == SD_JSON_OBJ) ? v->n : 0;
}

const struct sd_json *sd_json_at(const struct sd_json *v, size_t i) {
    return i < sd_json_len(v) ? &v->kids[i] : NULL;
}

const char *sd_json_str(const struct sd_json *v) { return v && v->type == SD_JSON_STR ? v->s : NULL; }

double sd_json_num(const struct sd_json *v, double def) { return v && v->type == SD_JSON_NUM ? v->num : def; }

int64_t sd_json_int(const struct sd_json *v, int64_t def) {
    if (!v || v->type != SD_JSON_NUM) return def;
    if (v->is_int) return v->i;
    const double lim = 9007199254740992.0; /* 2^53 */
    if (v->num >= -lim && v->num <= lim && v->num == (double)(int64_t)v->num) return (int64_t)v->num;
    return def;
}

int sd_json_bool(const struct sd_json *v, int def) { return v && v->type == SD_JSON_BOOL ? v->b : def; }

const char *sd_json_type_name(enum sd_json_type t) {
    static const char *names[] = {"null", "bool", "number", "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

char *sd_json_quote(const char *s, size_t len) {
    size_t cap = 2 + 1;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)s[k];
        cap += c == '"' || c == '\\' ? 2 : c < 0x20 ? 6 : 1;
    }
    char *out = malloc(cap), *d = out;
    if (!out) return NULL;
    *d++ = '"';
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\') {
            *d++ = '\\';
            *d++ = (char)c;
        } else if (c < 0x20) {
            d += sprintf(d, "\\u%04x", c);
        } else {
            *d++ = (char)c;
        }
    }
    *d++ = '"';
    *d = 0;
    return out;
}
