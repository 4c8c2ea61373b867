/* cl_backend.c - the OpenCL backend's vtable, op dispatch table, arena,
 * resident weights and fallbacks.
 *
 * supports(): an op runs here if it has an entry in cl_ops, its sources are
 * f32 (embedding ids i32), it is within the kernels' limits, it is not in
 * opts.cl_disable, and the programs it needs are available (made on first
 * ask; a failed build gives cause "build-failed" and the scheduler runs the
 * op on the CPU). The activation arena is one cl_mem; tensors are addressed
 * by (buffer, byte offset) passed to kernels and CLBlast. Weights are
 * uploaded on first use into their own cl_mem and stay resident, keyed by the
 * weight tensor's address (and re-uploaded if its data pointer, size or a
 * fingerprint of its resident bytes changed), so later graphs over the same
 * model upload nothing. An upload maps the new buffer for writing and fills
 * it from the weight's bytes, or for a deferred weight (weights.h) converts
 * them from the file's f16/bf16/f32 straight into it: the backend keeps no
 * host copy and makes no plain f32 copy resident (on PoCL, whose buffers are
 * host memory, each weight is then held once, in f32, in its buffer). weights_released and weights_changed (backend.h) drop the
 * device copies of exactly the weights named (by their bytes, so the q/k/v
 * slices of a changed in_proj go too); changed ones are uploaded again from
 * their new bytes on next use.
 *
 * Device errors: if an op fails on the device (an SD_ERR_BACKEND from enqueue
 * or CLBlast), compute returns an error saying so and names the node
 * (b->failed_node); the scheduler refuses the node here, places the graph
 * again (the node goes to the CPU like any other unsupported op, with the
 * runtime's threads) and carries on. The backend also logs a warning once
 * and marks the op failed, so supports() answers "device-error" and later
 * graphs place it on the CPU directly. opts.cl_test_fail = "op,..." (tests
 * only) makes those ops fail as if the device had returned an error.
 */
#include "cl_impl.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

struct cl_op { sd_cl_op_fn fn; const char *progs[3]; int gemm; };

static const struct cl_op cl_ops[SD_OP_COUNT] = {
    [SD_OP_CONV2D] = {sd_cl_op_conv2d, {"im2col", "bias"}, 1},
    [SD_OP_LINEAR] = {sd_cl_op_linear, {"bias"}, 1},
    [SD_OP_MATMUL] = {sd_cl_op_matmul, {NULL}, 1},
    [SD_OP_GROUP_NORM] = {sd_cl_op_group_norm, {"group_norm"}, 0},
    [SD_OP_LAYER_NORM] = {sd_cl_op_layer_norm, {"layer_norm"}, 0},
    [SD_OP_SOFTMAX] = {sd_cl_op_softmax, {"softmax"}, 0},
    [SD_OP_ATTENTION] = {sd_cl_op_attention, {NULL}, 0}, /* programs: see cl_supports */
    [SD_OP_GELU] = {sd_cl_op_gelu, {"gelu"}, 0},
    [SD_OP_QUICK_GELU] = {sd_cl_op_quick_gelu, {"quick_gelu"}, 0},
    [SD_OP_SILU] = {sd_cl_op_silu, {"silu"}, 0},
    [SD_OP_RELU] = {sd_cl_op_relu, {"relu"}, 0},
    [SD_OP_TANH] = {sd_cl_op_tanh, {"tanh"}, 0},
    [SD_OP_GEGLU] = {sd_cl_op_geglu, {"geglu"}, 0},
    [SD_OP_ADD] = {sd_cl_op_add, {"add"}, 0},
    [SD_OP_MUL] = {sd_cl_op_mul, {"mul"}, 0},
    [SD_OP_SCALE] = {sd_cl_op_scale, {"scale"}, 0},
    [SD_OP_CONCAT] = {sd_cl_op_concat, {"concat"}, 0},
    [SD_OP_UPSAMPLE] = {sd_cl_op_upsample_nearest, {"upsample"}, 0},
    [SD_OP_EMBEDDING] = {sd_cl_op_embedding, {"embedding"}, 0},
    [SD_OP_TIMESTEP_EMBED] = {sd_cl_op_timestep_embedding, {"timestep_embed"}, 0},
    [SD_OP_PERMUTE] = {sd_cl_op_permute, {"permute"}, 0},
};

/* The kernel ops of ops.def without an entry above, stated once (none
 * today; ends with SD_OP_NONE, which is no kernel op). Adding an op to
 * ops.def means an entry in cl_ops or a line here: tests/test_op_table.c
 * fails otherwise. */
static const enum sd_op cl_unimplemented[] = {SD_OP_NONE};

bool sd_cl_op_unimplemented(enum sd_op op) {
    for (size_t i = 0; cl_unimplemented[i] != SD_OP_NONE; i++)
        if (cl_unimplemented[i] == op) return true;
    return false;
}

static const struct sd_backend_i cl_iface;

