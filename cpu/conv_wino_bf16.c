/* conv_wino_bf16.c - Winograd F(2x2,3x3) convolution with bf16 GEMMs (see
 * conv_wino.h for the contract).
 *
 * oneDNN has no bf16 Winograd, and its f32 one keeps 4x f32 weight copies;
 * this one keeps 16/9 of the weight in bf16 (1.8x the bf16 direct copy) and
 * does 2.25x fewer multiplications than a direct convolution. With Lavin's
 * matrices, for each 2x2 output tile of a 4x4 input patch d (pad 1) and
 * each 3x3 filter g:
 *     U = G g G^T,  V = B^T d B  (4x4 each, 16 "positions" e)
 *     M[e] = sum_ci U[e][co][ci] V[e][ci][tile]   (16 GEMMs)
 *     y = A^T M A  (2x2)
 *   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  A^T = [1 1 1 0; 0 1 -1 -1]
 * V is rounded to bf16 (as the direct bf16 conv rounds its input), U is the
 * bf16 of the exact f32 transform, M and y are f32.
 *
 * Layout (the GEMMs are transposed so that the 16 lanes of a vector are 16
 * tiles along a tile row, which the input and output transforms produce and
 * consume with contiguous loads and stores on our NCHW activations):
 *   U   [e][co rounded up to 6][ci/2]  bf16 pairs (ci, ci+1), per weight
 *   VT  [e][ci/2][tile]                bf16 pairs (ci, ci+1), per chunk
 *   M   [e][co rounded up to 6][tile]  f32, per chunk
 * A chunk is `rows` tile rows (tile row = one image row pair of one image)
 * of TW16 = ceil(W/2) rounded up to 16 tiles. The micro-kernel computes 6
 * output channels x 64 tiles (24 accumulators) over ci/2 with vdpbf16ps,
 * U broadcast, VT loaded. Chunks go to OpenMP threads; each thread has its
 * own VT and M.
 */
#include "conv_wino.h"

#include <omp.h>
#include <string.h>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>

#define WR 6 /* output channels per micro-tile */
#define WINLINE static inline __attribute__((always_inline))

static int64_t up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

int sd_wino_bf16_available(void) { return 1; }

int64_t sd_wino_bf16_weight_words(int64_t Co, int64_t Ci) { return 16 * up(Co, WR) * ((Ci + 1) / 2); }

static inline uint32_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* U = G g G^T of one 3x3 filter. */
static void wino_filter(const float *g, float u[16]) {
    float t[4][3];
    for (int c = 0; c < 3; c++) {
        const float a = g[c], b = g[3 + c], d = g[6 + c];
        t[0][c] = a, t[1][c] = 0.5f * (a + b + d), t[2][c] = 0.5f * (a - b + d), t[3][c] = d;
    }
    for (int r = 0; r < 4; r++) {
        const float a = t[r][0], b = t[r][1], d = t[r][2];
        u[4 * r + 0] = a, u[4 * r + 1] = 0.5f * (a + b + d), u[4 * r + 2] = 0.5f * (a - b + d), u[4 * r + 3] = d;
    }
}

void sd_wino_bf16_weights(const float *w, int64_t Co, int64_t Ci, uint32_t *u) {
    const int64_t Co6 = up(Co, WR), Ci2 = (Ci + 1) / 2;
    memset(u, 0, (size_t)sd_wino_bf16_weight_words(Co, Ci) * sizeof *u);
    #pragma omp parallel for schedule(static)
    for (int64_t co = 0; co < Co; co++)
        for (int64_t ci = 0; ci < Ci; ci++) {
            float f[16];
            wino_filter(w + (co * Ci + ci) * 9, f);
            for (int e = 0; e < 16; e++)
                u[((int64_t)e * Co6 + co) * Ci2 + ci / 2] |= bf16_bits(f[e]) << (ci % 2 ? 16 : 0);
        }
}

/* ---- plan ---- */

static int64_t tw16(const struct sd_wino_shape *s) { return up((s->W + 1) / 2, 16); }

