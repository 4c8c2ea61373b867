/* runtime.c - backends + a cache of planned graphs per component and shape
 * (see runtime.h). */
#include "runtime.h"
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

#define RT_CACHE 8

struct rt_entry {
    int kind;
    uint64_t owner;
    int64_t dims[SD_GRAPH_KEY_DIMS];
    struct sd_graph *g;
    struct sd_sched *s;
    struct sd_tensor *in[SD_GRAPH_MAX_INPUTS], *out;
    int n_in;
    uint64_t last_used;
};

struct sd_runtime {
    struct sd_ctx *ctx;   /* the caller's (current job's): failing calls report here */
    struct sd_ctx err;    /* what graphs, the scheduler and the backends write into */
    struct sd_log log;
    unsigned debug;       /* SD_DEBUG_* */
    struct sd_backend *backends[SD_MAX_BACKENDS];
    int n_backends;
    struct rt_entry cache[RT_CACHE];
    uint64_t tick;
    size_t peak_arena;
    int profile;
    int low_memory;       /* opts.low_memory */
    uint64_t numerics;    /* sd_runtime_numerics */
    struct sd_op_profile prof[SD_MAX_BACKENDS][SD_OP_COUNT];
};

/* Copies the runtime's error into the caller's ctx (the one place a
 * runtime writes there) and returns its status. */
static int report(struct sd_runtime *rt, int rc) {
    int status = rt->err.status ? rt->err.status : rc ? rc : SD_ERR_INVALID;
    sd_errorf(rt->ctx, status, "%s", rt->err.msg[0] ? rt->err.msg : sd_status_name(status));
    return status;
}

struct sd_runtime *sd_runtime_new(struct sd_ctx *ctx, const struct sd_runtime_opts *opts) {
    struct sd_runtime_opts defaults;
    if (!opts) sd_runtime_opts_init(&defaults), opts = &defaults;
    struct sd_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        sd_errorf(ctx, SD_ERR_NOMEM, "runtime: out of memory");
        return NULL;
    }
    rt->ctx = ctx;
    rt->log = opts->log;
    rt->debug = opts->debug;
    rt->low_memory = opts->low_memory;
    if (opts->backend != SD_BACKEND_CPU) {
        /* OpenCL first, the CPU last (host and per-op fallback). auto runs
         * on the CPU alone when no OpenCL device works (and says why). */
        struct sd_backend *cl = sd_backend_create(&rt->err, "opencl", opts);
        if (!cl && opts->backend == SD_BACKEND_OPENCL) {
            sd_error_wrap(&rt->err, "runtime: backend opencl");
            report(rt, SD_ERR_BACKEND);
            sd_runtime_free(rt);
            return NULL;
        }
        if (cl) rt->backends[rt->n_backends++] = cl;
        else sd_logf(&rt->log, SD_LOG_INFO, "runtime: backend auto runs on the cpu alone: %s", rt->err.msg);
        sd_ctx_clear(&rt->err);
    }
    struct sd_backend *cpu = sd_backend_create(&rt->err, "cpu", opts);
    if (!cpu) {
        report(rt, SD_ERR_BACKEND);
        sd_runtime_free(rt);
        return NULL;
    }
    rt->backends[rt->n_backends++] = cpu;
    if (opts->precision == SD_PRECISION_F16 && rt->n_backends == 1)
        sd_logf(&rt->log, SD_LOG_WARN, "runtime: precision f16 is for OpenCL devices and this runtime has none: "
                "computing in f32 (bf16 is the CPU's reduced precision)");
    /* What can change a result's rounding: the backends made, the device,
     * the precision, the convolution policy (low memory too), the threads. */
    const int64_t v[] = {opts->precision, opts->conv, opts->low_memory, opts->threads, opts->cl_device, opts->cl_gemm,
                         opts->cl_attn, opts->cl_rowwise, opts->cl_test_hgemm};
    uint64_t h = sd_fnv1a(v, sizeof v, SD_FNV1A_SEED);
    for (int i = 0; i < rt->n_backends; i++) h = sd_fnv1a(rt->backends[i]->iface->name, strlen(rt->backends[i]->iface->name), h);
    rt->numerics = h;
    return rt;
}

uint64_t sd_runtime_numerics(const struct sd_runtime *rt) { return rt ? rt->numerics : 0; }

void sd_runtime_set_ctx(struct sd_runtime *rt, struct sd_ctx *ctx) {
    if (rt) rt->ctx = ctx;
}

