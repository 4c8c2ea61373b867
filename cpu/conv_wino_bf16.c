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
#include "cpu_math.h"

#include <omp.h>
#include <string.h>

#if SD_HAVE_AVX512_BF16
#include "gemm_bf16.h"

#define WR SD_GEMM_R /* output channels per micro-tile */

static int64_t up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

int64_t sd_wino_bf16_weight_words(int64_t Co, int64_t Ci) { return 16 * up(Co, WR) * ((Ci + 1) / 2); }

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
    #pragma omp parallel for schedule(static)
    for (int64_t co = 0; co < Co6; co++)
        for (int64_t c2 = 0; c2 < Ci2; c2++) { /* 16 rows u[e][co][.], each written in order */
            float f0[16] = {0}, f1[16] = {0};
            if (co < Co) {
                wino_filter(w + (co * Ci + 2 * c2) * 9, f0);
                if (2 * c2 + 1 < Ci) wino_filter(w + (co * Ci + 2 * c2 + 1) * 9, f1);
            }
            for (int e = 0; e < 16; e++) u[((int64_t)e * Co6 + co) * Ci2 + c2] = sd_bf16_bits(f0[e]) | sd_bf16_bits(f1[e]) << 16;
        }
}

/* ---- plan ---- */

/* Lanes: tile row g (= n*TH + ty) of a chunk starting at g0 owns lanes
 * [(g-g0)*twp, (g-g0+1)*twp) of the chunk's T. twp is TW = ceil(W/2)
 * rounded up to 16 on wide planes (a row spans whole vectors), or to a
 * power of two <= 8 on narrow ones, where one vector holds rpv = 16/twp
 * tile rows (the 16x16 planes: no half-empty vectors). */
struct wino_geo {
    int64_t TH, TW, twp, rpv;
};

