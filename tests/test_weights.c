/* test_weights.c - the weights container: prefix strip + rename, lazy f16/bf16
 * conversion against an independent decoder, zero-copy F32, misaligned F32,
 * shape-mismatch / missing / unsupported errors, slices, added tensors,
 * name clashes, the file mapping outliving its opener, and deferred mode
 * (no f32 bytes until materialised; read_f32 gives the same values). */
#include <unistd.h>

#include "test.h"
#include "weights.h"

static struct sd_ctx ctx;
static char path[64];

static double ref_f16(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double ref_bf16(uint16_t h) {
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
    return s ? -v : v;
}

/* Finite random halves / bfloats (no inf or nan: compared with check_close). */
static void fill_bits(uint16_t *x, int64_t n, uint64_t seed, int bf) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t k = 0; k < n; k++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint16_t v = (uint16_t)(s >> 24);
        if (!bf && ((v >> 10) & 31) == 31) v &= 0xbfff;
        if (bf && ((v >> 7) & 255) == 255) v &= 0xbfff;
        x[k] = v;
    }
}

enum { BIG_ROWS = 640, BIG_COLS = 1000 }; /* 1.25 MB of f16: exercises the madvise paths */

static uint16_t conv_w[4 * 2 * 3 * 3], te_b[8], big[BIG_ROWS * BIG_COLS];
static float vae_w[4] = {1, 2, 3, 4}, in_proj[6 * 2] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, skip[1] = {9};
static int64_t ids[3] = {0, 76, -5};
static double f64[2] = {1, 2};

static int write_model(void) {
    fill_bits(conv_w, 72, 1, 0);
    fill_bits(te_b, 8, 2, 1);
    fill_bits(big, BIG_ROWS * BIG_COLS, 3, 0);
    struct sd_st_tensor ts[] = {
        {.name = "model.diffusion_model.input_blocks.0.0.weight", .type = SD_F16, .n_dims = 4, .shape = {4, 2, 3, 3},
         .nbytes = sizeof conv_w, .data = conv_w},
        {.name = "model.diffusion_model.time_embed.0.bias", .type = SD_BF16, .n_dims = 1, .shape = {8},
         .nbytes = sizeof te_b, .data = te_b},
        {.name = "first_stage_model.decoder.conv.weight", .type = SD_F32, .n_dims = 2, .shape = {2, 2},
         .nbytes = sizeof vae_w, .data = vae_w},
        {.name = "model.diffusion_model.skip_me", .type = SD_F32, .n_dims = 1, .shape = {1}, .nbytes = 4, .data = skip},
        {.name = "model.diffusion_model.big", .type = SD_F16, .n_dims = 2, .shape = {BIG_ROWS, BIG_COLS},
         .nbytes = sizeof big, .data = big},
        {.name = "model.diffusion_model.in_proj_weight", .type = SD_F32, .n_dims = 2, .shape = {6, 2},
         .nbytes = sizeof in_proj, .data = in_proj},
        {.name = "model.diffusion_model.position_ids", .type = SD_I64, .n_dims = 2, .shape = {1, 3},
         .nbytes = sizeof ids, .data = ids},
        {.name = "model.diffusion_model.f64", .type = SD_DTYPE_COUNT, .dtype = "F64", .n_dims = 1, .shape = {2},
         .nbytes = sizeof f64, .data = f64},
        {.name = "model.diffusion_model.five", .type = SD_F32, .n_dims = 5, .shape = {1, 1, 1, 1, 1}, .nbytes = 4,
         .data = skip},
    };
    return sd_st_write(&ctx, path, ts, (int)(sizeof ts / sizeof ts[0]), NULL);
}

/* LDM -> diffusers style renames for the test: one rename, one skip. */
static const char *rename_cb(const char *name, char *buf, size_t size, void *user) {
    (*(int *)user)++;
    if (!strcmp(name, "skip_me")) return NULL;
    if (!strcmp(name, "time_embed.0.bias")) return "time_embedding.linear_1.bias";
    if (!strcmp(name, "input_blocks.0.0.weight")) {
        snprintf(buf, size, "conv_in.weight");
        return buf;
    }
    return name;
}

static int all_equal(const float *got, const double *ref, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if ((double)got[k] != ref[k]) return 0;
    return 1;
}

