/* permute.cl - contiguous copy y[i0,i1,i2,i3] = x[i0*s0 + i1*s1 + i2*s2 + i3*s3]
 * where (ne1, ne2, ne3) are the output's inner sizes and s* the input
 * element strides of the input dim that output dim * reads. */
kernel void kernel_permute_f32(global const float *xb, ulong xo, global float *yb, ulong yo, uint n,
                               uint ne1, uint ne2, uint ne3, uint s0, uint s1, uint s2, uint s3) {
    uint i = get_global_id(0);
    if (i >= n) return;
    uint i3 = i % ne3, t = i / ne3;
    uint i2 = t % ne2;
    t /= ne2;
    uint i1 = t % ne1, i0 = t / ne1;
    GPTR(float, yb, yo)[i] = CPTR(float, xb, xo)[i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3];
}
