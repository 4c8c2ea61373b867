/* cl_test_util.h - helpers shared by the OpenCL tests: weight tensors owned
 * by the test, one-graph runs on a given backend list, and the comparison of
 * an OpenCL result with the CPU backend's.
 *
 * A case builds its graph twice (CPU-only and OpenCL-first); weights are
 * created on the first build and reused on the second (same pointers, same
 * data), inputs get the same deterministic random values in both runs.
 */
#ifndef SDRT_CL_TEST_UTIL_H
#define SDRT_CL_TEST_UTIL_H

#include "cl.h"
#include "cpu.h"
#include "test.h"

/* ASan builds: PoCL and the LLVM inside it keep compiler state alive at exit
 * (a bare create-context/build/release-everything program shows ~1.4 MB of
 * "leaks" with every frame inside libpocl/libLLVM, depending on whether its
 * worker threads are still up), so LeakSanitizer is told to ignore
 * allocations made there. Leaks in our own code are still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libpocl.so\nleak:libLLVM\nleak:libclang\n"; }

#define TC_MAX_W 8
#define TC_MAX_IN 4

struct tc {
    struct sd_tensor *w[TC_MAX_W];
    int n_w, cur_w;
    struct sd_tensor *in[TC_MAX_IN];
    int n_in;
    float in_scale;  /* inputs are uniform in [-in_scale, in_scale) */
    int in_half;     /* f32 inputs rounded to half (f16-exact) */
    int id_range;    /* for i32 inputs: ids in [0, id_range) */
};

static struct sd_tensor *tc_weight(struct tc *tc, int nd, const int64_t *dims) __attribute__((unused));
static struct sd_tensor *tc_weight(struct tc *tc, int nd, const int64_t *dims) {
    if (tc->cur_w < tc->n_w) return tc->w[tc->cur_w++];
    struct sd_tensor *t = calloc(1, sizeof *t);
    sd_tensor_set_shape(t, SD_F32, nd, dims);
    t->data = malloc(sd_tensor_nbytes(t));
    t->flags = SD_TF_WEIGHT;
    t->index = -1;
    snprintf(t->name, sizeof t->name, "w%d", tc->n_w);
    fill_random(t->data, sd_tensor_nelements(t), 1000 + tc->n_w);
    tc->w[tc->n_w++] = t;
    tc->cur_w++;
    return t;
}

static struct sd_tensor *tc_input(struct tc *tc, struct sd_graph *g, enum sd_dtype type, int nd,
                                  const int64_t *dims) __attribute__((unused));
static struct sd_tensor *tc_input(struct tc *tc, struct sd_graph *g, enum sd_dtype type, int nd, const int64_t *dims) {
    char name[16];
    snprintf(name, sizeof name, "in%d", tc->n_in);
    struct sd_tensor *t = sd_graph_input(g, name, type, nd, dims);
    if (t && tc->n_in < TC_MAX_IN) tc->in[tc->n_in++] = t;
    return t;
}

static void tc_free(struct tc *tc) {
    for (int i = 0; i < tc->n_w; i++) {
        free(tc->w[i]->data);
        free(tc->w[i]);
    }
    memset(tc, 0, sizeof *tc);
}

static void tc_fill_inputs(struct tc *tc) {
    for (int i = 0; i < tc->n_in; i++) {
        struct sd_tensor *t = tc->in[i];
        int64_t n = sd_tensor_nelements(t);
        if (t->type == SD_I32) {
            uint64_t s = 77 + i;
            for (int64_t j = 0; j < n; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                ((int32_t *)t->data)[j] = (int32_t)((s >> 33) % (uint64_t)(tc->id_range ? tc->id_range : 1));
            }
        } else {
            float *x = t->data;
            fill_random(x, n, 17 + i);
            float sc = tc->in_scale ? tc->in_scale : 1.0f;
            for (int64_t j = 0; j < n; j++) x[j] *= sc;
            for (int64_t j = 0; tc->in_half && j < n; j++) x[j] = sd_f16_to_f32(sd_f32_to_f16(x[j]));
        }
    }
}

typedef struct sd_tensor *(*tc_build_fn)(struct sd_graph *g, struct tc *tc);

/* Builds the graph, runs it on backends[0..n) and returns a malloc'd copy
 * of the output (NULL on error, message printed). *n_out gets its size and
 * *on_first the number of compute nodes placed on backends[0]. */
static float *tc_run(struct sd_ctx *ctx, struct sd_backend **backends, int n, tc_build_fn build, struct tc *tc,
                     int64_t *n_out, int *on_first, int *n_compute) __attribute__((unused));
static float *tc_run(struct sd_ctx *ctx, struct sd_backend **backends, int n, tc_build_fn build, struct tc *tc,
                     int64_t *n_out, int *on_first, int *n_compute) {
    tc->cur_w = 0;
    tc->n_in = 0;
    float *res = NULL;
    struct sd_graph *g = sd_graph_new(ctx);
    struct sd_tensor *out = build(g, tc);
    sd_graph_output(g, out);
    struct sd_sched *s = NULL;
    if (!out || sd_graph_plan(g) != SD_OK) goto done;
    if (!(s = sd_sched_new(ctx, backends, n)) || sd_sched_alloc(s, g) != SD_OK) goto done;
    tc_fill_inputs(tc);
    if (sd_sched_compute(s, g) != SD_OK) goto done;
    *n_out = sd_tensor_nelements(out);
    res = malloc(*n_out * sizeof(float));
    memcpy(res, out->data, *n_out * sizeof(float));
    if (on_first) {
        *on_first = 0, *n_compute = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            struct sd_tensor *t = g->nodes[i];
            if (t->op == SD_OP_NONE || t->op == SD_OP_RESHAPE) continue;
            (*n_compute)++;
            if (g->backend[i] == 0) (*on_first)++;
        }
    }
done:
    if (!res) printf("  run failed: %s\n", ctx->msg);
    sd_sched_free(s);
    sd_graph_free(g);
    return res;
}

#endif
