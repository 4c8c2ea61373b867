/* mul.cl - y = a * b with b broadcast: b's element strides bs0..bs3 are 0 along
 * broadcast dims; ne1..ne3 are a's inner three sizes (4-slot layout); same:
 * b has a's shape (no index arithmetic). */
kernel void kernel_mul_f32(global const float *ab, ulong ao, global const float *bb, ulong bo,
                            global float *yb, ulong yo, uint n, uint ne1, uint ne2, uint ne3,
                            uint bs0, uint bs1, uint bs2, uint bs3, int same) {
    uint i = get_global_id(0);
    if (i >= n) return;
    uint bi = i;
    if (!same) {
        uint i3 = i % ne3, t = i / ne3;
        uint i2 = t % ne2;
        t /= ne2;
        uint i1 = t % ne1, i0 = t / ne1;
        bi = i0 * bs0 + i1 * bs1 + i2 * bs2 + i3 * bs3;
    }
    float b = CPTR(float, bb, bo)[bi];
    GPTR(float, yb, yo)[i] = CPTR(float, ab, ao)[i] * b;
}
