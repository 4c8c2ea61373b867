/* op_conv2d.c - conv2d on OpenCL as GEMM: out[n][Co, P] = W[Co, K] x col[K, P]
 * with K = Ci*kh*kw, P = OH*OW. 1x1/stride-1/unpadded convs multiply the
 * input directly (batched, A stride 0); others build im2col columns in the
 * scratch buffer, in chunks of output pixels so that the columns stay under
 * 64 MiB (a 512x512 VAE conv would need GiBs at once). Bias is added by the
 * bias kernel afterwards. Asymmetric padding is handled (im2col reads the
 * four pads). */
#include "cl_impl.h"

#define COL_BYTES_MAX ((size_t)64 << 20)

int sd_cl_op_conv2d(struct sd_cl *cl, struct sd_tensor *t) {
    const struct sd_tensor *x = t->src[0], *w = t->src[1], *b = t->src[2];
    const struct sd_conv2d_params p = t->p.conv2d;
    const size_t N = x->ne[0], Ci = x->ne[1], H = x->ne[2], W = x->ne[3];
    const size_t Co = w->ne[0], kh = w->ne[2], kw = w->ne[3], OH = t->ne[2], OW = t->ne[3];
    const size_t K = Ci * kh * kw, P = OH * OW;
    struct sd_cl_buf xb, wb, yb, bb;
    int rc;
    /* Precision f16 with half GEMMs: W stays in half, the input or its
     * columns are narrowed for each GEMM (sd_cl_gemm_wh). */
    const bool half = sd_cl_weight_half(cl, w, &wb, &rc);
    if (rc || (!half && (rc = sd_cl_weight_f32(cl, w, false, &wb)))) return rc;
    if ((rc = sd_cl_buf_of(cl, x, &xb)) || (rc = sd_cl_buf_of(cl, t, &yb))) return rc;
    if (b && (rc = sd_cl_buf_of(cl, b, &bb))) return rc;
    bool direct = kh == 1 && kw == 1 && p.stride_h == 1 && p.stride_w == 1 && !p.pad_t && !p.pad_l && !p.pad_b &&
                  !p.pad_r;
    if (direct) {
        struct sd_cl_gemm g = {.m = Co, .n = P, .k = Ci, .alpha = 1, .a = wb, .b = xb, .c = yb, .lda = Ci, .ldb = P,
                               .ldc = P, .stride_a = 0, .stride_b = Ci * P, .stride_c = Co * P, .batch = N,
                               .what = t->name};
        if ((rc = half ? sd_cl_gemm_wh(cl, &g, true) : sd_cl_gemm(cl, &g)) != SD_OK) return rc;
    } else {
        cl_kernel k = sd_cl_kernel(cl, "im2col", "kernel_im2col_f32");
        if (!k) return SD_ERR_BACKEND;
        size_t pc = P;
        while (pc > 64 && K * pc * 4 > COL_BYTES_MAX) pc = (pc + 1) / 2;
        cl_mem col;
        if ((rc = sd_cl_scratch(cl, K * pc * 4, &col)) != SD_OK) return rc;
        for (size_t n = 0; n < N; n++)
            for (size_t p0 = 0; p0 < P; p0 += pc) {
                size_t np = P - p0 < pc ? P - p0 : pc;
                struct sd_cl_buf xn = {xb.mem, xb.offs + n * Ci * H * W * 4};
                struct sd_cl_arg args[] = {
                    SD_CL_BUF(xn), SD_CL_MEM(col), SD_CL_U64(0), SD_CL_I32(H), SD_CL_I32(W), SD_CL_I32(kh),
                    SD_CL_I32(kw), SD_CL_I32(p.stride_h), SD_CL_I32(p.stride_w), SD_CL_I32(p.pad_t),
                    SD_CL_I32(p.pad_l), SD_CL_I32(OW), SD_CL_I32(p0), SD_CL_I32(np), SD_CL_I32(K),
                };
                size_t local[2] = {64, 1}, global[2] = {sd_cl_round_up((np + 15) / 16, 64), K}; /* IM2COL_PX */
                if ((rc = sd_cl_run(cl, k, t->name, args, SD_CL_NARGS(args), 2, global, local)) != SD_OK) return rc;
                struct sd_cl_gemm g = {.m = Co, .n = np, .k = K, .alpha = 1, .a = wb, .b = {col, 0},
                                       .c = {yb.mem, yb.offs + (n * Co * P + p0) * 4}, .lda = K, .ldb = np,
                                       .ldc = P, .batch = 1, .what = t->name};
                if ((rc = half ? sd_cl_gemm_wh(cl, &g, true) : sd_cl_gemm(cl, &g)) != SD_OK) return rc;
            }
    }
    if (b) return sd_cl_bias(cl, yb, bb, N * Co * P, P, Co, t->name);
    return SD_OK;
}
