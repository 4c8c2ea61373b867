/* test_weight_lifecycle.c - the weight lifecycle of the backend interface
 * (backend.h: weights_changed, weights_released) on the CPU backend.
 *
 * 1. weights_changed: a two-conv graph runs through a runtime with the
 *    oneDNN direct algorithm (which keeps a reordered copy of each weight).
 *    One weight's bytes are then changed in place where the cache's
 *    fingerprint does not look; sd_runtime_weights_changed on that weight
 *    makes the next run re-derive exactly its copy (one reorder, the other
 *    weight a cache hit) and match a naive double-precision reference
 *    computed from the new bytes. Without the call the stale copy would be
 *    used (checked too: it shows the call is what makes the difference).
 * 2. weights_released drops exactly the copies of the weights named; the
 *    weight-set overlap rule (slices) is checked directly.
 * 3. Release loop: load tiny-sd1 (f16 single file, so weights are
 *    converted into our own memory), generate, release, free - 20 times in
 *    one runtime with the default conv policy (oneDNN reordered and
 *    Winograd copies fill). After every release the oneDNN weight cache is
 *    empty, and resident memory (VmRSS) after the last release is within
 *    64 MiB of after the first (both printed). The model's weights are
 *    deferred (weights.h): after a generate the UNet's weight set holds
 *    less than half of its f32 bytes (the rest live only in the backend's
 *    copies and the file).
 * 4. opts.low_memory: copies and arena dropped after each phase, images
 *    unchanged.
 */
#include "cpu_dnnl.h"
#include "model_load.h"
#include "pipeline.h"
#include "test.h"
#include "tokenizer.h"
#include "weights.h"

/* ---- 1, 2: a two-conv graph ---- */

struct net {
    struct sd_tensor *w1, *b1, *w2, *b2;
};

static struct sd_tensor *weight(const char *name, int nd, const int64_t *dims, uint64_t seed, float scale) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, nd, dims);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->data = sd_malloc_aligned(sd_tensor_nbytes(t));
    fill_random(t->data, sd_tensor_nelements(t), seed);
    for (int64_t i = 0; i < sd_tensor_nelements(t); i++) ((float *)t->data)[i] *= scale;
    t->flags = SD_TF_WEIGHT;
    t->index = -1;
    return t;
}

static void weight_free(struct sd_tensor *t) {
    sd_free_aligned(t->data);
    free(t);
}

#define C0 16
#define C1 16
#define C2 8
#define HW 10

static struct sd_tensor *build_net(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct net *n = user;
    in[0] = sd_graph_input(g, "x", SD_F32, 4, (int64_t[]){1, C0, HW, HW});
    *n_in = 1;
    struct sd_tensor *h = sd_conv2d(g, in[0], n->w1, n->b1, 1, 1);
    return sd_conv2d(g, h, n->w2, n->b2, 1, 1);
}

/* 3x3, stride 1, pad 1, in double. */
static void ref_conv(const double *x, const float *w, const float *b, double *y, int ci, int co) {
    for (int o = 0; o < co; o++)
        for (int yy = 0; yy < HW; yy++)
            for (int xx = 0; xx < HW; xx++) {
                double s = b[o];
                for (int c = 0; c < ci; c++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = yy + ky - 1, ix = xx + kx - 1;
                            if (iy < 0 || ix < 0 || iy >= HW || ix >= HW) continue;
                            s += x[(c * HW + iy) * HW + ix] * w[((o * ci + c) * 3 + ky) * 3 + kx];
                        }
                y[(o * HW + yy) * HW + xx] = s;
            }
}

static void ref_net(const struct net *n, const float *x, float *out) {
    double xd[C0 * HW * HW], h[C1 * HW * HW], y[C2 * HW * HW];
    for (int i = 0; i < C0 * HW * HW; i++) xd[i] = x[i];
    ref_conv(xd, n->w1->data, n->b1->data, h, C0, C1);
    ref_conv(h, n->w2->data, n->b2->data, y, C1, C2);
    for (int i = 0; i < C2 * HW * HW; i++) out[i] = (float)y[i];
}

