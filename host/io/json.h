/* json.h - strict JSON (RFC 8259) reading on jansson, the project's one JSON
 * library (host/server uses jansson directly for its requests and replies).
 *
 * Used for safetensors headers, diffusers config.json / model_index.json /
 * scheduler_config.json, the tokenizer's vocab.json and LoRA metadata.
 *
 *   struct sd_json *doc;
 *   if (sd_json_parse(ctx, text, len, &doc) != SD_OK) return ctx->status;
 *   int64_t size = sd_json_int(sd_json_get(doc, "sample_size"), 64);
 *   for (struct sd_json_member m = {0}; sd_json_next(sd_json_get(doc, "vocab"), &m);)
 *       use(m.key, m.klen, sd_json_int(m.value, -1));
 *   sd_json_free(doc);
 *
 * Contract:
 * - A `struct sd_json` is a jansson value (json_t); the root from
 *   sd_json_parse owns the document. Lookups by key use jansson's own hash
 *   table (O(1) on e.g. a 49408-entry vocab).
 * - Strict grammar (jansson's, with JSON_REJECT_DUPLICATES): no comments,
 *   no trailing commas, no NaN/Infinity, no leading zeros, no raw control
 *   characters or invalid UTF-8 in strings, no unpaired \u surrogates, no
 *   duplicate keys within one object. Checked here besides: no NUL byte
 *   anywhere in the text (a "\u0000" escape inside a string value is fine;
 *   jansson refuses it in keys), nesting at most SD_JSON_MAX_DEPTH
 *   containers. The only leniency is a leading UTF-8 byte-order mark, which
 *   is skipped (RFC 8259 allows that).
 * - Errors name the problem and the byte offset into `text` (the start of
 *   the offending token, or the offending byte):
 *   "json: '}' expected near '"b"' at byte 1234".
 * - Objects keep their members in document order (sd_json_next).
 * - Strings are UTF-8 and NUL-terminated; sd_json_slen gives the byte
 *   length (a string value may contain NUL bytes via \u0000).
 * - Numbers: an integer literal (no fraction, no exponent) is an exact
 *   int64 (sd_json_is_int); one outside [-2^63, 2^63) is an error ("too big
 *   integer"), never silently rounded, so safetensors offsets and shapes are
 *   exact or rejected. Other numbers are doubles; one beyond the double range
 *   is an error ("real number overflow"). "-0" is the integer 0.
 * - `text` is not referenced after parsing returns.
 * - Accessors are NULL-safe, so lookups chain: sd_json_str(sd_json_get(o, "k")).
 *   The document is read-only: several threads may read it at once.
 */
#ifndef SDRT_JSON_H
#define SDRT_JSON_H

#include "sdrt.h"

#define SD_JSON_MAX_DEPTH 256

enum sd_json_type { SD_JSON_NULL = 0, SD_JSON_BOOL, SD_JSON_NUM, SD_JSON_STR, SD_JSON_ARR, SD_JSON_OBJ };

struct sd_json; /* a jansson json_t */

/* One member of an object, filled by sd_json_next. */
struct sd_json_member {
    const char *key;             /* NUL-terminated UTF-8, owned by the document */
    size_t klen;
    const struct sd_json *value;
    void *iter;                  /* private: jansson's iterator */
};

/* Parses text[0..len) (need not be NUL-terminated). On success *out is the
 * root, owned by the caller (free with sd_json_free). Returns SD_OK, or
 * SD_ERR_FORMAT (syntax, with the byte offset) / SD_ERR_NOMEM with ctx set
 * and *out = NULL. */
int sd_json_parse(struct sd_ctx *ctx, const char *text, size_t len, struct sd_json **out);

/* Frees a root returned by sd_json_parse (never a node inside it). NULL-safe. */
void sd_json_free(struct sd_json *root);

/* The value's type; SD_JSON_NULL for NULL as well. */
enum sd_json_type sd_json_type(const struct sd_json *v);
/* Member of an object by key, or NULL (not an object, or no such key). */
const struct sd_json *sd_json_get(const struct sd_json *obj, const char *key);
/* Elements of an array / members of an object; 0 for other types. */
size_t sd_json_len(const struct sd_json *v);
/* i-th element of an array, or NULL when out of range or not an array
 * (objects are walked with sd_json_next). */
const struct sd_json *sd_json_at(const struct sd_json *v, size_t i);
/* Steps through obj's members in document order: start with *m zeroed;
 * returns 1 with *m set to the next member, 0 after the last one (at once
 * when obj is not an object). */
int sd_json_next(const struct sd_json *obj, struct sd_json_member *m);

/* Typed accessors; NULL-safe. */
const char *sd_json_str(const struct sd_json *v);          /* NULL unless a string */
size_t sd_json_slen(const struct sd_json *v);              /* its byte length; 0 unless a string */
double sd_json_num(const struct sd_json *v, double def);  /* def unless a number */
int sd_json_is_int(const struct sd_json *v);               /* an integer literal (exact int64) */
/* The integer for an integer literal, or for a number whose value is integral
 * and within +-2^53 (e.g. 64.0); def otherwise. */
int64_t sd_json_int(const struct sd_json *v, int64_t def);
int sd_json_bool(const struct sd_json *v, int def);        /* def unless true/false */
const char *sd_json_type_name(enum sd_json_type t);

/* Returns s[0..len) as a quoted JSON string literal (jansson's encoder:
 * '"', '\\' and control characters escaped, other UTF-8 copied), malloc'd
 * and owned by the caller, or NULL when out of memory or s is not valid
 * UTF-8. */
char *sd_json_quote(const char *s, size_t len);

#endif
