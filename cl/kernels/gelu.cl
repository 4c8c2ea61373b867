/* gelu.cl - exact GELU: 0.5*x*(1 + erf(x/sqrt(2))). */
kernel void kernel_gelu_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n) {
    uint i = get_global_id(0);
    if (i >= n) return;
    float x = CPTR(float, xb, xo)[i];
    GPTR(float, yb, yo)[i] = 0.5f * x * (1.0f + erf(x * M_SQRT1_2_F));
}
