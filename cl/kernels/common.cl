/* common.cl - prepended to every program: address helpers.
 * Buffers are passed as (base pointer, byte offset) pairs; GPTR/CPTR give
 * the typed address of the tensor inside its buffer. */
#define GPTR(T, buf, offs) ((global T *)((global char *)(buf) + (offs)))
#define CPTR(T, buf, offs) ((global const T *)((global const char *)(buf) + (offs)))

/* Work-group reductions over dim 0 (local size a power of two); every
 * item gets the result. `red` holds get_local_size(0) floats. */
float wg_sum(local float *red, float v) {
    uint l = get_local_id(0);
    red[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (l < s) red[l] += red[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

float wg_max(local float *red, float v) {
    uint l = get_local_id(0);
    red[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (l < s) red[l] = fmax(red[l], red[l + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* GELU's erf: PoCL's erf() is ~50x slower than exp() here, so GELU uses
 * erf = 1 - erfc with the Chebyshev-fitted erfc of Numerical Recipes
 * (erfcc: relative error < 1.2e-7 everywhere), i.e. |error| <= 2.4e-7 in
 * erf and <= 1.2e-7*|x| in gelu - within float rounding of the exact erf
 * GELU for every x. Same code on every device. */
float gelu_erf(float x) {
    float z = fabs(x), t = 1.0f / (1.0f + 0.5f * z);
    float r = t * exp(-z * z - 1.26551223f +
                      t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
                      t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f +
                      t * 0.17087277f)))))))));
    return x >= 0.0f ? 1.0f - r : r - 1.0f;
}

float gelu_f(float x) { return 0.5f * x * (1.0f + gelu_erf(x * M_SQRT1_2_F)); }
