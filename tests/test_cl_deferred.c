/* test_cl_deferred.c - the OpenCL backend (PoCL here) uploads weights
 * straight from their file (deferred weights, host/io/weights.h) and keeps
 * no host copy of them.
 *
 * 1. Graph: two Linear layers x [6, 48] -> w1 [40, 48] -> w2 [32, 40], both
 *    weights f16 in a safetensors file (deferred: >= SD_WEIGHTS_DEFER_MIN
 *    elements), biases f32. After the run on OpenCL: the result equals a
 *    naive double reference from the f16 values (tolerance 1e-4 + 1e-4*|ref|;
 *    measured ~1e-6), the weights were never materialised (no plain f32 copy:
 *    the set holds only the biases' bytes), the backend holds no host bytes
 *    for weights, and a second run uploads nothing. w1 changed as LoRA
 *    changes it (materialise, patch in place, weights_changed) is uploaded
 *    again and the result follows the new bytes; w2 given a replacement
 *    (sd_weights_set_data) likewise; w2's untouched sibling stays deferred.
 * 2. Pipeline: the tiny SDXL SGM f16 single file, every op on OpenCL, a
 *    64x64 txt2img: with the default runtime no deferred weight of any
 *    component is materialised; with --low-memory (opts.low_memory) the
 *    UNet steps run while the backend holds no copy of either text
 *    encoder's weights, nothing (weights, arena, scratch) is left after the
 *    image, and the image is the default runtime's bit for bit.
 */
#include "cl_test_opts.h"
#include "cl_impl.h"
#include "cl_test_util.h"
#include "model_load.h"
#include "pipeline.h"
#include "tokenizer.h"
#include "weights.h"

#include <unistd.h>

#define B 6
#define K1 48
#define N1 40
#define N2 32

static struct sd_tensor *g_w1, *g_b1, *g_w2, *g_b2;

static struct sd_tensor *b_two_linear(struct sd_graph *g, struct tc *tc) {
    struct sd_tensor *x = tc_input(tc, g, SD_F32, 2, (int64_t[]){B, K1});
    return sd_linear(g, sd_linear(g, x, g_w1, g_b1), g_w2, g_b2);
}

static void ref_linear(const double *x, const float *w, const float *b, double *y, int n, int k) {
    for (int r = 0; r < B; r++)
        for (int o = 0; o < n; o++) {
            double s = b[o];
            for (int i = 0; i < k; i++) s += x[r * k + i] * w[o * k + i];
            y[r * n + o] = s;
        }
}

/* The reference from w1's and w2's current values (read as a backend reads
 * them, without materialising) and the inputs tc_run wrote. */
static void reference(struct sd_ctx *ctx, const float *x, float *out) {
    static float w1[N1 * K1], w2[N2 * N1];
    double xd[B * K1], h[B * N1], y[B * N2];
    if (sd_weight_read_f32(ctx, g_w1, w1) || sd_weight_read_f32(ctx, g_w2, w2)) memset(out, 0, B * N2 * sizeof *out);
    for (int i = 0; i < B * K1; i++) xd[i] = x[i];
    ref_linear(xd, w1, g_b1->data, h, N1, K1);
    ref_linear(h, w2, g_b2->data, y, N2, N1);
    for (int i = 0; i < B * N2; i++) out[i] = (float)y[i];
}

