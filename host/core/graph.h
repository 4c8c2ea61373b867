/* graph.h - building a graph of layers, its memory plan, and running it.
 *
 * A model builds one graph per (model, input shape). Builder functions append
 * a node and return it; on invalid shapes they record an error on the graph
 * and return NULL, and every builder given a NULL src returns NULL, so a
 * model's forward function can be written straight through and checked once
 * (sd_graph_plan reports the first error).
 *
 *   struct sd_graph *g = sd_graph_new(ctx);
 *   struct sd_tensor *x = sd_graph_input(g, "latent", SD_F32, 4, (int64_t[]){2,4,64,64});
 *   x = sd_conv2d(g, x, w->conv_in_w, w->conv_in_b, 1, 1);     // [2,320,64,64]
 *   sd_graph_output(g, x);
 *   if (sd_graph_plan(g) != SD_OK) ...                        // memory plan, peak bytes
 *
 * Weights are tensors owned by the model (flag SD_TF_WEIGHT, data set); the
 * graph borrows them (g->weights) and writes nothing into them, so one model
 * serves any number of graphs, runtimes and threads at once. Everything a
 * run needs per node (arena offset, lifetime, backend, validity) lives in
 * the graph's arrays indexed by the node's position. Activations get offsets
 * in one arena whose size (g->arena_size) is known after sd_graph_plan and
 * printed by sd_graph_print.
 */
#ifndef SDRT_GRAPH_H
#define SDRT_GRAPH_H

#include <stdio.h>

#include "tensor.h"

struct sd_graph {
    struct sd_ctx *ctx;
    int status;                 /* first build error (message in ctx) */
    struct sd_tensor **nodes;   /* the tensors this graph created (and frees), in creation
                                 * order: nodes[i]->index == i. Weights are not nodes. */
    int n_nodes, cap_nodes;
    struct sd_tensor **weights; /* the model weights the graph reads (borrowed, never written) */
    int n_weights, cap_weights;
    struct sd_tensor **outputs;
    int n_outputs, cap_outputs;
    size_t arena_size;          /* activation bytes needed (after sd_graph_plan) */
    size_t naive_size;          /* sum of all activation sizes (no reuse), for reporting */
    int planned;
    /* Run state, one entry per node index. Memory plan (sd_graph_plan):
     * arena offset (a view: its base's) and lifetime [first, last]. */
    size_t *offs;
    int *life_first, *life_last;
    /* Placement (sd_sched_alloc): the backend index that runs the node, and
     * (sd_sched_compute) the bitmask of backends holding its current bytes. */
    int *backend;
    unsigned *valid;
    const void *placed_by;      /* the scheduler the placement belongs to */
    /* Set by a model builder before it adds its convolutions: they accept
     * F(4x4,3x3) Winograd rounding in bf16 (struct sd_conv2d_params). The
     * UNet builders set it; the VAE's convs, whose rounding lands in the
     * pixels, keep F(2x2). */
    int wino4;
    /* Set by a model builder: its activations may be rounded to half for a
     * device's half GEMMs (precision f16 on a device with cl_khr_fp16). The
     * UNet and text encoder builders set it; the VAE's activations can pass
     * half's range (diffusers upcasts it: force_upcast), so its GEMMs stay
     * f32 (its weights may still be held in half). */
    int half_ok;
};

/* Returns a new empty graph owned by the caller (free with sd_graph_free). */
struct sd_graph *sd_graph_new(struct sd_ctx *ctx);
void sd_graph_free(struct sd_graph *g);

/* Leaves. An input's data is written by the caller after allocation. A
 * weight is a tensor owned by someone else (a model) with flag SD_TF_WEIGHT
 * and data set; the graph only lists it in g->weights (once), and it must
 * outlive the graph. Builders register the weights they are given the same
 * way; a source that is neither this graph's node nor a weight is a build
 * error. */
struct sd_tensor *sd_graph_input(struct sd_graph *g, const char *name, enum sd_dtype type,
                                 int n_dims, const int64_t *dims);
struct sd_tensor *sd_graph_weight(struct sd_graph *g, struct sd_tensor *w);
void sd_graph_output(struct sd_graph *g, struct sd_tensor *t);

