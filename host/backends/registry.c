/* registry.c - the backends linked into the library (core/backend.h).
 * The only place that names every backend; the runtime finds them here.
 * Each constructor takes what it needs from the runtime options. */
#include "cl.h"
#include "cpu.h"

static const struct sd_backend_factory cpu_factory = {"cpu", sd_cpu_backend_new};
static const struct sd_backend_factory cl_factory = {"opencl", sd_cl_backend_new};

const struct sd_backend_factory *const sd_backend_registry[] = {&cl_factory, &cpu_factory, NULL};