bool sd_cl_is_backend(const struct sd_backend *b) { return b && b->iface == &cl_iface; }

const struct sd_cl_device_info *sd_cl_device_of(struct sd_backend *b) {
    return sd_cl_is_backend(b) ? &((struct sd_cl *)b->impl)->info : NULL;
}

const char *sd_cl_precision_of(struct sd_backend *b) {
    if (!sd_cl_is_backend(b)) return NULL;
    const struct sd_cl *cl = b->impl;
    return cl->hgemm ? "f16" : cl->half_weights ? "f16 weights, f32 GEMMs" : "f32";
}

static bool bit_get(const unsigned *m, int i) { return (m[i / 32] >> (i % 32)) & 1u; }
static void bit_set(unsigned *m, int i) { m[i / 32] |= 1u << (i % 32); }

static struct sd_tensor *base_of(const struct sd_tensor *t) {
    return (struct sd_tensor *)(t->view_src ? t->view_src : t);
}

/* --- helpers for the ops ------------------------------------------------- */

/* A cheap fingerprint of a weight's bytes (first and last 32): a tensor
 * struct and data reused at the same addresses by a different model (free,
 * then load) would otherwise hit the old device copy. */
static uint64_t weight_probe(const void *data, size_t n) {
    const unsigned char *p = data;
    size_t k = n < 32 ? n : 32;
    return sd_fnv1a(p + n - k, k, sd_fnv1a(p, k, SD_FNV1A_SEED ^ n));
}

/* A transient host buffer of n bytes for an upload (counted in host_bytes
 * while held; host_free gives it back). NULL with ctx set on OOM. */
static float *host_alloc(struct sd_cl *cl, size_t n, const char *doing, const char *name) {
    float *x = malloc(n ? n : 1);
    if (!x) {
        sd_errorf(cl->ctx, SD_ERR_NOMEM, "cl: out of memory (%s %s)", doing, name);
        return NULL;
    }
    cl->host_bytes += n;
    if (cl->host_bytes > cl->host_bytes_peak) cl->host_bytes_peak = cl->host_bytes;
    return x;
}

static void host_free(struct sd_cl *cl, float *x, size_t n) {
    free(x);
    cl->host_bytes -= n;
}

/* Writes weight t's f32 values into dst, transposed ([R, C] -> [C, R] over
 * the inner two dims) when `transposed`: read from its bytes when they are
 * resident, else converted from its file (weights.h: sd_weight_read_f32), so
 * no plain f32 host copy is made or kept. A transpose goes through a
 * transient buffer of the weight's size (counted in host_bytes while held). */
static int weight_values(struct sd_cl *cl, const struct sd_tensor *t, bool transposed, float *dst) {
    if (!transposed) return sd_weight_read_f32(cl->ctx, t, dst);
    const size_t nbytes = sd_tensor_nbytes(t);
    float *x = host_alloc(cl, nbytes, "transposing", t->name);
    if (!x) return SD_ERR_NOMEM;
    int rc = sd_weight_read_f32(cl->ctx, t, x);
    const size_t R = t->ne[2], C = t->ne[3], outer = (size_t)(t->ne[0] * t->ne[1]);
    for (size_t o = 0; rc == SD_OK && o < outer; o++)
        for (size_t r = 0; r < R; r++)
            for (size_t c = 0; c < C; c++) dst[o * R * C + c * R + r] = x[o * R * C + r * C + c];
    host_free(cl, x, nbytes);
    return rc;
}

/* Weight t's values as halves (round to nearest even) into dst, through a
 * transient f32 buffer of the weight's size (counted in host_bytes).
 * *overflow is set (and dst unusable) when a finite value lies beyond
 * half's range (65504): such a weight stays in f32. */
static int weight_halves(struct sd_cl *cl, const struct sd_tensor *t, bool transposed, uint16_t *dst, bool *overflow) {
    const size_t nbytes = sd_tensor_nbytes(t), n = nbytes / sizeof(float);
    float *x = host_alloc(cl, nbytes, "converting to half", t->name);
    if (!x) return SD_ERR_NOMEM;
    int rc = weight_values(cl, t, transposed, x);
    *overflow = false;
    for (size_t i = 0; rc == SD_OK && i < n && !*overflow; i++) {
        *overflow = fabsf(x[i]) > 65504.0f && isfinite(x[i]);
        dst[i] = sd_f32_to_f16(x[i]);
    }
    host_free(cl, x, nbytes);
    return rc;
}

/* A new device buffer holding weight t's values (transposed when asked),
 * in half when `half` (and every value fits; *got_half says which): the
 * buffer is mapped for writing (on a CPU device such as PoCL that is the
 * buffer's own memory; on a GPU the driver's transient staging area, copied
 * to the device on unmap) and filled from the weight's bytes or its file. */
