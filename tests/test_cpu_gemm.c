/* test_cpu_gemm.c - the CPU backend's GEMM-class ops (conv2d, linear, matmul)
 * against naive double-accumulating references written here.
 *
 * Every conv2d case runs under each algorithm (auto rule, oneDNN direct,
 * oneDNN nchw, our im2col+sgemm, Winograd where oneDNN has it) so each path
 * is checked whatever the rule picks. The ops are called directly on
 * hand-built tensors with a `struct sd_cpu` filled here plus
 * sd_cpu_dnnl_init, so this binary links only the GEMM-class ops.
 *
 * Inputs are uniform in [-1, 1) and weights are scaled by 1/sqrt(fan_in)
 * (PyTorch's default init range), so outputs are O(1). Tolerance:
 * |got - ref| <= 1e-4 + 1e-4*|ref|, except Winograd: 1e-3 + 1e-3*|ref|
 * (its transforms lose a few bits by design). SDRT_TEST_SAN=1 (the
 * ASan build) shrinks the two largest conv shapes.
 */
#include <omp.h>

#include "cpu_dnnl.h"
#include "cpu_math.h"
#include "test.h"

static int san;

/* ---- tensors ---- */

static struct sd_tensor *tensor_new(const char *name, int n, const int64_t *dims, uint64_t seed, float scale) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, n, dims);
    snprintf(t->name, sizeof t->name, "%s", name);
    int64_t ne = sd_tensor_nelements(t);
    t->data = sd_malloc_aligned((size_t)ne * sizeof(float));
    if (seed) {
        fill_random(t->data, ne, seed);
        for (int64_t i = 0; i < ne; i++) ((float *)t->data)[i] *= scale;
    } else {
        memset(t->data, 0xff, (size_t)ne * sizeof(float)); /* NaN sentinel: every output must be written */
    }
    t->index = -1;
    return t;
}

static void tensor_free(struct sd_tensor *t) {
    if (!t) return;
    sd_free_aligned(t->data);
    free(t);
}

/* ---- references ---- */

/* Direct convolution: the input is first copied into a zero-padded double
 * buffer, then each output plane (n, co) is accumulated in double over the
 * taps (ci, ky, kx). */
static void ref_conv2d(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t Ci, int64_t H,
                       int64_t W, int64_t Co, int64_t kh, int64_t kw, struct sd_conv2d_params p, int64_t OH,
                       int64_t OW) {
    const int64_t HP = H + p.pad_t + p.pad_b, WP = W + p.pad_l + p.pad_r;
    double *xp = calloc((size_t)(N * Ci * HP * WP), sizeof *xp);
    for (int64_t nc = 0; nc < N * Ci; nc++)
        for (int64_t iy = 0; iy < H; iy++)
            for (int64_t ix = 0; ix < W; ix++)
                xp[(nc * HP + iy + p.pad_t) * WP + ix + p.pad_l] = x[(nc * H + iy) * W + ix];
#pragma omp parallel
    {
        double *acc = malloc((size_t)(OH * OW) * sizeof *acc);
#pragma omp for collapse(2)
        for (int64_t n = 0; n < N; n++)
            for (int64_t co = 0; co < Co; co++) {
                for (int64_t i = 0; i < OH * OW; i++) acc[i] = b ? b[co] : 0.0;
                for (int64_t ci = 0; ci < Ci; ci++)
                    for (int64_t ky = 0; ky < kh; ky++)
                        for (int64_t kx = 0; kx < kw; kx++) {
                            const double wv = w[((co * Ci + ci) * kh + ky) * kw + kx];
                            const double *xc = xp + (n * Ci + ci) * HP * WP + ky * WP + kx;
                            for (int64_t oy = 0; oy < OH; oy++)
                                for (int64_t ox = 0; ox < OW; ox++)
                                    acc[oy * OW + ox] += wv * xc[oy * p.stride_h * WP + ox * p.stride_w];
                        }
                for (int64_t i = 0; i < OH * OW; i++) y[(n * Co + co) * OH * OW + i] = (float)acc[i];
            }
        free(acc);
    }
    free(xp);
}

/* y[r][o] = sum_i x[r][i] w[o][i] + b[o] */
static void ref_linear(const float *x, const float *w, const float *b, float *y, int64_t rows, int64_t in,
                       int64_t out) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) acc += (double)x[r * in + i] * (double)w[o * in + i];
            y[r * out + o] = (float)acc;
        }
}

static void ref_matmul(const float *a, const float *b, float *y, int64_t B, int64_t M, int64_t K, int64_t N, int ta,
                       int tb, float alpha) {
#pragma omp parallel for collapse(2)
    for (int64_t bt = 0; bt < B; bt++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) {
                    double av = ta ? a[(bt * K + k) * M + m] : a[(bt * M + m) * K + k];
                    double bv = tb ? b[(bt * N + n) * K + k] : b[(bt * K + k) * N + n];
                    acc += av * bv;
                }
                y[(bt * M + m) * N + n] = (float)(alpha * acc);
            }
}

/* ---- conv2d ---- */

struct conv_case {
    const char *what;
    int64_t N, Ci, H, W, Co, k;
    struct sd_conv2d_params p;
    int bias;
};

static struct sd_tensor *conv_node(struct sd_tensor *x, struct sd_tensor *w, struct sd_tensor *b,
                                   struct sd_conv2d_params p) {
    int64_t OH = (x->ne[2] + p.pad_t + p.pad_b - w->ne[2]) / p.stride_h + 1;
    int64_t OW = (x->ne[3] + p.pad_l + p.pad_r - w->ne[3]) / p.stride_w + 1;
    struct sd_tensor *y = tensor_new("y", 4, (int64_t[]){x->ne[0], w->ne[0], OH, OW}, 0, 0);
    y->op = SD_OP_CONV2D;
    y->src[0] = x, y->src[1] = w, y->src[2] = b;
    y->p.conv2d = p;
    return y;
}

