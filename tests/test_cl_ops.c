/* test_cl_ops.c - every op on the OpenCL backend (PoCL here) against the CPU
 * backend, at SD shapes (reduced where PoCL on 2 cores is slow; shrunk
 * further under SDRT_TEST_SAN=1), plus an independent double-precision
 * reference for attention, and the fallback paths: ops disabled with
 * SDRT_CL_DISABLE, a program that fails to build (SDRT_CL_TEST_BREAK) and a
 * device error (SDRT_CL_TEST_FAIL) all run on the CPU and give the CPU's
 * result.
 *
 * Per case: every compute node must be placed on OpenCL, the result must be
 * finite, and |cl - cpu| <= atol + rtol*|cpu| everywhere (limits per op in
 * the table: 1e-5-ish for elementwise ops, looser for reductions and GEMMs
 * whose summation order differs). The max error is printed.
 */
#include "cl_test_util.h"

static int san;  /* SDRT_TEST_SAN: shrink the largest shapes */
#define S(big, small) (san ? (small) : (big))

#define D(...) ((int64_t[]){__VA_ARGS__})
#define IN(tc, g, nd, ...) tc_input(tc, g, SD_F32, nd, D(__VA_ARGS__))
#define W(tc, nd, ...) tc_weight(tc, nd, D(__VA_ARGS__))

