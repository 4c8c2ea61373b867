/* test.h - the tiny test harness shared by tests/test_*.c.
 *
 * Each case prints "ok <name>" or "FAIL <name>: why"; tests/run.sh counts
 * them. check_close() compares arrays with |got-ref| <= atol + rtol*|ref|,
 * checks NaN/Inf first, and prints the first mismatches and the max error.
 *
 * Measured error in every line: check_close() (and test_err_note() for
 * hand-written comparisons) records the largest error since the last
 * reported case, and the next ok/FAIL line ends with it:
 *   [measured: max abs err 3.1e-06, max rel err 2e-05; tolerance 12x that]
 * where "tolerance Nx" is min over elements of (atol + rtol*|ref|)/|got-ref|,
 * i.e. how far the worst element is from failing. The policy (tests/README
 * in docs/architecture.md "Tests"): tolerances about 10x the measured error.
 */
#ifndef SDRT_TEST_H
#define SDRT_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;

/* Largest errors of the comparisons since the last reported case. */
static struct { int n; double abs, rel, use; } test_err;

static void test_err_print(void) __attribute__((unused));
static void test_err_print(void) {
    if (!test_err.n) return;
    if (test_err.use > 0)
        printf(" [measured: max abs err %.2g, max rel err %.2g; tolerance %.3gx that]", test_err.abs, test_err.rel,
               1.0 / test_err.use);
    else
        printf(" [measured: exact (max abs err 0)]");
    memset(&test_err, 0, sizeof test_err);
}

/* Records a hand-written comparison: error err against tolerance tol (and
 * the relative error rel, or -1 when not meaningful). */
static void test_err_note(double err, double rel, double tol) __attribute__((unused));
static void test_err_note(double err, double rel, double tol) {
    err = fabs(err);
    test_err.n++;
    if (err > test_err.abs) test_err.abs = err;
    if (rel > test_err.rel) test_err.rel = rel;
    double use = tol > 0 ? err / tol : err > 0 ? INFINITY : 0;
    if (use > test_err.use) test_err.use = use;
}

static void test_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void test_ok(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("ok ");
    vprintf(fmt, ap);
    test_err_print();
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static void test_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void test_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    test_err_print();
    printf("\n");
    va_end(ap);
    fflush(stdout);
    test_failures++;
}

/* CHECK(cond, "name fmt", ...): one test case. */
#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) test_ok(__VA_ARGS__);                                               \
        else { printf("FAIL %s:%d: (%s) ", __FILE__, __LINE__, #cond); printf(__VA_ARGS__); test_err_print(); printf("\n"); test_failures++; } \
    } while (0)

/* Returns 0 when got matches ref within atol + rtol*|ref| everywhere and
 * has no NaN/Inf; otherwise prints details and returns 1. Always prints the
 * max abs / rel error into *max_abs when non-NULL. */
/* x rounded to bf16 (nearest even), as the bf16 kernels round their
 * operands: for references fed the values a bf16 kernel multiplies. */
static float test_bf16_round(float x) __attribute__((unused));
static float test_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

static int check_close(const char *name, const float *got, const float *ref, int64_t n, double atol, double rtol,
                       double *max_abs) __attribute__((unused));
static int check_close(const char *name, const float *got, const float *ref, int64_t n, double atol, double rtol,
                       double *max_abs) {
    double mx = 0, mr = 0, use = 0;
    int64_t bad = 0, first_bad = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            printf("  %s: non-finite value %f at %lld\n", name, got[i], (long long)i);
            if (max_abs) *max_abs = INFINITY;
            test_err_note(INFINITY, INFINITY, 0);
            return 1;
        }
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > mx) mx = d;
        double r = d / (fabs((double)ref[i]) + 1e-12);
        if (r > mr && fabs(ref[i]) > atol) mr = r;
        double lim = atol + rtol * fabs((double)ref[i]);
        double u = lim > 0 ? d / lim : d > 0 ? INFINITY : 0;
        if (u > use) use = u;
        if (d > atol + rtol * fabs((double)ref[i])) {
            if (bad < 5) printf("  %s[%lld]: got %.8g ref %.8g (diff %.3g)\n", name, (long long)i, got[i], ref[i], d);
            if (first_bad < 0) first_bad = i;
            bad++;
        }
    }
    if (max_abs) *max_abs = mx;
    test_err.n++;
    if (mx > test_err.abs) test_err.abs = mx;
    if (mr > test_err.rel) test_err.rel = mr;
    if (use > test_err.use) test_err.use = use;
    if (bad) printf("  %s: %lld of %lld mismatched, max abs err %.3g, max rel err %.3g\n", name, (long long)bad,
                    (long long)n, mx, mr);
    return bad ? 1 : 0;
}

/* Deterministic uniform [-1, 1) floats (xorshift). */
static void fill_random(float *x, int64_t n, uint64_t seed) __attribute__((unused));
static void fill_random(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

/* The CLIP BPE vocabulary the tests use: $SDRT_VOCAB, else the copy
 * `make vocab` installs. */
static const char *vocab_path(void) __attribute__((unused));
static const char *vocab_path(void) {
    const char *env = getenv("SDRT_VOCAB");
    return env && *env ? env : "build/vocab/bpe_simple_vocab_16e6.txt.gz";
}

static int test_summary(void) __attribute__((unused));
static int test_summary(void) { return test_failures ? 1 : 0; }

/* The bytes of a file (NUL-terminated, length in *n), NULL if it cannot be read. */
static inline char *test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (!b) { fclose(f); return NULL; }
    *n = fread(b, 1, (size_t)sz, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

#endif