static void test_graph(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    cl_test_backend_opts(&o);
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, &o);
    struct sd_backend *cl = sd_cl_backend_new(&ctx, &o);
    CHECK(cpu && cl, "cpu and opencl backends (%s)", ctx.msg);
    if (!cpu || !cl) {
        sd_backend_free(cl), sd_backend_free(cpu);
        return;
    }
    struct sd_cl *c = cl->impl;
    struct sd_backend *both[2] = {cl, cpu};

    /* The file: f16 weights, f32 biases. */
    static uint16_t h1[N1 * K1], h2[N2 * N1];
    static float f1[N1 * K1], f2[N2 * N1], b1[N1], b2[N2];
    fill_random(f1, N1 * K1, 5), fill_random(f2, N2 * N1, 6), fill_random(b1, N1, 7), fill_random(b2, N2, 8);
    for (int i = 0; i < N1 * K1; i++) h1[i] = sd_f32_to_f16(f1[i]);
    for (int i = 0; i < N2 * N1; i++) h2[i] = sd_f32_to_f16(f2[i]);
    struct sd_st_tensor ts[4] = {
        {.name = "w1", .type = SD_F16, .n_dims = 2, .shape = {N1, K1}, .nbytes = sizeof h1, .data = h1},
        {.name = "b1", .type = SD_F32, .n_dims = 1, .shape = {N1}, .nbytes = sizeof b1, .data = b1},
        {.name = "w2", .type = SD_F16, .n_dims = 2, .shape = {N2, N1}, .nbytes = sizeof h2, .data = h2},
        {.name = "b2", .type = SD_F32, .n_dims = 1, .shape = {N2}, .nbytes = sizeof b2, .data = b2},
    };
    char path[64];
    snprintf(path, sizeof path, "/tmp/sdrt_test_cl_deferred_%d.safetensors", (int)getpid());
    struct sd_st_file *file = NULL;
    struct sd_weights *ws = sd_weights_new(&ctx);
    sd_weights_set_deferred(ws, 1);
    int rc = ws ? sd_st_write(&ctx, path, ts, 4, NULL) : SD_ERR_NOMEM;
    if (rc == SD_OK) rc = sd_st_open(&ctx, path, &file);
    if (rc == SD_OK) rc = sd_weights_add_file(ws, file, NULL, NULL, NULL);
    sd_st_close(file);
    unlink(path);
    g_w1 = sd_weights_get(ws, "w1", 2, (int64_t[]){N1, K1}), g_b1 = sd_weights_get(ws, "b1", 1, (int64_t[]){N1});
    g_w2 = sd_weights_get(ws, "w2", 2, (int64_t[]){N2, N1}), g_b2 = sd_weights_get(ws, "b2", 1, (int64_t[]){N2});
    const size_t bias_bytes = (N1 + N2) * sizeof(float);
    CHECK(rc == SD_OK && g_w1 && g_b1 && g_w2 && g_b2 && (g_w1->flags & SD_TF_DEFERRED) && (g_w2->flags & SD_TF_DEFERRED) &&
              !sd_weight_resident(g_w1) && !sd_weight_resident(g_w2) && sd_weight_resident(g_b1) &&
              sd_weights_nbytes(ws) == bias_bytes,
          "f16 weights are deferred and not resident, the f32 biases are (%s)", ctx.msg);
    if (!g_w1 || !g_b1 || !g_w2 || !g_b2) goto out;

    struct tc tc = {0};
    int64_t n = 0;
    int on_cl = 0, nc = 0;
    float x[B * K1], ref[B * N2];
    fill_random(x, B * K1, 17); /* what tc_fill_inputs writes (in_scale 1) */
    reference(&ctx, x, ref);
    float *got = tc_run(&ctx, both, 2, b_two_linear, &tc, &n, &on_cl, &nc);
    double mx = 0;
    CHECK(got && n == B * N2 && on_cl == nc && !check_close("deferred", got, ref, n, 1e-4, 1e-4, &mx),
          "two linears with deferred f16 weights on opencl (%d of %d nodes) match the reference (max abs err %.2g)",
          on_cl, nc, mx);
    const size_t copies = c->n_weights, uploads = c->uploads;
    CHECK(!sd_weight_resident(g_w1) && !sd_weight_resident(g_w2) && sd_weights_nbytes(ws) == bias_bytes &&
              c->host_bytes == 0 && c->host_bytes_peak <= N1 * K1 * sizeof(float) && copies >= 4 && uploads == copies,
          "after the upload no plain f32 copy exists (the set holds %zu bytes, the biases') and the backend holds %zu "
          "host bytes for weights (at most %zu, a transpose's, during the upload; %zu device copies)",
          sd_weights_nbytes(ws), c->host_bytes, c->host_bytes_peak, copies);
    float *first = got;
    got = tc_run(&ctx, both, 2, b_two_linear, &tc, &n, NULL, NULL);
    CHECK(got && first && !memcmp(got, first, (size_t)n * sizeof *got) && c->uploads == uploads && c->n_weights == copies,
          "a second run reuses the device copies (%zu uploads in all)", c->uploads);
    free(got);

    /* w1 changed as LoRA changes it: materialised, patched, announced. */
    rc = sd_weight_materialize(&ctx, g_w1);
    float *p1 = g_w1->data;
    for (int i = 0; rc == SD_OK && i < N1 * K1; i++) p1[i] = -2.0f * p1[i] + 0.01f;
    sd_backend_weights_changed(cl, &g_w1, 1);
    reference(&ctx, x, ref);
    got = tc_run(&ctx, both, 2, b_two_linear, &tc, &n, NULL, NULL);
    const size_t w1_copies = c->uploads - uploads;
    CHECK(rc == SD_OK && got && !check_close("changed", got, ref, n, 1e-4, 1e-4, &mx) && w1_copies >= 1 &&
              w1_copies <= 2 && c->n_weights == copies && !sd_weight_resident(g_w2) && c->host_bytes == 0,
          "w1 patched in place after weights_changed is uploaded again (%zu copies) and the result follows the new "
          "bytes (max abs err %.2g); w2 stays deferred", w1_copies, mx);
    free(got);

    /* w2 given a replacement (LoRA's merged copy): a new data pointer. */
    float *mine = malloc(sizeof f2);
    for (int i = 0; i < N2 * N1; i++) mine[i] = 0.5f * f2[i] - 0.02f;
    const size_t u1 = c->uploads;
    rc = sd_weights_set_data(ws, sd_weights_index(ws, "w2"), mine);
    sd_backend_weights_changed(cl, &g_w2, 1);
    reference(&ctx, x, ref);
    got = tc_run(&ctx, both, 2, b_two_linear, &tc, &n, NULL, NULL);
    CHECK(rc == SD_OK && got && !check_close("replaced", got, ref, n, 1e-4, 1e-4, &mx) && c->uploads > u1 &&
              c->n_weights == copies,
          "w2 replaced by sd_weights_set_data is uploaded from the replacement (max abs err %.2g)", mx);
    free(got);

    struct sd_tensor *all[4] = {g_w1, g_b1, g_w2, g_b2};
    sd_backend_weights_released(cl, all, 4);
    CHECK(c->n_weights == 0 && c->weight_bytes == 0 && c->host_bytes == 0,
          "weights_released drops every device copy (%zu left)", c->n_weights);
    free(first);
    free(mine);
    tc_free(&tc);
