/* taesd.h - TAESD, the tiny autoencoder (madebyollin/taesd; diffusers
 * AutoencoderTiny), sd-reference §8.2: a fast approximate decoder (and
 * encoder) in SD's latent space, for previews and fast final images.
 *
 * Layouts read (the weights are the same, only the names differ):
 * - a diffusers AutoencoderTiny folder: config.json +
 *   diffusion_pytorch_model.safetensors with encoder.layers.N... and
 *   decoder.layers.N... (either part may be absent);
 * - the original files taesd_decoder.safetensors (keys `1.weight`,
 *   `3.conv.0.weight`, ...: nn.Sequential indices, index 0 is the clamp) and
 *   taesd_encoder.safetensors (`0.weight`, `1.conv.0.weight`, ...), given as
 *   either file (the other is picked up from the same folder when present)
 *   or as a folder holding them.
 * The layer sequence (convs, blocks, ReLU, upsamplers, strides) is read
 * from which keys exist, so other depths and widths load too (tiny
 * AutoencoderTiny configs in the tests); the activation must be ReLU.
 *
 * Conventions (exactly diffusers AutoencoderTiny and the raw files):
 * decode takes UNet-space latents (SD latents as the sampler produces them:
 * TAESD's scaling_factor is 1.0, so no division by 0.18215; a folder's
 * config.json scaling_factor other than 1 is honoured as diffusers
 * pipelines do, latents / scaling_factor), clamps them as tanh(x/3)*3, and
 * returns an image in [-1, 1] (the raw decoder's [0, 1] output, mapped
 * 2y - 1 as AutoencoderTiny.decode does). Encode takes an image in [-1, 1],
 * feeds (x + 1) / 2 to the encoder, and returns UNet-space latents
 * (encoder output * scaling_factor). AutoencoderTiny's latent_magnitude (3)
 * and latent_shift (0.5) belong only to its scale_latents/unscale_latents
 * (8-bit latent storage) and are not part of decode or encode.
 */
#ifndef SDRT_TAESD_H
#define SDRT_TAESD_H

#include "runtime.h"

struct sd_weights;

#define SD_TAESD_MAX_LAYERS 64

enum sd_taesd_layer { TAESD_NONE = 0, TAESD_CONV, TAESD_BLOCK, TAESD_RELU, TAESD_UPSAMPLE };

struct sd_taesd {
    char path[1024];
    int diffusers;                      /* 1: AutoencoderTiny names; 0: the original taesd files */
    struct sd_weights *w;               /* encoder.layers.N... and/or decoder.layers.N... */
    int has_encoder, has_decoder;
    int n_enc, n_dec;                   /* layers in each sequence */
    unsigned char enc_layers[SD_TAESD_MAX_LAYERS], dec_layers[SD_TAESD_MAX_LAYERS];
    int latent_channels, width;         /* latent channels (4), block width (64) */
    int downscale;                      /* image pixels per latent pixel (8) */
    float scaling_factor;               /* config.json scaling_factor (1.0) */
    uint64_t id;                        /* graph-cache owner, never equal to a model's id */
};

/* Opens a TAESD in either layout (see above); *out is owned by the caller. */
int sd_taesd_load(struct sd_ctx *ctx, const char *path, struct sd_taesd **out);
void sd_taesd_free(struct sd_taesd *t);
/* One line: layout, which parts, widths, layer counts, parameters. */
void sd_taesd_describe(const struct sd_taesd *t, char *buf, size_t size);

/* latents [B, C, h, w] (UNet space) -> img [B, 3, f*h, f*w] in about [-1, 1]. */
int sd_run_taesd_decode(struct sd_runtime *rt, struct sd_taesd *t, const float *latents, int B, int h, int w,
                        float *img);
/* img [B, 3, H, W] in [-1, 1], H and W multiples of f -> latents [B, C, H/f, W/f] (UNet space). */
int sd_run_taesd_encode(struct sd_runtime *rt, struct sd_taesd *t, const float *img, int B, int H, int W,
                        float *latents);
/* SD_OK when t has a decoder for latents of lc channels at factor f (a
 * model's VAE), else SD_ERR_INVALID naming the mismatch. */
int sd_taesd_decode_check(struct sd_ctx *ctx, const struct sd_taesd *t, int lc, int f);
/* Drops rt's graphs and backend weight copies of t (before sd_taesd_free). */
void sd_runtime_release_taesd(struct sd_runtime *rt, const struct sd_taesd *t);

#endif
