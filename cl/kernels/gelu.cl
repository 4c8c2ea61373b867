/* gelu.cl - erf GELU: 0.5*x*(1 + erf(x/sqrt(2))) (erf: common.cl gelu_erf). */
kernel void kernel_gelu_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n) {
    uint i = get_global_id(0);
    if (i >= n) return;
    float x = CPTR(float, xb, xo)[i];
    GPTR(float, yb, yo)[i] = gelu_f(x);
}
