/* cpu_dnnl.h - private oneDNN plumbing of the CPU backend (cpu_dnnl.c).
 *
 * One engine and one in-order stream per backend, and two caches:
 *
 *   primitives  keyed by a zeroed `struct sd_dnnl_key` (op, algorithm,
 *               dims, strides, attributes, version). Each shape's
 *               primitive(s) are created once; an entry also holds the
 *               memory objects an op binds per call (created without a
 *               buffer; the op sets their data handles), so running a
 *               cached primitive allocates nothing.
 *   weights     keyed by (weight data pointer, element count, the layout
 *               wanted). Holds the weight reordered ONCE into the layout a
 *               primitive prefers (one copy per layout asked for: a Linear
 *               run at two batch sizes may get two; weight_bytes counts
 *               them). The contract: a weight's bytes do not
 *               change while it is cached. Whoever changes weights in place
 *               (a LoRA merge) or frees and reuses their memory tells the
 *               backend (weights_changed / weights_released in backend.h,
 *               through sd_runtime_weights_changed and
 *               sd_runtime_release_model), which drops exactly the copies
 *               made from those weights' bytes. As a soft guard, each
 *               hit also compares a 64-value fingerprint of the source
 *               weight and re-reorders on a mismatch; it catches most
 *               accidents, it is not a proof.
 *   disk        (opts.weight_cache_dir, cpu_wcache.h) a copy missing here is
 *               first looked up on disk by its content key (deferred file
 *               weights only) and mapped read-only when found; one made by
 *               a reorder is queued and written at the end of the compute
 *               (sd_cpu_dnnl_cache_flush).
 *
 * Every oneDNN status is mapped at this boundary to SD_ERR_BACKEND with the
 * function's name and the code (sd_dnnl_check). Nothing here aborts.
 */
#ifndef SDRT_CPU_DNNL_H
#define SDRT_CPU_DNNL_H

#include <dnnl.h>

#include "cpu.h"
#include "hashmap.h"

#define SD_DNNL_KEY_VERSION 2
#define SD_DNNL_MAX_MEM 8

/* Internal primitive kinds (the `op` of a key). */
enum sd_dnnl_kind {
    SD_DNNL_CONV = 1,   /* oneDNN convolution (+ src/dst reorders) */
    SD_DNNL_CONV_GEMM,  /* our im2col + sgemm plan (no oneDNN primitive) */
    SD_DNNL_LINEAR,     /* matmul primitive with cached weights, fused bias */
    SD_DNNL_MATMUL,     /* batched matmul primitive on two activations */
};

/* Conv2d algorithms and policies (see op_conv2d.c for how one is picked). */
enum sd_conv_algo {
    SD_CONV_AUTO = 0,   /* policy: the per-shape rule (default) */
    SD_CONV_LOWMEM,     /* policy: the rule restricted to algorithms that keep no weight copy */
    SD_CONV_DIRECT,     /* oneDNN direct conv in its blocked layout, src/dst reordered per call */
    SD_CONV_NCHW,       /* oneDNN conv on plain NCHW src/dst (its gemm-based implementation) */
    SD_CONV_GEMM,       /* our tiled im2col + dnnl_sgemm on NCHW */
    SD_CONV_WINO,       /* oneDNN Winograd (3x3 stride 1 only), blocked, reordered per call */
    SD_CONV_ALGO_COUNT
};

/* Cache key. Always memset to zero before filling (hashed and compared as
 * bytes); every field that changes the primitive must be in it. */
struct sd_dnnl_key {
    int version;        /* SD_DNNL_KEY_VERSION */
    int kind;           /* enum sd_dnnl_kind */
    int algo;           /* op-specific algorithm choice */
    int flags;          /* op-specific (bias present, transposes, ...) */
    int64_t dims[16];   /* op-specific dims */
    int64_t strides[8]; /* op-specific strides / paddings */
    float alpha;        /* output scale (matmul) */
    int bf16;           /* bf16 operands (f32 accumulation and dst), from the backend's precision */
    int n_threads;      /* oneDNN bakes the thread count into some kernels */
};

