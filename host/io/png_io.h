/* png_io.h - PNG files in and out (libpng), images as float planes.
 *
 * Image data is float [-1, 1], planar RGB (one [3, h, w] NCHW image), the
 * VAE's pixel space (sd-reference §6.7). Masks are float [0, 1], one plane,
 * white (1) = repaint. Every function returns SD_OK or an SD_ERR_* status
 * with a message naming the file and what was wrong (cannot open, not a PNG,
 * truncated or corrupt, cannot create in the directory, ...).
 *
 * Reading converts every PNG colour type the way PIL's Image.convert("RGB")
 * does (what diffusers' load_image and A1111 use): palette -> its colours,
 * grey -> R = G = B, alpha is dropped (NOT composited; transparent pixels
 * keep their stored colour). 16-bit channels keep their precision
 * (v / 65535; PIL would reduce them to 8 bits). gAMA/iCCP are ignored, as PIL
 * does. Masks are the luma of that RGB (PIL "L": (19595 R + 38470 G + 7471 B
 * + 2^15) >> 16 for 8-bit) / 255; alpha is ignored there too.
 *
 * Reading is safe on untrusted input (uploads): before libpng sees the data,
 * the chunk headers are walked and every chunk must fit in the bytes that are
 * there (a 96-byte file saying "2 GB of tEXt follow" is refused at once,
 * where libpng 1.6 would allocate and zero the 2 GB first), ancillary chunks
 * are at most SD_PNG_MAX_CHUNK bytes (decompressed zTXt/iTXt/iCCP too), at
 * most SD_PNG_MAX_TEXT_CHUNKS text/ancillary chunks are kept, and the image
 * is at most max_side x max_side pixels, checked from the header before any
 * pixel is decoded (pass the largest size the caller can use, e.g. the
 * pipeline's SD_GEN_MAX_SIDE).
 *
 * Writing goes to a temporary file in the destination directory that is
 * renamed over the target only after libpng and the stdio close succeeded,
 * so a failed write never leaves a partial PNG (the new file gets mode 0644).
 */
#ifndef SDRT_PNG_IO_H
#define SDRT_PNG_IO_H

#include "sdrt.h"

/* Largest width or height read or written. */
#define SD_PNG_MAX_SIDE 32768
/* Largest ancillary chunk (text, ICC profile, ...), stored or decompressed. */
#define SD_PNG_MAX_CHUNK (8 << 20)
/* Most ancillary chunks libpng keeps, and most chunks of any kind in a file. */
#define SD_PNG_MAX_TEXT_CHUNKS 256
#define SD_PNG_MAX_CHUNKS (1 << 20)

/* diffusers postprocess: v = clamp(x/2 + 0.5, 0, 1) * 255, rounded half to
 * even, for each of the 3 planes of chw ([3, h, w]); rgb is interleaved
 * h*w*3 bytes. */
void sd_image_to_rgb8(const float *chw, int w, int h, uint8_t *rgb);

/* Writes an 8-bit RGB PNG (rgb: h rows of w*3 bytes). parameters (UTF-8, may
 * be NULL) is stored as the "parameters" text chunk in A1111's way: tEXt
 * (Latin-1) when every character fits Latin-1, else uncompressed iTXt. */
int sd_png_write_rgb8(struct sd_ctx *ctx, const char *path, const uint8_t *rgb, int w, int h,
                      const char *parameters);

/* sd_image_to_rgb8 + sd_png_write_rgb8. */
int sd_png_write(struct sd_ctx *ctx, const char *path, const float *chw, int w, int h, const char *parameters);

/* The same PNG bytes sd_png_write_rgb8 writes, into *out (malloc'd, *len
 * bytes; the caller frees). */
int sd_png_encode_rgb8(struct sd_ctx *ctx, const uint8_t *rgb, int w, int h, const char *parameters, uint8_t **out,
                       size_t *len);

/* Reads any PNG of at most max_side (1..SD_PNG_MAX_SIDE) pixels per side as
 * [3, h, w] floats in [-1, 1] (x/max * 2 - 1); a larger one is refused
 * (SD_ERR_INVALID) before its pixels are decoded. *chw is malloc'd, owned by
 * the caller (free()); set only on success. */
int sd_png_read(struct sd_ctx *ctx, const char *path, int max_side, float **chw, int *w, int *h);
/* The same from len bytes at buf; name is used in messages. */
int sd_png_read_mem(struct sd_ctx *ctx, const char *name, const void *buf, size_t len, int max_side, float **chw,
                    int *w, int *h);

/* Reads a mask PNG as [h, w] floats in [0, 1] (luma / max). */
int sd_png_read_mask(struct sd_ctx *ctx, const char *path, int max_side, float **mask, int *w, int *h);

/* Reads the first text chunk (tEXt, zTXt or iTXt) named key, as UTF-8,
 * without decoding the pixels. *value is malloc'd (free()). Returns
 * SD_ERR_INVALID if there is no such chunk. */
int sd_png_read_text(struct sd_ctx *ctx, const char *path, const char *key, char **value);
int sd_png_read_text_mem(struct sd_ctx *ctx, const char *name, const void *buf, size_t len, const char *key,
                         char **value);

#endif
