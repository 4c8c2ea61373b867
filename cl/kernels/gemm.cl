/* gemm.cl - our own batched SGEMM (used in precompiled mode, where CLBlast
 * cannot compile its kernels, and with SDRT_CL_GEMM=own).
 *
 * C[m, n] = alpha * sum_k A(m, k) * B(k, n) + beta * C[m, n], with
 * A(m, k) = a[m*sam + k*sak] and B(k, n) = b[k*sbk + n*sbn] (so any transpose
 * is a choice of strides), C row-major with ldc, batch strides bsa/bsb/bsc
 * in elements. A work-group of RTS x RTS items computes a TS x TS tile of C,
 * each item WPT x WPT values spaced RTS apart (coalesced stores); K is walked
 * in steps of TK through local-memory tiles. Global (ceil(N/TS)*RTS,
 * ceil(M/TS)*RTS, batch), local (RTS, RTS, 1).
 */
#define TS 64
#define WPT 4
#define RTS (TS / WPT)
#define TK 16

kernel __attribute__((reqd_work_group_size(RTS, RTS, 1)))
void kernel_gemm_f32(global const float *ab, ulong ao, global const float *bb, ulong bo, global float *cb, ulong co,
                     int M, int N, int K, int sam, int sak, int sbk, int sbn, int ldc,
                     ulong bsa, ulong bsb, ulong bsc, float alpha, float beta) {
    int tx = get_local_id(0), ty = get_local_id(1);
    int n0 = get_group_id(0) * TS, m0 = get_group_id(1) * TS;
    size_t batch = get_global_id(2);
    global const float *A = CPTR(float, ab, ao) + batch * bsa;
    global const float *B = CPTR(float, bb, bo) + batch * bsb;
    global float *C = GPTR(float, cb, co) + batch * bsc;
    local float As[TK][TS], Bs[TK][TS];
    float acc[WPT][WPT];
    for (int r = 0; r < WPT; r++)
        for (int c = 0; c < WPT; c++) acc[r][c] = 0.0f;
    int lid = ty * RTS + tx;
    for (int k0 = 0; k0 < K; k0 += TK) {
        for (int l = lid; l < TS * TK; l += RTS * RTS) {
            int mm, kk;
            if (sak == 1) mm = l / TK, kk = l % TK; /* k contiguous in memory */
            else mm = l % TS, kk = l / TS;
            int gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = (gm < M && gk < K) ? A[(size_t)gm * sam + (size_t)gk * sak] : 0.0f;
            int nn, kb;
            if (sbn == 1) nn = l % TS, kb = l / TS;
            else nn = l / TK, kb = l % TK;
            int gn = n0 + nn, gkb = k0 + kb;
            Bs[kb][nn] = (gn < N && gkb < K) ? B[(size_t)gkb * sbk + (size_t)gn * sbn] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; kk++) {
            float bv[WPT];
            for (int c = 0; c < WPT; c++) bv[c] = Bs[kk][tx + c * RTS];
            for (int r = 0; r < WPT; r++) {
                float a = As[kk][ty + r * RTS];
                for (int c = 0; c < WPT; c++) acc[r][c] = fma(a, bv[c], acc[r][c]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int r = 0; r < WPT; r++) {
        int gm = m0 + ty + r * RTS;
        if (gm >= M) continue;
        for (int c = 0; c < WPT; c++) {
            int gn = n0 + tx + c * RTS;
            if (gn >= N) continue;
            size_t idx = (size_t)gm * ldc + gn;
            float v = alpha * acc[r][c];
            if (beta != 0.0f) v += beta * C[idx];
            C[idx] = v;
        }
    }
}
