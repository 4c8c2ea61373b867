/* op_permute.c - contiguous permuted copy on OpenCL: output slot i reads
 * input slot perm[i] (4-slot indices, tensor.h). */
#include "cl_impl.h"

int sd_cl_op_permute(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *x = t->src[0];
    cl_kernel k = sd_cl_kernel(cl, "permute", "kernel_permute_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, x, &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    size_t s[4], n = sd_tensor_nelements(t);
    for (int i = 0; i < 4; i++) s[i] = x->nb[t->p.permute.perm[i]] / sizeof(float);
    struct sd_cl_arg args[] = {SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_I32(n), SD_CL_I32(t->ne[1]), SD_CL_I32(t->ne[2]),
                               SD_CL_I32(t->ne[3]), SD_CL_I32(s[0]), SD_CL_I32(s[1]), SD_CL_I32(s[2]),
                               SD_CL_I32(s[3])};
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
}
