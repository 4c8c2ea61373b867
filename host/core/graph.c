/* graph.c - graph construction: leaves and op builders with shape inference.
 *
 * Every builder validates its inputs' shapes and dtypes and computes the
 * output shape; on a mismatch it records an error naming the op, the node
 * name of the offending input and both shapes, and returns NULL. Builders
 * given NULL return NULL silently (the first error is kept).
 */
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sd_graph *sd_graph_new(struct sd_ctx *ctx) {
    struct sd_graph *g = calloc(1, sizeof *g);
    if (!g) {
        sd_errorf(ctx, SD_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    g->ctx = ctx;
    return g;
}

void sd_graph_free(struct sd_graph *g) {
    if (!g) return;
    /* Only the tensors this graph created; weights belong to their model,
     * which may already be gone, so they are not even looked at. */
    for (int i = 0; i < g->n_nodes; i++) free(g->nodes[i]);
    free(g->nodes);
    free(g->weights);
    free(g->outputs);
    free(g->offs);
    free(g->life_first);
    free(g->life_last);
    free(g->backend);
    free(g->valid);
    free(g);
}

static struct sd_tensor *fail(struct sd_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static struct sd_tensor *fail(struct sd_graph *g, const char *fmt, ...) {
    if (g->status == SD_OK) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        g->status = sd_errorf(g->ctx, SD_ERR_INVALID, "graph: %s", buf);
    }
    return NULL;
}

static int push(struct sd_tensor ***arr, int *n, int *cap, struct sd_tensor *t) {
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 256;
        struct sd_tensor **a = realloc(*arr, (size_t)c * sizeof *a);
        if (!a) return -1;
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = t;
    return 0;
}

bool sd_graph_owns(const struct sd_graph *g, const struct sd_tensor *t) {
    return t && t->index >= 0 && t->index < g->n_nodes && g->nodes[t->index] == t;
}

/* Lists weight w in g->weights once; writes nothing into w. */
static int add_weight(struct sd_graph *g, struct sd_tensor *w) {
    for (int i = g->n_weights - 1; i >= 0; i--)
        if (g->weights[i] == w) return 0;
    return push(&g->weights, &g->n_weights, &g->cap_weights, w);
}

static struct sd_tensor *new_tensor(struct sd_graph *g, enum sd_op op, enum sd_dtype type, int n_dims,
                                    const int64_t *dims) {
    struct sd_tensor *t = calloc(1, sizeof *t);
    if (!t || push(&g->nodes, &g->n_nodes, &g->cap_nodes, t) != 0) {
        free(t);
        if (g->status == SD_OK) g->status = sd_errorf(g->ctx, SD_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    g->planned = 0;
    t->index = g->n_nodes - 1;
    t->op = op;
    sd_tensor_set_shape(t, type, n_dims, dims);
    snprintf(t->name, sizeof t->name, "%s_%d", sd_op_name(op), t->index);
    return t;
}

struct sd_tensor *sd_name(struct sd_tensor *t, const char *fmt, ...) {
    if (!t) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    return t;
}

struct sd_tensor *sd_graph_input(struct sd_graph *g, const char *name, enum sd_dtype type, int n_dims,
                                 const int64_t *dims) {
    if (!g || g->status) return NULL;
    if (n_dims < 1 || n_dims > 4) return fail(g, "input %s: %d dims (1..4 supported)", name, n_dims);
    for (int i = 0; i < n_dims; i++)
        if (dims[i] < 1) return fail(g, "input %s: dim %d is %lld", name, i, (long long)dims[i]);
    struct sd_tensor *t = new_tensor(g, SD_OP_NONE, type, n_dims, dims);
    if (!t) return NULL;
    t->flags |= SD_TF_INPUT;
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

struct sd_tensor *sd_graph_weight(struct sd_graph *g, struct sd_tensor *w) {
    if (!g || g->status || !w) return NULL;
    if (sd_graph_owns(g, w)) return w;
    if (!(w->flags & SD_TF_WEIGHT) || !w->data)
        return fail(g, "%s is neither a node of this graph nor a weight (flag SD_TF_WEIGHT with data)", w->name);
    if (add_weight(g, w) != 0) return fail(g, "out of memory");
    return w;
}

/* Weights may be passed to builders directly; they are registered on use. */
static struct sd_tensor *use(struct sd_graph *g, struct sd_tensor *t) {
    return t && !sd_graph_owns(g, t) ? sd_graph_weight(g, t) : t;
}

void sd_graph_output(struct sd_graph *g, struct sd_tensor *t) {
    if (!g || !t) return;
    if (!sd_graph_owns(g, t)) {
        fail(g, "output %s is not a node of this graph", t->name);
        return;
    }
    if (g->n_outputs == g->cap_outputs) {
        int cap = g->cap_outputs ? g->cap_outputs * 2 : 8;
        struct sd_tensor **n = realloc(g->outputs, (size_t)cap * sizeof *n);
        if (!n) {
            fail(g, "out of memory");
            return;
        }
        g->outputs = n;
        g->cap_outputs = cap;
    }
    t->flags |= SD_TF_OUTPUT;
    g->outputs[g->n_outputs++] = t;
    g->planned = 0;
}

#define SHAPE(t) sd_tensor_shape_str((t), sa_##t, sizeof sa_##t)

#define GUARD1(a) if (!g || g->status || !(a)) return NULL
#define GUARD2(a, b) if (!g || g->status || !(a) || !(b)) return NULL
#define GUARD3(a, b, c) if (!g || g->status || !(a) || !(b) || !(c)) return NULL

static bool is_f32(const struct sd_tensor *t) { return t->type == SD_F32; }

struct sd_tensor *sd_conv2d_ex(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *w,
                               struct sd_tensor *b, struct sd_conv2d_params p) {
    GUARD2(x, w);
    char sa_x[64], sa_w[64];
    if (x->n_dims != 4 || w->n_dims != 4 || !is_f32(x) || !is_f32(w))
        return fail(g, "conv2d(%s): x %s and w %s must be 4-d f32", x->name, SHAPE(x), SHAPE(w));
    if (w->ne[1] != x->ne[1])
        return fail(g, "conv2d(%s): x %s has %lld channels, weight %s %s expects %lld", x->name, SHAPE(x),
                    (long long)x->ne[1], w->name, SHAPE(w), (long long)w->ne[1]);
    if (b && (sd_tensor_nelements(b) != w->ne[0]))
        return fail(g, "conv2d(%s): bias %s has %lld elements, want %lld", x->name, b->name,
                    (long long)sd_tensor_nelements(b), (long long)w->ne[0]);
    if (p.stride_h < 1 || p.stride_w < 1 || p.pad_t < 0 || p.pad_l < 0 || p.pad_b < 0 || p.pad_r < 0)
        return fail(g, "conv2d(%s): bad stride/padding", x->name);
    int64_t oh = (x->ne[2] + p.pad_t + p.pad_b - w->ne[2]) / p.stride_h + 1;
    int64_t ow = (x->ne[3] + p.pad_l + p.pad_r - w->ne[3]) / p.stride_w + 1;
    if (oh < 1 || ow < 1) return fail(g, "conv2d(%s): input %s too small for kernel %s", x->name, SHAPE(x), SHAPE(w));
    use(g, w);
    use(g, b);
    struct sd_tensor *t = new_tensor(g, SD_OP_CONV2D, SD_F32, 4, (int64_t[]){x->ne[0], w->ne[0], oh, ow});
    if (!t) return NULL;
    t->src[0] = x, t->src[1] = w, t->src[2] = b;
    if (g->wino4) p.wino4 = 1;
    t->p.conv2d = p;
    return t;
}

struct sd_tensor *sd_conv2d(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *w, struct sd_tensor *b,
                            int stride, int pad) {
    struct sd_conv2d_params p = {stride, stride, pad, pad, pad, pad, 0};
    return sd_conv2d_ex(g, x, w, b, p);
}

struct sd_tensor *sd_linear(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *w, struct sd_tensor *b) {
    GUARD2(x, w);
    char sa_x[64], sa_w[64];
    if (!is_f32(x) || !is_f32(w) || w->ne[0] * w->ne[1] != 1)
        return fail(g, "linear(%s): x %s, w %s must be f32 and w 2-d", x->name, SHAPE(x), SHAPE(w));
    if (x->ne[3] != w->ne[3])
        return fail(g, "linear(%s): x %s has inner dim %lld, weight %s %s expects %lld", x->name, SHAPE(x),
                    (long long)x->ne[3], w->name, SHAPE(w), (long long)w->ne[3]);
    if (b && sd_tensor_nelements(b) != w->ne[2])
        return fail(g, "linear(%s): bias %s has %lld elements, want %lld", x->name, b->name,
                    (long long)sd_tensor_nelements(b), (long long)w->ne[2]);
    use(g, w);
    use(g, b);
    int64_t dims[4];
    for (int i = 0; i < x->n_dims; i++) dims[i] = sd_tensor_dim(x, i);
    dims[x->n_dims - 1] = w->ne[2];
    struct sd_tensor *t = new_tensor(g, SD_OP_LINEAR, SD_F32, x->n_dims, dims);
    if (!t) return NULL;
    t->src[0] = x, t->src[1] = w, t->src[2] = b;
    return t;
}

struct sd_tensor *sd_matmul(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b, int trans_a,
                            int trans_b, float alpha) {
    GUARD2(a, b);
    char sa_a[64], sa_b[64];
    int64_t M = trans_a ? a->ne[3] : a->ne[2], K = trans_a ? a->ne[2] : a->ne[3];
    int64_t Kb = trans_b ? b->ne[3] : b->ne[2], N = trans_b ? b->ne[2] : b->ne[3];
    if (!is_f32(a) || !is_f32(b) || K != Kb || a->ne[0] != b->ne[0] || a->ne[1] != b->ne[1])
        return fail(g, "matmul(%s, %s): incompatible %s%s x %s%s", a->name, b->name, SHAPE(a), trans_a ? "^T" : "",
                    SHAPE(b), trans_b ? "^T" : "");
    use(g, a);
    use(g, b);
    int nd = a->n_dims > b->n_dims ? a->n_dims : b->n_dims;
    if (nd < 2) nd = 2;
    int64_t dims4[4] = {a->ne[0], a->ne[1], M, N};
    struct sd_tensor *t = new_tensor(g, SD_OP_MATMUL, SD_F32, nd, dims4 + 4 - nd);
    if (!t) return NULL;
    t->src[0] = a, t->src[1] = b;
    t->p.matmul = (struct sd_matmul_params){trans_a, trans_b, alpha};
    return t;
}

static bool is_vec(const struct sd_tensor *v, int64_t n) { return v && sd_tensor_nelements(v) == n && is_f32(v); }

struct sd_tensor *sd_group_norm(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *gamma,
                                struct sd_tensor *beta, int groups, float eps, int silu) {
    GUARD1(x);
    char sa_x[64];
    if (x->n_dims < 2 || !is_f32(x)) return fail(g, "group_norm(%s): x %s must be [N,C,...] f32", x->name, SHAPE(x));
    int64_t C = sd_tensor_dim(x, 1);
    if (groups < 1 || C % groups)
        return fail(g, "group_norm(%s): %lld channels not divisible into %d groups", x->name, (long long)C, groups);
    if ((gamma && !is_vec(gamma, C)) || (beta && !is_vec(beta, C)))
        return fail(g, "group_norm(%s): gamma/beta must have %lld elements", x->name, (long long)C);
    use(g, gamma);
    use(g, beta);
    int64_t dims[4];
    for (int i = 0; i < x->n_dims; i++) dims[i] = sd_tensor_dim(x, i);
    struct sd_tensor *t = new_tensor(g, SD_OP_GROUP_NORM, SD_F32, x->n_dims, dims);
    if (!t) return NULL;
    t->src[0] = x, t->src[1] = gamma, t->src[2] = beta;
    t->p.group_norm = (struct sd_group_norm_params){groups, eps, silu};
    return t;
}

static struct sd_tensor *same_shape_op(struct sd_graph *g, enum sd_op op, struct sd_tensor *x) {
    int64_t dims[4];
    for (int i = 0; i < x->n_dims; i++) dims[i] = sd_tensor_dim(x, i);
    struct sd_tensor *t = new_tensor(g, op, x->type, x->n_dims, dims);
    if (t) t->src[0] = x;
    return t;
}

struct sd_tensor *sd_layer_norm(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *gamma,
                                struct sd_tensor *beta, float eps) {
    GUARD1(x);
    char sa_x[64];
    if (!is_f32(x)) return fail(g, "layer_norm(%s): x %s must be f32", x->name, SHAPE(x));
    if ((gamma && !is_vec(gamma, x->ne[3])) || (beta && !is_vec(beta, x->ne[3])))
        return fail(g, "layer_norm(%s): gamma/beta must have %lld elements", x->name, (long long)x->ne[3]);
    use(g, gamma);
    use(g, beta);
    struct sd_tensor *t = same_shape_op(g, SD_OP_LAYER_NORM, x);
    if (!t) return NULL;
    t->src[1] = gamma, t->src[2] = beta;
    t->p.layer_norm.eps = eps;
    return t;
}

struct sd_tensor *sd_softmax(struct sd_graph *g, struct sd_tensor *x, float scale, int causal) {
    GUARD1(x);
    char sa_x[64];
    if (!is_f32(x)) return fail(g, "softmax(%s): x %s must be f32", x->name, SHAPE(x));
    struct sd_tensor *t = same_shape_op(g, SD_OP_SOFTMAX, x);
    if (t) t->p.softmax = (struct sd_softmax_params){scale, causal};
    return t;
}

struct sd_tensor *sd_attention(struct sd_graph *g, struct sd_tensor *q, struct sd_tensor *k, struct sd_tensor *v,
                               int n_heads, float scale, int causal) {
    GUARD3(q, k, v);
    char sa_q[64], sa_k[64], sa_v[64];
    if (!is_f32(q) || !is_f32(k) || !is_f32(v) || q->n_dims > 3 || k->n_dims > 3 || v->n_dims > 3)
        return fail(g, "attention(%s): q/k/v must be f32 [B,L,C]", q->name);
    if (n_heads < 1 || q->ne[3] % n_heads || v->ne[3] % n_heads || q->ne[3] != k->ne[3] || k->ne[2] != v->ne[2] ||
        q->ne[1] != k->ne[1] || k->ne[1] != v->ne[1])
        return fail(g, "attention(%s): q %s, k %s, v %s incompatible with %d heads", q->name, SHAPE(q), SHAPE(k),
                    SHAPE(v), n_heads);
    use(g, q); use(g, k); use(g, v);
    struct sd_tensor *t = new_tensor(g, SD_OP_ATTENTION, SD_F32, 3, (int64_t[]){q->ne[1], q->ne[2], v->ne[3]});
    if (!t) return NULL;
    t->src[0] = q, t->src[1] = k, t->src[2] = v;
    t->p.attention = (struct sd_attention_params){n_heads, scale, causal};
    return t;
}

static struct sd_tensor *unary(struct sd_graph *g, enum sd_op op, struct sd_tensor *x) {
    GUARD1(x);
    char sa_x[64];
    if (!is_f32(x)) return fail(g, "%s(%s): x %s must be f32", sd_op_name(op), x->name, SHAPE(x));
    return same_shape_op(g, op, x);
}

struct sd_tensor *sd_gelu(struct sd_graph *g, struct sd_tensor *x) { return unary(g, SD_OP_GELU, x); }
struct sd_tensor *sd_quick_gelu(struct sd_graph *g, struct sd_tensor *x) { return unary(g, SD_OP_QUICK_GELU, x); }
struct sd_tensor *sd_silu(struct sd_graph *g, struct sd_tensor *x) { return unary(g, SD_OP_SILU, x); }
struct sd_tensor *sd_relu(struct sd_graph *g, struct sd_tensor *x) { return unary(g, SD_OP_RELU, x); }
struct sd_tensor *sd_tanh(struct sd_graph *g, struct sd_tensor *x) { return unary(g, SD_OP_TANH, x); }

struct sd_tensor *sd_geglu(struct sd_graph *g, struct sd_tensor *x) {
    GUARD1(x);
    char sa_x[64];
    if (!is_f32(x) || x->ne[3] % 2) return fail(g, "geglu(%s): x %s needs an even last dim", x->name, SHAPE(x));
    int64_t dims[4];
    for (int i = 0; i < x->n_dims; i++) dims[i] = sd_tensor_dim(x, i);
    dims[x->n_dims - 1] /= 2;
    struct sd_tensor *t = new_tensor(g, SD_OP_GEGLU, SD_F32, x->n_dims, dims);
    if (t) t->src[0] = x;
    return t;
}

static struct sd_tensor *binary(struct sd_graph *g, enum sd_op op, struct sd_tensor *a, struct sd_tensor *b) {
    GUARD2(a, b);
    char sa_a[64], sa_b[64];
    if (!is_f32(a) || !is_f32(b)) return fail(g, "%s(%s): operands must be f32", sd_op_name(op), a->name);
    for (int i = 0; i < 4; i++)
        if (b->ne[i] != 1 && b->ne[i] != a->ne[i])
            return fail(g, "%s(%s, %s): %s does not broadcast to %s", sd_op_name(op), a->name, b->name, SHAPE(b),
                        SHAPE(a));
    use(g, a);
    use(g, b);
    struct sd_tensor *t = same_shape_op(g, op, a);
    if (t) t->src[1] = b;
    return t;
}

struct sd_tensor *sd_add(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b) { return binary(g, SD_OP_ADD, a, b); }
struct sd_tensor *sd_mul(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b) { return binary(g, SD_OP_MUL, a, b); }

struct sd_tensor *sd_scale(struct sd_graph *g, struct sd_tensor *x, float s, float b) {
    struct sd_tensor *t = unary(g, SD_OP_SCALE, x);
    if (t) t->p.scale = (struct sd_scale_params){s, b};
    return t;
}

struct sd_tensor *sd_concat(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b, int dim) {
    GUARD2(a, b);
    char sa_a[64], sa_b[64];
    if (a->n_dims != b->n_dims || dim < 0 || dim >= a->n_dims || !is_f32(a) || !is_f32(b))
        return fail(g, "concat(%s, %s): %s and %s along dim %d", a->name, b->name, SHAPE(a), SHAPE(b), dim);
    int64_t dims[4];
    for (int i = 0; i < a->n_dims; i++) {
        dims[i] = sd_tensor_dim(a, i);
        if (i != dim && dims[i] != sd_tensor_dim(b, i))
            return fail(g, "concat(%s, %s): %s and %s differ outside dim %d", a->name, b->name, SHAPE(a), SHAPE(b), dim);
    }
    dims[dim] += sd_tensor_dim(b, dim);
    use(g, a);
    use(g, b);
    struct sd_tensor *t = new_tensor(g, SD_OP_CONCAT, SD_F32, a->n_dims, dims);
    if (!t) return NULL;
    t->src[0] = a, t->src[1] = b;
    t->p.concat.dim = dim;
    return t;
}

struct sd_tensor *sd_upsample(struct sd_graph *g, struct sd_tensor *x, int64_t oh, int64_t ow) {
    GUARD1(x);
    char sa_x[64];
    if (x->n_dims != 4 || !is_f32(x) || oh < 1 || ow < 1)
        return fail(g, "upsample(%s): x %s to %lldx%lld", x->name, SHAPE(x), (long long)oh, (long long)ow);
    struct sd_tensor *t = new_tensor(g, SD_OP_UPSAMPLE, SD_F32, 4, (int64_t[]){x->ne[0], x->ne[1], oh, ow});
    if (!t) return NULL;
    t->src[0] = x;
    t->p.upsample = (struct sd_upsample_params){oh, ow};
    return t;
}

struct sd_tensor *sd_embedding(struct sd_graph *g, struct sd_tensor *ids, struct sd_tensor *table) {
    GUARD2(ids, table);
    char sa_ids[64], sa_table[64];
    if (ids->type != SD_I32 || !is_f32(table) || table->ne[0] * table->ne[1] != 1 || ids->n_dims > 2)
        return fail(g, "embedding: ids %s (i32 [B,L]) and table %s (f32 [V,C])", SHAPE(ids), SHAPE(table));
    use(g, table);
    struct sd_tensor *t = new_tensor(g, SD_OP_EMBEDDING, SD_F32, 3, (int64_t[]){ids->ne[2], ids->ne[3], table->ne[3]});
    if (!t) return NULL;
    t->src[0] = ids, t->src[1] = table;
    return t;
}

struct sd_tensor *sd_timestep_embed(struct sd_graph *g, struct sd_tensor *ts, int dim, int flip_sin_to_cos,
                                    float shift) {
    GUARD1(ts);
    char sa_ts[64];
    if (!is_f32(ts) || ts->n_dims != 1 || dim < 2 || dim % 2)
        return fail(g, "timestep_embedding: t %s must be f32 [B], dim %d even", SHAPE(ts), dim);
    struct sd_tensor *t = new_tensor(g, SD_OP_TIMESTEP_EMBED, SD_F32, 2, (int64_t[]){ts->ne[3], dim});
    if (!t) return NULL;
    t->src[0] = ts;
    t->p.timestep = (struct sd_timestep_params){dim, flip_sin_to_cos, shift, 10000.0f};
    return t;
}

struct sd_tensor *sd_reshape(struct sd_graph *g, struct sd_tensor *x, int n_dims, const int64_t *dims) {
    GUARD1(x);
    char sa_x[64];
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= dims[i];
    if (n_dims < 1 || n_dims > 4 || n != sd_tensor_nelements(x))
        return fail(g, "reshape(%s): %s has %lld elements, target has %lld", x->name, SHAPE(x),
                    (long long)sd_tensor_nelements(x), (long long)n);
    if (x->flags & SD_TF_WEIGHT) return fail(g, "reshape(%s): reshape weights at load time", x->name);
    struct sd_tensor *t = new_tensor(g, SD_OP_RESHAPE, x->type, n_dims, dims);
    if (!t) return NULL;
    t->src[0] = x;
    t->view_src = x->view_src ? x->view_src : x;
    return t;
}

struct sd_tensor *sd_permute(struct sd_graph *g, struct sd_tensor *x, const int *perm) {
    GUARD1(x);
    char sa_x[64];
    int seen = 0, nd = x->n_dims;
    for (int i = 0; i < nd; i++) {
        if (perm[i] < 0 || perm[i] >= nd || (seen >> perm[i]) & 1)
            return fail(g, "permute(%s): invalid permutation for %s", x->name, SHAPE(x));
        seen |= 1 << perm[i];
    }
    int64_t dims[4];
    struct sd_permute_params p = {{0, 1, 2, 3}};
    for (int i = 0; i < nd; i++) {
        dims[i] = sd_tensor_dim(x, perm[i]);
        p.perm[4 - nd + i] = 4 - nd + perm[i];
    }
    struct sd_tensor *t = new_tensor(g, SD_OP_PERMUTE, x->type, nd, dims);
    if (!t) return NULL;
    t->src[0] = x;
    t->p.permute = p;
    return t;
}
