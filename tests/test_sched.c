/* test_sched.c - the dispatcher: placement with per-op fallback, copies at
 * split boundaries, placement causes, and the "no backend" error.
 *
 * A mock accelerator backend with its own arena (separate memory, like a
 * device) supports only some ops; it runs them with the CPU kernels on its
 * own arena addresses, so a missing copy at a boundary gives wrong numbers.
 * It can also fail one node (by name) at compute time, as a device would:
 * the scheduler must run that node on the CPU and carry on, with the same
 * result and a cause that says why.
 */
#include "cpu.h"
#include "test.h"

struct mock { void *arena; size_t size; int computed, sets, gets, failures; unsigned allow; const char *fail; };

static bool mock_supports(struct sd_backend *b, const struct sd_tensor *n, char *why, size_t wn) {
    struct mock *m = b->impl;
    if ((m->allow >> n->op) & 1u) return true;
    snprintf(why, wn, "unsupported(%s)", sd_op_name(n->op));
    return false;
}
static int mock_reserve(struct sd_backend *b, size_t size, void **host) {
    struct mock *m = b->impl;
    (void)host;
    if (size > m->size) {
        free(m->arena);
        m->arena = malloc(size);
        m->size = size;
        memset(m->arena, 0xff, size); /* NaN garbage: a missed copy shows */
    }
    return m->arena ? SD_OK : SD_ERR_NOMEM;
}
/* The graph's own nodes (never weights) are pointed at the mock arena
 * while a node runs. */
static int mock_compute(struct sd_backend *b, struct sd_graph *g, int i0, int i1) {
    struct mock *m = b->impl;
    struct sd_ctx ctx = {0};
    struct sd_cpu cpu = {.ctx = &ctx, .n_threads = 1};
    for (int i = i0; i < i1; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (t->op == SD_OP_NONE || t->op == SD_OP_RESHAPE) continue;
        if (m->fail && !strcmp(t->name, m->fail)) {
            m->failures++;
            b->failed_node = i;
            return sd_errorf(b->ctx, SD_ERR_BACKEND, "mock: %s [%s] failed on the device (injected)", sd_op_name(t->op),
                             t->name);
        }
        struct sd_tensor *own[SD_MAX_SRC + 1] = {t, t->src[0], t->src[1], t->src[2]};
        void *saved[SD_MAX_SRC + 1] = {0};
        for (int s = 0; s <= SD_MAX_SRC; s++)
            if (own[s] && sd_graph_owns(g, own[s])) {
                saved[s] = own[s]->data;
                own[s]->data = (char *)m->arena + sd_graph_offs(g, own[s]);
            }
        int rc = sd_cpu_run_node(&cpu, t);
        for (int s = 0; s <= SD_MAX_SRC; s++)
            if (own[s] && sd_graph_owns(g, own[s])) own[s]->data = saved[s];
        if (rc) return rc;
        m->computed++;
    }
    return SD_OK;
}
static int mock_set(struct sd_backend *b, const struct sd_graph *g, const struct sd_tensor *t, const void *host) {
    struct mock *m = b->impl;
    memcpy((char *)m->arena + sd_graph_offs(g, t), host, sd_tensor_nbytes(t));
    m->sets++;
    return SD_OK;
}
static int mock_get(struct sd_backend *b, const struct sd_graph *g, const struct sd_tensor *t, void *host) {
    struct mock *m = b->impl;
    memcpy(host, (char *)m->arena + sd_graph_offs(g, t), sd_tensor_nbytes(t));
    m->gets++;
    return SD_OK;
}
static const struct sd_backend_i mock_iface = {
    .version = SD_BACKEND_IFACE_VERSION, .name = "mock", .supports = mock_supports,
    .arena_reserve = mock_reserve, .compute = mock_compute, .tensor_set = mock_set, .tensor_get = mock_get,
};

/* y = silu(group_norm(x) + x) * 0.5 + 1, then reshaped and softmaxed. */
static struct sd_graph *build(struct sd_ctx *ctx, struct sd_tensor **in, struct sd_tensor **out) {
    struct sd_graph *g = sd_graph_new(ctx);
    struct sd_tensor *x = sd_graph_input(g, "x", SD_F32, 4, (int64_t[]){2, 8, 5, 7});
    struct sd_tensor *h = sd_name(sd_group_norm(g, x, NULL, NULL, 4, 1e-5f, 0), "gn");
    h = sd_name(sd_add(g, h, x), "add");
    h = sd_name(sd_silu(g, h), "silu");
    h = sd_name(sd_scale(g, h, 0.5f, 1.0f), "scale");
    h = sd_reshape(g, h, 3, (int64_t[]){2, 8, 35});
    h = sd_name(sd_softmax(g, h, 1.0f, 0), "softmax");
    sd_graph_output(g, h);
    *in = x;
    *out = h;
    return g;
}

