/* json.h - a small strict JSON (RFC 8259) parser into a read-only DOM.
 *
 * Used for safetensors headers, diffusers config.json / model_index.json /
 * scheduler_config.json and the tokenizer's vocab.json.
 *
 *   struct sd_json *doc;
 *   if (sd_json_parse(ctx, text, len, &doc) != SD_OK) return ctx->status;
 *   int64_t size = sd_json_int(sd_json_get(doc, "sample_size"), 64);
 *   const struct sd_json *v = sd_json_get(doc, "vocab");
 *   for (size_t i = 0; i < sd_json_len(v); i++) {
 *       const struct sd_json *m = sd_json_at(v, i);   // m->key, m->klen
 *       ...
 *   }
 *   sd_json_free(doc);
 *
 * Contract:
 * - Strict grammar: no comments, no trailing commas, no NaN/Infinity, no
 *   leading zeros, no raw control characters or invalid UTF-8 in strings,
 *   no unpaired \u surrogates, no duplicate keys within one object. The only
 *   leniency is a leading UTF-8 byte-order mark, which is skipped (RFC 8259
 *   allows that). Nesting is limited to SD_JSON_MAX_DEPTH containers.
 * - Errors name the problem and the byte offset into `text`:
 *   "json: expected ',' or '}' at byte 1234".
 * - Objects keep their members in document order; each member is the value
 *   node with `key` set. Objects with more than 8 members carry a hash index,
 *   so sd_json_get is O(1) on e.g. a 49408-entry vocab.
 * - Strings are unescaped to UTF-8 and NUL-terminated; `slen`/`klen` give the
 *   byte length (a string may contain NUL bytes via \u0000).
 * - Numbers: `num` holds the double (strtod; the C locale is assumed);
 *   `is_int` is set when the literal is written as an integer (no fraction,
 *   no exponent) that fits int64, and then `i` holds it exactly.
 * - The whole DOM (nodes, strings, indexes) belongs to the root returned by
 *   sd_json_parse; free only that root, with sd_json_free. `text` is not
 *   referenced after parsing returns.
 * - Accessors are NULL-safe, so lookups chain: sd_json_str(sd_json_get(o, "k")).
 */
#ifndef SDRT_JSON_H
#define SDRT_JSON_H

#include "sdrt.h"

struct sd_hmap;

#define SD_JSON_MAX_DEPTH 256

enum sd_json_type { SD_JSON_NULL = 0, SD_JSON_BOOL, SD_JSON_NUM, SD_JSON_STR, SD_JSON_ARR, SD_JSON_OBJ };

struct sd_json {
    enum sd_json_type type;
    int b;                      /* BOOL: 0 or 1 */
    int is_int;                 /* NUM: integer literal that fits int64; i is exact */
    int64_t i;                  /* NUM: the integer value when is_int */
    double num;                 /* NUM: the value */
    const char *s;              /* STR: NUL-terminated UTF-8 */
    size_t slen;                /* STR: length in bytes */
    const char *key;            /* object member: its key (NUL-terminated), else NULL */
    size_t klen;
    struct sd_json *kids;       /* ARR/OBJ: the elements / members, in order */
    size_t n;                   /* ARR/OBJ: how many */
    struct sd_hmap *index;      /* OBJ with more than 8 members: FNV-1a of a key -> member
                                   position (hashmap.h), in the document's memory; else NULL */
};

/* Parses text[0..len) (need not be NUL-terminated). On success *out is the
 * root, owned by the caller (free with sd_json_free). Returns SD_OK, or
 * SD_ERR_FORMAT (syntax, with the byte offset) / SD_ERR_NOMEM with ctx set
 * and *out = NULL. */
int sd_json_parse(struct sd_ctx *ctx, const char *text, size_t len, struct sd_json **out);

/* Frees a root returned by sd_json_parse (never a node inside it). NULL-safe. */
void sd_json_free(struct sd_json *root);

/* Member of an object by key, or NULL (not an object, or no such key). */
const struct sd_json *sd_json_get(const struct sd_json *obj, const char *key);
/* Elements of an array / members of an object; 0 for other types. */
size_t sd_json_len(const struct sd_json *v);
/* i-th element of an array or i-th member (in document order) of an object,
 * or NULL when out of range or not a container. */
const struct sd_json *sd_json_at(const struct sd_json *v, size_t i);

/* Typed accessors; NULL-safe. */
const char *sd_json_str(const struct sd_json *v);          /* NULL unless a string */
double sd_json_num(const struct sd_json *v, double def);  /* def unless a number */
/* The integer for an integer literal, or for a number whose value is integral
 * and within +-2^53 (e.g. 64.0); def otherwise. */
int64_t sd_json_int(const struct sd_json *v, int64_t def);
int sd_json_bool(const struct sd_json *v, int def);        /* def unless true/false */
const char *sd_json_type_name(enum sd_json_type t);

/* Returns s[0..len) as a quoted JSON string literal ("..." with \" \\ and
 * control characters escaped; other bytes copied), malloc'd and owned by the
 * caller, or NULL when out of memory. */
char *sd_json_quote(const char *s, size_t len);

#endif
