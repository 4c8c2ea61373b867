/* test_cpu_ops.c - the CPU backend's OpenMP kernels (every op except
 * conv2d/linear/matmul) against naive double-accumulating references written
 * here, at SD shapes and odd shapes, plus error paths.
 *
 * Ops are called directly (sd_cpu_<op>) on hand-built tensors with a
 * struct sd_cpu filled here, so this binary links without the oneDNN
 * primitive code. SDRT_TEST_SAN=1 (ASan run) shrinks only the largest shapes.
 * Tolerances (|got-ref| <= atol + rtol*|ref|) are stated per case, about
 * 10x the worst error measured for the op (AVX-512 machine, gcc -O3
 * -march=native; each ok line prints the measured error and the margin).
 */
#include <omp.h>

#include "cpu.h"
#include "cpu_math.h"
#include "test.h"

static int san;
static struct sd_ctx ctx;
static struct sd_cpu cpu;

/* A tensor with its own (random [-1,1) * amp + off) data. */
static struct sd_tensor *mk(int nd, const int64_t *dims, uint64_t seed, float amp, float off) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, nd, dims);
    int64_t n = sd_tensor_nelements(t);
    float *d = malloc((size_t)n * sizeof *d);
    fill_random(d, n, seed);
    for (int64_t i = 0; i < n; i++) d[i] = d[i] * amp + off;
    t->data = d;
    t->index = -1;
    return t;
}

/* An op node over srcs with an output buffer filled with NaN (so an
 * unwritten element fails check_close). */
static struct sd_tensor *node_new(enum sd_op op, int nd, const int64_t *dims, struct sd_tensor *a,
                                  struct sd_tensor *b, struct sd_tensor *c) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, nd, dims);
    t->op = op;
    t->src[0] = a, t->src[1] = b, t->src[2] = c;
    int64_t n = sd_tensor_nelements(t);
    float *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = NAN;
    t->data = d;
    return t;
}

static void tfree(struct sd_tensor *t) {
    if (!t) return;
    free(t->data);
    free(t);
}

static float *ref_new(const struct sd_tensor *t) { return malloc((size_t)sd_tensor_nelements(t) * sizeof(float)); }

static void shape_str(const struct sd_tensor *t, char *buf) { sd_tensor_shape_str(t, buf, 64); }

/* ---------------------------------------------------------------- norms */

static void ref_group_norm(const float *x, const float *gm, const float *bt, float *y, int64_t N, int64_t C,
                           int64_t S, int G, double eps, int silu) {
    int64_t cpg = C / G, n_g = cpg * S;
    for (int64_t n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *xg = x + (n * C + g * cpg) * S;
            double mu = 0, var = 0;
            for (int64_t i = 0; i < n_g; i++) mu += xg[i];
            mu /= (double)n_g;
            for (int64_t i = 0; i < n_g; i++) var += (xg[i] - mu) * (xg[i] - mu);
            var /= (double)n_g;
            for (int64_t c = 0; c < cpg; c++) {
                int64_t ch = g * cpg + c;
                for (int64_t i = 0; i < S; i++) {
                    double v = (xg[c * S + i] - mu) / sqrt(var + eps) * (gm ? gm[ch] : 1.0) + (bt ? bt[ch] : 0.0);
                    if (silu) v = v / (1.0 + exp(-v));
                    y[(n * C + ch) * S + i] = (float)v;
                }
            }
        }
}

static void test_group_norm_case(int nd, const int64_t *dims, int G, int affine, int silu, float off,
                                 double tol) {
    struct sd_tensor *x = mk(nd, dims, 11, 2.0f, off);
    int64_t N = dims[0], C = dims[1], S = sd_tensor_nelements(x) / (N * C);
    struct sd_tensor *gm = affine ? mk(1, &C, 12, 1.0f, 1.0f) : NULL;
    struct sd_tensor *bt = affine ? mk(1, &C, 13, 0.5f, 0.0f) : NULL;
    struct sd_tensor *y = node_new(SD_OP_GROUP_NORM, nd, dims, x, gm, bt);
    y->p.group_norm = (struct sd_group_norm_params){G, 1e-5f, silu};
    float *ref = ref_new(y);
    ref_group_norm(x->data, gm ? gm->data : NULL, bt ? bt->data : NULL, ref, N, C, S, G, 1e-5, silu);
    int rc = sd_cpu_op_group_norm(&cpu, y);
    char sh[64];
    shape_str(x, sh);
    CHECK(rc == SD_OK && !check_close("group_norm", y->data, ref, sd_tensor_nelements(y), tol, tol, NULL),
          "group_norm %s G=%d%s%s offset %g (tol %g)", sh, G, affine ? " affine" : "", silu ? " +silu" : "",
          (double)off, tol);
    free(ref);
    tfree(x), tfree(gm), tfree(bt), tfree(y);
}

/* Measured: max abs err 4.8e-7 at |x| ~ 1 (58x under the old 1e-5), 6.7e-6
 * for 1M values per group at mean 100 (tolerance 1e-4, 15x). */
