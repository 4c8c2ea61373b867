/* op_matmul.c - batched matmul on OpenCL: c[B, M, N] = alpha * op(a) x op(b),
 * a stored [B, M, K] (or [B, K, M] with trans_a), b [B, K, N] (or [B, N, K]),
 * B = the two outer slots. */
#include "cl_impl.h"

int sd_cl_op_matmul(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *a = t->src[0], *b = t->src[1];
    const struct sd_matmul_params p = t->p.matmul;
    const size_t M = t->ne[2], N = t->ne[3], K = p.trans_a ? a->ne[2] : a->ne[3];
    const size_t batch = (size_t)(a->ne[0] * a->ne[1]);
    struct sd_cl_buf ab, bb, cb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, a, &ab)) || (rc = sd_cl_buf_of(cl, b, &bb)) || (rc = sd_cl_buf_of(cl, t, &cb))) return rc;
    struct sd_cl_gemm g = {.trans_a = p.trans_a, .trans_b = p.trans_b, .m = M, .n = N, .k = K, .alpha = p.alpha,
                           .a = ab, .b = bb, .c = cb, .lda = (size_t)a->ne[3], .ldb = (size_t)b->ne[3], .ldc = N,
                           .stride_a = M * K, .stride_b = K * N, .stride_c = M * N, .batch = batch, .what = t->name};
    return sd_cl_gemm(cl, &g);
}
