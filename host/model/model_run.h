/* model_run.h - running a model's components (CLIP, UNet, VAE) on a runtime.
 *
 * Each call builds the component's graph for its input shape on first use
 * (cached by the runtime, keyed by the model's id and the shape), then
 * copies the inputs in, computes and copies the output out.
 */
#ifndef SDRT_MODEL_RUN_H
#define SDRT_MODEL_RUN_H

#include "model.h"
#include "runtime.h"

/* CLIP: ids i32 [B, 77] -> out [B, 77, hidden]. */
int sd_run_clip(struct sd_runtime *rt, struct sd_model *m, const int32_t *ids, int B, int clip_skip, float *out);
/* UNet: x [B, in_ch, h, w], t [B], context [B, L, ctx_dim] -> out [B, out_ch, h, w]. */
int sd_run_unet(struct sd_runtime *rt, struct sd_model *m, const float *x, int B, int h, int w, const float *t,
                const float *context, int ctx_len, float *out);
/* SDXL text encoder `which` (1: CLIP ViT-L, 2: OpenCLIP bigG): ids i32 [B, 77]
 * -> out [B, 77*hidden] (penultimate layer, no final LayerNorm); encoder 2
 * also needs eos i32 [B] (flat index b*77 + EOS position) and appends the
 * pooled projection: out [B, 77*hidden + projection]. */
int sd_run_clip_xl(struct sd_runtime *rt, struct sd_model *m, int which, const int32_t *ids, const int32_t *eos, int B,
                   float *out);
/* UNet with SDXL's add_embedding inputs: text_embeds [B, pooled], time_ids [B, add_n_ids]
 * (NULL for SD 1.x/2.x). */
int sd_run_unet_xl(struct sd_runtime *rt, struct sd_model *m, const float *x, int B, int h, int w, const float *t,
                   const float *context, int ctx_len, const float *text_embeds, const float *time_ids, float *out);
/* VAE: z [B, latent, h, w] (decoder space, already / scaling) -> img [B, 3, f*h, f*w],
 * f = sd_vae_downscale(&m->vae) = 2^(levels-1) (SD 1.x/2.x: 8). */
int sd_run_vae_decode(struct sd_runtime *rt, struct sd_model *m, const float *z, int B, int h, int w, float *img);
/* VAE: img [B, 3, H, W] in [-1, 1], H and W multiples of f -> moments [B, 2*latent, H/f, W/f]. */
int sd_run_vae_encode(struct sd_runtime *rt, struct sd_model *m, const float *img, int B, int H, int W, float *moments);

/* Activation arena bytes the untiled decoder (decode != 0, sizes h x w in
 * latents) or encoder (H x W in pixels) would need for one image: the
 * graph is built and memory-planned, nothing is allocated or run. */
int sd_vae_arena_estimate(struct sd_ctx *ctx, struct sd_model *m, int decode, int h, int w, size_t *bytes);

/* Drops the runtime's cached graphs of m and every backend's copies of all
 * of m's weights (device uploads, oneDNN reordered and Winograd copies):
 * call it on every runtime that ran m, before sd_model_free(m). */
void sd_runtime_release_model(struct sd_runtime *rt, const struct sd_model *m);
/* Drops every backend's copies of one weight set's tensors (e.g. m->un)
 * and trims the backends' arenas (sd_runtime_drop_copies, sd_runtime_trim):
 * the low-memory pipeline between phases. The weights stay usable. A NULL
 * or empty set does nothing. */
void sd_runtime_drop_weights(struct sd_runtime *rt, struct sd_weights *w);

#endif
