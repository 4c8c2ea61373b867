/* cl_device.c - OpenCL platform/device discovery, device choice, the
 * process-wide contexts and the mapping of CL error codes to names.
 *
 * Devices are numbered by a flat index over platforms in ICD order
 * (sd_cl_list_devices). The backend's device is the index given
 * (opts.cl_device), else the first GPU, else the first device. Capabilities
 * (fp16, fp64, online compiler) are probed from the device, never inferred
 * from vendor names. There is one cl_context per platform per process,
 * created on first use and shared (refcounted) by every backend on it.
 */
#include "cl_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PLATFORMS 8
#define MAX_DEVICES 16

const char *sd_cl_err_name(int code) {
    switch (code) {
#define E(c) case c: return #c;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
        E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL ICD/platform)";
    /* CLBlast's own codes (clblast_c.h). */
    case -1024: return "CLBlastNotImplemented";
    case -2041: return "CLBlastNoHalfPrecision";
    case -2042: return "CLBlastNoDoublePrecision";
    case -2043: return "CLBlastInvalidVectorScalar";
    case -2044: return "CLBlastInsufficientMemoryScalar";
    case -2045: return "CLBlastDatabaseError";
    case -2046: return "CLBlastUnknownError";
    case -2047: return "CLBlastUnexpectedError";
    case -2048: return "CLBlastKernelLaunchError (?)";
    default:
        if (code <= -1000 && code > -2100) return "CLBlast status";
        return "unknown";
    }
}

int sd_cl_check(struct sd_ctx *ctx, cl_int err, const char *call, const char *what) {
    if (err == CL_SUCCESS) return SD_OK;
    return sd_errorf(ctx, SD_ERR_BACKEND, "opencl: %s(%s) = %d %s", call, what ? what : "", (int)err, sd_cl_err_name(err));
}

static void dev_str(cl_device_id d, cl_device_info p, char *buf, size_t n) {
    buf[0] = 0;
    if (clGetDeviceInfo(d, p, n, buf, NULL) != CL_SUCCESS) buf[0] = 0;
    buf[n - 1] = 0;
}

static bool has_ext(cl_device_id d, const char *ext) {
    size_t n = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &n) != CL_SUCCESS || n == 0) return false;
    char *s = malloc(n + 1);
    if (!s) return false;
    bool found = false;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, n, s, NULL) == CL_SUCCESS) {
        s[n] = 0;
        size_t el = strlen(ext);
        for (char *p = strstr(s, ext); p && !found; p = strstr(p + 1, ext))
            found = (p == s || p[-1] == ' ') && (p[el] == 0 || p[el] == ' ');
    }
    free(s);
    return found;
}

static void fill_info(struct sd_cl_device_info *in, cl_platform_id p, cl_device_id d) {
    memset(in, 0, sizeof *in);
    clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof in->platform_name - 1, in->platform_name, NULL);
    clGetPlatformInfo(p, CL_PLATFORM_VERSION, sizeof in->platform_version - 1, in->platform_version, NULL);
    dev_str(d, CL_DEVICE_NAME, in->name, sizeof in->name);
    dev_str(d, CL_DEVICE_VENDOR, in->vendor, sizeof in->vendor);
    dev_str(d, CL_DEVICE_VERSION, in->cl_version, sizeof in->cl_version);
    dev_str(d, CL_DEVICE_OPENCL_C_VERSION, in->c_version, sizeof in->c_version);
    dev_str(d, CL_DRIVER_VERSION, in->driver_version, sizeof in->driver_version);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    in->type = (type & CL_DEVICE_TYPE_GPU) ? "gpu" : (type & CL_DEVICE_TYPE_CPU) ? "cpu"
             : (type & CL_DEVICE_TYPE_ACCELERATOR) ? "accelerator" : "other";
    cl_ulong u = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof u, &u, NULL) == CL_SUCCESS) in->global_mem = u;
    if (clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof u, &u, NULL) == CL_SUCCESS) in->local_mem = u;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof u, &u, NULL) == CL_SUCCESS) in->max_alloc = u;
    cl_uint cu = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL) == CL_SUCCESS) in->compute_units = cu;
    size_t wg = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) == CL_SUCCESS) in->max_work_group = wg;
    cl_bool comp = CL_FALSE;
    if (clGetDeviceInfo(d, CL_DEVICE_COMPILER_AVAILABLE, sizeof comp, &comp, NULL) == CL_SUCCESS)
        in->has_compiler = comp == CL_TRUE;
    in->fp16 = has_ext(d, "cl_khr_fp16");
    in->fp64 = has_ext(d, "cl_khr_fp64");
}

/* Enumerates (platform, device) pairs in ICD order. */
struct dev_ref { cl_platform_id p; cl_device_id d; int pi, di; };

static int enumerate(struct sd_ctx *ctx, struct dev_ref *refs, int max, int *n) {
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    *n = 0;
    cl_int err = clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0)) return SD_OK;
    if (err != CL_SUCCESS) return sd_cl_check(ctx, err, "clGetPlatformIDs", "");
    if (np > MAX_PLATFORMS) np = MAX_PLATFORMS;
    for (cl_uint pi = 0; pi < np; pi++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = 0;
        err = clGetDeviceIDs(plats[pi], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd);
        if (err == CL_DEVICE_NOT_FOUND) continue;
        if (err != CL_SUCCESS) return sd_cl_check(ctx, err, "clGetDeviceIDs", "");
        if (nd > MAX_DEVICES) nd = MAX_DEVICES;
        for (cl_uint di = 0; di < nd && *n < max; di++)
            refs[(*n)++] = (struct dev_ref){plats[pi], devs[di], (int)pi, (int)di};
    }
    return SD_OK;
}