static void test_conv_case(struct sd_cpu *cpu, const struct conv_case *c, uint64_t seed) {
    int64_t fan_in = c->Ci * c->k * c->k;
    float ws = 1.0f / sqrtf((float)fan_in);
    struct sd_tensor *x = tensor_new("x", 4, (int64_t[]){c->N, c->Ci, c->H, c->W}, seed, 1.0f);
    struct sd_tensor *w = tensor_new("w", 4, (int64_t[]){c->Co, c->Ci, c->k, c->k}, seed + 1, ws);
    struct sd_tensor *b = c->bias ? tensor_new("b", 1, (int64_t[]){c->Co}, seed + 2, 1.0f) : NULL;
    struct sd_tensor *y = conv_node(x, w, b, c->p);
    int64_t n = sd_tensor_nelements(y);
    float *ref = malloc((size_t)n * sizeof *ref);
    ref_conv2d(x->data, w->data, b ? b->data : NULL, ref, c->N, c->Ci, c->H, c->W, c->Co, c->k, c->k, c->p, y->ne[2],
               y->ne[3]);
    char shape[160];
    snprintf(shape, sizeof shape, "[%lld,%lld,%lld,%lld]->%lld k%lld s%dx%d pad(t%d,l%d,b%d,r%d)%s",
             (long long)c->N, (long long)c->Ci, (long long)c->H, (long long)c->W, (long long)c->Co, (long long)c->k,
             c->p.stride_h, c->p.stride_w, c->p.pad_t, c->p.pad_l, c->p.pad_b, c->p.pad_r, c->bias ? " bias" : "");
    for (int algo = 0; algo < SD_CONV_ALGO_COUNT; algo++) {
        sd_cpu_dnnl_set_conv_algo(cpu, algo);
        memset(y->data, 0xff, (size_t)n * sizeof(float));
        int rc = sd_cpu_op_conv2d(cpu, y);
        /* measured <= 3.5e-6 for every algorithm (Winograd included) */
        double tol = 3e-5, err = 0;
        int bad = rc != SD_OK || check_close("conv2d", y->data, ref, n, tol, tol, &err);
        if (bad)
            test_fail("conv2d %s %s [%s]: rc %d %s, max err %.3g", c->what, shape, sd_conv_algo_name(algo), rc,
                      cpu->ctx->msg, err);
        else
            test_ok("conv2d %s %s [%s] (max err %.2g)", c->what, shape, sd_conv_algo_name(algo), err);
    }
    sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_AUTO);
    sd_cpu_dnnl_weights_forget(cpu); /* w's memory is about to be freed (cache contract) */
    free(ref);
    tensor_free(x), tensor_free(w), tensor_free(b), tensor_free(y);
}

