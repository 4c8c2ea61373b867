/* runtime.h - backends plus a cache of planned graphs, for any model.
 *
 * A runtime owns the backends (the CPU always, as host and per-op fallback;
 * built through the backend registry, backend.h) and a small cache of built
 * graphs keyed by (kind, owner, dims): a graph is built and planned once per
 * key and reused by every later run with the same key. All graphs share each
 * backend's one activation arena, so peak activation memory is the largest
 * graph's. The runtime knows nothing of models: model/model_run.h runs the
 * CLIP, UNet and VAE graphs through sd_runtime_run.
 *
 * Threads: a runtime (its backends, arena and graphs) is used by one thread
 * at a time. Several runtimes may run graphs of one model in several
 * threads at once: graphs and backends never write into weights, and the
 * lazy weight load is locked (weights.h).
 */
#ifndef SDRT_RUNTIME_H
#define SDRT_RUNTIME_H

#include <stdio.h>

#include "backend.h"

enum sd_backend_kind { SD_BACKEND_CPU = 0, SD_BACKEND_OPENCL, SD_BACKEND_AUTO };

struct sd_runtime;

/* Returns a runtime owned by the caller, or NULL with ctx set. n_threads 0 =
 * all cores. */
struct sd_runtime *sd_runtime_new(struct sd_ctx *ctx, enum sd_backend_kind kind, int n_threads);
void sd_runtime_free(struct sd_runtime *rt);
/* Parses "cpu" | "opencl" | "auto"; returns -1 if unknown. */
int sd_backend_kind_parse(const char *s);

#define SD_GRAPH_KEY_DIMS 6
#define SD_GRAPH_MAX_INPUTS 4

/* Identifies a cached graph: what it computes (kind, with `what` naming it in
 * errors), whose weights it reads (owner: a model id, so a released model's
 * graphs can be dropped) and the shape-determining numbers. */
struct sd_graph_key {
    int kind;
    uint64_t owner;
    int64_t dims[SD_GRAPH_KEY_DIMS];
    const char *what;
};

/* Builds a graph for a key: creates the inputs (sd_graph_input) into in[]
 * in the order sd_runtime_run receives their data, sets *n_in, and returns
 * the output node (or NULL with g->status set). */
typedef struct sd_tensor *(*sd_graph_build_fn)(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in);

/* Runs the graph for key (building it with build(user) on a cache miss):
 * copies inputs[i] into the graph's i-th input, computes, copies the output
 * into out. Returns SD_OK or an error (build errors prefixed with key->what). */
int sd_runtime_run(struct sd_runtime *rt, const struct sd_graph_key *key, sd_graph_build_fn build, void *user,
                   const void *const *inputs, void *out);

/* Peak activation arena over the graphs built so far, in bytes. */
size_t sd_runtime_arena_bytes(const struct sd_runtime *rt);
struct sd_ctx *sd_runtime_ctx(struct sd_runtime *rt);
/* Drops the cached graphs whose key has this owner, and every backend's
 * copies of weights[0..n) (all of the owner's weights: device uploads,
 * reordered layouts), so nothing of a released model stays behind. */
void sd_runtime_release_owner(struct sd_runtime *rt, uint64_t owner, struct sd_tensor *const *weights, int n);
/* The bytes of weights[0..n) changed in place (e.g. a LoRA merge): every
 * backend makes its copies of exactly these again before their next use. */
void sd_runtime_weights_changed(struct sd_runtime *rt, struct sd_tensor *const *weights, int n);

/* Profiling: when on, every run times each node (synchronised; a little
 * slower) and accumulates seconds, FLOPs and calls per (backend, op). */
struct sd_op_profile { double seconds, flops; int calls; };
void sd_runtime_set_profile(struct sd_runtime *rt, int on); /* also resets the counters */
const struct sd_op_profile *sd_runtime_profile(const struct sd_runtime *rt, int backend, enum sd_op op);
int sd_runtime_n_backends(const struct sd_runtime *rt);
const char *sd_runtime_backend_name(const struct sd_runtime *rt, int i);
/* The i-th backend (priority order; the CPU last), NULL if out of range:
 * for tests and tools that inspect a backend's caches. */
struct sd_backend *sd_runtime_backend(struct sd_runtime *rt, int i);
void sd_runtime_profile_print(const struct sd_runtime *rt, FILE *f);

#endif