static struct wino_geo wino_geo(const struct sd_wino_shape *s) {
    struct wino_geo g = {(s->H + 1) / 2, (s->W + 1) / 2, 0, 1};
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

static int64_t rb_ld(const struct wino_geo *G) { return 2 * (G->twp > 16 ? G->twp : 16) + 48; }

static struct wino_ws wino_layout(const struct sd_wino_shape *s, int64_t rows) {
    const struct wino_geo G = wino_geo(s);
    const int64_t T = rows * G.twp, Ci2 = (s->Ci + 1) / 2, Co6 = up(s->Co, WR);
    struct wino_ws w;
    w.vt = 0;
    w.m = w.vt + 16 * Ci2 * T;
    w.rowbuf = w.m + 16 * Co6 * T;
    w.total = w.rowbuf + up(G.rpv * 4 * rb_ld(&G), 16);
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

/* Copies the 4 input rows 2ty-1 .. 2ty+2 of channel xc (H x W) into rb,
 * each as columns -1 .. ld-2 with zeros outside the image. */
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

/* VT of a chunk (row stride T lanes): tile rows g0 .. g0+rows-1 (global:
 * n*TH + ty), in vectors of 16 lanes (see struct wino_geo). Channel ci's
 * 16 bf16 go to the low halves of the pairs, then ci+1's are interleaved
 * in (zeros past an odd Ci; tile rows past the last give zero lanes). */
static void wino_input(const struct sd_wino_shape *s, const float *x, int64_t g0, int64_t rows, int64_t T,
                       uint32_t *vt, float *rb) {
    const struct wino_geo G = wino_geo(s);
    const int64_t Ci2 = (s->Ci + 1) / 2, ld = rb_ld(&G), grows = s->N * G.TH;
    for (int64_t lr = 0; lr < rows; lr += G.rpv) {
        for (int64_t ci = 0; ci < 2 * Ci2; ci++) {
            const int half = (int)(ci % 2), have = ci < s->Ci;
            for (int64_t sub = 0; have && sub < G.rpv; sub++) {
                const int64_t g = g0 + lr + sub;
                if (lr + sub < rows && g < grows)
                    wino_rows(x + ((g / G.TH) * s->Ci + ci) * s->H * s->W, s->H, s->W, g % G.TH, ld, rb + sub * 4 * ld);
                else
                    memset(rb + sub * 4 * ld, 0, (size_t)(4 * ld) * sizeof *rb);
            }
            const int64_t span = G.rpv > 1 ? 16 : G.twp; /* lanes of this step */
            for (int64_t tx0 = 0; tx0 < span; tx0 += 16) {
                __m512 v[16];
                if (have) wino_input16(rb, ld, G.rpv > 1 ? 0 : tx0, &G, v);
                else
                    for (int e = 0; e < 16; e++) v[e] = _mm512_setzero_ps();
                for (int e = 0; e < 16; e++) {
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
    for (int e = 0; e < 16; e++) {
        const uint32_t *ue = u + (int64_t)e * Co6 * Ci2, *ve = vt + (int64_t)e * Ci2 * T;
        float *me = m + (int64_t)e * Co6 * T;
        for (int64_t co = 0; co < Co6; co += WR) sd_gemm_bf16_rows(ue + co * Ci2, Ci2, Ci2, ve, T, me + co * T, T, nv);
    }
}

/* ---- output transform ---- */

/* y (+ bias) of the chunk's tile rows from M (row stride T lanes). */
static void wino_output(const struct sd_wino_shape *s, const float *m, int64_t g0, int64_t rows, int64_t T,
                        const float *b, float *y) {
    const struct wino_geo G = wino_geo(s);
    const int64_t Co6 = up(s->Co, WR), H = s->H, W = s->W, span = G.rpv > 1 ? 16 : G.twp;
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));
    for (int64_t co = 0; co < s->Co; co++) {
        const __m512 bias = _mm512_set1_ps(b ? b[co] : 0.0f);
        for (int64_t lr = 0; lr < rows; lr += G.rpv) {
            for (int64_t tx0 = 0; tx0 < span; tx0 += 16) {
                const float *mp = m + co * T + lr * G.twp + tx0;
                __m512 q[16];
                for (int e = 0; e < 16; e++) q[e] = _mm512_loadu_ps(mp + (int64_t)e * Co6 * T);
                __m512 s0[4], s1[4];
                for (int c = 0; c < 4; c++) {
                    s0[c] = _mm512_add_ps(_mm512_add_ps(q[c], q[4 + c]), q[8 + c]);
                    s1[c] = _mm512_sub_ps(_mm512_sub_ps(q[4 + c], q[8 + c]), q[12 + c]);
                }
                /* out[r][0..32): output row 2ty+r of the vector's 16 tiles, x interleaved */
                float out[2][32] __attribute__((aligned(64)));
                for (int r = 0; r < 2; r++) {
                    const __m512 *t = r ? s1 : s0;
                    const __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t[0], t[1]), t[2]), bias);
                    const __m512 y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t[1], t[2]), t[3]), bias);
                    _mm512_store_ps(out[r], _mm512_permutex2var_ps(y0, lo_idx, y1));
                    _mm512_store_ps(out[r] + 16, _mm512_permutex2var_ps(y0, hi_idx, y1));
                }
                /* Wide planes: one tile row, x from 2*tx0 (up to 32 values);
                 * narrow: tile row lr+sub's W values start at 2*sub*twp. */
                const int64_t xs = 2 * tx0, nx = G.rpv > 1 ? W : W - xs < 32 ? W - xs : 32;
                for (int64_t sub = 0; sub < G.rpv && lr + sub < rows && nx > 0; sub++) {
                    const int64_t g = g0 + lr + sub, ty = g % G.TH;
                    float *yc = y + ((g / G.TH) * s->Co + co) * H * W + xs;
                    for (int r = 0; r < 2 && 2 * ty + r < H; r++)
                        memcpy(yc + (2 * ty + r) * W, out[r] + 2 * sub * G.twp, (size_t)nx * sizeof(float));
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

int64_t sd_wino_bf16_weight_words(int64_t Co, int64_t Ci) { return (void)Co, (void)Ci, 0; }
void sd_wino_bf16_weights(const float *w, int64_t Co, int64_t Ci, uint32_t *u) { (void)w, (void)Co, (void)Ci, (void)u; }
int64_t sd_wino_bf16_chunk_rows(const struct sd_wino_shape *s, int nthreads) { return (void)s, (void)nthreads, 1; }
size_t sd_wino_bf16_scratch(const struct sd_wino_shape *s, int64_t rows) { return (void)s, (void)rows, 0; }
void sd_wino_bf16_run(const struct sd_wino_shape *s, int64_t rows, const float *x, const uint32_t *u, const float *b,
                      float *y, void *scratch, int nthreads) {
    (void)s, (void)rows, (void)x, (void)u, (void)b, (void)y, (void)scratch, (void)nthreads;
}

#endif
