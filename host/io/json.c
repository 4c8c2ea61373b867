/* json.c - strict JSON reading on jansson (see json.h for the contract).
 *
 * jansson parses (json_loadb with JSON_REJECT_DUPLICATES and
 * JSON_ALLOW_NUL); this file adds what jansson does not check (NUL bytes in
 * the text, the nesting limit, a leading byte-order mark) and turns
 * jansson's error (text, position) into a message with the byte offset of
 * the offending token in the caller's text.
 */
#include "json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define J(v) ((json_t *)(v))
#define SD(v) ((const struct sd_json *)(v))

/* The first byte at which brackets nest deeper than SD_JSON_MAX_DEPTH
 * (strings skipped), or len. */
static size_t depth_offset(const char *t, size_t len) {
    int d = 0, in_str = 0, esc = 0;
    for (size_t k = 0; k < len; k++) {
        char c = t[k];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++d > SD_JSON_MAX_DEPTH) return k;
        } else if (c == ']' || c == '}') {
            d--;
        }
    }
    return len;
}

/* Whether v holds containers nested deeper than SD_JSON_MAX_DEPTH (v itself
 * at `depth`). jansson bounds the recursion (its own limit is 2048). */
static int too_deep(json_t *v, int depth) {
    if (depth > SD_JSON_MAX_DEPTH) return 1;
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        for (size_t k = 0; k < n; k++) {
            json_t *c = json_array_get(v, k);
            if ((json_is_array(c) || json_is_object(c)) && too_deep(c, depth + 1)) return 1;
        }
    } else if (json_is_object(v)) {
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            json_t *c = json_object_iter_value(it);
            if ((json_is_array(c) || json_is_object(c)) && too_deep(c, depth + 1)) return 1;
        }
    }
    return 0;
}

/* Appends s[0..n) to d (capacity cap, NUL-terminated), bytes outside
 * printable ASCII and UTF-8 written as \xNN. */
static void put_clean(char *d, size_t cap, const char *s, size_t n) {
    size_t o = strlen(d);
    for (size_t k = 0; k < n && o + 5 < cap; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(d + o, cap - o, "\\x%02x", c);
        else d[o++] = (char)c;
    }
    d[o] = 0;
}

/* The error message for jansson's error e over text[0..len), which began
 * at byte `base` of the caller's text. */
static int parse_error(struct sd_ctx *ctx, const json_error_t *e, const char *text, size_t len, size_t base) {
    enum json_error_code code = json_error_code(e);
    if (code == json_error_out_of_memory)
        return sd_errorf(ctx, SD_ERR_NOMEM, "json: out of memory (%zu-byte document)", len);
    size_t pos = e->position > 0 ? (size_t)e->position : 0;
    if (pos > len) pos = len;
    if (code == json_error_stack_overflow)
        return sd_errorf(ctx, SD_ERR_FORMAT, "json: nesting deeper than %d at byte %zu", SD_JSON_MAX_DEPTH,
                         base + depth_offset(text, len));
    char what[256] = "";
    size_t at = pos;
    /* jansson appends " near '<token>'" (the token read so far, up to 20
     * bytes) or " near end of file"; the token starts near-length bytes
     * before its position. */
    const char *near = strstr(e->text, " near ");
    size_t wlen = near ? (size_t)(near - e->text) : strlen(e->text);
    if (code == json_error_duplicate_key && pos >= 2 && text[pos - 1] == '"') {
        /* The key ends at pos; it starts at the previous unescaped quote. */
        size_t s = pos - 1;
        while (s > 0) {
            s--;
            size_t bs = 0;
            while (bs < s && text[s - 1 - bs] == '\\') bs++;
            if (text[s] == '"' && bs % 2 == 0) break;
        }
        snprintf(what, sizeof what, "duplicate key ");
        put_clean(what, sizeof what - 12, text + s, pos - s);
        strcat(what, " in object");
        at = s;
    } else if (code == json_error_invalid_utf8) {
        snprintf(what, sizeof what, "invalid UTF-8 (%.*s)", (int)wlen, e->text);
    } else if (!strncmp(e->text, "control character", 17) || !strncmp(e->text, "unexpected newline", 18)) {
        snprintf(what, sizeof what, "%.*s in string", (int)wlen, e->text);
    } else {
        snprintf(what, sizeof what, "%.*s", (int)wlen, e->text);
        if (near && near[6] == '\'') {
            const char *tok = near + 7, *q = strrchr(tok, '\'');
            size_t tlen = q ? (size_t)(q - tok) : strlen(tok);
            strcat(what, " near '");
            put_clean(what, sizeof what - 2, tok, tlen);
            strcat(what, "'");
            if (tlen <= pos) at = pos - tlen;
            /* Inside a string token: point at the escape itself. */
            if (!strncmp(e->text, "invalid escape", 14) && at < pos) {
                for (size_t k = pos; k-- > at;)
                    if (text[k] == '\\') {
                        at = k;
                        break;
                    }
            } else if (!strncmp(e->text, "invalid Unicode '\\u", 19) && at < pos) {
                for (size_t k = at; k + 6 <= pos; k++)
                    if (text[k] == '\\' && text[k + 1] == 'u' && !strncasecmp(text + k + 2, e->text + 19, 4)) {
                        at = k;
                        break;
                    }
            }
        }
    }
    int eof = code == json_error_premature_end_of_input || (near && !strncmp(near, " near end of file", 17));
    return sd_errorf(ctx, SD_ERR_FORMAT, "json: %s at byte %zu%s", what, base + at, eof ? " (end of input)" : "");
}

