/* op_concat.c - concat along one dim on OpenCL, viewed as
 * [outer, na + nb, inner]. */
#include "cl_impl.h"

int sd_cl_op_concat(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *a = t->src[0], *b = t->src[1];
    int d4 = 4 - a->n_dims + t->p.concat.dim;
    size_t inner = 1;
    for (int i = d4 + 1; i < 4; i++) inner *= a->ne[i];
    cl_kernel k = sd_cl_kernel(cl, "concat", "kernel_concat_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf ab, bb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, a, &ab)) || (rc = sd_cl_buf_of(cl, b, &bb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    size_t n = sd_tensor_nelements(t);
    struct sd_cl_arg args[] = {SD_CL_BUF(ab), SD_CL_BUF(bb), SD_CL_BUF(yb), SD_CL_I32(n), SD_CL_I32(a->ne[d4]),
                               SD_CL_I32(b->ne[d4]), SD_CL_I32(inner)};
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
}
