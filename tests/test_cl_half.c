/* test_cl_half.c - precision f16 on the OpenCL backend (PoCL here): the
 * convolution and linear weights are held on the device in half and widened
 * to f32 for the GEMM (this device has no cl_khr_fp16, so the GEMMs stay
 * f32).
 *
 * For each GEMM op case at SD shapes (3x3 conv through im2col, the strided
 * and asymmetric-pad convs, 1x1 conv multiplied directly, linear through
 * the transposed copy our GEMM kernels take): the f16 backend's output must
 * be bit-identical to the f32 backend's on the same weights rounded to half
 * by the host (round to nearest even): so the device copy holds exactly the
 * rounded values and nothing else changed. That output also matches the CPU
 * backend (f32) on the rounded weights within test_cl_ops' limits (the
 * shared table of cl_op_cases.h; small shapes in the ASan run); it
 * differs from the unrounded weights' output (by about 2^-11 relative: the
 * half rounding, printed); the device holds the GEMM weights in half the
 * bytes and the biases in f32. A weight with a value beyond half's range
 * (65504) stays in f32 (counted), its output equal to f32 mode's. auto
 * keeps f32 here.
 *
 * The half-GEMM path of a device with cl_khr_fp16 (CLBlast HGEMM) runs here
 * with the HGEMM emulated (opts.cl_test_hgemm: widen, f32 GEMM, narrow):
 * on f16-exact inputs and weights it must match the CPU within C's
 * rounding to half, and visibly round. The start-up check of a device's
 * half GEMM passes the emulated one and fails CLBlast's on this device.
 */
#include "cl_test_opts.h"
#include "cl_impl.h"
#include "cl_op_cases.h"

static struct sd_tensor *b_lin_range(struct sd_graph *g, struct tc *tc) {
    /* One weight per statement: tc->w[] order is creation order (w[0] the weight). */
    struct sd_tensor *x = IN(tc, g, 2, 5, 96);
    struct sd_tensor *w = W(tc, 2, 40, 96);
    return sd_linear(g, x, w, W(tc, 1, 40));
}

/* Rounds the GEMM weights (2+ dims; biases stay) to half in place and
 * returns the bytes the device should hold for them in half mode. */
