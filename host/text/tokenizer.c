/* tokenizer.c - CLIP BPE tokenizer: vocabulary loading (OpenAI .gz or diffusers
 * vocab.json + merges.txt), text normalisation, pre-tokenisation and BPE.
 * The contract and the reference behaviour are described in tokenizer.h.
 *
 * Representation: every vocabulary entry is a string in the "byte-to-unicode"
 * form the reference uses (each raw byte shown as one printable code point,
 * e.g. a space is U+0120; "</w>" marks a word end), kept in one arena with a
 * string -> id hash used only while loading. Encoding never builds strings:
 * a pre-token's bytes map straight to the ids of their one-byte symbols
 * (byte_id / byte_id_end), and merges are looked up by id pair
 * (merge_index, hashmap.h), so BPE runs over small int arrays.
 */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "json.h"
#include "unicode.h"

#define BOS_STR "<|startoftext|>"
#define EOS_STR "<|endoftext|>"

/* ---- byte <-> unicode (sd-reference §1.1) ---------------------------- */

/* Bytes shown as the code point of the same value ('!'..'~', U+00A1..U+00AC,
 * U+00AE..U+00FF); the other 68 get U+0100 onwards, in byte order. */
static int byte_is_direct(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

/* order[i] = the byte whose one-character symbol has id i (0..255);
 * cp[b] = the code point that stands for byte b. */
static void byte_tables(unsigned char order[256], uint32_t cp[256]) {
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if (byte_is_direct(b)) order[n++] = (unsigned char)b, cp[b] = (uint32_t)b;
    for (int b = 0; b < 256; b++)
        if (!byte_is_direct(b)) order[n++] = (unsigned char)b, cp[b] = 256u + (uint32_t)extra++;
}

/* ---- string table ------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t len) { return sd_fnv1a(s, len, SD_FNV1A_SEED); }

static const char *tok_str(const struct sd_tokenizer *t, int id) { return t->strs + t->str_off[id]; }

/* Id of s[0..len), or -1 (it is left where the lookup ended). */
static int str_lookup(const struct sd_tokenizer *t, const char *s, size_t len, struct sd_hmap_iter *it) {
    for (uint32_t id = sd_hmap_find(&t->str_index, hash_bytes(s, len), it); id != SD_HMAP_NONE;
         id = sd_hmap_next(&t->str_index, it)) {
        const char *k = tok_str(t, (int)id);
        if (strncmp(k, s, len) == 0 && k[len] == 0) return (int)id;
    }
    return -1;
}

/* Id of s[0..len), or -1 (also for s with a NUL byte: no token has one). */
static int str_find(const struct sd_tokenizer *t, const char *s, size_t len) {
    struct sd_hmap_iter it;
    if (memchr(s, 0, len)) return -1;
    return str_lookup(t, s, len, &it);
}

/* Makes room for n_vocab ids (call once, before str_add). */
static int str_init(struct sd_ctx *ctx, struct sd_tokenizer *t, int n_vocab) {
    t->n_vocab = n_vocab;
    t->str_off = calloc((size_t)n_vocab, sizeof *t->str_off);
    t->strs_cap = (size_t)n_vocab * 8;
    t->strs = malloc(t->strs_cap);
    if (!t->str_off || !t->strs || sd_hmap_init(&t->str_index, (size_t)n_vocab) != SD_OK)
        return sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
    return SD_OK;
}

/* Sets the string of id to s[0..len); returns SD_OK, or SD_ERR_FORMAT when
 * the string is already some other id's (the name says where, for errors). */
static int str_add(struct sd_ctx *ctx, struct sd_tokenizer *t, int id, const char *s, size_t len, const char *where) {
    struct sd_hmap_iter it;
    int old = str_lookup(t, s, len, &it);
    if (old >= 0)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: token \"%.*s\" appears twice (ids %d and %d)", where, (int)len, s,
                         old, id);
    if (t->strs_len + len + 1 > t->strs_cap) {
        size_t cap = t->strs_cap * 2 + len + 1;
        char *p = realloc(t->strs, cap);
        if (!p) return sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
        t->strs = p, t->strs_cap = cap;
    }
    if (sd_hmap_insert(&t->str_index, &it, (uint32_t)id) != SD_OK)
        return sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(t->strs + t->strs_len, s, len);
    t->strs[t->strs_len + len] = 0;
    t->str_off[id] = (uint32_t)t->strs_len;
    t->strs_len += len + 1;
    return SD_OK;
}

/* ---- merges -------------------------------------------------------------- */

static uint64_t pair_hash(int a, int b) { return sd_hash_u64((uint64_t)(uint32_t)a << 32 | (uint32_t)b); }

/* Rank of merging (a, b) and the merged id in *out, or -1 (it is left
 * where the lookup ended). */
