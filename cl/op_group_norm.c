/* op_group_norm.c - GroupNorm (+ fused SiLU) on OpenCL: one work-group per
 * (sample, group) over x[N, C, S...], or one work-item per (sample, group)
 * with vector loops on CPU-type devices; gamma/beta optional. */
#include "cl_impl.h"

int sd_cl_op_group_norm(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *x = t->src[0], *gm = t->src[1], *bt = t->src[2];
    const struct sd_group_norm_params p = t->p.group_norm;
    const size_t N = sd_tensor_dim(x, 0), C = sd_tensor_dim(x, 1), S = sd_tensor_nelements(x) / (N * C);
    cl_kernel k = sd_cl_kernel(cl, "group_norm", "kernel_group_norm_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb, gb = {cl->flag, 0}, bb = {cl->flag, 0};
    int rc;
    if ((rc = sd_cl_buf_of(cl, x, &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    if (gm && (rc = sd_cl_buf_of(cl, gm, &gb))) return rc;
    if (bt && (rc = sd_cl_buf_of(cl, bt, &bb))) return rc;
    if (cl->rowwise) {
        cl_kernel kr = sd_cl_kernel(cl, "group_norm", "kernel_group_norm_rows_f32");
        if (!kr) return SD_ERR_BACKEND;
        struct sd_cl_arg args[] = {
            SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_BUF(gb), SD_CL_BUF(bb), SD_CL_I32(N * p.groups), SD_CL_I32(p.groups),
            SD_CL_I32(C / p.groups), SD_CL_I32(S), SD_CL_F32(p.eps), SD_CL_I32(gm != NULL), SD_CL_I32(bt != NULL),
            SD_CL_I32(p.silu),
        };
        size_t global = sd_cl_round_up(N * p.groups, 8), local = 1;
        return sd_cl_run(cl, kr, t->name, args, SD_CL_NARGS(args), 1, &global, &local);
    }
    size_t wg = sd_cl_wg_size(cl, k, 256);
    struct sd_cl_arg args[] = {
        SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_BUF(gb), SD_CL_BUF(bb), SD_CL_I32(p.groups), SD_CL_I32(C / p.groups),
        SD_CL_I32(S), SD_CL_F32(p.eps), SD_CL_I32(gm != NULL), SD_CL_I32(bt != NULL), SD_CL_I32(p.silu),
        SD_CL_LOCAL(wg * sizeof(float)),
    };
    size_t global = N * p.groups * wg;
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, &wg);
}
