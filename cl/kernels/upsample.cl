/* upsample.cl - nearest resize [NC, H, W] -> [NC, OH, OW], PyTorch's index
 * formula: src = min((int)(dst * (in/out as float)), in - 1); exact halving
 * when out == 2*in. */
kernel void kernel_upsample_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n,
                                int H, int W, int OH, int OW, float sh, float sw) {
    uint i = get_global_id(0);
    if (i >= n) return;
    int ox = i % OW, oy = (i / OW) % OH, nc = i / (OW * OH);
    int sy = OH == 2 * H ? oy >> 1 : min((int)((float)oy * sh), H - 1);
    int sx = OW == 2 * W ? ox >> 1 : min((int)((float)ox * sw), W - 1);
    GPTR(float, yb, yo)[i] = CPTR(float, xb, xo)[((size_t)nc * H + sy) * W + sx];
}
