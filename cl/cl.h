/* cl.h - the OpenCL backend (public part): device listing, the backend
 * constructor, and the program-cache counters and export used by tests and
 * by `sdrt devices`.
 *
 * The backend implements struct sd_backend_i (host/backend.h) over one
 * OpenCL device: one cl_context per platform per process, one in-order
 * queue per backend, one arena cl_mem addressed by byte offsets, weights
 * uploaded once from their file's bytes and kept resident on the device only
 * (keyed by the weight tensor; no host copy). GEMMs go
 * through CLBlast on GPUs/accelerators and our kernels/gemm.cl on CPU-type
 * devices (opts.cl_gemm overrides; always ours in precompiled mode); every
 * other op is a kernel of ours in cl/kernels/.
 *
 * Options (struct sd_runtime_opts, read when a backend is created; the
 * sdrt command maps the SDRT_CL_* variables of docs/running.md into them):
 * cl_device, cl_disable, cl_gemm, cl_xgemm_tuned, cl_rowwise, cl_attn,
 * cl_cache_dir, cl_precompiled_dir, cl_export_dir, the log and SD_DEBUG_CL
 * (device chosen, program counts), and the test hooks cl_test_fail and
 * cl_test_break.
 */
#ifndef SDRT_CL_H
#define SDRT_CL_H

#include "runtime.h" /* struct sd_runtime_opts; includes backend.h */

struct sd_cl_device_info {
    int index;                  /* flat index over all platforms (opts.cl_device, sdrt --device) */
    int platform, device;       /* platform index, device index within it */
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
 * or no platform is not an error here) or SD_ERR_BACKEND. */
int sd_cl_list_devices(struct sd_ctx *ctx, struct sd_cl_device_info *out, int max, int *n);

/* Returns a new OpenCL backend on device opts->cl_device (flat index from
 * sd_cl_list_devices; -1 = the first GPU, else the first device), with the
 * rest of the OpenCL options (opts NULL = the defaults). Owned by the
 * caller (sd_backend_free). NULL with ctx set when there is no usable
 * device or an option is bad. */
struct sd_backend *sd_cl_backend_new(struct sd_ctx *ctx, const struct sd_runtime_opts *opts);

/* Process-wide program counters: compiled from source, loaded from the
 * disk cache, loaded from a precompiled directory. */
struct sd_cl_counts { int built, cached, precompiled, cache_rejected; };
void sd_cl_counts_get(struct sd_cl_counts *c);
void sd_cl_counts_reset(void);

/* Builds (or loads) every program of the backend and writes each binary to
 * dir/<program>.bin (for opts.cl_precompiled_dir). Returns SD_OK or an error. */
int sd_cl_export_programs(struct sd_backend *b, const char *dir);

/* Returns the device the backend runs on. */
const struct sd_cl_device_info *sd_cl_device_of(struct sd_backend *b);

/* What the backend computes in after opts.precision: "f32", "f16 weights,
 * f32 GEMMs" or "f16" (half weights and half GEMMs); NULL if b is not an
 * OpenCL backend. */
const char *sd_cl_precision_of(struct sd_backend *b);

/* True for the kernel ops of ops.def this backend does not implement (its
 * declared list; supports() refuses them, the scheduler places them on
 * another backend). tests/test_op_table.c checks supports() against it. */
bool sd_cl_op_unimplemented(enum sd_op op);

/* Whether b is an OpenCL backend. */
bool sd_cl_is_backend(const struct sd_backend *b);

#endif