static void test_group_norm(void) {
    test_group_norm_case(4, (int64_t[]){2, 320, 64, 64}, 32, 1, 1, 0.0f, 2e-6);
    test_group_norm_case(4, (int64_t[]){2, 320, 64, 64}, 32, 0, 0, 0.3f, 2e-6);
    test_group_norm_case(4, (int64_t[]){1, 96, 7, 5}, 8, 1, 0, 0.0f, 2e-6);
    test_group_norm_case(4, (int64_t[]){1, 96, 7, 5}, 8, 1, 1, 0.0f, 2e-6);
    test_group_norm_case(2, (int64_t[]){3, 64}, 4, 1, 0, 0.0f, 2e-6);
    test_group_norm_case(3, (int64_t[]){2, 12, 33}, 3, 0, 1, 0.0f, 2e-6);
    /* Accuracy at 1M values per group with a large mean (naive float
     * E[x^2]-E[x]^2 would lose the variance entirely here). */
    if (san) test_group_norm_case(4, (int64_t[]){1, 4, 256, 128}, 1, 0, 0, 100.0f, 1e-4);
    else test_group_norm_case(4, (int64_t[]){1, 32, 256, 128}, 1, 0, 0, 100.0f, 1e-4);
}

static void test_layer_norm_case(int nd, const int64_t *dims, int affine, float off, double tol) {
    struct sd_tensor *x = mk(nd, dims, 21, 1.5f, off);
    int64_t C = dims[nd - 1], rows = sd_tensor_nelements(x) / C;
    struct sd_tensor *gm = affine ? mk(1, &C, 22, 1.0f, 1.0f) : NULL;
    struct sd_tensor *bt = affine ? mk(1, &C, 23, 0.5f, 0.0f) : NULL;
    struct sd_tensor *y = node_new(SD_OP_LAYER_NORM, nd, dims, x, gm, bt);
    y->p.layer_norm.eps = 1e-5f;
    float *ref = ref_new(y);
    const float *xd = x->data;
    for (int64_t r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int64_t i = 0; i < C; i++) mu += xd[r * C + i];
        mu /= (double)C;
        for (int64_t i = 0; i < C; i++) var += (xd[r * C + i] - mu) * (xd[r * C + i] - mu);
        var /= (double)C;
        for (int64_t i = 0; i < C; i++)
            ref[r * C + i] = (float)((xd[r * C + i] - mu) / sqrt(var + 1e-5) * (gm ? ((float *)gm->data)[i] : 1.0) +
                                     (bt ? ((float *)bt->data)[i] : 0.0));
    }
    int rc = sd_cpu_op_layer_norm(&cpu, y);
    char sh[64];
    shape_str(x, sh);
    CHECK(rc == SD_OK && !check_close("layer_norm", y->data, ref, sd_tensor_nelements(y), tol, tol, NULL),
          "layer_norm %s%s offset %g (tol %g)", sh, affine ? " affine" : "", (double)off, tol);
    free(ref);
    tfree(x), tfree(gm), tfree(bt), tfree(y);
}

static void test_layer_norm(void) {
    /* measured 7.2e-7, 1.9e-6 (offset 3: mean 3 cancels), 1.2e-7 */
    test_layer_norm_case(3, (int64_t[]){2, 77, 768}, 1, 0.0f, 5e-6);
    test_layer_norm_case(3, (int64_t[]){2, 4096, 320}, 1, 3.0f, 2e-5);
    test_layer_norm_case(2, (int64_t[]){5, 33}, 0, 0.0f, 2e-6);
}

/* ------------------------------------------------------ softmax, attention */

static void test_softmax_case(int nd, const int64_t *dims, float scale, int causal) {
    struct sd_tensor *x = mk(nd, dims, 31, 4.0f, 0.0f);
    struct sd_tensor *y = node_new(SD_OP_SOFTMAX, nd, dims, x, NULL, NULL);
    y->p.softmax = (struct sd_softmax_params){scale, causal};
    int64_t L = dims[nd - 1], R = nd > 1 ? dims[nd - 2] : 1, rows = sd_tensor_nelements(x) / L;
    float *ref = ref_new(y);
    const float *xd = x->data;
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = r % R;
        double mx = -INFINITY, s = 0;
        for (int64_t j = 0; j < L; j++)
            if (!causal || j <= i) mx = fmax(mx, (double)scale * xd[r * L + j]);
        for (int64_t j = 0; j < L; j++)
            if (!causal || j <= i) s += exp((double)scale * xd[r * L + j] - mx);
        for (int64_t j = 0; j < L; j++)
            ref[r * L + j] = (!causal || j <= i) ? (float)(exp((double)scale * xd[r * L + j] - mx) / s) : 0.0f;
    }
    int rc = sd_cpu_op_softmax(&cpu, y);
    char sh[64];
    shape_str(x, sh);
    CHECK(rc == SD_OK && !check_close("softmax", y->data, ref, sd_tensor_nelements(y), 1.5e-7, 1.5e-6, NULL),
          "softmax %s scale %g%s (tol 1.5e-7 abs + 1.5e-6 rel; measured <= 1.2e-7 abs)", sh, (double)scale, causal ? " causal" : "");
    free(ref);
    tfree(x), tfree(y);
}