static void test_load(void) {
    int rc = write_model();
    struct sd_st_file *f = NULL;
    if (rc == SD_OK) rc = sd_st_open(&ctx, path, &f);
    CHECK(rc == SD_OK, "model file written and opened (%s)", ctx.msg);
    if (rc) return;
    struct sd_weights *w = sd_weights_new(&ctx);
    int calls = 0;
    rc = sd_weights_add_file(w, f, "model.diffusion_model.", rename_cb, &calls);
    const struct sd_st_tensor *st_big = sd_st_find(f, "model.diffusion_model.big"),
                              *st_proj = sd_st_find(f, "model.diffusion_model.in_proj_weight");
    sd_st_close(f); /* w holds its own reference */
    CHECK(rc == SD_OK && calls == 8 && sd_weights_count(w) == 7,
          "prefix keeps 8 of 9 tensors, rename skips one: %d tensors (%s)", sd_weights_count(w), ctx.msg);
    int used0 = 0;
    for (int k = 0; k < sd_weights_count(w); k++) used0 += sd_weights_used(w, k);
    CHECK(sd_weights_nbytes(w) == 0 && used0 == 0 && !strcmp(sd_weights_name(w, 0), "conv_in.weight") &&
              !sd_weights_name(w, 7), "nothing loaded or used before the first get");
    int64_t dims[8];
    CHECK(sd_weights_shape(w, "conv_in.weight", dims) == 4 && dims[1] == 2 && sd_weights_shape(w, "nope", dims) == -1,
          "shape query without loading");
    int64_t want_params = 72 + 8 + BIG_ROWS * BIG_COLS + 12 + 3 + 2 + 1;
    CHECK(sd_weights_n_params(w) == want_params, "parameter count %lld", (long long)sd_weights_n_params(w));

    struct sd_tensor *t = sd_weights_get(w, "conv_in.weight", 4, (int64_t[]){4, 2, 3, 3});
    double ref[72];
    for (int k = 0; k < 72; k++) ref[k] = ref_f16(conv_w[k]);
    CHECK(t && t->type == SD_F32 && t->flags == SD_TF_WEIGHT && t->index == -1 && t->n_dims == 4 && t->ne[0] == 4 &&
              t->ne[1] == 2 && t->ne[3] == 3 && all_equal(t->data, ref, 72) && !strcmp(t->name, "conv_in.weight"),
          "renamed f16 conv weight converts exactly (%s)", ctx.msg);
    CHECK(sd_weights_get(w, "conv_in.weight", 4, (int64_t[]){-1, 2, -1, 3}) == t, "-1 dims match anything");
    CHECK(!sd_weights_get(w, "conv_in.weight", 4, (int64_t[]){4, 9, 3, 3}) &&
              strstr(ctx.msg, "tensor 'conv_in.weight' in ") && strstr(ctx.msg, "prefix 'model.diffusion_model.'") &&
              strstr(ctx.msg, "has shape [4, 2, 3, 3], expected [4, 9, 3, 3]"), "shape mismatch: %s", ctx.msg);
    CHECK(!sd_weights_get(w, "conv_in.weight", 2, (int64_t[]){4, -1}) &&
              strstr(ctx.msg, "has shape [4, 2, 3, 3], expected [4, *]"), "rank mismatch: %s", ctx.msg);
    CHECK(!sd_weights_get(w, "conv_in.bias", 1, (int64_t[]){4}) &&
              strstr(ctx.msg, "missing tensor 'conv_in.bias' in ") && strstr(ctx.msg, "model.safetensors"),
          "missing tensor: %s", ctx.msg);
    CHECK(!sd_weights_find(w, "skip_me") && !sd_weights_find(w, "input_blocks.0.0.weight") &&
              !sd_weights_find(w, "time_embed.0.bias") && !sd_weights_find(w, "decoder.conv.weight"),
          "skipped, renamed-away and other-prefix names are absent");

    t = sd_weights_get(w, "time_embedding.linear_1.bias", 1, (int64_t[]){8});
    for (int k = 0; k < 8; k++) ref[k] = ref_bf16(te_b[k]);
    CHECK(t && all_equal(t->data, ref, 8), "bf16 bias converts exactly");

    t = sd_weights_get(w, "big", 2, (int64_t[]){BIG_ROWS, BIG_COLS});
    int bad = 0;
    for (int64_t k = 0; t && k < BIG_ROWS * BIG_COLS; k++)
        if ((double)((float *)t->data)[k] != ref_f16(big[k])) bad++;
    CHECK(t && bad == 0 && (uintptr_t)t->data % 64 == 0, "1.25 MB f16 tensor converts exactly into aligned memory");
    /* The source pages were dropped (madvise); the mapping still reads right. */
    CHECK(memcmp(st_big->data, big, sizeof big) == 0, "mapping still reads the f16 source after conversion");

    t = sd_weights_get(w, "in_proj_weight", 2, (int64_t[]){6, 2});
    CHECK(t && t->data == st_proj->data && ((float *)t->data)[11] == 11.0f, "aligned F32 is used in place (zero copy)");
    t = sd_weights_get(w, "position_ids", 2, (int64_t[]){1, 3});
    CHECK(t && ((float *)t->data)[1] == 76.0f && ((float *)t->data)[2] == -5.0f, "I64 converts to f32");
    CHECK(!sd_weights_get(w, "f64", 1, (int64_t[]){2}) && ctx.status == SD_ERR_UNSUPPORTED &&
              strstr(ctx.msg, "tensor 'f64' in ") && strstr(ctx.msg, "unsupported dtype F64"),
          "F64 fails only when asked for: %s", ctx.msg);
    CHECK(!sd_weights_get(w, "five", -1, NULL) && strstr(ctx.msg, "tensor 'five' in ") &&
              strstr(ctx.msg, "has 5 dims"), "5-dim tensor fails only when asked for: %s", ctx.msg);
    CHECK(sd_weights_load_all(w) == SD_ERR_UNSUPPORTED, "load_all reports the unsupported tensor");

    /* Slices: q, k, v rows of in_proj_weight, aliasing it. */
    struct sd_tensor *q = sd_weights_add_slice(w, "q.weight", "in_proj_weight", 0, 2),
                     *k = sd_weights_add_slice(w, "k.weight", "in_proj_weight", 2, 4),
                     *v = sd_weights_add_slice(w, "v.weight", "in_proj_weight", 4, 6);
    CHECK(q && k && v && q->ne[2] == 2 && q->ne[3] == 2 && ((float *)q->data)[0] == 0.0f &&
              ((float *)k->data)[0] == 4.0f && ((float *)v->data)[3] == 11.0f &&
              sd_weights_get(w, "k.weight", 2, (int64_t[]){2, 2}) == k, "q/k/v slices of in_proj (%s)", ctx.msg);
    CHECK(!sd_weights_add_slice(w, "x.weight", "in_proj_weight", 4, 7) && strstr(ctx.msg, "cannot slice rows [4, 7)"),
          "slice out of range: %s", ctx.msg);
    CHECK(!sd_weights_add_slice(w, "q.weight", "in_proj_weight", 0, 2) && strstr(ctx.msg, "'q.weight' is already"),
          "slice name clash: %s", ctx.msg);
    CHECK(sd_weights_n_params(w) == want_params && sd_weights_count(w) == 10, "slices add no parameters");

    /* Added tensors own their data. */
    float *d = malloc(3 * sizeof *d);
    d[0] = 1, d[1] = 2, d[2] = 3;
    t = sd_weights_add(w, "added.bias", 1, (int64_t[]){3}, d);
    CHECK(t && sd_weights_get(w, "added.bias", 1, (int64_t[]){3}) == t && ((float *)t->data)[2] == 3.0f,
          "computed tensor added");
    CHECK(!sd_weights_add(w, "added.bias", 1, (int64_t[]){3}, malloc(12)) && strstr(ctx.msg, "already present"),
          "adding a duplicate fails (and frees the data): %s", ctx.msg);
    CHECK(!sd_weights_add(w, "neg", 1, (int64_t[]){-3}, malloc(12)) && strstr(ctx.msg, "cannot add 'neg'"),
          "adding a bad shape fails: %s", ctx.msg);

    /* Used flags: every tensor asked for is marked. */
    int used = 0;
    for (int k2 = 0; k2 < sd_weights_count(w); k2++) used += sd_weights_used(w, k2);
    CHECK(used == sd_weights_count(w) && used == 11, "every tensor asked for is marked used (%d)", used);

    /* A second add of the same names clashes and leaves w unchanged. */
    int n_before = sd_weights_count(w);
    struct sd_st_file *f2 = NULL;
    sd_st_open(&ctx, path, &f2);
    rc = sd_weights_add_file(w, f2, "model.diffusion_model.", NULL, NULL);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "tensor 'big' from ") && strstr(ctx.msg, "(as 'model.diffusion_model.big')") &&
              sd_weights_count(w) == n_before && !sd_weights_find(w, "input_blocks.0.0.weight"),
          "clash on a second file rolls back the tensors it added first: %s", ctx.msg);
    rc = sd_weights_add_file(w, f2, "model.diffusion_model.", rename_cb, &calls);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "tensor 'conv_in.weight' from ") &&
              strstr(ctx.msg, "is already present (from ") && sd_weights_count(w) == n_before &&
              sd_weights_get(w, "conv_in.weight", -1, NULL) && sd_weights_get(w, "q.weight", -1, NULL),
          "name clash rolls back and w still works: %s", ctx.msg);
    rc = sd_weights_add_file(w, f2, "first_stage_model.", NULL, NULL);
    sd_st_close(f2);
    t = sd_weights_get(w, "decoder.conv.weight", 2, (int64_t[]){2, 2});
    CHECK(rc == SD_OK && t && ((float *)t->data)[3] == 4.0f && sd_weights_count(w) == n_before + 1,
          "a second prefix of the same file adds to w");
    CHECK(sd_weights_nbytes(w) == (size_t)(72 + 8 + BIG_ROWS * BIG_COLS + 12 + 3 + 3 + 4) * 4,
          "bytes held: %zu", sd_weights_nbytes(w));
    sd_weights_free(w);
    sd_weights_free(NULL);
}