static int merge_lookup(const struct sd_tokenizer *t, int a, int b, int *out, struct sd_hmap_iter *it) {
    for (uint32_t r = sd_hmap_find(&t->merge_index, pair_hash(a, b), it); r != SD_HMAP_NONE;
         r = sd_hmap_next(&t->merge_index, it))
        if (t->merge[r].a == a && t->merge[r].b == b) {
            *out = t->merge[r].out;
            return (int)r;
        }
    return -1;
}

static int merge_find(const struct sd_tokenizer *t, int a, int b, int *out) {
    struct sd_hmap_iter it;
    return merge_lookup(t, a, b, out, &it);
}

static int merge_init(struct sd_ctx *ctx, struct sd_tokenizer *t) {
    t->merge = malloc(SD_TOKENIZER_N_MERGES * sizeof *t->merge);
    if (!t->merge || sd_hmap_init(&t->merge_index, SD_TOKENIZER_N_MERGES) != SD_OK)
        return sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
    return SD_OK;
}

static int is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

/* One merge line: finds its two symbols (split on whitespace like Python's
 * str.split(); symbols never contain non-ASCII whitespace). Returns 1 with
 * the spans in a/alen, b/blen, or 0 unless there are exactly two. */
static int split_merge_line(const char *s, size_t len, const char **a, size_t *alen, const char **b, size_t *blen) {
    size_t i = 0, n = 0;
    const char *p[2];
    size_t pl[2];
    for (;;) {
        while (i < len && is_ascii_space(s[i])) i++;
        if (i >= len) break;
        size_t st = i;
        while (i < len && !is_ascii_space(s[i])) i++;
        if (n == 2) return 0;
        p[n] = s + st, pl[n] = i - st, n++;
    }
    if (n != 2) return 0;
    *a = p[0], *alen = pl[0], *b = p[1], *blen = pl[1];
    return 1;
}

/* Reads the merge lines of text (line 0 is the header, skipped) and fills the
 * merge table; with `build`, each merge also defines the next vocabulary id
 * 512 + rank (OpenAI .gz), otherwise the merged string must already be in the
 * vocabulary (vocab.json). `first_line` is the file line number of text[0].
 * Uses at most SD_TOKENIZER_N_MERGES lines; returns how many in *count. */
static int read_merges(struct sd_ctx *ctx, struct sd_tokenizer *t, const char *text, size_t len, const char *path,
                       int first_line, int build, int *count) {
    const char *p = text, *end = text + len;
    const char *nl = memchr(p, '\n', len);
    p = nl ? nl + 1 : end; /* skip the header */
    int rank = 0;
    char buf[1024];
    while (p < end && rank < SD_TOKENIZER_N_MERGES) {
        int line = first_line + 1 + rank;
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)((nl ? nl : end) - p);
        const char *a, *b;
        size_t al, bl;
        if (!split_merge_line(p, ll, &a, &al, &b, &bl))
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s:%d: expected two space-separated symbols, got \"%.*s\"", path,
                             line, (int)(ll > 80 ? 80 : ll), p);
        int ia = str_find(t, a, al), ib = str_find(t, b, bl);
        if (ia < 0 || ib < 0)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s:%d: symbol \"%.*s\" is not in the vocabulary%s", path, line,
                             ia < 0 ? (int)al : (int)bl, ia < 0 ? a : b,
                             build ? " (merges must only use symbols made by earlier lines)" : "");
        if (al + bl >= sizeof buf)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s:%d: merged symbol longer than %zu bytes", path, line, sizeof buf);
        memcpy(buf, a, al);
        memcpy(buf + al, b, bl);
        int out;
        if (build) {
            out = 512 + rank;
            int dup = str_find(t, buf, al + bl);
            if (dup >= 0)
                return sd_errorf(ctx, SD_ERR_FORMAT, "%s:%d: merged symbol \"%.*s\" already has id %d", path, line,
                                 (int)(al + bl), buf, dup);
            if (str_add(ctx, t, out, buf, al + bl, path) != SD_OK) return ctx ? ctx->status : SD_ERR_NOMEM;
        } else {
            out = str_find(t, buf, al + bl);
            if (out < 0)
                return sd_errorf(ctx, SD_ERR_FORMAT, "%s:%d: merged symbol \"%.*s\" is not in vocab.json", path, line,
                                 (int)(al + bl), buf);
        }
        int dup_out;
        struct sd_hmap_iter it;
        if (merge_lookup(t, ia, ib, &dup_out, &it) >= 0)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s:%d: duplicate merge \"%.*s %.*s\"", path, line, (int)al, a,
                             (int)bl, b);
        if (sd_hmap_insert(&t->merge_index, &it, (uint32_t)rank) != SD_OK)
            return sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
        t->merge[rank] = (struct sd_tok_merge){ia, ib, out};
        rank++;
        p = nl ? nl + 1 : end;
    }
    *count = rank;
    t->n_merges = rank;
    return SD_OK;
}

