/* test_safetensors.c - the safetensors reader and writer: round trip of every
 * loadable dtype (exact bits), metadata, each validation error (message
 * names the problem, the tensor and the file), truncations and random byte
 * flips (never a crash), and the writer's atomicity. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"

static struct sd_ctx ctx;
static char dir[64];

static char *path_in(const char *name) {
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*len ? *len : 1);
    if (fread(b, 1, *len, fp) != *len) *len = 0;
    fclose(fp);
    return b;
}

/* An exact-size buffer: 8-byte length, header, data. */
static unsigned char *raw_file(const char *header, const void *data, size_t dlen, size_t *len) {
    size_t h = strlen(header);
    *len = 8 + h + dlen;
    unsigned char *b = malloc(*len);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)h >> (8 * k));
    memcpy(b + 8, header, h);
    if (dlen) memcpy(b + 8 + h, data, dlen);
    return b;
}

/* Opens header+data from memory as "bad.safetensors"; true when it fails with
 * SD_ERR_FORMAT and the message holds every string in want (NULL-ended). */
static int open_fails(const char *header, size_t dlen, const char *const *want) {
    static unsigned char zeros[4096];
    size_t len;
    unsigned char *b = raw_file(header, zeros, dlen, &len);
    struct sd_st_file *f = (struct sd_st_file *)1;
    sd_ctx_clear(&ctx);
    int rc = sd_st_open_memory(&ctx, "bad.safetensors", b, len, &f);
    int ok = rc == SD_ERR_FORMAT && f == NULL && strstr(ctx.msg, "bad.safetensors");
    for (int k = 0; ok && want[k]; k++) ok = strstr(ctx.msg, want[k]) != NULL;
    if (!ok) printf("  rc %d msg \"%s\" (wanted \"%s\"...)\n", rc, ctx.msg, want[0]);
    if (rc == SD_OK) sd_st_close(f);
    free(b);
    return ok;
}
#define BAD(header, dlen, ...) open_fails(header, dlen, (const char *const[]){__VA_ARGS__, NULL})