/* Every one of the 65536 halves (and bfloats) converts exactly through the
 * container's bulk path, against the independent double decoder. */
static void test_all_halves(void) {
    uint16_t *bits = malloc(65536 * sizeof *bits);
    for (int k = 0; k < 65536; k++) bits[k] = (uint16_t)k;
    struct sd_st_tensor ts[2] = {
        {.name = "h", .type = SD_F16, .n_dims = 2, .shape = {256, 256}, .nbytes = 131072, .data = bits},
        {.name = "b", .type = SD_BF16, .n_dims = 1, .shape = {65536}, .nbytes = 131072, .data = bits},
    };
    char p[64];
    snprintf(p, sizeof p, "/tmp/sdrt_test_w_%d.halves.safetensors", (int)getpid());
    struct sd_st_file *f = NULL;
    struct sd_weights *w = sd_weights_new(&ctx);
    int rc = sd_st_write(&ctx, p, ts, 2, NULL);
    if (rc == SD_OK) rc = sd_st_open(&ctx, p, &f);
    if (rc == SD_OK) rc = sd_weights_add_file(w, f, NULL, NULL, NULL);
    sd_st_close(f);
    unlink(p);
    int rc2 = sd_weights_load_all(w);
    CHECK(rc2 == SD_OK && sd_weights_nbytes(w) == 2 * 65536 * sizeof(float), "load_all converts both tensors (%s)",
          ctx.msg);
    struct sd_tensor *h = sd_weights_get(w, "h", 2, (int64_t[]){256, 256}), *b = sd_weights_get(w, "b", 1, (int64_t[]){65536});
    int bad_h = 0, bad_b = 0;
    for (int k = 0; h && b && k < 65536; k++) {
        float g = ((float *)h->data)[k], gb = ((float *)b->data)[k];
        double r = ref_f16((uint16_t)k), rb = ref_bf16((uint16_t)k);
        if (isnan(r) ? !isnan(g) : (double)g != r || !signbit(g) != !signbit(r)) bad_h++;
        if (isnan(rb) ? !isnan(gb) : (double)gb != rb || !signbit(gb) != !signbit(rb)) bad_b++;
    }
    CHECK(rc == SD_OK && h && b && bad_h == 0 && bad_b == 0, "all 65536 f16 and bf16 values convert exactly (%d, %d bad)",
          bad_h, bad_b);
    sd_weights_free(w);
    free(bits);
}

