/* quick_gelu.cl - x*sigmoid(1.702x). */
kernel void kernel_quick_gelu_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n) {
    uint i = get_global_id(0);
    if (i >= n) return;
    float x = CPTR(float, xb, xo)[i];
    GPTR(float, yb, yo)[i] = x / (1.0f + exp(-1.702f * x));
}
