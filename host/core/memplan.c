/* memplan.c - the graph's memory plan: lifetimes and arena offsets.
 *
 * Every activation (a node that is neither a weight nor a view) gets a
 * lifetime [first, last] in node-index order: first is its own index (0 for
 * graph inputs, which the caller fills before anything runs), last is the
 * highest index of any node reading it or reading a view of it (the end of
 * the graph for outputs). Walking the nodes in order we allocate a tensor at
 * `first` and release it after `last`, from one arena managed as a sorted
 * free list with best fit and coalescing; the high-water mark is the arena
 * size. A node's output is allocated before its inputs are released, so an
 * op never writes over its own inputs. Each backend allocates one arena of
 * arena_size bytes and uses the same offsets, which makes cross-backend
 * copies a matter of copying [offs, offs+nbytes) between arenas.
 *
 * Everything computed here lives in the graph's per-node arrays (offs,
 * life_first, life_last, indexed by node position); weights are not nodes
 * and are neither read for a position nor written.
 */
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64

bool sd_tensor_in_arena(const struct sd_tensor *t) {
    return !(t->flags & SD_TF_WEIGHT) && t->op != SD_OP_RESHAPE;
}

struct block { size_t off, size; };
struct freelist { struct block *b; int n, cap; size_t top, peak; };

static int fl_insert(struct freelist *fl, int at, size_t off, size_t size) {
    if (fl->n == fl->cap) {
        int cap = fl->cap ? fl->cap * 2 : 64;
        struct block *nb = realloc(fl->b, (size_t)cap * sizeof *nb);
        if (!nb) return -1;
        fl->b = nb, fl->cap = cap;
    }
    memmove(fl->b + at + 1, fl->b + at, (size_t)(fl->n - at) * sizeof *fl->b);
    fl->b[at] = (struct block){off, size};
    fl->n++;
    return 0;
}

static size_t fl_alloc(struct freelist *fl, size_t size) {
    int best = -1;
    for (int i = 0; i < fl->n; i++)
        if (fl->b[i].size >= size && (best < 0 || fl->b[i].size < fl->b[best].size)) best = i;
    if (best >= 0) {
        size_t off = fl->b[best].off;
        fl->b[best].off += size;
        fl->b[best].size -= size;
        if (fl->b[best].size == 0) {
            memmove(fl->b + best, fl->b + best + 1, (size_t)(fl->n - best - 1) * sizeof *fl->b);
            fl->n--;
        }
        return off;
    }
    /* Grow at the top; a free block touching the top is reused first. */
    if (fl->n && fl->b[fl->n - 1].off + fl->b[fl->n - 1].size == fl->top) {
        size_t off = fl->b[fl->n - 1].off;
        fl->n--;
        fl->top = off + size;
    } else {
        size_t off = fl->top;
        fl->top += size;
        if (fl->top > fl->peak) fl->peak = fl->top;
        return off;
    }
    if (fl->top > fl->peak) fl->peak = fl->top;
    return fl->top - size;
}

static int fl_free(struct freelist *fl, size_t off, size_t size) {
    int at = 0;
    while (at < fl->n && fl->b[at].off < off) at++;
    if (at > 0 && fl->b[at - 1].off + fl->b[at - 1].size == off) {
        fl->b[at - 1].size += size;
        if (at < fl->n && fl->b[at - 1].off + fl->b[at - 1].size == fl->b[at].off) {
            fl->b[at - 1].size += fl->b[at].size;
            memmove(fl->b + at, fl->b + at + 1, (size_t)(fl->n - at - 1) * sizeof *fl->b);
            fl->n--;
        }
        return 0;
    }
    if (at < fl->n && off + size == fl->b[at].off) {
        fl->b[at].off = off;
        fl->b[at].size += size;
        return 0;
    }
    return fl_insert(fl, at, off, size);
}

