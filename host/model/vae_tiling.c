/* vae_tiling.c - tiled VAE decode/encode as diffusers' enable_tiling() (see vae_tiling.h). */
#include "vae_tiling.h"

#include <stdlib.h>
#include <string.h>

#include "model_run.h"

int sd_vae_tile_default(const struct sd_model *m) { return m->vae.sample_size > 0 ? m->vae.sample_size : 512; }

/* One tile of the output: C planes of th x tw. */
struct tile {
    float *d;
    int th, tw;
};

/* diffusers blend_v: the first e rows of b fade in from the last e rows of a
 * (same width), e = min(a.h, b.h, extent); weights computed as PyTorch does
 * (Python floats y/e, applied to float32 tensors as float32 scalars). */
static void blend_v(const struct tile *a, struct tile *b, int C, int extent) {
    int e = extent < a->th ? extent : a->th;
    if (b->th < e) e = b->th;
    for (int y = 0; y < e; y++) {
        const float wb = (float)((double)y / e), wa = (float)(1.0 - (double)y / e);
        for (int c = 0; c < C; c++) {
            const float *ra = a->d + ((size_t)c * a->th + (a->th - e + y)) * a->tw;
            float *rb = b->d + ((size_t)c * b->th + y) * b->tw;
            for (int x = 0; x < b->tw; x++) {
                const float p = ra[x] * wa, q = rb[x] * wb;
                rb[x] = p + q;
            }
        }
    }
}

/* diffusers blend_h: the first e columns of b fade in from the last e columns of a (same height). */
static void blend_h(const struct tile *a, struct tile *b, int C, int extent) {
    int e = extent < a->tw ? extent : a->tw;
    if (b->tw < e) e = b->tw;
    for (int x = 0; x < e; x++) {
        const float wb = (float)((double)x / e), wa = (float)(1.0 - (double)x / e);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < b->th; y++) {
                const float p = a->d[((size_t)c * a->th + y) * a->tw + (a->tw - e + x)] * wa;
                float *q = &b->d[((size_t)c * b->th + y) * b->tw + x];
                *q = p + *q * wb;
            }
    }
}

/* The tiling of one image along both sides. Input tiles of `tin` (input
 * units) start every `stride`; an input extent n gives an output extent
 * n * num / den; outputs blend over `blend` and are cropped to `limit`. */
struct plan {
    int Cin, Cout, H, W;     /* input planes and size */
    int tin, stride, num, den, blend, limit;
    int decode;
};

static int run_tile(struct sd_runtime *rt, struct sd_model *m, const struct plan *p, const float *in, int i, int j,
                    struct tile *t, float *buf) {
    const int ih = p->H - i < p->tin ? p->H - i : p->tin, iw = p->W - j < p->tin ? p->W - j : p->tin;
    for (int c = 0; c < p->Cin; c++)
        for (int y = 0; y < ih; y++)
            memcpy(buf + ((size_t)c * ih + y) * iw, in + ((size_t)c * p->H + i + y) * p->W + j, sizeof(float) * (size_t)iw);
    t->th = ih * p->num / p->den;
    t->tw = iw * p->num / p->den;
    return p->decode ? sd_run_vae_decode(rt, m, buf, 1, ih, iw, t->d) : sd_run_vae_encode(rt, m, buf, 1, ih, iw, t->d);
}

static int tiled(struct sd_runtime *rt, struct sd_model *m, const struct plan *p, const float *in, float *out) {
    const int OH = p->H * p->num / p->den, OW = p->W * p->num / p->den;
    const int ncol = (p->W + p->stride - 1) / p->stride;
    const size_t tout = (size_t)p->Cout * (p->tin * p->num / p->den) * (p->tin * p->num / p->den);
    float *mem = malloc(sizeof(float) * (2 * (size_t)ncol * tout + (size_t)p->Cin * p->tin * p->tin));
    struct tile *rows = calloc(2 * (size_t)ncol, sizeof *rows);
    if (!mem || !rows) {
        free(mem);
        free(rows);
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_NOMEM, "tiled vae: out of memory");
    }
    for (int k = 0; k < 2 * ncol; k++) rows[k].d = mem + (size_t)k * tout;
    float *buf = mem + 2 * (size_t)ncol * tout;
    struct tile *prev = rows, *cur = rows + ncol;
    int rc = SD_OK, oy = 0;
    for (int i = 0, r = 0; i < p->H && !rc; i += p->stride, r++) {
        int ox = 0, crop_h = 0;
        for (int j = 0, c = 0; j < p->W && !rc; j += p->stride, c++) {
            struct tile *t = &cur[c];
            if ((rc = run_tile(rt, m, p, in, i, j, t, buf))) break;
            if (r > 0) blend_v(&prev[c], t, p->Cout, p->blend);
            if (c > 0) blend_h(&cur[c - 1], t, p->Cout, p->blend);
            const int ch = t->th < p->limit ? t->th : p->limit, cw = t->tw < p->limit ? t->tw : p->limit;
            if (oy + ch > OH || ox + cw > OW) {
                rc = sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "tiled vae: tile %d,%d overruns the %dx%d output", r, c,
                               OW, OH);
                break;
            }
            for (int k = 0; k < p->Cout; k++)
                for (int y = 0; y < ch; y++)
                    memcpy(out + ((size_t)k * OH + oy + y) * OW + ox, t->d + ((size_t)k * t->th + y) * t->tw,
                           sizeof(float) * (size_t)cw);
            ox += cw;
            crop_h = ch;
        }
        if (!rc && ox != OW)
            rc = sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "tiled vae: tiles cover %d of %d columns", ox, OW);
        oy += crop_h;
        struct tile *sw = prev;
        prev = cur;
        cur = sw;
    }
    if (!rc && oy != OH) rc = sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "tiled vae: tiles cover %d of %d rows", oy, OH);
    free(mem);
    free(rows);
    return rc;
}

