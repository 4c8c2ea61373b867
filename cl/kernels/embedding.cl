/* embedding.cl - y[t, c] = table[ids[t], c]; an id outside [0, V) writes 0 and
 * sets *flag = 1 (the host checks it and reports the error). */
kernel void kernel_embedding_f32(global const int *ib, ulong io, global const float *tb, ulong to,
                                 global float *yb, ulong yo, uint n, int V, uint C, global int *flag) {
    uint i = get_global_id(0);
    if (i >= n) return;
    uint tok = i / C, c = i % C;
    int id = CPTR(int, ib, io)[tok];
    float v = 0.0f;
    if (id >= 0 && id < V) v = CPTR(float, tb, to)[(size_t)id * C + c];
    else *flag = 1;
    GPTR(float, yb, yo)[i] = v;
}
