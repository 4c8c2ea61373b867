/* op_binary.c - add, mul (with broadcasting) and scale on the CPU.
 *
 * add/mul: y = a (op) b, y and a of one shape, b broadcast: each of b's four
 * ne[] slots is 1 or equal to a's. Fast paths: b of a's shape (flat loop)
 * and b constant along the last dim or equal to it (per row). Rows
 * (the three outer slots) in parallel.
 * scale: y = x*s + b.
 */
#include "cpu.h"

enum binop { BIN_ADD, BIN_MUL };

static int binary(struct sd_cpu *cpu, struct sd_tensor *node, enum binop op) {
    const struct sd_tensor *at = node->src[0], *bt = node->src[1];
    const float *a = at->data, *b = bt->data;
    float *y = node->data;
    for (int i = 0; i < 4; i++)
        if (bt->ne[i] != 1 && bt->ne[i] != at->ne[i])
            return sd_errorf(cpu->ctx, SD_ERR_INVALID, "%s: operand b does not broadcast (slot %d: %lld vs %lld)",
                             sd_op_name(node->op), i, (long long)bt->ne[i], (long long)at->ne[i]);
    if (sd_tensor_same_shape(at, bt)) {
        const int64_t n = sd_tensor_nelements(at);
        if (op == BIN_ADD) {
            #pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
        } else {
            #pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
        }
        return SD_OK;
    }
    const int64_t n0 = at->ne[0], n1 = at->ne[1], n2 = at->ne[2], W = at->ne[3];
    /* Element strides of b per slot: 0 where broadcast. */
    const int64_t s2 = bt->ne[2] == 1 ? 0 : bt->ne[3];
    const int64_t s1 = bt->ne[1] == 1 ? 0 : bt->ne[2] * bt->ne[3];
    const int64_t s0 = bt->ne[0] == 1 ? 0 : bt->ne[1] * bt->ne[2] * bt->ne[3];
    const int bvec = bt->ne[3] != 1;

    #pragma omp parallel for collapse(3) schedule(static)
    for (int64_t i0 = 0; i0 < n0; i0++) {
        for (int64_t i1 = 0; i1 < n1; i1++) {
            for (int64_t i2 = 0; i2 < n2; i2++) {
                const int64_t r = (i0 * n1 + i1) * n2 + i2;
                const float *ar = a + r * W, *br = b + i0 * s0 + i1 * s1 + i2 * s2;
                float *yr = y + r * W;
                if (bvec) {
                    if (op == BIN_ADD) for (int64_t i = 0; i < W; i++) yr[i] = ar[i] + br[i];
                    else for (int64_t i = 0; i < W; i++) yr[i] = ar[i] * br[i];
                } else {
                    const float bs = br[0];
                    if (op == BIN_ADD) for (int64_t i = 0; i < W; i++) yr[i] = ar[i] + bs;
                    else for (int64_t i = 0; i < W; i++) yr[i] = ar[i] * bs;
                }
            }
        }
    }
    return SD_OK;
}

int sd_cpu_op_add(struct sd_cpu *cpu, struct sd_tensor *node) { return binary(cpu, node, BIN_ADD); }
int sd_cpu_op_mul(struct sd_cpu *cpu, struct sd_tensor *node) { return binary(cpu, node, BIN_MUL); }

int sd_cpu_op_scale(struct sd_cpu *cpu, struct sd_tensor *node) {
    (void)cpu;
    const float *x = node->src[0]->data;
    float *y = node->data;
    const float s = node->p.scale.s, b = node->p.scale.b;
    const int64_t n = sd_tensor_nelements(node);
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s + b;
    return SD_OK;
}