static struct sd_tensor *b_conv3x3(struct sd_graph *g, struct tc *tc) {
    int64_t c = S(320, 64), hw = S(32, 16);
    return sd_conv2d(g, IN(tc, g, 4, 1, c, hw, hw), W(tc, 4, c, c, 3, 3), W(tc, 1, c), 1, 1);
}
static struct sd_tensor *b_conv_in(struct sd_graph *g, struct tc *tc) {
    return sd_conv2d(g, IN(tc, g, 4, 2, 4, S(32, 16), S(32, 16)), W(tc, 4, 320, 4, 3, 3), W(tc, 1, 320), 1, 1);
}
static struct sd_tensor *b_conv_down(struct sd_graph *g, struct tc *tc) {
    return sd_conv2d(g, IN(tc, g, 4, 2, 64, 32, 32), W(tc, 4, 64, 64, 3, 3), W(tc, 1, 64), 2, 1);
}
static struct sd_tensor *b_conv_asym(struct sd_graph *g, struct tc *tc) {
    struct sd_conv2d_params p = {2, 2, 0, 0, 1, 1}; /* VAE encoder downsample */
    return sd_conv2d_ex(g, IN(tc, g, 4, 1, 32, 17, 16), W(tc, 4, 48, 32, 3, 3), W(tc, 1, 48), p);
}
static struct sd_tensor *b_conv1x1(struct sd_graph *g, struct tc *tc) {
    return sd_conv2d(g, IN(tc, g, 4, 2, 320, 16, 16), W(tc, 4, 640, 320, 1, 1), NULL, 1, 0);
}
static struct sd_tensor *b_linear(struct sd_graph *g, struct tc *tc) {
    return sd_linear(g, IN(tc, g, 3, 2, 77, 768), W(tc, 2, 768, 768), W(tc, 1, 768));
}
static struct sd_tensor *b_linear_big(struct sd_graph *g, struct tc *tc) {
    return sd_linear(g, IN(tc, g, 3, 1, S(1024, 256), 320), W(tc, 2, 1280, 320), NULL);
}
static struct sd_tensor *b_matmul_nt(struct sd_graph *g, struct tc *tc) {
    int64_t L = S(256, 64);
    return sd_matmul(g, IN(tc, g, 3, 16, L, 40), IN(tc, g, 3, 16, L, 40), 0, 1, 0.158f);
}
static struct sd_tensor *b_matmul_tn(struct sd_graph *g, struct tc *tc) {
    return sd_matmul(g, IN(tc, g, 4, 2, 3, 40, 50), IN(tc, g, 4, 2, 3, 40, 30), 1, 0, 1.0f);
}
static struct sd_tensor *b_group_norm(struct sd_graph *g, struct tc *tc) {
    int64_t hw = S(32, 16);
    return sd_group_norm(g, IN(tc, g, 4, 2, 320, hw, hw), W(tc, 1, 320), W(tc, 1, 320), 32, 1e-5f, 0);
}
static struct sd_tensor *b_group_norm_silu(struct sd_graph *g, struct tc *tc) {
    return sd_group_norm(g, IN(tc, g, 4, 1, 640, 16, 16), W(tc, 1, 640), W(tc, 1, 640), 32, 1e-6f, 1);
}
static struct sd_tensor *b_group_norm_plain(struct sd_graph *g, struct tc *tc) {
    return sd_group_norm(g, IN(tc, g, 3, 2, 64, 100), NULL, NULL, 8, 1e-5f, 0);
}
static struct sd_tensor *b_layer_norm(struct sd_graph *g, struct tc *tc) {
    return sd_layer_norm(g, IN(tc, g, 3, 2, 77, 768), W(tc, 1, 768), W(tc, 1, 768), 1e-5f);
}
static struct sd_tensor *b_layer_norm_320(struct sd_graph *g, struct tc *tc) {
    return sd_layer_norm(g, IN(tc, g, 3, 1, S(1024, 256), 320), W(tc, 1, 320), NULL, 1e-5f);
}
static struct sd_tensor *b_softmax(struct sd_graph *g, struct tc *tc) {
    int64_t L = S(256, 64);
    tc->in_scale = 8;
    return sd_softmax(g, IN(tc, g, 3, 16, L, L), 0.158f, 0);
}
static struct sd_tensor *b_softmax_causal(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 8;
    return sd_softmax(g, IN(tc, g, 3, 12, 77, 77), 0.125f, 1);
}
/* q, k, v are created in this order (in0, in1, in2): the naive check regenerates them. */
static struct sd_tensor *attn(struct sd_graph *g, struct tc *tc, int64_t B, int64_t Lq, int64_t Lk, int64_t C,
                              int heads, float scale, int causal) {
    struct sd_tensor *q = IN(tc, g, 3, B, Lq, C);
    struct sd_tensor *k = IN(tc, g, 3, B, Lk, C);
    struct sd_tensor *v = IN(tc, g, 3, B, Lk, C);
    return sd_attention(g, q, k, v, heads, scale, causal);
}
static struct sd_tensor *b_attn_self(struct sd_graph *g, struct tc *tc) {
    return attn(g, tc, 1, S(1024, 256), S(1024, 256), 320, 8, 0.158f, 0);
}
static struct sd_tensor *b_attn_cross(struct sd_graph *g, struct tc *tc) {
    return attn(g, tc, 2, 256, 77, 640, 8, 0.1118f, 0);
}
static struct sd_tensor *b_attn_clip(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 2;
    return attn(g, tc, 1, 77, 77, 768, 12, 0.125f, 1);
}
static struct sd_tensor *b_attn_vae(struct sd_graph *g, struct tc *tc) {
    return attn(g, tc, 1, S(256, 64), S(256, 64), 512, 1, 0.0442f, 0);
}
static struct sd_tensor *b_gelu(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 6;
    return sd_gelu(g, IN(tc, g, 4, 2, 320, 32, 32));
}
static struct sd_tensor *b_quick_gelu(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 6;
    return sd_quick_gelu(g, IN(tc, g, 3, 1, 77, 3072));
}
static struct sd_tensor *b_silu(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 6;
    return sd_silu(g, IN(tc, g, 4, 2, 320, 32, 32));
}
static struct sd_tensor *b_geglu(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 4;
    return sd_geglu(g, IN(tc, g, 3, 2, S(256, 64), 2560));
}
static struct sd_tensor *b_add_chan(struct sd_graph *g, struct tc *tc) {
    return sd_add(g, IN(tc, g, 4, 2, 320, 32, 32), IN(tc, g, 4, 2, 320, 1, 1));
}
static struct sd_tensor *b_add_same(struct sd_graph *g, struct tc *tc) {
    return sd_add(g, IN(tc, g, 4, 2, 320, 32, 32), IN(tc, g, 4, 2, 320, 32, 32));
}
static struct sd_tensor *b_add_row(struct sd_graph *g, struct tc *tc) {
    return sd_add(g, IN(tc, g, 3, 2, 77, 768), W(tc, 2, 77, 768)); /* position embedding */
}
static struct sd_tensor *b_mul_bcast(struct sd_graph *g, struct tc *tc) {
    return sd_mul(g, IN(tc, g, 4, 2, 64, 8, 8), IN(tc, g, 4, 1, 64, 1, 8));
}
static struct sd_tensor *b_scale(struct sd_graph *g, struct tc *tc) {
    return sd_scale(g, IN(tc, g, 4, 1, 4, 64, 64), 0.18215f, 0.25f);
}
static struct sd_tensor *b_concat_c(struct sd_graph *g, struct tc *tc) {
    return sd_concat(g, IN(tc, g, 4, 2, 320, 16, 16), IN(tc, g, 4, 2, 640, 16, 16), 1);
}
static struct sd_tensor *b_concat_0(struct sd_graph *g, struct tc *tc) {
    return sd_concat(g, IN(tc, g, 3, 1, 77, 768), IN(tc, g, 3, 1, 77, 768), 0);
}
static struct sd_tensor *b_concat_last(struct sd_graph *g, struct tc *tc) {
    return sd_concat(g, IN(tc, g, 3, 2, 10, 7), IN(tc, g, 3, 2, 10, 5), 2);
}
static struct sd_tensor *b_upsample2(struct sd_graph *g, struct tc *tc) {
    return sd_upsample(g, IN(tc, g, 4, 2, 320, 16, 16), 32, 32);
}
static struct sd_tensor *b_upsample_odd(struct sd_graph *g, struct tc *tc) {
    return sd_upsample(g, IN(tc, g, 4, 1, 4, 7, 9), 11, 20);
}
static struct sd_tensor *b_embedding(struct sd_graph *g, struct tc *tc) {
    tc->id_range = 1000;
    return sd_embedding(g, tc_input(tc, g, SD_I32, 2, D(2, 77)), W(tc, 2, 1000, 768));
}
static struct sd_tensor *b_timestep(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 999;
    return sd_timestep_embed(g, IN(tc, g, 1, 4), 320, 1, 0);
}
static struct sd_tensor *b_timestep_shift(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 999;
    return sd_timestep_embed(g, IN(tc, g, 1, 3), 256, 0, 1);
}
static struct sd_tensor *b_permute4(struct sd_graph *g, struct tc *tc) {
    return sd_permute(g, IN(tc, g, 4, 2, 77, 12, 64), (int[]){0, 2, 1, 3});
}
static struct sd_tensor *b_permute3(struct sd_graph *g, struct tc *tc) {
    return sd_permute(g, IN(tc, g, 3, 2, 320, 256), (int[]){0, 2, 1});
}
static struct sd_tensor *b_permute_rev(struct sd_graph *g, struct tc *tc) {
    return sd_permute(g, IN(tc, g, 4, 2, 3, 5, 7), (int[]){3, 2, 1, 0});
}