static void entry_clear(struct rt_entry *e) {
    sd_sched_free(e->s);
    sd_graph_free(e->g);
    memset(e, 0, sizeof *e);
}

void sd_runtime_free(struct sd_runtime *rt) {
    if (!rt) return;
    for (int i = 0; i < RT_CACHE; i++) entry_clear(&rt->cache[i]);
    for (int i = 0; i < rt->n_backends; i++) sd_backend_free(rt->backends[i]);
    free(rt);
}

struct sd_ctx *sd_runtime_ctx(struct sd_runtime *rt) { return rt->ctx; }

void sd_runtime_release_owner(struct sd_runtime *rt, uint64_t owner, struct sd_tensor *const *weights, int n) {
    if (!rt) return;
    for (int i = 0; i < RT_CACHE; i++)
        if (rt->cache[i].g && rt->cache[i].owner == owner) entry_clear(&rt->cache[i]);
    for (int i = 0; i < rt->n_backends; i++) sd_backend_weights_released(rt->backends[i], weights, n);
}

void sd_runtime_weights_changed(struct sd_runtime *rt, struct sd_tensor *const *weights, int n) {
    for (int i = 0; rt && i < rt->n_backends; i++) sd_backend_weights_changed(rt->backends[i], weights, n);
}

void sd_runtime_drop_copies(struct sd_runtime *rt, struct sd_tensor *const *weights, int n) {
    for (int i = 0; rt && i < rt->n_backends; i++) sd_backend_weights_released(rt->backends[i], weights, n);
}

void sd_runtime_trim(struct sd_runtime *rt) {
    for (int i = 0; rt && i < rt->n_backends; i++)
        if (rt->backends[i]->iface->trim) rt->backends[i]->iface->trim(rt->backends[i]);
}

int sd_runtime_low_memory(const struct sd_runtime *rt) { return rt ? rt->low_memory : 0; }

void sd_runtime_set_profile(struct sd_runtime *rt, int on) {
    rt->profile = on;
    memset(rt->prof, 0, sizeof rt->prof);
}

const struct sd_op_profile *sd_runtime_profile(const struct sd_runtime *rt, int backend, enum sd_op op) {
    return backend >= 0 && backend < rt->n_backends && (unsigned)op < SD_OP_COUNT ? &rt->prof[backend][op] : NULL;
}

int sd_runtime_n_backends(const struct sd_runtime *rt) { return rt->n_backends; }
struct sd_backend *sd_runtime_backend(struct sd_runtime *rt, int i) {
    return rt && i >= 0 && i < rt->n_backends ? rt->backends[i] : NULL;
}
const char *sd_runtime_backend_name(const struct sd_runtime *rt, int i) {
    return i >= 0 && i < rt->n_backends ? sd_backend_name(rt->backends[i]) : "?";
}

void sd_runtime_profile_print(const struct sd_runtime *rt, FILE *f) {
    double total = 0, total_flops = 0;
    long total_faults = 0;
    for (int b = 0; b < rt->n_backends; b++)
        for (int op = 0; op < SD_OP_COUNT; op++)
            total += rt->prof[b][op].seconds, total_flops += rt->prof[b][op].flops, total_faults += rt->prof[b][op].faults;
    fprintf(f, "%-8s %-20s %7s %10s %7s %10s %10s\n", "backend", "op", "calls", "seconds", "share", "GFLOP/s", "faults");
    for (int b = 0; b < rt->n_backends; b++)
        for (int op = 0; op < SD_OP_COUNT; op++) {
            const struct sd_op_profile *p = &rt->prof[b][op];
            if (!p->calls) continue;
            fprintf(f, "%-8s %-20s %7d %10.3f %6.1f%% %10.1f %10ld\n", sd_backend_name(rt->backends[b]),
                    sd_op_name((enum sd_op)op), p->calls, p->seconds, total > 0 ? 100.0 * p->seconds / total : 0.0,
                    p->seconds > 0 ? p->flops / p->seconds * 1e-9 : 0.0, p->faults);
        }
    fprintf(f, "%-8s %-20s %7s %10.3f %6.1f%% %10.1f %10ld\n", "all", "total", "", total, 100.0,
            total > 0 ? total_flops / total * 1e-9 : 0.0, total_faults);
}
size_t sd_runtime_arena_bytes(const struct sd_runtime *rt) { return rt->peak_arena; }