/* A cached primitive and the objects it is run with. Fields an op does not
 * use stay zero/NULL. Owned by the cache. */
struct sd_dnnl_prim {
    struct sd_dnnl_key key;
    uint64_t hash;                    /* of key (the cache's index) */
    dnnl_primitive_t prim;            /* the op (NULL for SD_DNNL_CONV_GEMM) */
    dnnl_primitive_t pre, post;       /* optional src reorder, dst reorder */
    dnnl_memory_t mem[SD_DNNL_MAX_MEM]; /* bound per call via set_data_handle */
    dnnl_memory_desc_t weights_md;    /* layout the primitive wants its weights in */
    dnnl_memory_desc_t user_weights_md; /* our plain layout of the same weights */
    size_t scratch[4];                /* bytes of per-call intermediate buffers */
    int algo;                         /* algorithm actually used */
    int64_t iparam[8];                /* op-specific plan (tile sizes, ...) */
    char impl[64];                    /* oneDNN implementation name, for printing */
};

struct sd_dnnl_weight; /* cpu_dnnl.c */

struct sd_cpu_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    struct sd_dnnl_prim **prims;      /* the primitive cache's entries */
    size_t n_prims, cap_prims;
    struct sd_hmap prim_index;        /* hash of an entry's key -> its position in prims */
    struct sd_dnnl_weight **weights;  /* the weights cache's entries */
    size_t n_weights, cap_weights;
    struct sd_hmap w_index;           /* hash of (src, bytes) -> position in weights */
    int conv_algo;                    /* policy (opts.conv), SD_CONV_AUTO = rule */
    int bf16;                         /* precision resolved at init: 1 = bf16 GEMM-class ops */
    struct sd_dnnl_prim *last;        /* entry of the latest sd_dnnl_prim_get (bench/ prints its impl) */
    /* Counters (tests and profiling). */
    long prims_created, prim_hits, weight_reorders, weight_hits;
    size_t weight_bytes;              /* bytes held by reordered weight copies (allocated here) */
    size_t weight_mapped_bytes;       /* bytes of copies mapped from the disk cache */
    long weight_cache_hits;           /* copies mapped from the disk cache instead of reordered */
    struct sd_wcache *wcache;         /* disk cache of prepared weights (cpu_wcache.h); NULL = off */
    struct sd_log log;                /* opts.log, for the cache's messages */
    float *staging;                   /* f32 values of a deferred weight being reordered */
    size_t staging_size;
};

/* Returns SD_OK when s is dnnl_success; otherwise sets SD_ERR_BACKEND on
 * cpu->ctx with "oneDNN: <call> = <code> (<name>)" and returns it. */
int sd_dnnl_check(struct sd_cpu *cpu, dnnl_status_t s, const char *fn);
/* SD_DNNL_TRY(cpu, dnnl_call(...)): on failure sets the local `rc` and
 * jumps to `fail`. */
