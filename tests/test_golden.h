/* test_golden.h - reading golden tensors (the safetensors files in tests/golden/, written
 * by the scripts in tests/reference/) in the tests. */
#ifndef SDRT_TEST_GOLDEN_H
#define SDRT_TEST_GOLDEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* A malloc'd copy of golden tensor `name` of f, which must be f32 with n
 * elements; NULL (after saying why) when f is NULL or the tensor is missing or
 * differs. */
static inline float *test_golden_copy(const struct sd_st_file *f, const char *name, int64_t n) {
    const struct sd_st_tensor *t = f ? sd_st_find(f, name) : NULL;
    if (!t || t->type != SD_F32 || t->nbytes != (size_t)n * sizeof(float)) {
        printf("  golden: %s missing or not f32 with %lld elements\n", name, (long long)n);
        return NULL;
    }
    float *out = malloc(t->nbytes);
    if (out) memcpy(out, t->data, t->nbytes);
    return out;
}

#endif
