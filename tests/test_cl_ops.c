/* test_cl_ops.c - every op on the OpenCL backend (PoCL here) against the CPU
 * backend, at SD shapes (reduced where PoCL on 2 cores is slow; shrunk
 * further under SDRT_TEST_SAN=1), plus an independent double-precision
 * reference for attention, and the fallback paths: ops disabled with
 * opts.cl_disable, a program that fails to build (opts.cl_test_break) and
 * a device error (opts.cl_test_fail) all run on the CPU and give the CPU's
 * result. SDRT_CL_GEMM=own|clblast (read by this test) picks the GEMM engine.
 *
 * Per case: every compute node must be placed on OpenCL, the result must be
 * finite, and |cl - cpu| <= atol + rtol*|cpu| everywhere (limits per op in
 * the table: 1e-5-ish for elementwise ops, looser for reductions and GEMMs
 * whose summation order differs). The max error is printed.
 */
#include "cl_test_opts.h"
#include "cl_impl.h"
#include "cl_op_cases.h"

/* Naive double-precision attention (independent of both backends). */
static void attention_ref(const float *q, const float *k, const float *v, float *o, int B, int Lq, int Lk, int H,
                          int d, int dv, double scale, int causal) {
    double *s = malloc(sizeof(double) * Lk);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Lq; i++) {
                const float *qr = q + ((size_t)b * Lq + i) * H * d + h * d;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < Lk; j++) {
                    const float *kr = k + ((size_t)b * Lk + j) * H * d + h * d;
                    double acc = 0;
                    for (int c = 0; c < d; c++) acc += (double)qr[c] * kr[c];
                    s[j] = causal && j > i ? -INFINITY : acc * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < Lk; j++) sum += s[j] = exp(s[j] - mx);
                for (int c = 0; c < dv; c++) {
                    double acc = 0;
                    for (int j = 0; j < Lk; j++) acc += s[j] * v[((size_t)b * Lk + j) * H * dv + h * dv + c];
                    o[((size_t)b * Lq + i) * H * dv + h * dv + c] = (float)(acc / sum);
                }
            }
    free(s);
}

static void check_attention_naive(struct sd_ctx *ctx, struct sd_backend *cl, struct sd_backend *cpu) {
    struct sd_backend *both[2] = {cl, cpu};
    struct tc tc = {0};
    int64_t n = 0;
    float *got = tc_run(ctx, both, 2, b_attn_clip, &tc, &n, NULL, NULL);
    /* Inputs are regenerated deterministically: same seeds as tc_fill_inputs. */
    float *q = malloc(sizeof(float) * 77 * 768 * 3), *k = q + 77 * 768, *v = k + 77 * 768;
    float *ref = malloc(sizeof(float) * 77 * 768);
    float *ins[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        fill_random(ins[i], 77 * 768, 17 + i);
        for (int j = 0; j < 77 * 768; j++) ins[i][j] *= 2;
    }
    attention_ref(q, k, v, ref, 1, 77, 77, 12, 64, 64, 0.125, 1);
    double mx = 0;
    CHECK(got && n == 77 * 768 && check_close("attention", got, ref, n, 5e-6, 5e-5, &mx) == 0 /* measured 1.5e-6: 10x */,
          "attention causal clip vs naive double reference (max abs err %.2g)", mx);
    free(got), free(q), free(ref);
    tc_free(&tc);
}

/* A graph mixing both backends: conv -> group_norm+silu -> add -> reshape ->
 * softmax -> linear, with the given ops refused by OpenCL. */
static struct sd_tensor *b_mixed(struct sd_graph *g, struct tc *tc) {
    struct sd_tensor *x = IN(tc, g, 4, 1, 32, 16, 16);
    struct sd_tensor *h = sd_conv2d(g, x, W(tc, 4, 32, 32, 3, 3), W(tc, 1, 32), 1, 1);
    h = sd_group_norm(g, h, W(tc, 1, 32), W(tc, 1, 32), 8, 1e-5f, 1);
    h = sd_add(g, h, x);
    h = sd_reshape(g, h, 3, D(1, 32, 256));
    h = sd_softmax(g, h, 1.0f, 0);
    return sd_linear(g, h, W(tc, 2, 64, 256), W(tc, 1, 64));
}

