/* vae_tiling.h - VAE decode and encode in overlapping tiles, blended exactly
 * as diffusers' AutoencoderKL.enable_tiling() (0.31: tiled_decode,
 * _tiled_encode), and the activation-memory estimate that decides when to
 * tile.
 *
 * Tiles are tile_px pixels (tile_px / f latents) on a side, start every
 * 0.75 of a tile, and each tile is blended into the one above and to its
 * left over a quarter of a tile of the output (linear ramps, diffusers'
 * blend_v / blend_h, applied in place in the same order), then cropped to
 * 0.75 of a tile. Encode blends the moments (mean and logvar) as diffusers
 * does. Edge tiles are narrower: at most four distinct tile shapes, so at
 * most four graphs in the runtime's cache. The result differs from the
 * untiled VAE (each tile sees only its own context); it equals diffusers'
 * tiled result. As in diffusers, an image no larger than one tile is not
 * tiled (the untiled VAE runs).
 */
#ifndef SDRT_VAE_TILING_H
#define SDRT_VAE_TILING_H

#include "model.h"
#include "runtime.h"

/* The default tile: the VAE config's sample_size (diffusers
 * tile_sample_min_size), or 512 where the model gave none. */
int sd_vae_tile_default(const struct sd_model *m);

/* z [B, latent, h, w] (decoder space, already / scaling) -> img [B, 3, f*h, f*w].
 * tile_px: a multiple of 4*f (0 = sd_vae_tile_default). */
int sd_vae_decode_tiled(struct sd_runtime *rt, struct sd_model *m, const float *z, int B, int h, int w, int tile_px,
                        float *img);
/* img [B, 3, H, W] in [-1, 1] -> moments [B, 2*latent, H/f, W/f]. */
int sd_vae_encode_tiled(struct sd_runtime *rt, struct sd_model *m, const float *img, int B, int H, int W, int tile_px,
                        float *moments);

/* *tiled = 1 when force is set, or when the untiled graph's activation
 * arena for one image (sd_vae_arena_estimate; decode: h x w latents,
 * encode: h x w pixels) would exceed budget bytes (0 = no budget).
 * *tile = tile_px, or where tile_px is 0 the default tile, halved (while
 * it stays a multiple of 4*f) as long as one full tile's own arena would
 * still exceed the budget. An image no larger than *tile is not tiled. */
int sd_vae_want_tiles(struct sd_ctx *ctx, struct sd_model *m, int decode, int h, int w, int force, uint64_t budget,
                      int tile_px, int *tiled, int *tile);

#endif
