/* op_concat.c - concatenation of two tensors along one logical dim on the CPU.
 *
 * p.concat.dim is the PyTorch index into the n_dims logical shape (slot
 * 4 - n_dims + dim). With `outer` = the product of the slots before it, each
 * output row is a's row (ne_a[slot] * inner values) followed by b's.
 */
#include "cpu.h"

#include <string.h>

int sd_cpu_op_concat(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *at = node->src[0], *bt = node->src[1];
    const int slot = 4 - node->n_dims + node->p.concat.dim;
    if (node->p.concat.dim < 0 || slot < 0 || slot > 3)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "concat: dim %d out of range for %d dims", node->p.concat.dim,
                         node->n_dims);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < slot; i++) outer *= node->ne[i];
    for (int i = slot + 1; i < 4; i++) inner *= node->ne[i];
    const int64_t na = at->ne[slot] * inner, nb = bt->ne[slot] * inner, ny = na + nb;
    const float *a = at->data, *b = bt->data;
    float *y = node->data;

    #pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        memcpy(y + o * ny, a + o * na, (size_t)na * sizeof *y);
        memcpy(y + o * ny + na, b + o * nb, (size_t)nb * sizeof *y);
    }
    return SD_OK;
}
