/* golden_st.h - the safetensors goldens of the tests/golden safetensors files
 * (written by tests/reference/gen_tiny.py), looked up by tensor name.
 * Header-only, for the model tests. Missing files or tensors are test
 * failures (test_fail), and the lookups then return NULL. */
#ifndef SDRT_GOLDEN_ST_H
#define SDRT_GOLDEN_ST_H

#include "safetensors.h"
#include "test.h"

static struct sd_st_file *golden(const char *name) __attribute__((unused));
static struct sd_st_file *golden(const char *name) {
    char path[256];
    struct sd_ctx ctx = {0};
    struct sd_st_file *f = NULL;
    snprintf(path, sizeof path, "tests/golden/%s.safetensors", name);
    if (sd_st_open(&ctx, path, &f)) test_fail("open golden %s: %s", path, ctx.msg);
    return f;
}

static const struct sd_st_tensor *gt(struct sd_st_file *f, const char *name) __attribute__((unused));
static const struct sd_st_tensor *gt(struct sd_st_file *f, const char *name) {
    const struct sd_st_tensor *t = f ? sd_st_find(f, name) : NULL;
    if (!t) test_fail("golden %s has no tensor %s", f ? f->path : "?", name);
    return t;
}

static int64_t numel(const struct sd_st_tensor *t) __attribute__((unused));
static int64_t numel(const struct sd_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

#endif
