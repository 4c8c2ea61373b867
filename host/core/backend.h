/* backend.h - the backend interface and the scheduler (dispatcher).
 *
 * A backend runs nodes of a graph. It owns one activation arena of
 * graph->arena_size bytes laid out by the graph's memory plan (the same
 * offsets, g->offs, on every backend), keeps its own copy of any weight it
 * needs (uploaded or reordered on first use, keyed by the weight tensor or
 * its data), and runs contiguous ranges of nodes. The CPU backend is the
 * host: its arena is host memory, tensor->data points into it, and graph
 * inputs and outputs are read and written there.
 *
 * Weights are shared: several graphs, runtimes and threads may read one
 * model at once, so nothing here writes into a weight tensor. Their copies
 * have a lifecycle of their own: weights_released (the model goes; drop
 * every copy of these tensors) and weights_changed (their bytes were
 * patched in place, e.g. a LoRA merge; copies of exactly these are made
 * again from the new bytes before their next use).
 *
 * The scheduler takes backends in priority order (the CPU last), places each
 * node on the first backend whose supports() accepts it, cuts the node list
 * into splits of consecutive nodes on one backend, and before each split
 * copies in the activations it reads that are not current on its backend
 * (through the host arena). Placement and validity live in the graph
 * (g->backend, g->valid). When a node fails on a backend at compute time and
 * the backend says which (failed_node), the scheduler marks that node
 * refused on that backend, places the graph again (the node lands on the
 * next backend that supports it, normally the CPU) and carries on from that
 * node. sd_sched_print shows every split and why each node is where it is (the runtime
 * logs it with SD_DEBUG_SCHED).
 */
#ifndef SDRT_BACKEND_H
#define SDRT_BACKEND_H

#include <stdio.h>

#include "graph.h"

#define SD_BACKEND_IFACE_VERSION 2
#define SD_MAX_BACKENDS 4

struct sd_backend;
struct sd_runtime_opts; /* runtime.h */

struct sd_backend_i {
    int version; /* SD_BACKEND_IFACE_VERSION */
    const char *name;
    /* Required. Returns whether the backend can run `node`; when not, writes
     * the cause (e.g. "unsupported(f16)", "disabled") into why. */
    bool (*supports)(struct sd_backend *b, const struct sd_tensor *node, char *why, size_t why_n);
    /* Required. Makes the activation arena at least `size` bytes. For the
     * host backend, returns the host pointer in *host (else leaves it). */
    int (*arena_reserve)(struct sd_backend *b, size_t size, void **host);
    /* Required. Runs the nodes g->nodes[i0..i1) (leaves and views are
     * skipped). Inputs are current in this backend's arena or weights.
     * When one node fails in a way another backend may not (a device error),
     * set b->failed_node to its index before returning the error: the
     * scheduler then runs it elsewhere and goes on. */
    int (*compute)(struct sd_backend *b, struct sd_graph *g, int i0, int i1);
    /* Optional for the host backend, required otherwise: copy the bytes of
     * activation t of graph g (at sd_graph_offs(g, t)) between the host
     * arena and this backend's arena. */
    int (*tensor_set)(struct sd_backend *b, const struct sd_graph *g, const struct sd_tensor *t, const void *host);
    int (*tensor_get)(struct sd_backend *b, const struct sd_graph *g, const struct sd_tensor *t, void *host);
    /* Optional: wait for queued work (default: nothing to wait for). */
    int (*synchronize)(struct sd_backend *b);
    /* Optional (required of a backend that keeps weight copies): the weights
     * w[0..n) are released (their model is freed, their memory may be
     * reused): drop every copy and derived form of exactly these (device
     * uploads, reordered layouts). Waits for queued work that reads them. */
    void (*weights_released)(struct sd_backend *b, struct sd_tensor *const *w, int n);
    /* Optional (likewise): the bytes of weights w[0..n) changed in place
     * (same tensors, same data pointers): the next use of each must see the
     * new bytes (a device re-uploads exactly these; a reordered copy is made
     * again); copies of other weights stay. */
    void (*weights_changed)(struct sd_backend *b, struct sd_tensor *const *w, int n);
    /* Optional: frees what the next compute can make again (activation
     * arena, scratch) while no graph runs; the next arena_reserve allocates
     * anew. */
    void (*trim)(struct sd_backend *b);
    /* Required: frees the backend. */
    void (*free)(struct sd_backend *b);
};

