/* geglu.cl - x[r, 0:2C] -> y[r, c] = x[r, c] * gelu(x[r, C + c]) (erf GELU, common.cl). */
kernel void kernel_geglu_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n, uint C) {
    uint i = get_global_id(0);
    if (i >= n) return;
    uint r = i / C, c = i % C;
    global const float *x = CPTR(float, xb, xo) + (size_t)r * 2 * C;
    float a = x[c], g = x[C + c];
    GPTR(float, yb, yo)[i] = a * gelu_f(g);
}
