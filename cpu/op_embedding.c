/* op_embedding.c - embedding lookup on the CPU: ids i32 [B, L] (any shape),
 * table f32 [V, C] -> [..., C], row r = table[ids[r]]. Every id is checked
 * first: an id outside [0, V) is an SD_ERR_INVALID naming the id and its
 * position, and nothing is written. A deferred table (weights.h: CLIP's
 * 49408-row token embedding) is read row by row from the model file, so it
 * never needs a resident f32 copy. */
#include "cpu.h"
#include "weights.h"

#include <string.h>

int sd_cpu_op_embedding(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *it = node->src[0], *tt = node->src[1];
    if (it->type != SD_I32 || tt->type != SD_F32)
        return sd_errorf(cpu->ctx, SD_ERR_UNSUPPORTED, "embedding: ids must be i32 (got %s), table f32 (got %s)",
                         sd_dtype_name(it->type), sd_dtype_name(tt->type));
    const int32_t *ids = it->data;
    const float *table = tt->data;
    float *y = node->data;
    const int64_t n = sd_tensor_nelements(it), V = tt->ne[2], C = tt->ne[3];
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return sd_errorf(cpu->ctx, SD_ERR_INVALID, "embedding: id %d at position %lld is outside the table [0, %lld)",
                             ids[i], (long long)i, (long long)V);

    if (tt->flags & SD_TF_DEFERRED) { /* only the rows looked up, without making the table resident (weights.h) */
        for (int64_t i = 0; i < n; i++)
            if (sd_weight_read_rows(cpu->ctx, tt, ids[i], 1, y + i * C) != SD_OK) return cpu->ctx->status;
        return SD_OK;
    }
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) memcpy(y + i * C, table + (int64_t)ids[i] * C, (size_t)C * sizeof *y);
    return SD_OK;
}