static size_t padded(const struct sd_tensor *t) { return (sd_tensor_nbytes(t) + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

void sd_graph_lifetime(const struct sd_graph *g, const struct sd_tensor *t, int *first, int *last) {
    bool ok = g->planned && sd_graph_owns(g, t);
    *first = ok ? g->life_first[t->index] : -1;
    *last = ok ? g->life_last[t->index] : -1;
}

size_t sd_graph_offs(const struct sd_graph *g, const struct sd_tensor *t) {
    const struct sd_tensor *b = t->view_src ? t->view_src : t;
    return g->offs && sd_graph_owns(g, b) ? g->offs[b->index] : 0;
}

/* Checks that every source of every node is a node of g or a weight, and
 * lists weights given to builders that do not register them. */
static int check_sources(struct sd_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        for (int s = 0; s < SD_MAX_SRC; s++) {
            struct sd_tensor *src = g->nodes[i]->src[s];
            if (!src || sd_graph_owns(g, src)) continue;
            if (!sd_graph_weight(g, src)) return g->status ? g->status : SD_ERR_INVALID;
        }
    return SD_OK;
}

int sd_graph_plan(struct sd_graph *g) {
    if (!g) return SD_ERR_INVALID;
    if (g->status) return g->status;
    if (check_sources(g) != SD_OK) return g->status;
    const int n = g->n_nodes;
    free(g->offs);
    free(g->life_first);
    free(g->life_last);
    free(g->backend);
    free(g->valid);
    g->backend = NULL;
    g->placed_by = NULL;
    g->valid = NULL;
    g->planned = 0;
    g->offs = calloc((size_t)n + 1, sizeof(size_t));
    g->life_first = malloc((size_t)(n + 1) * sizeof(int));
    g->life_last = malloc((size_t)(n + 1) * sizeof(int));
    int *order = malloc((size_t)(2 * n + 2) * sizeof(int));
    int *dcount = calloc((size_t)n + 2, sizeof(int));
    struct freelist fl = {0};
    if (!g->offs || !g->life_first || !g->life_last || !order || !dcount) goto nomem;

    for (int i = 0; i < n; i++) {
        struct sd_tensor *t = g->nodes[i];
        g->life_first[i] = (t->flags & SD_TF_INPUT) ? 0 : i;
        g->life_last[i] = g->life_first[i];
    }
    for (int i = 0; i < n; i++) {
        struct sd_tensor *t = g->nodes[i];
        for (int s = 0; s < SD_MAX_SRC; s++) {
            struct sd_tensor *src = t->src[s];
            if (!src) continue;
            if (src->view_src) src = src->view_src;
            if (!sd_graph_owns(g, src)) continue; /* a weight */
            if (g->life_last[src->index] < i) g->life_last[src->index] = i;
        }
    }
    for (int o = 0; o < g->n_outputs; o++) {
        struct sd_tensor *t = g->outputs[o];
        if (t->view_src) t = t->view_src;
        g->life_last[t->index] = n;
    }
    /* Bucket tensors by death index (counting sort) so each step frees in O(deaths). */
    int *dstart = order + n + 1;
    for (int i = 0; i < n; i++)
        if (sd_tensor_in_arena(g->nodes[i])) dcount[g->life_last[i]]++;
    int acc = 0;
    for (int i = 0; i <= n; i++) { dstart[i] = acc; acc += dcount[i]; dcount[i] = 0; }
    for (int i = 0; i < n; i++)
        if (sd_tensor_in_arena(g->nodes[i])) { int d = g->life_last[i]; order[dstart[d] + dcount[d]++] = i; }

    size_t naive = 0;
    /* Inputs first: they are live from the start. */
    for (int i = 0; i < n; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (sd_tensor_in_arena(t) && (t->flags & SD_TF_INPUT)) { g->offs[i] = fl_alloc(&fl, padded(t)); naive += padded(t); }
    }
    for (int i = 0; i < n; i++) {
        struct sd_tensor *t = g->nodes[i];
        if (sd_tensor_in_arena(t) && !(t->flags & SD_TF_INPUT)) { g->offs[i] = fl_alloc(&fl, padded(t)); naive += padded(t); }
        if (t->op == SD_OP_RESHAPE) g->offs[i] = g->offs[t->view_src->index];
        for (int k = 0; k < dcount[i]; k++) {
            int d = order[dstart[i] + k];
            if (fl_free(&fl, g->offs[d], padded(g->nodes[d])) != 0) goto nomem;
        }
    }
    g->arena_size = fl.peak;
    g->naive_size = naive;
    g->planned = 1;
    free(fl.b);
    free(order);
    free(dcount);
    return SD_OK;
nomem:
    free(fl.b);
    free(order);
    free(dcount);
    return g->status = sd_errorf(g->ctx, SD_ERR_NOMEM, "memory plan: out of memory");
}

bool sd_graph_plan_check(const struct sd_graph *g) {
    if (!g->planned) return false;
    for (int i = 0; i < g->n_nodes; i++) {
        const struct sd_tensor *a = g->nodes[i];
        if (!sd_tensor_in_arena(a)) continue;
        if (g->offs[i] + sd_tensor_nbytes(a) > g->arena_size) return false;
        for (int j = i + 1; j < g->n_nodes; j++) {
            const struct sd_tensor *b = g->nodes[j];
            if (!sd_tensor_in_arena(b)) continue;
            bool live_overlap = g->life_first[i] <= g->life_last[j] && g->life_first[j] <= g->life_last[i];
            bool mem_overlap = g->offs[i] < g->offs[j] + sd_tensor_nbytes(b) && g->offs[j] < g->offs[i] + sd_tensor_nbytes(a);
            if (live_overlap && mem_overlap) return false;
        }
    }
    return true;
}

void sd_graph_print(const struct sd_graph *g, FILE *f, int verbose) {
    int n_ops = 0, n_w = g->n_weights;
    size_t wbytes = 0;
    for (int i = 0; i < g->n_weights; i++) wbytes += sd_tensor_nbytes(g->weights[i]);
    for (int i = 0; i < g->n_nodes; i++) {
        const struct sd_tensor *t = g->nodes[i];
        if (t->op != SD_OP_NONE) n_ops++;
        if (verbose && t->op != SD_OP_NONE) {
            char s[64];
            fprintf(f, "  %5d %-18s %-40s %-22s", i, sd_op_name(t->op), t->name, sd_tensor_shape_str(t, s, sizeof s));
            if (g->planned && sd_tensor_in_arena(t))
                fprintf(f, " @%-12zu live [%d, %d]", g->offs[i], g->life_first[i], g->life_last[i]);
            fputc('\n', f);
        }
    }
    fprintf(f, "graph: %d ops, %d weights (%.1f MiB)", n_ops, n_w, (double)wbytes / 1048576.0);
    if (g->planned)
        fprintf(f, ", activation arena %.1f MiB (%.1f MiB without reuse)", (double)g->arena_size / 1048576.0,
                (double)g->naive_size / 1048576.0);
    fputc('\n', f);
}
