/* test_graph.c - graph builders (shape inference, errors) and the memory plan. */
#include "graph.h"
#include "test.h"

static struct sd_tensor *weight(int n, const int64_t *dims, float *storage) {
    struct sd_tensor *w = calloc(1, sizeof *w);
    sd_tensor_set_shape(w, SD_F32, n, dims);
    w->data = storage;
    w->flags = SD_TF_WEIGHT;
    w->index = -1;
    return w;
}

/* A small UNet-like chain with skips: plan must not overlap live tensors and
 * must reuse memory (arena smaller than the sum of activations). */
static void test_plan(void) {
    struct sd_ctx ctx = {0};
    struct sd_graph *g = sd_graph_new(&ctx);
    static float wbuf[64 * 64 * 9];
    struct sd_tensor *w = weight(4, (int64_t[]){16, 16, 3, 3}, wbuf);
    struct sd_tensor *x = sd_graph_input(g, "x", SD_F32, 4, (int64_t[]){2, 16, 32, 32});
    struct sd_tensor *skips[8];
    int ns = 0;
    struct sd_tensor *h = x;
    for (int i = 0; i < 3; i++) {
        h = sd_conv2d(g, h, w, NULL, 1, 1);
        h = sd_silu(g, h);
        skips[ns++] = h;
        h = sd_conv2d(g, h, w, NULL, 2, 1);
    }
    for (int i = 2; i >= 0; i--) {
        h = sd_upsample(g, h, skips[i]->ne[2], skips[i]->ne[3]);
        h = sd_add(g, h, skips[i]);
        h = sd_group_norm(g, h, NULL, NULL, 4, 1e-5f, 1);
    }
    struct sd_tensor *r = sd_reshape(g, h, 3, (int64_t[]){2, 16, 32 * 32});
    struct sd_tensor *out = sd_scale(g, r, 2.0f, 0.0f);
    sd_graph_output(g, out);
    int rc = sd_graph_plan(g);
    CHECK(rc == SD_OK, "plan of a skip-connection graph succeeds (%s)", ctx.msg);
    CHECK(sd_graph_plan_check(g), "plan: no two live activations overlap");
    CHECK(g->arena_size < g->naive_size, "plan reuses memory (%zu < %zu bytes)", g->arena_size, g->naive_size);
    int f, l;
    sd_graph_lifetime(g, skips[0], &f, &l);
    CHECK(l > skips[2]->index, "skip tensor lives until its consumer (last use %d)", l);
    sd_graph_lifetime(g, out, &f, &l);
    CHECK(l == g->n_nodes, "output lives to the end");
    /* The reshape view's base must live as long as the view's consumer. */
    sd_graph_lifetime(g, h, &f, &l);
    CHECK(l >= out->index, "view base lives until the view's last use");
    sd_graph_free(g);
    free(w);
}

/* Randomised graphs: the plan must hold for arbitrary DAGs of elementwise ops. */
static void test_plan_random(void) {
    int bad = 0;
    for (int seed = 1; seed <= 50; seed++) {
        struct sd_ctx ctx = {0};
        struct sd_graph *g = sd_graph_new(&ctx);
        struct sd_tensor *pool[64];
        int np = 0;
        uint64_t s = (uint64_t)seed * 2654435761u;
        pool[np++] = sd_graph_input(g, "a", SD_F32, 2, (int64_t[]){8, 33});
        for (int i = 0; i < 60; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            struct sd_tensor *a = pool[s % (uint64_t)np], *b = pool[(s >> 16) % (uint64_t)np];
            int kind = (int)((s >> 32) % 4);
            struct sd_tensor *t = kind == 0 ? sd_add(g, a, b) : kind == 1 ? sd_silu(g, a) : kind == 2 ? sd_mul(g, b, a) : NULL;
            if (kind == 3) { /* a wider temporary that dies at once: different sizes in the free list */
                struct sd_tensor *c = sd_concat(g, a, b, 1);
                t = sd_add(g, sd_scale(g, a, 0.5f, 0.0f), b);
                if ((s >> 48) % 2) sd_graph_output(g, c);
            }
            if (np < 64) pool[np++] = t;
            if ((s >> 40) % 7 == 0) sd_graph_output(g, t);
        }
        sd_graph_output(g, pool[np - 1]);
        if (sd_graph_plan(g) != SD_OK || !sd_graph_plan_check(g)) { bad++; printf("  seed %d: %s\n", seed, ctx.msg); }
        sd_graph_free(g);
    }
    CHECK(bad == 0, "plan holds on 50 random DAGs (%d bad)", bad);
}

static void test_shape_errors(void) {
    struct sd_ctx ctx = {0};
    struct sd_graph *g = sd_graph_new(&ctx);
    static float wbuf[8 * 5 * 9];
    struct sd_tensor *w = weight(4, (int64_t[]){8, 5, 3, 3}, wbuf);
    struct sd_tensor *x = sd_graph_input(g, "latent", SD_F32, 4, (int64_t[]){1, 4, 8, 8});
    struct sd_tensor *y = sd_conv2d(g, x, w, NULL, 1, 1);
    CHECK(y == NULL && g->status == SD_ERR_INVALID, "conv2d channel mismatch is an error");
    CHECK(strstr(ctx.msg, "latent") && strstr(ctx.msg, "[8, 5, 3, 3]"), "error names the input and shapes: %s", ctx.msg);
    CHECK(sd_silu(g, y) == NULL, "builders propagate NULL");
    CHECK(sd_graph_plan(g) == SD_ERR_INVALID, "plan reports the first build error");
    sd_graph_free(g);
    free(w);

    g = sd_graph_new(&ctx);
    x = sd_graph_input(g, "x", SD_F32, 3, (int64_t[]){2, 10, 64});
    struct sd_tensor *b = sd_graph_input(g, "b", SD_F32, 3, (int64_t[]){2, 3, 64});
    CHECK(sd_add(g, x, b) == NULL, "add with non-broadcastable shapes is an error");
    sd_graph_free(g);

    g = sd_graph_new(&ctx);
    x = sd_graph_input(g, "x", SD_F32, 4, (int64_t[]){2, 320, 9, 9});
    struct sd_tensor *t = sd_permute(g, x, (int[]){0, 2, 3, 1});
    CHECK(t && t->ne[1] == 9 && t->ne[3] == 320, "permute NCHW->NHWC shape");
    t = sd_reshape(g, t, 3, (int64_t[]){2, 81, 320});
    CHECK(t && t->n_dims == 3 && sd_tensor_dim(t, 1) == 81, "reshape to (B, HW, C)");
    struct sd_tensor *q = sd_attention(g, t, t, t, 8, 0.158f, 0);
    CHECK(q && sd_tensor_dim(q, 2) == 320, "attention output shape");
    CHECK(sd_attention(g, t, t, t, 7, 1.0f, 0) == NULL, "attention with heads not dividing C is an error");
    sd_graph_free(g);
}

int main(void) {
    test_plan();
    test_plan_random();
    test_shape_errors();
    return test_summary();
}
