/* op_linear.c - linear on OpenCL: y[M, out] = x[M, in] x w[out, in]^T (+ b),
 * M = all leading dims of x. */
#include "cl_impl.h"

int sd_cl_op_linear(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *x = t->src[0], *w = t->src[1], *b = t->src[2];
    const size_t in = w->ne[3], out = w->ne[2], M = (size_t)sd_tensor_nelements(x) / in;
    struct sd_cl_buf xb, wb, yb, bb;
    int rc;
    /* Our GEMM kernels run x . (w^T stored [in, out]) faster than the dot
     * product form, so they get a transposed copy of the weight (made once
     * at upload); CLBlast takes w as it is with trans_b. */
    /* Precision f16 with half GEMMs: w as it is, in half, x narrowed
     * (sd_cl_gemm_wh). */
    const bool half = sd_cl_weight_half(cl, w, &wb, &rc);
    const bool wt = !half && cl->gemm_own && (w->flags & SD_TF_WEIGHT);
    if (rc || (!half && (rc = sd_cl_weight_f32(cl, w, wt, &wb)))) return rc;
    if ((rc = sd_cl_buf_of(cl, x, &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    if (b && (rc = sd_cl_buf_of(cl, b, &bb))) return rc;
    struct sd_cl_gemm g = {.trans_b = !wt, .m = M, .n = out, .k = in, .alpha = 1, .a = xb, .b = wb, .c = yb,
                           .lda = in, .ldb = wt ? out : in, .ldc = out, .batch = 1, .what = t->name};
    if ((rc = half ? sd_cl_gemm_wh(cl, &g, false) : sd_cl_gemm(cl, &g)) != SD_OK) return rc;
    if (b) return sd_cl_bias(cl, yb, bb, M * out, 1, out, t->name);
    return SD_OK;
}
