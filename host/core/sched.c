/* sched.c - the dispatcher: placement, splits, copies at split boundaries.
 *
 * Placement: each compute node goes to the first backend (priority order)
 * whose supports() accepts it and that has not failed it at compute time;
 * the cause ("preferred", or the refusals of the backends before it) is kept
 * for sd_sched_print. Leaves and views cost nothing and never cut a split.
 * Validity: every arena node has a bitmask (g->valid) of the backends
 * holding its current bytes; before a split runs, each activation it reads
 * that is not current there is copied through the host arena (get from the
 * holder to the host, then set on the target).
 *
 * Compute-time failures: a backend that fails one node and names it
 * (b->failed_node) gets that node refused; the graph is placed again and
 * the run resumes at that node. Resuming there is safe: the nodes before it
 * ran (on their backends: their bits say where), and none of them can have
 * overwritten an input of the failed node, since the memory plan reuses a
 * tensor's memory only after its last reader.
 */
#include "backend.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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

void sd_backend_weights_released(struct sd_backend *b, struct sd_tensor *const *w, int n) {
    if (b && n > 0 && b->iface->weights_released) b->iface->weights_released(b, w, n);
}

void sd_backend_weights_changed(struct sd_backend *b, struct sd_tensor *const *w, int n) {
    if (b && n > 0 && b->iface->weights_changed) b->iface->weights_changed(b, w, n);
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
    return x < y ? -1 : x > y;
}

int sd_weight_set_init(struct sd_weight_set *s, struct sd_tensor *const *w, int n) {
    *s = (struct sd_weight_set){0};
    s->lo = malloc((size_t)(n > 0 ? n : 1) * sizeof *s->lo);
    s->hi = malloc((size_t)(n > 0 ? n : 1) * sizeof *s->hi);
    if (!s->lo || !s->hi) {
        sd_weight_set_free(s);
        return SD_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (!w[i] || !w[i]->data) continue;
        s->lo[s->n] = w[i]->data;
        s->hi[s->n++] = (const char *)w[i]->data + sd_tensor_nbytes(w[i]);
    }
    /* Sorted starts; each range keeps its own end (ranges may nest: slices). */
    qsort(s->lo, (size_t)s->n, sizeof *s->lo, cmp_ptr);
    qsort(s->hi, (size_t)s->n, sizeof *s->hi, cmp_ptr);
    return SD_OK;
}

/* [p, p+n) overlaps some range iff (#ranges starting before p+n) >
 * (#ranges ending at or before p): ranges are intervals, so the ones that
 * start before the end and do not end before the start are the overlaps. */