out:
    sd_weights_free(ws);
    sd_backend_free(cl);
    sd_backend_free(cpu);
}

/* --- 2. the tiny SDXL pipeline ------------------------------------------ */

static struct sd_cl *cl_of(struct sd_runtime *rt) {
    for (int i = 0; rt && i < sd_runtime_n_backends(rt); i++)
        if (sd_cl_is_backend(sd_runtime_backend(rt, i))) return sd_runtime_backend(rt, i)->impl;
    return NULL;
}

/* Device copies the backend holds of w's tensors. */
static size_t copies_of(const struct sd_cl *c, struct sd_weights *w) {
    size_t k = 0;
    for (size_t i = 0; c && i < c->n_weights; i++)
        for (int j = 0; j < sd_weights_count(w); j++) {
            const struct sd_tensor *t = sd_weights_tensor(w, j);
            if (c->weights[i].key == t || c->weights[i].key == (const void *)((const char *)t + 1)) k++;
        }
    return k;
}

/* Deferred tensors of w made resident (a plain f32 copy), of how many deferred. */
static int resident_deferred(struct sd_weights *w, int *n_deferred) {
    int k = 0;
    for (int j = 0; j < sd_weights_count(w); j++) {
        const struct sd_tensor *t = sd_weights_tensor(w, j);
        if (!(t->flags & SD_TF_DEFERRED)) continue;
        ++*n_deferred;
        k += sd_weight_resident(t) != 0;
    }
    return k;
}

struct watch {
    struct sd_cl *cl;
    struct sd_model *m;
    int steps;
    size_t te_held, un_held; /* during the steps: most copies of the encoders' / fewest of the UNet's */
};