static void test_conv(struct sd_cpu *cpu) {
    const struct sd_conv2d_params s1p1 = {1, 1, 1, 1, 1, 1, 0}, s2p1 = {2, 2, 1, 1, 1, 1, 0}, s1p0 = {1, 1, 0, 0, 0, 0, 0},
                                  s2p0 = {2, 2, 0, 0, 0, 0, 0}, vae = {2, 2, 0, 0, 1, 1, 0};
    struct conv_case cases[] = {
        {"sd-resnet", 2, 320, 32, 32, 320, 3, s1p1, 1},
        {"vae-down", 1, 128, 64, 64, 128, 3, vae, 1},
        {"unet-down", 2, 64, 16, 16, 64, 3, s2p1, 0},
        {"conv_in", 2, 4, 16, 16, 320, 3, s1p1, 1},
        {"3x3-nobias", 2, 64, 12, 20, 96, 3, s1p1, 0},
        {"1x1", 2, 64, 16, 16, 96, 1, s1p0, 1},
        {"1x1-nobias", 1, 96, 8, 8, 40, 1, s1p0, 0},
        {"1x1-s2", 1, 16, 9, 9, 8, 1, s2p0, 0},
        {"1x1-pad", 1, 8, 5, 5, 3, 1, s1p1, 1},
        {"odd", 1, 3, 7, 5, 4, 3, s1p1, 1},
        {"ci=co=1", 1, 1, 6, 6, 1, 3, s1p1, 1},
        {"h=1", 1, 5, 1, 9, 3, 3, s1p1, 1},
        {"w=1", 2, 4, 8, 1, 6, 3, s2p1, 0},
        {"odd-s2", 2, 9, 17, 13, 11, 3, s2p1, 1},
        {"odd-vae", 2, 9, 17, 13, 11, 3, vae, 1},
        {"odd-valid", 2, 9, 17, 13, 11, 3, s1p0, 0},
        {"asym-s1", 1, 6, 10, 7, 5, 3, (struct sd_conv2d_params){1, 1, 0, 2, 1, 0, 0}, 1},
    };
    if (san) { /* ASan: shrink the two largest */
        cases[0].Ci = cases[0].Co = 64, cases[0].H = cases[0].W = 16;
        cases[1].Ci = cases[1].Co = 32, cases[1].H = cases[1].W = 32;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_conv_case(cpu, &cases[i], 100 + 10 * i);
}

/* Same shape twice: one primitive, identical bytes; a new shape adds one;
 * weights reordered once, and again after sd_cpu_dnnl_weights_forget. */
static void test_conv_cache(struct sd_cpu *cpu) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    const struct sd_conv2d_params p = {1, 1, 1, 1, 1, 1, 0};
    struct sd_tensor *x = tensor_new("x", 4, (int64_t[]){2, 32, 12, 12}, 7, 1.0f);
    struct sd_tensor *w = tensor_new("w", 4, (int64_t[]){48, 32, 3, 3}, 8, 1.0f / 17.0f);
    struct sd_tensor *b = tensor_new("b", 1, (int64_t[]){48}, 9, 1.0f);
    struct sd_tensor *y = conv_node(x, w, b, p);
    int64_t n = sd_tensor_nelements(y);
    float *first = malloc((size_t)n * sizeof *first), *ref = malloc((size_t)n * sizeof *ref);
    sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_DIRECT); /* the path that uses the weights cache */

    long p0 = d->prims_created, r0 = d->weight_reorders;
    int rc = sd_cpu_op_conv2d(cpu, y);
    memcpy(first, y->data, (size_t)n * sizeof *first);
    long p1 = d->prims_created, r1 = d->weight_reorders, h1 = d->prim_hits;
    memset(y->data, 0xff, (size_t)n * sizeof(float));
    rc |= sd_cpu_op_conv2d(cpu, y);
    CHECK(rc == SD_OK && p1 == p0 + 1 && d->prims_created == p1 && d->prim_hits == h1 + 1,
          "cache: same shape twice creates one primitive (created %ld then %ld, hits +%ld)", p1 - p0,
          d->prims_created - p1, d->prim_hits - h1);
    CHECK(r1 == r0 + 1 && d->weight_reorders == r1, "cache: weights reordered once (%ld, then %ld)", r1 - r0,
          d->weight_reorders - r1);
    CHECK(memcmp(first, y->data, (size_t)n * sizeof *first) == 0, "cache: same shape twice gives identical bytes");

    /* A different shape: new primitive, correct result. */
    struct sd_tensor *x2 = tensor_new("x2", 4, (int64_t[]){1, 32, 9, 14}, 10, 1.0f);
    struct sd_tensor *y2 = conv_node(x2, w, b, p);
    int64_t n2 = sd_tensor_nelements(y2);
    float *ref2 = malloc((size_t)n2 * sizeof *ref2);
    ref_conv2d(x2->data, w->data, b->data, ref2, 1, 32, 9, 14, 48, 3, 3, p, y2->ne[2], y2->ne[3]);
    long p2 = d->prims_created;
    rc = sd_cpu_op_conv2d(cpu, y2);
    CHECK(rc == SD_OK && d->prims_created == p2 + 1 && !check_close("conv2d", y2->data, ref2, n2, 1e-5, 1e-5, NULL),
          "cache: a different shape gets its own primitive and is correct");

    /* Weights changed in place: after forget, the new weights are used. */
    for (int64_t i = 0; i < sd_tensor_nelements(w); i++) ((float *)w->data)[i] *= -0.5f;
    ref_conv2d(x->data, w->data, b->data, ref, 2, 32, 12, 12, 48, 3, 3, p, y->ne[2], y->ne[3]);
    sd_cpu_dnnl_weights_forget(cpu);
    rc = sd_cpu_op_conv2d(cpu, y);
    CHECK(rc == SD_OK && !check_close("conv2d", y->data, ref, n, 1e-5, 1e-5, NULL),
          "weights cache: forget then changed weights are used");
    /* Changed again without forget (contract broken): the fingerprint guard redoes the reorder. */
    for (int64_t i = 0; i < sd_tensor_nelements(w); i++) ((float *)w->data)[i] *= 3.0f;
    ref_conv2d(x->data, w->data, b->data, ref, 2, 32, 12, 12, 48, 3, 3, p, y->ne[2], y->ne[3]);
    rc = sd_cpu_op_conv2d(cpu, y);
    CHECK(rc == SD_OK && !check_close("conv2d", y->data, ref, n, 1e-5, 1e-5, NULL),
          "weights cache: fingerprint catches weights changed in place");

    sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_AUTO);
    sd_cpu_dnnl_weights_forget(cpu);
    free(first), free(ref), free(ref2);
    tensor_free(x), tensor_free(w), tensor_free(b), tensor_free(y), tensor_free(x2), tensor_free(y2);
}

/* The per-shape rule (op_conv2d.c) picks what its table says. */
static void test_conv_rule(struct sd_cpu *cpu) {
    static const struct {
        int64_t N, Ci, H, W, Co, k;
        int s, pad, policy, want;
    } cases[] = {
        {2, 64, 16, 16, 64, 3, 1, 1, SD_CONV_AUTO, SD_CONV_WINO},
        {2, 64, 8, 8, 64, 3, 1, 1, SD_CONV_AUTO, SD_CONV_NCHW},
        {1, 64, 9, 9, 64, 3, 2, 1, SD_CONV_AUTO, SD_CONV_DIRECT},
        {1, 64, 8, 8, 32, 1, 1, 0, SD_CONV_AUTO, SD_CONV_GEMM},
        {1, 4, 8, 8, 64, 3, 1, 1, SD_CONV_AUTO, SD_CONV_GEMM},
        {1, 64, 8, 8, 4, 3, 1, 1, SD_CONV_AUTO, SD_CONV_GEMM},
        {2, 64, 8, 8, 64, 3, 1, 1, SD_CONV_LOWMEM, SD_CONV_NCHW},
        {1, 64, 8, 8, 32, 1, 1, 0, SD_CONV_LOWMEM, SD_CONV_GEMM},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sd_tensor *x = tensor_new("x", 4, (int64_t[]){cases[i].N, cases[i].Ci, cases[i].H, cases[i].W}, 1, 1.0f);
        struct sd_tensor *w = tensor_new("w", 4, (int64_t[]){cases[i].Co, cases[i].Ci, cases[i].k, cases[i].k}, 2, 0.1f);
        int s = cases[i].s, p = cases[i].pad;
        struct sd_tensor *y = conv_node(x, w, NULL, (struct sd_conv2d_params){s, s, p, p, p, p, 0});
        sd_cpu_dnnl_set_conv_algo(cpu, cases[i].policy);
        int rc = sd_cpu_op_conv2d(cpu, y);
        int got = rc == SD_OK && cpu->dnnl->last ? cpu->dnnl->last->algo : -1;
        int want = cases[i].want;
        if (want == SD_CONV_WINO && got == SD_CONV_DIRECT) {
            /* Fine only where oneDNN has no Winograd kernel (no AVX-512): forced wino falls back too. */
            sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_WINO);
            if (sd_cpu_op_conv2d(cpu, y) == SD_OK && cpu->dnnl->last->algo == SD_CONV_DIRECT) want = SD_CONV_DIRECT;
        }
        CHECK(got == want, "conv2d rule: %s [%lld,%lld,%lld,%lld]->%lld k%lld s%d picks %s (got %s)",
              sd_conv_algo_name(cases[i].policy), (long long)cases[i].N, (long long)cases[i].Ci,
              (long long)cases[i].H, (long long)cases[i].W, (long long)cases[i].Co, (long long)cases[i].k, s,
              sd_conv_algo_name(want), sd_conv_algo_name(got));
        if (cases[i].policy == SD_CONV_LOWMEM)
            CHECK(cpu->dnnl->weight_bytes == 0, "conv2d rule: lowmem keeps no weight copy (%zu bytes)",
                  cpu->dnnl->weight_bytes);
        sd_cpu_dnnl_weights_forget(cpu);
        tensor_free(x), tensor_free(w), tensor_free(y);
    }
    sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_AUTO);
    CHECK(cpu->dnnl->weight_bytes == 0, "weights cache: forget releases every copy (%zu bytes left)",
          cpu->dnnl->weight_bytes);
}

