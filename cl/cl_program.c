/* cl_program.c - getting OpenCL programs onto the device: from the disk
 * cache, from a precompiled directory, or compiled from the embedded source;
 * the kernel objects; the process-wide counters; export.
 *
 * A program is the embedded "common" prelude followed by one
 * cl/kernels/<name>.cl. Programs are made on first use (the backend's
 * supports() asks for the programs of an op), so a graph only pays for the
 * ops it has. Order of attempts:
 *   opts.cl_precompiled_dir DIR: DIR/<name>.bin with clCreateProgramWithBinary,
 *     nothing else (a missing or bad binary fails that program, clearly);
 *   else the cache entry for hash(source, options, device, driver, platform)
 *     under opts.cl_cache_dir (when given);
 *   else clCreateProgramWithSource + clBuildProgram, then stored in the cache.
 * A failure is remembered (state FAILED): the ops needing the program report
 * "build-failed" from supports() and run on the CPU; the build log goes to
 * the log at SD_LOG_DEBUG. opts.cl_export_dir DIR (or sd_cl_export_programs)
 * writes each binary as DIR/<name>.bin. opts.cl_test_break = name (tests only)
 * appends a syntax error to that program's source to exercise the failure path.
 */
#include "cl_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Process-wide; several backends (runtimes) may build programs in several
 * threads at once, hence atomic updates. */
static struct sd_cl_counts counts;
#define COUNT(field) __atomic_add_fetch(&counts.field, 1, __ATOMIC_RELAXED)

void sd_cl_counts_get(struct sd_cl_counts *c) {
    c->built = __atomic_load_n(&counts.built, __ATOMIC_RELAXED);
    c->cached = __atomic_load_n(&counts.cached, __ATOMIC_RELAXED);
    c->precompiled = __atomic_load_n(&counts.precompiled, __ATOMIC_RELAXED);
    c->cache_rejected = __atomic_load_n(&counts.cache_rejected, __ATOMIC_RELAXED);
}
void sd_cl_counts_reset(void) {
    __atomic_store_n(&counts.built, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&counts.cached, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&counts.precompiled, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&counts.cache_rejected, 0, __ATOMIC_RELAXED);
}

void sd_cl_log_counts(const struct sd_cl *cl) {
    if (!cl->log_info) return;
    sd_logf(&cl->log, SD_LOG_INFO, "opencl: built %d programs, loaded %d from cache, %d precompiled (%d cache entries rejected)",
            __atomic_load_n(&counts.built, __ATOMIC_RELAXED), __atomic_load_n(&counts.cached, __ATOMIC_RELAXED),
            __atomic_load_n(&counts.precompiled, __ATOMIC_RELAXED),
            __atomic_load_n(&counts.cache_rejected, __ATOMIC_RELAXED));
    sd_logf(&cl->log, SD_LOG_INFO, "opencl: %zu weight uploads (%zu in half, %zu kept in f32 for range), at most %.1f MiB resident",
            cl->uploads, cl->half_uploads, cl->half_fallbacks, (double)cl->weight_bytes_peak / 1048576.0);
}

static const char *source_text(const char *name) {
    for (int i = 0; i < sd_cl_n_sources; i++)
        if (strcmp(sd_cl_sources[i].name, name) == 0) return sd_cl_sources[i].text;
    return NULL;
}

int sd_cl_program_index(const char *name) {
    for (int i = 0; i < sd_cl_n_sources && i < SD_CL_MAX_PROGRAMS; i++)
        if (strcmp(sd_cl_sources[i].name, name) == 0 && strcmp(name, "common") != 0) return i;
    return -1;
}

/* Returns the program's binary (malloc'd) for the backend's device. */
static int program_binary(struct sd_cl *cl, cl_program p, const char *name, unsigned char **bin, size_t *n) {
    size_t sz = 0;
    cl_int err = clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof sz, &sz, NULL);
    if (err != CL_SUCCESS) return sd_cl_check(cl->ctx, err, "clGetProgramInfo(BINARY_SIZES)", name);
    if (sz == 0) return sd_errorf(cl->ctx, SD_ERR_BACKEND, "opencl: program %s has no binary for the device", name);
    unsigned char *buf = malloc(sz);
    if (!buf) return sd_errorf(cl->ctx, SD_ERR_NOMEM, "cl: out of memory");
    err = clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof buf, &buf, NULL);
    if (err != CL_SUCCESS) {
        free(buf);
        return sd_cl_check(cl->ctx, err, "clGetProgramInfo(BINARIES)", name);
    }
    *bin = buf;
    *n = sz;
    return SD_OK;
}

