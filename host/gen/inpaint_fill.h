/* inpaint_fill.h - what the repainted region of an inpainting job starts
 * from: A1111's "Masked content" (inpainting_fill 0-3).
 *
 *   FILL (0)           the init image's masked pixels are filled from the
 *                      unmasked ones (sd_inpaint_fill_image) before encoding
 *   ORIGINAL (1)       the init image as given (sdrt's default, diffusers)
 *   LATENT_NOISE (2)   the init latent's repainted region is replaced by
 *                      standard normal noise (sd_inpaint_fill_latent)
 *   LATENT_NOTHING (3) the init latent's repainted region is zeroed
 *
 * As A1111 (processing.py, StableDiffusionProcessingImg2Img.init), every
 * mode but ORIGINAL fills the image first; the latent modes then change the
 * encoded latent. Both model kinds (4- and 9-channel UNets) get the same
 * init latent; the 9-channel conditioning (masked image) is unchanged.
 */
#ifndef SDRT_INPAINT_FILL_H
#define SDRT_INPAINT_FILL_H

#include <stdint.h>

#include "sdrt.h"

enum sd_inpaint_fill {
    SD_FILL_FILL = 0,
    SD_FILL_ORIGINAL = 1,
    SD_FILL_LATENT_NOISE = 2,
    SD_FILL_LATENT_NOTHING = 3,
};

/* "fill", "original", "latent-noise", "latent-nothing" (or "0".."3");
 * SD_ERR_INVALID naming the choices otherwise. */
int sd_inpaint_fill_parse(struct sd_ctx *ctx, const char *s, enum sd_inpaint_fill *out);
const char *sd_inpaint_fill_name(enum sd_inpaint_fill f); /* A1111's label: "fill", "original", ... */

/* A1111's masking.fill on img [3, h, w] (any value range) with mask [h, w]
 * in [0, 1] (1 = repaint): the image premultiplied by alpha = 1 - mask is
 * blurred at radii 256, 64, 16 (x2), 4 (x4), 2 (x2), 0, each blur
 * un-premultiplied and alpha-composited over the previous result; the last
 * (radius 0) puts the unmasked pixels back unchanged. The blur is PIL's
 * GaussianBlur: three extended box passes (fractional radius) per axis,
 * edges clamped. Pixels with mask 0 are unchanged; pixels with mask 1 take
 * colours from the unmasked ones only. In place. */
int sd_inpaint_fill_image(struct sd_ctx *ctx, float *img, const float *mask, int w, int h);

/* Latent modes on init_lat [B, lc, h, w] with mask_lat [B, h, w] (1 =
 * repaint): LATENT_NOTHING: init * (1 - m); LATENT_NOISE: init * (1 - m) +
 * noise * m where image b's noise is lc*h*w draws of sd_rng_randn from a
 * generator seeded with seed + b (A1111's create_random_tensors with
 * all_seeds; the pipeline's own generator is not touched). Other modes:
 * nothing. */
int sd_inpaint_fill_latent(struct sd_ctx *ctx, enum sd_inpaint_fill f, float *init_lat, const float *mask_lat, int B,
                           int lc, int h, int w, uint64_t seed);

#endif