static void test_changed_released(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 2;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    struct sd_cpu *cpu = rt ? sd_cpu_of(sd_runtime_backend(rt, 0)) : NULL;
    CHECK(cpu != NULL, "cpu runtime (%s)", ctx.msg);
    if (!cpu) return;
    struct sd_cpu_dnnl *d = cpu->dnnl;
    sd_cpu_dnnl_set_conv_algo(cpu, SD_CONV_DIRECT); /* keeps a reordered copy per weight */
    struct net n = {
        weight("w1", 4, (int64_t[]){C1, C0, 3, 3}, 1, 1.0f / 12), weight("b1", 1, (int64_t[]){C1}, 2, 1.0f),
        weight("w2", 4, (int64_t[]){C2, C1, 3, 3}, 3, 1.0f / 12), weight("b2", 1, (int64_t[]){C2}, 4, 1.0f),
    };
    float x[C0 * HW * HW], out[C2 * HW * HW], first[C2 * HW * HW], ref[C2 * HW * HW];
    fill_random(x, C0 * HW * HW, 5);
    const void *in[1] = {x};
    struct sd_graph_key key = {1, 77, {1, HW, HW}, "two convs"};

    struct sd_tensor before[4] = {*n.w1, *n.b1, *n.w2, *n.b2};
    int rc = sd_runtime_run(rt, &key, build_net, &n, in, out);
    struct sd_tensor after[4] = {*n.w1, *n.b1, *n.w2, *n.b2};
    CHECK(rc == SD_OK && !memcmp(before, after, sizeof before),
          "building, planning, placing and running a graph writes nothing into its weights");
    ref_net(&n, x, ref);
    double mx = 0;
    CHECK(rc == SD_OK && !check_close("net", out, ref, C2 * HW * HW, 1e-4, 1e-4, &mx),
          "two convs (oneDNN direct) match the naive reference (max abs err %.2g) %s", mx, ctx.msg);
    size_t both = d->weight_bytes;
    CHECK(d->n_weights == 2 && d->weight_reorders == 2 && both > 0,
          "each weight reordered once into the cache (%zu entries, %ld reorders, %zu bytes)", d->n_weights,
          d->weight_reorders, both);
    memcpy(first, out, sizeof out);

    /* Change w1 where the cache's 64-sample fingerprint does not look. */
    int64_t nw = sd_tensor_nelements(n.w1);
    char *sampled = calloc((size_t)nw, 1);
    for (int i = 0; i < 64; i++) sampled[(int64_t)((double)i * (double)(nw - 1) / 63.0)] = 1;
    int changed = 0;
    for (int64_t i = 0; i < nw; i++)
        if (!sampled[i]) ((float *)n.w1->data)[i] *= -1.5f, changed++;
    free(sampled);
    ref_net(&n, x, ref);
    rc = sd_runtime_run(rt, &key, build_net, &n, in, out);
    double off = 0;
    for (int i = 0; i < C2 * HW * HW; i++) off = fmax(off, fabs(out[i] - ref[i]));
    CHECK(rc == SD_OK && !memcmp(out, first, sizeof out) && off > 0.1,
          "without weights_changed the stale copy of w1 is used (%d of %lld values changed unseen; off by %.2f)",
          changed, (long long)nw, off);

    long r0 = d->weight_reorders, h0 = d->weight_hits;
    sd_runtime_weights_changed(rt, &n.w1, 1);
    CHECK(d->n_weights == 1 && d->weight_bytes < both && d->weight_bytes > 0,
          "weights_changed(w1) drops exactly w1's copy (%zu entry left, %zu of %zu bytes)", d->n_weights,
          d->weight_bytes, both);
    rc = sd_runtime_run(rt, &key, build_net, &n, in, out);
    CHECK(rc == SD_OK && !check_close("changed", out, ref, C2 * HW * HW, 1e-4, 1e-4, &mx),
          "after weights_changed the result matches the reference on the new bytes (max abs err %.2g)", mx);
    CHECK(d->weight_reorders == r0 + 1 && d->weight_hits == h0 + 1 && d->weight_bytes == both,
          "only w1 was reordered again (%ld reorder), w2 came from the cache (%ld hit)", d->weight_reorders - r0,
          d->weight_hits - h0);

    /* Released: exactly the copies named go. */
    sd_backend_weights_released(sd_runtime_backend(rt, 0), &n.w2, 1);
    CHECK(d->n_weights == 1 && d->weight_bytes > 0 && d->weight_bytes < both, "weights_released(w2) keeps w1's copy");
    struct sd_tensor *all[4] = {n.w1, n.b1, n.w2, n.b2};
    sd_runtime_release_owner(rt, 77, all, 4);
    CHECK(d->n_weights == 0 && d->weight_bytes == 0, "release_owner drops every copy of the owner's weights (%zu bytes left)",
          d->weight_bytes);

    /* A source that is neither the graph's node nor a weight is refused. */
    struct sd_graph *g = sd_graph_new(&ctx);
    struct sd_tensor stray = *n.w1;
    stray.flags = 0;
    struct sd_tensor *xin = sd_graph_input(g, "x", SD_F32, 4, (int64_t[]){1, C0, HW, HW});
    sd_graph_output(g, sd_conv2d(g, xin, &stray, NULL, 1, 1));
    rc = sd_graph_plan(g);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "neither a node of this graph nor a weight"),
          "a foreign non-weight source is a build error: %s", ctx.msg);
    sd_graph_free(g);
    sd_ctx_clear(&ctx);

    /* The overlap rule: a slice aliasing part of a weight's bytes. */
    struct sd_tensor whole = {0}, slice = {0}, other = {0};
    float buf[400];
    sd_tensor_set_shape(&whole, SD_F32, 1, (int64_t[]){200});
    sd_tensor_set_shape(&slice, SD_F32, 1, (int64_t[]){50});
    sd_tensor_set_shape(&other, SD_F32, 1, (int64_t[]){200});
    whole.data = buf, slice.data = buf + 100, other.data = buf + 200;
    struct sd_weight_set set;
    struct sd_tensor *ws[1] = {&whole};
    rc = sd_weight_set_init(&set, ws, 1);
    bool a = sd_weight_set_hits(&set, slice.data, sd_tensor_nbytes(&slice));
    bool b = sd_weight_set_hits(&set, other.data, sd_tensor_nbytes(&other));
    sd_weight_set_free(&set);
    struct sd_tensor *ss[2] = {&slice, &other};
    rc |= sd_weight_set_init(&set, ss, 2);
    bool c = sd_weight_set_hits(&set, whole.data, sd_tensor_nbytes(&whole));
    bool e = sd_weight_set_hits(&set, buf, 100 * sizeof(float)) || sd_weight_set_hits(&set, buf + 150, 50 * sizeof(float));
    bool f = sd_weight_set_hits(&set, buf + 399, sizeof(float));
    sd_weight_set_free(&set);
    CHECK(rc == SD_OK && a && !b && c && !e && f,
          "weight set: a slice of a changed weight is hit, adjacent bytes are not (%d %d %d %d %d)", a, b, c, e, f);

    weight_free(n.w1), weight_free(n.b1), weight_free(n.w2), weight_free(n.b2);
    sd_runtime_free(rt);
}

