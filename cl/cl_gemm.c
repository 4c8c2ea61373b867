/* cl_gemm.c - the GEMM behind conv2d, linear and matmul: CLBlast by default,
 * our kernels/gemm.cl with opts.cl_gemm = own or in precompiled mode (CLBlast
 * compiles its kernels from source at run time). Also the bias kernel.
 *
 * sd_cl_gemm takes row-major operands as stored (lda = row length of A as
 * stored, i.e. K for op(A) = A, M for op(A) = A^T) with byte offsets; CLBlast
 * wants element offsets, which the 64-byte arena alignment makes exact. Any
 * event CLBlast returns is released at once (the queue is in order).
 */
#include "cl_impl.h"

#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gemm_clblast(struct sd_cl *cl, const struct sd_cl_gemm *g) {
    cl_event ev = NULL;
    CLBlastTranspose ta = g->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = g->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode st;
    const char *call;
    if (g->batch == 1) {
        call = "CLBlastSgemm";
        st = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, g->alpha, g->a.mem, g->a.offs / 4, g->lda,
                          g->b.mem, g->b.offs / 4, g->ldb, g->beta, g->c.mem, g->c.offs / 4, g->ldc, &cl->queue, &ev);
    } else {
        call = "CLBlastSgemmStridedBatched";
        st = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, g->alpha, g->a.mem,
                                        g->a.offs / 4, g->lda, g->stride_a, g->b.mem, g->b.offs / 4, g->ldb,
                                        g->stride_b, g->beta, g->c.mem, g->c.offs / 4, g->ldc, g->stride_c, g->batch,
                                        &cl->queue, &ev);
    }
    if (ev) clReleaseEvent(ev);
    if (st != CLBlastSuccess) {
        char what[128];
        snprintf(what, sizeof what, "%s, %zux%zux%zu x%zu", g->what, g->m, g->n, g->k, g->batch);
        return sd_cl_check(cl->ctx, (cl_int)st, call, what);
    }
    return SD_OK;
}

/* Our kernels: the register-blocked NT kernel when both operands are
 * k-contiguous, the NN kernel when B is n-contiguous, else the tiled one. */
#define GEMM_VW 16 /* = VW in kernels/gemm.cl */

static int gemm_own(struct sd_cl *cl, const struct sd_cl_gemm *g) {
    if (!g->trans_a && g->trans_b) {
        cl_kernel k = sd_cl_kernel(cl, "gemm", "kernel_gemm_nt_f32");
        if (!k) return SD_ERR_BACKEND;
        struct sd_cl_arg args[] = {
            SD_CL_BUF(g->a), SD_CL_BUF(g->b), SD_CL_BUF(g->c), SD_CL_I32(g->m), SD_CL_I32(g->n), SD_CL_I32(g->k),
            SD_CL_I32(g->lda), SD_CL_I32(g->ldb), SD_CL_I32(g->ldc), SD_CL_U64(g->stride_a), SD_CL_U64(g->stride_b),
            SD_CL_U64(g->stride_c), SD_CL_F32(g->alpha), SD_CL_F32(g->beta),
        };
        size_t global[3] = {(g->n + 3) / 4, (g->m + 3) / 4, g->batch};
        return sd_cl_run(cl, k, g->what, args, SD_CL_NARGS(args), 3, global, NULL);
    }
    if (!g->trans_b) {
        cl_kernel k = sd_cl_kernel(cl, "gemm", "kernel_gemm_nn_f32");
        if (!k) return SD_ERR_BACKEND;
        int sam = g->trans_a ? 1 : (int)g->lda, sak = g->trans_a ? (int)g->lda : 1;
        struct sd_cl_arg args[] = {
            SD_CL_BUF(g->a), SD_CL_BUF(g->b), SD_CL_BUF(g->c), SD_CL_I32(g->m), SD_CL_I32(g->n), SD_CL_I32(g->k),
            SD_CL_I32(sam), SD_CL_I32(sak), SD_CL_I32(g->ldb), SD_CL_I32(g->ldc), SD_CL_U64(g->stride_a),
            SD_CL_U64(g->stride_b), SD_CL_U64(g->stride_c), SD_CL_F32(g->alpha), SD_CL_F32(g->beta),
        };
        size_t global[3] = {(g->n + GEMM_VW - 1) / GEMM_VW, (g->m + 7) / 8, g->batch};
        return sd_cl_run(cl, k, g->what, args, SD_CL_NARGS(args), 3, global, NULL);
    }
    cl_kernel k = sd_cl_kernel(cl, "gemm", "kernel_gemm_f32");
    if (!k) return SD_ERR_BACKEND;
    int sam = g->trans_a ? 1 : (int)g->lda, sak = g->trans_a ? (int)g->lda : 1;
    int sbk = g->trans_b ? 1 : (int)g->ldb, sbn = g->trans_b ? (int)g->ldb : 1;
    struct sd_cl_arg args[] = {
        SD_CL_BUF(g->a), SD_CL_BUF(g->b), SD_CL_BUF(g->c),
        SD_CL_I32(g->m), SD_CL_I32(g->n), SD_CL_I32(g->k), SD_CL_I32(sam), SD_CL_I32(sak), SD_CL_I32(sbk),
        SD_CL_I32(sbn), SD_CL_I32(g->ldc), SD_CL_U64(g->stride_a), SD_CL_U64(g->stride_b), SD_CL_U64(g->stride_c),
        SD_CL_F32(g->alpha), SD_CL_F32(g->beta),
    };
    size_t local[3] = {16, 16, 1};
    size_t global[3] = {sd_cl_round_up(g->n, 64) / 4, sd_cl_round_up(g->m, 64) / 4, g->batch};
    return sd_cl_run(cl, k, g->what, args, (int)(sizeof args / sizeof args[0]), 3, global, local);
}