int64_t sd_wino_bf16_chunk_rows(const struct sd_wino_shape *s, int nthreads) {
    /* About 512 KiB of VT per position (one e's GEMM operand stays in L2),
     * 64..512 tiles, at least one tile row; then as many chunks as fit
     * that, rounded up to a multiple of the threads (even shares). */
    const int64_t Ci2 = (s->Ci + 1) / 2, tw = tw16(s), grows = s->N * ((s->H + 1) / 2);
    int64_t T = 131072 / Ci2;
    T = T < 64 ? 64 : T > 512 ? 512 : T;
    int64_t rows = T / tw < 1 ? 1 : T / tw;
    const int64_t nth = nthreads < 1 ? 1 : nthreads;
    const int64_t nchunks = up((grows + rows - 1) / rows, nth);
    rows = (grows + nchunks - 1) / nchunks;
    return rows < 1 ? 1 : rows;
}

/* Per-thread scratch, in floats/words, each part 64-byte aligned. */
struct wino_ws {
    int64_t vt, m, rowbuf, total;
};

static struct wino_ws wino_layout(const struct sd_wino_shape *s, int64_t rows) {
    const int64_t T = rows * tw16(s), Ci2 = (s->Ci + 1) / 2, Co6 = up(s->Co, WR);
    struct wino_ws w;
    w.vt = 0;
    w.m = w.vt + 16 * Ci2 * T;
    w.rowbuf = w.m + 16 * Co6 * T;
    w.total = w.rowbuf + up(4 * (2 * tw16(s) + 48), 16);
    return w;
}

size_t sd_wino_bf16_scratch(const struct sd_wino_shape *s, int64_t rows) {
    return (size_t)wino_layout(s, rows).total * sizeof(float);
}

/* ---- input transform ---- */

/* V = B^T d B for 16 tiles of one channel: rb holds the 4 input rows of the
 * tile row, each starting at input column -1 (zero padded), 16 tiles from
 * tile tx0 on. */
static inline void wino_input16(const float *rb, int64_t ld, int64_t tx0, __m512 v[16]) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 d[4][4];
    for (int r = 0; r < 4; r++) {
        const float *p = rb + r * ld + 2 * tx0;
        const __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
        const __m512 a2 = _mm512_loadu_ps(p + 2), b2 = _mm512_loadu_ps(p + 18);
        d[r][0] = _mm512_permutex2var_ps(a, even, b);
        d[r][1] = _mm512_permutex2var_ps(a, odd, b);
        d[r][2] = _mm512_permutex2var_ps(a2, even, b2);
        d[r][3] = _mm512_permutex2var_ps(a2, odd, b2);
    }
    __m512 t[4][4];
    for (int c = 0; c < 4; c++) {
        t[0][c] = _mm512_sub_ps(d[0][c], d[2][c]);
        t[1][c] = _mm512_add_ps(d[1][c], d[2][c]);
        t[2][c] = _mm512_sub_ps(d[2][c], d[1][c]);
        t[3][c] = _mm512_sub_ps(d[1][c], d[3][c]);
    }
    for (int r = 0; r < 4; r++) {
        v[4 * r + 0] = _mm512_sub_ps(t[r][0], t[r][2]);
        v[4 * r + 1] = _mm512_add_ps(t[r][1], t[r][2]);
        v[4 * r + 2] = _mm512_sub_ps(t[r][2], t[r][1]);
        v[4 * r + 3] = _mm512_sub_ps(t[r][1], t[r][3]);
    }
}

/* Copies the 4 input rows 2ty-1 .. 2ty+2 of channel xc (H x W) into rb,
 * each as columns -1 .. 2*tw+46 with zeros outside the image. */
static void wino_rows(const float *xc, int64_t H, int64_t W, int64_t ty, int64_t ld, float *rb) {
    for (int r = 0; r < 4; r++) {
        float *dst = rb + r * ld;
        const int64_t iy = 2 * ty - 1 + r;
        if (iy < 0 || iy >= H) {
            memset(dst, 0, (size_t)ld * sizeof *dst);
            continue;
        }
        dst[0] = 0.0f;
        memcpy(dst + 1, xc + iy * W, (size_t)W * sizeof *dst);
        memset(dst + 1 + W, 0, (size_t)(ld - 1 - W) * sizeof *dst);
    }
}

/* VT of a chunk (row stride T tiles): tile rows g0 .. g0+rows-1 (global:
 * n*TH + ty). Channel ci's 16 bf16 go to the low halves of the pairs, then
 * ci+1's are interleaved in (zeros past an odd Ci). */