static struct rt_entry *lookup(struct sd_runtime *rt, const struct sd_graph_key *k) {
    rt->tick++;
    for (int i = 0; i < RT_CACHE; i++) {
        struct rt_entry *e = &rt->cache[i];
        if (e->g && e->kind == k->kind && e->owner == k->owner && !memcmp(e->dims, k->dims, sizeof e->dims)) {
            e->last_used = rt->tick;
            return e;
        }
    }
    return NULL;
}

static struct rt_entry *slot(struct sd_runtime *rt) {
    struct rt_entry *best = &rt->cache[0];
    for (int i = 0; i < RT_CACHE; i++) {
        if (!rt->cache[i].g) return &rt->cache[i];
        if (rt->cache[i].last_used < best->last_used) best = &rt->cache[i];
    }
    entry_clear(best);
    return best;
}

/* Logs the graph's plan (what 0) or its placement (what 1) as one message. */
static void log_printed(struct sd_runtime *rt, const struct rt_entry *e, int what) {
    if (!sd_log_on(&rt->log, SD_LOG_INFO)) return;
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f) return;
    if (what == 0) sd_graph_print(e->g, f, (rt->debug & SD_DEBUG_GRAPH_NODES) != 0);
    else sd_sched_print(e->s, f);
    if (fclose(f) == 0 && text) sd_logf(&rt->log, SD_LOG_INFO, "%s", text);
    free(text);
}

/* Plans and places a freshly built graph in e; on failure clears e. */
static int finish(struct sd_runtime *rt, struct rt_entry *e, struct sd_tensor *out) {
    int rc;
    if (!out) {
        rc = e->g->status ? e->g->status : SD_ERR_INVALID;
        goto fail;
    }
    sd_graph_output(e->g, out);
    e->out = out;
    if ((rc = sd_graph_plan(e->g)) != SD_OK) goto fail;
    if ((e->s = sd_sched_new(&rt->err, rt->backends, rt->n_backends))) {
        e->s->log = rt->log;
        e->s->log_placement = (rt->debug & SD_DEBUG_SCHED) != 0;
    } else {
        rc = rt->err.status;
        goto fail;
    }
    if ((rc = sd_sched_alloc(e->s, e->g)) != SD_OK) goto fail;
    if (e->g->arena_size > rt->peak_arena) rt->peak_arena = e->g->arena_size;
    if (rt->debug & SD_DEBUG_GRAPH) log_printed(rt, e, 0);
    if (rt->debug & SD_DEBUG_SCHED) log_printed(rt, e, 1);
    e->last_used = rt->tick;
    return SD_OK;
fail:
    entry_clear(e);
    return rc;
}

static int run(struct sd_runtime *rt, struct rt_entry *e, const void *const *inputs, void *out) {
    int rc;
    if ((rc = sd_sched_alloc(e->s, e->g)) != SD_OK) return rc;
    for (int i = 0; i < e->n_in; i++) memcpy(e->in[i]->data, inputs[i], sd_tensor_nbytes(e->in[i]));
    e->s->profile = rt->profile;
    if ((rc = sd_sched_compute(e->s, e->g)) != SD_OK) return rc;
    memcpy(out, e->out->data, sd_tensor_nbytes(e->out));
    if (rt->profile)
        for (int i = 0; i < e->g->n_nodes; i++) {
            const struct sd_tensor *t = e->g->nodes[i];
            if (t->op == SD_OP_NONE || t->op == SD_OP_RESHAPE) continue;
            struct sd_op_profile *p = &rt->prof[e->g->backend[i]][t->op];
            p->seconds += e->s->node_time[i];
            p->faults += e->s->node_faults[i];
            p->flops += sd_node_flops(t);
            p->calls++;
        }
    return SD_OK;
}

int sd_runtime_run(struct sd_runtime *rt, const struct sd_graph_key *key, sd_graph_build_fn build, void *user,
                   const void *const *inputs, void *out) {
    sd_ctx_clear(&rt->err);
    struct rt_entry *e = lookup(rt, key);
    if (!e) {
        e = slot(rt);
        *e = (struct rt_entry){.kind = key->kind, .owner = key->owner};
        memcpy(e->dims, key->dims, sizeof e->dims);
        if (!(e->g = sd_graph_new(&rt->err))) return report(rt, SD_ERR_NOMEM);
        struct sd_tensor *o = build(e->g, user, e->in, &e->n_in);
        if (finish(rt, e, o) != SD_OK) {
            sd_error_wrap(&rt->err, "%s", key->what ? key->what : "graph");
            return report(rt, SD_ERR_INVALID);
        }
    }
    int rc = run(rt, e, inputs, out);
    return rc == SD_OK ? SD_OK : report(rt, rc);
}
