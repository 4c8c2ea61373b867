/* op_embedding.c - token embedding lookup on OpenCL. Blocks: ids outside
 * [0, V) are detected on the device (flag buffer) and read back after the
 * kernel, so a bad id is an SD_ERR_INVALID like on the CPU, not zeros. */
#include "cl_impl.h"

int sd_cl_op_embedding(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *ids = t->src[0], *table = t->src[1];
    const size_t C = table->ne[3], V = table->ne[2], ntok = sd_tensor_nelements(ids), n = ntok * C;
    cl_kernel k = sd_cl_kernel(cl, "embedding", "kernel_embedding_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_buf ib, tb, yb;
    int rc;
    if ((rc = sd_cl_buf_of(cl, ids, &ib)) || (rc = sd_cl_buf_of(cl, table, &tb)) || (rc = sd_cl_buf_of(cl, t, &yb)))
        return rc;
    cl_int flag = 0;
    cl_int err = clEnqueueWriteBuffer(cl->queue, cl->flag, CL_TRUE, 0, sizeof flag, &flag, 0, NULL, NULL);
    if ((rc = sd_cl_check(cl->ctx, err, "clEnqueueWriteBuffer", "embedding flag")) != SD_OK) return rc;
    struct sd_cl_arg args[] = {SD_CL_BUF(ib), SD_CL_BUF(tb), SD_CL_BUF(yb), SD_CL_I32(n), SD_CL_I32(V),
                               SD_CL_I32(C), SD_CL_MEM(cl->flag)};
    size_t global = sd_cl_round_up(n, 256);
    if ((rc = sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 1, &global, NULL)) != SD_OK) return rc;
    err = clEnqueueReadBuffer(cl->queue, cl->flag, CL_TRUE, 0, sizeof flag, &flag, 0, NULL, NULL);
    if ((rc = sd_cl_check(cl->ctx, err, "clEnqueueReadBuffer", "embedding flag")) != SD_OK) return rc;
    if (flag) return sd_errorf(cl->ctx, SD_ERR_INVALID, "embedding(%s): a token id is outside [0, %zu)", t->name, V);
    return SD_OK;
}