/* The options of every OpenCL backend here: a test-only program cache, and
 * the GEMM engine of $SDRT_CL_GEMM (own|clblast) when set. */
static struct sd_runtime_opts clo;

static void check_fallback(struct sd_ctx *ctx, struct sd_backend *cpu, const struct sd_runtime_opts *o, const char *what,
                           int want_on_cl) {
    struct tc tc = {0};
    int64_t n0 = 0, n1 = 0;
    float *ref = tc_run(ctx, &cpu, 1, b_mixed, &tc, &n0, NULL, NULL);
    struct sd_backend *cl = sd_cl_backend_new(ctx, o);
    struct sd_backend *both[2] = {cl, cpu};
    int on_cl = 0, nc = 0;
    float *got = cl ? tc_run(ctx, both, 2, b_mixed, &tc, &n1, &on_cl, &nc) : NULL;
    double mx = 0;
    CHECK(ref && got && n0 == n1 && on_cl == want_on_cl && check_close(what, got, ref, n0, 1.5e-6, 1.5e-6, &mx) == 0 /* measured 1.8e-7 */,
          "%s: %d of %d nodes on opencl, result equals cpu-only (max abs err %.2g)", what, on_cl, nc, mx);
    sd_backend_free(cl);
    free(ref), free(got);
    tc_free(&tc);
}

/* A device error at compute time (opts.cl_test_fail = group_norm): the
 * backend names the node, the scheduler runs it on the CPU and goes on (the
 * result is the CPU's), the cause says why; the backend remembers the op,
 * so a later graph places it on the CPU from the start. */
static void check_device_error(struct sd_ctx *ctx, struct sd_backend *cpu) {
    struct tc tc = {0};
    int64_t n0 = 0;
    float *ref = tc_run(ctx, &cpu, 1, b_mixed, &tc, &n0, NULL, NULL);
    struct sd_runtime_opts o = clo;
    o.cl_test_fail = "group_norm";
    struct sd_backend *cl = sd_cl_backend_new(ctx, &o);
    struct sd_backend *both[2] = {cl, cpu};
    for (int pass = 0; cl && ref && pass < 2; pass++) {
        tc.cur_w = 0, tc.n_in = 0;
        struct sd_graph *g = sd_graph_new(ctx);
        struct sd_tensor *out = b_mixed(g, &tc);
        sd_graph_output(g, out);
        struct sd_sched *s = sd_sched_new(ctx, both, 2);
        int gn = -1, on_cl = 0, rc = sd_sched_alloc(s, g);
        for (int i = 0; i < g->n_nodes; i++) if (g->nodes[i]->op == SD_OP_GROUP_NORM) gn = i;
        int first = gn >= 0 ? g->backend[gn] : -1;
        tc_fill_inputs(&tc);
        if (rc == SD_OK) rc = sd_sched_compute(s, g);
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i]->op != SD_OP_NONE && g->nodes[i]->op != SD_OP_RESHAPE && g->backend[i] == 0) on_cl++;
        double mx = 0;
        const char *cause = gn >= 0 ? s->cause[gn] : "";
        if (pass == 0)
            CHECK(rc == SD_OK && first == 0 && g->backend[gn] == 1 && on_cl == 4 &&
                      strstr(cause, "failed on opencl: device error: opencl: injected device error") &&
                      check_close("device error", out->data, ref, n0, 1e-4, 1e-4, &mx) == 0,
                  "device error in group_norm: re-placed on the cpu (%d of 5 nodes on opencl, cause %s), result "
                  "equals cpu-only (max abs err %.2g) %s", on_cl, cause, mx, ctx->msg);
        else
            CHECK(rc == SD_OK && first == 1 && !strcmp(cause, "device-error") &&
                      check_close("device error, next graph", out->data, ref, n0, 1e-4, 1e-4, &mx) == 0,
                  "device error remembered: the next graph places group_norm on the cpu directly (cause %s)", cause);
        sd_sched_free(s);
        sd_graph_free(g);
    }
    sd_backend_free(cl);
    free(ref);
    tc_free(&tc);
}

