/* model.h - SD 1.x/2.x model description: configs, weights, graph builders.
 *
 * Models are described once, as plain forward functions that append nodes to
 * a graph (graph.h) and read weights by their diffusers names from the
 * component's weight set (weights.h). Single-file LDM checkpoints are renamed
 * to diffusers names at load time (model_keys.c), so builders see one naming.
 * Configs come from a diffusers folder's config.json files or, for single
 * files, from the detected family's defaults (see model_load.c), with the
 * structural numbers (levels, widths, layers) read from tensor shapes.
 */
#ifndef SDRT_MODEL_H
#define SDRT_MODEL_H

#include "graph.h"

struct sd_weights;

enum sd_family { SD_FAMILY_UNKNOWN = 0, SD_FAMILY_SD1, SD_FAMILY_SD1_INPAINT, SD_FAMILY_SD2, SD_FAMILY_SD2_INPAINT };

#define SD_MAX_LEVELS 6

struct sd_clip_config {
    int hidden, layers, heads, intermediate, max_pos, vocab;
    int quick_gelu;     /* SD1: quick_gelu; SD2: exact gelu */
    float eps;
    int pad_id;         /* 49407 (SD1) or 0 (SD2) */
};

struct sd_unet_config {
    int in_channels, out_channels;
    int n_levels, layers_per_block;
    int block_out[SD_MAX_LEVELS];
    int down_attn[SD_MAX_LEVELS];   /* level has transformers on the way down */
    int up_attn[SD_MAX_LEVELS];     /* up block u has transformers */
    int heads[SD_MAX_LEVELS];       /* attention heads per level (diffusers attention_head_dim) */
    int head_dim;                   /* if > 0, heads = C / head_dim (overrides heads[]) */
    int context_dim, time_embed_dim;
    int linear_proj;                /* proj_in/out are Linear (SD2) rather than 1x1 conv */
    int norm_groups;
    float norm_eps;
};

struct sd_vae_config {
    int in_channels, latent_channels, n_levels, layers_per_block;
    int block_out[SD_MAX_LEVELS];
    int norm_groups;
    float scaling_factor;
    int has_encoder, has_decoder;
};

struct sd_model {
    enum sd_family family;
    enum sd_prediction prediction;
    char path[1024];
    int single_file;
    enum sd_dtype file_dtype;       /* dtype of most weights on disk */
    struct sd_clip_config clip;
    struct sd_unet_config unet;
    struct sd_vae_config vae;
    struct sd_weights *te, *un, *va; /* text encoder, UNet, VAE weights (diffusers names) */
    void *files[8];                 /* open safetensors files backing the weights */
    int n_files;
    double load_seconds;
    uint64_t id;                    /* unique per loaded model (cache keys; pointers get reused) */
};

const char *sd_family_name(enum sd_family f);

/* Graph builders. Each returns the output node or NULL with g->status set. */

/* ids: i32 [B, 77]. clip_skip: 0/1 = last layer; k>=2 = A1111 "clip skip" k
 * (output of layer L-k+1, then final_layer_norm). Returns [B, 77, hidden]. */
struct sd_tensor *sd_clip_build(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                struct sd_tensor *ids, int clip_skip);

/* x: [B, in_ch, h, w]; t: f32 [B] timesteps; context: [B, 77, context_dim].
 * Returns the model output [B, out_ch, h, w]. */
struct sd_tensor *sd_unet_build(struct sd_graph *g, const struct sd_unet_config *c, struct sd_weights *w,
                                struct sd_tensor *x, struct sd_tensor *t, struct sd_tensor *context);

/* z: [B, latent, h, w] in the decoder's input space (already divided by the
 * scaling factor). Returns [B, 3, 8h, 8w] in about [-1, 1]. */
struct sd_tensor *sd_vae_decode_build(struct sd_graph *g, const struct sd_vae_config *c, struct sd_weights *w,
                                      struct sd_tensor *z);
/* x: [B, 3, H, W] in [-1, 1]. Returns the moments [B, 2*latent, H/8, W/8]
 * (mean = first half of the channels). */
struct sd_tensor *sd_vae_encode_build(struct sd_graph *g, const struct sd_vae_config *c, struct sd_weights *w,
                                      struct sd_tensor *x);



/* model_config.c */
void sd_model_config_defaults(struct sd_model *m);  /* family defaults into m->clip/unet/vae */
int sd_model_infer_unet(struct sd_ctx *ctx, struct sd_unet_config *c, struct sd_weights *w);
int sd_model_infer_vae(struct sd_ctx *ctx, struct sd_vae_config *c, struct sd_weights *w);
int sd_model_infer_clip(struct sd_ctx *ctx, struct sd_clip_config *c, struct sd_weights *w);
/* Overrides heads/groups/eps/activation/scaling/prediction/pad from a
 * diffusers folder's config files (absent files are fine). */
int sd_model_read_configs(struct sd_ctx *ctx, struct sd_model *m, const char *dir);
#endif