/* Our bf16 convolutions against the naive f32 reference, beside oneDNN's
 * bf16 direct conv on the same inputs: Winograd (conv_wino_bf16.c) for the
 * 3x3 cases, F(2x2,3x3), or F(4x4,3x3) where p.wino4 is set and the plane
 * is at least 32x32; the 1x1 GEMM (conv1x1_bf16.c) for the 1x1 ones; odd
 * planes and channel counts (tiles and pixel chunks past the edge, Co not a
 * multiple of the micro-tile's 6, odd Ci), one-row and one-column images,
 * narrow planes (two tile rows per vector), wide ones (several vectors per
 * tile row), bias or not. */
static void test_conv_bf16_ours(void) {
    struct sd_ctx ctx = {0};
    struct sd_cpu cpu = {.ctx = &ctx, .n_threads = omp_get_max_threads()};
    if (!sd_bf16_kernels_built() || !sd_cpu_precision_bf16(SD_PRECISION_BF16)) {
        printf("note: conv2d bf16 Winograd and 1x1: not in this build (no AVX-512 BF16)\n");
        return;
    }
    if (sd_cpu_dnnl_init(&cpu, SD_CONV_POLICY_AUTO, SD_PRECISION_BF16, NULL, NULL) != SD_OK) {
        CHECK(0, "bf16 backend: %s", ctx.msg);
        return;
    }
    const struct sd_conv2d_params s1p1 = {1, 1, 1, 1, 1, 1, 0}, s1p0 = {1, 1, 0, 0, 0, 0, 0},
                                  w4 = {1, 1, 1, 1, 1, 1, 1};
    struct conv_case cases[] = {
        {"sd-resnet", 2, 320, 32, 32, 320, 3, s1p1, 1},
        {"F4 sd-resnet", 2, 320, 32, 32, 320, 3, w4, 1},
        {"F4 odd plane, Co%6", 1, 64, 33, 35, 70, 3, w4, 1},
        {"F4 odd Ci, wide", 1, 65, 37, 83, 64, 3, w4, 0},
        {"F4 wino4 below 32x32: F2", 1, 64, 31, 40, 64, 3, w4, 1},
        {"odd plane, Co%6", 2, 64, 33, 35, 70, 3, s1p1, 1},
        {"odd Ci", 1, 65, 16, 17, 64, 3, s1p1, 0},
        {"tiny", 1, 5, 7, 9, 7, 3, s1p1, 1},
        {"h=1", 1, 8, 1, 40, 3, 3, s1p1, 1},
        {"w=1", 2, 8, 21, 1, 5, 3, s1p1, 0},
        {"1x1 proj", 2, 320, 16, 16, 320, 1, s1p0, 1},
        {"1x1 odd", 1, 65, 13, 11, 70, 1, s1p0, 0},
        {"1x1 shortcut", 2, 96, 7, 9, 64, 1, s1p0, 1},
    };
    if (san) cases[0].Ci = cases[0].Co = cases[1].Ci = cases[1].Co = 64;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct conv_case *c = &cases[i];
        struct sd_tensor *x = tensor_new("x", 4, (int64_t[]){c->N, c->Ci, c->H, c->W}, 300 + i, 1.0f);
        struct sd_tensor *w = tensor_new("w", 4, (int64_t[]){c->Co, c->Ci, c->k, c->k}, 400 + i,
                                         1.0f / sqrtf((float)(c->k * c->k * c->Ci)));
        struct sd_tensor *b = c->bias ? tensor_new("b", 1, (int64_t[]){c->Co}, 500 + i, 1.0f) : NULL;
        struct sd_tensor *y = conv_node(x, w, b, c->p);
        const int64_t n = sd_tensor_nelements(y);
        float *ref = malloc((size_t)n * sizeof *ref);
        ref_conv2d(x->data, w->data, b ? b->data : NULL, ref, c->N, c->Ci, c->H, c->W, c->Co, c->k, c->k, c->p,
                   y->ne[2], y->ne[3]);
        double err[2] = {0, 0};
        const int algos[2] = {SD_CONV_DIRECT, c->k == 3 ? SD_CONV_WINO : SD_CONV_GEMM};
        const int f4 = c->p.wino4 && c->H >= 32 && c->W >= 32 && c->Ci * c->Co <= 1920 * 640; /* the rule (op_conv2d.c) */
        const char *impl = c->k == 3 ? f4 ? "wino_bf16 F(4x4" : "wino_bf16 F(2x2" : "1x1_bf16";
        int rc = SD_OK, ours = 0;
        for (int a = 0; a < 2 && rc == SD_OK; a++) {
            sd_cpu_dnnl_set_conv_algo(&cpu, algos[a]);
            memset(y->data, 0xff, (size_t)n * sizeof(float));
            rc = sd_cpu_op_conv2d(&cpu, y);
            if (rc == SD_OK) (void)check_close("conv2d bf16", y->data, ref, n, 1.0, 0, &err[a]); /* error only */
            if (a == 1) ours = cpu.dnnl->last && strstr(cpu.dnnl->last->impl, impl) != NULL;
        }
        /* Measured (Zen 4): F(2x2) 1.2-1.9x the direct conv's error (its
         * V = B^T d B is rounded to bf16 after the additions), F(4x4) 9.8-10x
         * (larger transforms: each output sums 36 rounded products weighted
         * by up to 64); 1x1 about 1x (the same roundings, another order). */
        const double f = c->k == 3 ? f4 ? 14.0 : 2.5 : 1.2, cap = f4 ? 5e-2 : 1.5e-2;
        CHECK(rc == SD_OK && ours && err[1] <= f * err[0] + 1e-6 && err[1] < cap,
              "conv2d bf16 %s %s [%lld,%lld,%lld,%lld]->%lld%s: max abs err %.3g vs oneDNN bf16 direct's %.3g "
              "(<= %.1fx and < %.3g; ours: %d)",
              impl, c->what, (long long)c->N, (long long)c->Ci, (long long)c->H, (long long)c->W, (long long)c->Co,
              c->bias ? " bias" : "", err[1], err[0], f, cap, ours);
        sd_cpu_dnnl_weights_forget(&cpu);
        free(ref);
        tensor_free(x), tensor_free(w), tensor_free(b), tensor_free(y);
    }
    sd_cpu_dnnl_free(&cpu);
    sd_free_aligned(cpu.scratch);
}