/* Device listing, device choice, option errors and the error-code mapping. */
static void check_devices(struct sd_ctx *ctx) {
    struct sd_cl_device_info d[8];
    int n = 0;
    int rc = sd_cl_list_devices(ctx, d, 8, &n);
    CHECK(rc == SD_OK && n >= 1 && d[0].name[0] && d[0].global_mem > 0 && d[0].compute_units > 0 &&
              !strncmp(d[0].cl_version, "OpenCL ", 7) && d[0].driver_version[0] && d[0].type,
          "sd_cl_list_devices: %d device(s); 0: %s, %s, %u CUs, %.0f MiB, fp16 %d, %s, driver %s", n,
          n ? d[0].name : "-", n ? d[0].type : "-", n ? d[0].compute_units : 0, n ? d[0].global_mem / 1048576.0 : 0,
          n ? d[0].fp16 : 0, n ? d[0].cl_version : "-", n ? d[0].driver_version : "-");
    struct sd_runtime_opts o = clo;
    o.cl_device = n;
    struct sd_backend *b = sd_cl_backend_new(ctx, &o);
    char want[64];
    snprintf(want, sizeof want, "device %d requested, %d available", n, n);
    CHECK(!b && strstr(ctx->msg, want), "cl_device %d (one past the last) refused: %s", n, ctx->msg);
    sd_backend_free(b);
    o.cl_device = n - 1;
    b = sd_cl_backend_new(ctx, &o);
    CHECK(b && sd_cl_device_of(b)->index == n - 1 && !strcmp(sd_cl_device_of(b)->name, d[n - 1].name),
          "cl_device %d picks %s", n - 1, d[n - 1].name);
    sd_backend_free(b);
    o = clo;
    o.cl_disable = "group_norm,nonsense";
    b = sd_cl_backend_new(ctx, &o);
    CHECK(!b && strstr(ctx->msg, "unknown op 'nonsense'"), "cl_disable with an unknown op refused: %s", ctx->msg);
    sd_backend_free(b);
    rc = sd_cl_check(ctx, CL_OUT_OF_RESOURCES, "clEnqueueNDRangeKernel", "group_norm");
    CHECK(rc == SD_ERR_BACKEND && !strcmp(ctx->msg, "opencl: clEnqueueNDRangeKernel(group_norm) = -5 CL_OUT_OF_RESOURCES"),
          "CL error mapped with call and code: %s", ctx->msg);
    sd_ctx_clear(ctx);
}