static int weight_upload(struct sd_cl *cl, const struct sd_tensor *t, bool transposed, bool half, cl_mem *out,
                         bool *got_half) {
    const size_t nbytes = half ? sd_tensor_nbytes(t) / 2 : sd_tensor_nbytes(t);
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(cl->context, CL_MEM_READ_ONLY, nbytes ? nbytes : 64, NULL, &err);
    if (err != CL_SUCCESS) return sd_cl_check(cl->ctx, err, "clCreateBuffer", t->name);
    void *p = clEnqueueMapBuffer(cl->queue, m, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0, nbytes ? nbytes : 64, 0,
                                 NULL, NULL, &err);
    int rc = sd_cl_check(cl->ctx, err, "clEnqueueMapBuffer", t->name);
    bool overflow = false;
    if (rc == SD_OK) {
        rc = half ? weight_halves(cl, t, transposed, p, &overflow) : weight_values(cl, t, transposed, p);
        err = clEnqueueUnmapMemObject(cl->queue, m, p, 0, NULL, NULL);
        if (rc == SD_OK) rc = sd_cl_check(cl->ctx, err, "clEnqueueUnmapMemObject", t->name);
    }
    if (rc != SD_OK || overflow) {
        clReleaseMemObject(m);
        if (rc != SD_OK) return rc;
        cl->half_fallbacks++;
        sd_logf(&cl->log, SD_LOG_DEBUG, "opencl: %s has values beyond half's range: kept in f32", t->name);
        return weight_upload(cl, t, transposed, false, out, got_half);
    }
    cl->uploads++;
    cl->half_uploads += half;
    *out = m;
    *got_half = half;
    return SD_OK;
}

/* Device copy of weight t, transposed when `transposed`, in half when
 * `half` (unless its values do not fit: *is_half says); each variant has
 * its own table entry, keyed by the tensor address + (transposed + 2 *
 * half) (tensors are aligned, so they are unique). The fingerprint is taken
 * only of bytes that are resident: a deferred weight's are not (reading
 * them would fault), and it changes only through sd_weights_set_data (a new
 * data pointer) or materialise-and-patch followed by weights_changed. */
static int weight_buf(struct sd_cl *cl, const struct sd_tensor *t, bool transposed, bool half, cl_mem *out,
                      bool *is_half) {
    size_t nbytes = sd_tensor_nbytes(t);
    const struct sd_tensor *key = (const struct sd_tensor *)((const char *)t + (transposed ? 1 : 0) + (half ? 2 : 0));
    if (!t->data) return sd_errorf(cl->ctx, SD_ERR_INVALID, "cl: weight %s has no data", t->name);
    const uint64_t h = sd_hash_ptr(key);
    struct sd_hmap_iter it;
    uint32_t j = sd_hmap_find(&cl->weight_index, h, &it);
    while (j != SD_HMAP_NONE && cl->weights[j].key != key) j = sd_hmap_next(&cl->weight_index, &it);
    struct sd_cl_weight *w = j != SD_HMAP_NONE ? &cl->weights[j] : NULL;
    const bool resident = sd_weight_resident(t);
    const uint64_t probe = resident ? weight_probe(t->data, nbytes) : 0;
    if (w && w->data == t->data && w->nbytes == nbytes && (!w->probed || !resident || w->probe == probe)) {
        *out = w->mem;
        if (is_half) *is_half = w->half;
        return SD_OK;
    }
    if (!w && cl->n_weights == cl->cap_weights) { /* room for a new entry */
        size_t cap = cl->cap_weights ? 2 * cl->cap_weights : 256;
        struct sd_cl_weight *p = realloc(cl->weights, cap * sizeof *p);
        if (!p) return sd_errorf(cl->ctx, SD_ERR_NOMEM, "cl: out of memory (weight table)");
        cl->weights = p, cl->cap_weights = cap;
    }
    cl_mem m = NULL;
    bool got_half = false;
    int rc = weight_upload(cl, t, transposed, half, &m, &got_half);
    if (rc != SD_OK) return rc;
    const size_t dev_bytes = got_half ? nbytes / 2 : nbytes;
    if (w) { /* same tensor, new data: replace */
        clReleaseMemObject(w->mem);
        cl->weight_bytes -= w->dev_bytes;
    } else if (sd_hmap_put(&cl->weight_index, h, (uint32_t)cl->n_weights) == SD_OK) {
        w = &cl->weights[cl->n_weights++];
    } else {
        clReleaseMemObject(m);
        return sd_errorf(cl->ctx, SD_ERR_NOMEM, "cl: out of memory (weight table)");
    }
    *w = (struct sd_cl_weight){key, t->data, nbytes, probe, resident, got_half, dev_bytes, m};
    cl->weight_bytes += dev_bytes;
    if (cl->weight_bytes > cl->weight_bytes_peak) cl->weight_bytes_peak = cl->weight_bytes;
    *out = m;
    if (is_half) *is_half = got_half;
    return SD_OK;
}

