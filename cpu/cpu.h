/* cpu.h - the CPU backend: oneDNN primitives and OpenMP kernels.
 *
 * One function per kernel op of ops.def, `int sd_cpu_op_<name>(struct sd_cpu
 * *cpu, struct sd_tensor *node)`, in cpu/op_<op>.c; the declarations below
 * and the dispatch table in cpu_backend.c are generated from ops.def. An op
 * reads node->src[i]->data and writes node->data (host memory, f32
 * contiguous unless noted) and returns SD_OK or an error set on cpu->ctx.
 * Ops never allocate per call on the hot path; scratch comes from
 * sd_cpu_scratch() and oneDNN primitives/reordered weights from the caches
 * in cpu_dnnl.c.
 */
#ifndef SDRT_CPU_H
#define SDRT_CPU_H

#include "runtime.h" /* struct sd_runtime_opts; includes backend.h */

struct sd_cpu_dnnl; /* oneDNN engine, stream and caches (cpu_dnnl.c) */

struct sd_cpu {
    struct sd_ctx *ctx;
    int n_threads;
    void *arena;
    size_t arena_size;
    void *scratch;          /* per-backend scratch, grown on demand */
    size_t scratch_size;
    struct sd_cpu_dnnl *dnnl;
    unsigned disabled_ops[(SD_OP_COUNT + 31) / 32]; /* opts.cpu_disable (tests) */
    uint64_t op_serial;     /* nodes run so far (sd_cpu_run_node) */
    /* What the scratch holds after a bf16 linear: x (n values) as bf16,
     * made by node op_serial == xbf16_serial; the next node, if a linear of
     * the same x (q, k, v), reuses it (it asks for the same scratch size, so
     * the scratch is still that one). Reset at each compute. */
    const float *xbf16_src;
    int64_t xbf16_n;
    uint64_t xbf16_serial;
};

typedef int sd_cpu_op_fn(struct sd_cpu *cpu, struct sd_tensor *node);

/* Returns a new CPU backend (the host backend) with opts' threads (0 = all
 * cores), convolution policy and disabled ops (opts NULL = the defaults).
 * Owned by the caller; free with sd_backend_free. NULL with ctx set on a
 * bad option. */
struct sd_backend *sd_cpu_backend_new(struct sd_ctx *ctx, const struct sd_runtime_opts *opts);
struct sd_cpu *sd_cpu_of(struct sd_backend *b);

/* Returns a scratch buffer of at least n bytes valid until the next call
 * (NULL with ctx set on allocation failure). Not thread-safe: call from the
 * op's serial part and partition it among threads. */
void *sd_cpu_scratch(struct sd_cpu *cpu, size_t n);

/* Big host buffers of the backend (arena, scratch, weight copies): from
 * 4 MiB on, 2 MiB-aligned and advised to use transparent huge pages
 * (MADV_HUGEPAGE: 512x fewer page faults when first touched, fewer TLB
 * misses after); smaller ones 64-byte aligned. Free with sd_cpu_free. */
void *sd_cpu_alloc(size_t n);
void sd_cpu_free(void *p);

/* Runs one node on the CPU (used by tests and by other backends' fallbacks). */
int sd_cpu_run_node(struct sd_cpu *cpu, struct sd_tensor *node);

/* Whether a CPU backend created with this enum sd_precision computes its
 * GEMM-class ops in bf16 on this machine (AUTO: avx512_bf16 or AMX; BF16:
 * any AVX-512, emulated without bf16 instructions), and the name of the
 * ISA oneDNN dispatches to ("avx512_core_bf16", "avx2", ...). */
int sd_cpu_precision_bf16(int precision);
const char *sd_cpu_isa(void);

/* Attention with bf16 operands and f32 accumulation (op_attention_bf16.c),
 * which sd_cpu_op_attention runs for non-causal attention on a backend
 * computing in bf16 in builds with AVX-512 BF16 (sd_bf16_kernels_built). */
int sd_cpu_attention_bf16(struct sd_cpu *cpu, struct sd_tensor *node);

/* oneDNN plumbing (cpu_dnnl.c). */
/* conv_policy: enum sd_conv_policy; precision: enum sd_precision (AUTO is
 * resolved here from the CPU's ISA and the choice logged at SD_LOG_DEBUG). */
/* weight_cache_dir: opts.weight_cache_dir (NULL = no disk cache). */
int sd_cpu_dnnl_init(struct sd_cpu *cpu, int conv_policy, int precision, const struct sd_log *log,
                     const char *weight_cache_dir);
void sd_cpu_dnnl_free(struct sd_cpu *cpu);
/* The weight lifecycle slots (backend.h): drop the oneDNN copies (reordered,
 * Winograd) of exactly these weights. */
void sd_cpu_weights_released(struct sd_backend *b, struct sd_tensor *const *w, int n);
void sd_cpu_weights_changed(struct sd_backend *b, struct sd_tensor *const *w, int n);

/* The ops: sd_cpu_op_<name> for every kernel op of ops.def. */
#define X(e, name, kind, flops) SD_OP_IF_KERNEL(kind, sd_cpu_op_fn sd_cpu_op_##name;)
#include "ops.def"
#undef X

#endif
