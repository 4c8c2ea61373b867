/* scale.cl - x*s + b. */
kernel void kernel_scale_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n, float s,
                             float b) {
    uint i = get_global_id(0);
    if (i >= n) return;
    GPTR(float, yb, yo)[i] = CPTR(float, xb, xo)[i] * s + b;
}