/* ---- 3: release loop ---- */

/* ASan build: freed memory waits in a quarantine (256 MiB by default) before
 * it is reused, which would show as resident growth that is not ours; a
 * small quarantine keeps use-after-free detection for recent frees and the
 * RSS bound meaningful. LeakSanitizer still checks for leaks at exit. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=4"; }

static double rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

#ifndef LOOPS
#define LOOPS 20
#endif
#define MODEL "tests/models/tiny-sd1-f16.safetensors"
#define MODEL_CONFIG "tests/models/tiny-sd1" /* the tiny width needs its config */

static void test_release_loop(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 2;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path());
    struct sd_embed_cache *cache = sd_embed_cache_new(1u << 20);
    struct sd_cpu *cpu = rt ? sd_cpu_of(sd_runtime_backend(rt, 0)) : NULL;
    CHECK(cpu && tok && cache && !sd_tokenizer_set_family(tok, SD_TOKENIZER_SD1), "runtime, tokenizer (%s)", ctx.msg);
    if (!cpu || !tok || !cache) return;
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = "a lighthouse";
    g.width = g.height = 64;
    g.sampler.steps = 3;
    float *img = malloc(3 * 64 * 64 * sizeof(float));
    double rss_first = 0, rss_last = 0, rss_before = rss_mib();
    size_t copies = 0, held = 0, total = 0;
    int ok = 0, empty = 0, failed = 0;
    for (int i = 0; i < LOOPS && !failed; i++) {
        struct sd_model *m = NULL;
        struct sd_pipeline p = {.ctx = &ctx, .rt = rt, .tok = tok, .cache = cache};
        g.seed = 100 + (uint64_t)i;
        if (sd_model_load(&ctx, MODEL, MODEL_CONFIG, &m) != SD_OK || !(p.model = m) || sd_generate(&p, &g, img) != SD_OK) {
            printf("  iteration %d: %s\n", i, ctx.msg);
            failed = 1;
        } else {
            ok++;
        }
        if (i == 0) copies = cpu->dnnl->weight_bytes + cpu->dnnl->n_weights;
        if (i == 0 && m) held = sd_weights_nbytes(m->un), total = (size_t)sd_weights_n_params(m->un) * sizeof(float);
        sd_runtime_release_model(rt, m);
        empty += cpu->dnnl->n_weights == 0 && cpu->dnnl->weight_bytes == 0;
        sd_model_free(m);
        if (i == 0) rss_first = rss_mib();
        rss_last = rss_mib();
        if (i == 0 || i == 1 || i == 4 || i == 9 || i == LOOPS - 1)
            printf("  after release %2d: VmRSS %.1f MiB\n", i + 1, rss_last);
    }
    printf("  release loop: VmRSS %.1f MiB before, %.1f MiB after the first release, %.1f MiB after release %d "
           "(growth %+.1f MiB)\n", rss_before, rss_first, rss_last, LOOPS, rss_last - rss_first);
    CHECK(ok == LOOPS && copies > 0, "%d load/generate/release cycles; the default conv policy filled the oneDNN cache",
          ok);
    CHECK(held > 0 && held * 2 < total, "deferred weights: after a generate the UNet holds %zu of its %zu f32 bytes "
          "(only what is read in place; the backends keep their own copies)", held, total);
        CHECK(empty == ok, "after every release the oneDNN weight cache is empty (%d of %d)", empty, ok);
    CHECK(ok == LOOPS && rss_first > 0 && rss_last - rss_first < 64.0,
          "resident memory after release %d within 64 MiB of after the first (%.1f -> %.1f MiB)", LOOPS, rss_first,
          rss_last);
    free(img);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
    sd_runtime_free(rt);
}

