/* cl_impl.h - private state and helpers of the OpenCL backend, shared by
 * cl_*.c and the per-op host files cl/op_*.c.
 *
 * An op is `int sd_cl_<op>(struct sd_cl *cl, struct sd_tensor *node)`: it
 * enqueues its kernels (or CLBlast calls) on cl->queue, reading sources and
 * writing node's bytes in device memory (sd_cl_buf_of), and returns SD_OK or
 * SD_ERR_BACKEND with the call, the kernel and the code on cl->ctx. Ops never
 * block except where noted; the queue is in order.
 */
#ifndef SDRT_CL_IMPL_H
#define SDRT_CL_IMPL_H

#include <CL/cl.h>

#include "cl.h"
#include "hashmap.h"

struct sd_cpu;

/* Kernel sources embedded at build time (build/gen/cl_kernels.c, from
 * the .cl files in cl/kernels by cl/embed_kernels.sh). "common" is prepended to all. */
struct sd_cl_source { const char *name; const char *text; };
extern const struct sd_cl_source sd_cl_sources[];
extern const int sd_cl_n_sources;

#define SD_CL_MAX_PROGRAMS 32
#define SD_CL_MAX_KERNELS 48

enum { SD_CL_PROG_UNTRIED = 0, SD_CL_PROG_OK = 1, SD_CL_PROG_FAILED = -1 };

struct sd_cl_program {
    cl_program prog;
    int state;
};

struct sd_cl_kernel_slot { int prog; char name[48]; cl_kernel k; };

struct sd_cl_weight {
    const struct sd_tensor *key; /* the tensor (+1 transposed, +2 half: weight_buf) */
    const void *data;
    size_t nbytes;
    uint64_t probe;              /* fingerprint of the bytes (cl_backend.c) */
    int probed;                  /* probe taken (the bytes were resident at upload) */
    int half;                    /* mem holds halves (else floats) */
    size_t dev_bytes;            /* bytes of mem */
    cl_mem mem;
};

struct sd_cl {
    struct sd_ctx *ctx;
    struct sd_cl_device_info info;
    cl_platform_id platform;
    cl_device_id dev;
    cl_context context;
    cl_command_queue queue;
    cl_mem arena;
    size_t arena_size;
    cl_mem scratch;              /* im2col columns etc., grown on demand */
    size_t scratch_size;
    cl_mem wscratch;             /* a half weight widened to f32 for an f32 GEMM (sd_cl_weight_f32) */
    size_t wscratch_size;
    int half_weights;            /* precision f16: conv/linear weights resident in half */
    int hgemm;                   /* ... and multiplied in half: operands and C in half (sd_cl_gemm_half) */
    int hgemm_emulated;          /* opts.cl_test_hgemm: the half GEMM as widen + f32 GEMM + narrow */
    size_t half_gemms;           /* half GEMMs run (sd_cl_gemm_wh; tests) */
    cl_mem hscratch;             /* half operands of a half GEMM (narrowed x / columns, C) */
    size_t hscratch_size;
    cl_mem emu;                  /* f32 operands of the emulated half GEMM */
    size_t emu_size;
    cl_mem flag;                 /* one int for kernels that report errors (embedding) */
    struct sd_cl_weight *weights; /* resident weights, in upload order */
    size_t n_weights, cap_weights;
    struct sd_hmap weight_index; /* sd_hash_ptr(key) -> position in weights */
    size_t weight_bytes;         /* device bytes of the resident weights */
    size_t weight_bytes_peak;    /* the most weight_bytes ever held */
    size_t half_uploads;         /* uploads in half (of uploads) */
    size_t half_fallbacks;       /* weights kept in f32 in half mode (values beyond half's range) */
    size_t host_bytes;           /* host bytes held for weights now: only during an upload (a transpose) */
    size_t host_bytes_peak;      /* the most host_bytes ever held */
    size_t uploads;              /* weight uploads so far (plain and transposed) */
    struct sd_cl_program progs[SD_CL_MAX_PROGRAMS];
    struct sd_cl_kernel_slot kernels[SD_CL_MAX_KERNELS];
    int n_kernels;
    unsigned disabled_ops[(SD_OP_COUNT + 31) / 32]; /* opts.cl_disable */
    unsigned failed_ops[(SD_OP_COUNT + 31) / 32];   /* device error at run time */
    unsigned test_fail_ops[(SD_OP_COUNT + 31) / 32]; /* opts.cl_test_fail (tests) */
    int gemm_own;                /* our gemm kernel instead of CLBlast */
    int rowwise;                 /* CPU-type device: one work-item per softmax row */
    int attn_gemm;               /* attention as blocked GEMMs (opts.cl_attn) */
    struct sd_log log;           /* opts.log: warnings; info with SD_DEBUG_CL */
    int log_info;                /* opts.debug & SD_DEBUG_CL */
    char precompiled_dir[1024];  /* opts.cl_precompiled_dir ("" = none) */
    char export_dir[1024];       /* opts.cl_export_dir ("" = none) */
    char cache_dir[1024];        /* opts.cl_cache_dir + "/cl", created ("" = no disk cache) */
    char test_break[128];        /* opts.cl_test_break (tests) */
    const struct sd_graph *graph; /* graph being computed (arena offsets: sd_graph_offs) */
    char build_opts[256];
};

