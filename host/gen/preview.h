/* preview.h - cheap latent -> RGB previews (sd-reference §8.1), and TAESD
 * previews (§8.2, below).
 *
 * A fixed linear map per latent pixel: rgb = sum_c latent[c] * F[c] + bias,
 * then clamp((rgb + 1) / 2, 0, 1) * 255 rounded half to even (ComfyUI
 * truncates instead; we round like the final image postprocess). We use
 * ComfyUI's factors (comfy/latent_formats.py), not A1111's "Approx cheap":
 * ComfyUI's fit is newer and has an SDXL variant; both are rough. Feed the
 * sampler's x0 prediction (sd_step_info.x0), not the noisy latents, and not
 * divided by the VAE scale factor.
 *
 * A model may carry its own map fitted for its VAE (sd_model.latent_rgb, e.g.
 * the demo model's: its VAE is not SD's); the step event passes it
 * (sd_gen_event.latent_rgb) and sd_preview_rgb8_for prefers it.
 */
#ifndef SDRT_PREVIEW_H
#define SDRT_PREVIEW_H

#include "model.h"
#include "runtime.h"
#include "sdrt.h"
#include "taesd.h"

enum sd_preview_kind {
    SD_PREVIEW_SD15 = 0, /* SD 1.x / 2.x latents (ComfyUI class SD15) */
    SD_PREVIEW_SDXL,     /* SDXL latents (ComfyUI class SDXL, with bias) */
};

/* latent: one image, [4, h, w] channel planes. rgb: h*w*3 bytes, interleaved,
 * an h x w image (latent resolution: 1/f of the decoded image, f the VAE's
 * factor, sd_vae_downscale: 8 for SD, 4 for the demo model). */
void sd_preview_rgb8(const float *latent, int w, int h, enum sd_preview_kind kind, uint8_t *rgb);
/* The same with a given map. */
void sd_preview_rgb8_map(const float *latent, int w, int h, const struct sd_latent_rgb *map, uint8_t *rgb);
/* The map of a step event: the model's own (own, non-NULL) if it has one,
 * else SDXL's (sdxl) or SD 1.x/2.x's. */
void sd_preview_rgb8_for(const float *latent, int w, int h, const struct sd_latent_rgb *own, int sdxl, uint8_t *rgb);

/* TAESD preview (sd-reference §8.2): latent = one image's [C, h, w] (UNet
 * space, the sampler's x0), decoded by t's decoder on rt into rgb: (f*w) x
 * (f*h) x 3 bytes, f = t->downscale, with the final image's postprocess
 * (sd_image_to_rgb8). Returns SD_OK or an error (rt's ctx). */
int sd_preview_taesd_rgb8(struct sd_runtime *rt, struct sd_taesd *t, const float *latent, int w, int h, uint8_t *rgb);

#endif
