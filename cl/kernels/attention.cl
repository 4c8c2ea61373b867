/* attention.cl - multi-head attention, flash style: O = softmax(scale*Q*K^T)*V
 * per (batch, head), never materialising the score matrix.
 *
 * q[B, Lq, H*d], k[B, Lk, H*d], v[B, Lk, H*dv] -> o[B, Lq, H*dv], channel =
 * head*d + j. Global (round_up(Lq, BQ), H, B), local (BQ, 1, 1): each
 * work-item owns one query row; the work-group walks the keys in tiles of TK
 * rows loaded cooperatively into local memory (Kt: TK*d, Vt: TK*dv floats)
 * and keeps an online softmax per row: running max m, running sum l and the
 * unnormalised accumulator acc[dv], rescaled by exp(m_old - m_new) when the
 * max grows. causal: key j > query i is masked. d, dv <= SD_DV_MAX, TK <= 64.
 */
kernel void kernel_attention_f32(global const float *qb, ulong qo, global const float *kb, ulong ko,
                                 global const float *vb, ulong vo, global float *ob, ulong oo,
                                 int Lq, int Lk, int H, int d, int dv, float scale, int causal, int TK,
                                 local float *Kt, local float *Vt) {
    int qi = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    int lid = get_local_id(0), BQ = get_local_size(0);
    bool valid = qi < Lq;
    global const float *Q = CPTR(float, qb, qo), *K = CPTR(float, kb, ko), *V = CPTR(float, vb, vo);
    global const float *qp = Q + ((size_t)b * Lq + (valid ? qi : 0)) * H * d + (size_t)h * d;
    float qv[SD_DV_MAX], acc[SD_DV_MAX], s[64];
    for (int c = 0; c < d; c++) qv[c] = qp[c] * scale;
    for (int c = 0; c < dv; c++) acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int t0 = 0; t0 < Lk; t0 += TK) {
        int tk = min(TK, Lk - t0);
        for (int idx = lid; idx < tk * d; idx += BQ)
            Kt[idx] = K[((size_t)b * Lk + t0 + idx / d) * H * d + (size_t)h * d + idx % d];
        for (int idx = lid; idx < tk * dv; idx += BQ)
            Vt[idx] = V[((size_t)b * Lk + t0 + idx / dv) * H * dv + (size_t)h * dv + idx % dv];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (valid && !(causal && t0 > qi)) {
            float mt = m;
            for (int j = 0; j < tk; j++) {
                local const float *kr = Kt + j * d;
                float sc = 0.0f;
                for (int c = 0; c < d; c++) sc += qv[c] * kr[c];
                if (causal && t0 + j > qi) sc = -INFINITY;
                s[j] = sc;
                mt = fmax(mt, sc);
            }
            float corr = exp(m - mt);
            l *= corr;
            for (int j = 0; j < tk; j++) {
                s[j] = exp(s[j] - mt);
                l += s[j];
            }
            for (int c = 0; c < dv; c++) {
                float a = acc[c] * corr;
                for (int j = 0; j < tk; j++) a += s[j] * Vt[j * dv + c];
                acc[c] = a;
            }
            m = mt;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (valid) {
        global float *op = GPTR(float, ob, oo) + ((size_t)b * Lq + qi) * H * dv + (size_t)h * dv;
        float inv = 1.0f / l;
        for (int c = 0; c < dv; c++) op[c] = acc[c] * inv;
    }
}
