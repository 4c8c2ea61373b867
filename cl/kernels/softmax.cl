/* softmax.cl - softmax over the last dim C of scale*x, one work-group per
 * row. causal: row r is query q = r % L (L = rows per matrix) and columns
 * j > q get probability 0. */
kernel void kernel_softmax_f32(global const float *xb, ulong xo, global float *yb, ulong yo,
                               uint C, uint L, float scale, int causal, local float *red) {
    uint row = get_group_id(0), l = get_local_id(0), nl = get_local_size(0);
    global const float *x = CPTR(float, xb, xo) + (size_t)row * C;
    global float *y = GPTR(float, yb, yo) + (size_t)row * C;
    uint lim = causal ? min(C, row % L + 1) : C;
    float m = -INFINITY;
    for (uint i = l; i < lim; i += nl) m = fmax(m, x[i] * scale);
    m = wg_max(red, m);
    float s = 0.0f;
    for (uint i = l; i < lim; i += nl) s += exp(x[i] * scale - m);
    float inv = 1.0f / wg_sum(red, s);
    for (uint i = l; i < C; i += nl) y[i] = i < lim ? exp(x[i] * scale - m) * inv : 0.0f;
}

/* One work-item per row (for CPU-type devices, where work-group reductions
 * with barriers are slow): rows are [row0 + r] of a batch of matrices whose
 * query index is (q0 + r % L) for the causal mask. Same arithmetic as above
 * up to summation order. Global (rows). */
kernel void kernel_softmax_rows_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint rows,
                                    uint C, uint L, uint q0, float scale, int causal) {
    uint row = get_global_id(0);
    if (row >= rows) return;
    global const float *x = CPTR(float, xb, xo) + (size_t)row * C;
    global float *y = GPTR(float, yb, yo) + (size_t)row * C;
    uint lim = causal ? min(C, q0 + row % L + 1) : C;
    float m = -INFINITY;
    for (uint i = 0; i < lim; i++) m = fmax(m, x[i] * scale);
    float s = 0.0f;
    for (uint i = 0; i < lim; i++) {
        float e = exp(x[i] * scale - m);
        y[i] = e;
        s += e;
    }
    float inv = 1.0f / s;
    for (uint i = 0; i < lim; i++) y[i] *= inv;
    for (uint i = lim; i < C; i++) y[i] = 0.0f;
}