/* Independent half decoding (double arithmetic). */
static double ref_f16(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static const uint16_t f16_bits[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xc000, 0x7bff,
                                    0x7c00, 0xfc00, 0x7e00, 0x3555, 0x8001};
static const uint16_t bf16_bits[] = {0x3f80, 0xc0a0, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x8000, 0x4049};
#define NF16 (int)(sizeof f16_bits / sizeof f16_bits[0])
#define NBF16 (int)(sizeof bf16_bits / sizeof bf16_bits[0])

/* Writes a file with every loadable dtype, a scalar and an empty tensor. */
static int write_sample(const char *path) {
    static float f32[6];
    static const int32_t i32[3] = {-1, 0, INT32_MAX};
    static const int64_t i64[2] = {INT64_MIN, 1234567890123LL};
    static const float scalar = 2.5f;
    uint32_t bits[6] = {0x3f800000, 0x80000000, 0x00000001, 0x7f800000, 0x7fc00001, 0xc2f6e979};
    memcpy(f32, bits, sizeof f32);
    struct sd_st_tensor ts[] = {
        {.name = "h", .type = SD_F16, .n_dims = 1, .shape = {NF16}, .nbytes = sizeof f16_bits, .data = f16_bits},
        {.name = "w.f32", .type = SD_F32, .n_dims = 2, .shape = {2, 3}, .nbytes = sizeof f32, .data = f32},
        {.name = "b", .type = SD_BF16, .n_dims = 2, .shape = {2, NBF16 / 2}, .nbytes = sizeof bf16_bits,
         .data = bf16_bits},
        {.name = "i", .type = SD_I32, .n_dims = 1, .shape = {3}, .nbytes = sizeof i32, .data = i32},
        {.name = "l", .type = SD_I64, .n_dims = 1, .shape = {2}, .nbytes = sizeof i64, .data = i64},
        {.name = "s", .type = SD_F32, .n_dims = 0, .nbytes = 4, .data = &scalar},
        {.name = "empty", .type = SD_F16, .n_dims = 2, .shape = {0, 4}, .nbytes = 0, .data = NULL},
        {.name = "q\"uote\\d \xc3\xbc", .type = SD_F32, .n_dims = 1, .shape = {1}, .nbytes = 4, .data = &scalar},
    };
    const char *meta[] = {"format", "pt", "note", "line\nbreak \"q\" \xc3\xbc", NULL};
    return sd_st_write(&ctx, path, ts, (int)(sizeof ts / sizeof ts[0]), meta);
}

static void test_roundtrip(void) {
    const char *p = path_in("sample.safetensors");
    int rc = write_sample(p);
    CHECK(rc == SD_OK, "writer writes every loadable dtype (%s)", ctx.msg);
    struct sd_st_file *f = NULL;
    rc = sd_st_open(&ctx, p, &f);
    CHECK(rc == SD_OK && f && f->n_tensors == 8, "file reads back with 8 tensors (%s)", ctx.msg);
    if (!f) return;
    const char *order[] = {"h", "w.f32", "b", "i", "l", "s", "empty", "q\"uote\\d \xc3\xbc"};
    int ord = 1;
    for (int k = 0; k < 8; k++) ord &= strcmp(f->tensors[k].name, order[k]) == 0;
    CHECK(ord, "tensors keep the header order");
    const struct sd_st_tensor *h = sd_st_find(f, "h"), *w = sd_st_find(f, "w.f32"), *b = sd_st_find(f, "b"),
                              *i = sd_st_find(f, "i"), *l = sd_st_find(f, "l"), *s = sd_st_find(f, "s"),
                              *e = sd_st_find(f, "empty");
    CHECK(h && h->type == SD_F16 && !strcmp(h->dtype, "F16") && h->n_dims == 1 && h->shape[0] == NF16 &&
              h->nbytes == sizeof f16_bits && memcmp(h->data, f16_bits, sizeof f16_bits) == 0,
          "F16 bits exact (subnormals, inf, nan)");
    uint32_t want[6] = {0x3f800000, 0x80000000, 0x00000001, 0x7f800000, 0x7fc00001, 0xc2f6e979};
    CHECK(w && w->type == SD_F32 && w->n_dims == 2 && w->shape[0] == 2 && w->shape[1] == 3 &&
              memcmp(w->data, want, sizeof want) == 0, "F32 bits exact (-0, denormal, inf, nan payload)");
    CHECK(b && b->type == SD_BF16 && b->shape[1] == NBF16 / 2 && memcmp(b->data, bf16_bits, sizeof bf16_bits) == 0,
          "BF16 bits exact");
    CHECK(i && i->type == SD_I32 && ((const int32_t *)i->data)[2] == INT32_MAX && ((const int32_t *)i->data)[0] == -1,
          "I32 exact");
    CHECK(l && l->type == SD_I64 && ((const int64_t *)l->data)[0] == INT64_MIN &&
              ((const int64_t *)l->data)[1] == 1234567890123LL, "I64 exact");
    CHECK(s && s->n_dims == 0 && s->nbytes == 4 && *(const float *)s->data == 2.5f, "0-dim scalar");
    CHECK(e && e->nbytes == 0 && e->shape[0] == 0 && e->shape[1] == 4, "empty [0, 4] tensor");
    CHECK(sd_st_find(f, "q\"uote\\d \xc3\xbc") != NULL, "name with quote, backslash and UTF-8 escapes round-trips");
    int aligned = 1;
    for (int k = 0; k < f->n_tensors; k++)
        if (f->tensors[k].nbytes && (uintptr_t)f->tensors[k].data % sd_st_dtype_size(f->tensors[k].dtype)) aligned = 0;
    CHECK(aligned && f->data_start % 8 == 0, "writer aligns every tensor to its element size");
    CHECK(sd_st_metadata(f, "format") && !strcmp(sd_st_metadata(f, "format"), "pt") &&
              !strcmp(sd_st_metadata(f, "note"), "line\nbreak \"q\" \xc3\xbc") && !sd_st_metadata(f, "nope") &&
              sd_json_len(f->metadata) == 2, "metadata round-trips");
    /* Independent decode of the f16 and bf16 values. */
    int bad = 0;
    for (int k = 0; k < NF16; k++) {
        double r = ref_f16(f16_bits[k]);
        float g = sd_f16_to_f32(((const uint16_t *)h->data)[k]);
        if (isnan(r) ? !isnan(g) : (double)g != r || !signbit(g) != !signbit(r)) bad++;
    }
    CHECK(bad == 0, "f16 values decode exactly (%d bad)", bad);
    const float bf_ref[NBF16] = {1.0f, -5.0f, INFINITY, -INFINITY, NAN, 9.18354962e-41f, -0.0f, 3.140625f};
    bad = 0;
    for (int k = 0; k < NBF16; k++) {
        float g = sd_bf16_to_f32(((const uint16_t *)b->data)[k]);
        if (isnan(bf_ref[k]) ? !isnan(g) : g != bf_ref[k] || !signbit(g) != !signbit(bf_ref[k])) bad++;
    }
    CHECK(bad == 0, "bf16 values decode exactly (%d bad)", bad);
    /* The reference count keeps the mapping alive. */
    sd_st_ref(f);
    sd_st_close(f);
    CHECK(((const uint16_t *)sd_st_find(f, "h")->data)[5] == 0x3c00, "data readable while a reference remains");
    sd_st_close(f);
    sd_st_close(NULL);
}

static void test_errors(void) {
    struct sd_st_file *f = NULL;
    unsigned char five[5] = {0};
    sd_ctx_clear(&ctx);
    CHECK(sd_st_open_memory(&ctx, "bad.safetensors", five, 5, &f) == SD_ERR_FORMAT &&
              strstr(ctx.msg, "bad.safetensors: file is 5 bytes, too short"), "5-byte file: %s", ctx.msg);
    unsigned char hdr[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(sd_st_open_memory(&ctx, "bad.safetensors", hdr, 16, &f) == SD_ERR_FORMAT &&
              strstr(ctx.msg, "header length 100 runs past the end of the 16-byte file"), "header past end: %s", ctx.msg);
    unsigned char huge[16] = {0, 0, 0, 0, 0, 1, 0, 0};
    CHECK(sd_st_open_memory(&ctx, "bad.safetensors", huge, 16, &f) == SD_ERR_FORMAT && strstr(ctx.msg, "absurd"),
          "absurd header length: %s", ctx.msg);
    CHECK(BAD("{\"a\": {", 0, "bad header", "json: string or '}' expected at byte 7 (end of input)"), "malformed JSON");
    CHECK(BAD("[1, 2]", 0, "header is an array, not a JSON object"), "header not an object");
    CHECK(BAD("{\"w\": 5}", 0, "tensor 'w': entry is a number, not an object"), "entry not an object");
    CHECK(BAD("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "tensor 'w': missing \"dtype\""), "no dtype");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "tensor 'w': missing \"shape\""), "no shape");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "tensor 'w': missing \"data_offsets\""),
          "no data_offsets");
    CHECK(BAD("{\"w\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': \"dtype\" is a number, not a string"), "dtype not a string");
    CHECK(BAD("{\"ok\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
              " \"w\": {\"dtype\": \"Q4_K\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
              "tensor 'w': unknown dtype 'Q4_K'"), "unknown dtype");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': \"shape\" is a number, not an array"), "shape not an array");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': shape[1] = -1 is not a non-negative integer"), "negative dim");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': shape[0] = 2.5 is not a non-negative integer"), "fractional dim");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1e0], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': shape[0] = 1 is not a non-negative integer"), "dim in exponent form");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [\"3\"], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': shape[0] is a string, not an integer"), "string dim");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': shape has 9 dims (at most 8 supported)"), "9 dims");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 8], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': shape [4611686018427387904, 8] overflows"), "shape product overflow");
    CHECK(BAD("{\"w\": {\"dtype\": \"F16\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", 4,
              "tensor 'w': shape [4294967296, 4294967296] overflows"), "shape product overflow (2^64)");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
              "tensor 'w': \"data_offsets\" is not [begin, end]"), "one offset");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
              "tensor 'w': \"data_offsets\" is not [begin, end]"), "negative offset");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, \"4\"]}}", 4,
              "tensor 'w': \"data_offsets\" is not [begin, end]"), "string offset");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
              "tensor 'w': data_offsets [8, 4] are not inside the data section (8 bytes)"), "begin > end");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 6,
              "tensor 'w': data_offsets [4, 8] are not inside the data section (6 bytes)"), "end past the data");
    CHECK(BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 8,
              "tensor 'w': data_offsets [0, 4] hold 4 bytes but shape [2] of F32 needs 8"), "size mismatch");
    CHECK(BAD("{\"w\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}}", 8,
              "tensor 'w': shape [3] of F4 is not a whole number of bytes"), "odd count of 4-bit values");
    CHECK(BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
              " \"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [12, 16]},"
              " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [6, 10]}}", 16,
              "tensors 'a' [0, 8) and 'b' [6, 10) overlap"), "overlapping tensors");
    CHECK(BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
              " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
              "duplicate key \"a\""), "duplicate names");
    CHECK(BAD("{\"__metadata__\": [1]}", 0, "\"__metadata__\" is an array, not an object"), "metadata not an object");
    CHECK(BAD("{\"__metadata__\": {\"epoch\": 3}}", 0, "\"__metadata__\" value of 'epoch' is a number, not a string"),
          "metadata value not a string");
    CHECK(BAD("{\"a\\u0000b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
              "NUL byte in object key not supported near '\"a\\u0000b\"' at byte 1"), "tensor name with NUL (jansson refuses it)");
    /* Empty header and zero tensors are valid; gaps and trailing bytes too. */
    size_t len;
    unsigned char *b = raw_file("{\"x\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [6, 8]}}  ",
                                "\0\0\0\0\0\0\x00\x3c\xff", 9, &len);
    sd_ctx_clear(&ctx);
    int rc = sd_st_open_memory(&ctx, "gap.safetensors", b, len, &f);
    uint16_t x = 0;
    if (rc == SD_OK) memcpy(&x, f->tensors[0].data, 2);
    CHECK(rc == SD_OK && f->n_tensors == 1 && x == 0x3c00,
          "gaps, trailing bytes and header padding are accepted (%s)", ctx.msg);
    sd_st_close(f);
    free(b);
    b = raw_file("{}", NULL, 0, &len);
    rc = sd_st_open_memory(&ctx, "empty.safetensors", b, len, &f);
    CHECK(rc == SD_OK && f->n_tensors == 0 && !sd_st_find(f, "x"), "empty header is a valid file");
    sd_st_close(f);
    free(b);
    /* File-level errors. */
    rc = sd_st_open(&ctx, path_in("does-not-exist.safetensors"), &f);
    CHECK(rc == SD_ERR_IO && f == NULL && strstr(ctx.msg, "does-not-exist.safetensors: cannot open"),
          "missing file: %s", ctx.msg);
    rc = sd_st_open(&ctx, dir, &f);
    CHECK(rc == SD_ERR_IO && strstr(ctx.msg, "not a regular file"), "directory: %s", ctx.msg);
    FILE *fp = fopen(path_in("zero.safetensors"), "wb");
    fclose(fp);
    rc = sd_st_open(&ctx, path_in("zero.safetensors"), &f);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "zero.safetensors: file is 0 bytes"), "empty file: %s", ctx.msg);
}