int sd_cl_buf_of(struct sd_cl *cl, const struct sd_tensor *t, struct sd_cl_buf *out) {
    const struct sd_tensor *b = base_of(t);
    if (sd_tensor_in_arena(b)) {
        if (!cl->graph || !sd_graph_owns(cl->graph, b))
            return sd_errorf(cl->ctx, SD_ERR_BACKEND, "cl: %s is not a node of the graph being computed", t->name);
        size_t offs = sd_graph_offs(cl->graph, b);
        if (!cl->arena || offs + sd_tensor_nbytes(b) > cl->arena_size)
            return sd_errorf(cl->ctx, SD_ERR_BACKEND, "cl: %s is outside the arena", t->name);
        *out = (struct sd_cl_buf){cl->arena, offs};
        return SD_OK;
    }
    out->offs = 0;
    return weight_buf(cl, b, false, false, &out->mem, NULL);
}

/* Drops the device copies (plain and transposed) whose source bytes lie in
 * w[0..n) - all of them if memory for the bookkeeping is short - compacts
 * the array and rebuilds its index. */
static void weights_drop(struct sd_backend *b, struct sd_tensor *const *w, int n) {
    struct sd_cl *cl = b->impl;
    if (n <= 0 || !cl->n_weights) return;
    struct sd_weight_set set = {0};
    bool all = sd_weight_set_init(&set, w, n) != SD_OK;
    if (cl->queue) clFinish(cl->queue); /* queued kernels may read them */
    size_t kept = 0;
    for (size_t i = 0; i < cl->n_weights; i++) {
        struct sd_cl_weight *e = &cl->weights[i];
        if (all || sd_weight_set_hits(&set, e->data, e->nbytes)) {
            clReleaseMemObject(e->mem);
            cl->weight_bytes -= e->dev_bytes;
        } else {
            cl->weights[kept++] = *e;
        }
    }
    cl->n_weights = kept;
    sd_hmap_clear(&cl->weight_index);
    for (size_t i = 0; i < kept; i++) /* cannot fail: the index held more before */
        (void)sd_hmap_put(&cl->weight_index, sd_hash_ptr(cl->weights[i].key), (uint32_t)i);
    sd_weight_set_free(&set);
}

int sd_cl_grow(struct sd_cl *cl, cl_mem *m, size_t *size, size_t n, const char *what) {
    if (n > *size || !*m) {
        cl_int err = CL_SUCCESS;
        cl_mem b = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, n ? n : 64, NULL, &err);
        if (err != CL_SUCCESS) return sd_cl_check(cl->ctx, err, "clCreateBuffer", what);
        if (*m) clReleaseMemObject(*m);
        *m = b;
        *size = n;
    }
    return SD_OK;
}

int sd_cl_weight_f32(struct sd_cl *cl, const struct sd_tensor *w, bool transposed, struct sd_cl_buf *out) {
    const bool weight = !sd_tensor_in_arena(w) && !w->view_src;
    if (!weight && !transposed) return sd_cl_buf_of(cl, w, out);
    if (!weight) return sd_errorf(cl->ctx, SD_ERR_INVALID, "cl: %s is not a weight", w->name);
    bool half = false;
    out->offs = 0;
    int rc = weight_buf(cl, w, transposed, cl->half_weights != 0, &out->mem, &half);
    if (rc != SD_OK || !half) return rc;
    /* Halves: widen into the weight scratch (the queue is in order, so the
     * GEMM that reads it runs before the next widen overwrites it). */
    const size_t n = sd_tensor_nbytes(w) / sizeof(float);
    rc = sd_cl_grow(cl, &cl->wscratch, &cl->wscratch_size, n * sizeof(float), "weight scratch");
    if (rc != SD_OK) return rc;
    struct sd_cl_buf h = *out;
    *out = (struct sd_cl_buf){cl->wscratch, 0};
    return sd_cl_widen(cl, h, *out, 1, n, n, w->name);
}

bool sd_cl_weight_half(struct sd_cl *cl, const struct sd_tensor *w, struct sd_cl_buf *out, int *rc) {
    *rc = SD_OK;
    if (!cl->hgemm || !cl->graph || !cl->graph->half_ok || sd_tensor_in_arena(w) || w->view_src) return false;
    bool half = false;
    out->offs = 0;
    *rc = weight_buf(cl, w, false, true, &out->mem, &half);
    return *rc == SD_OK && half;
}

int sd_cl_scratch(struct sd_cl *cl, size_t n, cl_mem *out) {
    int rc = sd_cl_grow(cl, &cl->scratch, &cl->scratch_size, n, "scratch");
    *out = cl->scratch;
    return rc;
}

int sd_cl_hscratch(struct sd_cl *cl, size_t n, cl_mem *out) {
    int rc = sd_cl_grow(cl, &cl->hscratch, &cl->hscratch_size, n, "half scratch");
    *out = cl->hscratch;
    return rc;
}