static void wino_input(const struct sd_wino_shape *s, const float *x, int64_t g0, int64_t rows, int64_t T,
                       uint32_t *vt, float *rb) {
    const int64_t TH = (s->H + 1) / 2, tw = tw16(s), Ci2 = (s->Ci + 1) / 2, ld = 2 * tw + 48;
    const __m512i il = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                        21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t lr = 0; lr < rows; lr++) {
        const int64_t g = g0 + lr, n = g / TH, ty = g % TH;
        for (int64_t ci = 0; ci < 2 * Ci2; ci++) {
            const int half = (int)(ci % 2), have = ci < s->Ci;
            if (have) wino_rows(x + (n * s->Ci + ci) * s->H * s->W, s->H, s->W, ty, ld, rb);
            for (int64_t tx0 = 0; tx0 < tw; tx0 += 16) {
                __m512 v[16];
                if (have) wino_input16(rb, ld, tx0, v);
                else
                    for (int e = 0; e < 16; e++) v[e] = _mm512_setzero_ps();
                for (int e = 0; e < 16; e++) {
                    uint32_t *p = vt + (e * Ci2 + ci / 2) * T + lr * tw + tx0;
                    const __m256i h = (__m256i)_mm512_cvtneps_pbh(v[e]);
                    if (!half) {
                        _mm256_storeu_si256((__m256i *)p, h);
                        continue;
                    }
                    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)), h, 1);
                    _mm512_storeu_si512(p, _mm512_permutexvar_epi16(il, both));
                }
            }
        }
    }
}

/* ---- GEMM ---- */

/* M[r][16v + i] = sum_k U[r][k] . VT[k][16v + i], r < WR, v < NJ, k < K. */
WINLINE void wino_tile(const uint32_t *u, int64_t K, const uint32_t *vt, int64_t T, float *m, const int NJ) {
    __m512 acc[WR][4];
    for (int r = 0; r < WR; r++)
        for (int v = 0; v < NJ; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512bh b[4];
        for (int v = 0; v < NJ; v++) b[v] = (__m512bh)_mm512_loadu_si512(vt + k * T + 16 * v);
        for (int r = 0; r < WR; r++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)u[r * K + k]);
            for (int v = 0; v < NJ; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
        }
    }
    for (int r = 0; r < WR; r++)
        for (int v = 0; v < NJ; v++) _mm512_storeu_ps(m + r * T + 16 * v, acc[r][v]);
}

/* M = U . VT per position e over the first ntile tiles (row stride T). */
static void wino_gemm(const struct sd_wino_shape *s, const uint32_t *u, const uint32_t *vt, int64_t T, int64_t ntile,
                      float *m) {
    const int64_t Co6 = up(s->Co, WR), Ci2 = (s->Ci + 1) / 2, nv = ntile / 16;
    for (int e = 0; e < 16; e++) {
        const uint32_t *ue = u + (int64_t)e * Co6 * Ci2, *ve = vt + (int64_t)e * Ci2 * T;
        float *me = m + (int64_t)e * Co6 * T;
        for (int64_t co = 0; co < Co6; co += WR)
            for (int64_t v0 = 0; v0 < nv; v0 += 4) {
                const uint32_t *ur = ue + co * Ci2, *vv = ve + 16 * v0;
                float *mm = me + co * T + 16 * v0;
                switch (nv - v0 < 4 ? nv - v0 : 4) {
                case 1: wino_tile(ur, Ci2, vv, T, mm, 1); break;
                case 2: wino_tile(ur, Ci2, vv, T, mm, 2); break;
                case 3: wino_tile(ur, Ci2, vv, T, mm, 3); break;
                default: wino_tile(ur, Ci2, vv, T, mm, 4); break;
                }
            }
    }
}

/* ---- output transform ---- */

