/* tanh.cl - tanh(x). */
kernel void kernel_tanh_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n) {
    uint i = get_global_id(0);
    if (i >= n) return;
    GPTR(float, yb, yo)[i] = tanh(CPTR(float, xb, xo)[i]);
}