static void test_softmax(void) {
    test_softmax_case(4, (int64_t[]){2, 8, 77, 77}, 0.125f, 0);
    test_softmax_case(4, (int64_t[]){2, 12, 77, 77}, 0.125f, 1);
    test_softmax_case(2, (int64_t[]){17, 129}, 1.0f, 0);
    test_softmax_case(3, (int64_t[]){3, 40, 23}, 0.5f, 1); /* more rows than columns */
}

/* Reference attention for query rows i = 0, step, 2*step, ... (all heads and
 * batches); returns how many rows it filled in ref (others left NaN). */
static void ref_attention(const float *q, const float *k, const float *v, float *ref, int64_t B, int64_t Lq,
                          int64_t Lk, int H, int64_t d, int64_t dv, double scale, int causal, int64_t step) {
    double *s = malloc((size_t)Lk * sizeof *s);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i += step) {
                int64_t n = causal ? (i + 1 < Lk ? i + 1 : Lk) : Lk;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < n; j++) {
                    double acc = 0;
                    for (int64_t c = 0; c < d; c++)
                        acc += (double)q[(b * Lq + i) * H * d + h * d + c] * k[(b * Lk + j) * H * d + h * d + c];
                    s[j] = acc * scale;
                    mx = fmax(mx, s[j]);
                }
                for (int64_t j = 0; j < n; j++) sum += (s[j] = exp(s[j] - mx));
                for (int64_t c = 0; c < dv; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < n; j++) acc += s[j] * v[(b * Lk + j) * H * dv + h * dv + c];
                    ref[(b * Lq + i) * H * dv + h * dv + c] = (float)(acc / sum);
                }
            }
    free(s);
}

static void test_attention_case(int64_t B, int64_t Lq, int64_t Lk, int H, int64_t d, int64_t dv, int causal,
                                int64_t step, const char *what) {
    struct sd_tensor *q = mk(3, (int64_t[]){B, Lq, H * d}, 41, 1.0f, 0.0f);
    struct sd_tensor *k = mk(3, (int64_t[]){B, Lk, H * d}, 42, 1.0f, 0.0f);
    struct sd_tensor *v = mk(3, (int64_t[]){B, Lk, H * dv}, 43, 1.0f, 0.0f);
    /* Scores of a few units so the softmax is not flat. */
    float scale = 3.0f / sqrtf((float)d);
    struct sd_tensor *y = node_new(SD_OP_ATTENTION, 3, (int64_t[]){B, Lq, H * dv}, q, k, v);
    y->p.attention = (struct sd_attention_params){H, scale, causal};
    float *ref = ref_new(y);
    ref_attention(q->data, k->data, v->data, ref, B, Lq, Lk, H, d, dv, scale, causal, step);
    double t0 = omp_get_wtime();
    int rc = sd_cpu_op_attention(&cpu, y);
    double t = omp_get_wtime() - t0;
    /* Compare only the reference rows. */
    int64_t rows = 0, C = H * dv;
    float *got = malloc((size_t)sd_tensor_nelements(y) * sizeof *got), *exp_ = ref_new(y);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i += step, rows++) {
            memcpy(got + rows * C, (float *)y->data + (b * Lq + i) * C, (size_t)C * sizeof *got);
            memcpy(exp_ + rows * C, ref + (b * Lq + i) * C, (size_t)C * sizeof *got);
        }
    double flops = 4.0 * (double)B * H * Lq * Lk * (double)(d + dv) / 2.0;
    CHECK(rc == SD_OK && !check_close("attention", got, exp_, rows * C, 5e-6, 5e-6, NULL),
          "attention %s B=%lld Lq=%lld Lk=%lld H=%d d=%lld dv=%lld%s (tol 5e-6, measured <= 4.7e-7; %lld rows checked; %.1f ms, %.1f GFLOP/s)",
          what, (long long)B, (long long)Lq, (long long)Lk, H, (long long)d, (long long)dv, causal ? " causal" : "",
          (long long)rows, t * 1e3, flops / t * 1e-9);
    free(got), free(exp_), free(ref);
    tfree(q), tfree(k), tfree(v), tfree(y);
}

/* The bf16 attention kernel (op_attention_bf16.c) against the double
 * reference fed the bf16-rounded operands (scale*q, k, v: the kernel's
 * remaining error is its bf16 probabilities and f32 sums), and against the
 * exact f32 reference (what bf16 costs). */