/* y (+ bias) of the chunk's tile rows from M (row stride T). */
static void wino_output(const struct sd_wino_shape *s, const float *m, int64_t g0, int64_t rows, int64_t T,
                        const float *b, float *y) {
    const int64_t TH = (s->H + 1) / 2, tw = tw16(s), Co6 = up(s->Co, WR), H = s->H, W = s->W;
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));
    for (int64_t co = 0; co < s->Co; co++) {
        const __m512 bias = _mm512_set1_ps(b ? b[co] : 0.0f);
        for (int64_t lr = 0; lr < rows; lr++) {
            const int64_t g = g0 + lr, n = g / TH, ty = g % TH;
            float *yc = y + (n * s->Co + co) * H * W;
            for (int64_t tx0 = 0; tx0 < tw; tx0 += 16) {
                const float *mp = m + co * T + lr * tw + tx0;
                __m512 q[16];
                for (int e = 0; e < 16; e++) q[e] = _mm512_loadu_ps(mp + (int64_t)e * Co6 * T);
                __m512 s0[4], s1[4];
                for (int c = 0; c < 4; c++) {
                    s0[c] = _mm512_add_ps(_mm512_add_ps(q[c], q[4 + c]), q[8 + c]);
                    s1[c] = _mm512_sub_ps(_mm512_sub_ps(q[4 + c], q[8 + c]), q[12 + c]);
                }
                __m512 yr[2][2];
                for (int r = 0; r < 2; r++) {
                    const __m512 *t = r ? s1 : s0;
                    yr[r][0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t[0], t[1]), t[2]), bias);
                    yr[r][1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t[1], t[2]), t[3]), bias);
                }
                const int64_t x0 = 2 * tx0, nx = W - x0 < 32 ? W - x0 : 32;
                if (nx <= 0) break;
                const __mmask16 k0 = nx >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nx) - 1);
                const __mmask16 k1 = nx >= 32 ? (__mmask16)0xffff : nx > 16 ? (__mmask16)((1u << (nx - 16)) - 1) : 0;
                for (int r = 0; r < 2; r++) {
                    const int64_t oy = 2 * ty + r;
                    if (oy >= H) break;
                    float *yrow = yc + oy * W + x0;
                    _mm512_mask_storeu_ps(yrow, k0, _mm512_permutex2var_ps(yr[r][0], lo_idx, yr[r][1]));
                    if (k1) _mm512_mask_storeu_ps(yrow + 16, k1, _mm512_permutex2var_ps(yr[r][0], hi_idx, yr[r][1]));
                }
            }
        }
    }
}

void sd_wino_bf16_run(const struct sd_wino_shape *s, int64_t rows, const float *x, const uint32_t *u, const float *b,
                      float *y, void *scratch, int nthreads) {
    const struct wino_ws L = wino_layout(s, rows);
    const int64_t grows = s->N * ((s->H + 1) / 2), nchunks = (grows + rows - 1) / rows, tw = tw16(s);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t c = 0; c < nchunks; c++) {
        float *ws = (float *)scratch + L.total * omp_get_thread_num();
        uint32_t *vt = (uint32_t *)ws + L.vt;
        float *m = ws + L.m, *rb = ws + L.rowbuf;
        const int64_t g0 = c * rows, nr = grows - g0 < rows ? grows - g0 : rows;
        const int64_t T = rows * tw; /* the layout's stride, also for a short last chunk */
        wino_input(s, x, g0, nr, T, vt, rb);
        wino_gemm(s, u, vt, T, nr * tw, m);
        wino_output(s, m, g0, nr, T, b, y);
    }
}

#else /* no AVX-512 BF16 in this build */

int sd_wino_bf16_available(void) { return 0; }
int64_t sd_wino_bf16_weight_words(int64_t Co, int64_t Ci) { return (void)Co, (void)Ci, 0; }
void sd_wino_bf16_weights(const float *w, int64_t Co, int64_t Ci, uint32_t *u) { (void)w, (void)Co, (void)Ci, (void)u; }
int64_t sd_wino_bf16_chunk_rows(const struct sd_wino_shape *s, int nthreads) { return (void)s, (void)nthreads, 1; }
size_t sd_wino_bf16_scratch(const struct sd_wino_shape *s, int64_t rows) { return (void)s, (void)rows, 0; }
void sd_wino_bf16_run(const struct sd_wino_shape *s, int64_t rows, const float *x, const uint32_t *u, const float *b,
                      float *y, void *scratch, int nthreads) {
    (void)s, (void)rows, (void)x, (void)u, (void)b, (void)y, (void)scratch, (void)nthreads;
}

#endif
