/* half.cl - half-precision storage. vload_half/vstore_half are core OpenCL
 * (no cl_khr_fp16 needed: a device without half arithmetic still reads and
 * writes halves, converting to and from f32 in registers).
 * widen: y[r * ldy + c] = x[r * cols + c] for a rows x cols block of halves
 * (contiguous) into floats (row stride ldy); 4 per work-item along a row. */
kernel void kernel_widen_f16(global const half *xb, ulong xo, global float *yb, ulong yo, uint rows, uint cols,
                             uint ldy) {
    uint c = get_global_id(0) * 4, r = get_global_id(1);
    if (r >= rows || c >= cols) return;
    global const half *x = CPTR(half, xb, xo) + (size_t)r * cols;
    global float *y = GPTR(float, yb, yo) + (size_t)r * ldy;
    if (c + 4 <= cols) vstore4(vload_half4(0, x + c), 0, y + c);
    else
        for (; c < cols; c++) y[c] = vload_half(0, x + c);
}

/* narrow: y = x rounded to the nearest half (ties to even), n values. */
kernel void kernel_narrow_f32(global const float *xb, ulong xo, global half *yb, ulong yo, uint n) {
    uint i = get_global_id(0) * 4;
    if (i >= n) return;
    global const float *x = CPTR(float, xb, xo);
    global half *y = GPTR(half, yb, yo);
    if (i + 4 <= n) vstore_half4_rte(vload4(0, x + i), 0, y + i);
    else
        for (; i < n; i++) vstore_half_rte(x[i], 0, y + i);
}