static void test_attention_bf16_case(int64_t B, int64_t Lq, int64_t Lk, int H, int64_t d, int64_t dv, int64_t step,
                                     double tol_rounded, double tol_exact, const char *what) {
    struct sd_tensor *q = mk(3, (int64_t[]){B, Lq, H * d}, 41, 1.0f, 0.0f);
    struct sd_tensor *k = mk(3, (int64_t[]){B, Lk, H * d}, 42, 1.0f, 0.0f);
    struct sd_tensor *v = mk(3, (int64_t[]){B, Lk, H * dv}, 43, 1.0f, 0.0f);
    const float scale = 3.0f / sqrtf((float)d);
    struct sd_tensor *y = node_new(SD_OP_ATTENTION, 3, (int64_t[]){B, Lq, H * dv}, q, k, v);
    y->p.attention = (struct sd_attention_params){H, scale, 0};
    const int64_t nq = sd_tensor_nelements(q), nk = sd_tensor_nelements(k), nv = sd_tensor_nelements(v);
    float *qr = malloc((size_t)nq * sizeof *qr), *kr = malloc((size_t)nk * sizeof *kr), *vr = malloc((size_t)nv * sizeof *vr);
    for (int64_t i = 0; i < nq; i++) qr[i] = test_bf16_round(((float *)q->data)[i] * scale);
    for (int64_t i = 0; i < nk; i++) kr[i] = test_bf16_round(((float *)k->data)[i]);
    for (int64_t i = 0; i < nv; i++) vr[i] = test_bf16_round(((float *)v->data)[i]);
    float *ref_r = ref_new(y), *ref_x = ref_new(y);
    ref_attention(qr, kr, vr, ref_r, B, Lq, Lk, H, d, dv, 1.0, 0, step);
    ref_attention(q->data, k->data, v->data, ref_x, B, Lq, Lk, H, d, dv, scale, 0, step);
    double t0 = omp_get_wtime();
    int rc = sd_cpu_attention_bf16(&cpu, y);
    double t = omp_get_wtime() - t0;
    int64_t rows = 0, C = H * dv;
    float *got = malloc((size_t)sd_tensor_nelements(y) * sizeof *got), *er = ref_new(y), *ex = ref_new(y);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Lq; i += step, rows++) {
            memcpy(got + rows * C, (float *)y->data + (b * Lq + i) * C, (size_t)C * sizeof *got);
            memcpy(er + rows * C, ref_r + (b * Lq + i) * C, (size_t)C * sizeof *got);
            memcpy(ex + rows * C, ref_x + (b * Lq + i) * C, (size_t)C * sizeof *got);
        }
    double e_r = 0, e_x = 0, flops = 2.0 * (double)B * H * Lq * Lk * (double)(d + dv);
    int bad = rc != SD_OK || check_close("attention bf16", got, er, rows * C, tol_rounded, 0, &e_r) ||
              check_close("attention bf16 vs f32", got, ex, rows * C, tol_exact, 0, &e_x);
    CHECK(!bad, "attention bf16 %s B=%lld Lq=%lld Lk=%lld H=%d d=%lld dv=%lld: max abs err %.2g vs bf16-rounded operands "
                "(tol %.1g), %.2g vs f32 (tol %.1g); %lld rows checked; %.1f ms, %.1f GFLOP/s",
          what, (long long)B, (long long)Lq, (long long)Lk, H, (long long)d, (long long)dv, e_r, tol_rounded, e_x, tol_exact,
          (long long)rows, t * 1e3, flops / t * 1e-9);
    free(got), free(er), free(ex), free(ref_r), free(ref_x), free(qr), free(kr), free(vr);
    tfree(q), tfree(k), tfree(v), tfree(y);
}

static void test_attention(void) {
    test_attention_case(2, 200, 333, 2, 40, 40, 0, 1, "odd Lq/Lk");
    test_attention_case(1, 300, 300, 1, 512, 512, 0, 1, "1 head x 512 (VAE-like)");
    test_attention_case(2, 77, 77, 12, 64, 64, 1, 1, "CLIP causal");
    test_attention_case(1, 130, 97, 3, 24, 16, 1, 1, "causal Lq>Lk, d!=dv");
    test_attention_case(3, 300, 300, 5, 32, 32, 1, 1, "causal, several query and key blocks");
    test_attention_case(2, 70, 1, 2, 8, 8, 0, 1, "Lk=1");
    test_attention_case(2, 1024, 77, 8, 80, 80, 0, 7, "cross-attention");
    if (san) test_attention_case(2, 1024, 1024, 8, 40, 40, 0, 37, "self-attention (shrunk for ASan)");
    else test_attention_case(2, 4096, 4096, 8, 40, 40, 0, 37, "SD1 self-attention 64x64");
    if (!sd_bf16_kernels_built()) {
        printf("note: attention bf16: this build has no AVX-512 BF16 (the f32 kernel runs in every mode)\n");
        return;
    }
    /* Tolerances 2-3x the measured error (Zen 4; in the messages). */
    test_attention_bf16_case(2, 200, 333, 2, 40, 40, 1, 2e-3, 2e-3, "odd Lq/Lk");
    test_attention_bf16_case(1, 130, 97, 3, 23, 17, 1, 3e-3, 3e-3, "odd d and dv");
    test_attention_bf16_case(2, 70, 1, 2, 8, 8, 1, 1e-6, 4e-3, "Lk=1");
    test_attention_bf16_case(2, 1024, 77, 8, 80, 80, 7, 4e-3, 5e-3, "cross-attention");
    test_attention_bf16_case(1, 300, 300, 1, 512, 512, 3, 2e-3, 2e-3, "1 head x 512 (VAE-like)");
    test_attention_bf16_case(2, 256, 600, 4, 160, 160, 5, 1.5e-3, 1.5e-3, "d=160");
    /* P.V's column split (op_attention_bf16.c): dv = 72 = 4 x 16 + 8 (a call
     * of the 256-bit half alone), dv = 28 (rem 12: a full vector, the sums
     * from P.V's column of ones). */
    test_attention_bf16_case(1, 100, 150, 2, 72, 72, 11, 2e-3, 2e-3, "dv=72");
    test_attention_bf16_case(1, 100, 150, 2, 28, 28, 13, 2e-3, 2e-3, "dv=28");
    if (san) test_attention_bf16_case(2, 1024, 1024, 8, 40, 40, 37, 1e-3, 1e-3, "self-attention (shrunk for ASan)");
    else test_attention_bf16_case(2, 4096, 4096, 8, 40, 40, 37, 6e-4, 6e-4, "SD1 self-attention 64x64");
}