static int check_tile(struct sd_runtime *rt, const struct sd_model *m, int *tile_px) {
    const int f = sd_vae_downscale(&m->vae);
    if (*tile_px == 0) *tile_px = sd_vae_tile_default(m);
    if (*tile_px < 4 * f || *tile_px % (4 * f))
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "tiled vae: tile %d px is not a positive multiple of %d",
                         *tile_px, 4 * f);
    return SD_OK;
}

int sd_vae_decode_tiled(struct sd_runtime *rt, struct sd_model *m, const float *z, int B, int h, int w, int tile_px,
                        float *img) {
    int rc = check_tile(rt, m, &tile_px);
    if (rc) return rc;
    const int f = sd_vae_downscale(&m->vae), lc = m->vae.latent_channels;
    /* tiled_decode: overlap_size = int(tile_latent * 0.75), blend_extent =
     * int(tile_sample * 0.25), row_limit = tile_sample - blend_extent. */
    const int tl = tile_px / f;
    if (h <= tl && w <= tl) return sd_run_vae_decode(rt, m, z, B, h, w, img); /* diffusers: no tiles then */
    const struct plan p = {lc, 3, h, w, tl, tl * 3 / 4, f, 1, tile_px / 4, tile_px - tile_px / 4, 1};
    for (int b = 0; b < B && !rc; b++)
        rc = tiled(rt, m, &p, z + (size_t)b * lc * h * w, img + (size_t)b * 3 * (size_t)(f * h) * (f * w));
    return rc;
}

int sd_vae_encode_tiled(struct sd_runtime *rt, struct sd_model *m, const float *img, int B, int H, int W, int tile_px,
                        float *moments) {
    int rc = check_tile(rt, m, &tile_px);
    if (rc) return rc;
    const int f = sd_vae_downscale(&m->vae), mc = 2 * m->vae.latent_channels;
    if (H < f || W < f || H % f || W % f)
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "vae encoder: %dx%d is not a multiple of the VAE's factor %d",
                         W, H, f);
    /* _tiled_encode: overlap_size = int(tile_sample * 0.75), blend_extent =
     * int(tile_latent * 0.25), row_limit = tile_latent - blend_extent. */
    const int tl = tile_px / f;
    if (H <= tile_px && W <= tile_px) return sd_run_vae_encode(rt, m, img, B, H, W, moments); /* diffusers: no tiles */
    const struct plan p = {3, mc, H, W, tile_px, tile_px * 3 / 4, 1, f, tl / 4, tl - tl / 4, 0};
    for (int b = 0; b < B && !rc; b++)
        rc = tiled(rt, m, &p, img + (size_t)b * 3 * H * W, moments + (size_t)b * mc * (size_t)(H / f) * (W / f));
    return rc;
}

int sd_vae_want_tiles(struct sd_ctx *ctx, struct sd_model *m, int decode, int h, int w, int force, uint64_t budget,
                      int tile_px, int *tiled, int *tile) {
    *tiled = force != 0;
    *tile = tile_px;
    size_t bytes = 0;
    int rc = SD_OK;
    if (!force && budget) {
        rc = sd_vae_arena_estimate(ctx, m, decode, h, w, &bytes);
        if (!rc) *tiled = (uint64_t)bytes > budget;
    }
    if (rc || !*tiled) return rc;
    const int f = sd_vae_downscale(&m->vae), unit = 4 * f;
    if (!tile_px) *tile = sd_vae_tile_default(m);
    while (!tile_px && budget && *tile % (2 * unit) == 0) {
        const int s = decode ? *tile / f : *tile;
        if ((rc = sd_vae_arena_estimate(ctx, m, decode, s, s, &bytes)) || (uint64_t)bytes <= budget) break;
        *tile /= 2;
    }
    /* An image no larger than one tile is decoded whole, as diffusers does. */
    const int64_t H = decode ? (int64_t)h * f : h, W = decode ? (int64_t)w * f : w;
    if (H <= *tile && W <= *tile) *tiled = 0;
    return rc;
}
