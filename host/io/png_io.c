/* png_io.c - PNG reading and writing through libpng (see png_io.h).
 *
 * libpng reports errors by calling our error function, which records the
 * message and longjmps back to the setjmp in png_decode/png_encode. To stay
 * within the rules for setjmp, everything those functions change after
 * setjmp lives in a heap-allocated state struct reached through an
 * unchanging pointer, and cleanup happens in one place after the jump.
 */
#include "png_io.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void sd_image_to_rgb8(const float *chw, int w, int h, uint8_t *rgb) {
    const int64_t plane = (int64_t)w * h;
    for (int c = 0; c < 3; c++)
        for (int64_t i = 0; i < plane; i++) {
            float v = chw[c * plane + i] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            if (v != v) v = 0.0f; /* NaN: black, and no undefined float->int cast */
            v = v * 255.0f;
            rgb[i * 3 + c] = (uint8_t)rintf(v);
        }
}

/* ---- shared libpng state ------------------------------------------------ */

struct png_state {
    FILE *f;
    png_structp png;
    png_infop info;
    uint8_t *pixels;   /* decoded rows, h * rowbytes */
    png_bytep *rows;
    char *tmp_path;    /* writer: the temporary file */
    char msg[256];     /* libpng's error message */
    /* decoded layout */
    int w, h, channels, depth;
    size_t rowbytes;
};