typedef int (*sd_cl_op_fn)(struct sd_cl *cl, struct sd_tensor *node);

/* A buffer address: cl_mem plus byte offset. */
struct sd_cl_buf { cl_mem mem; size_t offs; };

/* A kernel argument (see SD_CL_MEM/U64/I32/F32). */
struct sd_cl_arg { size_t size; const void *ptr; };
#define SD_CL_MEM(m) ((struct sd_cl_arg){sizeof(cl_mem), &(cl_mem){(m)}})
#define SD_CL_U64(v) ((struct sd_cl_arg){sizeof(cl_ulong), &(cl_ulong){(cl_ulong)(v)}})
#define SD_CL_I32(v) ((struct sd_cl_arg){sizeof(cl_int), &(cl_int){(cl_int)(v)}})
#define SD_CL_F32(v) ((struct sd_cl_arg){sizeof(cl_float), &(cl_float){(cl_float)(v)}})
#define SD_CL_LOCAL(bytes) ((struct sd_cl_arg){(bytes), NULL})
#define SD_CL_BUF(b) SD_CL_MEM((b).mem), SD_CL_U64((b).offs)
#define SD_CL_NARGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* --- cl_device.c ---------------------------------------------------------- */
const char *sd_cl_err_name(int code);
/* Returns SD_OK if err is CL_SUCCESS, else SD_ERR_BACKEND with
 * "opencl: call(what) = code NAME" on ctx. */
int sd_cl_check(struct sd_ctx *ctx, cl_int err, const char *call, const char *what);
/* Resolves device_index (flat index; -1 = the first GPU, else the first
 * device) and fills the ids, info and a retained reference to the
 * process-wide context of its platform (whose driver notices go to log at
 * SD_LOG_INFO when log_info). */
int sd_cl_device_open(struct sd_ctx *ctx, int device_index, const struct sd_log *log, int log_info,
                      struct sd_cl_device_info *info, cl_platform_id *platform, cl_device_id *dev, cl_context *context);
void sd_cl_context_release(cl_context context);

/* --- cl_program.c --------------------------------------------------------- */
int sd_cl_program_index(const char *name); /* -1 if no such source */
/* Makes program `name` available (cache, precompiled dir or source build).
 * Returns SD_OK, or an error (also remembered: the program is then FAILED
 * and never tried again). */
int sd_cl_program_ensure(struct sd_cl *cl, int prog);
/* Returns the kernel `kname` of program `prog` (built on demand, cached on cl). */
cl_kernel sd_cl_kernel(struct sd_cl *cl, const char *prog, const char *kname);
void sd_cl_programs_free(struct sd_cl *cl);
void sd_cl_log_counts(const struct sd_cl *cl);

/* --- cl_cache.c ----------------------------------------------------------- */
/* The key covers source, options, device name, driver, platform version
 * and SD_CL_CACHE_FORMAT. Writes 33 chars (32 hex + NUL) into hex. */
void sd_cl_cache_key(const char *const *srcs, int n_srcs, const char *opts, const struct sd_cl_device_info *info,
                     char hex[33]);
/* Writes root + "/cl" into out and creates it; returns false (out = "") if
 * root is NULL or empty or the directory cannot be made. */
bool sd_cl_cache_dir_make(const char *root, char *out, size_t n);
/* Reads a cached binary for key: malloc'd bytes in *bin, size in *n, or
 * returns false (missing, corrupt, mismatching: *rejected set if a file
 * existed but was not valid). */
bool sd_cl_cache_load(const char *dir, const char *hex, unsigned char **bin, size_t *n, bool *rejected);
/* Stores a binary (tmp file then rename); failures are silent. */
void sd_cl_cache_store(const char *dir, const char *hex, const unsigned char *bin, size_t n);
/* Reads/writes a whole file (for precompiled dir / export). */
int sd_cl_file_read(struct sd_ctx *ctx, const char *path, unsigned char **bin, size_t *n);
int sd_cl_file_write(struct sd_ctx *ctx, const char *path, const unsigned char *bin, size_t n);

/* --- cl_backend.c --------------------------------------------------------- */
/* Device address of a tensor: weights are uploaded on first use. */
int sd_cl_buf_of(struct sd_cl *cl, const struct sd_tensor *t, struct sd_cl_buf *out);
/* The f32 device values of GEMM weight w (transposed: its transposed copy)
 * for an f32 GEMM: the resident copy itself, or in half mode its halves
 * widened into the weight scratch (valid until the next call). A w that is
 * not a weight (an arena tensor) is returned as sd_cl_buf_of does. */
int sd_cl_weight_f32(struct sd_cl *cl, const struct sd_tensor *w, bool transposed, struct sd_cl_buf *out);
/* For a half GEMM: true with w's resident half copy in *out when cl->hgemm,
 * the graph accepts half activations (graph.h half_ok: not the VAE's) and w
 * is a weight held in half; false (nothing done, *rc = SD_OK) when
 * the op should take the f32 path (not a weight, or kept in f32 for its
 * range); false with *rc set on a device error. */
