/* model_load.h - opening SD checkpoints (see model_load.c). */
#ifndef SDRT_MODEL_LOAD_H
#define SDRT_MODEL_LOAD_H

#include "model.h"

/* Opens a single-file checkpoint (.safetensors, LDM names) or a diffusers
 * folder. config_dir (optional) is a diffusers folder whose config.json files
 * override the family defaults (heads, groups, eps, ...) - needed for
 * single-file models whose configuration differs from SD's. On success *out
 * is owned by the caller (sd_model_free). Weights load lazily. */
int sd_model_load(struct sd_ctx *ctx, const char *path, const char *config_dir, struct sd_model **out);
void sd_model_free(struct sd_model *m);
/* Loads (converts) every weight now; returns SD_OK or the first error. */
int sd_model_load_weights(struct sd_model *m);

#endif
