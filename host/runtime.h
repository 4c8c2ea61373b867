/* runtime.h - running model components on the configured backends.
 *
 * A runtime owns the backends (CPU always, as host and fallback) and a
 * small cache of built graphs keyed by (component, model, input shape,
 * options): a graph is built and planned once per shape and reused by every
 * sampling step and every later generation. All graphs share each backend's
 * one activation arena, so peak activation memory is the largest graph's.
 */
#ifndef SDRT_RUNTIME_H
#define SDRT_RUNTIME_H

#include <stdio.h>

#include "backend.h"
#include "model.h"

enum sd_backend_kind { SD_BACKEND_CPU = 0, SD_BACKEND_OPENCL, SD_BACKEND_AUTO };

struct sd_runtime;

/* Returns a runtime owned by the caller, or NULL with ctx set. n_threads 0 =
 * all cores. */
struct sd_runtime *sd_runtime_new(struct sd_ctx *ctx, enum sd_backend_kind kind, int n_threads);
void sd_runtime_free(struct sd_runtime *rt);
/* Parses "cpu" | "opencl" | "auto"; returns -1 if unknown. */
int sd_backend_kind_parse(const char *s);

/* CLIP: ids i32 [B, 77] -> out [B, 77, hidden]. */
int sd_run_clip(struct sd_runtime *rt, struct sd_model *m, const int32_t *ids, int B, int clip_skip, float *out);
/* UNet: x [B, in_ch, h, w], t [B], context [B, L, ctx_dim] -> out [B, out_ch, h, w]. */
int sd_run_unet(struct sd_runtime *rt, struct sd_model *m, const float *x, int B, int h, int w, const float *t,
                const float *context, int ctx_len, float *out);
/* VAE: z [B, latent, h, w] (decoder space, already / scaling) -> img [B, 3, 8h, 8w]. */
int sd_run_vae_decode(struct sd_runtime *rt, struct sd_model *m, const float *z, int B, int h, int w, float *img);
/* VAE: img [B, 3, H, W] in [-1, 1] -> moments [B, 2*latent, H/8, W/8]. */
int sd_run_vae_encode(struct sd_runtime *rt, struct sd_model *m, const float *img, int B, int H, int W, float *moments);

/* Peak activation arena over the graphs built so far, in bytes. */
size_t sd_runtime_arena_bytes(const struct sd_runtime *rt);
struct sd_ctx *sd_runtime_ctx(struct sd_runtime *rt);
/* Drops the cached graphs of m (call before sd_model_free(m)). */
void sd_runtime_release_model(struct sd_runtime *rt, const struct sd_model *m);

/* Profiling: when on, every run times each node (synchronised; a little
 * slower) and accumulates seconds, FLOPs and calls per (backend, op). */
struct sd_op_profile { double seconds, flops; int calls; };
void sd_runtime_set_profile(struct sd_runtime *rt, int on); /* also resets the counters */
const struct sd_op_profile *sd_runtime_profile(const struct sd_runtime *rt, int backend, enum sd_op op);
int sd_runtime_n_backends(const struct sd_runtime *rt);
const char *sd_runtime_backend_name(const struct sd_runtime *rt, int i);
void sd_runtime_profile_print(const struct sd_runtime *rt, FILE *f);

#endif
