/* concat.cl - y = cat(a, b) along one dim, viewed as [outer, na + nb, inner]. */
kernel void kernel_concat_f32(global const float *ab, ulong ao, global const float *bb, ulong bo,
                              global float *yb, ulong yo, uint n, uint na, uint nb, uint inner) {
    uint i = get_global_id(0);
    if (i >= n) return;
    uint in = i % inner, t = i / inner;
    uint c = t % (na + nb), o = t / (na + nb);
    float v = c < na ? CPTR(float, ab, ao)[((size_t)o * na + c) * inner + in]
                     : CPTR(float, bb, bo)[((size_t)o * nb + (c - na)) * inner + in];
    GPTR(float, yb, yo)[i] = v;
}
