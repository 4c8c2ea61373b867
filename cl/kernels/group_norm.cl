/* group_norm.cl - GroupNorm (+ optional fused SiLU) over x[N, C, S]: one
 * work-group per (n, group); the group's cpg*S values are contiguous. Two
 * passes (mean, then biased variance of x - mean) for accuracy, then
 * y = (x - mean) * rsqrt(var + eps) * gamma[c] + beta[c]. */
kernel void kernel_group_norm_f32(global const float *xb, ulong xo, global float *yb, ulong yo,
                                  global const float *gb, ulong go, global const float *bb, ulong bo,
                                  uint groups, uint cpg, uint S, float eps, int has_gamma, int has_beta,
                                  int silu, local float *red) {
    uint grp = get_group_id(0), l = get_local_id(0), nl = get_local_size(0);
    uint count = cpg * S;
    size_t base = (size_t)grp * count;
    global const float *x = CPTR(float, xb, xo) + base;
    global float *y = GPTR(float, yb, yo) + base;
    float s = 0.0f;
    for (uint i = l; i < count; i += nl) s += x[i];
    float mean = wg_sum(red, s) / (float)count;
    s = 0.0f;
    for (uint i = l; i < count; i += nl) {
        float d = x[i] - mean;
        s += d * d;
    }
    float rstd = rsqrt(wg_sum(red, s) / (float)count + eps);
    uint c0 = (grp % groups) * cpg;
    global const float *gamma = CPTR(float, gb, go), *beta = CPTR(float, bb, bo);
    for (uint i = l; i < count; i += nl) {
        uint c = c0 + i / S;
        float v = (x[i] - mean) * rstd;
        if (has_gamma) v *= gamma[c];
        if (has_beta) v += beta[c];
        if (silu) v = v / (1.0f + exp(-v));
        y[i] = v;
    }
}