int sd_cl_run(struct sd_cl *cl, cl_kernel k, const char *what, const struct sd_cl_arg *args, int n_args, int dims,
              const size_t *global, const size_t *local) {
    for (int i = 0; i < n_args; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].ptr);
        if (err != CL_SUCCESS) {
            char w[96];
            snprintf(w, sizeof w, "%s, arg %d", what, i);
            return sd_cl_check(cl->ctx, err, "clSetKernelArg", w);
        }
    }
    for (int d = 0; d < dims; d++)
        if (global[d] == 0) return SD_OK; /* empty */
    /* 1-d launches without a work-group size get 64 when it divides: PoCL
     * picks small groups by itself, and each group costs it a fixed
     * overhead (elementwise ops measured up to 1.9x faster). */
    size_t l64 = 64;
    if (!local && dims == 1 && global[0] % 64 == 0) local = &l64;
    cl_int err = clEnqueueNDRangeKernel(cl->queue, k, (cl_uint)dims, NULL, global, local, 0, NULL, NULL);
    return sd_cl_check(cl->ctx, err, "clEnqueueNDRangeKernel", what);
}

size_t sd_cl_wg_size(struct sd_cl *cl, cl_kernel k, size_t want) {
    size_t kmax = 0;
    if (clGetKernelWorkGroupInfo(k, cl->dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax, NULL) != CL_SUCCESS)
        kmax = 64;
    if (cl->info.max_work_group && kmax > cl->info.max_work_group) kmax = cl->info.max_work_group;
    size_t w = 1;
    while (w * 2 <= want && w * 2 <= kmax) w *= 2;
    return w;
}

/* --- vtable -------------------------------------------------------------- */

static bool set_why(char *why, size_t n, const char *s) {
    if (n) snprintf(why, n, "%s", s);
    return false;
}

static bool need_program(struct sd_cl *cl, const char *name) {
    int pi = sd_cl_program_index(name);
    if (pi < 0) return false;
    if (cl->progs[pi].state == SD_CL_PROG_OK) return true;
    bool first = cl->progs[pi].state == SD_CL_PROG_UNTRIED;
    if (sd_cl_program_ensure(cl, pi) == SD_OK) return true;
    if (first)
        sd_logf(&cl->log, SD_LOG_WARN, "opencl: program %s unavailable on %s; its ops run on the cpu: %.*s", name,
                cl->info.name, (int)strcspn(cl->ctx->msg, "\n"), cl->ctx->msg);
    sd_ctx_clear(cl->ctx);
    return false;
}

static bool cl_supports(struct sd_backend *b, const struct sd_tensor *node, char *why, size_t why_n) {
    struct sd_cl *cl = b->impl;
    if ((unsigned)node->op < SD_OP_COUNT && !sd_op_is_kernel(node->op)) return true;
    if ((unsigned)node->op >= SD_OP_COUNT || !cl_ops[node->op].fn) return set_why(why, why_n, "unsupported(op)");
    if (bit_get(cl->disabled_ops, node->op)) return set_why(why, why_n, "disabled");
    if (bit_get(cl->failed_ops, node->op)) return set_why(why, why_n, "device-error");
    if (node->type != SD_F32) return set_why(why, why_n, "unsupported(out dtype)");
    for (int i = 0; i < SD_MAX_SRC; i++) {
        const struct sd_tensor *s = node->src[i];
        if (!s) continue;
        bool ok = s->type == SD_F32 || (node->op == SD_OP_EMBEDDING && i == 0 && s->type == SD_I32);
        if (!ok) {
            if (why_n) snprintf(why, why_n, "unsupported(%s)", sd_dtype_name(s->type));
            return false;
        }
        if (sd_tensor_nelements(s) >= (int64_t)1 << 31) return set_why(why, why_n, "unsupported(size)");
    }
    if (sd_tensor_nelements(node) >= (int64_t)1 << 31) return set_why(why, why_n, "unsupported(size)");
    if (node->op == SD_OP_ATTENTION) {
        int h = node->p.attention.n_heads;
        if (node->src[0]->ne[3] / h > SD_CL_ATTN_DV_MAX || node->src[2]->ne[3] / h > SD_CL_ATTN_DV_MAX)
            return set_why(why, why_n, "unsupported(head dim)");
    }
    if (node->op == SD_OP_ATTENTION) {
        bool ok = cl->attn_gemm ? need_program(cl, "softmax") && need_program(cl, "permute") &&
                                      (!cl->gemm_own || need_program(cl, "gemm"))
                                : need_program(cl, "attention");
        if (!ok) return set_why(why, why_n, "build-failed");
    }
    const struct cl_op *o = &cl_ops[node->op];
    for (int i = 0; i < 3 && o->progs[i]; i++)
        if (!need_program(cl, o->progs[i])) return set_why(why, why_n, "build-failed");
    if (o->gemm && cl->gemm_own && !need_program(cl, "gemm")) return set_why(why, why_n, "build-failed");
    if ((node->op == SD_OP_CONV2D || node->op == SD_OP_LINEAR) && cl->half_weights && !need_program(cl, "half"))
        return set_why(why, why_n, "build-failed");
    return true;
}

