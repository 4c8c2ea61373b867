/* im2col.cl - columns of one image for a conv as GEMM.
 * col[r][p - p0] for r = (c*kh + ky)*kw + kx and output pixel p in [p0, p0+np):
 * x[c][oy*sh - pt + ky][ox*sw - pl + kx], 0 outside the image (zero padding).
 * Global size (np, C*kh*kw). */
kernel void kernel_im2col_f32(global const float *xb, ulong xo, global float *colb, ulong co,
                              int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
                              int OW, int p0, int np, int rows) {
    int p = get_global_id(0), r = get_global_id(1);
    if (p >= np || r >= rows) return;
    global const float *x = CPTR(float, xb, xo);
    global float *col = GPTR(float, colb, co);
    int kx = r % kw, ky = (r / kw) % kh, c = r / (kw * kh);
    int op = p0 + p, oy = op / OW, ox = op % OW;
    int iy = oy * sh - pt + ky, ix = ox * sw - pl + kx;
    float v = 0.0f;
    if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[((size_t)c * H + iy) * W + ix];
    col[(size_t)r * np + p] = v;
}