struct op_case { const char *name; tc_build_fn build; double atol, rtol; };

static const struct op_case cases[] = {
    {"conv2d 3x3 [1,320,32,32]", b_conv3x3, 2e-3, 1e-4},
    {"conv2d conv_in [2,4,32,32]->320", b_conv_in, 1e-4, 1e-4},
    {"conv2d stride 2 [2,64,32,32]", b_conv_down, 5e-4, 1e-4},
    {"conv2d asymmetric pad [1,32,17,16]", b_conv_asym, 5e-4, 1e-4},
    {"conv2d 1x1 [2,320,16,16]->640", b_conv1x1, 5e-4, 1e-4},
    {"linear [2,77,768]x768", b_linear, 5e-4, 1e-4},
    {"linear [1,1024,320]x1280", b_linear_big, 5e-4, 1e-4},
    {"matmul q.k^T [16,256,40]", b_matmul_nt, 1e-4, 1e-4},
    {"matmul a^T.b [2,3,40,50]", b_matmul_tn, 1e-4, 1e-4},
    {"group_norm [2,320,32,32] g32", b_group_norm, 1e-4, 1e-4},
    {"group_norm+silu [1,640,16,16]", b_group_norm_silu, 1e-4, 1e-4},
    {"group_norm no affine [2,64,100]", b_group_norm_plain, 1e-4, 1e-4},
    {"layer_norm [2,77,768]", b_layer_norm, 1e-4, 1e-4},
    {"layer_norm [1,1024,320] no beta", b_layer_norm_320, 1e-4, 1e-4},
    {"softmax [16,256,256]", b_softmax, 1e-6, 1e-4},
    {"softmax causal [12,77,77]", b_softmax_causal, 1e-6, 1e-4},
    {"attention self [1,1024,320] h8", b_attn_self, 1e-5, 1e-4},
    {"attention cross [2,256,640]x77 h8", b_attn_cross, 1e-5, 1e-4},
    {"attention causal clip [1,77,768] h12", b_attn_clip, 1e-5, 1e-4},
    {"attention vae [1,256,512] h1", b_attn_vae, 1e-5, 1e-4},
    {"gelu [2,320,32,32]", b_gelu, 1e-6, 1e-5},
    {"quick_gelu [1,77,3072]", b_quick_gelu, 1e-6, 1e-5},
    {"silu [2,320,32,32]", b_silu, 1e-6, 1e-5},
    {"geglu [2,256,2560]", b_geglu, 1e-6, 1e-5},
    {"add channel bcast", b_add_chan, 0, 0},
    {"add same shape", b_add_same, 0, 0},
    {"add weight [77,768]", b_add_row, 0, 0},
    {"mul bcast [1,64,1,8]", b_mul_bcast, 0, 0},
    {"scale", b_scale, 1e-7, 1e-6},
    {"concat dim 1", b_concat_c, 0, 0},
    {"concat dim 0", b_concat_0, 0, 0},
    {"concat last dim", b_concat_last, 0, 0},
    {"upsample x2", b_upsample2, 0, 0},
    {"upsample 7x9->11x20", b_upsample_odd, 0, 0},
    {"embedding [2,77] of [1000,768]", b_embedding, 0, 0},
    {"timestep_embedding 320 flip", b_timestep, 2e-4, 0},
    {"timestep_embedding 256 shift 1", b_timestep_shift, 2e-4, 0},
    {"permute (0,2,1,3)", b_permute4, 0, 0},
    {"permute (0,2,1)", b_permute3, 0, 0},
    {"permute reverse", b_permute_rev, 0, 0},
};

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
    CHECK(got && n == 77 * 768 && check_close("attention", got, ref, n, 1e-5, 1e-4, &mx) == 0,
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

static void check_fallback(struct sd_ctx *ctx, struct sd_backend *cpu, const char *env, const char *val,
                           const char *what, int want_on_cl) {
    struct tc tc = {0};
    int64_t n0 = 0, n1 = 0;
    float *ref = tc_run(ctx, &cpu, 1, b_mixed, &tc, &n0, NULL, NULL);
    setenv(env, val, 1);
    struct sd_backend *cl = sd_cl_backend_new(ctx, -1);
    unsetenv(env);
    struct sd_backend *both[2] = {cl, cpu};
    int on_cl = 0, nc = 0;
    float *got = cl ? tc_run(ctx, both, 2, b_mixed, &tc, &n1, &on_cl, &nc) : NULL;
    double mx = 0;
    CHECK(ref && got && n0 == n1 && on_cl == want_on_cl && check_close(what, got, ref, n0, 1e-4, 1e-4, &mx) == 0,
          "%s: %d of %d nodes on opencl, result equals cpu-only (max abs err %.2g)", what, on_cl, nc, mx);
    sd_backend_free(cl);
    free(ref), free(got);
    tc_free(&tc);
}

int main(void) {
    const char *sv = getenv("SDRT_TEST_SAN");
    san = sv && *sv && *sv != '0';
    struct sd_ctx ctx = {0};
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, 0);
    CHECK(cpu != NULL, "cpu backend (%s)", ctx.msg);
    struct sd_backend *cl = sd_cl_backend_new(&ctx, -1);
    CHECK(cl != NULL, "opencl backend on %s (%s)", cl ? sd_cl_device_of(cl)->name : "-", ctx.msg);
    if (!cpu || !cl) return 1;
    struct sd_backend *both[2] = {cl, cpu};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct op_case *c = &cases[i];
        struct tc tc = {0};
        int64_t n0 = 0, n1 = 0;
        int on_cl = 0, nc = 0;
        double t0 = sd_time_s();
        float *ref = tc_run(&ctx, &cpu, 1, c->build, &tc, &n0, NULL, NULL);
        double t1 = sd_time_s();
        float *got = tc_run(&ctx, both, 2, c->build, &tc, &n1, &on_cl, &nc);
        double t2 = sd_time_s(), mx = 0;
        CHECK(ref && got && n0 == n1 && on_cl == nc && check_close(c->name, got, ref, n0, c->atol, c->rtol, &mx) == 0,
              "%s: opencl matches cpu (max abs err %.2g, limit %.0e + %.0e*|ref|; cpu %.0f ms, cl %.0f ms)", c->name,
              mx, c->atol, c->rtol, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
        free(ref), free(got);
        tc_free(&tc);
    }
    check_attention_naive(&ctx, cl, cpu);
    check_fallback(&ctx, cpu, "SDRT_CL_DISABLE", "group_norm,softmax", "SDRT_CL_DISABLE=group_norm,softmax", 3);
    check_fallback(&ctx, cpu, "SDRT_CL_TEST_BREAK", "softmax", "softmax program fails to build", 4);
    check_fallback(&ctx, cpu, "SDRT_CL_TEST_FAIL", "group_norm", "device error in group_norm", 5);
    sd_backend_free(cl);
    sd_backend_free(cpu);
    return test_summary();
}
