/* cl_op_cases.h - the table of 1-node op cases at SD shapes shared by
 * tests/test_cl_ops.c (OpenCL vs CPU) and bench/bench_cl.c (per-op times).
 * Set cl_cases_small for shrunken shapes (ASan runs). Each builder makes
 * its inputs in a fixed order (in0, in1, ...) and its weights through tc. */
#ifndef SDRT_CL_OP_CASES_H
#define SDRT_CL_OP_CASES_H

#include "cl_test_util.h"

static int cl_cases_small; /* shrink the largest shapes */
#define S(big, small) (cl_cases_small ? (small) : (big))

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
    struct sd_conv2d_params p = {2, 2, 0, 0, 1, 1, 0}; /* VAE encoder downsample */
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
static struct sd_tensor *b_matmul_tt(struct sd_graph *g, struct tc *tc) {
    return sd_matmul(g, IN(tc, g, 3, 3, 70, 33), IN(tc, g, 3, 3, 90, 70), 1, 1, 0.5f);
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
static struct sd_tensor *b_relu(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 6;
    return sd_relu(g, IN(tc, g, 4, 1, 64, 33, 17));
}
static struct sd_tensor *b_tanh(struct sd_graph *g, struct tc *tc) {
    tc->in_scale = 6;
    return sd_tanh(g, IN(tc, g, 4, 1, 4, 64, 64));
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

/* Limits |cl - cpu| <= atol + rtol*|cpu|: about 10x the worst error measured
 * (PoCL on an AVX-512 CPU, both the default and the work-group kernels; each
 * ok line prints the measured error and the margin). Cases measured exact
 * stay exact where the op moves data only; the two matmul layouts and
 * conv_in that measured exact on PoCL get the bound of their sibling cases.
 * timestep_embedding: sin/cos of arguments up to ~1000 rad differ by
 * ~6e-5 between PoCL's and glibc's float versions. */
struct op_case { const char *name; tc_build_fn build; double atol, rtol; };

static const struct op_case cases[] __attribute__((unused)) = {
    {"conv2d 3x3 [1,320,32,32]", b_conv3x3, 2e-3, 1e-4},
    {"conv2d conv_in [2,4,32,32]->320", b_conv_in, 1e-5, 1e-5},
    {"conv2d stride 2 [2,64,32,32]", b_conv_down, 1.5e-4, 3e-5},
    {"conv2d asymmetric pad [1,32,17,16]", b_conv_asym, 5e-5, 1e-5},
    {"conv2d 1x1 [2,320,16,16]->640", b_conv1x1, 1e-4, 2e-5},
    {"linear [2,77,768]x768", b_linear, 3e-4, 5e-5},
    {"linear [1,1024,320]x1280", b_linear_big, 1e-4, 2e-5},
    {"matmul q.k^T [16,256,40]", b_matmul_nt, 3e-6, 3e-6},
    {"matmul a^T.b [2,3,40,50]", b_matmul_tn, 3e-6, 3e-6},
    {"matmul a^T.b^T [3,70,33]x[3,90,70]", b_matmul_tt, 3e-6, 3e-6},
    {"group_norm [2,320,32,32] g32", b_group_norm, 3e-6, 3e-6},
    {"group_norm+silu [1,640,16,16]", b_group_norm_silu, 2e-6, 2e-6},
    {"group_norm no affine [2,64,100]", b_group_norm_plain, 1.5e-6, 1.5e-6},
    {"layer_norm [2,77,768]", b_layer_norm, 3e-6, 3e-6},
    {"layer_norm [1,1024,320] no beta", b_layer_norm_320, 3e-6, 3e-6},
    {"softmax [16,256,256]", b_softmax, 2e-8, 2e-6},
    {"softmax causal [12,77,77]", b_softmax_causal, 5e-8, 5e-6},
    {"attention self [1,1024,320] h8", b_attn_self, 1e-6, 1e-5},
    {"attention cross [2,256,640]x77 h8", b_attn_cross, 1e-6, 1e-5},
    {"attention causal clip [1,77,768] h12", b_attn_clip, 3e-6, 3e-5},
    {"attention vae [1,256,512] h1", b_attn_vae, 1e-6, 1e-5},
    {"gelu [2,320,32,32]", b_gelu, 1e-6, 1e-5},
    {"quick_gelu [1,77,3072]", b_quick_gelu, 2e-7, 2e-6},
    {"silu [2,320,32,32]", b_silu, 3e-7, 3e-6},
    {"relu [1,64,33,17]", b_relu, 0, 0},
    {"tanh [1,4,64,64]", b_tanh, 1e-6, 1e-5},
    {"geglu [2,256,2560]", b_geglu, 3e-6, 3e-5},
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
    {"timestep_embedding 320 flip", b_timestep, 7e-4, 0},
    {"timestep_embedding 256 shift 1", b_timestep_shift, 5e-4, 0},
    {"permute (0,2,1,3)", b_permute4, 0, 0},
    {"permute (0,2,1)", b_permute3, 0, 0},
    {"permute reverse", b_permute_rev, 0, 0},
};

#endif
