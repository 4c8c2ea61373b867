/* tensor.h - the one tensor/node struct, dtypes and the op table.
 *
 * Shapes are in PyTorch order and right-aligned in 4 slots: a tensor of
 * n_dims dims stores its sizes in ne[4-n_dims .. 3] and 1 in the slots before,
 * so ne[3] is always the innermost (fastest-varying) dimension. A [N,C,H,W]
 * latent is ne = {N,C,H,W}; a (B,L,C) sequence is {1,B,L,C}; a Linear weight
 * [out,in] is {1,1,out,in}. nb[] are byte strides, nb[3] = element size.
 *
 * A node is a tensor with op != SD_OP_NONE and src[] set. Leaves are graph
 * inputs (data written by the caller) or weights (data owned by a model).
 * A tensor is either owned by one graph (created by its builders, freed with
 * it) or a weight (flag SD_TF_WEIGHT, owned by a model and shared read-only
 * by every graph and runtime that uses it; see `data` and `index` below).
 */
#ifndef SDRT_TENSOR_H
#define SDRT_TENSOR_H

#include "sdrt.h"

enum sd_dtype { SD_F32 = 0, SD_F16, SD_BF16, SD_I32, SD_I64, SD_DTYPE_COUNT };

enum sd_op {
#define X(e, name, kind, flops) SD_OP_##e,
#include "ops.def"
#undef X
    SD_OP_COUNT
};

/* For X-macros over ops.def: SD_OP_IF_KERNEL(kind, ...) expands to its
 * other arguments for the ops a backend computes (kind `kernel`), to nothing
 * for leaves and views. E.g. a backend's declarations and dispatch table:
 *   #define X(e, name, kind, flops) SD_OP_IF_KERNEL(kind, [SD_OP_##e] = my_op_##name,)
 */
#define SD_OP_IF_KERNEL(kind, ...) SD_OP_IF_KERNEL_##kind(__VA_ARGS__)
#define SD_OP_IF_KERNEL_kernel(...) __VA_ARGS__
#define SD_OP_IF_KERNEL_leaf(...)
#define SD_OP_IF_KERNEL_view(...)

/* Per-op parameters: an op reads the member of its name (upsample_nearest:
 * upsample, timestep_embedding: timestep); ops without parameters none. */
/* wino4: the model accepts, for this conv, the rounding of a Winograd
 * F(4x4,3x3) in bf16 (a reduced-precision CPU backend may then use it;
 * sd_conv2d_ex sets it from the graph's wino4). */
struct sd_conv2d_params { int stride_h, stride_w, pad_t, pad_l, pad_b, pad_r, wino4; };
struct sd_matmul_params { int trans_a, trans_b; float alpha; };
struct sd_group_norm_params { int groups; float eps; int silu; };
struct sd_layer_norm_params { float eps; };
struct sd_softmax_params { float scale; int causal; };
struct sd_attention_params { int n_heads; float scale; int causal; };
struct sd_scale_params { float s, b; };
struct sd_concat_params { int dim; /* index into the logical (PyTorch) shape */ };
struct sd_upsample_params { int64_t oh, ow; };
struct sd_timestep_params { int dim, flip_sin_to_cos; float shift; float max_period; };
struct sd_permute_params { int perm[4]; /* output dim i = input dim perm[i], 4-slot indices */ };

union sd_op_params {
    int none;
    struct sd_conv2d_params conv2d;
    struct sd_matmul_params matmul;
    struct sd_group_norm_params group_norm;
    struct sd_layer_norm_params layer_norm;
    struct sd_softmax_params softmax;
    struct sd_attention_params attention;
    struct sd_scale_params scale;
    struct sd_concat_params concat;
    struct sd_upsample_params upsample;
    struct sd_timestep_params timestep;
    struct sd_permute_params permute;
};

enum sd_tensor_flag {
    SD_TF_INPUT = 1,   /* graph input: caller writes it before compute */
    SD_TF_OUTPUT = 2,  /* graph output: kept alive to the end, caller reads it */
    SD_TF_WEIGHT = 4,  /* model-owned constant; data points at host memory */
    SD_TF_DEFERRED = 8, /* weight whose f32 bytes may not exist yet: copy them with sd_weight_read_f32
                         * or call sd_weight_materialize before reading t->data (host/io/weights.h) */
};

#define SD_MAX_SRC 3

struct sd_tensor {
    enum sd_dtype type;
    int n_dims;
    int64_t ne[4];
    size_t nb[4];
    enum sd_op op;
    union sd_op_params p;
    struct sd_tensor *src[SD_MAX_SRC];
    struct sd_tensor *view_src; /* RESHAPE: the tensor whose memory this aliases */
    int flags;
    /* Host address of the bytes. Weights: set by their model at load and
     * never written by graphs, schedulers or backends (a weight may be read
     * by several graphs and runtimes at once). Graph-owned tensors: set by
     * the scheduler to the host arena (+ the graph's offset); only the graph
     * that created the tensor ever writes it. */
    void *data;
    /* Graph-owned tensors: position in the creating graph's nodes, fixed at
     * creation; per-node run state (arena offset, lifetime, placement,
     * validity) lives in that graph's arrays at this index (graph.h).
     * Weights have no position (-1) and no run state. */
    int index;
    char name[64];
};

const char *sd_op_name(enum sd_op op);
/* The op named `name` (as sd_op_name gives it), or -1. */
int sd_op_by_name(const char *name);
/* True for ops a backend computes; false for leaves (SD_OP_NONE) and views
 * (SD_OP_RESHAPE), which need no kernel. */
bool sd_op_is_kernel(enum sd_op op);
/* Floating-point operations of a node (multiply-add = 2), for GFLOP/s;
 * the formula is the op's `flops` column in ops.def. */
double sd_node_flops(const struct sd_tensor *node);
const char *sd_dtype_name(enum sd_dtype t);
size_t sd_dtype_size(enum sd_dtype t);

int64_t sd_tensor_nelements(const struct sd_tensor *t);
size_t sd_tensor_nbytes(const struct sd_tensor *t);
bool sd_tensor_is_contiguous(const struct sd_tensor *t);
/* Sets n_dims/ne (PyTorch order, `dims` outermost first) and contiguous nb. */
void sd_tensor_set_shape(struct sd_tensor *t, enum sd_dtype type, int n_dims, const int64_t *dims);
/* Logical size of PyTorch dim d (0 = outermost of the n_dims). */
int64_t sd_tensor_dim(const struct sd_tensor *t, int d);
/* "[2, 320, 64, 64]" into buf; returns buf. */
char *sd_tensor_shape_str(const struct sd_tensor *t, char *buf, size_t n);
bool sd_tensor_same_shape(const struct sd_tensor *a, const struct sd_tensor *b);

/* IEEE half and bfloat16 conversion (scalar; bulk versions below). */
float sd_f16_to_f32(uint16_t h);
uint16_t sd_f32_to_f16(float f);
float sd_bf16_to_f32(uint16_t h);
void sd_convert_to_f32(float *dst, const void *src, enum sd_dtype type, int64_t n);

#endif
