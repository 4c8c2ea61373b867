/* runtime.h - backends plus a cache of planned graphs, for any model.
 *
 * A runtime owns the backends (the CPU always, as host and per-op fallback;
 * built through the backend registry, backend.h) and a small cache of built
 * graphs keyed by (kind, owner, dims): a graph is built and planned once per
 * key and reused by every later run with the same key. All graphs share each
 * backend's one activation arena, so peak activation memory is the largest
 * graph's. The runtime knows nothing of models: model/model_run.h runs the
 * CLIP, UNet and VAE graphs through sd_runtime_run.
 *
 * Threads: a runtime (its backends, arena and graphs) is used by one thread
 * at a time. Several runtimes may run graphs of one model in several
 * threads at once: graphs and backends never write into weights, and the
 * lazy weight load is locked (weights.h).
 */
#ifndef SDRT_RUNTIME_H
#define SDRT_RUNTIME_H

#include <stdio.h>

#include "backend.h"

enum sd_backend_kind { SD_BACKEND_CPU = 0, SD_BACKEND_OPENCL, SD_BACKEND_AUTO };

/* CPU convolution policy (cpu/op_conv2d.c): AUTO = the per-shape rule,
 * LOWMEM = the rule restricted to algorithms that keep no transformed weight
 * copy (SD 1.5 at 512x512 peaks at ~6 GB instead of ~13 GB, UNet ~1.4x
 * slower); the others force one algorithm (tests, benchmarks). */
enum sd_conv_policy {
    SD_CONV_POLICY_AUTO = 0, SD_CONV_POLICY_LOWMEM, SD_CONV_POLICY_DIRECT, SD_CONV_POLICY_NCHW,
    SD_CONV_POLICY_GEMM, SD_CONV_POLICY_WINO, SD_CONV_POLICY_COUNT
};
/* Compute precision of the GEMM-class ops (convolutions, linears,
 * attention). F32: everything in f32 (the diffusers parity mode; the
 * library default). BF16: bf16 operands with f32 accumulation and f32
 * activations between ops (CPU: oneDNN bf16 kernels; weights reordered once
 * into bf16 copies; OpenCL devices compute in f32). F16: OpenCL devices
 * keep the convolution and linear weights in half precision (half the
 * device memory; read with vload_half, core OpenCL) and, where the device
 * has cl_khr_fp16 and its half GEMM passes a check at start-up, multiply
 * them in half (CLBlast HGEMM); the CPU computes in f32. AUTO: per backend
 * - the CPU BF16 where it has bf16 instructions (avx512_bf16, AMX), else
 * F32; an OpenCL device F16 where it has cl_khr_fp16 and a working half
 * GEMM, else F32 (PoCL: F32); each backend logs what it picked. */
enum sd_precision { SD_PRECISION_F32 = 0, SD_PRECISION_AUTO, SD_PRECISION_BF16, SD_PRECISION_F16, SD_PRECISION_COUNT };
/* OpenCL attention: AUTO = blocked GEMMs (score blocks <= 64 MiB), or the flash kernel. */
enum sd_cl_attn { SD_CL_ATTN_AUTO = 0, SD_CL_ATTN_GEMM, SD_CL_ATTN_FLASH };
/* OpenCL GEMM engine: AUTO = our kernels on CPU-type devices and with a
 * precompiled dir, CLBlast elsewhere. */
enum sd_cl_gemm_engine { SD_CL_GEMM_AUTO = 0, SD_CL_GEMM_OWN, SD_CL_GEMM_CLBLAST };

/* Debug output (delivered through opts.log at SD_LOG_INFO). */
#define SD_DEBUG_SCHED 1u       /* every graph built: its splits and why each node is where it is */
#define SD_DEBUG_GRAPH 2u       /* every graph built: op and weight counts, activation arena */
#define SD_DEBUG_GRAPH_NODES 4u /* with SD_DEBUG_GRAPH: every node with its offset and lifetime */
#define SD_DEBUG_CL 8u          /* OpenCL: the device chosen, program counts, CLBlast tuning */

/* Everything a runtime and its backends are told. The library reads no
 * environment variable (the sdrt command maps SDRT_* variables into these;
 * docs/running.md). Start from sd_runtime_opts_init(). Strings are copied
 * where kept: they need to live only during sd_runtime_new (or the backend
 * constructor). Each backend takes what it needs. */
