/* op_upsample.c - nearest resize of [N, C, H, W] to (oh, ow) on OpenCL with
 * PyTorch's index formula (scale = in/out as float). */
#include "cl_impl.h"

int sd_cl_op_upsample_nearest(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *x = t->src[0];
    cl_kernel k = sd_cl_kernel(cl, "upsample", "kernel_upsample_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, x, &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    size_t n = sd_tensor_nelements(t);
    float sh = (float)x->ne[2] / (float)t->ne[2], sw = (float)x->ne[3] / (float)t->ne[3];
    struct sd_cl_arg args[] = {SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_I32(n), SD_CL_I32(x->ne[2]), SD_CL_I32(x->ne[3]),
                               SD_CL_I32(t->ne[2]), SD_CL_I32(t->ne[3]), SD_CL_F32(sh), SD_CL_F32(sw)};
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
}
