/* op_softmax.c - softmax over the last dim of scale*x on OpenCL, one
 * work-group per row (one work-item per row on CPU-type devices); causal
 * masks column j > row index in its matrix. */
#include "cl_impl.h"

int sd_cl_softmax_rows(struct sd_cl *cl, struct sd_cl_buf x, struct sd_cl_buf y, size_t rows, size_t C, size_t L,
                       size_t q0, float scale, int causal, const char *what) {
    cl_kernel k = sd_cl_kernel(cl, "softmax", "kernel_softmax_rows_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_arg args[] = {SD_CL_BUF(x), SD_CL_BUF(y), SD_CL_I32(rows), SD_CL_I32(C), SD_CL_I32(L),
                               SD_CL_I32(q0), SD_CL_F32(scale), SD_CL_I32(causal)};
    size_t global = sd_cl_round_up(rows, 16);
    return sd_cl_run(cl, k, what, args, SD_CL_NARGS(args), 1, &global, NULL);
}

int sd_cl_op_softmax(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *x = t->src[0];
    const size_t C = x->ne[3], L = x->ne[2], rows = sd_tensor_nelements(x) / C;
    cl_kernel k = sd_cl_kernel(cl, "softmax", "kernel_softmax_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, x, &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    if (cl->rowwise) return sd_cl_softmax_rows(cl, xb, yb, rows, C, L, 0, t->p.softmax.scale, t->p.softmax.causal,
                                               t->name);
    size_t wg = sd_cl_wg_size(cl, k, C < 256 ? C : 256);
    struct sd_cl_arg args[] = {
        SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_I32(C), SD_CL_I32(L), SD_CL_F32(t->p.softmax.scale),
        SD_CL_I32(t->p.softmax.causal), SD_CL_LOCAL(wg * sizeof(float)),
    };
    size_t global = rows * wg;
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, &wg);
}
