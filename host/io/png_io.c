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
#include <zlib.h>

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

/* Where the PNG bytes come from: a file or a memory buffer. */
struct png_src {
    FILE *f;
    const uint8_t *buf;
    size_t len, pos;
};

struct png_state {
    FILE *f;
    png_structp png;
    png_infop info;
    struct png_src src;
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

static void mem_read(png_structp png, png_bytep out, size_t n) {
    struct png_state *st = png_get_io_ptr(png);
    if (n > st->src.len - st->src.pos) png_error(png, "Read Error: unexpected end of data");
    memcpy(out, st->src.buf + st->src.pos, n);
    st->src.pos += n;
}

/* Reads n bytes at offset off of the source (0 when they are not there). */
static int src_read_at(struct png_src *s, uint64_t off, uint8_t *out, size_t n) {
    if (s->buf) {
        if (off > s->len || n > s->len - off) return 0;
        memcpy(out, s->buf + off, n);
        return 1;
    }
    return fseeko(s->f, (off_t)off, SEEK_SET) == 0 && fread(out, 1, n, s->f) == n;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Walks the chunk headers (no data is read) before libpng sees the file:
 * libpng 1.6 allocates and zeroes an ancillary chunk's declared length
 * (up to 2 GiB for tEXt, zTXt, iTXt, sPLT) before reading it and applies
 * none of its user limits there, so a 96-byte file could cost 2 GiB and
 * seconds. Every chunk must fit in the data that is there, ancillary ones
 * in SD_PNG_MAX_CHUNK, and there are at most SD_PNG_MAX_CHUNKS of them. */
static int scan_chunks(struct sd_ctx *ctx, const char *name, struct png_src *s, uint64_t size, uint32_t dims[2]) {
    uint64_t off = 8;
    dims[0] = dims[1] = 0;
    for (int n = 0;; n++) {
        uint8_t h[8];
        if (n >= SD_PNG_MAX_CHUNKS)
            return sd_errorf(ctx, SD_ERR_FORMAT, "'%s' has more than %d PNG chunks; refused", name, SD_PNG_MAX_CHUNKS);
        if (off + 8 > size || !src_read_at(s, off, h, 8))
            return sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is a truncated or corrupt PNG: it ends before its IEND chunk", name);
        const uint32_t len = be32(h);
        char type[5];
        for (int i = 0; i < 4; i++) type[i] = (h[4 + i] >= 32 && h[4 + i] < 127) ? (char)h[4 + i] : '?';
        type[4] = 0;
        if (len > 0x7FFFFFFFu || (uint64_t)len + 12 > size - off)
            return sd_errorf(ctx, SD_ERR_FORMAT,
                             "'%s' is a truncated or corrupt PNG: chunk '%s' at offset %llu says %u bytes but the file has %llu left",
                             name, type, (unsigned long long)off, len, (unsigned long long)(size - off - 8));
        const bool ancillary = (h[4] & 0x20) != 0;
        if (ancillary && len > SD_PNG_MAX_CHUNK)
            return sd_errorf(ctx, SD_ERR_FORMAT, "'%s': PNG chunk '%s' of %u bytes is larger than the %d allowed", name,
                             type, len, SD_PNG_MAX_CHUNK);
        uint8_t d[8];
        if (n == 0 && len == 13 && !memcmp(h + 4, "IHDR", 4) && src_read_at(s, off + 8, d, 8))
            dims[0] = be32(d), dims[1] = be32(d + 4);
        off += (uint64_t)len + 12;
        if (!memcmp(h + 4, "IEND", 4)) return SD_OK;
    }
}

/* Decodes the source into st->pixels as RGB or RGBA, 8 or 16 bit (big
 * endian). Returns SD_OK or an error with ctx set; st is cleaned by png_state_free. */
static int png_decode(struct sd_ctx *ctx, const char *name, struct png_state *st, int max_side) {
    unsigned char sig[8];
    uint64_t size = st->src.len;
    if (st->src.f) {
        struct stat sb;
        if (fstat(fileno(st->src.f), &sb) != 0) return sd_errorf(ctx, SD_ERR_IO, "cannot stat '%s': %s", name, strerror(errno));
        size = (uint64_t)sb.st_size;
    }
    int got = src_read_at(&st->src, 0, sig, 8);
    if (!got || png_sig_cmp(sig, 0, 8) != 0)
        return sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is not a PNG file (%s)", name,
                         !got ? "shorter than the 8-byte signature" : "bad signature");
    uint32_t dims[2];
    int rc = scan_chunks(ctx, name, &st->src, size, dims);
    if (rc) return rc;
    if (dims[0] > (uint32_t)max_side || dims[1] > (uint32_t)max_side) /* libpng's user limits say only "Invalid IHDR" */
        return sd_errorf(ctx, SD_ERR_INVALID, "'%s' is %ux%u, larger than the %dx%d allowed", name, (unsigned)dims[0],
                         (unsigned)dims[1], max_side, max_side);
    if (st->src.f && fseeko(st->src.f, 8, SEEK_SET) != 0)
        return sd_errorf(ctx, SD_ERR_IO, "cannot read '%s': %s", name, strerror(errno));
    st->src.pos = 8;
    st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, state_error, state_warning);
    if (!st->png || !(st->info = png_create_info_struct(st->png)))
        return sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': cannot create libpng structures", name);
    if (setjmp(png_jmpbuf(st->png)))
        return sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is a truncated or corrupt PNG: %s", name, st->msg);
    if (st->src.f) png_init_io(st->png, st->src.f);
    else png_set_read_fn(st->png, st, mem_read);
    png_set_sig_bytes(st->png, 8);
    png_set_user_limits(st->png, (png_uint_32)max_side, (png_uint_32)max_side);
    png_set_chunk_malloc_max(st->png, SD_PNG_MAX_CHUNK); /* also bounds decompressed zTXt/iTXt/iCCP */
    png_set_chunk_cache_max(st->png, SD_PNG_MAX_TEXT_CHUNKS);
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
                         name, st->channels, st->depth);
    st->pixels = malloc(st->rowbytes * (size_t)st->h);
    st->rows = malloc(sizeof *st->rows * (size_t)st->h);
    if (!st->pixels || !st->rows)
        return sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory for %dx%d pixels", name, st->w, st->h);
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
    if (st->src.f) fclose(st->src.f);
    if (st->tmp_path) {
        unlink(st->tmp_path); /* still set: the write failed */
        free(st->tmp_path);
    }
    free(st->pixels);
    free(st->rows);
    free(st);
}

