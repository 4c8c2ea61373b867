/* bias.cl - y[i] += b[(i / inner) % channels] (conv: inner = H*W; linear: inner = 1). */
kernel void kernel_bias_f32(global float *yb, ulong yo, global const float *bb, ulong bo,
                            uint n, uint inner, uint channels) {
    uint i = get_global_id(0);
    if (i >= n) return;
    global float *y = GPTR(float, yb, yo);
    global const float *b = CPTR(float, bb, bo);
    y[i] += b[(i / inner) % channels];
}