/* CLBlast's Xgemm parameters for CPU-type devices, from the search in
 * bench/bench_cl.c (tune) on PoCL: 1024^3 went from 3.2 (CLBlast's default
 * for CPUs) to 8.7 GFLOP/s under the same load (docs/opencl.md). Order:
 * GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN. */
static const char *xgemm_names[16] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                                      "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"};
static const size_t xgemm_cpu[16] = {0, 1, 32, 2, 8, 8, 64, 8, 8, 128, 0, 0, 0, 0, 4, 16};

void sd_cl_gemm_init(struct sd_cl *cl, int xgemm_tuned) {
    if (cl->gemm_own || strcmp(cl->info.type, "cpu") != 0 || !xgemm_tuned) return;
    CLBlastStatusCode st = CLBlastOverrideParameters(cl->dev, "Xgemm", CLBlastPrecisionSingle, 16, xgemm_names, xgemm_cpu);
    if (st != CLBlastSuccess && cl->log_info)
        sd_logf(&cl->log, SD_LOG_INFO, "opencl: CLBlastOverrideParameters(Xgemm) = %d; CLBlast defaults used", (int)st);
}

/* The NN kernel streams a whole K column strip of B per work-item;
 * splitting K into chunks of GEMM_KC (accumulating with beta = 1 after the
 * first) keeps each launch's operands in cache: 1024^3 on PoCL went from
 * ~9 to ~15-18 GFLOP/s (64..256 all help; 128 measured best). */
#define GEMM_KC 128

int sd_cl_gemm(struct sd_cl *cl, const struct sd_cl_gemm *g) {
    if (g->m == 0 || g->n == 0 || g->batch == 0) return SD_OK;
    if (!cl->gemm_own) return gemm_clblast(cl, g);
    const size_t kc = GEMM_KC;
    if (g->k <= kc || g->trans_b) return gemm_own(cl, g); /* NT: whole rows measure best */
    for (size_t k0 = 0; k0 < g->k; k0 += kc) {
        struct sd_cl_gemm s = *g;
        s.k = g->k - k0 < kc ? g->k - k0 : kc;
        s.beta = k0 ? 1.0f : g->beta;
        /* element (m, k0) of op(A) and (k0, n) of op(B) */
        s.a.offs += (g->trans_a ? k0 * g->lda : k0) * sizeof(float);
        s.b.offs += (g->trans_b ? k0 : k0 * g->ldb) * sizeof(float);
        int rc = gemm_own(cl, &s);
        if (rc != SD_OK) return rc;
    }
    return SD_OK;
}

int sd_cl_bias(struct sd_cl *cl, struct sd_cl_buf y, struct sd_cl_buf bias, size_t n, size_t inner, size_t channels,
               const char *what) {
    cl_kernel k = sd_cl_kernel(cl, "bias", "kernel_bias_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_arg args[] = {SD_CL_BUF(y), SD_CL_BUF(bias), SD_CL_I32(n), SD_CL_I32(inner), SD_CL_I32(channels)};
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, what, args, SD_CL_NARGS(args), 1, &global, NULL);
}
