/* im2col.cl - columns of one image for a conv as GEMM.
 * col[r][p - p0] for r = (c*kh + ky)*kw + kx and output pixel p in [p0, p0+np):
 * x[c][oy*sh - pt + ky][ox*sw - pl + kx], 0 outside the image (zero padding).
 * Each work-item fills IM2COL_PX consecutive pixels of one row r (one
 * division per item, contiguous stores). Global (ceil(np/IM2COL_PX), rows). */
#define IM2COL_PX 16
kernel void kernel_im2col_f32(global const float *xb, ulong xo, global float *colb, ulong co,
                              int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
                              int OW, int p0, int np, int rows) {
    int pb = get_global_id(0) * IM2COL_PX, r = get_global_id(1);
    if (pb >= np || r >= rows) return;
    global const float *x = CPTR(float, xb, xo);
    global float *col = GPTR(float, colb, co) + (size_t)r * np;
    int kx = r % kw, ky = (r / kw) % kh, c = r / (kw * kh);
    global const float *xc = x + (size_t)c * H * W;
    int op = p0 + pb, oy = op / OW, ox = op % OW;
    int end = min(pb + IM2COL_PX, np);
    for (int p = pb; p < end; p++) {
        int iy = oy * sh - pt + ky, ix = ox * sw - pl + kx;
        col[p] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.0f;
        if (++ox == OW) ox = 0, oy++;
    }
}
