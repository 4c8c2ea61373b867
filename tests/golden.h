/* golden.h - reads the golden files written by tests/reference/golden_io.py.
 *
 * Format (little endian): "SDGOLDEN", u32 version 1, u32 count, then per
 * entry u32 name length, name, u32 dtype (0 f32, 1 f64, 2 i64), u32 ndim,
 * i64 dims[ndim], data. Entries are looked up by name. golden_load returns
 * NULL (and prints why) when the file is missing or malformed.
 */
#ifndef SDRT_TEST_GOLDEN_H
#define SDRT_TEST_GOLDEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct golden_entry {
    char name[128];
    int dtype, ndim;
    int64_t dims[8], n;
    void *data;
};

struct golden {
    int count;
    struct golden_entry *e;
    unsigned char *buf;
};

static void golden_free(struct golden *g) __attribute__((unused));
static void golden_free(struct golden *g) {
    if (!g) return;
    free(g->e);
    free(g->buf);
    free(g);
}

static struct golden *golden_load(const char *path) __attribute__((unused));
static struct golden *golden_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { printf("  golden: cannot open %s\n", path); return NULL; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    struct golden *g = calloc(1, sizeof *g);
    g->buf = malloc((size_t)size + 1);
    if (fread(g->buf, 1, (size_t)size, f) != (size_t)size) size = 0;
    fclose(f);
    const unsigned char *p = g->buf, *end = g->buf + size;
    uint32_t ver, count;
    if (size < 16 || memcmp(p, "SDGOLDEN", 8) != 0) goto bad;
    memcpy(&ver, p + 8, 4);
    memcpy(&count, p + 12, 4);
    if (ver != 1 || count > 100000) goto bad;
    p += 16;
    g->e = calloc(count ? count : 1, sizeof *g->e);
    for (uint32_t i = 0; i < count; i++) {
        struct golden_entry *e = &g->e[i];
        uint32_t len, dt, nd;
        if (end - p < 4) goto bad;
        memcpy(&len, p, 4), p += 4;
        if (len >= sizeof e->name || end - p < (long)len + 8) goto bad;
        memcpy(e->name, p, len), p += len;
        memcpy(&dt, p, 4), memcpy(&nd, p + 4, 4), p += 8;
        if (dt > 2 || nd > 8 || end - p < (long)(8 * nd)) goto bad;
        e->dtype = (int)dt, e->ndim = (int)nd, e->n = 1;
        for (uint32_t d = 0; d < nd; d++) memcpy(&e->dims[d], p, 8), p += 8, e->n *= e->dims[d];
        long bytes = (long)e->n * (dt == 0 ? 4 : 8);
        if (e->n < 0 || end - p < bytes) goto bad;
        e->data = (void *)p;
        p += bytes;
        g->count++;
    }
    return g;
bad:
    printf("  golden: %s is malformed\n", path);
    golden_free(g);
    return NULL;
}

/* Returns the entry named `name`, or NULL (and prints) if absent. */
static const struct golden_entry *golden_get(const struct golden *g, const char *name) __attribute__((unused));
static const struct golden_entry *golden_get(const struct golden *g, const char *name) {
    for (int i = 0; g && i < g->count; i++)
        if (strcmp(g->e[i].name, name) == 0) return &g->e[i];
    printf("  golden: no entry '%s'\n", name);
    return NULL;
}

/* Copies entry e into a new array converted to float (free() it); the file
 * buffer is not aligned, so entries are always read through this copy. */
static float *golden_f32(const struct golden_entry *e) __attribute__((unused));
static float *golden_f32(const struct golden_entry *e) {
    if (!e) return NULL;
    float *out = malloc((size_t)(e->n ? e->n : 1) * sizeof *out);
    const unsigned char *p = e->data;
    for (int64_t i = 0; i < e->n; i++) {
        if (e->dtype == 0) { memcpy(&out[i], p + 4 * i, 4); }
        else if (e->dtype == 1) { double d; memcpy(&d, p + 8 * i, 8); out[i] = (float)d; }
        else { int64_t v; memcpy(&v, p + 8 * i, 8); out[i] = (float)v; }
    }
    return out;
}

/* Same, converted to double. */
static double *golden_f64(const struct golden_entry *e) __attribute__((unused));
static double *golden_f64(const struct golden_entry *e) {
    if (!e) return NULL;
    double *out = malloc((size_t)(e->n ? e->n : 1) * sizeof *out);
    const unsigned char *p = e->data;
    for (int64_t i = 0; i < e->n; i++) {
        if (e->dtype == 0) { float f; memcpy(&f, p + 4 * i, 4); out[i] = f; }
        else if (e->dtype == 1) { memcpy(&out[i], p + 8 * i, 8); }
        else { int64_t v; memcpy(&v, p + 8 * i, 8); out[i] = (double)v; }
    }
    return out;
}

#endif
