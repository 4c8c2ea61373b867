/* op_attention.c - multi-head attention on OpenCL (kernels/attention.cl):
 * one work-item per query row, work-groups of BQ rows per (batch, head),
 * key tiles of TK rows in local memory sized from the device's local
 * memory (TK <= 64). */
#include "cl_impl.h"

int sd_cl_attention(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2];
    const struct sd_attention_params p = t->p.attention;
    const size_t B = q->ne[1], Lq = q->ne[2], Lk = k->ne[2], H = p.n_heads;
    const size_t d = q->ne[3] / H, dv = v->ne[3] / H;
    cl_kernel kern = sd_cl_kernel(cl, "attention", "kernel_attention_f32");
    if (!kern) return SD_ERR_CL;
    struct sd_cl_buf qb, kb, vb, ob;
    int rc;
    if ((rc = sd_cl_buf_of(cl, q, &qb)) || (rc = sd_cl_buf_of(cl, k, &kb)) || (rc = sd_cl_buf_of(cl, v, &vb)) ||
        (rc = sd_cl_buf_of(cl, t, &ob)))
        return rc;
    size_t local_mem = cl->info.local_mem ? cl->info.local_mem : 16384;
    size_t tk = (local_mem - 1024) / ((d + dv) * sizeof(float));
    if (tk > 64) tk = 64;
    if (tk < 1) return sd_errorf(cl->ctx, SD_ERR_UNSUPPORTED, "cl attention(%s): head dims %zu/%zu exceed local memory",
                                 t->name, d, dv);
    size_t bq = sd_cl_wg_size(cl, kern, 32);
    struct sd_cl_arg args[] = {
        SD_CL_BUF(qb), SD_CL_BUF(kb), SD_CL_BUF(vb), SD_CL_BUF(ob), SD_CL_I32(Lq), SD_CL_I32(Lk), SD_CL_I32(H),
        SD_CL_I32(d), SD_CL_I32(dv), SD_CL_F32(p.scale), SD_CL_I32(p.causal), SD_CL_I32(tk),
        SD_CL_LOCAL(tk * d * sizeof(float)), SD_CL_LOCAL(tk * dv * sizeof(float)),
    };
    size_t global[3] = {sd_cl_round_up(Lq, bq), H, B}, local[3] = {bq, 1, 1};
    return sd_cl_run(cl, kern, t->name, args, SD_CL_NARGS(args), 3, global, local);
}