static int count_below(const void **a, int n, uintptr_t v, bool inclusive) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        uintptr_t x = (uintptr_t)a[mid];
        if (x < v || (inclusive && x == v)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

bool sd_weight_set_hits(const struct sd_weight_set *s, const void *data, size_t nbytes) {
    if (!s || !s->n || !data) return false;
    uintptr_t p = (uintptr_t)data, e = p + (nbytes ? nbytes : 1);
    return count_below(s->lo, s->n, e, false) > count_below(s->hi, s->n, p, true);
}

void sd_weight_set_free(struct sd_weight_set *s) {
    free(s->lo);
    free(s->hi);
    *s = (struct sd_weight_set){0};
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
    free(s->refused);
    free(s->cause);
    free(s->split_start);
    free(s->split_time);
    free(s->node_time);
    free(s->node_faults);
    free(s);
}

static bool is_free_node(const struct sd_tensor *t) { return t->op == SD_OP_NONE || t->op == SD_OP_RESHAPE; }

/* Reserves every used backend's arena (and always the host's) and points
 * activations at the host arena. Cheap when nothing grew; several graphs
 * (CLIP, UNet, VAE) share each backend's one arena, so a graph's data
 * pointers are refreshed here whenever another graph made the arena grow.
 * Writes only into g's own nodes. */
static int reserve_arenas(struct sd_sched *s, struct sd_graph *g) {
    int rc;
    for (int b = 0; b < s->n_backends; b++) {
        bool used = b == s->host;
        for (int k = 0; k < s->n_splits && !used; k++) used = g->backend[s->split_start[k]] == b;
        if (!used) continue;
        void *host = NULL;
        if ((rc = s->backends[b]->iface->arena_reserve(s->backends[b], g->arena_size, &host)) != SD_OK) return rc;
        if (b == s->host) s->host_arena = host;
    }
    if (!s->host_arena && g->arena_size) return sd_errorf(s->ctx, SD_ERR_BACKEND, "scheduler: host backend gave no arena");
    for (int i = 0; i < g->n_nodes; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (sd_tensor_in_arena(t)) t->data = (char *)s->host_arena + g->offs[i];
    }
    for (int i = 0; i < g->n_nodes; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (t->op == SD_OP_RESHAPE) t->data = t->view_src->data;
    }
    return SD_OK;
}

static const struct sd_refusal *refusal_of(const struct sd_sched *s, int node) {
    for (int r = 0; r < s->n_refused; r++)
        if (s->refused[r].node == node) return &s->refused[r];
    return NULL;
}

/* Places every node (g->backend, s->cause) and cuts the splits. */
static int place(struct sd_sched *s, struct sd_graph *g) {
    const int n = g->n_nodes;
    int prev = s->host;
    for (int i = 0; i < n; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (is_free_node(t)) {
            g->backend[i] = prev;
            snprintf(s->cause[i], sizeof s->cause[i], "%s", t->op == SD_OP_NONE ? "leaf" : "view");
            continue;
        }
        const struct sd_refusal *ref = refusal_of(s, i);
        int chosen = -1;
        char why[128] = "", all[128] = "";
        for (int b = 0; b < s->n_backends; b++) {
            if (ref && (ref->backends >> b) & 1u) {
                if (!all[0]) snprintf(all, sizeof all, "%s", ref->why);
                continue;
            }
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
        g->backend[i] = chosen;
        prev = chosen;
        snprintf(s->cause[i], sizeof s->cause[i], "%s", chosen == 0 ? "preferred" : all);
    }
    /* Splits: a new one wherever the backend of a compute node changes. */
    s->n_splits = 0;
    int cur = -1;
    for (int i = 0; i < n; i++) {
        if (is_free_node(g->nodes[i])) continue;
        if (g->backend[i] != cur) {
            s->split_start[s->n_splits++] = i;
            cur = g->backend[i];
        }
    }
    s->split_start[s->n_splits] = n;
    if (s->n_splits == 0) s->split_start[0] = 0;
    return SD_OK;
}

int sd_sched_alloc(struct sd_sched *s, struct sd_graph *g) {
    int rc;
    if (s->graph == g && g->planned && g->backend && g->placed_by == s) return reserve_arenas(s, g);
    if (!g->planned && (rc = sd_graph_plan(g)) != SD_OK) return rc;
    const int n = g->n_nodes;
    s->graph = NULL;
    free(s->cause);
    free(s->split_start);
    free(s->split_time);
    free(s->node_time);
    free(s->node_faults);
    free(s->refused);
    s->refused = NULL;
    s->n_refused = 0;
    free(g->backend);
    free(g->valid);
    g->placed_by = NULL;
    s->node_time = calloc((size_t)n + 1, sizeof(double));
    s->node_faults = calloc((size_t)n + 1, sizeof(long));
    s->cause = calloc((size_t)n + 1, sizeof *s->cause);
    s->split_start = malloc(((size_t)n + 2) * sizeof(int));
    s->split_time = calloc((size_t)n + 1, sizeof(double));
    g->backend = calloc((size_t)n + 1, sizeof *g->backend);
    g->valid = calloc((size_t)n + 1, sizeof *g->valid);
    if (!s->cause || !s->split_start || !s->split_time || !s->node_time || !s->node_faults || !g->backend || !g->valid)
        return sd_errorf(s->ctx, SD_ERR_NOMEM, "scheduler: out of memory");
    if ((rc = place(s, g)) != SD_OK) return rc;
    if ((rc = reserve_arenas(s, g)) != SD_OK) return rc;
    s->graph = g;
    g->placed_by = s;
    return SD_OK;
}

static struct sd_tensor *base_of(struct sd_tensor *t) { return t->view_src ? t->view_src : t; }

/* Makes activation t current on backend b. */
static int make_current(struct sd_sched *s, struct sd_graph *g, struct sd_tensor *t, int b) {
    unsigned bit = 1u << b, hbit = 1u << s->host;
    unsigned *valid = &g->valid[t->index];
    if (*valid & bit) return SD_OK;
    int rc;
    if (!(*valid & hbit)) {
        int owner = -1;
        for (int k = 0; k < s->n_backends; k++)
            if (*valid & (1u << k)) { owner = k; break; }
        if (owner < 0)
            return sd_errorf(s->ctx, SD_ERR_BACKEND, "scheduler: %s is read before it is computed", t->name);
        struct sd_backend *ob = s->backends[owner];
        if ((rc = ob->iface->tensor_get(ob, g, t, t->data)) != SD_OK) return rc;
        *valid |= hbit;
        s->bytes_copied += sd_tensor_nbytes(t);
        s->n_copies++;
    }
    if (b != s->host) {
        struct sd_backend *tb = s->backends[b];
        if ((rc = tb->iface->tensor_set(tb, g, t, t->data)) != SD_OK) return rc;
        s->bytes_copied += sd_tensor_nbytes(t);
        s->n_copies++;
    }
    *valid |= bit;
    return SD_OK;
}

/* Minor page faults of the process so far (profiling: pages touched for
 * the first time, e.g. fresh buffers and weight copies). */
static long minor_faults(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

/* Runs nodes [i0, i1) of one split on backend b (node by node when
 * profiling). */
static int run_split(struct sd_sched *s, struct sd_graph *g, int k, int b, int i0, int i1) {
    struct sd_backend *be = s->backends[b];
    int rc = SD_OK;
    be->failed_node = -1;
    double t0 = s->profile ? sd_time_s() : 0;
    if (s->profile) { /* node by node, synchronised, to time each one */
        for (int i = i0; i < i1 && rc == SD_OK; i++) {
            if (is_free_node(g->nodes[i])) continue;
            double tn = sd_time_s();
            long f0 = minor_faults();
            if ((rc = be->iface->compute(be, g, i, i + 1)) == SD_OK) rc = sd_backend_synchronize(be);
            s->node_time[i] = sd_time_s() - tn;
            s->node_faults[i] = minor_faults() - f0;
        }
    } else {
        rc = be->iface->compute(be, g, i0, i1);
    }
    if (s->profile) s->split_time[k] += sd_time_s() - t0;
    return rc;
}

/* Marks the compute nodes [i0, i1) current on backend b only. */
static void ran_on(struct sd_graph *g, int b, int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (sd_tensor_in_arena(t) && !is_free_node(t)) g->valid[i] = 1u << b;
    }
}

/* Node f failed on backend b (message in ctx): refuses it there and places
 * the graph again. Returns SD_OK to resume at f, or an error. */
static int refuse(struct sd_sched *s, struct sd_graph *g, int f, int b) {
    struct sd_refusal *r = (struct sd_refusal *)refusal_of(s, f);
    if (!r) {
        struct sd_refusal *nr = realloc(s->refused, (size_t)(s->n_refused + 1) * sizeof *nr);
        if (!nr) return sd_errorf(s->ctx, SD_ERR_NOMEM, "scheduler: out of memory");
        s->refused = nr;
        r = &s->refused[s->n_refused++];
        *r = (struct sd_refusal){.node = f};
    }
    r->backends |= 1u << b;
    const char *msg = s->ctx && s->ctx->status ? s->ctx->msg : "error";
    snprintf(r->why, sizeof r->why, "failed on %s: %.*s", sd_backend_name(s->backends[b]), (int)strcspn(msg, "\n"), msg);
    sd_ctx_clear(s->ctx);
    int rc = place(s, g);
    if (rc == SD_OK) rc = reserve_arenas(s, g);
    if (rc == SD_OK) {
        sd_logf(&s->log, SD_LOG_WARN, "scheduler: %s [%s] %s; placed again", sd_op_name(g->nodes[f]->op),
                g->nodes[f]->name, r->why);
        char *text = NULL;
        size_t n = 0;
        FILE *mf = s->log_placement ? open_memstream(&text, &n) : NULL;
        if (mf) sd_sched_print(s, mf);
        if (mf && fclose(mf) == 0 && text) sd_logf(&s->log, SD_LOG_INFO, "%s", text);
        free(text);
    }
    return rc;
}

int sd_sched_compute(struct sd_sched *s, struct sd_graph *g) {
    int rc;
    if ((rc = sd_sched_alloc(s, g)) != SD_OK) return rc; /* cheap if placed; refreshes pointers */
    s->bytes_copied = 0;
    s->n_copies = 0;
    if (s->profile) memset(s->split_time, 0, ((size_t)g->n_nodes + 1) * sizeof *s->split_time);
    for (int i = 0; i < g->n_nodes; i++) g->valid[i] = (g->nodes[i]->flags & SD_TF_INPUT) ? 1u << s->host : 0;
    int from = 0; /* nodes before `from` have run */
resume:
    for (int k = 0; k < s->n_splits; k++) {
        int i0 = s->split_start[k], i1 = s->split_start[k + 1];
        if (i1 <= from) continue;
        int b = g->backend[i0];
        if (i0 < from) i0 = from;
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
                if ((rc = make_current(s, g, bs, b)) != SD_OK) return rc;
            }
        }
        rc = run_split(s, g, k, b, i0, i1);
        if (rc != SD_OK) {
            int f = be->failed_node;
            if (f >= i0 && f < i1 && !is_free_node(g->nodes[f])) {
                ran_on(g, b, i0, f);
                if ((rc = refuse(s, g, f, b)) != SD_OK)
                    return sd_error_wrap(s->ctx, "%s [%s] failed on %s and cannot run elsewhere", sd_op_name(g->nodes[f]->op),
                                         g->nodes[f]->name, sd_backend_name(be));
                from = f;
                goto resume;
            }
            if (s->ctx && s->ctx->status == SD_OK) sd_errorf(s->ctx, rc, "%s backend failed", sd_backend_name(be));
            return sd_error_wrap(s->ctx, "split %d (%s, nodes %d..%d)", k, sd_backend_name(be), i0, i1 - 1);
        }
        ran_on(g, b, i0, i1);
    }
    for (int o = 0; o < g->n_outputs; o++) {
        struct sd_tensor *t = base_of(g->outputs[o]);
        if (sd_tensor_in_arena(t) && (rc = make_current(s, g, t, s->host)) != SD_OK) return rc;
    }
    for (int b = 0; b < s->n_backends; b++)
        if ((rc = sd_backend_synchronize(s->backends[b])) != SD_OK) return rc;
    return SD_OK;
}

void sd_sched_print(const struct sd_sched *s, FILE *f) {
    const struct sd_graph *g = s->graph;
    if (!g || !g->backend) return;
    for (int k = 0; k < s->n_splits; k++) {
        int i0 = s->split_start[k], i1 = s->split_start[k + 1];
        int b = g->backend[i0];
        fprintf(f, "split %d: %s nodes %d..%d\n", k, sd_backend_name(s->backends[b]), i0, i1 - 1);
        for (int i = i0; i < i1; i++) {
            const struct sd_tensor *t = g->nodes[i];
            if (is_free_node(t)) continue;
            fprintf(f, "  %-6s [%s] %s cause=%s\n", sd_backend_name(s->backends[g->backend[i]]), t->name,
                    sd_op_name(t->op), s->cause[i]);
        }
    }
}