/* ------------------------------------------------------- elementwise ops */

static double gelu_d(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double quick_gelu_d(double x) { return x / (1.0 + exp(-1.702 * x)); }
static double silu_d(double x) { return x / (1.0 + exp(-x)); }

static void test_unary(void) {
    int64_t n = 1000003;
    struct sd_tensor *x = mk(1, &n, 51, 10.0f, 0.0f);
    const float *xd = x->data;
    float *ref = ref_new(x);
    struct {
        const char *name;
        enum sd_op op;
        int (*fn)(struct sd_cpu *, struct sd_tensor *);
        double (*f)(double);
    } ops[] = {{"gelu", SD_OP_GELU, sd_cpu_op_gelu, gelu_d},
               {"quick_gelu", SD_OP_QUICK_GELU, sd_cpu_op_quick_gelu, quick_gelu_d},
               {"silu", SD_OP_SILU, sd_cpu_op_silu, silu_d}};
    for (int o = 0; o < 3; o++) {
        struct sd_tensor *y = node_new(ops[o].op, 1, &n, x, NULL, NULL);
        for (int64_t i = 0; i < n; i++) ref[i] = (float)ops[o].f(xd[i]);
        int rc = ops[o].fn(&cpu, y);
        CHECK(rc == SD_OK && !check_close(ops[o].name, y->data, ref, n, 3e-7, 3e-6, NULL),
              "%s on %lld values in [-10, 10] (tol 3e-7 abs + 3e-6 rel; measured <= 9.5e-7 at |y| ~ 10)", ops[o].name, (long long)n);
        tfree(y);
    }
    free(ref);
    tfree(x);
}

static void test_geglu(void) {
    int64_t dims[3] = {2, 77, 2 * 640};
    struct sd_tensor *x = mk(3, dims, 52, 4.0f, 0.0f);
    struct sd_tensor *y = node_new(SD_OP_GEGLU, 3, (int64_t[]){2, 77, 640}, x, NULL, NULL);
    float *ref = ref_new(y);
    const float *xd = x->data;
    for (int64_t r = 0; r < 2 * 77; r++)
        for (int64_t i = 0; i < 640; i++)
            ref[r * 640 + i] = (float)(xd[r * 1280 + i] * gelu_d(xd[r * 1280 + 640 + i]));
    int rc = sd_cpu_op_geglu(&cpu, y);
    CHECK(rc == SD_OK && !check_close("geglu", y->data, ref, sd_tensor_nelements(y), 3e-7, 3e-6, NULL),
          "geglu [2, 77, 1280] -> [2, 77, 640] (tol 3e-7 abs + 3e-6 rel; measured 9.5e-7)");
    free(ref);
    tfree(x), tfree(y);
}

static void test_binary_case(int is_mul, int nd, const int64_t *ad, const int64_t *bd) {
    struct sd_tensor *a = mk(nd, ad, 61, 1.0f, 0.0f), *b = mk(nd, bd, 62, 1.0f, 0.0f);
    struct sd_tensor *y = node_new(is_mul ? SD_OP_MUL : SD_OP_ADD, nd, ad, a, b, NULL);
    float *ref = ref_new(y);
    const float *A = a->data, *Bd = b->data;
    for (int64_t i0 = 0; i0 < a->ne[0]; i0++)
        for (int64_t i1 = 0; i1 < a->ne[1]; i1++)
            for (int64_t i2 = 0; i2 < a->ne[2]; i2++)
                for (int64_t i3 = 0; i3 < a->ne[3]; i3++) {
                    int64_t ia = ((i0 * a->ne[1] + i1) * a->ne[2] + i2) * a->ne[3] + i3;
                    int64_t ib = (((b->ne[0] > 1 ? i0 : 0) * b->ne[1] + (b->ne[1] > 1 ? i1 : 0)) * b->ne[2] +
                                  (b->ne[2] > 1 ? i2 : 0)) * b->ne[3] + (b->ne[3] > 1 ? i3 : 0);
                    ref[ia] = is_mul ? A[ia] * Bd[ib] : A[ia] + Bd[ib];
                }
    int rc = is_mul ? sd_cpu_op_mul(&cpu, y) : sd_cpu_op_add(&cpu, y);
    char sa[64], sb[64];
    shape_str(a, sa);
    shape_str(b, sb);
    CHECK(rc == SD_OK && !check_close(is_mul ? "mul" : "add", y->data, ref, sd_tensor_nelements(y), 0, 0, NULL),
          "%s %s (op) %s (exact)", is_mul ? "mul" : "add", sa, sb);
    free(ref);
    tfree(a), tfree(b), tfree(y);
}

static void test_binary(void) {
    for (int m = 0; m < 2; m++) {
        test_binary_case(m, 4, (int64_t[]){2, 320, 64, 64}, (int64_t[]){2, 320, 64, 64});
        test_binary_case(m, 4, (int64_t[]){2, 320, 16, 16}, (int64_t[]){2, 320, 1, 1});
        test_binary_case(m, 3, (int64_t[]){2, 77, 768}, (int64_t[]){1, 1, 768});
        test_binary_case(m, 4, (int64_t[]){2, 3, 5, 7}, (int64_t[]){2, 1, 5, 7});
        test_binary_case(m, 4, (int64_t[]){2, 3, 5, 7}, (int64_t[]){1, 3, 1, 7});
        test_binary_case(m, 4, (int64_t[]){2, 3, 5, 7}, (int64_t[]){1, 1, 1, 1});
    }
    int64_t n = 1001;
    struct sd_tensor *x = mk(1, &n, 63, 3.0f, 0.0f);
    struct sd_tensor *y = node_new(SD_OP_SCALE, 1, &n, x, NULL, NULL);
    y->p.scale = (struct sd_scale_params){0.18215f, -0.5f};
    float *ref = ref_new(y);
    for (int64_t i = 0; i < n; i++) ref[i] = (float)((double)((float *)x->data)[i] * 0.18215f - 0.5);
    int rc = sd_cpu_op_scale(&cpu, y);
    CHECK(rc == SD_OK && !check_close("scale", y->data, ref, n, 3e-7, 3e-6, NULL),
          "scale x*s+b (tol 3e-7 + 3e-6 rel; measured 1.2e-7: one fma vs double)");
    free(ref);
    tfree(x), tfree(y);
}

/* ----------------------------------------------------------- data movement */

static void test_concat_case(int nd, const int64_t *ad, const int64_t *bd, int dim) {
    struct sd_tensor *a = mk(nd, ad, 71, 1.0f, 0.0f), *b = mk(nd, bd, 72, 1.0f, 0.0f);
    int64_t od[4];
    for (int i = 0; i < nd; i++) od[i] = i == dim ? ad[i] + bd[i] : ad[i];
    struct sd_tensor *y = node_new(SD_OP_CONCAT, nd, od, a, b, NULL);
    y->p.concat.dim = dim;
    float *ref = ref_new(y);
    /* Reference by logical index: walk the output's 4 slots. */
    int slot = 4 - nd + dim;
    int64_t idx[4];
    for (idx[0] = 0; idx[0] < y->ne[0]; idx[0]++)
        for (idx[1] = 0; idx[1] < y->ne[1]; idx[1]++)
            for (idx[2] = 0; idx[2] < y->ne[2]; idx[2]++)
                for (idx[3] = 0; idx[3] < y->ne[3]; idx[3]++) {
                    int64_t o = ((idx[0] * y->ne[1] + idx[1]) * y->ne[2] + idx[2]) * y->ne[3] + idx[3];
                    const struct sd_tensor *s = idx[slot] < a->ne[slot] ? a : b;
                    int64_t j[4] = {idx[0], idx[1], idx[2], idx[3]};
                    if (s == b) j[slot] -= a->ne[slot];
                    ref[o] = ((float *)s->data)[((j[0] * s->ne[1] + j[1]) * s->ne[2] + j[2]) * s->ne[3] + j[3]];
                }
    int rc = sd_cpu_op_concat(&cpu, y);
    char sa[64], sb[64];
    shape_str(a, sa);
    shape_str(b, sb);
    CHECK(rc == SD_OK && !check_close("concat", y->data, ref, sd_tensor_nelements(y), 0, 0, NULL),
          "concat %s, %s along dim %d (exact)", sa, sb, dim);
    free(ref);
    tfree(a), tfree(b), tfree(y);
}

static void test_concat(void) {
    test_concat_case(4, (int64_t[]){2, 320, 16, 16}, (int64_t[]){2, 640, 16, 16}, 1);
    test_concat_case(4, (int64_t[]){2, 3, 5, 7}, (int64_t[]){2, 3, 5, 4}, 3);
    test_concat_case(4, (int64_t[]){1, 3, 5, 7}, (int64_t[]){2, 3, 5, 7}, 0);
    test_concat_case(3, (int64_t[]){2, 77, 768}, (int64_t[]){2, 5, 768}, 1);
    test_concat_case(3, (int64_t[]){2, 9, 4}, (int64_t[]){2, 9, 3}, 2);
    test_concat_case(2, (int64_t[]){3, 320}, (int64_t[]){3, 320}, 1);
}

static void test_upsample_case(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    struct sd_tensor *x = mk(4, (int64_t[]){N, C, H, W}, 81, 1.0f, 0.0f);
    struct sd_tensor *y = node_new(SD_OP_UPSAMPLE, 4, (int64_t[]){N, C, OH, OW}, x, NULL, NULL);
    y->p.upsample = (struct sd_upsample_params){OH, OW};
    float *ref = ref_new(y);
    const float *xd = x->data;
    for (int64_t p = 0; p < N * C; p++)
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++) {
                /* PyTorch nearest: floor(dst * (float)(in/out)), clamped. */
                float sh = (float)H / (float)OH, sw = (float)W / (float)OW;
                int64_t si = (int64_t)floorf((float)i * sh), sj = (int64_t)floorf((float)j * sw);
                si = si < H - 1 ? si : H - 1, sj = sj < W - 1 ? sj : W - 1;
                ref[(p * OH + i) * OW + j] = xd[(p * H + si) * W + sj];
            }
    int rc = sd_cpu_op_upsample_nearest(&cpu, y);
    CHECK(rc == SD_OK && !check_close("upsample", y->data, ref, sd_tensor_nelements(y), 0, 0, NULL),
          "upsample [%lld, %lld, %lld, %lld] -> %lldx%lld (exact)", (long long)N, (long long)C, (long long)H,
          (long long)W, (long long)OH, (long long)OW);
    free(ref);
    tfree(x), tfree(y);
}

