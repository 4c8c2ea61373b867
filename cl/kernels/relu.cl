/* relu.cl - max(x, 0) (NaN -> 0, as the CPU kernel). */
kernel void kernel_relu_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n) {
    uint i = get_global_id(0);
    if (i >= n) return;
    float x = CPTR(float, xb, xo)[i];
    GPTR(float, yb, yo)[i] = x > 0.0f ? x : 0.0f;
}
