/* op_permute.c - contiguous copy with dims permuted, on the CPU.
 *
 * p.permute.perm is in 4-slot indices: output slot i = input slot perm[i].
 * The permutation is first simplified: output dims of size 1 are dropped and
 * neighbouring output dims that are also neighbours, in order, in the input
 * are merged, so NCHW->NHWC becomes the batched transpose [N][C][HW] ->
 * [N][HW][C]. Then:
 *   - if the innermost output dim is the input's innermost, rows are copied
 *     with memcpy;
 *   - otherwise it is a (batched) transpose between the innermost output
 *     dim and the output dim that is innermost in the input; it runs in
 *     SD_PERM_TILE x SD_PERM_TILE tiles so that reads and writes both stay
 *     in cache lines. Tiles of all outer indices run in parallel. With
 *     AVX-512, full 16x16 sub-tiles are transposed in registers (the
 *     usual unpack / shuffle / shuffle_f32x4 network); edges use the scalar
 *     loop, which is also the reference.
 * Element type: any 4-byte type (f32, i32).
 */
#include "cpu.h"

#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define SD_PERM_TILE 32

#if defined(__AVX512F__)
/* dst[c*ld + r] = src[r*ls + c] for r, c in 0..15 (4-byte elements). */
static inline void perm_tr16(const uint32_t *src, int64_t ls, uint32_t *dst, int64_t ld) {
    __m512 r[16], t[16];
    for (int k = 0; k < 16; k++) r[k] = _mm512_loadu_ps((const float *)(src + k * ls));
    for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 16; k += 4) {
        r[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
        r[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int k = 0; k < 16; k += 8)
        for (int j = 0; j < 4; j++) {
            t[k + j] = _mm512_shuffle_f32x4(r[k + j], r[k + j + 4], 0x88);
            t[k + j + 4] = _mm512_shuffle_f32x4(r[k + j], r[k + j + 4], 0xDD);
        }
    for (int j = 0; j < 8; j++) {
        _mm512_storeu_ps((float *)(dst + j * ld), _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88));
        _mm512_storeu_ps((float *)(dst + (j + 8) * ld), _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD));
    }
}
#endif

/* A simplified view: up to 4 output dims (outermost first), each with its
 * size and its element stride in the input. */
struct perm_view {
    int n;
    int64_t size[4], istride[4];
};

static void perm_simplify(const struct sd_tensor *x, const int *perm, struct perm_view *v) {
    int64_t is[4];
    is[3] = 1;
    for (int i = 2; i >= 0; i--) is[i] = is[i + 1] * x->ne[i + 1];
    v->n = 0;
    for (int i = 0; i < 4; i++) {
        const int64_t sz = x->ne[perm[i]], st = is[perm[i]];
        if (sz == 1) continue;
        if (v->n > 0 && v->istride[v->n - 1] == st * sz) { /* merge with the previous output dim */
            v->size[v->n - 1] *= sz;
            v->istride[v->n - 1] = st;
            continue;
        }
        v->size[v->n] = sz;
        v->istride[v->n] = st;
        v->n++;
    }
    /* Left-pad to 4 dims with size-1 dims. */
    const int pad = 4 - v->n;
    for (int i = 3; i >= 0; i--) {
        v->size[i] = i >= pad ? v->size[i - pad] : 1;
        v->istride[i] = i >= pad ? v->istride[i - pad] : 0;
    }
    if (v->n == 0) v->istride[3] = 1;
    v->n = 4;
}

int sd_cpu_op_permute(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *xt = node->src[0];
    if (sd_dtype_size(xt->type) != 4)
        return sd_errorf(cpu->ctx, SD_ERR_UNSUPPORTED, "permute: dtype %s", sd_dtype_name(xt->type));
    const uint32_t *x = xt->data;
    uint32_t *y = node->data;
    struct perm_view v;
    perm_simplify(xt, node->p.permute.perm, &v);
    const int64_t *sz = v.size, *st = v.istride;

    if (st[3] == 1) { /* innermost contiguous in both: row copies */
        const int64_t rows = sz[0] * sz[1] * sz[2], W = sz[3];
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t i2 = r % sz[2], i1 = (r / sz[2]) % sz[1], i0 = r / (sz[1] * sz[2]);
            memcpy(y + r * W, x + i0 * st[0] + i1 * st[1] + i2 * st[2], (size_t)W * sizeof *y);
        }
        return SD_OK;
    }

    /* Transpose between output dim k (input-contiguous) and output dim 3. */
    int k = 0;
    while (k < 3 && st[k] != 1) k++;
    if (st[k] != 1)
        return sd_errorf(cpu->ctx, SD_ERR_INVALID, "permute: no input-contiguous dim (internal error)");
    int oth[2], no = 0; /* the two remaining output dims */
    for (int i = 0; i < 3; i++)
        if (i != k) oth[no++] = i;
    int64_t ostr[4]; /* output element strides */
    ostr[3] = 1;
    for (int i = 2; i >= 0; i--) ostr[i] = ostr[i + 1] * sz[i + 1];
    const int64_t K = sz[k], M = sz[3], sK = ostr[k], tM = st[3];
    const int64_t A = sz[oth[0]], B = sz[oth[1]];
    const int64_t tk = (K + SD_PERM_TILE - 1) / SD_PERM_TILE, tm = (M + SD_PERM_TILE - 1) / SD_PERM_TILE;

    #pragma omp parallel for collapse(4) schedule(static)
    for (int64_t a = 0; a < A; a++) {
        for (int64_t b = 0; b < B; b++) {
            for (int64_t bk = 0; bk < tk; bk++) {
                for (int64_t bm = 0; bm < tm; bm++) {
                    const uint32_t *xs = x + a * st[oth[0]] + b * st[oth[1]];
                    uint32_t *ys = y + a * ostr[oth[0]] + b * ostr[oth[1]];
                    const int64_t k0 = bk * SD_PERM_TILE, m0 = bm * SD_PERM_TILE;
                    const int64_t k1 = k0 + SD_PERM_TILE < K ? k0 + SD_PERM_TILE : K;
                    const int64_t m1 = m0 + SD_PERM_TILE < M ? m0 + SD_PERM_TILE : M;
                    int64_t kf = k0, mf = m0; /* end of the part done in 16x16 blocks */
#if defined(__AVX512F__)
                    kf = k0 + (k1 - k0) / 16 * 16, mf = m0 + (m1 - m0) / 16 * 16;
                    for (int64_t i = k0; i < kf; i += 16)
                        for (int64_t j = m0; j < mf; j += 16) perm_tr16(xs + j * tM + i, tM, ys + i * sK + j, sK);
#endif
                    for (int64_t i = k0; i < k1; i++)
                        for (int64_t j = i < kf ? mf : m0; j < m1; j++) ys[i * sK + j] = xs[j * tM + i];
                }
            }
        }
    }
    return SD_OK;
}
