/* test_op_table.c - the op table (host/core/ops.def) against what derives
 * from it: every op has a representative node here, the CPU backend accepts
 * every one (it implements every op), the OpenCL backend (PoCL here) refuses
 * exactly the ops it declares unimplemented (sd_cl_op_unimplemented), and
 * sd_node_flops gives the count worked out by hand for each node's shape.
 *
 * An op added to ops.def without a line in `cases` below fails here, as does
 * an OpenCL backend that neither implements nor declares it.
 */
#include "cl_test_opts.h"
#include "cl.h"
#include "cpu.h"
#include "graph.h"
#include "test.h"

/* ASan builds: PoCL's compiler state outlives the process (cl_test_util.h). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libpocl.so\nleak:libLLVM\nleak:libclang\n"; }

#define D(...) ((const int64_t[]){__VA_ARGS__})

static struct sd_tensor *in(struct sd_graph *g, int nd, const int64_t *dims) {
    return sd_graph_input(g, "x", SD_F32, nd, dims);
}

/* One node per case; `flops` is the hand count (multiply-add = 2). */
struct op_case {
    enum sd_op op;
    double flops;
    const char *how;
    struct sd_tensor *(*build)(struct sd_graph *g);
};

static struct sd_tensor *b_input(struct sd_graph *g) { return in(g, 2, D(3, 4)); }
/* out [1,6,8,8] = 384; 2 * 384 * (Ci 4 * 3 * 3) */
static struct sd_tensor *b_conv2d(struct sd_graph *g) {
    return sd_conv2d(g, in(g, 4, D(1, 4, 8, 8)), in(g, 4, D(6, 4, 3, 3)), in(g, 1, D(6)), 1, 1);
}
/* out [2,5,7] = 70; 2 * 70 * in 16 */
static struct sd_tensor *b_linear(struct sd_graph *g) {
    return sd_linear(g, in(g, 3, D(2, 5, 16)), in(g, 2, D(7, 16)), in(g, 1, D(7)));
}
/* out [3,4,6] = 72; 2 * 72 * K 5 */
static struct sd_tensor *b_matmul(struct sd_graph *g) {
    return sd_matmul(g, in(g, 3, D(3, 4, 5)), in(g, 3, D(3, 5, 6)), 0, 0, 1.0f);
}
/* a transposed: a [3,5,4] is read as [3,4,5]; out [3,4,6] = 72, K 5 */
static struct sd_tensor *b_matmul_ta(struct sd_graph *g) {
    return sd_matmul(g, in(g, 3, D(3, 5, 4)), in(g, 3, D(3, 5, 6)), 1, 0, 0.5f);
}
static struct sd_tensor *b_group_norm(struct sd_graph *g) { /* 1*8*4*4 */
    return sd_group_norm(g, in(g, 4, D(1, 8, 4, 4)), in(g, 1, D(8)), in(g, 1, D(8)), 4, 1e-5f, 1);
}
static struct sd_tensor *b_layer_norm(struct sd_graph *g) { /* 2*3*8 */
    return sd_layer_norm(g, in(g, 3, D(2, 3, 8)), in(g, 1, D(8)), in(g, 1, D(8)), 1e-5f);
}
static struct sd_tensor *b_softmax(struct sd_graph *g) { return sd_softmax(g, in(g, 3, D(2, 3, 8)), 0.5f, 0); }
/* B 2, Lq 5, Lk 7, 2 heads of d 8 and dv 6: QK^T 2*2*5*7*8 = 1120 MACs,
 * PV 2*2*5*7*6 = 840 MACs; 2 * 1960 */
