/* silu.cl - x*sigmoid(x). */
kernel void kernel_silu_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n) {
    uint i = get_global_id(0);
    if (i >= n) return;
    float x = CPTR(float, xb, xo)[i];
    GPTR(float, yb, yo)[i] = x / (1.0f + exp(-x));
}
