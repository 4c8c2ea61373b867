/* op_unary.c - elementwise activations on OpenCL (gelu, quick_gelu, silu, relu, tanh),
 * one work-item per element; kernels in kernels/<op>.cl. */
#include "cl_impl.h"

static int unary(struct sd_cl *cl, struct sd_tensor *t, const char *prog, const char *kname) {
    cl_kernel k = sd_cl_kernel(cl, prog, kname);
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, t->src[0], &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    size_t n = sd_tensor_nelements(t);
    struct sd_cl_arg args[] = {SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_I32(n)};
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
}

int sd_cl_op_gelu(struct sd_cl *cl, struct sd_tensor *t) { return unary(cl, t, "gelu", "kernel_gelu_f32"); }
int sd_cl_op_quick_gelu(struct sd_cl *cl, struct sd_tensor *t) { return unary(cl, t, "quick_gelu", "kernel_quick_gelu_f32"); }
int sd_cl_op_silu(struct sd_cl *cl, struct sd_tensor *t) { return unary(cl, t, "silu", "kernel_silu_f32"); }
int sd_cl_op_relu(struct sd_cl *cl, struct sd_tensor *t) { return unary(cl, t, "relu", "kernel_relu_f32"); }
int sd_cl_op_tanh(struct sd_cl *cl, struct sd_tensor *t) { return unary(cl, t, "tanh", "kernel_tanh_f32"); }
