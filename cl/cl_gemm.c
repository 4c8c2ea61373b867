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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The end of a CLBlast call: its event released (the queue is in order),
 * its status as ours, naming the call and the problem. */
static int clblast_status(struct sd_cl *cl, const struct sd_cl_gemm *g, CLBlastStatusCode st, cl_event ev,
                          const char *call) {
    if (ev) clReleaseEvent(ev);
    if (st == CLBlastSuccess) return SD_OK;
    char what[128];
    snprintf(what, sizeof what, "%s, %zux%zux%zu x%zu", g->what, g->m, g->n, g->k, g->batch);
    return sd_cl_check(cl->ctx, (cl_int)st, call, what);
}

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
    return clblast_status(cl, g, st, ev, call);
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

/* --- half GEMMs (precision f16 on a device with cl_khr_fp16) ------------- */

/* Elements an operand spans: (batch - 1) * stride + rows * ld. */
static size_t span(size_t batch, size_t stride, size_t rows, size_t ld) { return (batch - 1) * stride + rows * ld; }

int sd_cl_narrow(struct sd_cl *cl, struct sd_cl_buf x, struct sd_cl_buf y, size_t n, const char *what) {
    cl_kernel k = sd_cl_kernel(cl, "half", "kernel_narrow_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_arg args[] = {SD_CL_BUF(x), SD_CL_BUF(y), SD_CL_I32(n)};
    size_t global = sd_cl_round_up((n + 3) / 4, 64);
    return sd_cl_run(cl, k, what, args, SD_CL_NARGS(args), 1, &global, NULL);
}

int sd_cl_widen(struct sd_cl *cl, struct sd_cl_buf x, struct sd_cl_buf y, size_t rows, size_t cols, size_t ldy,
                const char *what) {
    cl_kernel k = sd_cl_kernel(cl, "half", "kernel_widen_f16");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_arg args[] = {SD_CL_BUF(x), SD_CL_BUF(y), SD_CL_I32(rows), SD_CL_I32(cols), SD_CL_I32(ldy)};
    size_t global[2] = {sd_cl_round_up((cols + 3) / 4, 64), rows};
    return sd_cl_run(cl, k, what, args, SD_CL_NARGS(args), 2, global, NULL);
}

/* The test double of CLBlast's HGEMM on a device without cl_khr_fp16
 * (opts.cl_test_hgemm): the three half operands widened into f32 buffers,
 * the f32 GEMM, C narrowed back - so the data path around the half GEMM
 * (operands narrowed, C widened into the arena) runs and is checked on
 * PoCL. */
static int gemm_half_emulated(struct sd_cl *cl, const struct sd_cl_gemm *g) {
    const size_t na = span(g->batch, g->stride_a, g->trans_a ? g->k : g->m, g->lda);
    const size_t nb = span(g->batch, g->stride_b, g->trans_b ? g->n : g->k, g->ldb);
    const size_t nc = span(g->batch, g->stride_c, g->m, g->ldc);
    const size_t ob = sd_cl_round_up(na, 16) * 4, oc = ob + sd_cl_round_up(nb, 16) * 4, bytes = oc + nc * 4;
    int rc = sd_cl_grow(cl, &cl->emu, &cl->emu_size, bytes, "half gemm emulation");
    if (rc != SD_OK) return rc;
    struct sd_cl_gemm f = *g;
    f.a = (struct sd_cl_buf){cl->emu, 0}, f.b = (struct sd_cl_buf){cl->emu, ob}, f.c = (struct sd_cl_buf){cl->emu, oc};
    if ((rc = sd_cl_widen(cl, g->a, f.a, 1, na, na, g->what)) || (rc = sd_cl_widen(cl, g->b, f.b, 1, nb, nb, g->what)) ||
        (g->beta != 0 && (rc = sd_cl_widen(cl, g->c, f.c, 1, nc, nc, g->what))) || (rc = sd_cl_gemm(cl, &f)))
        return rc;
    return sd_cl_narrow(cl, f.c, g->c, nc, g->what);
}

int sd_cl_gemm_half(struct sd_cl *cl, const struct sd_cl_gemm *g) {
    if (g->m == 0 || g->n == 0 || g->batch == 0) return SD_OK;
    if (cl->hgemm_emulated) return gemm_half_emulated(cl, g);
    cl_event ev = NULL;
    CLBlastTranspose ta = g->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = g->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    const cl_half alpha = sd_f32_to_f16(g->alpha), beta = sd_f32_to_f16(g->beta);
    CLBlastStatusCode st;
    const char *call;
    if (g->batch == 1) {
        call = "CLBlastHgemm";
        st = CLBlastHgemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, alpha, g->a.mem, g->a.offs / 2, g->lda,
                          g->b.mem, g->b.offs / 2, g->ldb, beta, g->c.mem, g->c.offs / 2, g->ldc, &cl->queue, &ev);
    } else {
        call = "CLBlastHgemmStridedBatched";
        st = CLBlastHgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, alpha, g->a.mem,
                                        g->a.offs / 2, g->lda, g->stride_a, g->b.mem, g->b.offs / 2, g->ldb,
                                        g->stride_b, beta, g->c.mem, g->c.offs / 2, g->ldc, g->stride_c, g->batch,
                                        &cl->queue, &ev);
    }
    return clblast_status(cl, g, st, ev, call);
}

