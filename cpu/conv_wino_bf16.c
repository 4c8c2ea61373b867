/* conv_wino_bf16.c - Winograd F(2x2,3x3) and F(4x4,3x3) convolutions with
 * bf16 GEMMs (see conv_wino.h for the contract).
 *
 * oneDNN has no bf16 Winograd, and its f32 one keeps 4x f32 weight copies.
 * For each m x m output tile (m = 2 or 4) of an n x n input patch d
 * (n = m + 2, pad 1) and each 3x3 filter g:
 *     U = G g G^T,  V = B^T d B  (n x n each, n^2 "positions" e)
 *     M[e] = sum_ci U[e][co][ci] V[e][ci][tile]   (n^2 GEMMs)
 *     y = A^T M A  (m x m)
 * F(2x2,3x3), Lavin's matrices (points 0, 1, -1): 16 products per 4
 * outputs (2.25x fewer than direct), weights 16/9 of the bf16 copy:
 *   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4x4,3x3), points 0, 1, -1, 1/2, -2: 36 products per 16 outputs (4x
 * fewer), weights 36/9. Of the point sets tried in a bf16 simulation
 * (SiLU-like input, 128 channels) these have the smallest error: rms 6.4x
 * the direct bf16 conv's (F(2x2): 1.8x; points 0, +-1, +-2: 9x):
 *   G = [1 0 0; 1/3 1/3 1/3; -1/3 1/3 -1/3; -16/15 -8/15 -4/15;
 *        1/15 -2/15 4/15; 0 0 1]
 *   B^T = [1 -3/2 -2 3/2 1 0; 0 -1 1/2 5/2 1 0; 0 1 -5/2 1/2 1 0;
 *          0 -2 -1 2 1 0; 0 1/2 -1 -1/2 1 0; 0 1 -3/2 -2 3/2 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1]
 * V is rounded to bf16 (as the direct bf16 conv rounds its input), U is the
 * bf16 of the transform computed in f32, M and y are f32.
 *
 * Layout (the GEMMs are transposed so that the 16 lanes of a vector are 16
 * tiles along a tile row, which the input and output transforms produce and
 * consume with contiguous loads and stores on our NCHW activations):
 *   U   [e][co rounded up to 6][ci/2]  bf16 pairs (ci, ci+1), per weight
 *   VT  [e][ci/2][tile]                bf16 pairs (ci, ci+1), per chunk
 *   M   [e][co rounded up to 6][tile]  f32, per chunk
 * A chunk is `rows` tile rows (tile row = m image rows of one image) of
 * ceil(W/m) tiles rounded up (struct wino_geo). The micro-kernel computes 6
 * output channels x 64 tiles (24 accumulators) over ci/2 with vdpbf16ps,
 * U broadcast, VT loaded. Chunks go to OpenMP threads; each thread has its
 * own VT and M.
 */
#include "conv_wino.h"
#include "cpu_math.h"

#include <omp.h>
#include <string.h>

#if SD_HAVE_AVX512_BF16
#include "gemm_bf16.h"

#define WR SD_GEMM_R /* output channels per micro-tile */

static int64_t up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

int64_t sd_wino_bf16_weight_words(int64_t Co, int64_t Ci, int m) {
    return (m + 2) * (m + 2) * up(Co, WR) * ((Ci + 1) / 2);
}

/* The rows of G (n x 3) for F(m x m, 3x3). */
static const float G2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const float G4[6][3] = {{1, 0, 0},
                               {1.0f / 3, 1.0f / 3, 1.0f / 3},
                               {-1.0f / 3, 1.0f / 3, -1.0f / 3},
                               {-16.0f / 15, -8.0f / 15, -4.0f / 15},
                               {1.0f / 15, -2.0f / 15, 4.0f / 15},
                               {0, 0, 1}};

/* U = G g G^T of one 3x3 filter (n x n, row-major), in f32: its error
 * (~1e-7 relative) is far below the bf16 rounding U then gets. */
static void wino_filter(const float *g, int m, float *u) {
    const int n = m + 2;
    const float(*G)[3] = m == 4 ? G4 : G2;
    float t[6][3];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) t[i][c] = G[i][0] * g[c] + G[i][1] * g[3 + c] + G[i][2] * g[6 + c];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) u[n * i + j] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
}

