/* op_scale.c - y = x*s + b on OpenCL. */
#include "cl_impl.h"

int sd_cl_op_scale(struct sd_cl *cl, struct sd_tensor *t) {
    cl_kernel k = sd_cl_kernel(cl, "scale", "kernel_scale_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, t->src[0], &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    size_t n = sd_tensor_nelements(t);
    struct sd_cl_arg args[] = {SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_I32(n), SD_CL_F32(t->p.scale.s),
                               SD_CL_F32(t->p.scale.b)};
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
}
