/* test_cl_weights.c - the weight lifecycle on the OpenCL backend (PoCL here):
 * device copies of weights are uploaded once, weights_changed makes exactly
 * the changed weight's copies (plain and transposed) go and be uploaded
 * again from the new bytes, weights_released drops them all.
 *
 * Graph: two Linear layers, x [6, 48] -> w1 [40, 48] -> w2 [24, 40], all on
 * OpenCL, checked against a naive double-precision reference. w1 is changed
 * in place away from its first and last 32 bytes, where the backend's
 * cheap fingerprint does not look: without weights_changed the stale upload
 * is used (shown, so the call is what makes the difference), with it the
 * result follows the new bytes. Tolerance 1e-4 + 1e-4*|ref| (f32 GEMMs of
 * length <= 48 on outputs up to ~10; measured max abs error ~1e-5).
 */
#include "cl_test_opts.h"
#include "cl_impl.h"
#include "cl_op_cases.h"

#define B 6
#define K1 48
#define N1 40
#define N2 24

static struct sd_tensor *b_two_linear(struct sd_graph *g, struct tc *tc) {
    /* One weight per statement: tc->w[] order is creation order. */
    struct sd_tensor *x = IN(tc, g, 2, B, K1);
    struct sd_tensor *w1 = W(tc, 2, N1, K1);
    struct sd_tensor *b1 = W(tc, 1, N1);
    struct sd_tensor *w2 = W(tc, 2, N2, N1);
    struct sd_tensor *b2 = W(tc, 1, N2);
    return sd_linear(g, sd_linear(g, x, w1, b1), w2, b2);
}

static void ref_linear(const double *x, const float *w, const float *b, double *y, int n, int k) {
    for (int r = 0; r < B; r++)
        for (int o = 0; o < n; o++) {
            double s = b[o];
            for (int i = 0; i < k; i++) s += x[r * k + i] * w[o * k + i];
            y[r * n + o] = s;
        }
}

/* The reference from the current weight bytes and the inputs tc_run wrote. */
static void reference(struct tc *tc, const float *x, float *out) {
    double xd[B * K1], h[B * N1], y[B * N2];
    for (int i = 0; i < B * K1; i++) xd[i] = x[i];
    ref_linear(xd, tc->w[0]->data, tc->w[1]->data, h, N1, K1);
    ref_linear(h, tc->w[2]->data, tc->w[3]->data, y, N2, N1);
    for (int i = 0; i < B * N2; i++) out[i] = (float)y[i];
}

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    cl_test_backend_opts(&o);
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, &o);
    struct sd_backend *cl = sd_cl_backend_new(&ctx, &o);
    CHECK(cpu && cl, "cpu and opencl backends (%s)", ctx.msg);
    if (!cpu || !cl) return test_summary();
    struct sd_cl *c = cl->impl;
    struct sd_backend *both[2] = {cl, cpu};
    struct tc tc = {0};
    int64_t n = 0;
    int on_cl = 0, nc = 0;
    float x[B * K1], ref[B * N2];

    float *got = tc_run(&ctx, both, 2, b_two_linear, &tc, &n, &on_cl, &nc);
    fill_random(x, B * K1, 17); /* what tc_fill_inputs wrote (in_scale 1) */
    reference(&tc, x, ref);
    double mx = 0;
    CHECK(got && n == B * N2 && on_cl == nc && !check_close("first", got, ref, n, 1e-4, 1e-4, &mx),
          "two linears on opencl (%d of %d nodes) match the reference (max abs err %.2g)", on_cl, nc, mx);
    size_t n_all = c->n_weights, bytes_all = c->weight_bytes;
    CHECK(n_all >= 4 && bytes_all > 0, "weights uploaded once each (%zu device copies, %zu bytes)", n_all, bytes_all);
    float *first = got;

    /* Change w1 away from its first and last 32 bytes. */
    float *w1 = tc.w[0]->data;
    for (int i = 8; i < N1 * K1 - 8; i++) w1[i] = -2.0f * w1[i] + 0.01f;
    reference(&tc, x, ref);
    got = tc_run(&ctx, both, 2, b_two_linear, &tc, &n, NULL, NULL);
    double off = 0;
    for (int64_t i = 0; got && i < n; i++) off = fmax(off, fabs(got[i] - ref[i]));
    CHECK(got && first && !memcmp(got, first, (size_t)n * sizeof *got) && n_all == c->n_weights && off > 0.1,
          "without weights_changed the stale device copy is used (the fingerprint misses this change; off by %.2f)",
          off);
    free(got);

    sd_backend_weights_changed(cl, &tc.w[0], 1);
    size_t n_changed = c->n_weights;
    CHECK(n_changed < n_all && n_changed >= 3 && c->weight_bytes < bytes_all,
          "weights_changed(w1) drops exactly w1's copies (%zu of %zu left)", n_changed, n_all);
    got = tc_run(&ctx, both, 2, b_two_linear, &tc, &n, NULL, NULL);
    CHECK(got && !check_close("changed", got, ref, n, 1e-4, 1e-4, &mx) && c->n_weights == n_all &&
              c->weight_bytes == bytes_all,
          "after weights_changed w1 is uploaded again and the result follows the new bytes (max abs err %.2g)", mx);
    free(got);

    sd_backend_weights_released(cl, tc.w, tc.n_w);
    CHECK(c->n_weights == 0 && c->weight_bytes == 0, "weights_released drops every device copy (%zu left)", c->n_weights);

    free(first);
    tc_free(&tc);
    sd_backend_free(cl);
    sd_backend_free(cpu);
    return test_summary();
}