/* The bf16 rule (op_conv2d.c): our bf16 Winograd for 3x3 stride-1 pad-1
 * convs with >= 64 channels on output planes >= 16x16 (where it measured
 * 1.5-2x oneDNN's bf16 direct), bf16 direct on 8x8 planes and under
 * lowmem (no 16/9-sized transformed copies). On a CPU without AVX-512 a
 * bf16 request computes in f32 (checked instead; its rule is
 * test_conv_rule's). */
static void test_conv_rule_bf16(void) {
    struct sd_ctx ctx = {0};
    struct sd_cpu cpu = {.ctx = &ctx, .n_threads = omp_get_max_threads()};
    if (sd_cpu_dnnl_init(&cpu, SD_CONV_POLICY_AUTO, SD_PRECISION_BF16, NULL, NULL) != SD_OK) {
        CHECK(0, "bf16 backend: %s", ctx.msg);
        return;
    }
    if (!sd_cpu_precision_bf16(SD_PRECISION_BF16)) { /* no AVX-512: bf16 asked for computes in f32 (its rule above) */
        CHECK(cpu.dnnl->bf16 == 0, "conv2d bf16 rule: without AVX-512 (oneDNN ISA %s) bf16 falls back to f32",
              sd_cpu_isa());
        sd_cpu_dnnl_free(&cpu);
        return;
    }
    static const struct {
        int64_t N, Ci, H, Co;
        int policy, want, wino4, tile; /* tile: the Winograd's output tile */
    } cases[] = {
        {1, 64, 128, 64, SD_CONV_AUTO, SD_CONV_WINO, 0, 2},    /* the VAE's planes */
        {2, 64, 64, 64, SD_CONV_AUTO, SD_CONV_WINO, 0, 2},
        {2, 64, 64, 64, SD_CONV_AUTO, SD_CONV_WINO, 1, 4},     /* the UNet's largest (its graph sets wino4) */
        {2, 64, 32, 64, SD_CONV_AUTO, SD_CONV_WINO, 1, 4},
        {2, 64, 16, 64, SD_CONV_AUTO, SD_CONV_WINO, 1, 2},     /* F(4x4) copies of the 1280-channel convs: 36/9 */
        {1, 1280, 32, 1280, SD_CONV_AUTO, SD_CONV_WINO, 1, 2}, /* SDXL's 1280x1280 at 32x32: F(2x2) (memory) */
        {1, 1920, 32, 640, SD_CONV_AUTO, SD_CONV_WINO, 1, 4},  /* SD 1.5's largest F(4x4) */
        {2, 64, 8, 64, SD_CONV_AUTO, SD_CONV_DIRECT, 1, 0},    /* 8x8: direct (Winograd 1.3x for its copies) */
        {1, 64, 128, 64, SD_CONV_LOWMEM, SD_CONV_DIRECT, 1, 0},
        {1, 64, 128, 64, SD_CONV_WINO, SD_CONV_WINO, 0, 2},    /* forced */
        {2, 64, 8, 64, SD_CONV_WINO, SD_CONV_WINO, 1, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sd_tensor *x = tensor_new("x", 4, (int64_t[]){cases[i].N, cases[i].Ci, cases[i].H, cases[i].H}, 1, 1.0f);
        struct sd_tensor *w = tensor_new("w", 4, (int64_t[]){cases[i].Co, cases[i].Ci, 3, 3}, 2, 0.1f);
        struct sd_tensor *y = conv_node(x, w, NULL, (struct sd_conv2d_params){1, 1, 1, 1, 1, 1, cases[i].wino4});
        sd_cpu_dnnl_set_conv_algo(&cpu, cases[i].policy);
        int rc = sd_cpu_op_conv2d(&cpu, y);
        int got = rc == SD_OK && cpu.dnnl->last ? cpu.dnnl->last->algo : -1;
        const char *impl = rc == SD_OK && cpu.dnnl->last ? cpu.dnnl->last->impl : "";
        char want_impl[32] = "";
        if (cases[i].tile) snprintf(want_impl, sizeof want_impl, "F(%dx%d,3x3)", cases[i].tile, cases[i].tile);
        CHECK(got == cases[i].want && (!cases[i].tile || strstr(impl, want_impl)),
              "conv2d bf16 rule: %s%s [%lld,%lld,%lld,%lld] 3x3 s1 picks %s %s (got %s, %s)",
              sd_conv_algo_name(cases[i].policy), cases[i].wino4 ? " wino4" : "", (long long)cases[i].N,
              (long long)cases[i].Ci, (long long)cases[i].H, (long long)cases[i].H, sd_conv_algo_name(cases[i].want),
              want_impl, sd_conv_algo_name(got), impl);
        tensor_free(x), tensor_free(w), tensor_free(y);
    }
    sd_cpu_dnnl_free(&cpu);
    sd_free_aligned(cpu.scratch);
}

static void test_conv_errors(struct sd_cpu *cpu) {
    struct sd_tensor *x = tensor_new("x", 4, (int64_t[]){1, 4, 8, 8}, 1, 1.0f);
    struct sd_tensor *w = tensor_new("w", 4, (int64_t[]){2, 5, 3, 3}, 2, 1.0f); /* Ci mismatch */
    struct sd_tensor *y = tensor_new("y", 4, (int64_t[]){1, 2, 8, 8}, 0, 0);
    y->op = SD_OP_CONV2D;
    y->src[0] = x, y->src[1] = w;
    y->p.conv2d = (struct sd_conv2d_params){1, 1, 1, 1, 1, 1, 0};
    snprintf(y->name, sizeof y->name, "bad_conv");
    sd_ctx_clear(cpu->ctx);
    int rc = sd_cpu_op_conv2d(cpu, y);
    CHECK(rc == SD_ERR_INVALID && strstr(cpu->ctx->msg, "conv2d(bad_conv)"),
          "conv2d: channel mismatch is SD_ERR_INVALID naming the node (%s)", cpu->ctx->msg);
    sd_ctx_clear(cpu->ctx);
    rc = sd_dnnl_check(cpu, dnnl_invalid_arguments, "dnnl_example_call");
    CHECK(rc == SD_ERR_BACKEND && strstr(cpu->ctx->msg, "oneDNN: ") == cpu->ctx->msg && strstr(cpu->ctx->msg, "dnnl_example_call") && strstr(cpu->ctx->msg, "= 2"),
          "oneDNN status maps to SD_ERR_BACKEND with origin, function and code (%s)", cpu->ctx->msg);
    sd_ctx_clear(cpu->ctx);
    tensor_free(x), tensor_free(w), tensor_free(y);

    struct sd_ctx ctx = {0};
    struct sd_cpu bad = {.ctx = &ctx, .n_threads = 1};
    rc = sd_cpu_dnnl_init(&bad, SD_CONV_POLICY_COUNT, SD_PRECISION_F32, NULL, NULL);
    CHECK(rc == SD_ERR_INVALID && bad.dnnl == NULL && strstr(ctx.msg, "convolution policy") && sd_conv_policy_parse("fastest") < 0 &&
              sd_conv_policy_parse("lowmem") == SD_CONV_POLICY_LOWMEM,
          "init: an unknown convolution policy is SD_ERR_INVALID (%s); names parse", ctx.msg);
    sd_cpu_dnnl_free(&bad); /* no-op */
}

/* ---- linear ---- */

static void test_linear_case(struct sd_cpu *cpu, int n_dims, const int64_t *xdims, int64_t out, int bias,
                             uint64_t seed) {
    int64_t in = xdims[n_dims - 1], rows = 1;
    for (int i = 0; i < n_dims - 1; i++) rows *= xdims[i];
    struct sd_tensor *x = tensor_new("x", n_dims, xdims, seed, 1.0f);
    struct sd_tensor *w = tensor_new("w", 2, (int64_t[]){out, in}, seed + 1, 1.0f / sqrtf((float)in));
    struct sd_tensor *b = bias ? tensor_new("b", 1, (int64_t[]){out}, seed + 2, 1.0f) : NULL;
    int64_t ydims[4];
    memcpy(ydims, xdims, (size_t)n_dims * sizeof *ydims);
    ydims[n_dims - 1] = out;
    struct sd_tensor *y = tensor_new("y", n_dims, ydims, 0, 0);
    y->op = SD_OP_LINEAR;
    y->src[0] = x, y->src[1] = w, y->src[2] = b;
    float *ref = malloc((size_t)(rows * out) * sizeof *ref);
    ref_linear(x->data, w->data, b ? b->data : NULL, ref, rows, in, out);
    char xs[64];
    double err = 0;
    int rc = sd_cpu_op_linear(cpu, y);
    int bad = rc != SD_OK || check_close("linear", y->data, ref, rows * out, 1e-5, 1e-5, &err); /* measured <= 1.2e-6 */
    /* Second run: cached primitive and weights, same answer. */
    if (!bad) {
        memset(y->data, 0xff, (size_t)(rows * out) * sizeof(float));
        rc = sd_cpu_op_linear(cpu, y);
        bad = rc != SD_OK || check_close("linear (cached)", y->data, ref, rows * out, 1e-5, 1e-5, NULL);
    }
    CHECK(!bad, "linear x %s by w [%lld,%lld]%s, twice (max err %.2g) %s", sd_tensor_shape_str(x, xs, sizeof xs),
          (long long)out, (long long)in, bias ? " + bias" : "", err, rc ? cpu->ctx->msg : "");
    sd_cpu_dnnl_weights_forget(cpu);
    free(ref);
    tensor_free(x), tensor_free(w), tensor_free(b), tensor_free(y);
}

static void test_linear(struct sd_cpu *cpu) {
    test_linear_case(cpu, 2, (int64_t[]){5, 7}, 9, 1, 300);
    test_linear_case(cpu, 2, (int64_t[]){2, 320}, 1280, 1, 310);          /* time embedding */
    test_linear_case(cpu, 3, (int64_t[]){2, 77, 768}, 320, 0, 320);       /* cross-attn k/v projection */
    test_linear_case(cpu, 3, (int64_t[]){2, 256, 320}, 640, 1, 330);      /* feed-forward */
    test_linear_case(cpu, 3, (int64_t[]){3, 1, 16}, 1, 0, 340);           /* out = 1 */
    test_linear_case(cpu, 4, (int64_t[]){2, 3, 5, 11}, 13, 1, 350);       /* 4-d x */
}

/* A bf16 backend's linear (oneDNN's bf16 matmul) against a double
 * reference fed the bf16-rounded x and w: what is left is the f32
 * accumulation. (A linear on the bf16 micro-kernel of our convolutions was
 * tried and measured 335-437 GFLOP/s against oneDNN's 390-438 on SD's
 * shapes, so oneDNN keeps them.) */
static void test_linear_bf16(void) {
    struct sd_ctx ctx = {0};
    struct sd_cpu cpu = {.ctx = &ctx, .n_threads = omp_get_max_threads()};
    if (!sd_cpu_precision_bf16(SD_PRECISION_BF16)) return; /* f32 only: test_linear covers it */
    if (sd_cpu_dnnl_init(&cpu, SD_CONV_POLICY_AUTO, SD_PRECISION_BF16, NULL, NULL) != SD_OK) {
        CHECK(0, "bf16 backend: %s", ctx.msg);
        return;
    }
    static const struct {
        int64_t rows, in, out;
        int bias;
    } cases[] = {
        {154, 768, 320, 0},   /* cross-attention k/v */
        {512, 320, 1280, 1},  /* feed-forward */
        {13, 33, 48, 1},      /* odd in */
        {2, 320, 1280, 1},    /* time embedding */
        {40, 64, 40, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t R = cases[i].rows, I = cases[i].in, O = cases[i].out;
        struct sd_tensor *x = tensor_new("x", 2, (int64_t[]){R, I}, 700 + i, 1.0f);
        struct sd_tensor *w = tensor_new("w", 2, (int64_t[]){O, I}, 710 + i, 1.0f / sqrtf((float)I));
        struct sd_tensor *b = cases[i].bias ? tensor_new("b", 1, (int64_t[]){O}, 720 + i, 1.0f) : NULL;
        struct sd_tensor *y = tensor_new("y", 2, (int64_t[]){R, O}, 0, 0);
        y->op = SD_OP_LINEAR;
        y->src[0] = x, y->src[1] = w, y->src[2] = b;
        float *xr = malloc((size_t)(R * I) * sizeof *xr), *wr = malloc((size_t)(O * I) * sizeof *wr);
        float *ref = malloc((size_t)(R * O) * sizeof *ref);
        for (int64_t k = 0; k < R * I; k++) xr[k] = test_bf16_round(((float *)x->data)[k]);
        for (int64_t k = 0; k < O * I; k++) wr[k] = test_bf16_round(((float *)w->data)[k]);
        ref_linear(xr, wr, b ? b->data : NULL, ref, R, I, O);
        double err = 0;
        int rc = sd_cpu_op_linear(&cpu, y);
        /* measured <= 6e-7 (f32 sums of <= 768 products of O(1)) */
        int bad = rc != SD_OK || check_close("linear bf16", y->data, ref, R * O, 5e-6, 5e-6, &err);
        CHECK(!bad, "linear bf16 [%lld,%lld] -> %lld%s: max abs err %.2g vs the bf16-rounded operands in double",
              (long long)R, (long long)I, (long long)O, b ? " + bias" : "", err);
        sd_cpu_dnnl_weights_forget(&cpu);
        free(xr), free(wr), free(ref);
        tensor_free(x), tensor_free(w), tensor_free(b), tensor_free(y);
    }
    /* Nodes run in a row (sd_cpu_run_node): q and k of one x share one bf16
     * conversion of x (op_linear.c); a linear of another x between k and v
     * overwrites the scratch, so v converts x again. Each output against its
     * own reference. */
    const int64_t R = 70, I = 96, O = 40;
    struct sd_tensor *xs[2] = {tensor_new("x", 2, (int64_t[]){R, I}, 730, 1.0f),
                               tensor_new("x2", 2, (int64_t[]){R, I}, 731, 1.0f)};
    const char *names[4] = {"q", "k", "u (x2)", "v"};
    const int which_x[4] = {0, 0, 1, 0};
    for (int i = 0; i < 4; i++) {
        struct sd_tensor *x = xs[which_x[i]];
        struct sd_tensor *w = tensor_new("w", 2, (int64_t[]){O, I}, 740 + i, 1.0f / sqrtf((float)I));
        struct sd_tensor *y = tensor_new("y", 2, (int64_t[]){R, O}, 0, 0);
        y->op = SD_OP_LINEAR;
        y->src[0] = x, y->src[1] = w;
        float *xr = malloc((size_t)(R * I) * sizeof *xr), *wr = malloc((size_t)(O * I) * sizeof *wr);
        float *ref = malloc((size_t)(R * O) * sizeof *ref);
        for (int64_t k = 0; k < R * I; k++) xr[k] = test_bf16_round(((float *)x->data)[k]);
        for (int64_t k = 0; k < O * I; k++) wr[k] = test_bf16_round(((float *)w->data)[k]);
        ref_linear(xr, wr, NULL, ref, R, I, O);
        const int reuse = i == 1; /* k after q: the same x, the node before */
        double err = 0;
        int rc = sd_cpu_run_node(&cpu, y);
        int bad = rc != SD_OK || check_close("linear bf16 in a row", y->data, ref, R * O, 1e-6, 1e-6, &err);
        CHECK(!bad && cpu.xbf16_src == x->data, "linear bf16 in a row, %s (%s x): max abs err %.2g vs its reference",
              names[i], reuse ? "reusing the node before's bf16" : "converting its", err);
        sd_cpu_dnnl_weights_forget(&cpu);
        free(xr), free(wr), free(ref);
        tensor_free(w), tensor_free(y);
    }
    tensor_free(xs[0]), tensor_free(xs[1]);
    sd_cpu_dnnl_free(&cpu);
    sd_free_aligned(cpu.scratch);
}

/* ---- matmul ---- */

static void test_matmul_case(struct sd_cpu *cpu, int64_t B0, int64_t B1, int64_t M, int64_t K, int64_t N, int ta,
                             int tb, float alpha, uint64_t seed) {
    struct sd_tensor *a = tensor_new("a", 4, (int64_t[]){B0, B1, ta ? K : M, ta ? M : K}, seed, 1.0f);
    struct sd_tensor *b = tensor_new("b", 4, (int64_t[]){B0, B1, tb ? N : K, tb ? K : N}, seed + 1, 1.0f);
    struct sd_tensor *y = tensor_new("y", 4, (int64_t[]){B0, B1, M, N}, 0, 0);
    y->op = SD_OP_MATMUL;
    y->src[0] = a, y->src[1] = b;
    y->p.matmul = (struct sd_matmul_params){ta, tb, alpha};
    int64_t n = sd_tensor_nelements(y);
    float *ref = malloc((size_t)n * sizeof *ref);
    ref_matmul(a->data, b->data, ref, B0 * B1, M, K, N, ta, tb, alpha);
    double err = 0;
    /* K terms of O(1) products: scale the tolerance with sqrt(K)*alpha
     * (measured <= 4.8e-6 at K = 77; 10x margin). */
    double atol = 2e-6 * sqrt((double)K) * fabs(alpha) + 2e-7;
    int rc = sd_cpu_op_matmul(cpu, y);
    int bad = rc != SD_OK || check_close("matmul", y->data, ref, n, atol, 2e-5, &err);
    CHECK(!bad, "matmul [%lld,%lld] %lldx%lld%s by %lldx%lld%s alpha %g (max err %.2g, atol %.2g) %s", (long long)B0,
          (long long)B1, (long long)M, (long long)K, ta ? "(stored T)" : "", (long long)K, (long long)N,
          tb ? "(stored T)" : "", alpha, err, atol, rc ? cpu->ctx->msg : "");
    free(ref);
    tensor_free(a), tensor_free(b), tensor_free(y);
}

static void test_matmul(struct sd_cpu *cpu) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_matmul_case(cpu, 2, 3, 17, 9, 13, ta, tb, 1.0f, 400 + 10 * ta + 20 * tb);
            test_matmul_case(cpu, 1, 4, 33, 40, 21, ta, tb, 0.125f, 500 + 10 * ta + 20 * tb);
        }
    test_matmul_case(cpu, 1, 1, 1, 1, 1, 0, 0, -2.0f, 600);
    test_matmul_case(cpu, 1, 16, 256, 40, 256, 0, 1, 0.15811388f, 610); /* attention scores q·kᵀ/sqrt(40) */
    test_matmul_case(cpu, 1, 16, 256, 77, 40, 0, 0, 1.0f, 620);          /* probs·v (cross) */
}

