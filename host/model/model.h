/* model.h - SD 1.x/2.x and SDXL model description: configs, weights, graph builders.
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

enum sd_family {
    SD_FAMILY_UNKNOWN = 0, SD_FAMILY_SD1, SD_FAMILY_SD1_INPAINT, SD_FAMILY_SD2, SD_FAMILY_SD2_INPAINT,
    SD_FAMILY_SDXL, SD_FAMILY_SDXL_REFINER, SD_FAMILY_SDXL_INPAINT,
};

/* SDXL base, refiner or inpainting: two text encoders (the refiner: bigG
 * only), pooled text + size conditioning through the UNet's add_embedding. */
static inline bool sd_family_is_xl(enum sd_family f) {
    return f == SD_FAMILY_SDXL || f == SD_FAMILY_SDXL_REFINER || f == SD_FAMILY_SDXL_INPAINT;
}

#define SD_MAX_LEVELS 6

struct sd_clip_config {
    int hidden, layers, heads, intermediate, max_pos, vocab;
    int quick_gelu;     /* SD1: quick_gelu; SD2: exact gelu */
    float eps;
    int pad_id;         /* 49407 (SD1) or 0 (SD2) */
    int projection;     /* SDXL bigG: width of text_projection (pooled output); 0 = none */
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
    /* SDXL add_embedding (diffusers addition_embed_type "text_time"): input
     * width add_in = pooled text width + add_n_ids * add_time_dim (base: 1280
     * + 6 * 256 = 2816; refiner: 1280 + 5 * 256 = 2560). 0 = none. */
    int add_in, add_time_dim, add_n_ids;
};

struct sd_vae_config {
    int in_channels, latent_channels, n_levels, layers_per_block;
    int block_out[SD_MAX_LEVELS];
    int norm_groups;
    float scaling_factor;
    int sample_size;    /* config.json sample_size (first of a list): the tiled VAE's tile in pixels
                         * (diffusers tile_sample_min_size); 0 = not given (tiling then uses 512) */
    int has_encoder, has_decoder;
};

/* Image pixels per latent pixel along each side: the VAE halves the size at
 * every level but the last, so 2^(n_levels-1) (SD 1.x/2.x: 4 levels, 8). A
 * model without a VAE gets SD's 8. */
static inline int sd_vae_downscale(const struct sd_vae_config *c) {
    return c->n_levels > 0 ? 1 << (c->n_levels - 1) : 8;
}

/* The cheap preview's latent -> RGB map (gen/preview.h) fitted for one VAE:
 * rgb = sum_c latent[c] * factors[c] + bias, rgb in [-1, 1], latent in UNet
 * space (the sampler's x0). */
struct sd_latent_rgb {
    float factors[4][3];            /* rows: latent channel; columns: R, G, B */
    float bias[3];
};

struct sd_model {
    enum sd_family family;
    char family_why[160];           /* the evidence the family was decided from */
    enum sd_prediction prediction;
    char prediction_why[192];       /* where `prediction` came from ("scheduler_config.json", a detection, ...) */
    char timestep_spacing[16];      /* scheduler_config.json timestep_spacing; "" = not given */
    int steps_offset;               /* scheduler_config.json steps_offset; -1 = not given */
    char path[1024];
    int single_file;
    enum sd_dtype file_dtype;       /* dtype of most weights on disk */
    struct sd_clip_config clip;
    struct sd_unet_config unet;
    struct sd_vae_config vae;
    struct sd_weights *te, *un, *va; /* text encoder, UNet, VAE weights (diffusers names) */
    struct sd_clip_config clip2;    /* SDXL: the OpenCLIP bigG encoder (text_encoder_2) */
    struct sd_weights *te2;         /* SDXL: its weights (HF CLIPTextModelWithProjection names); the
                                     * refiner has te2 only (te NULL) */
    void *files[8];                 /* open safetensors files backing the weights */
    int n_files;
    double load_seconds;
    /* The model's own preview map: vae/config.json latent_rgb_factors (+
     * latent_rgb_bias) of a diffusers folder, or the single file's metadata
     * sdrt_latent_rgb ({"factors": 4x3, "bias": 3}); else the family's. */
    int has_latent_rgb;
    struct sd_latent_rgb latent_rgb;
    uint64_t id;                    /* unique per loaded model (cache keys; pointers get reused) */
};

const char *sd_family_name(enum sd_family f);

/* Graph builders. Each returns the output node or NULL with g->status set. */

/* ids: i32 [B, 77]. clip_skip: 0/1 = last layer; k>=2 = A1111 "clip skip" k
 * (output of layer L-k+1, then final_layer_norm). Returns [B, 77, hidden]. */
struct sd_tensor *sd_clip_build(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                struct sd_tensor *ids, int clip_skip);

/* SDXL text encoders (sdxl_clip.c): ids i32 [B, 77]. The output of the
 * penultimate layer (hidden_states[-2], no final LayerNorm) [B, 77*hidden]
 * flattened per row; with eos (i32 [B], flat index b*77 + position of the
 * EOS token) and c->projection > 0, followed in each row by the pooled
 * output: final_layer_norm(last layer)[eos] x text_projection
 * -> [B, 77*hidden + projection]. */
struct sd_tensor *sd_clip_xl_build(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                   struct sd_tensor *ids, struct sd_tensor *eos);
/* The rows the pooled output is read from: for each of the B sequences of L
 * ids, b*L + the first position of its largest id (the EOS token, 49407: as
 * transformers' CLIPTextModelWithProjection and OpenCLIP take argmax). */
void sd_clip_eos_rows(const int32_t *ids, int B, int L, int32_t *eos);

/* x: [B, in_ch, h, w]; t: f32 [B] timesteps; context: [B, 77, context_dim].
 * Returns the model output [B, out_ch, h, w]. */
struct sd_tensor *sd_unet_build(struct sd_graph *g, const struct sd_unet_config *c, struct sd_weights *w,
                                struct sd_tensor *x, struct sd_tensor *t, struct sd_tensor *context);
/* The same with SDXL's add_embedding inputs (c->add_in > 0): text_embeds
 * [B, pooled], time_ids f32 [B * add_n_ids] (base: original h, w, crop top,
 * left, target h, w per image). */
struct sd_tensor *sd_unet_build_xl(struct sd_graph *g, const struct sd_unet_config *c, struct sd_weights *w,
                                   struct sd_tensor *x, struct sd_tensor *t, struct sd_tensor *context,
                                   struct sd_tensor *text_embeds, struct sd_tensor *time_ids);

/* z: [B, latent, h, w] in the decoder's input space (already divided by the
 * scaling factor). Returns [B, 3, f*h, f*w] in about [-1, 1], f =
 * sd_vae_downscale(c). */
struct sd_tensor *sd_vae_decode_build(struct sd_graph *g, const struct sd_vae_config *c, struct sd_weights *w,
                                      struct sd_tensor *z);
/* x: [B, 3, H, W] in [-1, 1], H and W multiples of f = sd_vae_downscale(c).
 * Returns the moments [B, 2*latent, H/f, W/f] (mean = first half of the
 * channels). */
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
/* The family a diffusers folder's text_encoder/config.json describes: SD1 for
 * OpenAI CLIP ViT-L (quick_gelu), SD2 for OpenCLIP ViT-H (gelu); absent file
 * or key: SD_FAMILY_UNKNOWN. *why names the evidence. */
enum sd_family sd_model_family_from_text_config(struct sd_ctx *ctx, const char *dir, char *why, size_t why_size,
                                                int *rc);
/* model_predict.c: v-prediction detection for single files (see there). */
void sd_model_detect_prediction(struct sd_model *m);
#endif
