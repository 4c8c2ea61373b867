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

/* Register-blocked kernels without local memory or barriers, for the two
 * layouts the ops produce; they suit devices where work-items are SIMD lanes
 * of a CPU core (PoCL) and are plain correct elsewhere. No work-group size
 * is required (local = NULL). VW is the vector width (8 or 16). */
#define VW 16
#if VW == 16
typedef float16 floatv;
#define VLOADV vload16
#define VSTOREV vstore16
#define HSUM(v) (HSUM8((v).lo) + HSUM8((v).hi))
#else
typedef float8 floatv;
#define VLOADV vload8
#define VSTOREV vstore8
#define HSUM(v) HSUM8(v)
#endif
#define HSUM8(v) ((((v).s0 + (v).s1) + ((v).s2 + (v).s3)) + (((v).s4 + (v).s5) + ((v).s6 + (v).s7)))

/* C = alpha * A * B^T: A[M, K] and B[N, K] both k-contiguous (linear, q.k^T).
 * Work-item (j, i) computes the 4x4 block rows 4i.., cols 4j.., as dot
 * products over k with VW-wide vectors. Global (ceil(N/4), ceil(M/4), batch). */
kernel __attribute__((vec_type_hint(floatv))) void kernel_gemm_nt_f32(global const float *ab, ulong ao, global const float *bb, ulong bo, global float *cb,
                               ulong co, int M, int N, int K, int lda, int ldb, int ldc, ulong bsa, ulong bsb,
                               ulong bsc, float alpha, float beta) {
    int j0 = get_global_id(0) * 4, i0 = get_global_id(1) * 4;
    size_t batch = get_global_id(2);
    if (i0 >= M || j0 >= N) return;
    global const float *A = CPTR(float, ab, ao) + batch * bsa;
    global const float *B = CPTR(float, bb, bo) + batch * bsb;
    global float *C = GPTR(float, cb, co) + batch * bsc;
    global const float *a[4], *b[4];
    for (int r = 0; r < 4; r++) {
        a[r] = A + (size_t)min(i0 + r, M - 1) * lda;
        b[r] = B + (size_t)min(j0 + r, N - 1) * ldb;
    }
    floatv acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = (floatv)(0.0f);
    int k = 0;
    for (; k + VW <= K; k += VW) {
        floatv av[4], bv[4];
        for (int r = 0; r < 4; r++) av[r] = VLOADV(0, a[r] + k), bv[r] = VLOADV(0, b[r] + k);
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++) acc[r][c] = fma(av[r], bv[c], acc[r][c]);
    }
    for (int r = 0; r < 4; r++) {
        int i = i0 + r;
        if (i >= M) break;
        for (int c = 0; c < 4; c++) {
            int jj = j0 + c;
            if (jj >= N) break;
            float s = HSUM(acc[r][c]);
            for (int kk = k; kk < K; kk++) s = fma(a[r][kk], b[c][kk], s);
            size_t idx = (size_t)i * ldc + jj;
            float out = alpha * s;
            if (beta != 0.0f) out += beta * C[idx];
            C[idx] = out;
        }
    }
}

/* C = alpha * op(A) * B: B[K, N] n-contiguous (conv as GEMM, attn.v), A read
 * as A(m, k) = a[m*sam + k*sak]. Work-item (j, i) computes rows 8i..8i+7 and
 * 8 columns 8j.. as one floatv per row. Global (ceil(N/8), ceil(M/8), batch). */
kernel __attribute__((vec_type_hint(floatv))) void kernel_gemm_nn_f32(global const float *ab, ulong ao, global const float *bb, ulong bo, global float *cb,
                               ulong co, int M, int N, int K, int sam, int sak, int ldb, int ldc, ulong bsa,
                               ulong bsb, ulong bsc, float alpha, float beta) {
    int j0 = get_global_id(0) * VW, i0 = get_global_id(1) * 8;
    size_t batch = get_global_id(2);
    if (i0 >= M || j0 >= N) return;
    global const float *A = CPTR(float, ab, ao) + batch * bsa;
    global const float *B = CPTR(float, bb, bo) + batch * bsb;
    global float *C = GPTR(float, cb, co) + batch * bsc;
    global const float *a[8];
    for (int r = 0; r < 8; r++) a[r] = A + (size_t)min(i0 + r, M - 1) * sam;
    floatv acc[8];
    for (int r = 0; r < 8; r++) acc[r] = (floatv)(0.0f);
    bool full = j0 + VW <= N;
    for (int k = 0; k < K; k++) {
        global const float *brow = B + (size_t)k * ldb + j0;
        floatv bv;
        if (full) bv = VLOADV(0, brow);
        else {
            float t[VW];
            for (int c = 0; c < VW; c++) t[c] = j0 + c < N ? brow[c] : 0.0f;
            bv = VLOADV(0, t);
        }
        size_t ko = (size_t)k * sak;
        for (int r = 0; r < 8; r++) acc[r] = fma((floatv)(a[r][ko]), bv, acc[r]);
    }
    for (int r = 0; r < 8; r++) {
        int i = i0 + r;
        if (i >= M) break;
        global float *crow = C + (size_t)i * ldc + j0;
        floatv v = alpha * acc[r];
        if (full) {
            if (beta != 0.0f) v += beta * VLOADV(0, crow);
            VSTOREV(v, 0, crow);
        } else {
            float t[VW];
            VSTOREV(v, 0, t);
            for (int c = 0; c < VW && j0 + c < N; c++) crow[c] = t[c] + (beta != 0.0f ? beta * crow[c] : 0.0f);
        }
    }
}
