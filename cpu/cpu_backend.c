/* cpu_backend.c - the CPU backend's vtable and its op dispatch table.
 *
 * The CPU backend is the host backend: its arena is host memory. It runs
 * every op of ops.def (f32), its table generated from there.
 * opts.cpu_disable = "op1,op2" disables ops (for testing the scheduler's
 * "no backend" error path only; the CPU is normally the fallback of last
 * resort).
 */
#include "cpu.h"
#include "cpu_dnnl.h"
#include "cpu_wcache.h"
#include "poison.h"
#include "weights.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Every kernel op of ops.def: a missing sd_cpu_op_<name> fails to link. */
static sd_cpu_op_fn *const cpu_ops[SD_OP_COUNT] = {
#define X(e, name, kind, flops) SD_OP_IF_KERNEL(kind, [SD_OP_##e] = sd_cpu_op_##name,)
#include "ops.def"
#undef X
};

struct sd_cpu *sd_cpu_of(struct sd_backend *b) { return b ? (struct sd_cpu *)b->impl : NULL; }

static bool op_disabled(const struct sd_cpu *cpu, enum sd_op op) {
    return (cpu->disabled_ops[op / 32] >> (op % 32)) & 1u;
}

static bool cpu_supports(struct sd_backend *b, const struct sd_tensor *node, char *why, size_t why_n) {
    struct sd_cpu *cpu = sd_cpu_of(b);
    if ((unsigned)node->op < SD_OP_COUNT && !sd_op_is_kernel(node->op)) return true;
    if ((unsigned)node->op >= SD_OP_COUNT || !cpu_ops[node->op]) {
        snprintf(why, why_n, "unsupported(op)");
        return false;
    }
    if (op_disabled(cpu, node->op)) {
        snprintf(why, why_n, "disabled");
        return false;
    }
    for (int i = 0; i < SD_MAX_SRC; i++) {
        const struct sd_tensor *s = node->src[i];
        if (!s) continue;
        bool ok = s->type == SD_F32 || (node->op == SD_OP_EMBEDDING && i == 0 && s->type == SD_I32);
        if (!ok) {
            snprintf(why, why_n, "unsupported(%s)", sd_dtype_name(s->type));
            return false;
        }
    }
    return true;
}

static int cpu_arena_reserve(struct sd_backend *b, size_t size, void **host) {
    struct sd_cpu *cpu = sd_cpu_of(b);
    if (size > cpu->arena_size || !cpu->arena) {
        /* The old arena goes first: its contents do not outlive a run, and
         * old + new at once would be the peak. */
        sd_cpu_free(cpu->arena);
        cpu->arena = NULL;
        cpu->arena_size = 0;
        void *p = sd_cpu_alloc(size);
        if (!p)
            return sd_errorf(cpu->ctx, SD_ERR_NOMEM, "cpu: cannot allocate a %.1f MiB activation arena",
                             (double)size / 1048576.0);
        cpu->arena = p;
        cpu->arena_size = size;
#ifdef SDRT_POISON
        sd_poison_f32(p, size / sizeof(float)); /* never written yet: reads give NaN (poison.h) */
#endif
    }
    *host = cpu->arena;
    return SD_OK;
}

int sd_cpu_run_node(struct sd_cpu *cpu, struct sd_tensor *node) {
    if ((unsigned)node->op < SD_OP_COUNT && !sd_op_is_kernel(node->op)) return SD_OK;
    sd_cpu_op_fn *fn = (unsigned)node->op < SD_OP_COUNT ? cpu_ops[node->op] : NULL;
    if (!fn) return sd_errorf(cpu->ctx, SD_ERR_UNSUPPORTED, "cpu: op %s not supported", sd_op_name(node->op));
#ifdef SDRT_POISON
    /* Every op must write its whole output: what it leaves reads as NaN. */
    if (sd_tensor_in_arena(node) && !(node->flags & SD_TF_INPUT) && node->data)
        sd_poison_f32(node->data, sd_tensor_nbytes(node) / sizeof(float));
#endif
    /* Weights read in place must have their bytes (weights.h: deferred);
     * conv2d and linear read src[1] through their own copies (or make the
     * bytes themselves where they read it in place), embedding reads the
     * rows it needs. */
    for (int i = 0; i < SD_MAX_SRC; i++) {
        struct sd_tensor *s = node->src[i];
        if (!s || !(s->flags & SD_TF_DEFERRED) ||
            (i == 1 && (node->op == SD_OP_CONV2D || node->op == SD_OP_LINEAR || node->op == SD_OP_EMBEDDING)))
            continue;
        if (sd_weight_materialize(cpu->ctx, s) != SD_OK)
            return sd_error_wrap(cpu->ctx, "cpu %s [%s]", sd_op_name(node->op), node->name);
    }
    cpu->op_serial++;
    if (fn(cpu, node) != SD_OK) return sd_error_wrap(cpu->ctx, "cpu %s [%s]", sd_op_name(node->op), node->name);
    return SD_OK;
}