void sd_wino_bf16_weights(const float *w, int64_t Co, int64_t Ci, int m, uint32_t *u) {
    const int64_t Co6 = up(Co, WR), Ci2 = (Ci + 1) / 2;
    const int E = (m + 2) * (m + 2);
    #pragma omp parallel for schedule(static)
    for (int64_t co = 0; co < Co6; co++)
        for (int64_t c2 = 0; c2 < Ci2; c2++) { /* E rows u[e][co][.], each written in order */
            float f0[36] = {0}, f1[36] = {0};
            if (co < Co) {
                wino_filter(w + (co * Ci + 2 * c2) * 9, m, f0);
                if (2 * c2 + 1 < Ci) wino_filter(w + (co * Ci + 2 * c2 + 1) * 9, m, f1);
            }
            for (int e = 0; e < E; e++) u[((int64_t)e * Co6 + co) * Ci2 + c2] = sd_bf16_bits(f0[e]) | sd_bf16_bits(f1[e]) << 16;
        }
}

/* ---- plan ---- */

/* Lanes: tile row g (= n*TH + ty) of a chunk starting at g0 owns lanes
 * [(g-g0)*twp, (g-g0+1)*twp) of the chunk's T. twp is TW = ceil(W/m)
 * rounded up to 16 on wide planes (a row spans whole vectors), or to a
 * power of two <= 8 on narrow ones, where one vector holds rpv = 16/twp
 * tile rows (16x16 planes in F(2x2), 32x32 in F(4x4): no half-empty
 * vectors). m is the output tile, n = m + 2 the input patch, E = n^2. */
struct wino_geo {
    int64_t TH, TW, twp, rpv;
    int m, n, E;
};

static struct wino_geo wino_geo(const struct sd_wino_shape *s) {
    const int m = s->m == 4 ? 4 : 2;
    struct wino_geo g = {(s->H + m - 1) / m, (s->W + m - 1) / m, 0, 1, m, m + 2, (m + 2) * (m + 2)};
    if (g.TW > 8) g.twp = up(g.TW, 16);
    else {
        g.twp = 1;
        while (g.twp < g.TW) g.twp *= 2;
        g.rpv = 16 / g.twp;
    }
    return g;
}

int64_t sd_wino_bf16_chunk_rows(const struct sd_wino_shape *s, int nthreads) {
    /* About 512 KiB of VT per position (one e's GEMM operand stays in L2),
     * 64..512 tiles, whole vectors; then as many chunks as fit that,
     * rounded up to a multiple of the threads (even shares). */
    const struct wino_geo G = wino_geo(s);
    const int64_t Ci2 = (s->Ci + 1) / 2, grows = s->N * G.TH;
    int64_t T = 131072 / Ci2;
    T = T < 64 ? 64 : T > 512 ? 512 : T;
    int64_t rows = T / G.twp / G.rpv * G.rpv;
    if (rows < G.rpv) rows = G.rpv;
    const int64_t nth = nthreads < 1 ? 1 : nthreads;
    const int64_t nchunks = up((grows + rows - 1) / rows, nth);
    rows = up((grows + nchunks - 1) / nchunks, G.rpv);
    return rows;
}

/* Per-thread scratch, in floats/words, each part 64-byte aligned. */
struct wino_ws {
    int64_t vt, m, rowbuf, total;
};

/* Row stride of the input-row buffer: m columns per tile, vector loads up
 * to 16 + 4 columns past a row's last tile. */
static int64_t rb_ld(const struct wino_geo *G) { return G->m * (G->twp > 16 ? G->twp : 16) + 48; }

static struct wino_ws wino_layout(const struct sd_wino_shape *s, int64_t rows) {
    const struct wino_geo G = wino_geo(s);
    const int64_t T = rows * G.twp, Ci2 = (s->Ci + 1) / 2, Co6 = up(s->Co, WR);
    struct wino_ws w;
    w.vt = 0;
    w.m = w.vt + G.E * Ci2 * T;
    w.rowbuf = w.m + G.E * Co6 * T;
    w.total = w.rowbuf + up(G.rpv * G.n * rb_ld(&G), 16);
    return w;
}

size_t sd_wino_bf16_scratch(const struct sd_wino_shape *s, int64_t rows) {
    return (size_t)wino_layout(s, rows).total * sizeof(float);
}

/* ---- input transform ---- */

/* V = B^T d B for the 16 tiles of one channel in a vector: lane i belongs
 * to the tile row whose 4 input rows are in rb + (i / twp)*4*ld (each row
 * starting at input column -1, zero padded), tile tx0 + i % twp. */
