/* weights.h - the set of tensors a model owns, as f32 sd_tensors by name.
 *
 *   struct sd_weights *w = sd_weights_new(ctx);
 *   if (sd_weights_add_file(w, f, "model.diffusion_model.", ldm_to_diffusers, NULL)) goto fail;
 *   sd_st_close(f);                          // w keeps its own reference
 *   struct sd_tensor *k = sd_weights_get(w, "conv_in.weight", 4, (int64_t[]){320, -1, 3, 3});
 *   if (!k) goto fail;                       // ctx: "tensor 'conv_in.weight' in ... has shape ..."
 *
 * Contract:
 * - Every tensor is f32 (flags SD_TF_WEIGHT, index -1, PyTorch-order shape
 *   via sd_tensor_set_shape). Tensor pointers stay valid until
 *   sd_weights_free. The data is read-only: F32 data may point straight into
 *   a PROT_READ file mapping.
 * - Loading is lazy: sd_weights_add_file only registers names and shapes; a
 *   tensor's data is produced on its first sd_weights_get (or by
 *   sd_weights_load_all). F32 tensors whose data is 4-byte aligned are used in
 *   place (zero copy; the file stays mapped while w lives); F16/BF16/I32/I64
 *   and misaligned F32 are converted once (sd_convert_to_f32, OpenMP) into
 *   one arena per added file, reserved up front but only touched - and so
 *   only resident - as tensors are loaded. After converting from a mapped
 *   file, the source pages are dropped from our resident set
 *   (madvise DONTNEED), so a model never holds both the f16 and f32 copies.
 *   Tensors never asked for cost no memory.
 * - Deferred mode (sd_weights_set_deferred before adding files, for a
 *   model whose backends keep weights in layouts of their own): a file
 *   tensor of rank >= 2 with at least SD_WEIGHTS_DEFER_MIN elements is
 *   flagged SD_TF_DEFERRED. Getting it validates it and fixes its data
 *   address (stable for w's life) but makes no f32 bytes: a backend builds
 *   its own copy with sd_weight_read_f32 (converted from the mapped file
 *   into the caller's buffer, nothing kept), and whoever reads the plain
 *   bytes in place (an op without its own copy, LoRA, an upload) first calls
 *   sd_weight_materialize, which converts them into the arena once; they
 *   then stay. Until then the address is not readable (reading faults).
 *   So a model's plain f32 copy is resident only for the tensors read in
 *   place; the rest live in the file (page cache) and in the backends'
 *   copies.
 * - Threads: build a model's weights (add_file, add, add_slice, reshape)
 *   from one thread. Once built, sd_weights_get/find/load_all may be called
 *   from any number of threads at once (the lazy load runs under a mutex),
 *   so two runtimes can build graphs of one model concurrently. Nothing but
 *   the loader writes a tensor: graphs and backends only read them.
 * - Errors (NULL / status with ctx set) name the tensor and the source:
 *   "missing tensor 'x.y.weight' in FILE", "tensor 'x' in FILE has shape
 *   [320, 4, 3, 3], expected [320, 9, 3, 3]", "tensor 'x' in FILE has
 *   unsupported dtype F64".
 */
#ifndef SDRT_WEIGHTS_H
#define SDRT_WEIGHTS_H

#include "safetensors.h"
#include "tensor.h"

struct sd_weights;

/* Maps a file's tensor name (already stripped of the prefix) to the name the
 * model uses. Returns `name` itself, a string written into buf[0..size), or
 * NULL to skip the tensor. */
typedef const char *(*sd_weights_rename_fn)(const char *name, char *buf, size_t size, void *user);

/* Returns an empty container owned by the caller, or NULL (ctx set). */
struct sd_weights *sd_weights_new(struct sd_ctx *ctx);
/* Frees every tensor and releases the files. NULL-safe. */
void sd_weights_free(struct sd_weights *w);

/* Registers the tensors of f whose name starts with strip_prefix (NULL or ""
 * for all), under the name with the prefix removed, passed through rename
 * when given. Takes its own reference to f. Tensors of unsupported dtype or
 * more than 4 dims are registered too and fail only when asked for. Returns
 * SD_OK, or SD_ERR_FORMAT on a name clash with a tensor already in w (w is
 * then unchanged), SD_ERR_NOMEM. */
int sd_weights_add_file(struct sd_weights *w, struct sd_st_file *f, const char *strip_prefix,
                        sd_weights_rename_fn rename, void *user);

/* The tensor `name`, loaded, after checking its shape: n_dims < 0 skips the
 * check; otherwise the rank must be n_dims and each dims[i] must match unless
 * it is -1. Returns NULL with ctx set on a missing tensor, a wrong shape, an
 * unsupported dtype or rank, or out of memory. Marks the tensor used. */
struct sd_tensor *sd_weights_get(struct sd_weights *w, const char *name, int n_dims, const int64_t *dims);
/* Like sd_weights_get without a shape check, but a missing tensor returns
 * NULL without recording an error (for optional tensors). */
struct sd_tensor *sd_weights_find(struct sd_weights *w, const char *name);
/* The same, recording errors on ctx (the caller's job) instead of the
 * context w was created with: for graph builders running in several
 * threads, each with its own context. */
struct sd_tensor *sd_weights_get_to(struct sd_weights *w, struct sd_ctx *ctx, const char *name, int n_dims,
                                    const int64_t *dims);
struct sd_tensor *sd_weights_find_to(struct sd_weights *w, struct sd_ctx *ctx, const char *name);
/* Rank of `name` with its dims (outermost first) in dims[0..8), without
 * loading it; -1 when absent. For model detection (SD1 vs SD2, inpainting). */
int sd_weights_shape(const struct sd_weights *w, const char *name, int64_t dims[SD_ST_MAX_DIMS]);