/* ---- loading ------------------------------------------------------------- */

static struct sd_tokenizer *tok_alloc(struct sd_ctx *ctx) {
    struct sd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
        return NULL;
    }
    t->ctx = ctx;
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

/* Resolves byte_id/byte_id_end and the special ids from the string table. */
static int resolve_ids(struct sd_ctx *ctx, struct sd_tokenizer *t, const char *where) {
    unsigned char order[256];
    uint32_t cp[256];
    byte_tables(order, cp);
    for (int b = 0; b < 256; b++) {
        char s[8];
        int l = sd_unicode_utf8_encode(cp[b], s);
        memcpy(s + l, "</w>", 4);
        t->byte_id[b] = str_find(t, s, (size_t)l);
        t->byte_id_end[b] = str_find(t, s, (size_t)l + 4);
        if (t->byte_id[b] < 0 || t->byte_id_end[b] < 0)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: the symbol for byte 0x%02x (\"%.*s\"%s) is missing", where, b,
                             l, s, t->byte_id[b] < 0 ? "" : "</w>");
    }
    t->bos_id = str_find(t, BOS_STR, strlen(BOS_STR));
    t->eos_id = str_find(t, EOS_STR, strlen(EOS_STR));
    if (t->bos_id < 0 || t->eos_id < 0)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: no %s token", where, t->bos_id < 0 ? BOS_STR : EOS_STR);
    return sd_tokenizer_set_family(t, SD_TOKENIZER_SD1);
}

int sd_tokenizer_set_pad(struct sd_tokenizer *t, const char *pad_token) {
    size_t len = pad_token ? strlen(pad_token) : 0;
    int id = len ? str_find(t, pad_token, len) : -1;
    if (id < 0 || len >= sizeof t->pad_token)
        return sd_errorf(t->ctx, SD_ERR_UNSUPPORTED, "tokenizer: pad token \"%s\" is not in the vocabulary",
                         pad_token ? pad_token : "(null)");
    memcpy(t->pad_token, pad_token, len + 1);
    t->pad_id = id;
    t->pad_split = id != t->bos_id && id != t->eos_id;
    return SD_OK;
}

int sd_tokenizer_set_family(struct sd_tokenizer *t, enum sd_tokenizer_family family) {
    if (family == SD_TOKENIZER_SD1) return sd_tokenizer_set_pad(t, EOS_STR);
    if (family == SD_TOKENIZER_SD2) return sd_tokenizer_set_pad(t, "!");
    return sd_errorf(t->ctx, SD_ERR_INVALID, "tokenizer: unknown family %d", (int)family);
}

