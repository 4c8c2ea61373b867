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
 * query index is (q0 + r % L) for the causal mask. 16-wide vectors along the
 * row (explicit, since PoCL would otherwise vectorise across rows with
 * gathers), scalar tail. Same arithmetic as above up to summation order.
 * In place (x == y) is allowed. Global (rows). */
kernel void kernel_softmax_rows_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint rows,
                                    uint C, uint L, uint q0, float scale, int causal) {
    uint row = get_global_id(0);
    if (row >= rows) return;
    global const float *x = CPTR(float, xb, xo) + (size_t)row * C;
    global float *y = GPTR(float, yb, yo) + (size_t)row * C;
    uint lim = causal ? min(C, q0 + row % L + 1) : C;
    uint nv = lim / 16, i;
    float16 mv = (float16)(-INFINITY);
    for (i = 0; i < nv; i++) mv = fmax(mv, vload16(i, x) * scale);
    float8 m8 = fmax(mv.lo, mv.hi);
    float4 m4 = fmax(m8.lo, m8.hi);
    float m = fmax(fmax(m4.s0, m4.s1), fmax(m4.s2, m4.s3));
    for (i = nv * 16; i < lim; i++) m = fmax(m, x[i] * scale);
    float16 sv = (float16)(0.0f);
    for (i = 0; i < nv; i++) {
        float16 e = exp(vload16(i, x) * scale - m);
        vstore16(e, i, y);
        sv += e;
    }
    float8 s8 = sv.lo + sv.hi;
    float4 s4 = s8.lo + s8.hi;
    float s = (s4.s0 + s4.s1) + (s4.s2 + s4.s3);
    for (i = nv * 16; i < lim; i++) {
        float e = exp(x[i] * scale - m);
        y[i] = e;
        s += e;
    }
    float inv = 1.0f / s;
    for (i = 0; i < nv; i++) vstore16(vload16(i, y) * inv, i, y);
    for (i = nv * 16; i < lim; i++) y[i] *= inv;
    for (i = lim; i < C; i++) y[i] = 0.0f;
}