static void test_unsupported(void) {
    const char *hdr = "{\"d\": {\"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [0, 16]},"
                      " \"u\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [16, 19]},"
                      " \"e\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [19, 20]},"
                      " \"ok\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [20, 24]}}";
    unsigned char data[24] = {0};
    size_t len;
    unsigned char *b = raw_file(hdr, data, sizeof data, &len);
    struct sd_st_file *f = NULL;
    sd_ctx_clear(&ctx);
    int rc = sd_st_open_memory(&ctx, "mixed.safetensors", b, len, &f);
    CHECK(rc == SD_OK && f->n_tensors == 4, "known but unsupported dtypes open (%s)", ctx.msg);
    if (!f) return;
    const struct sd_st_tensor *d = sd_st_find(f, "d");
    CHECK(d && d->type == SD_DTYPE_COUNT && !strcmp(d->dtype, "F64") && d->nbytes == 16, "F64 tensor listed");
    CHECK(!sd_st_require(&ctx, f, "d") && ctx.status == SD_ERR_UNSUPPORTED &&
              strstr(ctx.msg, "tensor 'd' in mixed.safetensors has unsupported dtype F64"), "requesting F64: %s", ctx.msg);
    CHECK(!sd_st_require(&ctx, f, "e") && strstr(ctx.msg, "unsupported dtype F8_E4M3"), "requesting F8: %s", ctx.msg);
    CHECK(!sd_st_require(&ctx, f, "zz") && strstr(ctx.msg, "missing tensor 'zz' in mixed.safetensors"),
          "requesting a missing tensor: %s", ctx.msg);
    CHECK(sd_st_require(&ctx, f, "ok") == sd_st_find(f, "ok"), "requesting a loadable tensor");
    sd_st_close(f);
    free(b);
}