static int cl_arena_reserve(struct sd_backend *b, size_t size, void **host) {
    struct sd_cl *cl = b->impl;
    (void)host;
    if (size <= cl->arena_size && cl->arena) return SD_OK;
    if (cl->info.max_alloc && size > cl->info.max_alloc)
        return sd_errorf(cl->ctx, SD_ERR_BACKEND, "opencl: activation arena of %.1f MiB exceeds the device's max allocation %.1f MiB",
                         (double)size / 1048576.0, (double)cl->info.max_alloc / 1048576.0);
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, size ? size : 64, NULL, &err);
    if (err != CL_SUCCESS) return sd_cl_check(cl->ctx, err, "clCreateBuffer", "arena");
    if (cl->arena) clReleaseMemObject(cl->arena);
    cl->arena = m;
    cl->arena_size = size;
    return SD_OK;
}

static int cl_tensor_set(struct sd_backend *b, const struct sd_graph *g, const struct sd_tensor *t, const void *host) {
    struct sd_cl *cl = b->impl;
    size_t n = sd_tensor_nbytes(t), offs = sd_graph_offs(g, t);
    if (!cl->arena || offs + n > cl->arena_size)
        return sd_errorf(cl->ctx, SD_ERR_BACKEND, "cl: tensor_set(%s) outside the arena", t->name);
    /* Blocking: the host arena region may be reused right after. */
    cl_int err = clEnqueueWriteBuffer(cl->queue, cl->arena, CL_TRUE, offs, n, host, 0, NULL, NULL);
    return sd_cl_check(cl->ctx, err, "clEnqueueWriteBuffer", t->name);
}

static int cl_tensor_get(struct sd_backend *b, const struct sd_graph *g, const struct sd_tensor *t, void *host) {
    struct sd_cl *cl = b->impl;
    size_t n = sd_tensor_nbytes(t), offs = sd_graph_offs(g, t);
    if (!cl->arena || offs + n > cl->arena_size)
        return sd_errorf(cl->ctx, SD_ERR_BACKEND, "cl: tensor_get(%s) outside the arena", t->name);
    cl_int err = clEnqueueReadBuffer(cl->queue, cl->arena, CL_TRUE, offs, n, host, 0, NULL, NULL);
    return sd_cl_check(cl->ctx, err, "clEnqueueReadBuffer", t->name);
}

static int cl_synchronize(struct sd_backend *b) {
    struct sd_cl *cl = b->impl;
    return sd_cl_check(cl->ctx, clFinish(cl->queue), "clFinish", "");
}

static int cl_compute(struct sd_backend *b, struct sd_graph *g, int i0, int i1) {
    struct sd_cl *cl = b->impl;
    cl->graph = g;
    for (int i = i0; i < i1; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (t->op == SD_OP_NONE || t->op == SD_OP_RESHAPE) continue;
        sd_cl_op_fn fn = (unsigned)t->op < SD_OP_COUNT ? cl_ops[t->op].fn : NULL;
        if (!fn) return sd_errorf(cl->ctx, SD_ERR_UNSUPPORTED, "cl: op %s not supported", sd_op_name(t->op));
        int rc;
        if (bit_get(cl->test_fail_ops, t->op))
            rc = sd_errorf(cl->ctx, SD_ERR_BACKEND, "opencl: injected device error (test hook cl_test_fail)");
        else rc = fn(cl, t);
        if (rc == SD_OK) continue;
        if (rc != SD_ERR_BACKEND) return sd_error_wrap(cl->ctx, "cl %s [%s]", sd_op_name(t->op), t->name);
        /* A device error: say which node, and remember the op so that later
         * graphs place it elsewhere from the start. */
        if (!bit_get(cl->failed_ops, t->op)) {
            sd_logf(&cl->log, SD_LOG_WARN, "opencl: %s [%s] failed on %s: %s; running %s on the cpu from now on",
                    sd_op_name(t->op), t->name, cl->info.name, cl->ctx->msg, sd_op_name(t->op));
            bit_set(cl->failed_ops, t->op);
        }
        b->failed_node = i;
        return sd_error_wrap(cl->ctx, "device error");
    }
    return SD_OK;
}

/* Frees the arena and the scratch (the next arena_reserve and op make them
 * again; --low-memory trims after each phase) and hands the host memory that
 * freed buffers leave behind back to the system: PoCL's buffers are C-heap
 * memory, which the C library otherwise keeps after free (measured: after
 * dropping the full-size SDXL UNet's 10.3 GB of buffers the process stayed
 * at 8.3 GB resident). */
static void buffers_release(struct sd_cl *cl) {
    cl_mem *bufs[] = {&cl->arena, &cl->scratch, &cl->wscratch, &cl->hscratch, &cl->emu};
    size_t *sizes[] = {&cl->arena_size, &cl->scratch_size, &cl->wscratch_size, &cl->hscratch_size, &cl->emu_size};
    for (int i = 0; i < 5; i++) {
        if (*bufs[i]) clReleaseMemObject(*bufs[i]);
        *bufs[i] = NULL, *sizes[i] = 0;
    }
}