/* Adds a tensor computed at load time. Takes ownership of data (allocated
 * with malloc or sd_malloc_aligned, n elements for the shape), also on
 * failure. Returns the tensor, or NULL (duplicate name, bad shape, no memory). */
struct sd_tensor *sd_weights_add(struct sd_weights *w, const char *name, int n_dims, const int64_t *dims, float *data);
/* Adds `name` as rows [begin, end) along dim 0 of tensor `src` (loading it):
 * e.g. OpenCLIP's in_proj_weight [3d, d] split into q, k and v. The slice
 * aliases src's data (no copy). Returns the tensor, or NULL with ctx set. */
struct sd_tensor *sd_weights_add_slice(struct sd_weights *w, const char *name, const char *src, int64_t begin,
                                       int64_t end);

/* Changes the shape of `name` to one with the same number of elements (no
 * data moves): e.g. LDM VAE attention 1x1 convs [C, C, 1, 1] used as Linear
 * [C, C]. Returns SD_OK or SD_ERR_INVALID (missing, element count). */
int sd_weights_reshape(struct sd_weights *w, const char *name, int n_dims, const int64_t *dims);

/* Loads every registered tensor now, in parallel over tensors (e.g. to time
 * loading or fail early; tensors no one asks for then cost memory too).
 * Returns SD_OK, or the first error (every loadable tensor is loaded). */
int sd_weights_load_all(struct sd_weights *w);

/* Deferred mode (see the contract above); call before sd_weights_add_file. */
#define SD_WEIGHTS_DEFER_MIN 1024 /* elements: a page of f32; biases and norms (rank 1) never are */
void sd_weights_set_deferred(struct sd_weights *w, int on);
/* Makes the f32 bytes of weight t readable at t->data (converting a
 * deferred tensor once, under w's lock; thread-safe; a no-op for any
 * tensor not flagged SD_TF_DEFERRED). SD_OK or SD_ERR_* on ctx. */
int sd_weight_materialize(struct sd_ctx *ctx, struct sd_tensor *t);
/* Whether t->data holds t's f32 values now: true for every loaded tensor
 * except a deferred one converted from f16/bf16 and not yet materialised
 * (its address is then not readable) - a replacement from
 * sd_weights_set_data and a zero-copy mapping are readable; false for a
 * tensor not loaded (no data). Thread-safe. */
int sd_weight_resident(const struct sd_tensor *t);
/* Writes weight t's f32 values (sd_tensor_nelements(t)) into dst: from its
 * bytes when readable, else converted from the file without keeping them
 * (a zero-copy mapping's pages are dropped from the resident set after).
 * The values are the ones sd_weight_materialize would make. Thread-safe. */
int sd_weight_read_f32(struct sd_ctx *ctx, const struct sd_tensor *t, float *dst);
/* The same for rows [row0, row0 + n_rows) along the outermost dim (e.g. an
 * embedding table's looked-up rows). SD_ERR_INVALID outside the tensor. */
int sd_weight_read_rows(struct sd_ctx *ctx, const struct sd_tensor *t, int64_t row0, int64_t n_rows, float *dst);

/* The content key of a deferred weight, for caches of data derived from it
 * that outlive the process (the CPU backend's prepared-weight disk cache):
 * sd_hash_bulk (hashmap.h) over the file's bytes of the tensor, its dtype
 * and shape. Returns 1 with *h set when t's values are exactly those bytes
 * converted (a deferred file tensor whose data was not replaced by
 * sd_weights_set_data, e.g. by a LoRA merge), 0 otherwise (a patched,
 * computed or sliced tensor, or one never deferred: derive nothing from its
 * key). The file's bytes are read once per tensor (the hash is kept) and
 * their mapped pages dropped from the resident set after. Thread-safe. */
int sd_weight_file_hash(const struct sd_tensor *t, uint64_t *h);

/* Number of tensors, including slices. */
int sd_weights_count(const struct sd_weights *w);
/* The i-th tensor (insertion order; data NULL while not loaded), e.g. to
 * tell backends that a model's weights are released or changed. */
struct sd_tensor *sd_weights_tensor(struct sd_weights *w, int i);
/* Total elements of all tensors except slices (which alias their source). */
int64_t sd_weights_n_params(const struct sd_weights *w);
/* Bytes of f32 data currently held: converted (materialised) and added
 * tensors, plus zero-copy tensors mapped from files (not slices, not
 * deferred tensors never materialised). */
size_t sd_weights_nbytes(const struct sd_weights *w);
/* Name of the i-th tensor (in insertion order) and whether it was asked for
 * by sd_weights_get/find/add_slice - a model loader can list unused tensors. */
const char *sd_weights_name(const struct sd_weights *w, int i);
int sd_weights_used(const struct sd_weights *w, int i);

/* Position of `name` (for sd_weights_tensor), or -1 when absent. */
int sd_weights_index(const struct sd_weights *w, const char *name);
/* For a slice (sd_weights_add_slice): the position of the tensor it aliases,
 * with its first row in *row; -1 for a tensor that is no slice. */
int sd_weights_slice_of(const struct sd_weights *w, int i, int64_t *row);
/* Points loaded tensor i (not a slice) at `data` (same shape, f32; owned by
 * the caller, who must keep it alive while in use) and every slice of it at
 * the matching rows of `data`: LoRA gives a tensor a private merged copy and
 * later hands back the original pointer. Not safe while graphs of the model
 * run; tell the runtimes (sd_runtime_weights_changed) before and after.
 * Returns SD_OK or SD_ERR_INVALID (bad index, a slice, not loaded). */
int sd_weights_set_data(struct sd_weights *w, int i, float *data);

#endif
