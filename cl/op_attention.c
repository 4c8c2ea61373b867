/* op_attention.c - multi-head attention on OpenCL, two ways:
 *
 * flash (kernels/attention.cl, opts.cl_attn = flash): one
 * work-item per query row, work-groups of BQ rows per (batch, head), key
 * tiles of TK rows in local memory sized from the device's local memory
 * (TK <= 64), online softmax; no score matrix at all.
 *
 * blocked GEMMs (the default: on CPU-type devices the flash kernel's
 * per-work-item private arrays defeat PoCL's vectorizer, ~30x slower than
 * this; on an NVIDIA H100 the GEMMs (CLBlast) are 16% faster per UNet step
 * and 37% per VAE decode at 512x512): per batch, K is transposed per head ([H, d, Lk], permute kernel) so
 * that both products are n-contiguous GEMMs; per block of qb queries,
 * S = Q K^T for all heads at once (strided batched GEMM), row softmax in
 * place, O = P V (batched GEMM) into the output's head columns. The score block is H*qb*Lk floats, qb chosen to
 * keep it under 64 MiB, so the full score matrix is never held either.
 * opts.cl_attn = flash|gemm forces one (tests run both).
 */
#include "cl_impl.h"

#include <stdlib.h>
#include <string.h>

#define SCORE_BYTES_MAX ((size_t)64 << 20)

static int attention_gemm(struct sd_cl *cl, struct sd_tensor *t, struct sd_cl_buf qb, struct sd_cl_buf kb,
                          struct sd_cl_buf vb, struct sd_cl_buf ob) {
    const struct sd_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2];
    const struct sd_attention_params p = t->p.attention;
    const size_t B = q->ne[1], Lq = q->ne[2], Lk = k->ne[2], H = p.n_heads;
    const size_t d = q->ne[3] / H, dv = v->ne[3] / H;
    cl_kernel perm = sd_cl_kernel(cl, "permute", "kernel_permute_f32");
    if (!perm) return SD_ERR_BACKEND;
    size_t blk = SCORE_BYTES_MAX / (H * Lk * sizeof(float));
    if (blk < 1) blk = 1;
    if (blk > Lq) blk = Lq;
    /* scratch: K^T per head [H, d, Lk], then the score block [H, blk, Lk] */
    const size_t kt_bytes = sd_cl_round_up(H * d * Lk * sizeof(float), 64);
    cl_mem S;
    int rc = sd_cl_scratch(cl, kt_bytes + H * blk * Lk * sizeof(float), &S);
    if (rc != SD_OK) return rc;
    struct sd_cl_buf kt = {S, 0}, sb = {S, kt_bytes};
    for (size_t b = 0; b < B; b++) {
        /* K^T: out [1, H, d, Lk] reads k[b][j][h*d + c] (strides 0, d, 1, H*d) */
        struct sd_cl_buf kbb = {kb.mem, kb.offs + b * Lk * H * d * sizeof(float)};
        size_t n = H * d * Lk;
        struct sd_cl_arg args[] = {SD_CL_BUF(kbb), SD_CL_BUF(kt), SD_CL_I32(n), SD_CL_I32(H), SD_CL_I32(d),
                                   SD_CL_I32(Lk), SD_CL_I32(0), SD_CL_I32(d), SD_CL_I32(1), SD_CL_I32(H * d)};
        size_t global = sd_cl_round_up(n, 64);
        if ((rc = sd_cl_run(cl, perm, t->name, args, SD_CL_NARGS(args), 1, &global, NULL)) != SD_OK) return rc;
        for (size_t q0 = 0; q0 < Lq; q0 += blk) {
            size_t nq = Lq - q0 < blk ? Lq - q0 : blk;
            struct sd_cl_gemm s = {
                .m = nq, .n = Lk, .k = d, .alpha = 1,
                .a = {qb.mem, qb.offs + (b * Lq + q0) * H * d * sizeof(float)}, .lda = H * d, .stride_a = d,
                .b = kt, .ldb = Lk, .stride_b = d * Lk,
                .c = sb, .ldc = Lk, .stride_c = nq * Lk, .batch = H, .what = t->name};
            if ((rc = sd_cl_gemm(cl, &s)) != SD_OK) return rc;
            if ((rc = sd_cl_softmax_rows(cl, sb, sb, H * nq, Lk, nq, q0, p.scale, p.causal, t->name)) != SD_OK)
                return rc;
            struct sd_cl_gemm o = {
                .m = nq, .n = dv, .k = Lk, .alpha = 1, .a = sb, .lda = Lk, .stride_a = nq * Lk,
                .b = {vb.mem, vb.offs + b * Lk * H * dv * sizeof(float)}, .ldb = H * dv, .stride_b = dv,
                .c = {ob.mem, ob.offs + (b * Lq + q0) * H * dv * sizeof(float)}, .ldc = H * dv, .stride_c = dv,
                .batch = H, .what = t->name};
            if ((rc = sd_cl_gemm(cl, &o)) != SD_OK) return rc;
        }
    }
    return SD_OK;
}

int sd_cl_op_attention(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2];
    const struct sd_attention_params p = t->p.attention;
    const size_t B = q->ne[1], Lq = q->ne[2], Lk = k->ne[2], H = p.n_heads;
    const size_t d = q->ne[3] / H, dv = v->ne[3] / H;
    struct sd_cl_buf qb, kb, vb, ob;
    int rc;
    if ((rc = sd_cl_buf_of(cl, q, &qb)) || (rc = sd_cl_buf_of(cl, k, &kb)) || (rc = sd_cl_buf_of(cl, v, &vb)) ||
        (rc = sd_cl_buf_of(cl, t, &ob)))
        return rc;
    if (cl->attn_gemm) return attention_gemm(cl, t, qb, kb, vb, ob);
    cl_kernel kern = sd_cl_kernel(cl, "attention", "kernel_attention_f32");
    if (!kern) return SD_ERR_BACKEND;
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