int sd_cl_list_devices(struct sd_ctx *ctx, struct sd_cl_device_info *out, int max, int *n) {
    struct dev_ref refs[MAX_PLATFORMS * MAX_DEVICES];
    int nr = 0, rc = enumerate(ctx, refs, MAX_PLATFORMS * MAX_DEVICES, &nr);
    if (rc != SD_OK) return rc;
    for (int i = 0; i < nr && i < max; i++) {
        fill_info(&out[i], refs[i].p, refs[i].d);
        out[i].index = i, out[i].platform = refs[i].pi, out[i].device = refs[i].di;
    }
    *n = nr;
    return SD_OK;
}

/* Process-wide contexts, one per platform, shared by every backend on it;
 * backends (runtimes) may be created and freed in several threads, hence
 * the lock. The driver's notices go to the log of the backend that created
 * the context (copied: it may be freed first). */
static struct { cl_platform_id p; cl_context c; int refs; struct sd_log *log; } contexts[MAX_PLATFORMS];
static pthread_mutex_t contexts_lock = PTHREAD_MUTEX_INITIALIZER;

static void CL_CALLBACK context_notify(const char *msg, const void *info, size_t cb, void *user) {
    (void)info, (void)cb;
    sd_logf(user, SD_LOG_INFO, "opencl: context: %s", msg);
}

static int context_get_locked(struct sd_ctx *ctx, cl_platform_id p, struct dev_ref *refs, int nr,
                              const struct sd_log *log, int log_info, cl_context *out) {
    for (int i = 0; i < MAX_PLATFORMS; i++)
        if (contexts[i].refs > 0 && contexts[i].p == p) {
            contexts[i].refs++;
            *out = contexts[i].c;
            return SD_OK;
        }
    cl_device_id devs[MAX_DEVICES];
    cl_uint nd = 0;
    for (int i = 0; i < nr; i++)
        if (refs[i].p == p && nd < MAX_DEVICES) devs[nd++] = refs[i].d;
    for (int i = 0; i < MAX_PLATFORMS; i++) {
        if (contexts[i].refs > 0) continue;
        cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)p, 0};
        cl_int err = CL_SUCCESS;
        struct sd_log *sink = log_info && log && log->fn ? malloc(sizeof *sink) : NULL;
        if (sink) *sink = *log;
        cl_context c = clCreateContext(props, nd, devs, sink ? context_notify : NULL, sink, &err);
        if (err != CL_SUCCESS) {
            free(sink);
            return sd_cl_check(ctx, err, "clCreateContext", "");
        }
        contexts[i].p = p, contexts[i].c = c, contexts[i].refs = 1, contexts[i].log = sink;
        *out = c;
        return SD_OK;
    }
    return sd_errorf(ctx, SD_ERR_BACKEND, "opencl: too many OpenCL platforms in use");
}

static int context_get(struct sd_ctx *ctx, cl_platform_id p, struct dev_ref *refs, int nr, const struct sd_log *log,
                       int log_info, cl_context *out) {
    pthread_mutex_lock(&contexts_lock);
    int rc = context_get_locked(ctx, p, refs, nr, log, log_info, out);
    pthread_mutex_unlock(&contexts_lock);
    return rc;
}

void sd_cl_context_release(cl_context c) {
    if (!c) return;
    pthread_mutex_lock(&contexts_lock);
    for (int i = 0; i < MAX_PLATFORMS; i++)
        if (contexts[i].refs > 0 && contexts[i].c == c) {
            if (--contexts[i].refs == 0) {
                clReleaseContext(c);
                free(contexts[i].log);
                contexts[i].c = NULL, contexts[i].log = NULL;
            }
            break;
        }
    pthread_mutex_unlock(&contexts_lock);
}

int sd_cl_device_open(struct sd_ctx *ctx, int device_index, const struct sd_log *log, int log_info,
                      struct sd_cl_device_info *info, cl_platform_id *platform, cl_device_id *dev, cl_context *context) {
    struct dev_ref refs[MAX_PLATFORMS * MAX_DEVICES];
    int nr = 0, rc = enumerate(ctx, refs, MAX_PLATFORMS * MAX_DEVICES, &nr);
    if (rc != SD_OK) return rc;
    if (nr == 0) return sd_errorf(ctx, SD_ERR_BACKEND, "opencl: no OpenCL device (no ICD installed or no platform reports a device)");
    int pick = -1;
    if (device_index >= 0) {
        if (device_index >= nr)
            return sd_errorf(ctx, SD_ERR_INVALID, "opencl: device %d requested, %d available (sdrt devices lists them)",
                             device_index, nr);
        pick = device_index;
    } else {
        for (int i = 0; i < nr && pick < 0; i++) {
            cl_device_type t = 0;
            clGetDeviceInfo(refs[i].d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
            if (t & CL_DEVICE_TYPE_GPU) pick = i;
        }
        if (pick < 0) pick = 0;
    }
    fill_info(info, refs[pick].p, refs[pick].d);
    info->index = pick, info->platform = refs[pick].pi, info->device = refs[pick].di;
    *platform = refs[pick].p;
    *dev = refs[pick].d;
    return context_get(ctx, refs[pick].p, refs, nr, log, log_info, context);
}
