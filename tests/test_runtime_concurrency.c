/* test_runtime_concurrency.c - one loaded model, two runtimes, two threads.
 *
 * Graph planning and scheduling write nothing into a model's weights and
 * the lazy weight load is locked (weights.c), so one sd_model can serve two
 * runtimes (each with its own backends and arena) in two threads at once.
 * The test loads tests/models/tiny-sd1 once and, on the freshly loaded model
 * (no weight loaded yet, so the lazy loads race too), runs two different
 * generations (prompts, seeds, samplers, sizes) concurrently through the
 * pipeline, each on its own runtime, tokenizer and error context, sharing
 * one embedding cache. Then it runs the same two generations one after the
 * other on a third runtime, and a second concurrent round on the (now warm)
 * first two. Every image must equal its sequential counterpart byte for
 * byte: the runs share nothing mutable, and a CPU run is deterministic for
 * any thread count.
 */
#include <pthread.h>

#include "embed_cache.h"
#include "model_load.h"
#include "pipeline.h"
#include "test.h"
#include "tokenizer.h"

#define MODEL "tests/models/tiny-sd1"

struct job_spec {
    const char *prompt, *negative, *sampler;
    int width, height, steps;
    uint64_t seed;
};

static const struct job_spec specs[2] = {
    {"a photo of a cat", "", "Euler a", 64, 64, 4, 11},
    {"a watercolor painting of a lighthouse at dawn", "blurry, low quality", "DPM++ 2M", 48, 64, 4, 12},
};

struct job {
    const struct job_spec *spec;
    struct sd_ctx ctx;
    struct sd_model *m;
    struct sd_runtime *rt;
    struct sd_tokenizer *tok;
    struct sd_embed_cache *cache;
    pthread_barrier_t *start;
    float *img;
    int rc;
};

static int64_t img_n(const struct job_spec *s) { return 3LL * s->width * s->height; }

static void *run_job(void *arg) {
    struct job *j = arg;
    const struct job_spec *s = j->spec;
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = s->prompt;
    g.negative_prompt = s->negative;
    g.width = s->width, g.height = s->height;
    g.seed = s->seed;
    g.sampler.steps = s->steps;
    j->rc = sd_sampler_parse_name(&j->ctx, s->sampler, &g.sampler);
    struct sd_pipeline p = {.ctx = &j->ctx, .model = j->m, .rt = j->rt, .tok = j->tok, .cache = j->cache};
    if (j->start) pthread_barrier_wait(j->start);
    if (j->rc == SD_OK && (j->img = malloc((size_t)img_n(s) * sizeof(float))))
        j->rc = sd_generate(&p, &g, j->img);
    else if (j->rc == SD_OK)
        j->rc = SD_ERR_NOMEM;
    return NULL;
}

/* A job on its own runtime and tokenizer (one runtime may be used by one
 * thread at a time; a tokenizer too). */
static int job_open(struct job *j, const struct job_spec *s, struct sd_model *m, struct sd_embed_cache *cache,
                    struct sd_runtime *rt) {
    memset(j, 0, sizeof *j);
    j->spec = s, j->m = m, j->cache = cache, j->rt = rt;
    if (!(j->tok = sd_tokenizer_load_bpe_gz(&j->ctx, vocab_path()))) return 1;
    return sd_tokenizer_set_family(j->tok, SD_TOKENIZER_SD1);
}

static void job_close(struct job *j) {
    sd_tokenizer_free(j->tok);
    free(j->img);
    j->tok = NULL, j->img = NULL;
}

static bool finite_and_varied(const float *x, int64_t n) {
    float lo = x[0], hi = x[0];
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return false;
        lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    }
    return hi - lo > 1e-3f;
}

/* Runs jobs a and b in two threads started together; returns 0 if both
 * succeeded (failures printed). */
