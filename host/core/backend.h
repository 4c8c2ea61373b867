/* backend.h - the backend interface and the scheduler (dispatcher).
 *
 * A backend runs nodes of a graph. It owns one activation arena of
 * graph->arena_size bytes laid out by the graph's memory plan (the same
 * offsets on every backend), keeps its own copy of any weight it needs
 * (uploaded once, keyed by the weight tensor), and runs contiguous ranges of
 * nodes. The CPU backend is the host: its arena is host memory, tensor->data
 * points into it, and graph inputs and outputs are read and written there.
 *
 * The scheduler takes backends in priority order (the CPU last), places each
 * node on the first backend whose supports() accepts it, cuts the node list
 * into splits of consecutive nodes on one backend, and before each split
 * copies in the activations it reads that are not current on its backend
 * (through the host arena). sd_sched_print shows every split and why each
 * node is where it is (the runtime logs it with SD_DEBUG_SCHED).
 */
#ifndef SDRT_BACKEND_H
#define SDRT_BACKEND_H

#include <stdio.h>

#include "graph.h"

#define SD_BACKEND_IFACE_VERSION 1
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
     * skipped). Inputs are current in this backend's arena or weights. */
    int (*compute)(struct sd_backend *b, struct sd_graph *g, int i0, int i1);
    /* Optional for the host backend, required otherwise: copy the bytes of
     * activation t between the host arena and this backend's arena. */
    int (*tensor_set)(struct sd_backend *b, const struct sd_tensor *t, const void *host);
    int (*tensor_get)(struct sd_backend *b, const struct sd_tensor *t, void *host);
    /* Optional: wait for queued work (default: nothing to wait for). */
    int (*synchronize)(struct sd_backend *b);
    /* Optional: drops every copy the backend keeps of model weights (device
     * uploads, reordered layouts); they are made again on next use. */
    void (*release_weights)(struct sd_backend *b);
    /* Required: frees the backend. */
    void (*free)(struct sd_backend *b);
};

struct sd_backend {
    const struct sd_backend_i *iface;
    struct sd_ctx *ctx;
    void *impl;   /* backend-private state */
    int is_host;  /* arena is host memory (the CPU backend) */
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
void sd_backend_release_weights(struct sd_backend *b);
const char *sd_backend_name(const struct sd_backend *b);

struct sd_sched {
    struct sd_ctx *ctx;
    struct sd_backend *backends[SD_MAX_BACKENDS];
    int n_backends, host;      /* host = index of the host (CPU) backend */
    void *host_arena;
    int profile;               /* time each split (synchronised) */
    struct sd_graph *graph;    /* graph the placement was computed for */
    char (*cause)[48];         /* per node: why it is where it is */
    int *split_start, n_splits;
    double *split_time;        /* seconds per split of the last compute (when profile) */
    double *node_time;         /* seconds per node of the last compute (when profile) */
    size_t bytes_copied;       /* by the last compute */
    int n_copies;
};

/* Returns a scheduler over backends[0..n) in priority order; exactly one of
 * them must be the host backend (normally the last). Does not take ownership
 * of the backends. */
struct sd_sched *sd_sched_new(struct sd_ctx *ctx, struct sd_backend **backends, int n);
void sd_sched_free(struct sd_sched *s);

/* Places the nodes of a planned graph, builds splits, reserves every used
 * backend's arena and sets tensor->data for activations (host arena). Call
 * it again (cheap) before writing inputs whenever other graphs have run on
 * the same backends since: they share each backend's arena. After
 * this the caller writes inputs through tensor->data, before every compute:
 * input memory is reused once the input is dead. */
int sd_sched_alloc(struct sd_sched *s, struct sd_graph *g);

/* Runs the graph; on return every output is current in host memory
 * (tensor->data). Returns SD_OK or the failing backend's error. */
int sd_sched_compute(struct sd_sched *s, struct sd_graph *g);

/* Prints splits and per-node placement causes. */
void sd_sched_print(const struct sd_sched *s, FILE *f);

#endif