static void reference(const float *x, float *y) {
    for (int n = 0; n < 2; n++)
        for (int gi = 0; gi < 4; gi++) {
            const float *xs = x + (n * 8 + gi * 2) * 35;
            double mu = 0, var = 0;
            for (int i = 0; i < 70; i++) mu += xs[i];
            mu /= 70;
            for (int i = 0; i < 70; i++) var += (xs[i] - mu) * (xs[i] - mu);
            var /= 70;
            for (int i = 0; i < 70; i++) {
                double v = (xs[i] - mu) / sqrt(var + 1e-5) + xs[i];
                v = v / (1 + exp(-v));
                y[(n * 8 + gi * 2) * 35 + i] = (float)(v * 0.5 + 1.0);
            }
        }
    for (int r = 0; r < 16; r++) {
        float *row = y + r * 35;
        double mx = row[0], s = 0;
        for (int i = 1; i < 35; i++) mx = row[i] > mx ? row[i] : mx;
        for (int i = 0; i < 35; i++) s += exp(row[i] - mx);
        for (int i = 0; i < 35; i++) row[i] = (float)(exp(row[i] - mx) / s);
    }
}

int main(void) {
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts two;
    sd_runtime_opts_init(&two);
    two.threads = 2;
    struct sd_backend *cpu = sd_cpu_backend_new(&ctx, &two);
    CHECK(cpu != NULL, "cpu backend created (%s)", ctx.msg);
    struct mock m = {.allow = (1u << SD_OP_ADD) | (1u << SD_OP_SCALE) | (1u << SD_OP_SOFTMAX)};
    struct sd_backend mb = {.iface = &mock_iface, .ctx = &ctx, .impl = &m};
    float x[2 * 8 * 35], ref[2 * 8 * 35];
    fill_random(x, 2 * 8 * 35, 7);
    reference(x, ref);

    /* CPU only. */
    struct sd_tensor *in, *out;
    struct sd_graph *g = build(&ctx, &in, &out);
    struct sd_sched *s = sd_sched_new(&ctx, &cpu, 1);
    CHECK(s && sd_sched_alloc(s, g) == SD_OK, "cpu-only placement (%s)", ctx.msg);
    memcpy(in->data, x, sizeof x);
    CHECK(sd_sched_compute(s, g) == SD_OK, "cpu-only compute (%s)", ctx.msg);
    CHECK(check_close("cpu", out->data, ref, 2 * 8 * 35, 2e-7, 2e-6, NULL) /* measured 2.2e-8 */ == 0, "cpu-only result matches reference");
    sd_sched_free(s);
    sd_graph_free(g);

    /* Mock first, CPU fallback: gn(cpu) add(mock) silu(cpu) scale(mock) softmax(mock). */
    struct sd_backend *both[2] = {&mb, cpu};
    g = build(&ctx, &in, &out);
    s = sd_sched_new(&ctx, both, 2);
    CHECK(s && sd_sched_alloc(s, g) == SD_OK, "mixed placement (%s)", ctx.msg);
    int placed_mock = 0, placed_cpu = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (t->op == SD_OP_NONE || t->op == SD_OP_RESHAPE) continue;
        if (g->backend[i] == 0) placed_mock++; else placed_cpu++;
    }
    CHECK(placed_mock == 3 && placed_cpu == 2, "supported ops on mock, others fall back to cpu (%d/%d)", placed_mock,
          placed_cpu);
    CHECK(s->n_splits == 4, "splits at every backend change (%d)", s->n_splits);
    int gn = -1;
    for (int i = 0; i < g->n_nodes; i++) if (!strcmp(g->nodes[i]->name, "gn")) gn = i;
    CHECK(gn >= 0 && strstr(s->cause[gn], "unsupported(group_norm)"), "fallback cause recorded: %s", gn >= 0 ? s->cause[gn] : "");
    memcpy(in->data, x, sizeof x);
    CHECK(sd_sched_compute(s, g) == SD_OK, "mixed compute (%s)", ctx.msg);
    CHECK(check_close("mixed", out->data, ref, 2 * 8 * 35, 2e-7, 2e-6, NULL) == 0, "mixed result equals reference");
    CHECK(m.computed == 3 && m.sets >= 2 && m.gets >= 2, "copies at boundaries (%d sets, %d gets)", m.sets, m.gets);
    /* Second run reuses the placement and gives the same bytes. */
    float first[2 * 8 * 35];
    memcpy(first, out->data, sizeof first);
    fill_random(out->data, 2 * 8 * 35, 99);
    memcpy(in->data, x, sizeof x); /* inputs share the arena: set them before every compute */
    CHECK(sd_sched_compute(s, g) == SD_OK && memcmp(first, out->data, sizeof first) == 0, "second compute identical");
    int rc;
    FILE *dbg = tmpfile();
    sd_sched_print(s, dbg);
    long len = ftell(dbg);
    char buf[4096] = {0};
    rewind(dbg);
    size_t got = fread(buf, 1, sizeof buf - 1, dbg);
    fclose(dbg);
    CHECK(len > 0 && got > 0 && strstr(buf, "split 0: cpu") && strstr(buf, "[gn] group_norm cause=unsupported(group_norm)"),
          "sd_sched_print names splits and causes");
    sd_sched_free(s);
    sd_graph_free(g);

    /* A node fails on the mock at compute time: first at the start of a
     * split (scale after a cpu silu), then in the middle of one (the mock
     * also runs silu, so add, silu ran there before scale fails). */
    for (int mid = 0; mid < 2; mid++) {
        struct mock fm = {.allow = m.allow | (mid ? 1u << SD_OP_SILU : 0), .fail = "scale"};
        struct sd_backend fb = {.iface = &mock_iface, .ctx = &ctx, .impl = &fm};
        struct sd_backend *fl[2] = {&fb, cpu};
        const char *what = mid ? "mid-split" : "split-start";
        g = build(&ctx, &in, &out);
        s = sd_sched_new(&ctx, fl, 2);
        CHECK(s && sd_sched_alloc(s, g) == SD_OK, "%s: placement (%s)", what, ctx.msg);
        int sc = -1;
        for (int i = 0; i < g->n_nodes; i++) if (!strcmp(g->nodes[i]->name, "scale")) sc = i;
        CHECK(sc >= 0 && g->backend[sc] == 0, "%s: scale placed on the mock first", what);
        memcpy(in->data, x, sizeof x);
        rc = sd_sched_compute(s, g);
        CHECK(rc == SD_OK && ctx.status == SD_OK, "%s: compute survives the device failure (%s)", what, ctx.msg);
        CHECK(rc == SD_OK && check_close(what, out->data, ref, 2 * 8 * 35, 1e-5, 1e-4, NULL) == 0,
              "%s: result still equals the reference", what);
        CHECK(sc >= 0 && g->backend[sc] == 1 && fm.failures == 1, "%s: scale re-placed on the cpu (%d failure)", what,
              fm.failures);
        const char *cause = sc >= 0 ? s->cause[sc] : "";
        CHECK(strstr(cause, "failed on mock") && strstr(cause, "failed on the device (injected)"),
              "%s: the cause says why: %s", what, cause);
        memcpy(in->data, x, sizeof x);
        rc = sd_sched_compute(s, g);
        CHECK(rc == SD_OK && fm.failures == 1 && check_close(what, out->data, ref, 2 * 8 * 35, 1e-5, 1e-4, NULL) == 0,
              "%s: the next compute places it on the cpu directly (%d failures)", what, fm.failures);
        sd_sched_free(s);
        sd_graph_free(g);
        free(fm.arena);
    }

    /* A node the mock fails that no other backend runs: an error naming
     * both causes, not a loop. */
    struct sd_runtime_opts o3;
    sd_runtime_opts_init(&o3);
    o3.threads = 1;
    o3.cpu_disable = "scale";
    struct sd_backend *cpu3 = sd_cpu_backend_new(&ctx, &o3);
    {
        struct mock fm = {.allow = m.allow, .fail = "scale"};
        struct sd_backend fb = {.iface = &mock_iface, .ctx = &ctx, .impl = &fm};
        struct sd_backend *fl[2] = {&fb, cpu3};
        g = build(&ctx, &in, &out);
        s = sd_sched_new(&ctx, fl, 2);
        CHECK(s && sd_sched_alloc(s, g) == SD_OK, "no fallback: placement (%s)", ctx.msg);
        memcpy(in->data, x, sizeof x);
        rc = sd_sched_compute(s, g);
        CHECK(rc != SD_OK && fm.failures == 1 && strstr(ctx.msg, "failed on mock") && strstr(ctx.msg, "cannot run elsewhere"),
              "no fallback: an error naming the failure: %s", ctx.msg);
        sd_ctx_clear(&ctx);
        sd_sched_free(s);
        sd_graph_free(g);
        free(fm.arena);
    }
    sd_backend_free(cpu3);

    /* No backend supports the op: a clear error, not a crash. */
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 1;
    o.cpu_disable = "silu";
    struct sd_backend *cpu2 = sd_cpu_backend_new(&ctx, &o);
    g = build(&ctx, &in, &out);
    s = sd_sched_new(&ctx, &cpu2, 1);
    rc = sd_sched_alloc(s, g);
    CHECK(rc == SD_ERR_UNSUPPORTED && strstr(ctx.msg, "silu"), "unsupported everywhere is an error naming the op: %s", ctx.msg);
    sd_sched_free(s);
    sd_graph_free(g);
    sd_backend_free(cpu2);
    o.cpu_disable = "silu,nonsense";
    cpu2 = sd_cpu_backend_new(&ctx, &o);
    CHECK(!cpu2 && strstr(ctx.msg, "unknown op 'nonsense'"), "cpu_disable with an unknown op refused: %s", ctx.msg);

    /* A scheduler without a host backend is refused. */
    struct sd_backend *only_mock = &mb;
    CHECK(sd_sched_new(&ctx, &only_mock, 1) == NULL && strstr(ctx.msg, "host"), "no host backend refused: %s", ctx.msg);

    free(m.arena);
    sd_backend_free(cpu);
    return test_summary();
}
