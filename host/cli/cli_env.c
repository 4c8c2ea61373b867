/* cli_env.c - the environment variables of the sdrt command, mapped into
 * struct sd_runtime_opts. The library reads none; this table and the one
 * in docs/running.md list the same variables (tests/check_library.sh). */
#include "cmd.h"

#include "cl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct sd_ctx *env_ctx; /* where a bad value is reported (cli_runtime_opts) */

static int bad(const char *var, const char *v, const char *want) {
    return sd_errorf(env_ctx, SD_ERR_INVALID, "%s=%s: want %s", var, v, want);
}

static int on(const char *v) { return strcmp(v, "0") != 0; }

static int conv_algo(struct sd_runtime_opts *o, const char *var, const char *v) {
    int p = sd_conv_policy_parse(v);
    if (p < 0) return bad(var, v, "auto, lowmem, direct, nchw, gemm or wino");
    o->conv = (enum sd_conv_policy)p;
    return 0;
}
int cli_size_parse(const char *v, unsigned long long *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    unsigned long long mul = 1;
    if (end != v && *end) {
        const char u = (char)toupper((unsigned char)*end);
        const char *rest = end + 1;
        if (!strcasecmp(rest, "iB") || !strcasecmp(rest, "B") || !*rest)
            mul = u == 'K' ? 1ull << 10 : u == 'M' ? 1ull << 20 : u == 'G' ? 1ull << 30 : 0;
        else
            mul = 0;
    }
    if (end == v || errno || mul == 0 || !(x > 0) || x * (double)mul > 1e18) return -1;
    *out = (unsigned long long)(x * (double)mul);
    return 0;
}

static int weight_cache_max(struct sd_runtime_opts *o, const char *var, const char *v) {
    unsigned long long n;
    if (cli_size_parse(v, &n)) return bad(var, v, "a size: bytes, or N with K, M or G");
    o->weight_cache_max = n;
    return 0;
}

int cli_weight_cache_max(struct sd_ctx *ctx, struct sd_runtime_opts *o, const char *s) {
    env_ctx = ctx;
    return s ? weight_cache_max(o, "--weight-cache-max", s) : 0;
}

static int precision(struct sd_runtime_opts *o, const char *var, const char *v) {
    int p = sd_precision_parse(v);
    if (p < 0) return bad(var, v, "auto, f32, bf16 or f16");
    o->precision = (enum sd_precision)p;
    return 0;
}
static int cpu_disable(struct sd_runtime_opts *o, const char *var, const char *v) { (void)var; o->cpu_disable = v; return 0; }
static int cl_disable(struct sd_runtime_opts *o, const char *var, const char *v) { (void)var; o->cl_disable = v; return 0; }
static int cl_device(struct sd_runtime_opts *o, const char *var, const char *v) {
    return cli_device_index(env_ctx, var, v, &o->cl_device);
}
static int cl_gemm(struct sd_runtime_opts *o, const char *var, const char *v) {
    int g = sd_cl_gemm_parse(v);
    if (g < 0) return bad(var, v, "own, clblast or auto");
    o->cl_gemm = (enum sd_cl_gemm_engine)g;
    return 0;
}
static int cl_xgemm(struct sd_runtime_opts *o, const char *var, const char *v) {
    if (strcmp(v, "default") && strcmp(v, "tuned")) return bad(var, v, "default (CLBlast's parameters) or tuned");
    o->cl_xgemm_tuned = strcmp(v, "tuned") == 0;
    return 0;
}
static int cl_rowwise(struct sd_runtime_opts *o, const char *var, const char *v) {
    if (strcmp(v, "0") && strcmp(v, "1")) return bad(var, v, "0 or 1");
    o->cl_rowwise = on(v);
    return 0;
}
static int cl_attn(struct sd_runtime_opts *o, const char *var, const char *v) {
    int a = sd_cl_attn_parse(v);
    if (a < 0) return bad(var, v, "gemm, flash or auto");
    o->cl_attn = (enum sd_cl_attn)a;
    return 0;
}
static int cl_log(struct sd_runtime_opts *o, const char *var, const char *v) {
    (void)var;
    if (on(v)) o->debug |= SD_DEBUG_CL;
    return 0;
}
static int sched_debug(struct sd_runtime_opts *o, const char *var, const char *v) {
    (void)var;
    if (on(v)) o->debug |= SD_DEBUG_SCHED;
    return 0;
}
static int graph_debug(struct sd_runtime_opts *o, const char *var, const char *v) {
    (void)var;
    if (on(v)) o->debug |= SD_DEBUG_GRAPH | (atoi(v) > 1 ? SD_DEBUG_GRAPH_NODES : 0);
    return 0;
}
static int log_level(struct sd_runtime_opts *o, const char *var, const char *v) {
    int l = sd_log_level_parse(v);
    if (l < 0) return bad(var, v, "error, warn, info or debug");
    o->log.level = l;
    return 0;
}
static int cl_precompiled(struct sd_runtime_opts *o, const char *var, const char *v) { (void)var; o->cl_precompiled_dir = v; return 0; }
static int cl_export(struct sd_runtime_opts *o, const char *var, const char *v) { (void)var; o->cl_export_dir = v; return 0; }

/* The variables, in the order of docs/running.md. An empty value counts as
 * unset. SDRT_VOCAB (cmd_generate.c), SDRT_CACHE_DIR, SDRT_CL_CACHE and
 * SDRT_WEIGHT_CACHE (cache_root below) are read elsewhere in this file's callers. */
