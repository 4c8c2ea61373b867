/* cl.h - the OpenCL backend (public part): device listing, the backend
 * constructor, and the program-cache counters and export used by tests and
 * by `sdrt devices`.
 *
 * The backend implements struct sd_backend_i (host/backend.h) over one
 * OpenCL device: one cl_context per platform per process, one in-order
 * queue per backend, one arena cl_mem addressed by byte offsets, weights
 * uploaded once and kept resident (keyed by the weight tensor). GEMMs go
 * through CLBlast on GPUs/accelerators and our kernels/gemm.cl on CPU-type
 * devices (SDRT_CL_GEMM overrides; always ours in precompiled mode); every
 * other op is a kernel of ours in cl/kernels/.
 *
 * Environment (read when a backend is created):
 *   SDRT_CL_DEVICE=P:D        platform P, device D (default: first GPU, else first device)
 *   SDRT_CL_DISABLE=a,b       ops the backend refuses (scheduler runs them on the CPU)
 *   SDRT_CL_GEMM=clblast|own  GEMM engine (default: own on CPU devices, else clblast)
 *   SDRT_CL_XGEMM=default     keep CLBlast's own Xgemm parameters on CPU devices (else ours, tuned on PoCL)
 *   SDRT_CL_ROWWISE=0|1       per-row norm/softmax kernels (default: on for CPU devices) or work-group ones
 *   SDRT_CL_ATTN=flash|gemm   attention kernel (default: blocked GEMMs, score blocks <= 64 MiB)
 *   SDRT_CL_LOG=1             print "cl: built N programs, loaded M from cache" and fallbacks
 *   SDRT_CACHE_DIR=DIR        program-binary cache root (default $XDG_CACHE_HOME/sdrt, ~/.cache/sdrt); files go to DIR/cl
 *   SDRT_CL_CACHE=0           no program-binary cache
 *   SDRT_CL_PRECOMPILED=DIR   load every program from DIR/<program>.bin, never compile source
 *   SDRT_CL_EXPORT=DIR        write every program binary built or loaded to DIR/<program>.bin
 */
#ifndef SDRT_CL_H
#define SDRT_CL_H

#include "backend.h"

struct sd_cl_device_info {
    int index;                  /* flat index over all platforms (sd_cl_backend_new) */
    int platform, device;       /* indices as in SDRT_CL_DEVICE=P:D */
    char platform_name[128];
    char platform_version[128];
    char name[128];
    char vendor[128];
    const char *type;           /* "gpu", "cpu", "accelerator", "other" */
    uint64_t global_mem, local_mem, max_alloc;
    unsigned compute_units;
    size_t max_work_group;
    int fp16, fp64;             /* cl_khr_fp16, cl_khr_fp64 */
    int has_compiler;           /* CL_DEVICE_COMPILER_AVAILABLE */
    char cl_version[128];       /* CL_DEVICE_VERSION */
    char c_version[128];        /* CL_DEVICE_OPENCL_C_VERSION */
    char driver_version[128];
};

/* Fills out[0..max) with every device of every platform and sets *n to the
 * number found (may exceed max). Returns SD_OK (also with 0 devices: no ICD
 * or no platform is not an error here) or SD_ERR_CL. */
int sd_cl_list_devices(struct sd_ctx *ctx, struct sd_cl_device_info *out, int max, int *n);

/* Returns a new OpenCL backend on device `device_index` (flat index from
 * sd_cl_list_devices), or with -1 the one named by SDRT_CL_DEVICE, else the
 * first GPU, else the first device. Owned by the caller (sd_backend_free).
 * NULL with ctx set when there is no usable device. */
struct sd_backend *sd_cl_backend_new(struct sd_ctx *ctx, int device_index);

/* Process-wide program counters: compiled from source, loaded from the
 * disk cache, loaded from a precompiled directory. */
struct sd_cl_counts { int built, cached, precompiled, cache_rejected; };
void sd_cl_counts_get(struct sd_cl_counts *c);
void sd_cl_counts_reset(void);

/* Builds (or loads) every program of the backend and writes each binary to
 * dir/<program>.bin (for SDRT_CL_PRECOMPILED). Returns SD_OK or an error. */
int sd_cl_export_programs(struct sd_backend *b, const char *dir);

/* Drops every weight resident on the device (a model was released); they
 * are uploaded again on next use. No-op for other backends. */
void sd_cl_release_weights(struct sd_backend *b);

/* Returns the device the backend runs on. */
const struct sd_cl_device_info *sd_cl_device_of(struct sd_backend *b);

/* True for the kernel ops of ops.def this backend does not implement (its
 * declared list; supports() refuses them, the scheduler places them on
 * another backend). tests/test_op_table.c checks supports() against it. */
bool sd_cl_op_unimplemented(enum sd_op op);

/* Whether b is an OpenCL backend. */
bool sd_cl_is_backend(const struct sd_backend *b);

#endif