static int cpu_compute(struct sd_backend *b, struct sd_graph *g, int i0, int i1) {
    struct sd_cpu *cpu = sd_cpu_of(b);
    omp_set_num_threads(cpu->n_threads);
    cpu->xbf16_src = NULL; /* the scratch's bf16 x is this compute's only (op_linear.c) */
    int rc = SD_OK;
    for (int i = i0; i < i1 && rc == SD_OK; i++) rc = sd_cpu_run_node(cpu, g->nodes[i]);
    sd_cpu_dnnl_staging_release(cpu);
    sd_cpu_dnnl_cache_flush(cpu); /* the copies this run made, to disk (also after a failed node) */
    return rc;
}

static void cpu_trim(struct sd_backend *b) {
    struct sd_cpu *cpu = sd_cpu_of(b);
    sd_cpu_free(cpu->arena);
    sd_cpu_free(cpu->scratch);
    cpu->arena = cpu->scratch = NULL;
    cpu->xbf16_src = NULL;
    cpu->arena_size = cpu->scratch_size = 0;
    sd_cpu_dnnl_staging_release(cpu);
}

static void cpu_free(struct sd_backend *b) {
    struct sd_cpu *cpu = sd_cpu_of(b);
    if (cpu) {
        sd_cpu_dnnl_free(cpu);
        sd_cpu_free(cpu->arena);
        sd_cpu_free(cpu->scratch);
        free(cpu);
    }
    free(b);
}

static const struct sd_backend_i cpu_iface = {
    .version = SD_BACKEND_IFACE_VERSION,
    .name = "cpu",
    .supports = cpu_supports,
    .arena_reserve = cpu_arena_reserve,
    .compute = cpu_compute,
    .weights_released = sd_cpu_weights_released,
    .weights_changed = sd_cpu_weights_changed,
    .trim = cpu_trim,
    .free = cpu_free,
};

static int parse_disabled(struct sd_cpu *cpu, const char *list) {
    if (!list) return SD_OK;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int op = sd_op_by_name(tok);
        if (op <= SD_OP_NONE) return sd_errorf(cpu->ctx, SD_ERR_INVALID, "cpu backend: disabled ops: unknown op '%s'", tok);
        cpu->disabled_ops[op / 32] |= 1u << (op % 32);
    }
    return SD_OK;
}

struct sd_backend *sd_cpu_backend_new(struct sd_ctx *ctx, const struct sd_runtime_opts *opts) {
    struct sd_runtime_opts defaults;
    if (!opts) sd_runtime_opts_init(&defaults), opts = &defaults;
    struct sd_backend *b = calloc(1, sizeof *b);
    struct sd_cpu *cpu = calloc(1, sizeof *cpu);
    if (!b || !cpu) {
        free(b);
        free(cpu);
        sd_errorf(ctx, SD_ERR_NOMEM, "cpu backend: out of memory");
        return NULL;
    }
    b->iface = &cpu_iface;
    b->ctx = ctx;
    b->impl = cpu;
    b->is_host = 1;
    cpu->ctx = ctx;
    cpu->n_threads = opts->threads > 0 ? opts->threads : omp_get_num_procs();
    if (parse_disabled(cpu, opts->cpu_disable) != SD_OK || sd_cpu_dnnl_init(cpu, opts->conv, opts->precision, &opts->log, opts->weight_cache_dir) != SD_OK) {
        cpu_free(b);
        return NULL;
    }
    sd_wcache_set_max(cpu->dnnl->wcache, opts->weight_cache_max);
    return b;
}