static inline void wino_input16(const float *rb, int64_t ld, int64_t tx0, const struct wino_geo *G, __m512 v[16]) {
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i tx = G->rpv > 1 ? _mm512_and_si512(lane, _mm512_set1_epi32((int)G->twp - 1)) : lane;
    const __m512i even = _mm512_add_epi32(tx, tx), odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 d[4][4];
    for (int r = 0; r < 4; r++) { /* tile row 0 of the vector (all lanes), then blend in the others */
        const float *p = rb + r * ld + 2 * tx0;
        const __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
        const __m512 a2 = _mm512_loadu_ps(p + 2), b2 = _mm512_loadu_ps(p + 18);
        d[r][0] = _mm512_permutex2var_ps(a, even, b);
        d[r][1] = _mm512_permutex2var_ps(a, odd, b);
        d[r][2] = _mm512_permutex2var_ps(a2, even, b2);
        d[r][3] = _mm512_permutex2var_ps(a2, odd, b2);
    }
    for (int64_t sub = 1; sub < G->rpv; sub++) {
        const __mmask16 k = (__mmask16)(((1u << G->twp) - 1) << (sub * G->twp));
        for (int r = 0; r < 4; r++) {
            const float *p = rb + (sub * 4 + r) * ld;
            const __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
            const __m512 a2 = _mm512_loadu_ps(p + 2), b2 = _mm512_loadu_ps(p + 18);
            d[r][0] = _mm512_mask_blend_ps(k, d[r][0], _mm512_permutex2var_ps(a, even, b));
            d[r][1] = _mm512_mask_blend_ps(k, d[r][1], _mm512_permutex2var_ps(a, odd, b));
            d[r][2] = _mm512_mask_blend_ps(k, d[r][2], _mm512_permutex2var_ps(a2, even, b2));
            d[r][3] = _mm512_mask_blend_ps(k, d[r][3], _mm512_permutex2var_ps(a2, odd, b2));
        }
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

#define WB_INLINE static inline __attribute__((always_inline))
#define WB_S(x) _mm512_set1_ps(x)

/* v = B^T d for F(4x4,3x3)'s B^T (the header comment), on 16 lanes. */
WB_INLINE void wino_bt6(const __m512 d[6], __m512 v[6]) {
    const __m512 s13 = _mm512_sub_ps(d[3], d[1]), s42 = _mm512_sub_ps(d[4], d[2]);
    v[0] = _mm512_fmadd_ps(WB_S(1.5f), s13, _mm512_fnmadd_ps(WB_S(2.0f), d[2], _mm512_add_ps(d[0], d[4])));
    v[1] = _mm512_fmadd_ps(WB_S(2.5f), d[3], _mm512_fmadd_ps(WB_S(0.5f), d[2], _mm512_sub_ps(d[4], d[1])));
    v[2] = _mm512_fmadd_ps(WB_S(0.5f), d[3], _mm512_fnmadd_ps(WB_S(2.5f), d[2], _mm512_add_ps(d[4], d[1])));
    v[3] = _mm512_fmadd_ps(WB_S(2.0f), s13, s42);
    v[4] = _mm512_fnmadd_ps(WB_S(0.5f), s13, s42);
    v[5] = _mm512_fmadd_ps(WB_S(1.5f), s42, _mm512_fnmadd_ps(WB_S(2.0f), d[3], _mm512_add_ps(d[5], d[1])));
}

/* y = A^T q for F(4x4,3x3)'s A^T. */
WB_INLINE void wino_at6(const __m512 q[6], __m512 y[4]) {
    const __m512 p = _mm512_add_ps(q[1], q[2]), m = _mm512_sub_ps(q[1], q[2]);
    y[0] = _mm512_add_ps(_mm512_add_ps(q[0], p), _mm512_add_ps(q[3], q[4]));
    y[1] = _mm512_fnmadd_ps(WB_S(2.0f), q[4], _mm512_fmadd_ps(WB_S(0.5f), q[3], m));
    y[2] = _mm512_fmadd_ps(WB_S(4.0f), q[4], _mm512_fmadd_ps(WB_S(0.25f), q[3], p));
    y[3] = _mm512_add_ps(_mm512_fnmadd_ps(WB_S(8.0f), q[4], _mm512_fmadd_ps(WB_S(0.125f), q[3], m)), q[5]);
}

/* The F(4x4,3x3) V = B^T d B of 16 tiles of one channel (v[6i + j]).
 * Lanes come in groups of gl tiles, each group from its own 4*gl + 2
 * columns: on wide planes the two halves of a 64-column span of one tile
 * row (tx0 = the span's first tile), on narrow ones (twp <= 8) the rpv
 * tile rows of the vector, rows rb + sub*6*ld. Column 4t + c of a group
 * comes from the pair of vectors at the group's start (c < 4) or 4 columns
 * on (c = 4, 5). */
static inline void wino_input16_f4(const float *rb, int64_t ld, int64_t tx0, const struct wino_geo *G, __m512 v[36]) {
    const int64_t gl = G->rpv > 1 ? G->twp : 8, ng = 16 / gl;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i t4 = _mm512_slli_epi32(_mm512_and_si512(lane, _mm512_set1_epi32((int)gl - 1)), 2);
    __m512i idx[4];
    for (int c = 0; c < 4; c++) idx[c] = _mm512_add_epi32(t4, _mm512_set1_epi32(c));
    __m512 t[6][6];
    for (int r = 0; r < 6; r++) {
        __m512 d[6] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t g = 0; g < ng; g++) {
            const float *p = rb + r * ld + 4 * tx0 + (G->rpv > 1 ? g * 6 * ld : 32 * g);
            const __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
            const __m512 a4 = _mm512_loadu_ps(p + 4), b4 = _mm512_loadu_ps(p + 20);
            __m512 dg[6];
            for (int c = 0; c < 4; c++) dg[c] = _mm512_permutex2var_ps(a, idx[c], b);
            dg[4] = _mm512_permutex2var_ps(a4, idx[0], b4);
            dg[5] = _mm512_permutex2var_ps(a4, idx[1], b4);
            const __mmask16 k = (__mmask16)(((1u << gl) - 1) << (g * gl));
            for (int c = 0; c < 6; c++) d[c] = g ? _mm512_mask_blend_ps(k, d[c], dg[c]) : dg[c];
        }
        wino_bt6(d, t[r]); /* along the row: t[r][j] */
    }
    for (int j = 0; j < 6; j++) {
        const __m512 col[6] = {t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]};
        __m512 o[6];
        wino_bt6(col, o);
        for (int i = 0; i < 6; i++) v[6 * i + j] = o[i];
    }
}

