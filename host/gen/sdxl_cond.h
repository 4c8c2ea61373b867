/* sdxl_cond.h - SDXL conditioning for the pipeline (sdxl_cond.c): both text
 * encoders' context, the pooled text vector and the size / crop / aesthetic
 * "time ids" of the UNet's add_embedding. Private to host/gen. */
#ifndef SDRT_SDXL_COND_H
#define SDRT_SDXL_COND_H

#include "pipeline.h"

/* pipeline.c: an A1111 prompt as 75-token chunks of 77 ids (BOS, tokens,
 * EOS, padding with 0 when pad_zero, else EOS) and per-token weights;
 * *ids and *w malloc'd [n_chunks * 77]. */
int sd_tokenize_chunks(struct sd_pipeline *p, const char *text, int pad_zero, int32_t **ids, float **w, int *n_chunks);
/* pipeline.c: the embedding cache's key for the text encoders' outputs: the
 * model, its text encoders' LoRA set and the runtime's numerics. */
uint64_t sd_te_cache_key(const struct sd_pipeline *p);

/* Width of one context row: CLIP ViT-L + bigG penultimate states (base: 768
 * + 1280 = 2048), bigG only for the refiner. */
int sd_sdxl_context_width(const struct sd_model *m);
/* Width of the pooled vector (bigG's text_projection). */
int sd_sdxl_pooled_width(const struct sd_model *m);

/* One prompt through both encoders, as A1111 does it: each encoder gets the
 * same 75-token chunks (with its own padding), its output gets the emphasis
 * weights (mean-restoring, per encoder), and the two are concatenated per
 * token: *ctx malloc'd [n_chunks * 77, context width]. pooled [pooled width]
 * = bigG's pooled output of the first chunk. Outputs come from the
 * embedding cache when there (keyed per encoder and LoRA set). */
int sd_sdxl_encode_prompt(struct sd_pipeline *p, const char *prompt, float **ctx, int *n_chunks, float *pooled,
                          int *cached);

/* The add_embedding's time ids of one image (n = m->unet.add_n_ids):
 * base: original h, w, crop top, left, target h, w; refiner: original h, w,
 * crop top, left, aesthetic score. c's zero fields take A1111's defaults
 * (original = target = the image size, crop 0, 0; aesthetic 6 or, for the
 * negative, 2.5); for the negative, fields left 0 in neg come from pos
 * first (diffusers: negative_* default to the positive values). */
void sd_sdxl_time_ids(const struct sd_model *m, const struct sd_gen_params *g, int negative, float *ids);

/* Everything an SDXL UNet call needs for g, for the model p->model (the
 * refiner's hand-off builds its own this way): rows [uncond x B, cond x B]
 * with CFG (cfg != 0), else [cond x B]; *ctx [rows, *chunks * 77, context
 * width] (the shorter side padded with the encoding of ""), *pooled [rows,
 * pooled width], *time_ids [rows, add_n_ids]; all malloc'd. An empty
 * negative prompt is zeros (A1111's force_zero_negative_prompt). */
int sd_sdxl_cond_rows(struct sd_pipeline *p, const struct sd_gen_params *g, int cfg, int B, float **ctx, int *chunks,
                      float **pooled, float **time_ids);

/* A1111's refiner switch (sd_samplers_common.apply_refiner, by sigma): a
 * model call at timestep t runs the refiner once (999 - round(t)) / 1000 >=
 * the switch fraction. */
static inline int sd_sdxl_refiner_due(float t, float switch_at) {
    const float ts = t < 0 ? 0 : (float)(int)(t + 0.5f);
    return (999.0f - ts) / 1000.0f >= switch_at;
}

#endif