static void test_many(void) {
    enum { N = 3000 };
    struct sd_st_tensor *ts = calloc(N, sizeof *ts);
    char(*names)[48] = malloc(N * sizeof *names);
    float *vals = malloc(N * sizeof *vals);
    for (int k = 0; k < N; k++) {
        snprintf(names[k], sizeof names[k], "down_blocks.%d.resnets.%d.conv%d.weight", k / 100, k % 100, k % 3);
        vals[k] = (float)k;
        ts[k] = (struct sd_st_tensor){.name = names[k], .type = SD_F32, .n_dims = 1, .shape = {1}, .nbytes = 4,
                                      .data = &vals[k]};
    }
    const char *p = path_in("many.safetensors");
    int rc = sd_st_write(&ctx, p, ts, N, NULL);
    struct sd_st_file *f = NULL;
    if (rc == SD_OK) rc = sd_st_open(&ctx, p, &f);
    int bad = 0;
    double t0 = sd_time_s();
    for (int k = 0; k < N && f; k++) {
        const struct sd_st_tensor *t = sd_st_find(f, names[k]);
        if (!t || *(const float *)t->data != (float)k) bad++;
    }
    double us = (sd_time_s() - t0) * 1e6 / N;
    CHECK(rc == SD_OK && f && f->n_tensors == N && bad == 0 && !sd_st_find(f, "down_blocks.0.resnets.0.conv0.bias") &&
              !f->metadata, "3000 tensors found by name (%.2f us per lookup)", us);
    sd_st_close(f);
    free(ts);
    free(names);
    free(vals);
}