/* Copies the n input rows m*ty-1 .. m*ty+m of channel xc (H x W) into rb,
 * each as columns -1 .. ld-2 with zeros outside the image. */
static void wino_rows(const float *xc, int64_t H, int64_t W, int64_t ty, int m, int64_t ld, float *rb) {
    for (int r = 0; r < m + 2; r++) {
        float *dst = rb + r * ld;
        const int64_t iy = m * ty - 1 + r;
        if (iy < 0 || iy >= H) {
            memset(dst, 0, (size_t)ld * sizeof *dst);
            continue;
        }
        dst[0] = 0.0f;
        memcpy(dst + 1, xc + iy * W, (size_t)W * sizeof *dst);
        memset(dst + 1 + W, 0, (size_t)(ld - 1 - W) * sizeof *dst);
    }
}

/* VT of a chunk (row stride T lanes): tile rows g0 .. g0+rows-1 (global:
 * n*TH + ty), in vectors of 16 lanes (see struct wino_geo). Channel ci's
 * 16 bf16 go to the low halves of the pairs, then ci+1's are interleaved
 * in (zeros past an odd Ci; tile rows past the last give zero lanes). */
static void wino_input(const struct sd_wino_shape *s, const float *x, int64_t g0, int64_t rows, int64_t T,
                       uint32_t *vt, float *rb) {
    const struct wino_geo G = wino_geo(s);
    const int64_t Ci2 = (s->Ci + 1) / 2, ld = rb_ld(&G), grows = s->N * G.TH, nl = G.n * ld;
    for (int64_t lr = 0; lr < rows; lr += G.rpv) {
        for (int64_t ci = 0; ci < 2 * Ci2; ci++) {
            const int half = (int)(ci % 2), have = ci < s->Ci;
            for (int64_t sub = 0; have && sub < G.rpv; sub++) {
                const int64_t g = g0 + lr + sub;
                if (lr + sub < rows && g < grows)
                    wino_rows(x + ((g / G.TH) * s->Ci + ci) * s->H * s->W, s->H, s->W, g % G.TH, G.m, ld,
                              rb + sub * nl);
                else
                    memset(rb + sub * nl, 0, (size_t)nl * sizeof *rb);
            }
            const int64_t span = G.rpv > 1 ? 16 : G.twp; /* lanes of this step */
            for (int64_t tx0 = 0; tx0 < span; tx0 += 16) {
                __m512 v[36];
                if (!have)
                    for (int e = 0; e < G.E; e++) v[e] = _mm512_setzero_ps();
                else if (G.m == 4)
                    wino_input16_f4(rb, ld, G.rpv > 1 ? 0 : tx0, &G, v);
                else
                    wino_input16(rb, ld, G.rpv > 1 ? 0 : tx0, &G, v);
                for (int e = 0; e < G.E; e++) {
                    uint32_t *p = vt + (e * Ci2 + ci / 2) * T + lr * G.twp + tx0;
                    const __m256i h = (__m256i)_mm512_cvtneps_pbh(v[e]);
                    if (!half) {
                        _mm256_storeu_si256((__m256i *)p, h);
                        continue;
                    }
                    _mm512_storeu_si512(p, sd_bf16_interleave(_mm256_loadu_si256((const __m256i *)p), h));
                }
            }
        }
    }
}

