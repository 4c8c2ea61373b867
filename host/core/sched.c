/* sched.c - the dispatcher: placement, splits, copies at split boundaries.
 *
 * Placement: each compute node goes to the first backend (priority order)
 * whose supports() accepts it; the cause ("preferred", or the refusals of
 * the backends before it) is kept for sd_sched_print. Leaves and views cost
 * nothing and never cut a split. Validity: every arena tensor carries a
 * bitmask of the backends holding its current bytes; before a split runs,
 * each activation it reads that is not current there is copied through the
 * host arena (get from the holder to the host, then set on the target).
 */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

bool sd_backend_supports(struct sd_backend *b, const struct sd_tensor *node, char *why, size_t why_n) {
    if (!b || !b->iface->supports) {
        if (why_n) snprintf(why, why_n, "no backend");
        return false;
    }
    return b->iface->supports(b, node, why, why_n);
}

int sd_backend_synchronize(struct sd_backend *b) {
    return b && b->iface->synchronize ? b->iface->synchronize(b) : SD_OK;
}

void sd_backend_free(struct sd_backend *b) {
    if (b && b->iface->free) b->iface->free(b);
}

const char *sd_backend_name(const struct sd_backend *b) { return b ? b->iface->name : "none"; }

void sd_backend_release_weights(struct sd_backend *b) {
    if (b && b->iface->release_weights) b->iface->release_weights(b);
}

struct sd_backend *sd_backend_create(struct sd_ctx *ctx, const char *name, const struct sd_runtime_opts *opts) {
    for (int i = 0; sd_backend_registry[i]; i++)
        if (!strcmp(sd_backend_registry[i]->name, name)) return sd_backend_registry[i]->create(ctx, opts);
    sd_errorf(ctx, SD_ERR_INVALID, "no backend named '%s' in this build", name);
    return NULL;
}

struct sd_sched *sd_sched_new(struct sd_ctx *ctx, struct sd_backend **backends, int n) {
    if (n < 1 || n > SD_MAX_BACKENDS) {
        sd_errorf(ctx, SD_ERR_INVALID, "scheduler: %d backends (1..%d)", n, SD_MAX_BACKENDS);
        return NULL;
    }
    struct sd_sched *s = calloc(1, sizeof *s);
    if (!s) {
        sd_errorf(ctx, SD_ERR_NOMEM, "scheduler: out of memory");
        return NULL;
    }
    s->ctx = ctx;
    s->host = -1;
    for (int i = 0; i < n; i++) {
        if (!backends[i] || backends[i]->iface->version != SD_BACKEND_IFACE_VERSION) {
            sd_errorf(ctx, SD_ERR_INVALID, "scheduler: backend %d missing or of another interface version", i);
            free(s);
            return NULL;
        }
        s->backends[i] = backends[i];
        if (backends[i]->is_host && s->host < 0) s->host = i;
    }
    s->n_backends = n;
    if (s->host < 0) {
        sd_errorf(ctx, SD_ERR_INVALID, "scheduler: no host (CPU) backend among the %d given", n);
        free(s);
        return NULL;
    }
    return s;
}

void sd_sched_free(struct sd_sched *s) {
    if (!s) return;
    free(s->cause);
    free(s->split_start);
    free(s->split_time);
    free(s->node_time);
    free(s);
}

static bool is_free_node(const struct sd_tensor *t) { return t->op == SD_OP_NONE || t->op == SD_OP_RESHAPE; }

/* Reserves every used backend's arena (and always the host's) and points
 * activations at the host arena. Cheap when nothing grew; several graphs
 * (CLIP, UNet, VAE) share each backend's one arena, so a graph's data
 * pointers are refreshed here whenever another graph made the arena grow. */