struct sd_backend {
    const struct sd_backend_i *iface;
    struct sd_ctx *ctx;
    void *impl;   /* backend-private state */
    int is_host;  /* arena is host memory (the CPU backend) */
    int failed_node; /* set by compute (see there); the scheduler resets it to -1 */
};

/* Backend registry: the backends linked into the library, by name
 * ("cpu", "opencl"). The table is defined outside the core
 * (host/backends/registry.c) so that the core includes no backend. */
struct sd_backend_factory {
    const char *name;
    /* Takes from opts what the backend needs (threads, device, policies,
     * the log); NULL = the defaults (sd_runtime_opts_init). */
    struct sd_backend *(*create)(struct sd_ctx *ctx, const struct sd_runtime_opts *opts);
};
extern const struct sd_backend_factory *const sd_backend_registry[]; /* NULL-terminated */
/* Creates the backend `name`, or NULL with ctx set (unknown name, no device). */
struct sd_backend *sd_backend_create(struct sd_ctx *ctx, const char *name, const struct sd_runtime_opts *opts);

/* Public wrappers: apply defaults for optional slots. */
bool sd_backend_supports(struct sd_backend *b, const struct sd_tensor *node, char *why, size_t why_n);
int sd_backend_synchronize(struct sd_backend *b);
void sd_backend_free(struct sd_backend *b); /* NULL is a no-op */
void sd_backend_weights_released(struct sd_backend *b, struct sd_tensor *const *w, int n);
void sd_backend_weights_changed(struct sd_backend *b, struct sd_tensor *const *w, int n);
const char *sd_backend_name(const struct sd_backend *b);

/* For backends matching their weight copies against a released or changed
 * set: the byte ranges [data, data + nbytes) of w[0..n), sorted. A copy
 * whose source bytes overlap any range is affected (so slices aliasing a
 * changed weight's bytes are caught too). */
struct sd_weight_set { const void **lo, **hi; int n; };
/* Returns SD_OK or SD_ERR_NOMEM (the caller then drops every copy). */
int sd_weight_set_init(struct sd_weight_set *s, struct sd_tensor *const *w, int n);
bool sd_weight_set_hits(const struct sd_weight_set *s, const void *data, size_t nbytes);
void sd_weight_set_free(struct sd_weight_set *s);

struct sd_sched {
    struct sd_ctx *ctx;
    struct sd_backend *backends[SD_MAX_BACKENDS];
    int n_backends, host;      /* host = index of the host (CPU) backend */
    void *host_arena;
    int profile;               /* time each split (synchronised) */
    struct sd_log log;         /* set by the owner: a re-placement after a compute-time failure is logged
                                * (warning), with the new placement at info when log_placement */
    int log_placement;
    struct sd_graph *graph;    /* graph the placement was computed for */
    char (*cause)[128];        /* per node: why it is where it is */
    struct sd_refusal {        /* nodes that failed on a backend at compute time */
        int node;
        unsigned backends;     /* bitmask of backends that failed it */
        char why[128];         /* "failed on <backend>: <message>" */
    } *refused;
    int n_refused;
    int *split_start, n_splits;
    double *split_time;        /* seconds per split of the last compute (when profile) */
    double *node_time;         /* seconds per node of the last compute (when profile) */
    long *node_faults;         /* minor page faults per node of the last compute (when profile) */
    size_t bytes_copied;       /* by the last compute */
    int n_copies;
};

/* Returns a scheduler over backends[0..n) in priority order; exactly one of
 * them must be the host backend (normally the last). Does not take ownership
 * of the backends. */
struct sd_sched *sd_sched_new(struct sd_ctx *ctx, struct sd_backend **backends, int n);
void sd_sched_free(struct sd_sched *s);

/* Places the nodes of a planned graph (g->backend), builds splits, reserves
 * every used backend's arena and sets tensor->data for activations (host
 * arena). A scheduler serves one graph at a time. Call
 * it again (cheap) before writing inputs whenever other graphs have run on
 * the same backends since: they share each backend's arena. After
 * this the caller writes inputs through tensor->data, before every compute:
 * input memory is reused once the input is dead. */
int sd_sched_alloc(struct sd_sched *s, struct sd_graph *g);

/* Runs the graph; on return every output is current in host memory
 * (tensor->data). A node that fails on a backend that names it
 * (failed_node) is re-placed and run elsewhere (cause "failed on <backend>:
 * <why>"). Returns SD_OK or the failing backend's error. */
int sd_sched_compute(struct sd_sched *s, struct sd_graph *g);

/* Prints splits and per-node placement causes. */
void sd_sched_print(const struct sd_sched *s, FILE *f);

#endif