int sd_json_parse(struct sd_ctx *ctx, const char *text, size_t len, struct sd_json **out) {
    *out = NULL;
    size_t base = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) base = 3;
    const char *nul = memchr(text, 0, len);
    if (nul) return sd_errorf(ctx, SD_ERR_FORMAT, "json: NUL byte at byte %zu", (size_t)(nul - text));
    json_error_t e;
    json_t *root = json_loadb(text + base, len - base, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (!root) return parse_error(ctx, &e, text + base, len - base, base);
    if ((json_is_array(root) || json_is_object(root)) && too_deep(root, 1)) {
        json_decref(root);
        return sd_errorf(ctx, SD_ERR_FORMAT, "json: nesting deeper than %d at byte %zu", SD_JSON_MAX_DEPTH,
                         base + depth_offset(text + base, len - base));
    }
    *out = (struct sd_json *)root;
    return SD_OK;
}

void sd_json_free(struct sd_json *root) {
    if (root) json_decref(J(root));
}

enum sd_json_type sd_json_type(const struct sd_json *v) {
    switch (v ? json_typeof(J(v)) : JSON_NULL) {
    case JSON_OBJECT: return SD_JSON_OBJ;
    case JSON_ARRAY: return SD_JSON_ARR;
    case JSON_STRING: return SD_JSON_STR;
    case JSON_INTEGER:
    case JSON_REAL: return SD_JSON_NUM;
    case JSON_TRUE:
    case JSON_FALSE: return SD_JSON_BOOL;
    default: return SD_JSON_NULL;
    }
}

const struct sd_json *sd_json_get(const struct sd_json *obj, const char *key) {
    if (!obj || !key || !json_is_object(J(obj))) return NULL;
    return SD(json_object_get(J(obj), key));
}

size_t sd_json_len(const struct sd_json *v) {
    if (!v) return 0;
    if (json_is_array(J(v))) return json_array_size(J(v));
    if (json_is_object(J(v))) return json_object_size(J(v));
    return 0;
}

const struct sd_json *sd_json_at(const struct sd_json *v, size_t i) {
    return v && json_is_array(J(v)) ? SD(json_array_get(J(v), i)) : NULL;
}

int sd_json_next(const struct sd_json *obj, struct sd_json_member *m) {
    if (!obj || !json_is_object(J(obj))) return 0;
    m->iter = m->iter ? json_object_iter_next(J(obj), m->iter) : json_object_iter(J(obj));
    if (!m->iter) {
        m->key = NULL;
        m->klen = 0;
        m->value = NULL;
        return 0;
    }
    m->key = json_object_iter_key(m->iter);
    m->klen = json_object_iter_key_len(m->iter);
    m->value = SD(json_object_iter_value(m->iter));
    return 1;
}

const char *sd_json_str(const struct sd_json *v) { return v && json_is_string(J(v)) ? json_string_value(J(v)) : NULL; }

size_t sd_json_slen(const struct sd_json *v) { return v && json_is_string(J(v)) ? json_string_length(J(v)) : 0; }

double sd_json_num(const struct sd_json *v, double def) { return v && json_is_number(J(v)) ? json_number_value(J(v)) : def; }

int sd_json_is_int(const struct sd_json *v) { return v && json_is_integer(J(v)); }

int64_t sd_json_int(const struct sd_json *v, int64_t def) {
    if (!v) return def;
    if (json_is_integer(J(v))) return (int64_t)json_integer_value(J(v));
    if (!json_is_real(J(v))) return def;
    double x = json_real_value(J(v));
    const double lim = 9007199254740992.0; /* 2^53 */
    if (x >= -lim && x <= lim && x == (double)(int64_t)x) return (int64_t)x;
    return def;
}

int sd_json_bool(const struct sd_json *v, int def) { return v && json_is_boolean(J(v)) ? json_is_true(J(v)) : def; }

const char *sd_json_type_name(enum sd_json_type t) {
    static const char *names[] = {"null", "bool", "number", "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

char *sd_json_quote(const char *s, size_t len) {
    json_t *str = json_stringn(s, len);
    if (!str) return NULL;
    char *q = json_dumps(str, JSON_ENCODE_ANY);
    json_decref(str);
    return q;
}
