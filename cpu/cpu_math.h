/* cpu_math.h - vectorisable float exp and erfc for the CPU kernels.
 *
 * glibc's expf/erff only get SIMD variants under -ffast-math, which we do
 * not use, so a loop calling them runs scalar. These are plain C with no
 * branches or calls, so gcc vectorises loops over them (-O3 -march=native).
 *
 * sd_expf: Cephes-style: x = n*ln2 + r with |r| <= ln2/2, e^r by a degree-6
 * polynomial, 2^n by building the exponent bits. Max error ~2 ulp on
 * [-87, 88]; x is clamped there (so exp(-inf) gives ~1e-38, not 0: callers
 * that mask must write 0 themselves). NaN in gives an unspecified value.
 *
 * sd_erfcf: Numerical Recipes' Chebyshev fit erfc(z) = t*exp(-z^2 + P(t)),
 * t = 1/(1+z/2), z >= 0, fractional error < 1.2e-7 everywhere. Used by GELU
 * as 1+erf(x) = 2-erfc(x) for x >= 0 and erfc(-x) for x < 0, which keeps the
 * relative error small also where gelu(x) is tiny (large negative x).
 */
#ifndef SDRT_CPU_MATH_H
#define SDRT_CPU_MATH_H

#include <stdint.h>
#include <string.h>

static inline float sd_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* n = round(x / ln2) via the 1.5*2^23 trick (no rint call to vectorise). */
    const float magic = 12582912.0f;
    const float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

/* erfc(z) for z >= 0. */
static inline float sd_erfcf_pos(float z) {
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * sd_expf(-z * z + p);
}

/* Exact (erf) GELU: 0.5*x*(1+erf(x/sqrt(2))). */
static inline float sd_geluf(float x) {
    const float z = (x < 0 ? -x : x) * 0.70710678118654752f;
    const float c = sd_erfcf_pos(z);
    return 0.5f * x * (x < 0 ? c : 2.0f - c);
}

static inline float sd_siluf(float x) { return x / (1.0f + sd_expf(-x)); }

#endif
