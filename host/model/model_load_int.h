/* model_load_int.h - loader pieces shared by model_load.c and the SDXL
 * loader (sdxl_load.c); private to host/model. */
#ifndef SDRT_MODEL_LOAD_INT_H
#define SDRT_MODEL_LOAD_INT_H

#include "model.h"
#include "weights.h"

struct rename_ctx { int n; };

/* A new weight set in deferred mode (weights.h): what every model component loads into. */
struct sd_weights *sd_deferred_weights(struct sd_ctx *ctx);

/* Renamers for sd_weights_add_file (model_keys.c does the work). */
const char *sd_ren_unet(const char *name, char *buf, size_t size, void *user);  /* user: rename_ctx{layers_per_block} */
const char *sd_ren_vae(const char *name, char *buf, size_t size, void *user);   /* user: rename_ctx{levels} */
const char *sd_ren_clip1(const char *name, char *buf, size_t size, void *user);
const char *sd_ren_diffusers_clip(const char *name, char *buf, size_t size, void *user);

bool sd_has_prefix_key(const struct sd_st_file *f, const char *prefix);
/* An LDM/SGM single file's UNet (model.diffusion_model.*, layers per block from
 * the first downsampler's index) into m->un and its VAE (first_stage_model.*,
 * when there) into m->va: what SD 1.x/2.x and SDXL single files share. */
int sd_ldm_load_unet_vae(struct sd_ctx *ctx, struct sd_model *m, struct sd_st_file *f);
/* How many names fmt % 0, 1, ... exist in f, counting from 0. */
int sd_count_indexed(const struct sd_st_file *f, const char *fmt);
/* m keeps f open (closed by sd_model_free); on failure f is closed. */
int sd_keep_file(struct sd_ctx *ctx, struct sd_model *m, struct sd_st_file *f);
/* OpenCLIP in_proj [3d, d] of layers 0..layers-1 -> q/k/v slices. */
int sd_split_in_proj(struct sd_ctx *ctx, struct sd_weights *w, int layers, int64_t d);
void sd_vae_attn_to_linear(struct sd_weights *w);
/* dir/sub/<first existing of names> into *w. */
int sd_load_component(struct sd_ctx *ctx, struct sd_model *m, const char *dir, const char *sub, const char *const *names,
                      sd_weights_rename_fn ren, void *user, struct sd_weights **w);

struct sd_json;
/* dir/name parsed (model_config.c); NULL without an error when absent. */
struct sd_json *sd_model_read_json(struct sd_ctx *ctx, const char *dir, const char *name, int *rc);
/* Preview factors (4 rows of 3 finite numbers) and bias (3 finite numbers;
 * absent or null = 0) into out; SD_ERR_FORMAT naming `where` and what is
 * wrong otherwise. */
int sd_latent_rgb_read(struct sd_ctx *ctx, const struct sd_json *factors, const struct sd_json *bias, const char *where,
                       struct sd_latent_rgb *out);

/* sdxl_load.c */
int sd_sdxl_load_single(struct sd_ctx *ctx, struct sd_model *m, struct sd_st_file *f, const char *path);
int sd_sdxl_load_folder(struct sd_ctx *ctx, struct sd_model *m, const char *dir);
/* text_encoder_2/, tokenizer_2/ and unet/ (addition_time_embed_dim) of dir and
 * of config_dir (each optional). */
int sd_sdxl_read_configs(struct sd_ctx *ctx, struct sd_model *m, const char *dir, const char *config_dir);
/* After the structure is inferred: bigG config, add_embedding split, base /
 * refiner / inpaint, consistency of the widths. */
int sd_sdxl_finish(struct sd_ctx *ctx, struct sd_model *m);

#endif