/* ---- GEMM ---- */

/* M = U . VT per position e over the first ntile tiles (row stride T). */
static void wino_gemm(const struct sd_wino_shape *s, const uint32_t *u, const uint32_t *vt, int64_t T, int64_t ntile,
                      float *m) {
    const int64_t Co6 = up(s->Co, WR), Ci2 = (s->Ci + 1) / 2, nv = ntile / 16;
    const int E = wino_geo(s).E;
    for (int e = 0; e < E; e++) {
        const uint32_t *ue = u + (int64_t)e * Co6 * Ci2, *ve = vt + (int64_t)e * Ci2 * T;
        float *me = m + (int64_t)e * Co6 * T;
        for (int64_t co = 0; co < Co6; co += WR) sd_gemm_bf16_rows(ue + co * Ci2, Ci2, Ci2, ve, T, me + co * T, T, nv);
    }
}

/* ---- output transform ---- */

/* The low (hi = 0) or high 8 lanes of a and b interleaved: a[i], b[i], ... */
static inline __m512 ilv(__m512 a, __m512 b, int hi) {
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutex2var_ps(a, hi ? _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8)) : lo_idx, b);
}

/* F(2x2,3x3): out[r][0..32) = output row r of the 16 tiles of q[16], x
 * interleaved. */
static inline void wino_out16(const __m512 q[16], __m512 bias, float out[4][64]) {
    __m512 s0[4], s1[4];
    for (int c = 0; c < 4; c++) {
        s0[c] = _mm512_add_ps(_mm512_add_ps(q[c], q[4 + c]), q[8 + c]);
        s1[c] = _mm512_sub_ps(_mm512_sub_ps(q[4 + c], q[8 + c]), q[12 + c]);
    }
    for (int r = 0; r < 2; r++) {
        const __m512 *t = r ? s1 : s0;
        const __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t[0], t[1]), t[2]), bias);
        const __m512 y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t[1], t[2]), t[3]), bias);
        _mm512_store_ps(out[r], ilv(y0, y1, 0));
        _mm512_store_ps(out[r] + 16, ilv(y0, y1, 1));
    }
}

/* F(4x4,3x3): out[r][0..64) = output row r of the 16 tiles of q[36]: the
 * 4 columns of each tile interleaved in two rounds of pairs. */
static inline void wino_out16_f4(const __m512 q[36], __m512 bias, float out[4][64]) {
    __m512 s[4][6];
    for (int j = 0; j < 6; j++) {
        const __m512 col[6] = {q[j], q[6 + j], q[12 + j], q[18 + j], q[24 + j], q[30 + j]};
        __m512 y[4];
        wino_at6(col, y);
        for (int r = 0; r < 4; r++) s[r][j] = y[r];
    }
    for (int r = 0; r < 4; r++) {
        __m512 y[4];
        wino_at6(s[r], y);
        for (int c = 0; c < 4; c++) y[c] = _mm512_add_ps(y[c], bias);
        /* (y0, y2) and (y1, y3) interleaved, then those two: y0 y1 y2 y3 per tile */
        const __m512 p0 = ilv(y[0], y[2], 0), p1 = ilv(y[0], y[2], 1), q0 = ilv(y[1], y[3], 0), q1 = ilv(y[1], y[3], 1);
        _mm512_store_ps(out[r], ilv(p0, q0, 0));
        _mm512_store_ps(out[r] + 16, ilv(p0, q0, 1));
        _mm512_store_ps(out[r] + 32, ilv(p1, q1, 0));
        _mm512_store_ps(out[r] + 48, ilv(p1, q1, 1));
    }
}