static const struct {
    const char *name, *alias;
    int (*apply)(struct sd_runtime_opts *o, const char *var, const char *v);
} vars[] = {
    {"SDRT_LOG_LEVEL", NULL, log_level},
    {"SDRT_SCHED_DEBUG", "SD_SCHED_DEBUG", sched_debug},
    {"SDRT_GRAPH_DEBUG", NULL, graph_debug},
    {"SDRT_CONV_ALGO", NULL, conv_algo},
    {"SDRT_PRECISION", NULL, precision},
    {"SDRT_WEIGHT_CACHE_MAX", NULL, weight_cache_max},
    {"SDRT_CPU_DISABLE", NULL, cpu_disable},
    {"SDRT_CL_DEVICE", NULL, cl_device},
    {"SDRT_CL_DISABLE", NULL, cl_disable},
    {"SDRT_CL_GEMM", NULL, cl_gemm},
    {"SDRT_CL_XGEMM", NULL, cl_xgemm},
    {"SDRT_CL_ROWWISE", NULL, cl_rowwise},
    {"SDRT_CL_ATTN", NULL, cl_attn},
    {"SDRT_CL_LOG", NULL, cl_log},
    {"SDRT_CL_PRECOMPILED", NULL, cl_precompiled},
    {"SDRT_CL_EXPORT", NULL, cl_export},
};

/* The cache root: $SDRT_CACHE_DIR, else $XDG_CACHE_HOME/sdrt, else
 * $HOME/.cache/sdrt (NULL without any). */
static const char *cache_root(void) {
    static char dir[1024];
    const char *root = getenv("SDRT_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (root && *root) return root;
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/sdrt", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/sdrt", home);
    else return NULL;
    return dir;
}

/* The program cache goes under the root unless SDRT_CL_CACHE=0; the
 * prepared-weight cache under SDRT_WEIGHT_CACHE (a root of its own, or 0
 * for none), else under the root. */
static const char *cl_cache_root(void) {
    const char *off = getenv("SDRT_CL_CACHE");
    return off && !strcmp(off, "0") ? NULL : cache_root();
}

static const char *weight_cache_root(void) {
    const char *v = getenv("SDRT_WEIGHT_CACHE");
    if (v && *v) return strcmp(v, "0") && strcmp(v, "off") ? v : NULL;
    return cache_root();
}

int cli_weight_cache(struct sd_runtime_opts *o, const char *s) {
    if (s) o->weight_cache_dir = strcmp(s, "off") && strcmp(s, "0") ? s : NULL;
    return 0;
}

int cli_runtime_opts(struct sd_ctx *ctx, struct sd_runtime_opts *o, struct cli_log *log) {
    env_ctx = ctx;
    o->log.fn = cli_log;
    o->log.user = log;
    o->cl_cache_dir = cl_cache_root();
    o->weight_cache_dir = weight_cache_root();
    o->precision = SD_PRECISION_AUTO; /* the command's default; the library's is f32 */
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *name = vars[i].name, *v = getenv(name);
        if ((!v || !*v) && vars[i].alias) v = getenv(name = vars[i].alias);
        if (v && *v && vars[i].apply(o, name, v)) return SD_ERR_INVALID;
    }
    /* Debug output is delivered at SD_LOG_INFO: asking for it lifts a
     * quieter level. */
    if (o->debug && o->log.level < SD_LOG_INFO) o->log.level = SD_LOG_INFO;
    return SD_OK;
}

int cli_precision(struct sd_ctx *ctx, struct sd_runtime_opts *o, const char *s) {
    if (!s) return SD_OK;
    int p = sd_precision_parse(s);
    if (p < 0) return sd_errorf(ctx, SD_ERR_INVALID, "--precision %s: want auto, f32, bf16 or f16", s);
    o->precision = (enum sd_precision)p;
    return SD_OK;
}

int cli_device_index(struct sd_ctx *ctx, const char *what, const char *s, int *index) {
    char *end = NULL, tail = 0;
    long flat = strtol(s, &end, 10);
    int pi = -1, di = -1, is_flat = end != s && !*end && flat >= 0 && flat < 1000000;
    if (!is_flat && sscanf(s, "%d:%d%c", &pi, &di, &tail) != 2)
        return sd_errorf(ctx, SD_ERR_INVALID, "%s %s: want a device number as `sdrt devices` lists it (or PLATFORM:DEVICE)",
                         what, s);
    struct sd_cl_device_info dev[32];
    int n = 0;
    if (sd_cl_list_devices(ctx, dev, 32, &n) != SD_OK) return sd_error_wrap(ctx, "%s %s", what, s);
    for (int i = 0; i < n && i < 32; i++)
        if (is_flat ? i == flat : dev[i].platform == pi && dev[i].device == di) {
            *index = i;
            return SD_OK;
        }
    return sd_errorf(ctx, SD_ERR_INVALID, "%s %s: no such OpenCL device (%d available; sdrt devices lists them)", what, s, n);
}

/* The CLIP BPE vocabulary when no --vocab is given: $SDRT_VOCAB, else
 * vocab/ beside the executable (make vocab), else build/vocab/. */
const char *cli_default_vocab(char *buf, size_t size) {
    const char *env = getenv("SDRT_VOCAB");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(buf, size, "%s/vocab/bpe_simple_vocab_16e6.txt.gz", exe);
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, size, "build/vocab/bpe_simple_vocab_16e6.txt.gz");
    return buf;
}