/* A read state on the file at path, or on buf/len when path is NULL. */
static struct png_state *open_src(struct sd_ctx *ctx, const char *path, const void *buf, size_t len, const char *name,
                                  int *rc) {
    struct png_state *st = calloc(1, sizeof *st);
    *rc = SD_OK;
    if (!st) {
        *rc = sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", name);
        return NULL;
    }
    if (path) {
        st->src.f = fopen(path, "rb");
        if (!st->src.f) *rc = sd_errorf(ctx, SD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    } else {
        st->src.buf = buf, st->src.len = len;
    }
    return st;
}

/* Channel value c (0..2) of pixel i, in [0, 1]. */
static float px(const struct png_state *st, int64_t y, int64_t x, int c) {
    const uint8_t *p = st->rows[y] + (size_t)x * (size_t)st->channels * (size_t)(st->depth / 8);
    if (st->depth == 8) return (float)p[c] / 255.0f;
    return (float)((p[2 * c] << 8) | p[2 * c + 1]) / 65535.0f;
}

static int read_image(struct sd_ctx *ctx, const char *path, const void *buf, size_t len, const char *name, int max_side,
                      float **chw, int *w, int *h) {
    if (max_side < 1 || max_side > SD_PNG_MAX_SIDE)
        return sd_errorf(ctx, SD_ERR_INVALID, "reading '%s': maximum side %d outside 1..%d", name, max_side,
                         SD_PNG_MAX_SIDE);
    int rc;
    struct png_state *st = open_src(ctx, path, buf, len, name, &rc);
    if (rc == SD_OK) rc = png_decode(ctx, name, st, max_side);
    if (rc == SD_OK) {
        const int64_t plane = (int64_t)st->w * st->h;
        float *out = malloc((size_t)plane * 3 * sizeof *out);
        if (!out) {
            rc = sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", name);
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

int sd_png_read(struct sd_ctx *ctx, const char *path, int max_side, float **chw, int *w, int *h) {
    return read_image(ctx, path, NULL, 0, path, max_side, chw, w, h);
}

int sd_png_read_mem(struct sd_ctx *ctx, const char *name, const void *buf, size_t len, int max_side, float **chw, int *w,
                    int *h) {
    return read_image(ctx, NULL, buf, len, name, max_side, chw, w, h);
}

int sd_png_read_mask(struct sd_ctx *ctx, const char *path, int max_side, float **mask, int *w, int *h) {
    if (max_side < 1 || max_side > SD_PNG_MAX_SIDE)
        return sd_errorf(ctx, SD_ERR_INVALID, "reading '%s': maximum side %d outside 1..%d", path, max_side,
                         SD_PNG_MAX_SIDE);
    int rc;
    struct png_state *st = open_src(ctx, path, NULL, 0, path, &rc);
    if (rc == SD_OK) rc = png_decode(ctx, path, st, max_side);
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

/* Inflates n bytes at z into a malloc'd, NUL-terminated buffer of at most
 * SD_PNG_MAX_CHUNK bytes (*out_len). Returns 0 on success. */
static int inflate_text(const uint8_t *z, size_t n, char **out, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return 1;
    size_t cap = n * 4 + 64 < SD_PNG_MAX_CHUNK ? n * 4 + 64 : SD_PNG_MAX_CHUNK, len = 0;
    char *buf = malloc(cap + 1);
    int zrc = Z_OK;
    zs.next_in = (Bytef *)z, zs.avail_in = (uInt)n;
    while (buf && zrc == Z_OK) {
        if (len == cap) {
            if (cap == SD_PNG_MAX_CHUNK) break;
            cap = cap * 2 < SD_PNG_MAX_CHUNK ? cap * 2 : SD_PNG_MAX_CHUNK;
            char *nb = realloc(buf, cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        zs.next_out = (Bytef *)buf + len, zs.avail_out = (uInt)(cap - len);
        zrc = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
    }
    inflateEnd(&zs);
    if (!buf || zrc != Z_STREAM_END) { free(buf); return 1; }
    buf[len] = 0;
    *out = buf, *out_len = len;
    return 0;
}

/* The text of one tEXt/zTXt/iTXt chunk (data d, n bytes) when its keyword is
 * key: 1 and *value (UTF-8, malloc'd) when found, 0 when another keyword,
 * -1 (ctx set) when the chunk is malformed or memory runs out. */
static int text_chunk(struct sd_ctx *ctx, const char *name, const char *type, const uint8_t *d, size_t n,
                      const char *key, char **value) {
    const uint8_t *nul = memchr(d, 0, n < 80 ? n : 80);
    if (!nul || nul == d) {
        sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is a corrupt PNG: %s chunk without a 1..79 byte keyword", name, type);
        return -1;
    }
    if (strcmp((const char *)d, key) != 0) return 0;
    const uint8_t *p = nul + 1, *end = d + n;
    int compressed = 0, utf8 = 0;
    if (!strcmp(type, "zTXt")) {
        if (p >= end || *p != 0) goto bad;
        compressed = 1, p++;
    } else if (!strcmp(type, "iTXt")) {
        if (end - p < 2 || p[0] > 1 || p[1] != 0) goto bad;
        compressed = p[0], utf8 = 1, p += 2;
        for (int k = 0; k < 2; k++) { /* language tag, translated keyword */
            const uint8_t *z = memchr(p, 0, (size_t)(end - p));
            if (!z) goto bad;
            p = z + 1;
        }
    }
    char *raw = NULL;
    size_t len = (size_t)(end - p);
    if (compressed) {
        if (inflate_text(p, len, &raw, &len)) goto bad;
    } else {
        raw = malloc(len + 1);
        if (!raw) goto nomem;
        memcpy(raw, p, len), raw[len] = 0;
    }
    if (utf8) { *value = raw; return 1; }
    char *out = malloc(len * 2 + 1); /* Latin-1 -> UTF-8 */
    if (!out) { free(raw); goto nomem; }
    size_t o = 0;
    for (size_t k = 0; k < len; k++) o += utf8_put(out + o, (unsigned char)raw[k]);
    out[o] = 0;
    free(raw);
    *value = out;
    return 1;
bad:
    sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is a corrupt PNG: malformed %s chunk '%s'", name, type, key);
    return -1;
nomem:
    sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", name);
    return -1;
}

/* Text chunks are read here, not through libpng: libpng only reaches the
 * text after the image data by decoding every pixel. The chunk walk of
 * scan_chunks has bounded every length; each text chunk's CRC is checked. */
static int read_text(struct sd_ctx *ctx, const char *path, const void *buf, size_t len, const char *name,
                     const char *key, char **value) {
    int rc;
    struct png_state *st = open_src(ctx, path, buf, len, name, &rc);
    uint64_t size = len;
    uint8_t sig[8];
    if (rc == SD_OK && st->src.f) {
        struct stat sb;
        if (fstat(fileno(st->src.f), &sb) != 0) rc = sd_errorf(ctx, SD_ERR_IO, "cannot stat '%s': %s", name, strerror(errno));
        size = (uint64_t)sb.st_size;
    }
    if (rc == SD_OK && (!src_read_at(&st->src, 0, sig, 8) || png_sig_cmp(sig, 0, 8) != 0))
        rc = sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is not a PNG file", name);
    uint32_t dims[2];
    if (rc == SD_OK) rc = scan_chunks(ctx, name, &st->src, size, dims);
    int found = 0;
    for (uint64_t off = 8; rc == SD_OK && !found;) {
        uint8_t h[8], crc[4];
        src_read_at(&st->src, off, h, 8); /* scan_chunks has checked these reads */
        const uint32_t n = be32(h);
        char type[5];
        memcpy(type, h + 4, 4), type[4] = 0;
        if (!strcmp(type, "IEND")) break;
        if (!strcmp(type, "tEXt") || !strcmp(type, "zTXt") || !strcmp(type, "iTXt")) {
            uint8_t *d = malloc(n ? n : 1);
            if (!d) { rc = sd_errorf(ctx, SD_ERR_NOMEM, "reading '%s': out of memory", name); break; }
            if (!src_read_at(&st->src, off + 8, d, n) || !src_read_at(&st->src, off + 8 + n, crc, 4))
                rc = sd_errorf(ctx, SD_ERR_IO, "cannot read '%s'", name);
            else if ((uint32_t)crc32(crc32(0, h + 4, 4), d, n) != be32(crc))
                rc = sd_errorf(ctx, SD_ERR_FORMAT, "'%s' is a corrupt PNG: %s chunk CRC error", name, type);
            else {
                int r = text_chunk(ctx, name, type, d, n, key, value);
                if (r < 0) rc = ctx->status ? ctx->status : SD_ERR_FORMAT;
                found = r > 0;
            }
            free(d);
        }
        off += (uint64_t)n + 12;
    }
    if (rc == SD_OK && !found) rc = sd_errorf(ctx, SD_ERR_INVALID, "'%s' has no '%s' text chunk", name, key);
    png_state_free(st, false);
    return rc;
}

int sd_png_read_text(struct sd_ctx *ctx, const char *path, const char *key, char **value) {
    return read_text(ctx, path, NULL, 0, path, key, value);
}

int sd_png_read_text_mem(struct sd_ctx *ctx, const char *name, const void *buf, size_t len, const char *key,
                         char **value) {
    return read_text(ctx, NULL, buf, len, name, key, value);
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

static int png_write_stream(struct sd_ctx *ctx, const char *path, struct png_state *st, const uint8_t *rgb, int w,
                            int h, const char *parameters, char *latin1, int fits);
static int png_file_done(struct sd_ctx *ctx, const char *path, struct png_state *st);

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
    int rc = png_write_stream(ctx, path, st, rgb, w, h, parameters, latin1, fits);
    return rc ? rc : png_file_done(ctx, path, st);
}

/* Writes the PNG to st->f (already open); the caller closes it. */
static int png_write_stream(struct sd_ctx *ctx, const char *path, struct png_state *st, const uint8_t *rgb, int w,
                            int h, const char *parameters, char *latin1, int fits) {
    if (setjmp(png_jmpbuf(st->png))) return sd_errorf(ctx, SD_ERR_IO, "writing '%s' failed: %s", path, st->msg);
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
    return SD_OK;
}

static int png_file_done(struct sd_ctx *ctx, const char *path, struct png_state *st) {
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

int sd_png_encode_rgb8(struct sd_ctx *ctx, const uint8_t *rgb, int w, int h, const char *parameters, uint8_t **out,
                       size_t *len) {
    const char *name = "PNG in memory";
    *out = NULL, *len = 0;
    if (w < 1 || h < 1 || w > SD_PNG_MAX_SIDE || h > SD_PNG_MAX_SIDE)
        return sd_errorf(ctx, SD_ERR_INVALID, "cannot encode a PNG of %dx%d: outside 1..%d", w, h, SD_PNG_MAX_SIDE);
    char *latin1 = NULL, *buf = NULL;
    size_t size = 0;
    int fits = 1, rc;
    if (parameters) {
        if (!(latin1 = malloc(strlen(parameters) + 1))) return sd_errorf(ctx, SD_ERR_NOMEM, "encoding a PNG: out of memory");
        if ((fits = utf8_to_latin1(parameters, latin1)) < 0) {
            free(latin1);
            return sd_errorf(ctx, SD_ERR_INVALID, "cannot encode a PNG: the parameters text is not valid UTF-8");
        }
    }
    struct png_state *st = calloc(1, sizeof *st);
    if (!st) rc = sd_errorf(ctx, SD_ERR_NOMEM, "encoding a PNG: out of memory");
    else if (!(st->f = open_memstream(&buf, &size))) rc = sd_errorf(ctx, SD_ERR_NOMEM, "encoding a PNG: out of memory");
    else if (!(st->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, st, state_error, state_warning)) ||
             !(st->info = png_create_info_struct(st->png)))
        rc = sd_errorf(ctx, SD_ERR_NOMEM, "encoding a PNG: cannot create libpng structures");
    else {
        png_init_io(st->png, st->f);
        rc = png_write_stream(ctx, name, st, rgb, w, h, parameters, latin1, fits);
        FILE *f = st->f;
        st->f = NULL;
        if (fclose(f) != 0 && !rc) rc = sd_errorf(ctx, SD_ERR_NOMEM, "encoding a PNG: out of memory");
        if (!rc) *out = (uint8_t *)buf, *len = size, buf = NULL;
    }
    png_state_free(st, true);
    free(buf);
    free(latin1);
    return rc;
}