static struct sd_tensor *b_attention(struct sd_graph *g) {
    return sd_attention(g, in(g, 3, D(2, 5, 16)), in(g, 3, D(2, 7, 16)), in(g, 3, D(2, 7, 12)), 2, 0.35f, 0);
}
static struct sd_tensor *b_gelu(struct sd_graph *g) { return sd_gelu(g, in(g, 3, D(2, 3, 8))); }
static struct sd_tensor *b_quick_gelu(struct sd_graph *g) { return sd_quick_gelu(g, in(g, 3, D(2, 3, 8))); }
static struct sd_tensor *b_silu(struct sd_graph *g) { return sd_silu(g, in(g, 3, D(2, 3, 8))); }
static struct sd_tensor *b_relu(struct sd_graph *g) { return sd_relu(g, in(g, 4, D(1, 4, 3, 5))); }
static struct sd_tensor *b_tanh(struct sd_graph *g) { return sd_tanh(g, in(g, 4, D(1, 4, 2, 3))); }
static struct sd_tensor *b_geglu(struct sd_graph *g) { return sd_geglu(g, in(g, 3, D(2, 3, 16))); } /* out 2*3*8 */
static struct sd_tensor *b_add(struct sd_graph *g) { return sd_add(g, in(g, 3, D(2, 3, 8)), in(g, 1, D(8))); }
static struct sd_tensor *b_mul(struct sd_graph *g) { return sd_mul(g, in(g, 3, D(2, 3, 8)), in(g, 3, D(2, 1, 8))); }
static struct sd_tensor *b_scale(struct sd_graph *g) { return sd_scale(g, in(g, 3, D(2, 3, 8)), 2.0f, 1.0f); }
static struct sd_tensor *b_concat(struct sd_graph *g) { /* out [1,5,4,4] */
    return sd_concat(g, in(g, 4, D(1, 2, 4, 4)), in(g, 4, D(1, 3, 4, 4)), 1);
}
static struct sd_tensor *b_upsample(struct sd_graph *g) { return sd_upsample(g, in(g, 4, D(1, 2, 4, 4)), 8, 8); }
static struct sd_tensor *b_embedding(struct sd_graph *g) { /* out [2,3,8] */
    return sd_embedding(g, sd_graph_input(g, "ids", SD_I32, 2, D(2, 3)), in(g, 2, D(10, 8)));
}
static struct sd_tensor *b_timestep(struct sd_graph *g) { return sd_timestep_embed(g, in(g, 1, D(2)), 8, 1, 0.0f); }
static struct sd_tensor *b_reshape(struct sd_graph *g) { return sd_reshape(g, in(g, 3, D(2, 3, 8)), 2, D(6, 8)); }
static struct sd_tensor *b_permute(struct sd_graph *g) {
    return sd_permute(g, in(g, 3, D(2, 3, 8)), (const int[]){0, 2, 1});
}