/* The primitive cache's bookkeeping: 300 keys, every third dropped (the
 * last entry moves into each hole), then every key asked again: survivors
 * are hits with the same entry, dropped ones are made anew. */
static void test_prim_cache(struct sd_cpu *cpu) {
    enum { N = 300 };
    struct sd_cpu_dnnl *d = cpu->dnnl;
    struct sd_dnnl_prim *e[N];
    size_t n0 = d->n_prims;
    int created, made = 0, ok = 1;
    for (int i = 0; i < N; i++) {
        struct sd_dnnl_key k;
        memset(&k, 0, sizeof k);
        k.version = SD_DNNL_KEY_VERSION, k.kind = 1000, k.dims[0] = i;
        e[i] = sd_dnnl_prim_get(cpu, &k, &created);
        made += created;
    }
    for (int i = 0; i < N; i += 3) sd_dnnl_prim_drop(cpu, e[i]);
    ok &= d->n_prims == n0 + N - N / 3;
    for (int i = 0; i < N; i++) {
        struct sd_dnnl_key k;
        memset(&k, 0, sizeof k);
        k.version = SD_DNNL_KEY_VERSION, k.kind = 1000, k.dims[0] = i;
        struct sd_dnnl_prim *p = sd_dnnl_prim_get(cpu, &k, &created);
        ok &= p && p->key.dims[0] == i && created == (i % 3 == 0) && (i % 3 == 0 || p == e[i]);
    }
    CHECK(made == N && ok && d->n_prims == n0 + N, "primitive cache: %d keys, every third dropped then asked "
          "again: survivors hit the same entry, dropped ones are made anew (%zu entries)", N, d->n_prims);
}

