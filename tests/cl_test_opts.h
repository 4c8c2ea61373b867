/* cl_test_opts.h - runtime options of the tests that use the OpenCL backend:
 * the program cache they share and the "every op on the device" runtime.
 */
#ifndef SDRT_CL_TEST_OPTS_H
#define SDRT_CL_TEST_OPTS_H

#include <stdlib.h>

#include "runtime.h"

/* The tests' OpenCL program cache: $SDRT_CACHE_DIR, else /tmp/sdrt-test-cache. */
static inline const char *cl_test_cache_dir(void) {
    const char *d = getenv("SDRT_CACHE_DIR");
    return d ? d : "/tmp/sdrt-test-cache";
}

/* Options of the backends the op-level tests make by hand: the defaults,
 * one CPU thread, the tests' program cache. */
static inline void cl_test_backend_opts(struct sd_runtime_opts *o) {
    sd_runtime_opts_init(o);
    o->threads = 1;
    o->cl_cache_dir = cl_test_cache_dir();
}

/* Options of an OpenCL runtime that runs every op on the device: each op is
 * disabled on the CPU backend, so a node the device refused is an error
 * ("no backend runs ...") instead of a silent CPU fallback. */
static inline void cl_test_device_only(struct sd_runtime_opts *o) {
    sd_runtime_opts_init(o);
    o->backend = SD_BACKEND_OPENCL;
    o->cl_cache_dir = cl_test_cache_dir();
    o->cpu_disable = "conv2d,linear,matmul,group_norm,layer_norm,softmax,attention,gelu,quick_gelu,silu,"
                     "geglu,add,mul,scale,concat,upsample_nearest,embedding,timestep_embedding,permute";
}

#endif