/* Names the last created node (printf-style); returns t. NULL-safe. */
struct sd_tensor *sd_name(struct sd_tensor *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Op builders (see ops.def for semantics). Optional srcs may be NULL where
 * noted. All return NULL (and set g->status) on a shape error. */
struct sd_tensor *sd_conv2d(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *w,
                            struct sd_tensor *b /* opt */, int stride, int pad);
struct sd_tensor *sd_conv2d_ex(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *w,
                               struct sd_tensor *b, struct sd_conv2d_params p);
struct sd_tensor *sd_linear(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *w,
                            struct sd_tensor *b /* opt */);
struct sd_tensor *sd_matmul(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b,
                            int trans_a, int trans_b, float alpha);
struct sd_tensor *sd_group_norm(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *gamma,
                                struct sd_tensor *beta, int groups, float eps, int silu);
struct sd_tensor *sd_layer_norm(struct sd_graph *g, struct sd_tensor *x, struct sd_tensor *gamma,
                                struct sd_tensor *beta, float eps);
struct sd_tensor *sd_softmax(struct sd_graph *g, struct sd_tensor *x, float scale, int causal);
struct sd_tensor *sd_attention(struct sd_graph *g, struct sd_tensor *q, struct sd_tensor *k,
                               struct sd_tensor *v, int n_heads, float scale, int causal);
struct sd_tensor *sd_gelu(struct sd_graph *g, struct sd_tensor *x);
struct sd_tensor *sd_quick_gelu(struct sd_graph *g, struct sd_tensor *x);
struct sd_tensor *sd_silu(struct sd_graph *g, struct sd_tensor *x);
struct sd_tensor *sd_relu(struct sd_graph *g, struct sd_tensor *x);
struct sd_tensor *sd_tanh(struct sd_graph *g, struct sd_tensor *x);
struct sd_tensor *sd_geglu(struct sd_graph *g, struct sd_tensor *x);
struct sd_tensor *sd_add(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b);
struct sd_tensor *sd_mul(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b);
struct sd_tensor *sd_scale(struct sd_graph *g, struct sd_tensor *x, float s, float b);
struct sd_tensor *sd_concat(struct sd_graph *g, struct sd_tensor *a, struct sd_tensor *b, int dim);
struct sd_tensor *sd_upsample(struct sd_graph *g, struct sd_tensor *x, int64_t oh, int64_t ow);
struct sd_tensor *sd_embedding(struct sd_graph *g, struct sd_tensor *ids, struct sd_tensor *table);
struct sd_tensor *sd_timestep_embed(struct sd_graph *g, struct sd_tensor *t, int dim,
                                    int flip_sin_to_cos, float shift);
struct sd_tensor *sd_reshape(struct sd_graph *g, struct sd_tensor *x, int n_dims, const int64_t *dims);
/* perm is in PyTorch dim indices of x's logical shape (len n_dims). */
struct sd_tensor *sd_permute(struct sd_graph *g, struct sd_tensor *x, const int *perm);

/* Memory plan: computes each activation's lifetime (creation to last use,
 * views extend their base, outputs live to the end) and assigns arena
 * offsets with a best-fit free list so that no two live tensors overlap.
 * Sets g->arena_size. Returns SD_OK or the first build error. */
int sd_graph_plan(struct sd_graph *g);

/* Prints nodes (with SD_GRAPH_DEBUG-style detail when verbose) and the plan. */
void sd_graph_print(const struct sd_graph *g, FILE *f, int verbose);

/* For tests: returns true if every two activations whose lifetimes overlap
 * occupy disjoint arena ranges. */
bool sd_graph_plan_check(const struct sd_graph *g);

/* Lifetime of node t's memory: [first, last] node indices (after plan). */
void sd_graph_lifetime(const struct sd_graph *g, const struct sd_tensor *t, int *first, int *last);

/* Arena offset of t's bytes (a view: its base's) after plan; t must be a
 * node of g in the arena or a view of one. */
size_t sd_graph_offs(const struct sd_graph *g, const struct sd_tensor *t);

/* Whether t is a node of g (created by it), as opposed to a weight. */
bool sd_graph_owns(const struct sd_graph *g, const struct sd_tensor *t);

/* Whether a tensor occupies activation-arena memory (not a weight, not a view). */
bool sd_tensor_in_arena(const struct sd_tensor *t);

#endif
