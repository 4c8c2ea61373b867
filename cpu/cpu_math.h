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
 *
 * With AVX-512 (-march=native on the machines we target) the same formulas
 * exist as 16-lane intrinsics (sd_exp16, sd_silu16, sd_gelu16): gcc's
 * vectorisation of the scalar versions turns the clamps into masked blends
 * and costs about twice as many instructions. The vector exp uses vscalefps
 * for the 2^n step, so it needs only the lower clamp (x >= -104 gives 0 or a
 * denormal; -inf in gives 0). Hot loops run 16 lanes at a time with these
 * and finish (or, without AVX-512, run entirely) with the scalar versions.
 */
#ifndef SDRT_CPU_MATH_H
#define SDRT_CPU_MATH_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#define SD_HAVE_AVX512 1
#endif
/* sdrt's own bf16 kernels (op_attention_bf16.c, conv_wino_bf16.c,
 * conv1x1_bf16.c) exist in builds with AVX-512 BF16; elsewhere they are
 * stubs and the ops keep oneDNN's or the f32 paths. */
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define SD_HAVE_AVX512_BF16 1
#else
#define SD_HAVE_AVX512_BF16 0
#endif
static inline int sd_bf16_kernels_built(void) { return SD_HAVE_AVX512_BF16; }

/* f32 -> bf16 bits, rounded to nearest even (NaN stays a quiet NaN), as
 * vcvtneps2bf16 does: the bf16 kernels' scalar packing. */
static inline uint32_t sd_bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

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

#if SD_HAVE_AVX512
static inline __m512 sd_exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 sd_silu16(__m512 x) {
    const __m512 e = sd_exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

static inline __m512 sd_gelu16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 ax = _mm512_abs_ps(x);
    const __m512 z = _mm512_mul_ps(ax, _mm512_set1_ps(0.70710678118654752f));
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, one));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    const __m512 c = _mm512_mul_ps(t, sd_exp16(_mm512_fnmadd_ps(z, z, p))); /* erfc(|x|/sqrt2) */
    /* 1 + erf(x/sqrt2) = erfc(-x/sqrt2): c for x < 0, 2 - c for x >= 0. */
    const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 f = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), c), c);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), f);
}
#endif

#endif