static int build_log_error(struct sd_cl *cl, cl_program p, cl_int err, const char *how, const char *name) {
    size_t n = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(p, cl->dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) == CL_SUCCESS && n > 0 &&
        (log = malloc(n + 1))) {
        if (clGetProgramBuildInfo(p, cl->dev, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS) log[0] = 0;
        log[n] = 0;
    }
    sd_logf(&cl->log, SD_LOG_DEBUG, "opencl: clBuildProgram(%s, %s) = %d %s; CL_PROGRAM_BUILD_LOG:\n%s", name, how,
            (int)err, sd_cl_err_name(err), log ? log : "(none)");
    int rc = sd_errorf(cl->ctx, SD_ERR_BACKEND, "opencl: clBuildProgram(%s, %s) = %d %s\n%.1500s", name, how, (int)err,
                       sd_cl_err_name(err), log ? log : "");
    free(log);
    return rc;
}

/* Creates and builds a program from a device binary. */
static int from_binary(struct sd_cl *cl, const char *name, const unsigned char *bin, size_t n, const char *how,
                       cl_program *out, bool quiet) {
    cl_int err = CL_SUCCESS, st = CL_SUCCESS;
    cl_program p = clCreateProgramWithBinary(cl->context, 1, &cl->dev, &n, &bin, &st, &err);
    if (err == CL_SUCCESS) err = st;
    if (err != CL_SUCCESS) {
        if (p) clReleaseProgram(p);
        return quiet ? SD_ERR_BACKEND : sd_cl_check(cl->ctx, err, "clCreateProgramWithBinary", name);
    }
    err = clBuildProgram(p, 1, &cl->dev, cl->build_opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        int rc = quiet ? SD_ERR_BACKEND : build_log_error(cl, p, err, how, name);
        clReleaseProgram(p);
        return rc;
    }
    *out = p;
    return SD_OK;
}

static int from_source(struct sd_cl *cl, const char *name, const char **srcs, int n_srcs, cl_program *out) {
    if (!cl->info.has_compiler)
        return sd_errorf(cl->ctx, SD_ERR_BACKEND,
                         "opencl: device %s has no online compiler; build program %s offline and give a precompiled dir",
                         cl->info.name, name);
    cl_int err = CL_SUCCESS;
    cl_program p = clCreateProgramWithSource(cl->context, (cl_uint)n_srcs, srcs, NULL, &err);
    if (err != CL_SUCCESS) return sd_cl_check(cl->ctx, err, "clCreateProgramWithSource", name);
    err = clBuildProgram(p, 1, &cl->dev, cl->build_opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        int rc = build_log_error(cl, p, err, "source", name);
        clReleaseProgram(p);
        return rc;
    }
    COUNT(built);
    *out = p;
    return SD_OK;
}

static int export_one(struct sd_cl *cl, const char *dir, int prog) {
    unsigned char *bin = NULL;
    size_t n = 0;
    const char *name = sd_cl_sources[prog].name;
    int rc = program_binary(cl, cl->progs[prog].prog, name, &bin, &n);
    if (rc != SD_OK) return rc;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    rc = sd_cl_file_write(cl->ctx, path, bin, n);
    free(bin);
    return rc;
}

