/* rng.c - PyTorch's CPU generator and torch.randn, reproduced (see rng.h).
 *
 * How torch.randn(n, float32) fills a tensor on the CPU (ATen
 * native/cpu/DistributionTemplates.h, core/DistributionsHelper.h):
 *
 *  n >= 16 ("normal_fill_AVX2", the kernel any x86-64 CPU with AVX2 runs):
 *  first draw n float uniforms u = (mt() & 2^24-1) / 2^24 in order into the
 *  output; then for every complete block of 16 (offset i) and j = 0..7:
 *  r = sqrt(-2 log(1 - u[i+j])), th = (float)(2 pi) * u[i+j+8],
 *  out[i+j] = r cos th, out[i+j+8] = r sin th, in float with Cephes log/sincos
 *  (below). If n is not a multiple of 16, the last 16 slots (n-16 .. n-1) are
 *  refilled with 16 fresh uniforms and transformed the same way. (torch's
 *  scalar fallback for CPUs without AVX2 uses libm and double-rounded theta;
 *  it differs from this by about an ulp in ~30% of values.)
 *
 *  n < 16: each element is a double-precision Box-Muller draw cast to float:
 *  u1, u2 from 53-bit uniforms (two mt() outputs each, first one high), r =
 *  sqrt(-2 log1p(-u2)), th = 2 pi u1; returns r cos th and caches r sin th in
 *  the generator for the next such draw (the cache outlives the call).
 */
#include "rng.h"

#include <math.h>

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu

void sd_rng_seed(struct sd_rng *r, uint64_t seed) {
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < SD_RNG_MT_N; j++)
        r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + (uint32_t)j;
    r->mti = SD_RNG_MT_N;
    r->has_next_normal = false;
    r->next_normal = 0.0;
}

static void mt_regenerate(struct sd_rng *r) {
    uint32_t *mt = r->mt;
    int k;
    for (k = 0; k < SD_RNG_MT_N - MT_M; k++) {
        uint32_t y = (mt[k] & MT_UPPER) | (mt[k + 1] & MT_LOWER);
        mt[k] = mt[k + MT_M] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    for (; k < SD_RNG_MT_N - 1; k++) {
        uint32_t y = (mt[k] & MT_UPPER) | (mt[k + 1] & MT_LOWER);
        mt[k] = mt[k + (MT_M - SD_RNG_MT_N)] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    uint32_t y = (mt[SD_RNG_MT_N - 1] & MT_UPPER) | (mt[0] & MT_LOWER);
    mt[SD_RNG_MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    r->mti = 0;
}

uint32_t sd_rng_u32(struct sd_rng *r) {
    if (r->mti >= SD_RNG_MT_N) mt_regenerate(r);
    uint32_t y = r->mt[r->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* uniform_real_distribution<float>(0, 1): 24 random bits. */
static float uniform_f32(struct sd_rng *r) {
    return (float)(sd_rng_u32(r) & ((1u << 24) - 1)) * (1.0f / (float)(1u << 24));
}

/* uniform_real_distribution<double>(0, 1): 53 bits of random64(). */
static double uniform_f64(struct sd_rng *r) {
    uint64_t hi = sd_rng_u32(r);
    uint64_t lo = sd_rng_u32(r);
    uint64_t v = (hi << 32) | lo;
    return (double)(v & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* normal_distribution<double>(0, 1) with the generator's one-value cache. */
static double normal_f64(struct sd_rng *r) {
    if (r->has_next_normal) {
        r->has_next_normal = false;
        return r->next_normal;
    }
    double u1 = uniform_f64(r);
    double u2 = uniform_f64(r);
    double rad = sqrt(-2.0 * log1p(-u2));
    double th = 2.0 * M_PI * u1;
    r->next_normal = rad * sin(th);
    r->has_next_normal = true;
    return rad * cos(th);
}

/* The float math of torch's AVX2 kernel (normal_fill_16_AVX2: log256_ps and
 * sincos256_ps, single-precision Cephes algorithms), restated in scalar
 * form. torch's build lets GCC contract each multiply whose only use is an
 * add into an FMA; the fmaf() calls below sit exactly where that happens, so
 * results match torch bit for bit (checked on 600k values against torch 2.5.1
 * on an AVX-512 machine, which runs the same AVX2 kernel). fmaf is exact
 * everywhere (hardware or libm), so the output does not depend on our host;
 * this file must not be compiled with extra contraction (-ffp-contract=fast):
 * every other operation is written one rounding per statement. */
static float cephes_logf(float x) {
    union { float f; uint32_t u; } v = {x};
    if (v.f < 1.17549435e-38f) v.f = 1.17549435e-38f; /* x is in (0, 1] here */
    int32_t ex = (int32_t)(v.u >> 23) - 0x7f;
    v.u = (v.u & ~0x7f800000u) | 0x3f000000u; /* mantissa in [0.5, 1) */
    float m = v.f;
    float e = (float)ex;
    e = e + 1.0f;
    float tmp = 0.0f;
    if (m < 0.707106781186547524f) {
        tmp = m;
        e = e - 1.0f;
    }
    m = m - 1.0f;
    m = m + tmp;
    float z = m * m;
    float y = 7.0376836292E-2f;
    y = fmaf(y, m, -1.1514610310E-1f);
    y = fmaf(y, m, 1.1676998740E-1f);
    y = fmaf(y, m, -1.2420140846E-1f);
    y = fmaf(y, m, 1.4249322787E-1f);
    y = fmaf(y, m, -1.6668057665E-1f);
    y = fmaf(y, m, 2.0000714765E-1f);
    y = fmaf(y, m, -2.4999993993E-1f);
    y = fmaf(y, m, 3.3333331174E-1f);
    y = y * m;
    float eq1 = e * -2.12194440e-4f;
    y = fmaf(y, z, eq1);
    float hz = z * 0.5f;
    y = y - hz;
    float r = m + y;
    return fmaf(e, 0.693359375f, r);
}

static void cephes_sincosf(float x, float *s, float *c) {
    bool neg = x < 0;
    x = fabsf(x);
    float q = x * 1.27323954473516f; /* 4/pi */
    int32_t j = (int32_t)q;
    j = (j + 1) & ~1;
    float y = (float)j;
    if (j & 4) neg = !neg;
    bool sin_poly = (j & 2) == 0; /* sine uses the sine polynomial */
    bool cos_neg = ((~(j - 2)) & 4) != 0;
    x = fmaf(y, -0.78515625f, x); /* extended-precision x - j*pi/4 */
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    float hz = z * 0.5f;
    yc = fmaf(yc, z, -hz);
    yc = yc + 1.0f;
    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    float sv = sin_poly ? ys : yc;
    float cv = sin_poly ? yc : ys;
    *s = neg ? -sv : sv;
    *c = cos_neg ? -cv : cv;
}

static void normal_fill_16(float *d) {
    const float two_pi = (float)(2.0 * M_PI);
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - d[j];
        const float u2 = d[j + 8];
        const float rad = sqrtf(-2.0f * cephes_logf(u1));
        const float th = two_pi * u2;
        float sn, cs;
        cephes_sincosf(th, &sn, &cs);
        d[j] = rad * cs;
        d[j + 8] = rad * sn;
    }
}

void sd_rng_randn(struct sd_rng *r, float *out, int64_t n) {
    if (n <= 0) return;
    if (n < 16) {
        for (int64_t i = 0; i < n; i++) out[i] = (float)normal_f64(r);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(r);
    for (int64_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_f32(r);
        normal_fill_16(tail);
    }
}