static int on_event(void *user, const struct sd_gen_event *ev) {
    struct watch *w = user;
    if (ev->kind != SD_EV_STEP) return 0;
    size_t te = copies_of(w->cl, w->m->te) + copies_of(w->cl, w->m->te2), un = copies_of(w->cl, w->m->un);
    if (te > w->te_held) w->te_held = te;
    if (!w->steps++ || un < w->un_held) w->un_held = un;
    return 0;
}

static void test_pipeline(void) {
    struct sd_runtime_opts o;
    cl_test_device_only(&o);
    struct sd_ctx ctx = {0};
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    o.low_memory = 1;
    struct sd_runtime *lm = rt ? sd_runtime_new(&ctx, &o) : NULL;
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path());
    struct sd_embed_cache *cache = sd_embed_cache_new(1u << 20);
    struct sd_model *m = NULL;
    int ok = rt && lm && tok && cache &&
             sd_model_load(&ctx, "tests/models/tiny-sdxl.safetensors", "tests/models/tiny-sdxl", &m) == SD_OK;
    CHECK(ok, "tiny SDXL (SGM f16) on two opencl runtimes (%s)", ctx.msg);
    if (!ok) goto out;
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = "a photo of a cat", g.negative_prompt = "blurry";
    g.width = g.height = 64, g.seed = 41, g.sampler.steps = 2, g.cfg_scale = 7.5f;
    if (sd_sampler_parse_name(&ctx, "Euler", &g.sampler)) test_fail("sampler: %s", ctx.msg);
    const size_t n = 3 * 64 * 64;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    struct sd_pipeline p = {.ctx = &ctx, .rt = rt, .tok = tok, .cache = cache, .model = m};
    ok = a && b && sd_generate(&p, &g, a) == SD_OK;
    struct sd_cl *c = cl_of(rt);
    int n_def = 0, res = 0;
    struct sd_weights *parts[4] = {m->te, m->te2, m->un, m->va};
    for (int i = 0; i < 4; i++) res += resident_deferred(parts[i], &n_def);
    CHECK(ok && c && c->n_weights > 0 && n_def > 50 && res == 0 && c->host_bytes == 0,
          "a 64x64 txt2img on opencl materialises none of the %d deferred weights of the four components (%d did) and "
          "the backend holds %zu host bytes for its %zu device copies (%s)",
          n_def, res, c ? c->host_bytes : 0, c ? c->n_weights : 0, ok ? "" : ctx.msg);

    /* Low memory: the encoders' copies are gone while the UNet steps. */
    struct watch wt = {.cl = cl_of(lm), .m = m};
    g.on_event = on_event, g.user = &wt;
    struct sd_pipeline q = p;
    q.rt = lm;
    sd_embed_cache_free(cache); /* encode again, so the encoders' copies are made in this runtime */
    q.cache = p.cache = cache = sd_embed_cache_new(1u << 20);
    ok = ok && sd_generate(&q, &g, b) == SD_OK;
    CHECK(ok && wt.steps == 2 && wt.te_held == 0 && wt.un_held > 0,
          "low memory: during the %d UNet steps opencl holds %zu copies of the text encoders' weights (and %zu of the "
          "UNet's) (%s)", wt.steps, wt.te_held, wt.un_held, ok ? "" : ctx.msg);
    CHECK(ok && wt.cl && wt.cl->n_weights == 0 && wt.cl->weight_bytes == 0 && wt.cl->uploads > 0 && !wt.cl->arena &&
              !wt.cl->scratch,
          "low memory: after the image opencl holds no weight copy, arena or scratch (%zu left of %zu uploads)",
          wt.cl ? wt.cl->n_weights : 0, wt.cl ? wt.cl->uploads : 0);
    CHECK(ok && !memcmp(a, b, n * sizeof(float)), "low memory: the image equals the default runtime's bit for bit");
    free(a), free(b);
out:
    if (rt) sd_runtime_release_model(rt, m);
    if (lm) sd_runtime_release_model(lm, m);
    sd_model_free(m);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
    sd_runtime_free(rt);
    sd_runtime_free(lm);
}

int main(void) {
    test_graph();
    test_pipeline();
    return test_summary();
}
