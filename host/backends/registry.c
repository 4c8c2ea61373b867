/* registry.c - the backends linked into the library (core/backend.h).
 * The only place that names every backend; the runtime finds them here. */
#include "cl.h"
#include "cpu.h"

static struct sd_backend *cpu_create(struct sd_ctx *ctx, int device, int n_threads) {
    (void)device;
    return sd_cpu_backend_new(ctx, n_threads);
}

static struct sd_backend *cl_create(struct sd_ctx *ctx, int device, int n_threads) {
    (void)n_threads;
    return sd_cl_backend_new(ctx, device);
}

static const struct sd_backend_factory cpu_factory = {"cpu", cpu_create};
static const struct sd_backend_factory cl_factory = {"opencl", cl_create};

const struct sd_backend_factory *const sd_backend_registry[] = {&cl_factory, &cpu_factory, NULL};
