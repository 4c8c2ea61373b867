/* model_keys.h - LDM/OpenCLIP -> diffusers key renames (see model_keys.c). */
#ifndef SDRT_MODEL_KEYS_H
#define SDRT_MODEL_KEYS_H

#include <stddef.h>

/* Key without "model.diffusion_model."; returns 1 and the diffusers name, or 0 to skip. */
int sd_keys_unet_from_ldm(const char *key, int layers_per_block, char *out, size_t n);
/* Key without "first_stage_model." (or a standalone VAE file's key). */
int sd_keys_vae_from_ldm(const char *key, int n_levels, char *out, size_t n);
/* Key without "cond_stage_model.transformer.". */
int sd_keys_clip_sd1_from_ldm(const char *key, char *out, size_t n);
/* Key without "cond_stage_model.model."; resblocks >= n_layers_used are
 * skipped (SD2 uses the penultimate layer). The packed in_proj becomes
 * "...self_attn.in_proj.{weight,bias}", split into q/k/v by the loader. */
int sd_keys_clip_openclip(const char *key, int n_layers_used, char *out, size_t n);

#endif