struct sd_runtime_opts {
    enum sd_backend_kind backend;   /* default SD_BACKEND_CPU; AUTO = OpenCL if a device works, else CPU alone */
    int threads;                    /* CPU (OpenMP) threads; 0 = all cores */
    enum sd_conv_policy conv;       /* CPU convolution policy; default AUTO */
    enum sd_precision precision;    /* GEMM-class compute precision; default F32 (the sdrt command: AUTO) */
    const char *cpu_disable;        /* "op,op": ops the CPU backend refuses (tests); NULL = none */
    int cl_device;                  /* OpenCL device: the flat index `sdrt devices` lists; -1 (default) =
                                     * the first GPU, else the first device */
    const char *cl_disable;         /* "op,op": ops the OpenCL backend refuses (they run on the CPU) */
    enum sd_cl_gemm_engine cl_gemm; /* default AUTO */
    int cl_xgemm_tuned;             /* 1 (default): CLBlast's Xgemm gets our PoCL-tuned parameters on
                                     * CPU-type devices; 0: CLBlast's own */
    int cl_rowwise;                 /* per-row norm/softmax kernels: -1 (default) = on for CPU-type
                                     * devices; 0 = work-group kernels; 1 = per-row */
    enum sd_cl_attn cl_attn;        /* default AUTO */
    const char *cl_cache_dir;       /* program-binary cache root (binaries go to DIR/cl, created);
                                     * NULL (default) = no disk cache */
    const char *weight_cache_dir;   /* CPU backend's prepared-weight cache root (packs go to DIR/weights,
                                     * created; cpu/cpu_wcache.h); NULL (default) = none */
    uint64_t weight_cache_max;      /* the most bytes of packs it keeps, least recently used removed
                                     * first; 0 (default) = 32 GiB */
    const char *cl_precompiled_dir; /* load every program from DIR/<program>.bin, never compile */
    const char *cl_export_dir;      /* write every program binary built or loaded to DIR/<program>.bin */
    const char *cl_test_fail;       /* tests: "op,op" fail on the device as if it returned an error */
    const char *cl_test_break;      /* tests: programs whose source gets a syntax error appended */
    int cl_test_hgemm;              /* tests: precision f16 takes the half-GEMM path on a device without
                                     * cl_khr_fp16, its HGEMM emulated (widen, f32 GEMM, narrow) */
    struct sd_log log;              /* warnings and debug output; default: none delivered */
    unsigned debug;                 /* SD_DEBUG_* flags; default 0 */
    int low_memory;                 /* 1: sd_generate drops each component's backend weight copies and the
                                     * activation arena once its phase is over (least peak memory; the
                                     * copies are made again for the next image); default 0 */
};
void sd_runtime_opts_init(struct sd_runtime_opts *o);

/* Names of the enum values above, for options and messages; parsers return
 * -1 for an unknown name. */
int sd_backend_kind_parse(const char *s);   /* "cpu" | "opencl" | "auto" */
int sd_conv_policy_parse(const char *s);    /* "auto" | "lowmem" | "direct" | "nchw" | "gemm" | "wino" */
const char *sd_conv_policy_name(int p);
int sd_precision_parse(const char *s);      /* "f32" | "auto" | "bf16" | "f16" */
const char *sd_precision_name(int p);
int sd_cl_attn_parse(const char *s);        /* "auto" | "gemm" | "flash" */
int sd_cl_gemm_parse(const char *s);        /* "auto" | "own" | "clblast" */

struct sd_runtime;

/* Returns a runtime owned by the caller, or NULL with ctx set. opts NULL =
 * the defaults. Errors of later calls go to ctx too, until
 * sd_runtime_set_ctx names another.
 *
 * Threads and jobs: a runtime serves one thread of control at a time. A
 * server keeps one runtime per device and, for each job it takes from its
 * queue, calls sd_runtime_set_ctx(rt, &job_ctx) first. The runtime's graphs,
 * scheduler and backends write into the runtime's own context, never into a
 * caller's; a failing call copies that message into the bound ctx and
 * clears it before the next call, so one job's message never lands in, or
 * survives into, another job's ctx (and no backend keeps a pointer to a
 * job's ctx that may be freed with the job). */