static void run_case(struct sd_ctx *ctx, struct sd_backend *cl, struct sd_backend *cpu, const struct op_case *c,
                     const char *tag) {
    struct sd_backend *both[2] = {cl, cpu};
    struct tc tc = {0};
    int64_t n0 = 0, n1 = 0;
    int on_cl = 0, nc = 0;
    double t0 = sd_time_s();
    float *ref = tc_run(ctx, &cpu, 1, c->build, &tc, &n0, NULL, NULL);
    double t1 = sd_time_s();
    float *got = tc_run(ctx, both, 2, c->build, &tc, &n1, &on_cl, &nc);
    double t2 = sd_time_s(), mx = 0;
    CHECK(ref && got && n0 == n1 && on_cl == nc && check_close(c->name, got, ref, n0, c->atol, c->rtol, &mx) == 0,
          "%s%s: opencl matches cpu (max abs err %.2g, limit %.0e + %.0e*|ref|; cpu %.0f ms, cl %.0f ms)", c->name, tag,
          mx, c->atol, c->rtol, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    free(ref), free(got);
    tc_free(&tc);
}

/* Weights stay resident across graphs (no second upload) and a weight
 * whose bytes changed under the same tensor and pointer is uploaded again. */
static struct sd_tensor *b_lin_small(struct sd_graph *g, struct tc *tc) {
    return sd_linear(g, IN(tc, g, 2, 4, 64), W(tc, 2, 32, 64), W(tc, 1, 32));
}

static void check_weights_resident(struct sd_ctx *ctx, struct sd_backend *cpu) {
    struct sd_backend *cl = sd_cl_backend_new(ctx, &clo);
    struct sd_backend *both[2] = {cl, cpu};
    struct sd_cl *c = cl ? cl->impl : NULL;
    struct tc tc = {0};
    int64_t n = 0;
    float *a = cl ? tc_run(ctx, both, 2, b_lin_small, &tc, &n, NULL, NULL) : NULL;
    size_t w1 = c ? c->n_weights : 0, bytes1 = c ? c->weight_bytes : 0;
    float *b = cl ? tc_run(ctx, both, 2, b_lin_small, &tc, &n, NULL, NULL) : NULL;
    CHECK(a && b && w1 >= 2 && c->n_weights == w1 && c->weight_bytes == bytes1 && !memcmp(a, b, n * sizeof(float)),
          "weights resident across graphs: %zu weights, %zu bytes uploaded once", w1, bytes1);
    ((float *)tc.w[0]->data)[0] += 1.0f; /* same tensor, same pointer, new bytes */
    float *r = tc_run(ctx, &cpu, 1, b_lin_small, &tc, &n, NULL, NULL);
    float *d = cl ? tc_run(ctx, both, 2, b_lin_small, &tc, &n, NULL, NULL) : NULL;
    double mx = 0;
    CHECK(r && d && memcmp(a, d, n * sizeof(float)) && check_close("reupload", d, r, n, 1e-5, 1e-5, &mx) == 0,
          "a weight changed in place is uploaded again (matches cpu, max abs err %.2g)", mx);
    free(a), free(b), free(r), free(d);
    tc_free(&tc);
    sd_backend_free(cl);
}

int main(void) {
    const char *sv = getenv("SDRT_TEST_SAN");
    cl_cases_small = sv && *sv && *sv != '0';
    /* Program binaries: a test-only cache (kept across runs for speed). */
    sd_runtime_opts_init(&clo);
    clo.cl_cache_dir = cl_test_cache_dir();
    const char *gemm = getenv("SDRT_CL_GEMM");
    if (gemm && sd_cl_gemm_parse(gemm) >= 0) clo.cl_gemm = (enum sd_cl_gemm_engine)sd_cl_gemm_parse(gemm);
    struct sd_ctx ctx = {0};
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, NULL);
    CHECK(cpu != NULL, "cpu backend (%s)", ctx.msg);
    struct sd_backend *cl = sd_cl_backend_new(&ctx, &clo);
    CHECK(cl != NULL, "opencl backend on %s (%s)", cl ? sd_cl_device_of(cl)->name : "-", ctx.msg);
    if (!cpu || !cl) return 1;
    check_devices(&ctx);
    check_weights_resident(&ctx, cpu);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&ctx, cl, cpu, &cases[i], "");
    /* The other kernel family: on a CPU-type device the defaults are the
     * per-row kernels and GEMM attention, so also run the work-group
     * reduction kernels and the flash attention kernel (GPU defaults), and
     * vice versa. */
    struct sd_cl *c1 = cl->impl;
    struct sd_runtime_opts o = clo;
    o.cl_attn = c1->attn_gemm ? SD_CL_ATTN_FLASH : SD_CL_ATTN_GEMM;
    o.cl_rowwise = !c1->rowwise;
    struct sd_backend *cl2 = sd_cl_backend_new(&ctx, &o);
    char tag[48];
    snprintf(tag, sizeof tag, " [%s, %s kernels]", c1->attn_gemm ? "flash" : "gemm",
             c1->rowwise ? "work-group" : "per-row");
    static const char *families[] = {"attention", "softmax", "group_norm", "layer_norm"};
    for (size_t i = 0; cl2 && i < sizeof cases / sizeof cases[0]; i++)
        for (size_t f = 0; f < 4; f++)
            if (!strncmp(cases[i].name, families[f], strlen(families[f]))) run_case(&ctx, cl2, cpu, &cases[i], tag);
    if (cl2) check_attention_naive(&ctx, cl2, cpu);
    sd_backend_free(cl2);
    check_attention_naive(&ctx, cl, cpu);
    o = clo, o.cl_disable = "group_norm,softmax";
    check_fallback(&ctx, cpu, &o, "cl_disable group_norm,softmax", 3);
    o = clo, o.cl_test_break = "softmax";
    check_fallback(&ctx, cpu, &o, "softmax program fails to build", 4);
    check_device_error(&ctx, cpu);
    sd_backend_free(cl);
    sd_backend_free(cpu);
    return test_summary();
}
