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

/* One work-item per (n, group) (CPU-type devices): the same two passes with
 * 16-wide vector sums over the group's contiguous cpg*S values. Global
 * (N*groups). */
kernel void kernel_group_norm_rows_f32(global const float *xb, ulong xo, global float *yb, ulong yo,
                                       global const float *gb, ulong go, global const float *bb, ulong bo,
                                       uint n_groups, uint groups, uint cpg, uint S, float eps, int has_gamma,
                                       int has_beta, int silu) {
    uint grp = get_global_id(0);
    if (grp >= n_groups) return;
    uint count = cpg * S;
    size_t base = (size_t)grp * count;
    global const float *x = CPTR(float, xb, xo) + base;
    global float *y = GPTR(float, yb, yo) + base;
    float mean = run_sum(x, count) / (float)count;
    float rstd = rsqrt(run_sqdev(x, count, mean) / (float)count + eps);
    uint c0 = (grp % groups) * cpg;
    global const float *gamma = CPTR(float, gb, go), *beta = CPTR(float, bb, bo);
    for (uint c = 0; c < cpg; c++) {
        float g = has_gamma ? gamma[c0 + c] * rstd : rstd;
        float b = (has_beta ? beta[c0 + c] : 0.0f) - mean * g;
        global const float *xc = x + (size_t)c * S;
        global float *yc = y + (size_t)c * S;
        uint nv = S / 16, i;
        for (i = 0; i < nv; i++) {
            float16 v = fma(vload16(i, xc), g, b);
            if (silu) v = v / (1.0f + exp(-v));
            vstore16(v, i, yc);
        }
        for (i = nv * 16; i < S; i++) {
            float v = fma(xc[i], g, b);
            if (silu) v = v / (1.0f + exp(-v));
            yc[i] = v;
        }
    }
}