struct sd_runtime *sd_runtime_new(struct sd_ctx *ctx, const struct sd_runtime_opts *opts);
void sd_runtime_free(struct sd_runtime *rt);
/* Errors of the following calls on rt go to ctx (the current job's). */
void sd_runtime_set_ctx(struct sd_runtime *rt, struct sd_ctx *ctx);

#define SD_GRAPH_KEY_DIMS 6
#define SD_GRAPH_MAX_INPUTS 6

/* Identifies a cached graph: what it computes (kind, with `what` naming it in
 * errors), whose weights it reads (owner: a model id, so a released model's
 * graphs can be dropped) and the shape-determining numbers. */
struct sd_graph_key {
    int kind;
    uint64_t owner;
    int64_t dims[SD_GRAPH_KEY_DIMS];
    const char *what;
};

/* Builds a graph for a key: creates the inputs (sd_graph_input) into in[]
 * in the order sd_runtime_run receives their data, sets *n_in, and returns
 * the output node (or NULL with g->status set). */
typedef struct sd_tensor *(*sd_graph_build_fn)(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in);

/* Runs the graph for key (building it with build(user) on a cache miss):
 * copies inputs[i] into the graph's i-th input, computes, copies the output
 * into out. Returns SD_OK or an error (build errors prefixed with key->what). */
int sd_runtime_run(struct sd_runtime *rt, const struct sd_graph_key *key, sd_graph_build_fn build, void *user,
                   const void *const *inputs, void *out);

/* Peak activation arena over the graphs built so far, in bytes. */
size_t sd_runtime_arena_bytes(const struct sd_runtime *rt);
struct sd_ctx *sd_runtime_ctx(struct sd_runtime *rt);
/* Drops the cached graphs whose key has this owner, and every backend's
 * copies of weights[0..n) (all of the owner's weights: device uploads,
 * reordered layouts), so nothing of a released model stays behind. */
void sd_runtime_release_owner(struct sd_runtime *rt, uint64_t owner, struct sd_tensor *const *weights, int n);
/* The bytes of weights[0..n) changed in place (e.g. a LoRA merge): every
 * backend makes its copies of exactly these again before their next use. */
void sd_runtime_weights_changed(struct sd_runtime *rt, struct sd_tensor *const *weights, int n);
/* Memory between phases: the backends drop their copies (reordered, device)
 * of weights[0..n) - still valid weights, made again on their next use -
 * and free their activation arenas and scratch (made again by the next
 * run). Graphs stay cached. Not while a graph of rt runs. */
void sd_runtime_drop_copies(struct sd_runtime *rt, struct sd_tensor *const *weights, int n);
void sd_runtime_trim(struct sd_runtime *rt);
/* opts.low_memory of the runtime. */
int sd_runtime_low_memory(const struct sd_runtime *rt);
/* A signature of what in the runtime can change a result's rounding (its
 * backends and device, precision, convolution policy, low memory, threads).
 * Results kept across runtimes (the pipeline's embedding cache) are shared
 * only between runtimes with the same signature, so an image never depends
 * on which runtime of a pool encoded its prompt first. */
uint64_t sd_runtime_numerics(const struct sd_runtime *rt);

/* Profiling: when on, every run times each node (synchronised; a little
 * slower) and accumulates seconds, FLOPs and calls per (backend, op). */
struct sd_op_profile { double seconds, flops; int calls; long faults; /* minor page faults */ };
void sd_runtime_set_profile(struct sd_runtime *rt, int on); /* also resets the counters */
const struct sd_op_profile *sd_runtime_profile(const struct sd_runtime *rt, int backend, enum sd_op op);
int sd_runtime_n_backends(const struct sd_runtime *rt);
const char *sd_runtime_backend_name(const struct sd_runtime *rt, int i);
/* The i-th backend (priority order; the CPU last), NULL if out of range:
 * for tests and tools that inspect a backend's caches. */
struct sd_backend *sd_runtime_backend(struct sd_runtime *rt, int i);
void sd_runtime_profile_print(const struct sd_runtime *rt, FILE *f);

#endif