int sd_cl_gemm_wh(struct sd_cl *cl, const struct sd_cl_gemm *g, bool a_is_weight) {
    if (g->m == 0 || g->n == 0 || g->batch == 0) return SD_OK;
    if (g->beta != 0 || (g->batch > 1 && g->stride_c != g->m * g->ldc))
        return sd_errorf(cl->ctx, SD_ERR_INVALID, "cl: half gemm %s: C must be written whole, in rows", g->what);
    const struct sd_cl_buf x = a_is_weight ? g->b : g->a;
    const size_t nx = a_is_weight ? span(g->batch, g->stride_b, g->trans_b ? g->n : g->k, g->ldb)
                                  : span(g->batch, g->stride_a, g->trans_a ? g->k : g->m, g->lda);
    const size_t nc = g->batch * g->m * g->n, oc = sd_cl_round_up(nx * 2, 64);
    cl_mem hs;
    int rc = sd_cl_hscratch(cl, oc + nc * 2, &hs);
    if (rc != SD_OK || (rc = sd_cl_narrow(cl, x, (struct sd_cl_buf){hs, 0}, nx, g->what)) != SD_OK) return rc;
    cl->half_gemms++;
    struct sd_cl_gemm h = *g;
    if (a_is_weight) h.b = (struct sd_cl_buf){hs, 0};
    else h.a = (struct sd_cl_buf){hs, 0};
    h.c = (struct sd_cl_buf){hs, oc}, h.ldc = g->n, h.stride_c = g->m * g->n;
    if ((rc = sd_cl_gemm_half(cl, &h)) != SD_OK) return rc;
    return sd_cl_widen(cl, h.c, g->c, g->batch * g->m, g->n, g->ldc, g->what);
}

/* The start-up check of a device's half GEMM: 64 x 64 x 2880 (the UNet's
 * 3x3 conv depth at 320 channels) of values in [-1, 1) against a double
 * reference of the same halves. A driver whose half arithmetic is broken
 * (some report cl_khr_fp16 and return garbage) fails it and the backend
 * keeps f32 GEMMs. Limit: 5% of the largest |result|: CLBlast accumulates
 * in half, ~1.2% expected at this depth (a simulation of sequential half
 * accumulation; with f32 accumulation it would be 0.03%); garbage is O(1). */
int sd_cl_hgemm_check(struct sd_cl *cl, double *rel_err) {
    enum { M = 64, N = 64, K = 2880 };
    const size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    uint16_t *h = malloc((na + nb + nc) * sizeof *h);
    double *ref = calloc(nc, sizeof *ref);
    int rc = SD_OK;
    cl_mem m = NULL;
    *rel_err = INFINITY;
    if (!h || !ref) {
        rc = sd_errorf(cl->ctx, SD_ERR_NOMEM, "opencl: out of memory (half gemm check)");
        goto done;
    }
    uint64_t s = 12345;
    for (size_t i = 0; i < na + nb; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = sd_f32_to_f16((float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0));
    }
    for (size_t i = 0; i < M; i++)
        for (size_t k = 0; k < K; k++) {
            double a = sd_f16_to_f32(h[i * K + k]);
            for (size_t j = 0; j < N; j++) ref[i * N + j] += a * sd_f16_to_f32(h[na + k * N + j]);
        }
    cl_int err = CL_SUCCESS;
    m = clCreateBuffer(cl->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, (na + nb + nc) * 2, h, &err);
    if ((rc = sd_cl_check(cl->ctx, err, "clCreateBuffer", "half gemm check")) != SD_OK) goto done;
    struct sd_cl_gemm g = {.m = M, .n = N, .k = K, .alpha = 1, .a = {m, 0}, .b = {m, na * 2}, .c = {m, (na + nb) * 2},
                           .lda = K, .ldb = N, .ldc = N, .batch = 1, .what = "half gemm check"};
    if ((rc = sd_cl_gemm_half(cl, &g)) != SD_OK) goto done;
    err = clEnqueueReadBuffer(cl->queue, m, CL_TRUE, (na + nb) * 2, nc * 2, h, 0, NULL, NULL);
    if ((rc = sd_cl_check(cl->ctx, err, "clEnqueueReadBuffer", "half gemm check")) != SD_OK) goto done;
    double mx = 0, ref_max = 0;
    for (size_t i = 0; i < nc; i++) {
        double d = fabs((double)sd_f16_to_f32(h[i]) - ref[i]);
        mx = isnan(d) || d > mx ? (isnan(d) ? INFINITY : d) : mx;
        ref_max = fmax(ref_max, fabs(ref[i]));
    }
    *rel_err = ref_max > 0 ? mx / ref_max : INFINITY;
done:
    if (m) clReleaseMemObject(m);
    free(h);
    free(ref);
    return rc;
}

int sd_cl_bias(struct sd_cl *cl, struct sd_cl_buf y, struct sd_cl_buf bias, size_t n, size_t inner, size_t channels,
               const char *what) {
    cl_kernel k = sd_cl_kernel(cl, "bias", "kernel_bias_f32");
    if (!k) return SD_ERR_BACKEND;
    struct sd_cl_arg args[] = {SD_CL_BUF(y), SD_CL_BUF(bias), SD_CL_I32(n), SD_CL_I32(inner), SD_CL_I32(channels)};
    size_t global = sd_cl_round_up(n, 256);
    return sd_cl_run(cl, k, what, args, SD_CL_NARGS(args), 1, &global, NULL);
}