/* Opens buf; if valid, touches every byte of every tensor and checks bounds. */
static int open_and_touch(const unsigned char *buf, size_t len, unsigned *sum) {
    struct sd_st_file *f = NULL;
    if (sd_st_open_memory(&ctx, "mut.safetensors", buf, len, &f) != SD_OK) return ctx.msg[0] ? 0 : -1;
    int ok = 1;
    for (int k = 0; k < f->n_tensors; k++) {
        const struct sd_st_tensor *t = &f->tensors[k];
        const unsigned char *d = t->data;
        if (d < buf + f->data_start || d + t->nbytes > buf + len) ok = 0;
        for (size_t j = 0; j < t->nbytes; j++) *sum += d[j];
        if (sd_st_find(f, t->name) != t) ok = 0;
    }
    sd_st_close(f);
    return ok ? 1 : -1;
}

static void test_mutations(void) {
    size_t len;
    unsigned char *orig = read_file(path_in("sample.safetensors"), &len);
    CHECK(orig && len > 100, "sample file read back (%zu bytes)", len);
    if (!orig) return;
    /* Every truncation fails cleanly (exact-size copies so ASan sees overreads). */
    int bad = 0;
    unsigned sum = 0;
    for (size_t n = 0; n < len; n++) {
        unsigned char *c = malloc(n ? n : 1);
        memcpy(c, orig, n);
        if (open_and_touch(c, n, &sum) != 0) bad++;
        free(c);
    }
    CHECK(bad == 0, "all %zu truncations of a valid file are rejected with a message", len);
    FILE *fp = fopen(path_in("trunc.safetensors"), "wb");
    fwrite(orig, 1, len - 3, fp);
    fclose(fp);
    struct sd_st_file *f = NULL;
    int rc = sd_st_open(&ctx, path_in("trunc.safetensors"), &f);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "trunc.safetensors: tensor '") &&
              strstr(ctx.msg, "not inside the data section"), "truncated file on disk: %s", ctx.msg);
    /* Random byte mutations: never a crash, never a tensor outside the buffer. */
    int n_mut = getenv("SDRT_TEST_SAN") ? 3000 : 5000, opened = 0, failed = 0;
    bad = 0;
    uint64_t s = 0x1234567;
    unsigned char *c = malloc(len);
    for (int it = 0; it < n_mut; it++) {
        memcpy(c, orig, len);
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        int nflips = 1 + (int)(s % 4);
        for (int k = 0; k < nflips; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            /* Mostly the header, where the checks are. */
            size_t at = (s >> 8) % (it % 4 ? (len < 400 ? len : 400) : len);
            c[at] = (s >> 32) % 2 ? (unsigned char)(s >> 40) : (unsigned char)(c[at] ^ (1u << ((s >> 40) % 8)));
        }
        int r = open_and_touch(c, len, &sum);
        if (r < 0) bad++;
        else if (r) opened++;
        else failed++;
    }
    free(c);
    CHECK(bad == 0 && opened > 0 && failed > 0,
          "%d random mutations: %d opened (data in bounds), %d rejected with a message", n_mut, opened, failed);
    free(orig);
}