static void cl_trim(struct sd_backend *b) {
    struct sd_cl *cl = b->impl;
    if (cl->queue) clFinish(cl->queue);
    buffers_release(cl);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void cl_free(struct sd_backend *b) {
    if (!b) return;
    struct sd_cl *cl = b->impl;
    if (cl) {
        if (cl->queue) clFinish(cl->queue);
        sd_cl_log_counts(cl);
        for (size_t i = 0; i < cl->n_weights; i++) clReleaseMemObject(cl->weights[i].mem);
        free(cl->weights);
        sd_hmap_free(&cl->weight_index);
        buffers_release(cl);
        if (cl->flag) clReleaseMemObject(cl->flag);
        sd_cl_programs_free(cl);
        if (cl->queue) clReleaseCommandQueue(cl->queue);
        sd_cl_context_release(cl->context);
        free(cl);
    }
    free(b);
}

static const struct sd_backend_i cl_iface = {
    .version = SD_BACKEND_IFACE_VERSION,
    .name = "opencl",
    .supports = cl_supports,
    .arena_reserve = cl_arena_reserve,
    .compute = cl_compute,
    .tensor_set = cl_tensor_set,
    .tensor_get = cl_tensor_get,
    .synchronize = cl_synchronize,
    .weights_released = weights_drop,
    .weights_changed = weights_drop,
    .trim = cl_trim,
    .free = cl_free,
};

static int parse_ops(struct sd_cl *cl, const char *what, const char *list, unsigned *mask) {
    if (!list || !*list) return SD_OK;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int op = sd_op_by_name(tok);
        if (op <= SD_OP_NONE) return sd_errorf(cl->ctx, SD_ERR_INVALID, "opencl: %s: unknown op '%s'", what, tok);
        bit_set(mask, op);
    }
    return SD_OK;
}

/* Precision. f16 holds the conv/linear weights in half on any device
 * (vload_half is core OpenCL) and multiplies in half (CLBlast HGEMM) where
 * the device has cl_khr_fp16, the CLBlast engine is in use and the half
 * GEMM passes sd_cl_hgemm_check; else its GEMMs stay f32 (weights widened
 * per op). auto is f16 only with that half GEMM (else f32: PoCL, and
 * NVIDIA's driver, which does not report cl_khr_fp16); bf16 is f32 here (no
 * bf16 on OpenCL devices). Needs the queue. */
static void precision_pick(struct sd_cl *cl, const struct sd_runtime_opts *opts) {
    const int p = opts->precision;
    const char *why = "";
    if (p == SD_PRECISION_F16 && opts->cl_test_hgemm && !cl->info.fp16) {
        cl->hgemm = cl->hgemm_emulated = 1; /* tests: the half-GEMM path on PoCL */
        why = " (test hook: half GEMM emulated)";
    } else if ((p == SD_PRECISION_F16 || p == SD_PRECISION_AUTO) && cl->info.fp16 && !cl->gemm_own) {
        double err = INFINITY;
        cl->hgemm = 1;
        int rc = sd_cl_hgemm_check(cl, &err);
        cl->hgemm = rc == SD_OK && err <= 0.05; /* sd_cl_hgemm_check */
        if (!cl->hgemm) {
            sd_logf(&cl->log, SD_LOG_WARN, "opencl: %s reports cl_khr_fp16 but its half GEMM %s%.*s; GEMMs in f32",
                    cl->info.name, rc ? "failed: " : "is off (check error above 5%)",
                    rc ? (int)strcspn(cl->ctx->msg, "\n") : 0, rc ? cl->ctx->msg : "");
            sd_ctx_clear(cl->ctx);
        } else {
            sd_logf(&cl->log, SD_LOG_DEBUG, "opencl: half GEMM check on %s: max error %.2g of max |result|",
                    cl->info.name, err);
        }
    }
    cl->half_weights = p == SD_PRECISION_F16 || cl->hgemm;
    sd_logf(&cl->log, SD_LOG_DEBUG, "opencl: precision %s -> %s on %s (cl_khr_fp16: %s, gemm %s)%s",
            sd_precision_name(p), cl->hgemm ? "f16 (half weights, half GEMMs)"
                                  : cl->half_weights ? "f16 weights, f32 GEMMs" : "f32",
            cl->info.name, cl->info.fp16 ? "yes" : "no", cl->gemm_own ? "gemm.cl" : "CLBlast", why);
}