struct sd_tokenizer *sd_tokenizer_load_bpe_gz(struct sd_ctx *ctx, const char *path) {
    struct sd_tokenizer *t = NULL;
    char *text = NULL;
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        sd_errorf(ctx, SD_ERR_IO, "tokenizer: cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    /* Keep the text up to the last merge line used; read on to the end
     * anyway, discarding, so that zlib checks the CRC of the whole file. */
    size_t len = 0, cap = 1 << 19;
    int lines = 0;
    text = malloc(cap);
    if (!text) { sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory"); goto fail; }
    for (;;) {
        int keep = lines <= SD_TOKENIZER_N_MERGES;
        if (cap - len < 65536) {
            char *p = realloc(text, cap * 2);
            if (!p) { sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory"); goto fail; }
            text = p, cap *= 2;
        }
        char *dst = text + len; /* past the kept text; len only grows while keep */
        int got = gzread(gz, dst, 65536);
        int zerr = Z_OK;
        const char *zmsg = gzerror(gz, &zerr);
        if (got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
            /* zlib's message may already start with the path. */
            size_t pl = strlen(path);
            if (zmsg && !strncmp(zmsg, path, pl) && !strncmp(zmsg + pl, ": ", 2)) zmsg += pl + 2;
            sd_errorf(ctx, SD_ERR_IO, "tokenizer: cannot read %s: %s", path, zerr == Z_ERRNO ? strerror(errno) : zmsg);
            goto fail;
        }
        if (got == 0) break;
        if (!keep) continue;
        for (int i = 0; i < got; i++) lines += dst[i] == '\n';
        len += (size_t)got;
    }
    gzclose(gz);
    gz = NULL;

    t = tok_alloc(ctx);
    if (!t) goto fail;
    int n_vocab = 512 + SD_TOKENIZER_N_MERGES + 2;
    if (str_init(ctx, t, n_vocab) != SD_OK || merge_init(ctx, t) != SD_OK) goto fail;
    unsigned char order[256];
    uint32_t cp[256];
    byte_tables(order, cp);
    for (int i = 0; i < 256; i++) {
        char s[8];
        int l = sd_unicode_utf8_encode(cp[order[i]], s);
        memcpy(s + l, "</w>", 4);
        if (str_add(ctx, t, i, s, (size_t)l, path) != SD_OK || str_add(ctx, t, 256 + i, s, (size_t)l + 4, path) != SD_OK)
            goto fail;
    }
    int count = 0;
    if (read_merges(ctx, t, text, len, path, 1, 1, &count) != SD_OK) goto fail;
    if (count != SD_TOKENIZER_N_MERGES) {
        sd_errorf(ctx, SD_ERR_FORMAT, "tokenizer: %s has %d merge lines, need %d", path, count, SD_TOKENIZER_N_MERGES);
        goto fail;
    }
    if (str_add(ctx, t, n_vocab - 2, BOS_STR, strlen(BOS_STR), path) != SD_OK ||
        str_add(ctx, t, n_vocab - 1, EOS_STR, strlen(EOS_STR), path) != SD_OK || resolve_ids(ctx, t, path) != SD_OK)
        goto fail;
    free(text);
    return t;
fail:
    if (gz) gzclose(gz);
    free(text);
    sd_tokenizer_free(t);
    return NULL;
}

/* Reads a whole file into a malloc'd buffer (NUL-terminated). */
static int read_file(struct sd_ctx *ctx, const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errorf(ctx, SD_ERR_IO, "tokenizer: cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            char *p = realloc(buf, cap ? cap * 2 : 1 << 20);
            if (!p) { free(buf); fclose(f); return sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory"); }
            buf = p, cap = cap ? cap * 2 : 1 << 20;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return sd_errorf(ctx, SD_ERR_IO, "tokenizer: cannot read %s", path); }
    buf[n] = 0;
    *out = buf, *len = n;
    return SD_OK;
}

struct sd_tokenizer *sd_tokenizer_load_files(struct sd_ctx *ctx, const char *vocab_json, const char *merges_txt) {
    struct sd_tokenizer *t = NULL;
    char *text = NULL;
    size_t len;
    struct sd_json *doc = NULL;
    int *order = NULL;
    if (read_file(ctx, vocab_json, &text, &len) != SD_OK) return NULL;
    if (sd_json_parse(ctx, text, len, &doc) != SD_OK) { sd_error_wrap(ctx, "tokenizer: %s", vocab_json); goto fail; }
    free(text);
    text = NULL;
    size_t n_doc = sd_json_len(doc);
    if (sd_json_type(doc) != SD_JSON_OBJ || n_doc < 512) {
        sd_errorf(ctx, SD_ERR_FORMAT, "tokenizer: %s: expected an object of token -> id, got %s with %zu entries",
                  vocab_json, sd_json_type_name(sd_json_type(doc)), n_doc);
        goto fail;
    }
    int n_vocab = (int)n_doc;
    /* order[id]: the member with that id (jansson keeps the key strings). */
    struct sd_json_member *order_m = calloc((size_t)n_vocab, sizeof *order_m);
    order = malloc((size_t)n_vocab * sizeof *order);
    if (!order || !order_m) { free(order_m); sd_errorf(ctx, SD_ERR_NOMEM, "tokenizer: out of memory"); goto fail; }
    for (int i = 0; i < n_vocab; i++) order[i] = -1;
    int i = 0;
    for (struct sd_json_member m = {0}; sd_json_next(doc, &m); i++) {
        int64_t id = sd_json_is_int(m.value) ? sd_json_int(m.value, -1) : -1;
        if (id < 0 || id >= n_vocab || m.klen == 0 || strlen(m.key) != m.klen) {
            sd_errorf(ctx, SD_ERR_FORMAT, "tokenizer: %s: entry \"%s\" needs an id in [0, %d)", vocab_json, m.key,
                      n_vocab);
            free(order_m);
            goto fail;
        }
        if (order[id] >= 0) {
            sd_errorf(ctx, SD_ERR_FORMAT, "tokenizer: %s: id %lld used by \"%s\" and \"%s\"", vocab_json,
                      (long long)id, order_m[id].key, m.key);
            free(order_m);
            goto fail;
        }
        order[id] = i;
        order_m[id] = m;
    }
    t = tok_alloc(ctx);
    if (!t || str_init(ctx, t, n_vocab) != SD_OK || merge_init(ctx, t) != SD_OK) { free(order_m); goto fail; }
    for (int id = 0; id < n_vocab; id++)
        if (str_add(ctx, t, id, order_m[id].key, order_m[id].klen, vocab_json) != SD_OK) { free(order_m); goto fail; }
    free(order_m);
    sd_json_free(doc);
    doc = NULL;
    if (resolve_ids(ctx, t, vocab_json) != SD_OK) goto fail;

    if (read_file(ctx, merges_txt, &text, &len) != SD_OK) goto fail;
    /* transformers strips the file first: skip leading whitespace. */
    size_t skip = 0;
    int first_line = 1;
    while (skip < len && is_ascii_space(text[skip])) first_line += text[skip++] == '\n';
    int count;
    if (read_merges(ctx, t, text + skip, len - skip, merges_txt, first_line, 0, &count) != SD_OK) goto fail;
    free(text);
    free(order);
    return t;
fail:
    free(text);
    free(order);
    sd_json_free(doc);
    sd_tokenizer_free(t);
    return NULL;
}

/* The pad_token of a JSON config file (a string or {"content": ...}) copied
 * into out; returns 1 when found, 0 when the file or key is absent, -1 on a
 * malformed file (ctx set). */
static int read_pad_token(struct sd_ctx *ctx, const char *path, char *out, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    char *text;
    size_t len;
    struct sd_json *doc = NULL;
    if (read_file(ctx, path, &text, &len) != SD_OK) return -1;
    int rc = sd_json_parse(ctx, text, len, &doc);
    free(text);
    if (rc != SD_OK) {
        sd_error_wrap(ctx, "tokenizer: %s", path);
        return -1;
    }
    const struct sd_json *pad = sd_json_get(doc, "pad_token");
    const char *s = sd_json_str(pad) ? sd_json_str(pad) : sd_json_str(sd_json_get(pad, "content"));
    if (s) snprintf(out, size, "%s", s);
    sd_json_free(doc);
    return s ? 1 : 0;
}

struct sd_tokenizer *sd_tokenizer_load_diffusers(struct sd_ctx *ctx, const char *dir) {
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s/tokenizer/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/tokenizer/merges.txt", dir);
    FILE *f = fopen(vocab, "rb");
    if (f) fclose(f);
    else {
        snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
        f = fopen(vocab, "rb");
        if (!f) {
            sd_errorf(ctx, SD_ERR_IO, "tokenizer: cannot open %s/tokenizer/vocab.json: %s", dir, strerror(errno));
            return NULL;
        }
        fclose(f);
        snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    }
    struct sd_tokenizer *t = sd_tokenizer_load_files(ctx, vocab, merges);
    if (!t) return NULL;
    /* The padding convention, as transformers takes it: special_tokens_map.json
     * over tokenizer_config.json; SD1 (pad = <|endoftext|>) when neither says. */
    char cfg[4096], pad[64];
    size_t dl = strlen(vocab) - strlen("vocab.json");
    int found = 0;
    const char *const names[] = {"special_tokens_map.json", "tokenizer_config.json"};
    for (int i = 0; i < 2 && !found; i++) {
        snprintf(cfg, sizeof cfg, "%.*s%s", (int)dl, vocab, names[i]);
        found = read_pad_token(ctx, cfg, pad, sizeof pad);
    }
    if (found < 0 || (found && sd_tokenizer_set_pad(t, pad) != SD_OK)) {
        if (found > 0) sd_error_wrap(ctx, "%s", cfg);
        sd_tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* ---- pre-token cache ----------------------------------------------------- */

enum { CACHE_ENTRIES = 2048, CACHE_MAX_KEY = 256 };

struct cache_entry { uint32_t key_off, key_len, ids_off, n_ids; };

struct sd_tok_cache {
    struct sd_hmap map;  /* hash of a pre-token -> its entry */
    struct sd_hmap_slot slots[2 * CACHE_ENTRIES];
    struct cache_entry e[CACHE_ENTRIES];
    uint32_t used;
    char keys[1 << 16];
    uint32_t keys_len;
    int32_t ids[1 << 14];
    uint32_t ids_len;
};

static struct sd_tok_cache *cache_new(void) {
    struct sd_tok_cache *c = malloc(sizeof *c);
    if (!c) return NULL;
    sd_hmap_init_fixed(&c->map, c->slots, 2 * CACHE_ENTRIES);
    c->used = c->keys_len = c->ids_len = 0;
    return c;
}

static const struct cache_entry *cache_get(const struct sd_tok_cache *c, const char *key, uint32_t len, uint64_t h) {
    struct sd_hmap_iter it;
    for (uint32_t v = sd_hmap_find(&c->map, h, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&c->map, &it)) {
        const struct cache_entry *e = &c->e[v];
        if (e->key_len == len && memcmp(c->keys + e->key_off, key, len) == 0) return e;
    }
    return NULL;
}

/* Adds key -> ids, clearing the whole cache first when it is full. */
static void cache_put(struct sd_tok_cache *c, const char *key, uint32_t len, uint64_t h, const int *ids, int n) {
    if (len > CACHE_MAX_KEY || (uint32_t)n > 1024) return;
    if (c->used >= CACHE_ENTRIES || c->keys_len + len > sizeof c->keys || c->ids_len + (uint32_t)n > 1 << 14) {
        sd_hmap_clear(&c->map);
        c->used = c->keys_len = c->ids_len = 0;
    }
    if (sd_hmap_put(&c->map, h, c->used) != SD_OK) return; /* cannot happen: room for CACHE_ENTRIES */
    c->e[c->used++] = (struct cache_entry){c->keys_len, len, c->ids_len, (uint32_t)n};
    memcpy(c->keys + c->keys_len, key, len);
    memcpy(c->ids + c->ids_len, ids, (size_t)n * sizeof *ids);
    c->keys_len += len;
    c->ids_len += (uint32_t)n;
}

void sd_tokenizer_free(struct sd_tokenizer *t) {
    if (!t) return;
    free(t->strs);
    free(t->str_off);
    sd_hmap_free(&t->str_index);
    sd_hmap_free(&t->merge_index);
    free(t->merge);
    free(t->cache);
    free(t->scratch);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- encoding ------------------------------------------------------------ */

/* Growable output of ids: keeps the first `max`, counts all. */
struct id_sink { int *ids; int max, n; };

static void sink_put(struct id_sink *s, int id) {
    if (s->n < s->max) s->ids[s->n] = id;
    s->n++;
}

/* BPE of one pre-token (raw UTF-8 bytes) into sink (sd-reference §1.4).
 * sym/rank are scratch of room len. */
static void bpe(struct sd_tokenizer *t, const unsigned char *b, size_t len, int *sym, struct id_sink *out) {
    size_t n = len;
    for (size_t i = 0; i + 1 < len; i++) sym[i] = t->byte_id[b[i]];
    sym[len - 1] = t->byte_id_end[b[len - 1]];
    while (n > 1) {
        /* The lowest-ranked adjacent pair ... */
        int best = -1, best_out = 0, a = 0, c = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int o, r = merge_find(t, sym[i], sym[i + 1], &o);
            if (r >= 0 && (best < 0 || r < best)) best = r, best_out = o, a = sym[i], c = sym[i + 1];
        }
        if (best < 0) break;
        /* ... merged at each non-overlapping occurrence, left to right. */
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && sym[i] == a && sym[i + 1] == c) sym[w++] = best_out, i++;
            else sym[w++] = sym[i];
        }
        n = w;
    }
    for (size_t i = 0; i < n; i++) sink_put(out, sym[i]);
}

/* Ensures t->scratch holds at least n uint32 values. */
static int scratch_need(struct sd_tokenizer *t, size_t n) {
    if (n <= t->scratch_cap && t->scratch) return SD_OK; /* allocated even for n = 0 (empty text): no NULL + 0 */
    size_t cap = n < 4096 ? 4096 : n + n / 2;
    uint32_t *p = realloc(t->scratch, cap * sizeof *p);
    if (!p) return sd_errorf(t->ctx, SD_ERR_NOMEM, "tokenizer: out of memory (%zu code points)", n);
    t->scratch = p, t->scratch_cap = cap;
    return SD_OK;
}

static int is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Normalises s[0..len) (step 2 of tokenizer.h). On success *out points into
 * t->scratch (valid until the next call) with *n code points. The stages use
 * consecutive regions of scratch: the cleaned text (CJK spaced) at 0, its NFC
 * after it, then the lowercased text. */
static int normalize(struct sd_tokenizer *t, const char *s, size_t len, const uint32_t **out, size_t *n) {
    enum { CJK_MARK = 0x80000000u };
    if (scratch_need(t, len) != SD_OK) return t->ctx->status;
    uint32_t *a = t->scratch;
    size_t na = sd_unicode_utf8_decode(s, len, a);
    /* BasicTokenizer._clean_text, marking CJK ideographs for spacing. */
    size_t nb = 0, ncjk = 0;
    for (size_t i = 0; i < na; i++) {
        uint32_t c = a[i];
        unsigned k = sd_unicode_class(c);
        if (c == '\t' || c == '\n' || c == '\r' || (k & SD_UC_ZS)) a[nb++] = ' ';
        else if (c == 0 || c == 0xFFFD || (k & SD_UC_OTHER)) continue;
        else if (is_cjk(c)) a[nb++] = c | CJK_MARK, ncjk++;
        else a[nb++] = c;
    }
    /* _tokenize_chinese_chars: " c " around each, expanded right to left. */
    size_t na2 = nb + 2 * ncjk;
    if (scratch_need(t, na2 * 5) != SD_OK) return t->ctx->status;
    a = t->scratch;
    for (size_t i = nb, w = na2; i-- > 0;) {
        uint32_t c = a[i];
        if (c & CJK_MARK) a[--w] = ' ', a[--w] = c & ~CJK_MARK, a[--w] = ' ';
        else a[--w] = c;
    }
    /* unicodedata.normalize("NFC"). */
    uint32_t *b = a + na2;
    size_t nc = sd_unicode_nfc(a, na2, b);
    /* whitespace_tokenize + " ".join: one space between words, none at the ends. */
    size_t w = 0;
    for (size_t i = 0; i < nc; i++) {
        if (sd_unicode_class(b[i]) & SD_UC_SPACE) {
            if (w > 0 && b[w - 1] != ' ') b[w++] = ' ';
        } else b[w++] = b[i];
    }
    if (w > 0 && b[w - 1] == ' ') w--;
    /* str.lower() (per word in the reference; the same on the joined text, as
     * a space is neither cased nor case-ignorable). */
    size_t off = na2 + w;
    if (scratch_need(t, off + 3 * w) != SD_OK) return t->ctx->status;
    b = t->scratch + na2;
    *n = sd_unicode_lower(b, w, t->scratch + off);
    *out = t->scratch + off;
    return SD_OK;
}

/* regex `\s` of the `regex` module: str.isspace() minus U+001C..U+001F. */
static int is_re_space(uint32_t c, unsigned k) { return (k & SD_UC_SPACE) && !(c >= 0x1C && c <= 0x1F); }

/* Case-insensitive match of ASCII lowercase literal lit at s[i..n), as the
 * `regex` module's IGNORECASE does ('s' also matches U+017F long s). */
static size_t match_ci(const uint32_t *s, size_t i, size_t n, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++) {
        if (i + k >= n) return 0;
        uint32_t c = s[i + k], l = (unsigned char)lit[k];
        if (!(c == l || (l >= 'a' && l <= 'z' && c == l - 32) || (l == 's' && c == 0x17F))) return 0;
    }
    return k;
}

/* Pre-tokenises s[0..n) (regex of §1.3) and BPE-encodes each pre-token. */
static int encode_normalized(struct sd_tokenizer *t, const uint32_t *s, size_t n, struct id_sink *out) {
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    char *bytes = NULL;
    int *sym = NULL;
    size_t cap = 0;
    int rc = SD_OK;
    if (!t->cache && !(t->cache = cache_new()))
        return sd_errorf(t->ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i];
        unsigned k = sd_unicode_class(c);
        size_t len = 0;
        if (is_re_space(c, k)) { i++; continue; }
        if (c == '<') len = match_ci(s, i, n, BOS_STR) ? strlen(BOS_STR) : match_ci(s, i, n, EOS_STR) ? strlen(EOS_STR) : 0;
        if (!len && c == '\'')
            for (size_t j = 0; j < sizeof contractions / sizeof *contractions && !len; j++)
                len = match_ci(s, i, n, contractions[j]);
        if (!len && (k & SD_UC_LETTER))
            while (i + len < n && (sd_unicode_class(s[i + len]) & SD_UC_LETTER)) len++;
        if (!len && (k & SD_UC_NUMBER)) len = 1;
        if (!len)
            for (len = 1; i + len < n; len++) {
                uint32_t d = s[i + len];
                unsigned kd = sd_unicode_class(d);
                if (is_re_space(d, kd) || (kd & (SD_UC_LETTER | SD_UC_NUMBER))) break;
            }
        /* The pre-token's UTF-8 bytes. */
        if (len * 4 > cap) {
            size_t nc = len * 4 < 256 ? 256 : len * 8;
            char *nb = realloc(bytes, nc);
            if (nb) bytes = nb;
            int *ns = nb ? realloc(sym, nc * sizeof *sym) : NULL;
            if (ns) sym = ns;
            if (!nb || !ns) { rc = sd_errorf(t->ctx, SD_ERR_NOMEM, "tokenizer: out of memory"); break; }
            cap = nc;
        }
        size_t nbytes = 0;
        for (size_t j = 0; j < len; j++) nbytes += (size_t)sd_unicode_utf8_encode(s[i + j], bytes + nbytes);
        i += len;
        /* The reference's cache is seeded with the two specials. */
        if (nbytes == strlen(BOS_STR) && memcmp(bytes, BOS_STR, nbytes) == 0) { sink_put(out, t->bos_id); continue; }
        if (nbytes == strlen(EOS_STR) && memcmp(bytes, EOS_STR, nbytes) == 0) { sink_put(out, t->eos_id); continue; }
        uint64_t h = hash_bytes(bytes, nbytes);
        const struct cache_entry *hit = cache_get(t->cache, bytes, (uint32_t)nbytes, h);
        if (hit) {
            for (uint32_t j = 0; j < hit->n_ids; j++) sink_put(out, t->cache->ids[hit->ids_off + j]);
            continue;
        }
        int start = out->n;
        bpe(t, (const unsigned char *)bytes, nbytes, sym, out);
        /* Cache only what the sink kept whole. */
        if (out->n <= out->max) cache_put(t->cache, bytes, (uint32_t)nbytes, h, out->ids + start, out->n - start);
    }
    free(bytes);
    free(sym);
    return rc;
}

/* Finds the leftmost special literal in s; returns its position (or NULL)
 * with its id in *id and length in *len. */
static const char *find_special(const struct sd_tokenizer *t, const char *s, int *id, size_t *len) {
    /* transformers' Trie.split: leftmost match first (none of these literals
     * overlaps another, so leftmost is all there is to it). */
    const char *lit[3] = {BOS_STR, EOS_STR, t->pad_split ? t->pad_token : NULL};
    const int lid[3] = {t->bos_id, t->eos_id, t->pad_id};
    const char *best = NULL;
    for (int i = 0; i < 3; i++) {
        const char *m = lit[i] ? strstr(s, lit[i]) : NULL;
        if (m && (!best || m < best)) best = m, *id = lid[i], *len = strlen(lit[i]);
    }
    return best;
}

static int encode_locked(struct sd_tokenizer *t, const char *text, int *ids, int max, int *n);

int sd_tokenizer_encode(struct sd_tokenizer *t, const char *text, int *ids, int max, int *n) {
    if (!text || (max > 0 && !ids)) return sd_errorf(t->ctx, SD_ERR_INVALID, "tokenizer: NULL text or ids");
    pthread_mutex_lock(&t->lock);
    int rc = encode_locked(t, text, ids, max, n);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

static int encode_locked(struct sd_tokenizer *t, const char *text, int *ids, int max, int *n) {
    struct id_sink out = {ids, max < 0 ? 0 : max, 0};
    int rc = SD_OK;
    const char *p = text;
    while (*p && rc == SD_OK) {
        int id = 0;
        size_t slen = 0;
        const char *sp = find_special(t, p, &id, &slen);
        size_t piece = sp ? (size_t)(sp - p) : strlen(p);
        if (piece) {
            const uint32_t *norm;
            size_t nn;
            rc = normalize(t, p, piece, &norm, &nn);
            if (rc == SD_OK) rc = encode_normalized(t, norm, nn, &out);
        }
        if (!sp) break;
        sink_put(&out, id);
        p = sp + slen;
    }
    if (n) *n = out.n;
    return rc;
}

int sd_tokenizer_encode_clip(struct sd_tokenizer *t, const char *text, int out[SD_TOKENIZER_CTX], int *n_tokens) {
    int n = 0;
    int rc = sd_tokenizer_encode(t, text, out + 1, SD_TOKENIZER_CTX - 2, &n);
    if (rc != SD_OK) return rc;
    int k = n < SD_TOKENIZER_CTX - 2 ? n : SD_TOKENIZER_CTX - 2;
    out[0] = t->bos_id;
    out[1 + k] = t->eos_id;
    for (int i = 2 + k; i < SD_TOKENIZER_CTX; i++) out[i] = t->pad_id;
    if (n_tokens) *n_tokens = n;
    return SD_OK;
}

char *sd_tokenizer_normalize(struct sd_tokenizer *t, const char *text) {
    const uint32_t *s;
    size_t n;
    if (!text) { sd_errorf(t->ctx, SD_ERR_INVALID, "tokenizer: NULL text"); return NULL; }
    pthread_mutex_lock(&t->lock);
    char *r = NULL;
    if (normalize(t, text, strlen(text), &s, &n) == SD_OK) {
        if ((r = malloc(n * 4 + 1))) {
            size_t w = 0;
            for (size_t i = 0; i < n; i++) w += (size_t)sd_unicode_utf8_encode(s[i], r + w);
            r[w] = 0;
        } else {
            sd_errorf(t->ctx, SD_ERR_NOMEM, "tokenizer: out of memory");
        }
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

const char *sd_tokenizer_token(const struct sd_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? tok_str(t, id) : NULL;
}

size_t sd_tokenizer_decode(const struct sd_tokenizer *t, const int *ids, int n, char *buf, size_t size) {
    unsigned char order[256];
    uint32_t cp[256];
    byte_tables(order, cp);
    unsigned char byte_of[0x144] = {0};
    for (int b = 0; b < 256; b++) byte_of[cp[b]] = (unsigned char)b;
    size_t w = 0;
    int last_space = 0;
    for (int i = 0; i < n; i++) {
        const char *s = sd_tokenizer_token(t, ids[i]);
        if (!s || ids[i] == t->bos_id || ids[i] == t->eos_id) continue;
        size_t len = strlen(s);
        int end = len >= 4 && memcmp(s + len - 4, "</w>", 4) == 0;
        uint32_t u[1024];
        size_t nu = len <= 1024 ? sd_unicode_utf8_decode(s, len - (end ? 4 : 0), u) : 0;
        for (size_t j = 0; j < nu; j++) {
            if (w + 1 < size) buf[w] = (char)(u[j] < 0x144 ? byte_of[u[j]] : '?');
            w++;
        }
        if (end) {
            if (w + 1 < size) buf[w] = ' ';
            w++;
        }
        last_space = end;
    }
    if (last_space) w--; /* the reference strips the final "</w>" space */
    if (size) buf[w < size ? w : size - 1] = 0;
    return w;
}