static int reserve_arenas(struct sd_sched *s, struct sd_graph *g) {
    int rc;
    for (int b = 0; b < s->n_backends; b++) {
        bool used = b == s->host;
        for (int k = 0; k < s->n_splits && !used; k++) used = g->nodes[s->split_start[k]]->backend == b;
        if (!used) continue;
        void *host = NULL;
        if ((rc = s->backends[b]->iface->arena_reserve(s->backends[b], g->arena_size, &host)) != SD_OK) return rc;
        if (b == s->host) s->host_arena = host;
    }
    if (!s->host_arena && g->arena_size) return sd_errorf(s->ctx, SD_ERR_BACKEND, "scheduler: host backend gave no arena");
    for (int i = 0; i < g->n_nodes; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (sd_tensor_in_arena(t)) t->data = (char *)s->host_arena + t->offs;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (t->op == SD_OP_RESHAPE) t->data = t->view_src->data;
    }
    return SD_OK;
}

int sd_sched_alloc(struct sd_sched *s, struct sd_graph *g) {
    int rc;
    if (s->graph == g && g->planned) return reserve_arenas(s, g);
    if (!g->planned && (rc = sd_graph_plan(g)) != SD_OK) return rc;
    const int n = g->n_nodes;
    free(s->cause);
    free(s->split_start);
    free(s->split_time);
    free(s->node_time);
    s->node_time = calloc((size_t)n + 1, sizeof(double));
    s->cause = calloc((size_t)n + 1, sizeof *s->cause);
    s->split_start = malloc(((size_t)n + 2) * sizeof(int));
    s->split_time = calloc((size_t)n + 1, sizeof(double));
    if (!s->cause || !s->split_start || !s->split_time || !s->node_time) return sd_errorf(s->ctx, SD_ERR_NOMEM, "scheduler: out of memory");

    int prev = s->host;
    for (int i = 0; i < n; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (is_free_node(t)) {
            t->backend = prev;
            snprintf(s->cause[i], sizeof s->cause[i], "%s", t->op == SD_OP_NONE ? "leaf" : "view");
            continue;
        }
        int chosen = -1;
        char why[48] = "", all[48] = "";
        for (int b = 0; b < s->n_backends; b++) {
            if (sd_backend_supports(s->backends[b], t, why, sizeof why)) {
                chosen = b;
                break;
            }
            if (!all[0]) snprintf(all, sizeof all, "%s", why[0] ? why : "unsupported");
        }
        if (chosen < 0) {
            char sh[64];
            return sd_errorf(s->ctx, SD_ERR_UNSUPPORTED, "scheduler: no backend runs %s %s %s (%s)", sd_op_name(t->op),
                             t->name, sd_tensor_shape_str(t, sh, sizeof sh), all);
        }
        t->backend = chosen;
        prev = chosen;
        snprintf(s->cause[i], sizeof s->cause[i], "%s", chosen == 0 ? "preferred" : all);
    }
    /* Splits: a new one wherever the backend of a compute node changes. */
    s->n_splits = 0;
    int cur = -1;
    for (int i = 0; i < n; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (is_free_node(t)) continue;
        if (t->backend != cur) {
            s->split_start[s->n_splits++] = i;
            cur = t->backend;
        }
    }
    s->split_start[s->n_splits] = n;
    if (s->n_splits == 0) s->split_start[0] = 0;

    if ((rc = reserve_arenas(s, g)) != SD_OK) return rc;
    s->graph = g;
    return SD_OK;
}

static struct sd_tensor *base_of(struct sd_tensor *t) { return t->view_src ? t->view_src : t; }

/* Makes activation t current on backend b. */
static int make_current(struct sd_sched *s, struct sd_tensor *t, int b) {
    unsigned bit = 1u << b, hbit = 1u << s->host;
    if (t->valid & bit) return SD_OK;
    int rc;
    if (!(t->valid & hbit)) {
        int owner = -1;
        for (int k = 0; k < s->n_backends; k++)
            if (t->valid & (1u << k)) { owner = k; break; }
        if (owner < 0)
            return sd_errorf(s->ctx, SD_ERR_BACKEND, "scheduler: %s is read before it is computed", t->name);
        struct sd_backend *ob = s->backends[owner];
        if ((rc = ob->iface->tensor_get(ob, t, t->data)) != SD_OK) return rc;
        t->valid |= hbit;
        s->bytes_copied += sd_tensor_nbytes(t);
        s->n_copies++;
    }
    if (b != s->host) {
        struct sd_backend *tb = s->backends[b];
        if ((rc = tb->iface->tensor_set(tb, t, t->data)) != SD_OK) return rc;
        s->bytes_copied += sd_tensor_nbytes(t);
        s->n_copies++;
    }
    t->valid |= bit;
    return SD_OK;
}