static void test_upsample(void) {
    test_upsample_case(2, 1280, 8, 8, 16, 16);
    test_upsample_case(2, 4, 9, 9, 17, 17);
    test_upsample_case(1, 3, 5, 7, 9, 13);
    test_upsample_case(1, 2, 5, 5, 5, 5);
    test_upsample_case(1, 2, 9, 6, 4, 3);
    /* The 9->17 index map, written out (as torch.nn.functional.interpolate
     * gives it): 0 0 1 1 2 2 3 3 4 4 5 5 6 6 7 7 8. */
    struct sd_tensor *x = mk(4, (int64_t[]){1, 1, 1, 9}, 82, 1.0f, 0.0f);
    for (int i = 0; i < 9; i++) ((float *)x->data)[i] = (float)i;
    struct sd_tensor *y = node_new(SD_OP_UPSAMPLE, 4, (int64_t[]){1, 1, 1, 17}, x, NULL, NULL);
    y->p.upsample = (struct sd_upsample_params){1, 17};
    float want[17] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8};
    int rc = sd_cpu_op_upsample_nearest(&cpu, y);
    CHECK(rc == SD_OK && !check_close("upsample9to17", y->data, want, 17, 0, 0, NULL), "upsample 9->17 index map");
    tfree(x), tfree(y);
}