/* 4. opts.low_memory: sd_generate drops each component's copies and the
 * arena after its phase; the images are the default runtime's, byte for
 * byte, also for a second image (copies made again). */
static void test_low_memory(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 2;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    o.low_memory = 1;
    struct sd_runtime *lm = sd_runtime_new(&ctx, &o);
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path());
    struct sd_embed_cache *cache = sd_embed_cache_new(1u << 20);
    struct sd_model *m = NULL;
    int ok = rt && lm && tok && cache && !sd_tokenizer_set_family(tok, SD_TOKENIZER_SD1) &&
             sd_model_load(&ctx, MODEL, MODEL_CONFIG, &m) == SD_OK;
    CHECK(ok, "low memory: runtimes, tokenizer, model (%s)", ctx.msg);
    struct sd_cpu *cpu = ok ? sd_cpu_of(sd_runtime_backend(lm, 0)) : NULL;
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = "a lighthouse";
    g.width = g.height = 64;
    g.sampler.steps = 3;
    const size_t n = 3 * 64 * 64;
    float *a = malloc(2 * n * sizeof(float)), *b = malloc(2 * n * sizeof(float));
    int same = 0, dropped = 0;
    for (int i = 0; ok && i < 2; i++) {
        g.seed = 7 + (uint64_t)i;
        struct sd_pipeline p = {.ctx = &ctx, .rt = rt, .tok = tok, .cache = cache, .model = m};
        struct sd_pipeline q = {.ctx = &ctx, .rt = lm, .tok = tok, .cache = cache, .model = m};
        if (sd_generate(&p, &g, a + i * n) || sd_generate(&q, &g, b + i * n)) {
            printf("  %s\n", ctx.msg);
            break;
        }
        same += memcmp(a + i * n, b + i * n, n * sizeof(float)) == 0;
        dropped += cpu->dnnl->n_weights == 0 && cpu->dnnl->weight_bytes == 0 && !cpu->arena && !cpu->scratch;
    }
    CHECK(same == 2, "low memory: two images equal the default runtime's bit for bit (%d of 2)", same);
    CHECK(dropped == 2, "low memory: after each image the CPU backend holds no weight copy, arena or scratch (%d of 2)",
          dropped);
    if (rt) sd_runtime_release_model(rt, m);
    if (lm) sd_runtime_release_model(lm, m);
    sd_model_free(m);
    free(a), free(b);
    sd_embed_cache_free(cache);
    sd_tokenizer_free(tok);
    sd_runtime_free(rt);
    sd_runtime_free(lm);
}

int main(void) {
    test_changed_released();
    test_release_loop();
    test_low_memory();
    return test_summary();
}