static size_t round_weights(struct tc *tc) {
    size_t bytes = 0;
    for (int i = 0; i < tc->n_w; i++) {
        struct sd_tensor *w = tc->w[i];
        int64_t n = sd_tensor_nelements(w);
        if (w->n_dims < 2) {
            bytes += (size_t)n * sizeof(float);
            continue;
        }
        float *x = w->data;
        for (int64_t j = 0; j < n; j++) x[j] = sd_f16_to_f32(sd_f32_to_f16(x[j]));
        bytes += (size_t)n * 2;
    }
    return bytes;
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static void run_case(struct sd_ctx *ctx, struct sd_backend *clh, struct sd_backend *clf, struct sd_backend *cpu,
                     const struct op_case *c) {
    struct sd_cl *h = clh->impl;
    struct sd_backend *half_be[2] = {clh, cpu}, *f32_be[2] = {clf, cpu};
    struct tc tc = {0};
    int64_t n[4] = {0};
    int on_cl = 0, nc = 0;
    size_t uploads0 = h->half_uploads;
    float *got_h = tc_run(ctx, half_be, 2, c->build, &tc, &n[0], &on_cl, &nc);
    float *got_f = tc_run(ctx, f32_be, 2, c->build, &tc, &n[1], NULL, NULL);
    size_t held = h->weight_bytes, want = round_weights(&tc);
    sd_backend_weights_changed(clf, tc.w, tc.n_w); /* same pointers, new bytes */
    float *got_r = tc_run(ctx, f32_be, 2, c->build, &tc, &n[2], NULL, NULL);
    float *ref = tc_run(ctx, &cpu, 1, c->build, &tc, &n[3], NULL, NULL);
    bool ok = got_h && got_f && got_r && ref && n[0] == n[1] && n[1] == n[2] && n[2] == n[3] && on_cl == nc;
    CHECK(ok && !memcmp(got_h, got_r, (size_t)n[0] * sizeof(float)) && h->half_uploads > uploads0,
          "%s: f16 mode on opencl (%d of %d nodes) = f32 mode on the weights rounded to half, bit for bit", c->name,
          on_cl, nc);
    double mx = 0;
    CHECK(ok && !check_close(c->name, got_h, ref, n[0], c->atol, c->rtol, &mx),
          "%s: f16 mode matches the cpu on the rounded weights (max abs err %.2g, limit %.0e + %.0e*|ref|)", c->name,
          mx, c->atol, c->rtol);
    double dev = 0, scale = ok ? max_abs(got_f, n[1]) : 0;
    for (int64_t i = 0; ok && i < n[0]; i++) dev = fmax(dev, fabs(got_h[i] - got_f[i]));
    CHECK(ok && dev > 0 && dev < 2e-3 * scale,
          "%s: f16 mode differs from the unrounded weights' output by half's rounding (max %.2g = %.1e of max|out| %.3g)",
          c->name, dev, scale > 0 ? dev / scale : 0, scale);
    CHECK(held == want, "%s: device holds the GEMM weights in half, biases in f32 (%zu bytes, want %zu)", c->name, held,
          want);
    sd_backend_weights_released(clh, tc.w, tc.n_w);
    sd_backend_weights_released(clf, tc.w, tc.n_w);
    free(got_h), free(got_f), free(got_r), free(ref);
    tc_free(&tc);
}

/* The half-GEMM path (a device with cl_khr_fp16; here its HGEMM emulated
 * under opts.cl_test_hgemm): inputs and weights f16-exact, so the only
 * rounding left is of C to half (2^-11 relative) before the f32 bias:
 * |got - cpu| <= atol + 2^-11 max|bias| + (rtol + 2^-11)|cpu|, and C's
 * rounding must show (the error exceeds the f32 limit somewhere). The
 * graph says it accepts half activations (graph.h half_ok, as the UNet and
 * text encoder builders do); the same graph without it (the VAE's case)
 * runs no half GEMM and stays within the f32 limits. */
static tc_build_fn half_inner;
static struct sd_tensor *half_ok_build(struct sd_graph *g, struct tc *tc) {
    g->half_ok = 1;
    return half_inner(g, tc);
}

static void run_case_hgemm(struct sd_ctx *ctx, struct sd_backend *clx, struct sd_backend *cpu,
                           const struct op_case *c) {
    struct sd_cl *x = clx->impl;
    struct sd_backend *be[2] = {clx, cpu};
    struct tc tc = {.in_half = 1};
    int64_t n0 = 0, n1 = 0;
    int on_cl = 0, nc = 0;
    free(tc_run(ctx, &cpu, 1, c->build, &tc, &n0, NULL, NULL)); /* makes the weights */
    size_t want = round_weights(&tc);
    double bmax = 0;
    for (int i = 0; i < tc.n_w; i++)
        if (tc.w[i]->n_dims == 1) bmax = fmax(bmax, max_abs(tc.w[i]->data, sd_tensor_nelements(tc.w[i])));
    float *ref = tc_run(ctx, &cpu, 1, c->build, &tc, &n0, NULL, NULL);
    half_inner = c->build;
    const size_t hg0 = x->half_gemms;
    float *got = tc_run(ctx, be, 2, half_ok_build, &tc, &n1, &on_cl, &nc);
    const size_t hg1 = x->half_gemms, held = x->weight_bytes;
    int64_t n2 = 0;
    float *plain = tc_run(ctx, be, 2, c->build, &tc, &n2, NULL, NULL);
    const double u = 1.0 / 2048, atol = c->atol + u * bmax, rtol = c->rtol + u;
    double mx = 0, f32_lim = 0;
    bool ok = got && ref && n0 == n1 && on_cl == nc;
    for (int64_t i = 0; ok && i < n0; i++)
        f32_lim = fmax(f32_lim, fabs(got[i] - ref[i]) - (c->atol + c->rtol * fabs(ref[i])));
    CHECK(ok && !check_close(c->name, got, ref, n0, atol, rtol, &mx) && f32_lim > 0 && held == want && hg1 > hg0,
          "%s: half GEMM (emulated HGEMM; %d of %d nodes on opencl) matches the cpu on f16-exact operands within C's "
          "rounding (max abs err %.2g, limit %.2g + %.2g*|ref|; beyond the f32 limit by up to %.2g), weights in half "
          "(%zu bytes)",
          c->name, on_cl, nc, mx, atol, rtol, f32_lim, held);
    double mp = 0;
    CHECK(plain && n2 == n0 && x->half_gemms == hg1 && !check_close(c->name, plain, ref, n0, c->atol, c->rtol, &mp),
          "%s: a graph without half_ok runs no half GEMM on the same backend: within the f32 limits (max abs err %.2g)",
          c->name, mp);
    sd_backend_weights_released(clx, tc.w, tc.n_w);
    free(got), free(ref), free(plain);
    tc_free(&tc);
}

/* A weight with a value half cannot hold stays in f32 in half mode. */
static void check_range(struct sd_ctx *ctx, struct sd_backend *clh, struct sd_backend *clf, struct sd_backend *cpu) {
    struct sd_cl *h = clh->impl;
    struct sd_backend *half_be[2] = {clh, cpu}, *f32_be[2] = {clf, cpu};
    struct tc tc = {0};
    int64_t n0 = 0, n1 = 0;
    free(tc_run(ctx, &cpu, 1, b_lin_range, &tc, &n0, NULL, NULL)); /* makes the weights */
    ((float *)tc.w[0]->data)[123] = 1.0e5f; /* > 65504 */
    size_t fb0 = h->half_fallbacks;
    float *got_h = tc_run(ctx, half_be, 2, b_lin_range, &tc, &n0, NULL, NULL);
    float *got_f = tc_run(ctx, f32_be, 2, b_lin_range, &tc, &n1, NULL, NULL);
    CHECK(got_h && got_f && n0 == n1 && !memcmp(got_h, got_f, (size_t)n0 * sizeof(float)) &&
              h->half_fallbacks == fb0 + 1 && h->weight_bytes == 40 * 96 * 4 + 40 * 4,
          "a weight holding 1e5 (beyond half's 65504) stays in f32 in f16 mode (%zu fallback, %zu bytes held); "
          "output = f32 mode's",
          h->half_fallbacks - fb0, h->weight_bytes);
    /* The value back in range and weights_changed (as after a LoRA merge):
     * the weight's copy is dropped and uploaded again, now in half. */
    ((float *)tc.w[0]->data)[123] = 0.5f;
    sd_backend_weights_changed(clh, tc.w, 1);
    const size_t dropped = h->weight_bytes, hu0 = h->half_uploads;
    free(got_h);
    got_h = tc_run(ctx, half_be, 2, b_lin_range, &tc, &n0, NULL, NULL);
    CHECK(got_h && dropped == 40 * 4 && h->half_uploads == hu0 + 1 && h->weight_bytes == 40 * 96 * 2 + 40 * 4,
          "weights_changed drops the weight's copy (%zu bytes left: the bias) and the next graph uploads it in half "
          "(%zu bytes held)", dropped, h->weight_bytes);
    sd_backend_weights_released(clh, tc.w, tc.n_w);
    sd_backend_weights_released(clf, tc.w, tc.n_w);
    free(got_h), free(got_f);
    tc_free(&tc);
}

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    cl_test_backend_opts(&o);
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, &o);
    struct sd_backend *clf = sd_cl_backend_new(&ctx, &o);
    o.precision = SD_PRECISION_F16;
    struct sd_backend *clh = sd_cl_backend_new(&ctx, &o);
    CHECK(cpu && clf && clh, "cpu, opencl f32 and opencl f16 backends (%s)", ctx.msg);
    if (!cpu || !clf || !clh) return test_summary();
    struct sd_cl *h = clh->impl, *f = clf->impl;
    CHECK(h->half_weights && !f->half_weights && !h->info.fp16,
          "precision f16 holds weights in half on %s (no cl_khr_fp16: GEMMs in f32); f32 does not", h->info.name);
    const char *sv = getenv("SDRT_TEST_SAN"); /* the ASan run: small shapes, as test_cl_ops */
    cl_cases_small = sv && *sv && *sv != '0';
    /* The GEMM cases of the shared table, with its limits. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strncmp(cases[i].name, "conv2d", 6) || !strncmp(cases[i].name, "linear", 6))
            run_case(&ctx, clh, clf, cpu, &cases[i]);
    check_range(&ctx, clh, clf, cpu);
    o.precision = SD_PRECISION_F16;
    o.cl_test_hgemm = 1;
    struct sd_backend *clx = sd_cl_backend_new(&ctx, &o);
    o.cl_test_hgemm = 0;
    CHECK(clx && ((struct sd_cl *)clx->impl)->hgemm && ((struct sd_cl *)clx->impl)->hgemm_emulated,
          "precision f16 with the half-GEMM test hook takes the half-GEMM path, emulated on %s", h->info.name);
    for (size_t i = 0; clx && i < sizeof cases / sizeof cases[0]; i++)
        if (!strncmp(cases[i].name, "conv2d", 6) || !strncmp(cases[i].name, "linear", 6))
            run_case_hgemm(&ctx, clx, cpu, &cases[i]);
    /* The start-up check of a device's half GEMM: passes the emulated one
     * (only C's rounding: <= 2^-11 of the largest result), and CLBlast's
     * HGEMM on a device without cl_khr_fp16 fails with its error. */
    double err = -1;
    int rc = clx ? sd_cl_hgemm_check(clx->impl, &err) : -1;
    CHECK(rc == SD_OK && err > 0 && err <= 1.0 / 2048, "half GEMM check passes the emulated HGEMM (error %.2g of max)", err);
    sd_backend_free(clx);
    o.precision = SD_PRECISION_F32;
    o.cl_gemm = SD_CL_GEMM_CLBLAST;
    struct sd_backend *clb = sd_cl_backend_new(&ctx, &o);
    struct sd_cl *b = clb ? clb->impl : NULL;
    if (b) b->hgemm = 1; /* as precision_pick does before the check */
    rc = b ? sd_cl_hgemm_check(b, &err) : -1;
    CHECK(rc == SD_ERR_BACKEND && strstr(ctx.msg, "CLBlastHgemm") && isinf(err),
          "half GEMM check on CLBlast without cl_khr_fp16 fails: %s", ctx.msg);
    sd_ctx_clear(&ctx);
    sd_backend_free(clb);
    o.precision = SD_PRECISION_AUTO;
    struct sd_backend *cla = sd_cl_backend_new(&ctx, &o);
    CHECK(cla && !((struct sd_cl *)cla->impl)->half_weights,
          "precision auto on a device without cl_khr_fp16 (PoCL) keeps f32 weights");
    sd_backend_free(cla);
    sd_backend_free(clh);
    sd_backend_free(clf);
    sd_backend_free(cpu);
    return test_summary();
}