static void test_permute_case(int nd, const int64_t *dims, const int *perm) {
    struct sd_tensor *x = mk(nd, dims, 91, 1.0f, 0.0f);
    int64_t od[4];
    int p4[4] = {0, 1, 2, 3};
    for (int i = 0; i < nd; i++) {
        od[i] = dims[perm[i]];
        p4[4 - nd + i] = 4 - nd + perm[i];
    }
    struct sd_tensor *y = node_new(SD_OP_PERMUTE, nd, od, x, NULL, NULL);
    memcpy(y->p.permute.perm, p4, sizeof p4);
    float *ref = ref_new(y);
    int64_t xs[4] = {x->ne[1] * x->ne[2] * x->ne[3], x->ne[2] * x->ne[3], x->ne[3], 1};
    int64_t o = 0, i[4];
    for (i[0] = 0; i[0] < y->ne[0]; i[0]++)
        for (i[1] = 0; i[1] < y->ne[1]; i[1]++)
            for (i[2] = 0; i[2] < y->ne[2]; i[2]++)
                for (i[3] = 0; i[3] < y->ne[3]; i[3]++)
                    ref[o++] = ((float *)x->data)[i[0] * xs[p4[0]] + i[1] * xs[p4[1]] + i[2] * xs[p4[2]] +
                                                  i[3] * xs[p4[3]]];
    double t0 = omp_get_wtime();
    int rc = sd_cpu_op_permute(&cpu, y);
    double t = omp_get_wtime() - t0;
    char sh[64];
    shape_str(x, sh);
    char ps[32] = "";
    for (int k = 0; k < nd; k++) snprintf(ps + strlen(ps), sizeof ps - strlen(ps), "%s%d", k ? "," : "", perm[k]);
    CHECK(rc == SD_OK && !check_close("permute", y->data, ref, sd_tensor_nelements(y), 0, 0, NULL),
          "permute %s by (%s) (exact; %.2f ms)", sh, ps, t * 1e3);
    free(ref);
    tfree(x), tfree(y);
}