int sd_sched_compute(struct sd_sched *s, struct sd_graph *g) {
    int rc;
    if ((rc = sd_sched_alloc(s, g)) != SD_OK) return rc; /* cheap if placed; refreshes pointers */
    s->bytes_copied = 0;
    s->n_copies = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        struct sd_tensor *t = g->nodes[i];
        t->valid = (t->flags & SD_TF_INPUT) ? 1u << s->host : 0;
    }
    for (int k = 0; k < s->n_splits; k++) {
        int i0 = s->split_start[k], i1 = s->split_start[k + 1];
        int b = g->nodes[i0]->backend;
        struct sd_backend *be = s->backends[b];
        for (int i = i0; i < i1; i++) {
            struct sd_tensor *t = g->nodes[i];
            if (is_free_node(t)) continue;
            for (int j = 0; j < SD_MAX_SRC; j++) {
                struct sd_tensor *src = t->src[j];
                if (!src || !sd_tensor_in_arena(base_of(src))) continue;
                struct sd_tensor *bs = base_of(src);
                /* produced earlier in this same split: current once it runs */
                if (bs->index >= i0 && bs->index < i1 && !(bs->flags & SD_TF_INPUT)) continue;
                if ((rc = make_current(s, bs, b)) != SD_OK) return rc;
            }
        }
        double t0 = s->profile ? sd_time_s() : 0;
        if (s->profile) { /* node by node, synchronised, to time each one */
            for (int i = i0; i < i1 && rc == SD_OK; i++) {
                if (is_free_node(g->nodes[i])) continue;
                double tn = sd_time_s();
                if ((rc = be->iface->compute(be, g, i, i + 1)) == SD_OK) rc = sd_backend_synchronize(be);
                s->node_time[i] = sd_time_s() - tn;
            }
        } else {
            rc = be->iface->compute(be, g, i0, i1);
        }
        if (rc != SD_OK) {
            if (s->ctx && s->ctx->status == SD_OK) sd_errorf(s->ctx, rc, "%s backend failed", sd_backend_name(be));
            return sd_error_wrap(s->ctx, "split %d (%s, nodes %d..%d)", k, sd_backend_name(be), i0, i1 - 1);
        }
        if (s->profile) s->split_time[k] = sd_time_s() - t0;
        for (int i = i0; i < i1; i++) {
            struct sd_tensor *t = g->nodes[i];
            if (sd_tensor_in_arena(t) && !is_free_node(t)) t->valid = 1u << b;
        }
    }
    for (int o = 0; o < g->n_outputs; o++) {
        struct sd_tensor *t = base_of(g->outputs[o]);
        if (sd_tensor_in_arena(t) && (rc = make_current(s, t, s->host)) != SD_OK) return rc;
    }
    for (int b = 0; b < s->n_backends; b++)
        if ((rc = sd_backend_synchronize(s->backends[b])) != SD_OK) return rc;
    return SD_OK;
}

void sd_sched_print(const struct sd_sched *s, FILE *f) {
    const struct sd_graph *g = s->graph;
    if (!g) return;
    for (int k = 0; k < s->n_splits; k++) {
        int i0 = s->split_start[k], i1 = s->split_start[k + 1];
        int b = g->nodes[i0]->backend;
        fprintf(f, "split %d: %s nodes %d..%d\n", k, sd_backend_name(s->backends[b]), i0, i1 - 1);
        for (int i = i0; i < i1; i++) {
            const struct sd_tensor *t = g->nodes[i];
            if (is_free_node(t)) continue;
            fprintf(f, "  %-6s [%s] %s cause=%s\n", sd_backend_name(s->backends[t->backend]), t->name,
                    sd_op_name(t->op), s->cause[i]);
        }
    }
}