int main(void) {
    san = getenv("SDRT_TEST_SAN") && atoi(getenv("SDRT_TEST_SAN"));
    struct sd_ctx ctx = {0};
    struct sd_cpu cpu = {.ctx = &ctx, .n_threads = omp_get_max_threads()};
    if (sd_cpu_dnnl_init(&cpu, SD_CONV_POLICY_AUTO, SD_PRECISION_F32, NULL, NULL) != SD_OK) {
        printf("FAIL sd_cpu_dnnl_init: %s\n", ctx.msg);
        return 1;
    }
    CHECK(cpu.dnnl && cpu.dnnl->engine && cpu.dnnl->stream, "sd_cpu_dnnl_init: engine and stream");
    test_conv(&cpu);
    test_conv_cache(&cpu);
    test_conv_rule(&cpu);
    test_conv_rule_bf16();
    test_conv_bf16_ours();
    test_linear_bf16();
    test_conv_errors(&cpu);
    test_linear(&cpu);
    test_matmul(&cpu);
    test_prim_cache(&cpu);
    sd_cpu_dnnl_free(&cpu);
    CHECK(cpu.dnnl == NULL, "sd_cpu_dnnl_free clears cpu->dnnl");
    sd_cpu_dnnl_free(&cpu); /* second free is a no-op */
    sd_free_aligned(cpu.scratch);
    return test_summary();
}
