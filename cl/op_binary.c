/* op_binary.c - add and mul with broadcasting of b on OpenCL: b's element
 * strides are 0 along dims where b has size 1. */
#include "cl_impl.h"

static int binary(struct sd_cl *cl, struct sd_tensor *t, const char *prog, const char *kname) {
    const struct sd_tensor *a = t->src[0], *b = t->src[1];
    cl_kernel k = sd_cl_kernel(cl, prog, kname);
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf ab, bb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, a, &ab)) || (rc = sd_cl_buf_of(cl, b, &bb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    size_t bs[4], n = sd_tensor_nelements(t);
    for (int i = 0; i < 4; i++) bs[i] = b->ne[i] == 1 ? 0 : b->nb[i] / sizeof(float);
    struct sd_cl_arg args[] = {
        SD_CL_BUF(ab), SD_CL_BUF(bb), SD_CL_BUF(yb), SD_CL_I32(n), SD_CL_I32(a->ne[1]), SD_CL_I32(a->ne[2]),
        SD_CL_I32(a->ne[3]), SD_CL_I32(bs[0]), SD_CL_I32(bs[1]), SD_CL_I32(bs[2]), SD_CL_I32(bs[3]),
        SD_CL_I32(sd_tensor_nelements(b) == (int64_t)n),
    };
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
}

int sd_cl_op_add(struct sd_cl *cl, struct sd_tensor *t) { return binary(cl, t, "add", "kernel_add_f32"); }
int sd_cl_op_mul(struct sd_cl *cl, struct sd_tensor *t) { return binary(cl, t, "mul", "kernel_mul_f32"); }