static void state_error(png_structp png, png_const_charp msg) {
    struct png_state *st = png_get_error_ptr(png);
    snprintf(st->msg, sizeof st->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void state_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg; /* warnings (e.g. a bad iCCP profile) do not stop us */
}

/* ---- reading --------------------------------------------------------------- */

/* Decodes path into st->pixels as RGB or RGBA, 8 or 16 bit (big endian).
 * Returns SD_OK or an error with ctx set; st is cleaned by png_state_free. */
static int png_decode(struct sd_ctx *ctx, const char *path, struct png_state *st) {
    unsigned char sig[8];
    st->f = fopen(path, "rb");
    if (!st->f) return sd_errorf(ctx, SD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t got = fread(sig, 1, 8, st->f);
    if (got < 8 || png_sig_cmp(sig, 0, 8) != 0)
        return sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is not a PNG file (%s)", path,
                         got < 8 ? "shorter than the 8-byte signature" : "bad signature");
    st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, state_error, state_warning);
    if (!st->png || !(st->info = png_create_info_struct(st->png)))
        return sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': cannot create libpng structures", path);
    if (setjmp(png_jmpbuf(st->png)))
        return sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is a truncated or corrupt PNG: %s", path, st->msg);
    png_init_io(st->png, st->f);
    png_set_sig_bytes(st->png, 8);
    png_set_user_limits(st->png, SD_PNG_MAX_SIDE, SD_PNG_MAX_SIDE);
    png_read_info(st->png, st->info);
    const int color = png_get_color_type(st->png, st->info);
    const int bits = png_get_bit_depth(st->png, st->info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(st->png);
    if (color == PNG_COLOR_TYPE_GRAY && bits < 8) png_set_expand_gray_1_2_4_to_8(st->png);
    if (png_get_valid(st->png, st->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(st->png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(st->png);
    png_set_interlace_handling(st->png);
    png_read_update_info(st->png, st->info);
    st->w = (int)png_get_image_width(st->png, st->info);
    st->h = (int)png_get_image_height(st->png, st->info);
    st->channels = png_get_channels(st->png, st->info);
    st->depth = png_get_bit_depth(st->png, st->info);
    st->rowbytes = png_get_rowbytes(st->png, st->info);
    if ((st->channels != 3 && st->channels != 4) || (st->depth != 8 && st->depth != 16))
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "'%s': unexpected PNG layout after conversion (%d channels, %d bit)",
                         path, st->channels, st->depth);
    st->pixels = malloc(st->rowbytes * (size_t)st->h);
    st->rows = malloc(sizeof *st->rows * (size_t)st->h);
    if (!st->pixels || !st->rows)
        return sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory for %dx%d pixels", path, st->w, st->h);
    for (int y = 0; y < st->h; y++) st->rows[y] = st->pixels + (size_t)y * st->rowbytes;
    png_read_image(st->png, st->rows);
    png_read_end(st->png, st->info); /* text chunks after IDAT land in info too */
    return SD_OK;
}

static void png_state_free(struct png_state *st, bool writing) {
    if (!st) return;
    if (st->png) {
        if (writing) png_destroy_write_struct(&st->png, &st->info);
        else png_destroy_read_struct(&st->png, &st->info, NULL);
    }
    if (st->f) fclose(st->f);
    if (st->tmp_path) {
        unlink(st->tmp_path); /* still set: the write failed */
        free(st->tmp_path);
    }
    free(st->pixels);
    free(st->rows);
    free(st);
}

/* Channel value c (0..2) of pixel i, in [0, 1]. */
static float px(const struct png_state *st, int64_t y, int64_t x, int c) {
    const uint8_t *p = st->rows[y] + (size_t)x * (size_t)st->channels * (size_t)(st->depth / 8);
    if (st->depth == 8) return (float)p[c] / 255.0f;
    return (float)((p[2 * c] << 8) | p[2 * c + 1]) / 65535.0f;
}

int sd_png_read(struct sd_ctx *ctx, const char *path, float **chw, int *w, int *h) {
    struct png_state *st = calloc(1, sizeof *st);
    if (!st) return sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", path);
    int rc = png_decode(ctx, path, st);
    if (rc == SD_OK) {
        const int64_t plane = (int64_t)st->w * st->h;
        float *out = malloc((size_t)plane * 3 * sizeof *out);
        if (!out) {
            rc = sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", path);
        } else {
            for (int64_t y = 0; y < st->h; y++)
                for (int64_t x = 0; x < st->w; x++)
                    for (int c = 0; c < 3; c++) {
                        float v = px(st, y, x, c);
                        out[c * plane + y * st->w + x] = v * 2.0f - 1.0f;
                    }
            *chw = out, *w = st->w, *h = st->h;
        }
    }
    png_state_free(st, false);
    return rc;
}

int sd_png_read_mask(struct sd_ctx *ctx, const char *path, float **mask, int *w, int *h) {
    struct png_state *st = calloc(1, sizeof *st);
    if (!st) return sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", path);
    int rc = png_decode(ctx, path, st);
    if (rc == SD_OK) {
        float *out = malloc((size_t)st->w * (size_t)st->h * sizeof *out);
        if (!out) {
            rc = sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", path);
        } else {
            for (int64_t y = 0; y < st->h; y++)
                for (int64_t x = 0; x < st->w; x++) {
                    float v;
                    if (st->depth == 8) {
                        const uint8_t *p = st->rows[y] + x * st->channels;
                        uint32_t l = (19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16;
                        v = (float)l / 255.0f;
                    } else {
                        v = 0.299f * px(st, y, x, 0) + 0.587f * px(st, y, x, 1) + 0.114f * px(st, y, x, 2);
                    }
                    out[y * st->w + x] = v;
                }
            *mask = out, *w = st->w, *h = st->h;
        }
    }
    png_state_free(st, false);
    return rc;
}

/* Appends code point cp as UTF-8. */
static size_t utf8_put(char *o, unsigned cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

int sd_png_read_text(struct sd_ctx *ctx, const char *path, const char *key, char **value) {
    struct png_state *st = calloc(1, sizeof *st);
    if (!st) return sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", path);
    int rc = png_decode(ctx, path, st);
    if (rc == SD_OK) {
        png_textp text = NULL;
        int n = png_get_text(st->png, st->info, &text, NULL);
        rc = sd_errorf(ctx, SD_ERR_INVALID, "'%s' has no '%s' text chunk", path, key);
        for (int i = 0; i < n; i++) {
            if (strcmp(text[i].key, key) != 0) continue;
            const bool itxt = text[i].compression == PNG_ITXT_COMPRESSION_NONE ||
                              text[i].compression == PNG_ITXT_COMPRESSION_zTXt;
            size_t len = itxt ? text[i].itxt_length : text[i].text_length;
            char *out = malloc(len * 2 + 1);
            if (!out) {
                rc = sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", path);
                break;
            }
            size_t o = 0;
            if (itxt) memcpy(out, text[i].text, len), o = len;
            else
                for (size_t k = 0; k < len; k++) o += utf8_put(out + o, (unsigned char)text[i].text[k]);
            out[o] = 0;
            *value = out;
            sd_ctx_clear(ctx);
            rc = SD_OK;
            break;
        }
    }
    png_state_free(st, false);
    return rc;
}

/* ---- writing --------------------------------------------------------------- */

/* Converts UTF-8 s to Latin-1 in out (strlen(s)+1 bytes). Returns 1 when
 * every character fits, 0 when one does not, -1 for invalid UTF-8. */
static int utf8_to_latin1(const char *s, char *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    int fits = 1;
    while (*p) {
        unsigned c = *p;
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || (len > 1 && c < 0xC2)) return -1;
        unsigned cp = len == 1 ? c : c & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if ((p[k] & 0xC0) != 0x80) return -1;
            cp = (cp << 6) | (p[k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        if (cp > 0xFF) fits = 0;
        else out[o++] = (char)cp;
        p += len;
    }
    out[o] = 0;
    return fits;
}

static int png_encode(struct sd_ctx *ctx, const char *path, struct png_state *st, const uint8_t *rgb, int w, int h,
                      const char *parameters, char *latin1, int fits) {
    size_t plen = strlen(path);
    st->tmp_path = malloc(plen + 16);
    if (!st->tmp_path) return sd_errorf(ctx, SD_ERR_NOMEM, "writing '%s': out of memory", path);
    snprintf(st->tmp_path, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(st->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(st->tmp_path);
        st->tmp_path = NULL;
        return sd_errorf(ctx, SD_ERR_IO, "cannot write '%s': cannot create a file in its directory: %s", path,
                         strerror(e));
    }
    fchmod(fd, 0644);
    st->f = fdopen(fd, "wb");
    if (!st->f) {
        close(fd);
        return sd_errorf(ctx, SD_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    st->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, st, state_error, state_warning);
    if (!st->png || !(st->info = png_create_info_struct(st->png)))
        return sd_errorf(ctx, SD_ERR_NOMEM, "writing '%s': cannot create libpng structures", path);
    if (setjmp(png_jmpbuf(st->png))) return sd_errorf(ctx, SD_ERR_IO, "writing '%s' failed: %s", path, st->msg);
    png_init_io(st->png, st->f);
    png_set_IHDR(st->png, st->info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (parameters) {
        png_text t;
        memset(&t, 0, sizeof t);
        t.key = (png_charp) "parameters";
        if (fits) {
            t.compression = PNG_TEXT_COMPRESSION_NONE;
            t.text = latin1;
            t.text_length = strlen(latin1);
        } else {
            t.compression = PNG_ITXT_COMPRESSION_NONE;
            t.text = (png_charp)parameters;
            t.itxt_length = strlen(parameters);
            t.lang = (png_charp) "";
            t.lang_key = (png_charp) "";
        }
        png_set_text(st->png, st->info, &t, 1);
    }
    png_write_info(st->png, st->info);
    for (int y = 0; y < h; y++) png_write_row(st->png, rgb + (size_t)y * (size_t)w * 3);
    png_write_end(st->png, st->info);
    FILE *f = st->f;
    st->f = NULL;
    if (fflush(f) != 0 || ferror(f)) {
        int e = errno;
        fclose(f);
        return sd_errorf(ctx, SD_ERR_IO, "writing '%s' failed: %s", path, strerror(e));
    }
    if (fclose(f) != 0) return sd_errorf(ctx, SD_ERR_IO, "writing '%s' failed: %s", path, strerror(errno));
    if (rename(st->tmp_path, path) != 0)
        return sd_errorf(ctx, SD_ERR_IO, "cannot write '%s': rename from %s failed: %s", path, st->tmp_path,
                         strerror(errno));
    free(st->tmp_path);
    st->tmp_path = NULL;
    return SD_OK;
}

int sd_png_write_rgb8(struct sd_ctx *ctx, const char *path, const uint8_t *rgb, int w, int h,
                      const char *parameters) {
    if (w < 1 || h < 1 || w > SD_PNG_MAX_SIDE || h > SD_PNG_MAX_SIDE)
        return sd_errorf(ctx, SD_ERR_INVALID, "cannot write '%s': size %dx%d outside 1..%d", path, w, h,
                         SD_PNG_MAX_SIDE);
    char *latin1 = NULL;
    int fits = 1;
    if (parameters) {
        latin1 = malloc(strlen(parameters) + 1);
        if (!latin1) return sd_errorf(ctx, SD_ERR_NOMEM, "writing '%s': out of memory", path);
        fits = utf8_to_latin1(parameters, latin1);
        if (fits < 0) {
            free(latin1);
            return sd_errorf(ctx, SD_ERR_INVALID, "cannot write '%s': the parameters text is not valid UTF-8", path);
        }
    }
    struct png_state *st = calloc(1, sizeof *st);
    int rc = st ? png_encode(ctx, path, st, rgb, w, h, parameters, latin1, fits)
                : sd_errorf(ctx, SD_ERR_NOMEM, "writing '%s': out of memory", path);
    png_state_free(st, true);
    free(latin1);
    return rc;
}

int sd_png_write(struct sd_ctx *ctx, const char *path, const float *chw, int w, int h, const char *parameters) {
    if (w < 1 || h < 1 || w > SD_PNG_MAX_SIDE || h > SD_PNG_MAX_SIDE)
        return sd_errorf(ctx, SD_ERR_INVALID, "cannot write '%s': size %dx%d outside 1..%d", path, w, h,
                         SD_PNG_MAX_SIDE);
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) return sd_errorf(ctx, SD_ERR_NOMEM, "writing '%s': out of memory for %dx%d", path, w, h);
    sd_image_to_rgb8(chw, w, h, rgb);
    int rc = sd_png_write_rgb8(ctx, path, rgb, w, h, parameters);
    free(rgb);
    return rc;
}