static int run_concurrently(struct job *a, struct job *b) {
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    a->start = b->start = &start;
    pthread_t ta, tb;
    int ok = pthread_create(&ta, NULL, run_job, a) == 0;
    if (ok && pthread_create(&tb, NULL, run_job, b) != 0) {
        /* the first thread waits at the barrier for a partner: be it */
        pthread_barrier_wait(&start);
        pthread_join(ta, NULL);
        ok = 0;
    } else if (ok) {
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
    }
    pthread_barrier_destroy(&start);
    a->start = b->start = NULL;
    if (!ok) {
        printf("  pthread_create failed\n");
        return 1;
    }
    if (a->rc) printf("  job a: %s\n", a->ctx.msg);
    if (b->rc) printf("  job b: %s\n", b->ctx.msg);
    return a->rc || b->rc;
}

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    if (sd_model_load(&ctx, MODEL, NULL, &m) != SD_OK) {
        test_fail("load %s: %s", MODEL, ctx.msg);
        return test_summary();
    }
    struct sd_embed_cache *shared = sd_embed_cache_new(16u << 20), *seq_cache = sd_embed_cache_new(16u << 20);
    struct sd_runtime *rt[3];
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    for (int i = 0; i < 3; i++) rt[i] = sd_runtime_new(&ctx, &o);
    CHECK(shared && seq_cache && rt[0] && rt[1] && rt[2], "three runtimes on one model (%s)", ctx.msg);
    if (!shared || !seq_cache || !rt[0] || !rt[1] || !rt[2]) return test_summary();

    /* Round 1: concurrently, on the freshly loaded model. */
    struct job c[2], s[2];
    int rc = job_open(&c[0], &specs[0], m, shared, rt[0]) | job_open(&c[1], &specs[1], m, shared, rt[1]);
    CHECK(rc == 0 && run_concurrently(&c[0], &c[1]) == 0, "two generations at once on one model, two runtimes");

    /* The same two, one after the other, on a third runtime. */
    rc = job_open(&s[0], &specs[0], m, seq_cache, rt[2]) | job_open(&s[1], &specs[1], m, seq_cache, rt[2]);
    run_job(&s[0]);
    run_job(&s[1]);
    CHECK(rc == 0 && s[0].rc == SD_OK && s[1].rc == SD_OK, "the same two generations one after the other (%s%s)",
          s[0].ctx.msg, s[1].ctx.msg);
    bool all = !c[0].rc && !c[1].rc && !s[0].rc && !s[1].rc;
    CHECK(all && finite_and_varied(s[0].img, img_n(&specs[0])) && finite_and_varied(s[1].img, img_n(&specs[1])),
          "sequential images are finite and not flat");
    for (int k = 0; k < 2; k++)
        CHECK(all && !memcmp(c[k].img, s[k].img, (size_t)img_n(&specs[k]) * sizeof(float)),
              "concurrent image %d (%s, seed %llu, %dx%d) equals the sequential one byte for byte", k, specs[k].sampler,
              (unsigned long long)specs[k].seed, specs[k].width, specs[k].height);

    /* Round 2: concurrently again, graphs and caches warm. */
    for (int k = 0; k < 2; k++) {
        free(c[k].img);
        c[k].img = NULL;
    }
    CHECK(run_concurrently(&c[0], &c[1]) == 0, "second concurrent round");
    for (int k = 0; k < 2; k++)
        CHECK(!c[k].rc && !s[k].rc && !memcmp(c[k].img, s[k].img, (size_t)img_n(&specs[k]) * sizeof(float)),
              "second round: image %d equals the sequential one byte for byte", k);
    int hits = 0, misses = 0;
    size_t bytes = 0;
    sd_embed_cache_stats(shared, &hits, &misses, &bytes);
    CHECK(hits >= 4 && misses >= 3, "the shared embedding cache served both threads (%d hits, %d misses)", hits, misses);

    for (int k = 0; k < 2; k++) job_close(&c[k]), job_close(&s[k]);
    for (int i = 0; i < 3; i++) {
        sd_runtime_release_model(rt[i], m);
        sd_runtime_free(rt[i]);
    }
    sd_embed_cache_free(shared);
    sd_embed_cache_free(seq_cache);
    sd_model_free(m);
    return test_summary();
}
