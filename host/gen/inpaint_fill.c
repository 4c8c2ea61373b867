/* inpaint_fill.c - A1111's "Masked content" modes (see inpaint_fill.h). */
#include "inpaint_fill.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const names[] = {"fill", "original", "latent noise", "latent nothing"};
static const char *const cli_names[] = {"fill", "original", "latent-noise", "latent-nothing"};

int sd_inpaint_fill_parse(struct sd_ctx *ctx, const char *s, enum sd_inpaint_fill *out) {
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(s, cli_names[i]) || !strcasecmp(s, names[i]) || (s[0] == '0' + i && !s[1])) {
            *out = (enum sd_inpaint_fill)i;
            return SD_OK;
        }
    return sd_errorf(ctx, SD_ERR_INVALID, "unknown inpainting fill '%s' (fill, original, latent-noise, latent-nothing or 0-3)", s);
}

const char *sd_inpaint_fill_name(enum sd_inpaint_fill f) { return (unsigned)f < 4 ? names[f] : "?"; }

/* PIL's _gaussian_blur_radius: the fractional box radius of one of
 * `passes` extended box blurs that together have standard deviation sigma. */
static float box_radius(float sigma, int passes) {
    double s2 = (double)sigma * sigma / passes, L = sqrt(12.0 * s2 + 1.0), l = floor((L - 1.0) / 2.0);
    double a = (2 * l + 1) * (l * (l + 1) - 3 * s2) / (6 * (s2 - (l + 1) * (l + 1)));
    return (float)(l + a);
}

/* Sum of v[clamp(k)] for k in [a, b] (a <= b), pre = prefix sums of v[0..n). */
static double clamped_sum(const double *pre, const float *v, int n, long a, long b) {
    double s = 0;
    if (a < 0) { long hi = b < 0 ? b : -1; s += (double)(hi - a + 1) * v[0]; a = 0; }
    if (b >= n) { long lo = a > n ? a : n; s += (double)(b - lo + 1) * v[n - 1]; b = n - 1; }
    if (a <= b) s += pre[b + 1] - pre[a];
    return s;
}

/* One extended box pass over a line of n values with stride st, in place. */
static void box_line(float *line, int n, long st, float r, float *tmp, double *pre) {
    const long l = (long)floorf(r);
    const double fr = r - (float)l, norm = 1.0 / (2.0 * r + 1.0);
    for (int i = 0; i < n; i++) tmp[i] = line[i * st];
    pre[0] = 0;
    for (int i = 0; i < n; i++) pre[i + 1] = pre[i] + tmp[i];
    for (int i = 0; i < n; i++) {
        double s = clamped_sum(pre, tmp, n, i - l, i + l);
        if (fr > 0) s += fr * (clamped_sum(pre, tmp, n, i - l - 1, i - l - 1) + clamped_sum(pre, tmp, n, i + l + 1, i + l + 1));
        line[i * st] = (float)(s * norm);
    }
}

/* PIL's GaussianBlur(radius): 3 box passes along x, then 3 along y, per plane. */
static void gaussian_blur(float *planes, int np, int w, int h, float sigma, float *tmp, double *pre) {
    if (sigma <= 0) return;
    const float r = box_radius(sigma, 3);
    for (int p = 0; p < np; p++) {
        float *pl = planes + (size_t)p * w * h;
        for (int pass = 0; pass < 3; pass++)
            for (int y = 0; y < h; y++) box_line(pl + (size_t)y * w, w, 1, r, tmp, pre);
        for (int pass = 0; pass < 3; pass++)
            for (int x = 0; x < w; x++) box_line(pl + x, h, w, r, tmp, pre);
    }
}

int sd_inpaint_fill_image(struct sd_ctx *ctx, float *img, const float *mask, int w, int h) {
    static const struct { float radius; int repeats; } steps[] = {{256, 1}, {64, 1}, {16, 2}, {4, 4}, {2, 2}, {0, 1}};
    const size_t hw = (size_t)w * h;
    const int n = w > h ? w : h;
    float *src = malloc(sizeof(float) * 4 * hw), *blur = malloc(sizeof(float) * 4 * hw), *dst = calloc(4 * hw, sizeof(float));
    float *tmp = malloc(sizeof(float) * (size_t)n);
    double *pre = malloc(sizeof(double) * ((size_t)n + 1));
    if (!src || !blur || !dst || !tmp || !pre) {
        free(src); free(blur); free(dst); free(tmp); free(pre);
        return sd_errorf(ctx, SD_ERR_NOMEM, "inpainting fill: out of memory for a %dx%d image", w, h);
    }
    /* Premultiplied RGBa: alpha = 1 - mask (the kept pixels are opaque). */
    for (size_t i = 0; i < hw; i++) {
        float a = 1.0f - mask[i];
        a = a < 0 ? 0 : a > 1 ? 1 : a;
        for (int c = 0; c < 3; c++) src[c * hw + i] = img[c * hw + i] * a;
        src[3 * hw + i] = a;
    }
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        memcpy(blur, src, sizeof(float) * 4 * hw);
        gaussian_blur(blur, 4, w, h, steps[k].radius, tmp, pre);
        for (int rep = 0; rep < steps[k].repeats; rep++)
            for (size_t i = 0; i < hw; i++) { /* un-premultiply, then src-over onto dst */
                float sa = blur[3 * hw + i], da = dst[3 * hw + i];
                if (sa <= 0) continue;
                float oa = sa + da * (1 - sa);
                for (int c = 0; c < 3; c++) {
                    float sc = blur[c * hw + i] / sa;
                    dst[c * hw + i] = (sc * sa + dst[c * hw + i] * da * (1 - sa)) / oa;
                }
                dst[3 * hw + i] = oa;
            }
    }
    /* Pixels no blur reached (no kept pixel at all) stay as given. */
    for (size_t i = 0; i < hw; i++)
        if (dst[3 * hw + i] > 0)
            for (int c = 0; c < 3; c++) img[c * hw + i] = dst[c * hw + i];
    free(src); free(blur); free(dst); free(tmp); free(pre);
    return SD_OK;
}

int sd_inpaint_fill_latent(struct sd_ctx *ctx, enum sd_inpaint_fill f, float *init_lat, const float *mask_lat, int B,
                           int lc, int h, int w, uint64_t seed) {
    if (f != SD_FILL_LATENT_NOISE && f != SD_FILL_LATENT_NOTHING) return SD_OK;
    const size_t hw = (size_t)h * w, lat = (size_t)lc * hw;
    float *noise = f == SD_FILL_LATENT_NOISE ? malloc(sizeof(float) * lat) : NULL;
    if (f == SD_FILL_LATENT_NOISE && !noise) return sd_errorf(ctx, SD_ERR_NOMEM, "latent noise: out of memory");
    for (int b = 0; b < B; b++) {
        if (noise) {
            struct sd_rng r;
            sd_rng_seed(&r, seed + (uint64_t)b);
            sd_rng_randn(&r, noise, (int64_t)lat);
        }
        for (int c = 0; c < lc; c++)
            for (size_t i = 0; i < hw; i++) {
                float m = mask_lat[(size_t)b * hw + i], *v = init_lat + (size_t)b * lat + c * hw + i;
                *v = *v * (1 - m) + (noise ? noise[c * hw + i] * m : 0.0f);
            }
    }
    free(noise);
    return SD_OK;
}