/* Misaligned F32 and F16 tensors (in memory) are copied/converted safely. */
static void test_misaligned(void) {
    const char *hdr = "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]},"
                      " \"h\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [13, 17]}}";
    size_t h = strlen(hdr), len = 8 + h + 17;
    unsigned char *raw = malloc(len + 4), *b = raw;
    while (((uintptr_t)(b + 8 + h)) % 4 != 2) b++; /* F32 data at 2 mod 4, F16 data at an odd address */
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)h >> (8 * k));
    memcpy(b + 8, hdr, h);
    const float vals[3] = {1.5f, -2.25f, 1e-30f};
    const uint16_t hv[2] = {0x3c00, 0x8001};
    memcpy(b + 8 + h, vals, 12);
    memcpy(b + 8 + h + 13, hv, 4);
    struct sd_st_file *f = NULL;
    struct sd_weights *w = sd_weights_new(&ctx);
    int rc = sd_st_open_memory(&ctx, "mis.safetensors", b, len, &f);
    if (rc == SD_OK) rc = sd_weights_add_file(w, f, NULL, NULL, NULL);
    struct sd_tensor *t = sd_weights_get(w, "a", 1, (int64_t[]){3});
    CHECK(rc == SD_OK && t && t->data != f->tensors[0].data && (uintptr_t)t->data % 64 == 0 &&
              memcmp(t->data, vals, 12) == 0, "misaligned F32 is copied into aligned memory (%s)", ctx.msg);
    t = sd_weights_get(w, "h", 1, (int64_t[]){2});
    CHECK(t && ((float *)t->data)[0] == 1.0f && (double)((float *)t->data)[1] == ref_f16(0x8001),
          "F16 at an odd address converts exactly");
    sd_st_close(f);
    sd_weights_free(w);
    free(raw);
    /* A file whose only conversion is an empty tensor (found by fuzzing). */
    const char *zh = "{\"z\": {\"dtype\": \"F16\", \"shape\": [0, 3], \"data_offsets\": [0, 0]}}";
    h = strlen(zh);
    raw = malloc(8 + h);
    for (int k = 0; k < 8; k++) raw[k] = (unsigned char)((uint64_t)h >> (8 * k));
    memcpy(raw + 8, zh, h);
    w = sd_weights_new(&ctx);
    rc = sd_st_open_memory(&ctx, "empty.safetensors", raw, 8 + h, &f);
    if (rc == SD_OK) rc = sd_weights_add_file(w, f, NULL, NULL, NULL);
    t = sd_weights_get(w, "z", 2, (int64_t[]){0, 3});
    CHECK(rc == SD_OK && t && t->data && sd_tensor_nelements(t) == 0, "empty F16 tensor loads (%s)", ctx.msg);
    sd_st_close(f);
    sd_weights_free(w);
    free(raw);
    w = sd_weights_new(&ctx);
    CHECK(!sd_weights_get(w, "x", -1, NULL) && strstr(ctx.msg, "missing tensor 'x' in weights (no files)"),
          "empty container: %s", ctx.msg);
    sd_weights_free(w);
}