bool sd_cl_weight_half(struct sd_cl *cl, const struct sd_tensor *w, struct sd_cl_buf *out, int *rc);
/* Returns a scratch buffer of at least n bytes for half operands (grown on demand). */
int sd_cl_hscratch(struct sd_cl *cl, size_t n, cl_mem *out);
/* A buffer of at least n bytes in *m (its size in *size), grown on demand:
 * the old one is released at once (OpenCL defers that until queued users
 * finish). */
int sd_cl_grow(struct sd_cl *cl, cl_mem *m, size_t *size, size_t n, const char *what);
/* Returns a scratch buffer of at least n bytes (grown on demand). */
int sd_cl_scratch(struct sd_cl *cl, size_t n, cl_mem *out);
/* Sets args and enqueues k over global[0..dims) with local (or NULL). */
int sd_cl_run(struct sd_cl *cl, cl_kernel k, const char *what, const struct sd_cl_arg *args, int n_args, int dims,
              const size_t *global, const size_t *local);
/* Rounds n up to a multiple of m. */
static inline size_t sd_cl_round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
/* Work-group size for a 1-d reduction kernel (power of two <= want). */
size_t sd_cl_wg_size(struct sd_cl *cl, cl_kernel k, size_t want);

/* --- cl_gemm.c ------------------------------------------------------------ */
/* Row-major batched C = alpha*op(A)*op(B) (+ C if accumulate), leading
 * dimensions lda/ldb/ldc, batch strides in elements; offsets are bytes. */
struct sd_cl_gemm {
    int trans_a, trans_b;
    size_t m, n, k;
    float alpha, beta;
    struct sd_cl_buf a, b, c;
    size_t lda, ldb, ldc;
    size_t stride_a, stride_b, stride_c; /* elements */
    size_t batch;
    const char *what;
};
int sd_cl_gemm(struct sd_cl *cl, const struct sd_cl_gemm *g);
/* Applies tuned CLBlast parameters where we have them (CPU-type devices),
 * unless xgemm_tuned is 0 (opts.cl_xgemm_tuned: CLBlast's own). */
void sd_cl_gemm_init(struct sd_cl *cl, int xgemm_tuned);
/* C = alpha*op(A)*op(B) (+ beta*C) with A, B and C in half (byte offsets;
 * CLBlast's HGEMM, or its emulation under opts.cl_test_hgemm). */
int sd_cl_gemm_half(struct sd_cl *cl, const struct sd_cl_gemm *g);
/* A GEMM of an op whose weight (A if a_is_weight, else B) is resident in
 * half, the other operand and C in f32 (beta 0; C rows of ldc, batches
 * stride_c = m * ldc): the f32 operand narrowed into the half scratch, the
 * half GEMM into a half C there, C widened into g->c. */
int sd_cl_gemm_wh(struct sd_cl *cl, const struct sd_cl_gemm *g, bool a_is_weight);
/* y (half) = x (f32) rounded to nearest even, n values. */
int sd_cl_narrow(struct sd_cl *cl, struct sd_cl_buf x, struct sd_cl_buf y, size_t n, const char *what);
/* y[r * ldy + c] (f32) = x[r * cols + c] (half), a rows x cols block. */
int sd_cl_widen(struct sd_cl *cl, struct sd_cl_buf x, struct sd_cl_buf y, size_t rows, size_t cols, size_t ldy,
                const char *what);
/* Runs the device's half GEMM on a fixed problem against a host reference:
 * *rel_err = max |error| / max |result| (INFINITY if unusable). Returns
 * SD_OK, or the error of a failed call (CLBlast's kNoHalfPrecision, ...). */
int sd_cl_hgemm_check(struct sd_cl *cl, double *rel_err);
/* Adds bias[(i / inner) % channels] to n elements of y. */
int sd_cl_bias(struct sd_cl *cl, struct sd_cl_buf y, struct sd_cl_buf bias, size_t n, size_t inner, size_t channels,
               const char *what);

/* --- the ops (cl/op_*.c) -------------------------------------------------- */
/* sd_cl_op_<name> for every kernel op of ops.def (declared for all; the ones
 * this backend implements are those in cl_backend.c's table). */
#define X(e, name, kind, flops) SD_OP_IF_KERNEL(kind, int sd_cl_op_##name(struct sd_cl *cl, struct sd_tensor *node);)
#include "ops.def"
#undef X

/* Softmax of scale*x over rows of C, one work-item per row (op_softmax.c);
 * causal row r is query q0 + r % L. */
int sd_cl_softmax_rows(struct sd_cl *cl, struct sd_cl_buf x, struct sd_cl_buf y, size_t rows, size_t C, size_t L,
                       size_t q0, float scale, int causal, const char *what);

/* Attention limits (kernels/attention.cl SD_DV_MAX). */
#define SD_CL_ATTN_DV_MAX 512

#endif