/* y (+ bias) of the chunk's tile rows from M (row stride T lanes). */
static void wino_output(const struct sd_wino_shape *s, const float *m, int64_t g0, int64_t rows, int64_t T,
                        const float *b, float *y) {
    const struct wino_geo G = wino_geo(s);
    const int64_t Co6 = up(s->Co, WR), H = s->H, W = s->W, span = G.rpv > 1 ? 16 : G.twp, tm = G.m;
    for (int64_t co = 0; co < s->Co; co++) {
        const __m512 bias = _mm512_set1_ps(b ? b[co] : 0.0f);
        for (int64_t lr = 0; lr < rows; lr += G.rpv) {
            for (int64_t tx0 = 0; tx0 < span; tx0 += 16) {
                const float *mp = m + co * T + lr * G.twp + tx0;
                __m512 q[36];
                for (int e = 0; e < G.E; e++) q[e] = _mm512_loadu_ps(mp + (int64_t)e * Co6 * T);
                float out[4][64] __attribute__((aligned(64)));
                if (tm == 4) wino_out16_f4(q, bias, out);
                else wino_out16(q, bias, out);
                /* Wide planes: one tile row, x from m*tx0 (up to 16*m values);
                 * narrow: tile row lr+sub's W values start at m*sub*twp. */
                const int64_t xs = tm * tx0, nx = G.rpv > 1 ? W : W - xs < 16 * tm ? W - xs : 16 * tm;
                for (int64_t sub = 0; sub < G.rpv && lr + sub < rows && nx > 0; sub++) {
                    const int64_t g = g0 + lr + sub, ty = g % G.TH;
                    float *yc = y + ((g / G.TH) * s->Co + co) * H * W + xs;
                    for (int64_t r = 0; r < tm && tm * ty + r < H; r++)
                        memcpy(yc + (tm * ty + r) * W, out[r] + tm * sub * G.twp, (size_t)nx * sizeof(float));
                }
            }
        }
    }
}

void sd_wino_bf16_run(const struct sd_wino_shape *s, int64_t rows, const float *x, const uint32_t *u, const float *b,
                      float *y, void *scratch, int nthreads) {
    const struct wino_geo G = wino_geo(s);
    const struct wino_ws L = wino_layout(s, rows);
    const int64_t grows = s->N * G.TH, nchunks = (grows + rows - 1) / rows;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t c = 0; c < nchunks; c++) {
        float *ws = (float *)scratch + L.total * omp_get_thread_num();
        uint32_t *vt = (uint32_t *)ws + L.vt;
        float *m = ws + L.m, *rb = ws + L.rowbuf;
        const int64_t g0 = c * rows, nr = grows - g0 < rows ? grows - g0 : rows;
        const int64_t T = rows * G.twp; /* the layout's stride, also for a short last chunk */
        wino_input(s, x, g0, nr, T, vt, rb);
        wino_gemm(s, u, vt, T, up(nr * G.twp, 16), m);
        wino_output(s, m, g0, nr, T, b, y);
    }
}

#else /* no AVX-512 BF16 in this build */

int64_t sd_wino_bf16_weight_words(int64_t Co, int64_t Ci, int m) { return (void)Co, (void)Ci, (void)m, 0; }
void sd_wino_bf16_weights(const float *w, int64_t Co, int64_t Ci, int m, uint32_t *u) {
    (void)w, (void)Co, (void)Ci, (void)m, (void)u;
}
int64_t sd_wino_bf16_chunk_rows(const struct sd_wino_shape *s, int nthreads) { return (void)s, (void)nthreads, 1; }
size_t sd_wino_bf16_scratch(const struct sd_wino_shape *s, int64_t rows) { return (void)s, (void)rows, 0; }
void sd_wino_bf16_run(const struct sd_wino_shape *s, int64_t rows, const float *x, const uint32_t *u, const float *b,
                      float *y, void *scratch, int nthreads) {
    (void)s, (void)rows, (void)x, (void)u, (void)b, (void)y, (void)scratch, (void)nthreads;
}

#endif
