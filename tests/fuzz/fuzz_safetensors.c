/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (and the
 * JSON parser under it) and the weights container's conversions.
 *
 * Contract checked on every input: sd_st_open_memory either fails with a
 * message, or every tensor's bytes lie inside the input's data section, are
 * readable (ASan checks), and are found by name; every loadable tensor then
 * converts to f32 through sd_weights. Build and run with `make fuzz`.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "safetensors.h"
#include "weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct sd_ctx ctx = {0};
    struct sd_st_file *f = NULL;
    if (sd_st_open_memory(&ctx, "fuzz.safetensors", data, size, &f) != SD_OK) {
        if (f || !ctx.msg[0] || ctx.status == SD_OK) __builtin_trap(); /* failure must be reported */
        return 0;
    }
    volatile unsigned sum = 0;
    for (int k = 0; k < f->n_tensors; k++) {
        const struct sd_st_tensor *t = &f->tensors[k];
        const uint8_t *d = t->data;
        if (d < data + f->data_start || d > data + size || t->nbytes > (size_t)(data + size - d)) __builtin_trap();
        for (size_t j = 0; j < t->nbytes; j++) sum += d[j];
        if (sd_st_find(f, t->name) != t || t->n_dims < 0 || t->n_dims > SD_ST_MAX_DIMS) __builtin_trap();
    }
    for (struct sd_json_member m = {0}; sd_json_next(f->metadata, &m);) {
        if (sd_st_metadata(f, m.key) != sd_json_str(m.value) && strlen(m.key) == m.klen) __builtin_trap();
    }
    struct sd_weights *w = sd_weights_new(&ctx);
    if (w && sd_weights_add_file(w, f, NULL, NULL, NULL) == SD_OK) {
        for (int k = 0; k < sd_weights_count(w); k++) {
            struct sd_tensor *t = sd_weights_get(w, sd_weights_name(w, k), -1, NULL);
            if (!t) {
                if (!ctx.msg[0]) __builtin_trap();
                continue;
            }
            const float *x = t->data;
            for (int64_t j = 0; j < sd_tensor_nelements(t); j++) sum += (unsigned)(x[j] == x[j]);
        }
    }
    sd_weights_free(w);
    sd_st_close(f);
    (void)sum;
    return 0;
}
