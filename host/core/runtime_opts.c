/* runtime_opts.c - the runtime options' defaults and the names of their
 * values (runtime.h). */
#include "runtime.h"

#include <string.h>

void sd_runtime_opts_init(struct sd_runtime_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = SD_BACKEND_CPU;
    o->conv = SD_CONV_POLICY_AUTO;
    o->cl_device = -1;
    o->cl_gemm = SD_CL_GEMM_AUTO;
    o->cl_xgemm_tuned = 1;
    o->cl_rowwise = -1;
    o->cl_attn = SD_CL_ATTN_AUTO;
    o->log.level = SD_LOG_INFO;
}

static int lookup(const char *const *names, int n, const char *s) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

static const char *const backend_names[] = {"cpu", "opencl", "auto"};
static const char *const conv_names[SD_CONV_POLICY_COUNT] = {"auto", "lowmem", "direct", "nchw", "gemm", "wino"};
static const char *const precision_names[SD_PRECISION_COUNT] = {"f32", "auto", "bf16", "f16"};
static const char *const attn_names[] = {"auto", "gemm", "flash"};
static const char *const gemm_names[] = {"auto", "own", "clblast"};

int sd_backend_kind_parse(const char *s) { return lookup(backend_names, 3, s); }
int sd_conv_policy_parse(const char *s) { return lookup(conv_names, SD_CONV_POLICY_COUNT, s); }
const char *sd_conv_policy_name(int p) { return p >= 0 && p < SD_CONV_POLICY_COUNT ? conv_names[p] : "?"; }
int sd_precision_parse(const char *s) { return lookup(precision_names, SD_PRECISION_COUNT, s); }
const char *sd_precision_name(int p) { return p >= 0 && p < SD_PRECISION_COUNT ? precision_names[p] : "?"; }
int sd_cl_attn_parse(const char *s) { return lookup(attn_names, 3, s); }
int sd_cl_gemm_parse(const char *s) { return lookup(gemm_names, 3, s); }
