/* test_rng.c - sd_rng against torch.randn on a CPU generator (tests/golden/rng.bin,
 * from tests/reference/gen_rng_goldens.py) and against the MT19937 reference
 * output (the 10000th output of init_genrand(5489) is 4123659995). */
#include "golden.h"
#include "rng.h"
#include "test.h"

static const uint64_t seeds[] = {0, 42, 1234, 4294967296ull + 7};
static const int sizes[] = {1, 2, 3, 15, 16, 17, 31, 32, 100, 256, 1000};
static const int seq_sizes[] = {3, 5, 20, 1, 16, 7, 33};

/* Counts values that are not bit-identical to torch's (sd_rng reproduces
 * torch's x86 AVX2 kernel exactly); *max_err gets the max abs difference. */
static int close_ulp(const float *got, const float *ref, int64_t n, double *max_err) {
    double mx = 0;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (d > mx) mx = d;
        if (memcmp(&got[i], &ref[i], sizeof(float)) != 0) {
            if (bad < 3) printf("  [%lld] got %.9g ref %.9g\n", (long long)i, got[i], ref[i]);
            bad++;
        }
    }
    *max_err = mx;
    return bad;
}

static void test_mt19937(void) {
    struct sd_rng r;
    sd_rng_seed(&r, 5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++) v = sd_rng_u32(&r);
    CHECK(v == 4123659995u, "mt19937 10000th output for seed 5489 (%u)", v);
    struct sd_rng a, b;
    sd_rng_seed(&a, 7);
    sd_rng_seed(&b, 4294967296ull + 7);
    CHECK(sd_rng_u32(&a) == sd_rng_u32(&b), "seed uses the low 32 bits");
}

static void test_golden(const struct golden *g) {
    float out[1024];
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        int bad = 0;
        double worst = 0;
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            char name[64];
            snprintf(name, sizeof name, "seed%llu_n%d", (unsigned long long)seeds[s], sizes[k]);
            const struct golden_entry *e = golden_get(g, name);
            if (!e || e->n != sizes[k]) { bad++; continue; }
            float *ref = golden_f32(e);
            struct sd_rng r;
            sd_rng_seed(&r, seeds[s]);
            sd_rng_randn(&r, out, sizes[k]);
            double mx;
            int b = close_ulp(out, ref, sizes[k], &mx);
            if (b) printf("  %s: %d mismatches\n", name, b);
            bad += b;
            if (mx > worst) worst = mx;
            free(ref);
        }
        CHECK(bad == 0, "randn seed %llu sizes 1..1000 match torch bit for bit (max abs diff %.3g)",
              (unsigned long long)seeds[s], worst);

        /* A sequence of calls on one generator (cached normal, state carry). */
        struct sd_rng r;
        sd_rng_seed(&r, seeds[s]);
        bad = 0;
        for (size_t k = 0; k < sizeof seq_sizes / sizeof *seq_sizes; k++) {
            char name[64];
            snprintf(name, sizeof name, "seq%llu_%zu", (unsigned long long)seeds[s], k);
            const struct golden_entry *e = golden_get(g, name);
            sd_rng_randn(&r, out, seq_sizes[k]);
            if (!e || e->n != seq_sizes[k]) { bad++; continue; }
            float *ref = golden_f32(e);
            double mx;
            bad += close_ulp(out, ref, seq_sizes[k], &mx);
            free(ref);
        }
        CHECK(bad == 0, "randn seed %llu: sequence of 7 calls on one generator matches torch",
              (unsigned long long)seeds[s]);

        char name[64];
        snprintf(name, sizeof name, "shape_seed%llu", (unsigned long long)seeds[s]);
        const struct golden_entry *e = golden_get(g, name);
        sd_rng_seed(&r, seeds[s]);
        sd_rng_randn(&r, out, 2 * 4 * 9 * 7);
        float *ref = golden_f32(e);
        double mx = 0;
        CHECK(e && e->n == 504 && close_ulp(out, ref, 504, &mx) == 0,
              "randn seed %llu shape (2,4,9,7) matches torch", (unsigned long long)seeds[s]);
        free(ref);
    }
}

/* Independent of torch: the n >= 16 path gives mean ~0, variance ~1. */
static void test_moments(void) {
    enum { N = 1 << 16 };
    static float x[N];
    struct sd_rng r;
    sd_rng_seed(&r, 99);
    sd_rng_randn(&r, x, N);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += x[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (x[i] - m) * (x[i] - m);
    v /= N - 1;
    CHECK(fabs(m) < 0.02 && fabs(v - 1) < 0.03, "randn 65536 values: mean %.4f var %.4f", m, v);
}

int main(void) {
    test_mt19937();
    struct golden *g = golden_load("tests/golden/rng.bin");
    CHECK(g != NULL, "load tests/golden/rng.bin");
    if (g) test_golden(g);
    if (g) {
        const struct golden_entry *e = golden_get(g, "latent_seed1");
        float *ref = golden_f32(e), *x = malloc(16384 * sizeof *x);
        struct sd_rng r;
        sd_rng_seed(&r, 1);
        sd_rng_randn(&r, x, 16384);
        double mx = 0;
        CHECK(e && e->n == 16384 && close_ulp(x, ref, 16384, &mx) == 0,
              "randn seed 1 shape (1,4,64,64) (a 512x512 latent) matches torch bit for bit");
        free(ref);
        free(x);
    }
    golden_free(g);
    test_moments();
    return test_summary();
}