/* Deferred mode: big rank >= 2 tensors get no f32 bytes until asked for;
 * sd_weight_read_f32 gives the values sd_weight_materialize then makes,
 * equal to an eager load, from f16 (converted) and F32 (zero copy). */
static void test_deferred(void) {
    memset(&ctx, 0, sizeof ctx);
    enum { R = 128, C = 256 }; /* 32768 elements >= SD_WEIGHTS_DEFER_MIN */
    uint16_t *h = malloc(R * C * sizeof *h);
    float *f = malloc(R * C * sizeof *f), *got = malloc(R * C * sizeof *got);
    fill_bits(h, R * C, 7, 0);
    for (int k = 0; k < R * C; k++) f[k] = (float)k * 0.5f - 3.0f;
    uint16_t small[16];
    fill_bits(small, 16, 8, 0);
    struct sd_st_tensor ts[3] = {
        {.name = "h", .type = SD_F16, .n_dims = 2, .shape = {R, C}, .nbytes = R * C * 2, .data = h},
        {.name = "f", .type = SD_F32, .n_dims = 2, .shape = {R, C}, .nbytes = R * C * 4, .data = f},
        {.name = "s", .type = SD_F16, .n_dims = 2, .shape = {4, 4}, .nbytes = 32, .data = small},
    };
    char p[64];
    snprintf(p, sizeof p, "/tmp/sdrt_test_w_%d.deferred.safetensors", (int)getpid());
    struct sd_st_file *file = NULL;
    struct sd_weights *w = sd_weights_new(&ctx), *eager = sd_weights_new(&ctx);
    sd_weights_set_deferred(w, 1);
    int rc = sd_st_write(&ctx, p, ts, 3, NULL);
    if (rc == SD_OK) rc = sd_st_open(&ctx, p, &file);
    if (rc == SD_OK) rc = sd_weights_add_file(w, file, NULL, NULL, NULL);
    if (rc == SD_OK) rc = sd_weights_add_file(eager, file, NULL, NULL, NULL);
    sd_st_close(file);
    unlink(p);
    CHECK(rc == SD_OK && sd_weights_load_all(w) == SD_OK, "deferred set loads (%s)", ctx.msg);
    struct sd_tensor *th = sd_weights_get(w, "h", 2, (int64_t[]){R, C}), *tf = sd_weights_get(w, "f", 2, (int64_t[]){R, C});
    struct sd_tensor *ts_ = sd_weights_get(w, "s", 2, (int64_t[]){4, 4});
    struct sd_tensor *eh = sd_weights_get(eager, "h", -1, NULL), *es = sd_weights_get(eager, "s", -1, NULL);
    CHECK(th && tf && ts_ && eh && es && (th->flags & SD_TF_DEFERRED) && (tf->flags & SD_TF_DEFERRED) &&
              !(ts_->flags & SD_TF_DEFERRED) && !(eh->flags & SD_TF_DEFERRED) && th->data && (uintptr_t)th->data % 64 == 0,
          "big tensors are deferred with a fixed aligned address, small ones and eager sets are not");
    CHECK(sd_weights_nbytes(w) == 16 * sizeof(float), "a deferred set holds only its small tensor's bytes (%zu)",
          sd_weights_nbytes(w));
    int ok = th && eh && sd_weight_read_f32(&ctx, th, got) == SD_OK && memcmp(got, eh->data, R * C * 4) == 0;
    CHECK(ok && sd_weights_nbytes(w) == 16 * sizeof(float), "read_f32 of a deferred f16 tensor equals the eager "
          "conversion bit for bit and keeps nothing");
    ok = th && sd_weight_read_rows(&ctx, th, 5, 3, got) == SD_OK && memcmp(got, (float *)eh->data + 5 * C, 3 * C * 4) == 0;
    CHECK(ok && sd_weights_nbytes(w) == 16 * sizeof(float) && sd_weight_read_rows(&ctx, th, R - 1, 2, got) == SD_ERR_INVALID,
          "read_rows of a deferred tensor gives the eager rows, keeps nothing, refuses rows past the end (%s)", ctx.msg);
    ok = tf && sd_weight_read_f32(&ctx, tf, got) == SD_OK && memcmp(got, f, R * C * 4) == 0;
    CHECK(ok, "read_f32 of a deferred zero-copy F32 tensor gives the file's values");
    ok = th && sd_weight_materialize(&ctx, th) == SD_OK && memcmp(th->data, eh->data, R * C * 4) == 0 &&
         sd_weight_materialize(&ctx, th) == SD_OK;
    CHECK(ok && sd_weights_nbytes(w) == (16 + R * C) * sizeof(float),
          "materialize makes the same bytes readable in place, once (%zu bytes held)", sd_weights_nbytes(w));
    ok = th && sd_weight_read_f32(&ctx, th, got) == SD_OK && memcmp(got, eh->data, R * C * 4) == 0;
    CHECK(ok && sd_weight_materialize(&ctx, es) == SD_OK, "read_f32 after materialising reads them; materialize "
          "of a tensor that is not deferred is a no-op");
    /* A replacement (LoRA's merged copy) is what read_f32 reads. */
    float *mine = malloc(R * C * sizeof *mine);
    for (int k = 0; k < R * C; k++) mine[k] = (float)-k;
    struct sd_tensor *th2 = NULL;
    ok = tf && sd_weights_set_data(w, sd_weights_index(w, "f"), mine) == SD_OK &&
         sd_weight_read_f32(&ctx, tf, got) == SD_OK && got[5] == -5.0f;
    th2 = sd_weights_find(w, "f");
    CHECK(ok && th2 == tf, "read_f32 follows sd_weights_set_data");
    free(mine);
    sd_weights_free(w);
    sd_weights_free(eager);
    free(h), free(f), free(got);
}

int main(void) {
    snprintf(path, sizeof path, "/tmp/sdrt_test_w_%d.model.safetensors", (int)getpid());
    test_load();
    test_misaligned();
    test_all_halves();
    test_deferred();
    unlink(path);
    return test_summary();
}
