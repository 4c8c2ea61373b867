/* layer_norm.cl - LayerNorm over the last dim C: one work-group per row; two
 * passes (mean, biased variance), y = (x - mean) * rsqrt(var + eps) * gamma + beta. */
kernel void kernel_layer_norm_f32(global const float *xb, ulong xo, global float *yb, ulong yo,
                                  global const float *gb, ulong go, global const float *bb, ulong bo,
                                  uint C, float eps, int has_gamma, int has_beta, local float *red) {
    uint row = get_group_id(0), l = get_local_id(0), nl = get_local_size(0);
    global const float *x = CPTR(float, xb, xo) + (size_t)row * C;
    global float *y = GPTR(float, yb, yo) + (size_t)row * C;
    float s = 0.0f;
    for (uint i = l; i < C; i += nl) s += x[i];
    float mean = wg_sum(red, s) / (float)C;
    s = 0.0f;
    for (uint i = l; i < C; i += nl) {
        float d = x[i] - mean;
        s += d * d;
    }
    float rstd = rsqrt(wg_sum(red, s) / (float)C + eps);
    global const float *gamma = CPTR(float, gb, go), *beta = CPTR(float, bb, bo);
    for (uint i = l; i < C; i += nl) {
        float v = (x[i] - mean) * rstd;
        if (has_gamma) v *= gamma[i];
        if (has_beta) v += beta[i];
        y[i] = v;
    }
}