static const struct op_case cases[] = {
    {SD_OP_NONE, 0, "input [3,4]", b_input},
    {SD_OP_CONV2D, 2.0 * 384 * 36, "x [1,4,8,8] w [6,4,3,3] pad 1", b_conv2d},
    {SD_OP_LINEAR, 2.0 * 70 * 16, "x [2,5,16] w [7,16]", b_linear},
    {SD_OP_MATMUL, 2.0 * 72 * 5, "[3,4,5] x [3,5,6]", b_matmul},
    {SD_OP_MATMUL, 2.0 * 72 * 5, "[3,5,4]^T x [3,5,6]", b_matmul_ta},
    {SD_OP_GROUP_NORM, 128, "[1,8,4,4] 4 groups", b_group_norm},
    {SD_OP_LAYER_NORM, 48, "[2,3,8]", b_layer_norm},
    {SD_OP_SOFTMAX, 48, "[2,3,8]", b_softmax},
    {SD_OP_ATTENTION, 2.0 * (1120 + 840), "q [2,5,16] k [2,7,16] v [2,7,12], 2 heads", b_attention},
    {SD_OP_GELU, 48, "[2,3,8]", b_gelu},
    {SD_OP_QUICK_GELU, 48, "[2,3,8]", b_quick_gelu},
    {SD_OP_SILU, 48, "[2,3,8]", b_silu},
    {SD_OP_RELU, 60, "[1,4,3,5]", b_relu},
    {SD_OP_TANH, 24, "[1,4,2,3]", b_tanh},
    {SD_OP_GEGLU, 48, "[2,3,16] -> [2,3,8]", b_geglu},
    {SD_OP_ADD, 48, "[2,3,8] + [8]", b_add},
    {SD_OP_MUL, 48, "[2,3,8] * [2,1,8]", b_mul},
    {SD_OP_SCALE, 48, "[2,3,8]", b_scale},
    {SD_OP_CONCAT, 80, "[1,2,4,4] ++ [1,3,4,4]", b_concat},
    {SD_OP_UPSAMPLE, 128, "[1,2,4,4] -> 8x8", b_upsample},
    {SD_OP_EMBEDDING, 48, "ids [2,3] table [10,8]", b_embedding},
    {SD_OP_TIMESTEP_EMBED, 16, "t [2] dim 8", b_timestep},
    {SD_OP_RESHAPE, 0, "[2,3,8] -> [6,8]", b_reshape},
    {SD_OP_PERMUTE, 48, "[2,3,8] (0,2,1)", b_permute},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_graph *g = sd_graph_new(&ctx);
    struct sd_tensor *node[N_CASES];
    int built = 1;
    for (int i = 0; i < N_CASES; i++) {
        node[i] = cases[i].build(g);
        if (!node[i] || node[i]->op != cases[i].op) {
            test_fail("build %s (%s): %s", sd_op_name(cases[i].op), cases[i].how, node[i] ? "other op" : ctx.msg);
            built = 0;
        }
    }
    if (!built) return 1;

    /* The table itself: names round-trip, kernels are all but leaf and view. */
    int covered = 1, names = 1, kinds = 1;
    for (int op = 0; op < SD_OP_COUNT; op++) {
        int n = 0;
        for (int i = 0; i < N_CASES; i++) n += cases[i].op == (enum sd_op)op;
        if (!n) test_fail("op %s has no case in tests/test_op_table.c", sd_op_name((enum sd_op)op)), covered = 0;
        if (sd_op_by_name(sd_op_name((enum sd_op)op)) != op) names = 0;
        if (sd_op_is_kernel((enum sd_op)op) != (op != SD_OP_NONE && op != SD_OP_RESHAPE)) kinds = 0;
    }
    CHECK(covered, "every op of ops.def (%d) has a representative node", SD_OP_COUNT);
    CHECK(names && sd_op_by_name("upsample_nearest") == SD_OP_UPSAMPLE && sd_op_by_name("nope") == -1 &&
              !strcmp(sd_op_name(SD_OP_COUNT), "?"),
          "sd_op_by_name inverts sd_op_name for every op, -1 for an unknown name");
    CHECK(kinds && !sd_op_is_kernel(SD_OP_COUNT), "sd_op_is_kernel: every op but none (leaf) and reshape (view)");

    /* FLOP counts against the hand counts. */
    for (int i = 0; i < N_CASES; i++) {
        double f = sd_node_flops(node[i]);
        CHECK(f == cases[i].flops, "sd_node_flops %s %s = %.0f (hand count %.0f)", sd_op_name(cases[i].op),
              cases[i].how, f, cases[i].flops);
    }

    /* CPU: implements every op. */
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    o.cl_cache_dir = cl_test_cache_dir();
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, &o);
    CHECK(cpu != NULL, "cpu backend: %s", cpu ? "created" : ctx.msg);
    if (!cpu) return 1;
    for (int i = 0; i < N_CASES; i++) {
        char why[64] = "";
        bool ok = sd_backend_supports(cpu, node[i], why, sizeof why);
        CHECK(ok, "cpu supports %s (%s)%s%s", sd_op_name(cases[i].op), cases[i].how, ok ? "" : ": ", why);
    }

    /* OpenCL: refuses exactly its declared unimplemented ops. */
    struct sd_backend *cl = sd_cl_backend_new(&ctx, &o);
    CHECK(cl != NULL, "opencl backend: %s", cl ? sd_cl_device_of(cl)->name : ctx.msg);
    int n_unimpl = 0;
    for (int op = 0; op < SD_OP_COUNT; op++) {
        bool u = sd_cl_op_unimplemented((enum sd_op)op);
        n_unimpl += u;
        if (u && !sd_op_is_kernel((enum sd_op)op))
            test_fail("opencl declares %s unimplemented, but it is no kernel op", sd_op_name((enum sd_op)op));
    }
    for (int i = 0; cl && i < N_CASES; i++) {
        char why[64] = "";
        bool want = !sd_cl_op_unimplemented(cases[i].op);
        bool ok = sd_backend_supports(cl, node[i], why, sizeof why);
        CHECK(ok == want && (ok || !strcmp(why, "unsupported(op)")), "opencl %s %s (%s)%s%s",
              want ? "supports" : "refuses (declared unimplemented)", sd_op_name(cases[i].op), cases[i].how,
              why[0] ? ": " : "", why);
    }
    printf("# opencl declares %d of %d ops unimplemented\n", n_unimpl, SD_OP_COUNT);

    sd_backend_free(cl);
    sd_backend_free(cpu);
    sd_graph_free(g);
    return test_summary();
}