static int count_dir(const char *d) {
    DIR *dp = opendir(d);
    int n = 0;
    if (!dp) return -1;
    for (struct dirent *e; (e = readdir(dp));) n += e->d_name[0] != '.';
    closedir(dp);
    return n;
}

static void test_writer_atomic(void) {
    float v = 1.0f;
    struct sd_st_tensor t = {.name = "x", .type = SD_F32, .n_dims = 1, .shape = {1}, .nbytes = 4, .data = &v};
    /* Rename fails (target is a non-empty directory) after the data is written. */
    char *target = path_in("adir");
    mkdir(target, 0755);
    FILE *fp = fopen(path_in("adir/keep"), "wb");
    fclose(fp);
    int before = count_dir(dir);
    int rc = sd_st_write(&ctx, target, &t, 1, NULL);
    struct stat st;
    CHECK(rc == SD_ERR_IO && strstr(ctx.msg, "cannot rename") && stat(path_in("adir.tmp"), &st) != 0 &&
              count_dir(dir) == before && count_dir(target) == 1, "failed rename leaves nothing behind: %s", ctx.msg);
    rc = sd_st_write(&ctx, path_in("no/such/dir/x.safetensors"), &t, 1, NULL);
    CHECK(rc == SD_ERR_IO && strstr(ctx.msg, "cannot create") && strstr(ctx.msg, "x.safetensors.tmp") &&
              count_dir(dir) == before, "unwritable directory fails cleanly: %s", ctx.msg);
    struct sd_st_tensor badname = t;
    badname.name = "x\xff";
    rc = sd_st_write(&ctx, path_in("badname.safetensors"), &badname, 1, NULL);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "is not valid UTF-8") && stat(path_in("badname.safetensors"), &st) != 0,
          "a tensor name that is not UTF-8 is refused: %s", ctx.msg);
    /* Invalid input never touches an existing file. */
    const char *p = path_in("keep.safetensors");
    rc = sd_st_write(&ctx, p, &t, 1, NULL);
    size_t n0, n1;
    unsigned char *b0 = read_file(p, &n0);
    struct sd_st_tensor bad = t;
    bad.nbytes = 8;
    int rc2 = sd_st_write(&ctx, p, &bad, 1, NULL);
    unsigned char *b1 = read_file(p, &n1);
    CHECK(rc == SD_OK && rc2 == SD_ERR_INVALID && strstr(ctx.msg, "tensor 'x': 8 bytes do not match shape [1] of F32") &&
              n0 == n1 && memcmp(b0, b1, n0) == 0 && stat(path_in("keep.safetensors.tmp"), &st) != 0,
          "invalid tensor rejected, existing file untouched: %s", ctx.msg);
    free(b1);
    struct sd_st_tensor dup[2] = {t, t};
    rc = sd_st_write(&ctx, p, dup, 2, NULL);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "duplicate tensor name 'x'"), "duplicate names rejected: %s", ctx.msg);
    struct sd_st_tensor reserved = t;
    reserved.name = "__metadata__";
    rc = sd_st_write(&ctx, p, &reserved, 1, NULL);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "__metadata__"), "reserved name rejected: %s", ctx.msg);
    /* Overwriting works and replaces the content. */
    v = 3.0f;
    rc = sd_st_write(&ctx, p, &t, 1, (const char *const[]){"k", "v", NULL});
    struct sd_st_file *f = NULL;
    if (rc == SD_OK) rc = sd_st_open(&ctx, p, &f);
    CHECK(rc == SD_OK && *(const float *)sd_st_find(f, "x")->data == 3.0f && !strcmp(sd_st_metadata(f, "k"), "v") &&
              stat(path_in("keep.safetensors.tmp"), &st) != 0, "overwrite replaces the file atomically");
    sd_st_close(f);
    free(b0);
}

static void cleanup(const char *d) {
    DIR *dp = opendir(d);
    if (!dp) return;
    for (struct dirent *e; (e = readdir(dp));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) cleanup(p);
        else unlink(p);
    }
    closedir(dp);
    rmdir(d);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sdrt_test_st_XXXXXX");
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    test_roundtrip();
    test_errors();
    test_unsupported();
    test_many();
    test_mutations();
    test_writer_atomic();
    cleanup(dir);
    return test_summary();
}
