/* common.cl - prepended to every program: address helpers.
 * Buffers are passed as (base pointer, byte offset) pairs; GPTR/CPTR give
 * the typed address of the tensor inside its buffer. */
#define GPTR(T, buf, offs) ((global T *)((global char *)(buf) + (offs)))
#define CPTR(T, buf, offs) ((global const T *)((global const char *)(buf) + (offs)))

/* Work-group reductions over dim 0 (local size a power of two); every
 * item gets the result. `red` holds get_local_size(0) floats. */
float wg_sum(local float *red, float v) {
    uint l = get_local_id(0);
    red[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (l < s) red[l] += red[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

float wg_max(local float *red, float v) {
    uint l = get_local_id(0);
    red[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (l < s) red[l] = fmax(red[l], red[l + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}
