/* op_layer_norm.c - LayerNorm over the last dim on OpenCL: one work-group
 * per row (one work-item per row on CPU-type devices); gamma/beta optional. */
#include "cl_impl.h"

int sd_cl_op_layer_norm(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *x = t->src[0], *gm = t->src[1], *bt = t->src[2];
    const size_t C = x->ne[3], rows = sd_tensor_nelements(x) / C;
    cl_kernel k = sd_cl_kernel(cl, "layer_norm", "kernel_layer_norm_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf xb, yb, gb = {cl->flag, 0}, bb = {cl->flag, 0};
    int rc;
    if ((rc = sd_cl_buf_of(cl, x, &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    if (gm && (rc = sd_cl_buf_of(cl, gm, &gb))) return rc;
    if (bt && (rc = sd_cl_buf_of(cl, bt, &bb))) return rc;
    if (cl->rowwise) {
        cl_kernel kr = sd_cl_kernel(cl, "layer_norm", "kernel_layer_norm_rows_f32");
        if (!kr) return SD_ERR_BACKEND;
        struct sd_cl_arg args[] = {
            SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_BUF(gb), SD_CL_BUF(bb), SD_CL_I32(rows), SD_CL_I32(C),
            SD_CL_F32(t->p.layer_norm.eps), SD_CL_I32(gm != NULL), SD_CL_I32(bt != NULL),
        };
        size_t global = sd_cl_round_up(rows, 16);
        return sd_cl_run(cl, kr, t->name, args, SD_CL_NARGS(args), 1, &global, NULL);
    }
    size_t wg = sd_cl_wg_size(cl, k, C < 256 ? C : 256);
    struct sd_cl_arg args[] = {
        SD_CL_BUF(xb), SD_CL_BUF(yb), SD_CL_BUF(gb), SD_CL_BUF(bb), SD_CL_I32(C), SD_CL_F32(t->p.layer_norm.eps),
        SD_CL_I32(gm != NULL), SD_CL_I32(bt != NULL), SD_CL_LOCAL(wg * sizeof(float)),
    };
    size_t global = rows * wg;
    return sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, &wg);
}
