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

#endif
