/* safetensors.h - reading (mmap, validated) and writing safetensors files.
 *
 * Format (sd-reference §0.3): an 8-byte little-endian u64 N, N bytes of JSON
 * header, then the data section. The header maps each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to
 * the data section; an optional "__metadata__" maps strings to strings.
 *
 * Reading contract:
 * - sd_st_open maps the file read-only; sd_st_open_memory borrows a buffer
 *   (which must outlive the file object). Nothing is copied: tensor data
 *   pointers point into the mapping/buffer.
 * - Everything is validated on open, and each failure is SD_ERR_FORMAT (or
 *   SD_ERR_IO for the file itself) with a message naming the file and the
 *   tensor: size < 8, header length beyond the file or over 100 MB, bad JSON
 *   (including duplicate names), entries that are not objects or lack/mistype
 *   dtype/shape/data_offsets, unknown dtypes, more than 8 dims, negative or
 *   non-integer dims, shape products that overflow, offsets outside the data
 *   section, a byte span that does not match shape x dtype size, overlapping
 *   tensors, and a malformed __metadata__. Gaps between tensors and trailing
 *   bytes are accepted (we only need every tensor to be sound).
 * - Dtypes F32, F16, BF16, I32, I64 are loadable (`type` set). The other
 *   safetensors dtypes (F64, I8, U8, I16, U16, U32, U64, BOOL, F8_*, F6_*,
 *   F4, C64) are accepted on open with type = SD_DTYPE_COUNT; asking for such
 *   a tensor through sd_st_require fails with "unsupported dtype".
 * - The file object is reference-counted so that a weights container can
 *   keep the mapping alive after the opener closes it: sd_st_ref adds a
 *   reference, sd_st_close drops one and unmaps at zero.
 */
#ifndef SDRT_SAFETENSORS_H
#define SDRT_SAFETENSORS_H

#include <stdatomic.h>

#include "hashmap.h"
#include "json.h"
#include "tensor.h"

#define SD_ST_MAX_DIMS 8
#define SD_ST_MAX_HEADER 100000000u /* bytes, as the reference implementation */

struct sd_st_tensor {
    const char *name;
    enum sd_dtype type;   /* SD_DTYPE_COUNT: a known dtype sdrt does not load (see dtype) */
    const char *dtype;    /* the safetensors name: "F16", "BF16", "F8_E4M3", ... */
    int n_dims;           /* 0 (a scalar) .. SD_ST_MAX_DIMS */
    int64_t shape[SD_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;     /* inside the mapping; for writing: the bytes to write */
};

struct sd_st_file {
    char *path;                      /* as given to open (or the memory name) */
    struct sd_st_tensor *tensors;    /* in header order */
    int n_tensors;
    const struct sd_json *metadata;  /* the "__metadata__" object, or NULL */
    size_t size;                     /* whole file, bytes */
    size_t data_start;               /* 8 + header length */
    const unsigned char *base;       /* file bytes */
    /* private */
    int mapped;                      /* base is our mmap (else a borrowed buffer) */
    struct sd_json *header;
    struct sd_hmap index;            /* FNV-1a of a tensor name -> its position */
    atomic_int refs;
};

/* Opens and validates `path`. On success *out is a new file object (one
 * reference, release with sd_st_close). Returns SD_OK, SD_ERR_IO,
 * SD_ERR_FORMAT or SD_ERR_NOMEM with ctx set and *out = NULL. */
int sd_st_open(struct sd_ctx *ctx, const char *path, struct sd_st_file **out);
/* Same over buf[0..len), which is borrowed and must outlive the file object;
 * `name` is used in messages. */
int sd_st_open_memory(struct sd_ctx *ctx, const char *name, const void *buf, size_t len, struct sd_st_file **out);
/* Adds a reference; returns f. */
struct sd_st_file *sd_st_ref(struct sd_st_file *f);
/* Drops a reference; the last one unmaps and frees. NULL is a no-op. */
void sd_st_close(struct sd_st_file *f);

/* The tensor called `name`, or NULL (no error recorded). O(1). */
const struct sd_st_tensor *sd_st_find(const struct sd_st_file *f, const char *name);
/* Like sd_st_find but records "missing tensor 'x' in FILE" or "tensor 'x' in
 * FILE has unsupported dtype F64" on ctx and returns NULL. */
const struct sd_st_tensor *sd_st_require(struct sd_ctx *ctx, const struct sd_st_file *f, const char *name);
/* A "__metadata__" value, or NULL. */
const char *sd_st_metadata(const struct sd_st_file *f, const char *key);
/* "[320, 4, 3, 3]" into buf; returns buf. */
char *sd_st_shape_str(int n_dims, const int64_t *shape, char *buf, size_t n);
/* Element size in bytes of a dtype name ("F16" -> 2), 0 when unknown or sub-byte. */
size_t sd_st_dtype_size(const char *dtype);

/* Writes n tensors (name, type, or dtype name when type == SD_DTYPE_COUNT,
 * n_dims, shape, nbytes and data of each; nbytes must equal the shape's
 * size) and optional metadata (a NULL-terminated list of key, value, key,
 * value, ...) to `path`. The header lists tensors in the given order; the
 * data section is ordered by element size, largest first, so every tensor is
 * aligned to its element size (the header is padded to a multiple of 8). The
 * file is written to "<path>.tmp", fsynced and renamed over `path`; on any
 * failure the temporary is removed and `path` is left untouched. Returns
 * SD_OK, SD_ERR_INVALID, SD_ERR_IO or SD_ERR_NOMEM with ctx set. */
int sd_st_write(struct sd_ctx *ctx, const char *path, const struct sd_st_tensor *tensors, int n,
                const char *const *metadata);

#endif