static void test_permute(void) {
    test_permute_case(4, (int64_t[]){2, 320, 64, 64}, (int[]){0, 2, 3, 1});
    test_permute_case(4, (int64_t[]){2, 64, 64, 320}, (int[]){0, 3, 1, 2});
    test_permute_case(4, (int64_t[]){2, 37, 9, 7}, (int[]){0, 2, 3, 1});
    test_permute_case(4, (int64_t[]){3, 9, 7, 37}, (int[]){0, 3, 1, 2});
    test_permute_case(4, (int64_t[]){2, 77, 12, 64}, (int[]){0, 2, 1, 3});
    test_permute_case(3, (int64_t[]){2, 77, 40}, (int[]){0, 2, 1});
    test_permute_case(4, (int64_t[]){3, 5, 7, 11}, (int[]){3, 2, 1, 0});
    test_permute_case(4, (int64_t[]){3, 1, 7, 11}, (int[]){1, 3, 0, 2});
    test_permute_case(2, (int64_t[]){1, 33}, (int[]){1, 0});
}

/* ------------------------------------------------- embedding, timesteps */

static void test_embedding(void) {
    int64_t V = 1000, C = 64, B = 2, L = 77;
    struct sd_tensor *table = mk(2, (int64_t[]){V, C}, 101, 1.0f, 0.0f);
    struct sd_tensor *ids = calloc(1, sizeof *ids);
    sd_tensor_set_shape(ids, SD_I32, 2, (int64_t[]){B, L});
    int32_t *id = malloc((size_t)(B * L) * sizeof *id);
    for (int64_t i = 0; i < B * L; i++) id[i] = (int32_t)((i * 7919 + 13) % V);
    ids->data = id;
    struct sd_tensor *y = node_new(SD_OP_EMBEDDING, 3, (int64_t[]){B, L, C}, ids, table, NULL);
    float *ref = ref_new(y);
    for (int64_t i = 0; i < B * L; i++)
        for (int64_t c = 0; c < C; c++) ref[i * C + c] = ((float *)table->data)[id[i] * C + c];
    int rc = sd_cpu_op_embedding(&cpu, y);
    CHECK(rc == SD_OK && !check_close("embedding", y->data, ref, B * L * C, 0, 0, NULL),
          "embedding ids [2, 77] from table [1000, 64] (exact)");
    id[100] = (int32_t)V;
    sd_ctx_clear(&ctx);
    rc = sd_cpu_op_embedding(&cpu, y);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "1000") && strstr(ctx.msg, "100"),
          "embedding: out-of-range id is an error naming it: %s", ctx.msg);
    id[100] = -3;
    sd_ctx_clear(&ctx);
    rc = sd_cpu_op_embedding(&cpu, y);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "-3"), "embedding: negative id is an error: %s", ctx.msg);
    free(ref);
    tfree(ids), tfree(table), tfree(y);
}

static void test_timestep_case(int dim, int flip, float shift) {
    int64_t B = 3;
    struct sd_tensor *t = mk(1, &B, 111, 1.0f, 0.0f);
    float *td = t->data;
    td[0] = 999.0f, td[1] = 1.5f, td[2] = 0.0f;
    struct sd_tensor *y = node_new(SD_OP_TIMESTEP_EMBED, 2, (int64_t[]){B, dim}, t, NULL, NULL);
    y->p.timestep = (struct sd_timestep_params){dim, flip, shift, 10000.0f};
    float *ref = ref_new(y);
    int half = dim / 2;
    for (int64_t b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            /* diffusers' float32 steps: exponent, /(half-shift), exp, t*freq. */
            float e = (float)-log(10000.0) * (float)i;
            e = e / ((float)half - shift);
            float arg = td[b] * (float)exp((double)e);
            ref[b * dim + i] = (float)(flip ? cos((double)arg) : sin((double)arg));
            ref[b * dim + half + i] = (float)(flip ? sin((double)arg) : cos((double)arg));
        }
    int rc = sd_cpu_op_timestep_embedding(&cpu, y);
    const float *yd = y->data;
    CHECK(rc == SD_OK && !check_close("timestep", yd, ref, B * dim, 1e-6, 0, NULL) &&
              yd[2 * dim + (flip ? 0 : half)] == 1.0f && yd[2 * dim + (flip ? half : 0)] == 0.0f,
          "timestep_embedding dim %d flip %d shift %g at t = 999, 1.5, 0 (tol 1e-6)", dim, flip, (double)shift);
    free(ref);
    tfree(t), tfree(y);
}

static void test_timestep(void) {
    test_timestep_case(320, 1, 0.0f);
    test_timestep_case(256, 0, 1.0f);
}

int main(void) {
    san = getenv("SDRT_TEST_SAN") != NULL;
    cpu.ctx = &ctx;
    cpu.n_threads = omp_get_max_threads();
    test_group_norm();
    test_layer_norm();
    test_softmax();
    test_attention();
    test_unary();
    test_geglu();
    test_binary();
    test_concat();
    test_upsample();
    test_permute();
    test_embedding();
    test_timestep();
    sd_free_aligned(cpu.scratch);
    return test_summary();
}