#define SD_DNNL_TRY(cpu, call)                                          \
    do {                                                                \
        if ((rc = sd_dnnl_check((cpu), (call), #call)) != SD_OK) goto fail; \
    } while (0)
/* TRY(expr): for our own int-returning helpers. */
#define SD_TRY(expr)                                                    \
    do {                                                                \
        if ((rc = (expr)) != SD_OK) goto fail;                          \
    } while (0)

/* Looks up key in the primitive cache. Returns the entry (hit) with
 * *created = 0, or a new zeroed entry holding a copy of key with
 * *created = 1 that the caller must fill, calling sd_dnnl_prim_drop() if
 * filling fails. Returns NULL (ctx set) on allocation failure. */
struct sd_dnnl_prim *sd_dnnl_prim_get(struct sd_cpu *cpu, const struct sd_dnnl_key *key, int *created);
/* Removes a (failed) entry from the cache and destroys what it holds. */
void sd_dnnl_prim_drop(struct sd_cpu *cpu, struct sd_dnnl_prim *e);

/* Returns (in *out, owned by the cache) a memory object holding weight t's
 * data (t->data, whose plain layout is user_md) in layout want_md,
 * reordering once per (t->data, want_md). When want_md equals user_md the
 * memory object wraps t->data without copying (a deferred weight is then
 * materialised); otherwise a deferred weight's values are read through a
 * staging buffer and its plain bytes are never made resident. Returns SD_OK
 * or SD_ERR_* with ctx set. */
int sd_dnnl_weights_get(struct sd_cpu *cpu, struct sd_tensor *t, const dnnl_memory_desc_t *user_md,
                        const dnnl_memory_desc_t *want_md, dnnl_memory_t *out);
/* A preparation of our own instead of a oneDNN reorder: writes the copy of
 * src (f32 values in user_md's plain layout) into dst (want_md's size). The
 * copy is then cached, dropped and kept on disk like a reordered one, so
 * want_md must name the prepared layout unambiguously: its dims differ from
 * user_md's (a reorder's never do); changing what a prep writes for the same
 * want_md needs a new SD_WCACHE format version. */
typedef void sd_dnnl_weight_prep_fn(const float *src, const dnnl_memory_desc_t *user_md, void *dst);
/* sd_dnnl_weights_get with prep (NULL = the oneDNN reorder). */
int sd_dnnl_weights_get_prep(struct sd_cpu *cpu, struct sd_tensor *t, const dnnl_memory_desc_t *user_md,
                             const dnnl_memory_desc_t *want_md, sd_dnnl_weight_prep_fn *prep, dnnl_memory_t *out);
/* Frees the staging buffer (the backend does at the end of each compute:
 * weights are reordered on a graph's first run, not in the steady state). */
void sd_cpu_dnnl_staging_release(struct sd_cpu *cpu);
/* Writes the reordered copies made since the last flush to the disk cache
 * (one pack; nothing without a cache). */
void sd_cpu_dnnl_cache_flush(struct sd_cpu *cpu);
/* Drops every cached reordered weight. */
void sd_cpu_dnnl_weights_forget(struct sd_cpu *cpu);
/* Drops the cached copies made from the bytes of w[0..n) (every copy whose
 * source overlaps one of them); other weights stay cached. */
void sd_cpu_dnnl_weights_drop(struct sd_cpu *cpu, struct sd_tensor *const *w, int n);

/* Creates a memory object for md with no buffer (bind with sd_dnnl_bind). */
int sd_dnnl_mem_new(struct sd_cpu *cpu, const dnnl_memory_desc_t *md, dnnl_memory_t *out);
/* Points m at p (the buffer must match m's descriptor). */
int sd_dnnl_bind(struct sd_cpu *cpu, dnnl_memory_t m, void *p);
/* Creates a reorder primitive from -> to. */
int sd_dnnl_reorder_new(struct sd_cpu *cpu, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                        dnnl_primitive_t *out);
/* Runs p with the given arguments; waits for completion when `wait`. */
int sd_dnnl_exec(struct sd_cpu *cpu, dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args, int wait);
/* Creates the primitive of pd (and destroys pd), copying its
 * implementation name into impl (impl_n bytes). */
int sd_dnnl_prim_from_pd(struct sd_cpu *cpu, dnnl_primitive_desc_t pd, dnnl_primitive_t *out, char *impl,
                         size_t impl_n);

/* Whether oneDNN runs bf16 kernels natively here (avx512_core_bf16 or AMX),
 * and the name of the ISA oneDNN dispatches to. */
int sd_dnnl_has_bf16(void);
const char *sd_dnnl_isa_name(void);
/* The dnnl data type of the backend's GEMM operands (bf16 or f32). */
static inline dnnl_data_type_t sd_dnnl_op_type(const struct sd_cpu *cpu) {
    return cpu->dnnl->bf16 ? dnnl_bf16 : dnnl_f32;
}

/* Forces a conv2d algorithm or policy (SD_CONV_AUTO restores the rule).
 * Entries already cached keep theirs; the algorithm is part of the key, so
 * a forced run creates its own. For tests and bench/. */
void sd_cpu_dnnl_set_conv_algo(struct sd_cpu *cpu, enum sd_conv_algo algo);
const char *sd_conv_algo_name(int algo);

#endif