int sd_cl_program_ensure(struct sd_cl *cl, int prog) {
    if (prog < 0 || prog >= sd_cl_n_sources || prog >= SD_CL_MAX_PROGRAMS)
        return sd_errorf(cl->ctx, SD_ERR_INVALID, "cl: no program %d", prog);
    struct sd_cl_program *pr = &cl->progs[prog];
    const char *name = sd_cl_sources[prog].name;
    if (pr->state == SD_CL_PROG_OK) return SD_OK;
    if (pr->state == SD_CL_PROG_FAILED)
        return sd_errorf(cl->ctx, SD_ERR_BACKEND, "opencl: program %s failed to build earlier", name);
    pr->state = SD_CL_PROG_FAILED; /* until proven otherwise */
    int rc = SD_OK;
    cl_program p = NULL;
    if (cl->precompiled_dir[0]) {
        char path[1200];
        unsigned char *bin = NULL;
        size_t n = 0;
        snprintf(path, sizeof path, "%s/%s.bin", cl->precompiled_dir, name);
        rc = sd_cl_file_read(cl->ctx, path, &bin, &n);
        if (rc != SD_OK) return sd_error_wrap(cl->ctx, "precompiled dir: binary for program %s missing", name);
        rc = from_binary(cl, name, bin, n, "precompiled", &p, false);
        free(bin);
        if (rc != SD_OK) return sd_error_wrap(cl->ctx, "precompiled dir %s", cl->precompiled_dir);
        COUNT(precompiled);
    } else {
        const char *common = source_text("common");
        const char *text = sd_cl_sources[prog].text;
        char *broken = NULL;
        if (cl->test_break[0] && strstr(cl->test_break, name) && (broken = malloc(strlen(text) + 64))) {
            sprintf(broken, "%s\nthis is not OpenCL C;\n", text);
            text = broken;
        }
        const char *srcs[2] = {common ? common : "", text};
        char hex[33];
        sd_cl_cache_key(srcs, 2, cl->build_opts, &cl->info, hex);
        const char *dir = cl->cache_dir[0] ? cl->cache_dir : NULL;
        unsigned char *bin = NULL;
        size_t n = 0;
        bool rejected = false;
        if (dir && sd_cl_cache_load(dir, hex, &bin, &n, &rejected) &&
            from_binary(cl, name, bin, n, "cache", &p, true) == SD_OK) {
            COUNT(cached);
        } else {
            if (rejected || bin) COUNT(cache_rejected);
            rc = from_source(cl, name, srcs, 2, &p);
            if (rc == SD_OK && dir) {
                unsigned char *out = NULL;
                size_t on = 0;
                if (program_binary(cl, p, name, &out, &on) == SD_OK) sd_cl_cache_store(dir, hex, out, on);
                free(out);
            }
        }
        free(bin);
        free(broken);
        if (rc != SD_OK) return rc;
    }
    pr->prog = p;
    pr->state = SD_CL_PROG_OK;
    if (cl->export_dir[0] && (rc = export_one(cl, cl->export_dir, prog)) != SD_OK) return rc;
    return SD_OK;
}

int sd_cl_export_programs(struct sd_backend *b, const char *dir) {
    if (!sd_cl_is_backend(b)) return sd_errorf(b ? b->ctx : NULL, SD_ERR_INVALID, "export: not an OpenCL backend");
    struct sd_cl *cl = b->impl;
    for (int i = 0; i < sd_cl_n_sources && i < SD_CL_MAX_PROGRAMS; i++) {
        if (strcmp(sd_cl_sources[i].name, "common") == 0) continue;
        int rc = sd_cl_program_ensure(cl, i);
        if (rc == SD_OK) rc = export_one(cl, dir, i);
        if (rc != SD_OK) return sd_error_wrap(cl->ctx, "export to %s", dir);
    }
    return SD_OK;
}

cl_kernel sd_cl_kernel(struct sd_cl *cl, const char *prog, const char *kname) {
    for (int i = 0; i < cl->n_kernels; i++)
        if (strcmp(cl->kernels[i].name, kname) == 0) return cl->kernels[i].k;
    int pi = sd_cl_program_index(prog);
    if (pi < 0) {
        sd_errorf(cl->ctx, SD_ERR_INVALID, "cl: no program %s", prog);
        return NULL;
    }
    if (sd_cl_program_ensure(cl, pi) != SD_OK) return NULL;
    if (cl->n_kernels == SD_CL_MAX_KERNELS) {
        sd_errorf(cl->ctx, SD_ERR_BACKEND, "opencl: too many kernels");
        return NULL;
    }
    cl_int err = CL_SUCCESS;
    cl_kernel k = clCreateKernel(cl->progs[pi].prog, kname, &err);
    if (err != CL_SUCCESS) {
        sd_cl_check(cl->ctx, err, "clCreateKernel", kname);
        return NULL;
    }
    struct sd_cl_kernel_slot *s = &cl->kernels[cl->n_kernels++];
    s->prog = pi;
    snprintf(s->name, sizeof s->name, "%s", kname);
    s->k = k;
    return k;
}

void sd_cl_programs_free(struct sd_cl *cl) {
    for (int i = 0; i < cl->n_kernels; i++) clReleaseKernel(cl->kernels[i].k);
    cl->n_kernels = 0;
    for (int i = 0; i < SD_CL_MAX_PROGRAMS; i++)
        if (cl->progs[i].prog) clReleaseProgram(cl->progs[i].prog);
    memset(cl->progs, 0, sizeof cl->progs);
}