struct sd_backend *sd_cl_backend_new(struct sd_ctx *ctx, const struct sd_runtime_opts *opts) {
    struct sd_runtime_opts defaults;
    if (!opts) sd_runtime_opts_init(&defaults), opts = &defaults;
    struct sd_backend *b = calloc(1, sizeof *b);
    struct sd_cl *cl = calloc(1, sizeof *cl);
    if (!b || !cl) {
        free(b);
        free(cl);
        sd_errorf(ctx, SD_ERR_NOMEM, "cl backend: out of memory");
        return NULL;
    }
    b->iface = &cl_iface;
    b->ctx = ctx;
    b->impl = cl;
    cl->ctx = ctx;
    cl->log = opts->log;
    cl->log_info = (opts->debug & SD_DEBUG_CL) != 0;
    snprintf(cl->precompiled_dir, sizeof cl->precompiled_dir, "%s", opts->cl_precompiled_dir ? opts->cl_precompiled_dir : "");
    snprintf(cl->export_dir, sizeof cl->export_dir, "%s", opts->cl_export_dir ? opts->cl_export_dir : "");
    snprintf(cl->test_break, sizeof cl->test_break, "%s", opts->cl_test_break ? opts->cl_test_break : "");
    if (opts->cl_cache_dir && *opts->cl_cache_dir && !sd_cl_cache_dir_make(opts->cl_cache_dir, cl->cache_dir, sizeof cl->cache_dir))
        sd_logf(&cl->log, SD_LOG_WARN, "opencl: program cache %s/cl cannot be created; programs are compiled each run",
                opts->cl_cache_dir);
    if (parse_ops(cl, "disabled ops", opts->cl_disable, cl->disabled_ops) != SD_OK ||
        parse_ops(cl, "test-fail ops", opts->cl_test_fail, cl->test_fail_ops) != SD_OK)
        goto fail;
    if (opts->cl_gemm < SD_CL_GEMM_AUTO || opts->cl_gemm > SD_CL_GEMM_CLBLAST || opts->cl_attn < SD_CL_ATTN_AUTO ||
        opts->cl_attn > SD_CL_ATTN_FLASH) {
        sd_errorf(ctx, SD_ERR_INVALID, "opencl: gemm engine %d or attention variant %d unknown", (int)opts->cl_gemm,
                  (int)opts->cl_attn);
        goto fail;
    }
    if (sd_cl_device_open(ctx, opts->cl_device, &cl->log, cl->log_info, &cl->info, &cl->platform, &cl->dev, &cl->context) !=
        SD_OK)
        goto fail;
    /* GEMM engine: CLBlast compiles its kernels at run time (tens of seconds
     * per variant on PoCL, never cached on disk) and is untuned on CPU
     * devices, where our register-blocked kernels measure faster
     * (docs/opencl.md); so CPU-type devices default to ours. */
    if (cl->precompiled_dir[0]) cl->gemm_own = 1;
    else if (opts->cl_gemm != SD_CL_GEMM_AUTO) cl->gemm_own = opts->cl_gemm == SD_CL_GEMM_OWN;
    else cl->gemm_own = strcmp(cl->info.type, "cpu") == 0;
    /* CPU-type devices (PoCL): work-item-per-row softmax and attention as
     * blocked GEMMs measure far faster than the work-group-reduction and
     * flash kernels there (docs/opencl.md). */
    cl->rowwise = opts->cl_rowwise >= 0 ? opts->cl_rowwise != 0 : strcmp(cl->info.type, "cpu") == 0;
    /* Attention as blocked GEMMs is the default everywhere: ~30x faster than
     * the flash kernel on PoCL, and on an NVIDIA H100 (full-size SD 1.5,
     * 512x512) UNet step 0.257 vs 0.305 s, VAE decode 0.290 vs 0.459 s. */
    cl->attn_gemm = opts->cl_attn != SD_CL_ATTN_FLASH;
    sd_cl_gemm_init(cl, opts->cl_xgemm_tuned);
    if (opts->precision < 0 || opts->precision >= SD_PRECISION_COUNT) {
        sd_errorf(ctx, SD_ERR_INVALID, "opencl: precision %d unknown (f32, auto, bf16, f16)", (int)opts->precision);
        goto fail;
    }
    snprintf(cl->build_opts, sizeof cl->build_opts, "-cl-std=CL1.2 -DSD_DV_MAX=%d", SD_CL_ATTN_DV_MAX);
    cl_int err = CL_SUCCESS;
    cl->queue = clCreateCommandQueue(cl->context, cl->dev, 0, &err);
    if (sd_cl_check(ctx, err, "clCreateCommandQueue", cl->info.name) != SD_OK) goto fail;
    cl->flag = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, sizeof(cl_int), NULL, &err);
    if (sd_cl_check(ctx, err, "clCreateBuffer", "flag") != SD_OK) goto fail;
    precision_pick(cl, opts);
    if (cl->log_info)
        sd_logf(&cl->log, SD_LOG_INFO, "opencl: device %d (%d:%d) %s (%s, %s, %u CUs, %.0f MiB), gemm %s%s%s",
                cl->info.index, cl->info.platform, cl->info.device, cl->info.name, cl->info.type, cl->info.cl_version,
                cl->info.compute_units, (double)cl->info.global_mem / 1048576.0, cl->gemm_own ? "gemm.cl" : "CLBlast",
                cl->precompiled_dir[0] ? ", precompiled from " : "", cl->precompiled_dir);
    return b;
fail:
    cl_free(b);
    return NULL;
}
