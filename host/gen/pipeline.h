/* pipeline.h - txt2img, img2img and inpainting on one model and runtime
 * (sd-reference §6).
 *
 * Classifier-free guidance runs as one batch-2B UNet pass ([uncond, cond]
 * like diffusers); cfg_scale <= 1 skips the unconditional branch. Random
 * draws follow diffusers' order on a CPU torch generator seeded with `seed`
 * (posterior sample of the init image, then the starting noise, then the
 * masked-image posterior for inpainting), so the same seed gives the same
 * image as diffusers on CPU, on every run, thread count and backend.
 */
#ifndef SDRT_PIPELINE_H
#define SDRT_PIPELINE_H

#include "embed_cache.h"
#include "inpaint_fill.h"
#include "lora.h"
#include "model.h"
#include "model_run.h"
#include "sampler.h"
#include "tokenizer.h"
#include "taesd.h"
#include "vae_tiling.h"

enum sd_gen_event_kind {
    SD_EV_PHASE,   /* a phase finished: phase ("clip", "vae_encode", "vae_decode"), seconds, cached */
    SD_EV_STEP,    /* a sampling step finished: step, n_steps, t, seconds; x0 = current prediction */
    SD_EV_LORA,    /* the LoRA set was applied (before CLIP): lora (counts, seconds), lora_hashes */
};

struct sd_gen_event {
    enum sd_gen_event_kind kind;
    const char *phase;
    double seconds;
    int cached;             /* PHASE clip: every embedding came from the cache */
    int tiled;              /* PHASE vae_encode / vae_decode: ran in tiles (vae_tiling.h) */
    int step, n_steps;
    float t;
    const float *x0;        /* STEP: predicted clean latents [batch, channels, h, w] (UNet space) */
    int batch, channels, h, w; /* latent size (SD: 4 channels, image / 8) */
    int sdxl;               /* STEP: the latents are SDXL's (its latent -> RGB preview coefficients) */
    const struct sd_latent_rgb *latent_rgb; /* STEP: the model's own preview map (sd_model.latent_rgb), or NULL */
    const struct sd_lora_report *lora;  /* LORA: matched / unmatched modules, tensors merged */
    const char *lora_hashes;            /* LORA: A1111 "name: hash, name: hash" of the active set */
};

/* Returns non-zero to cancel the generation. */
typedef int (*sd_gen_event_fn)(void *user, const struct sd_gen_event *ev);

/* SDXL micro-conditioning of one side (prompt or negative): the UNet's
 * add_embedding "time ids". 0 = unset: A1111's defaults (original size =
 * target size = the image size, crop 0, 0; aesthetic score 6 for the prompt,
 * 2.5 for the negative - the refiner's). Unset negative fields take the
 * prompt's values (diffusers negative_original_size etc.). */
struct sd_xl_cond {
    int orig_w, orig_h, crop_top, crop_left, target_w, target_h;
    float aesthetic;
};

struct sd_gen_params {
    const char *prompt, *negative_prompt;
    int width, height, batch;
    float cfg_scale;
    uint64_t seed;
    struct sd_sampler_params sampler;   /* kind, steps, karras, eta, spacing (DEFAULT: the model's
                                         * scheduler_config.json timestep_spacing if it has one, else
                                         * the sampler's diffusers class default); steps_offset is
                                         * replaced by the model's scheduler_config.json value if it
                                         * has one; prediction from the model */
    int clip_skip;                      /* A1111 numbering: 0/1 = last layer (SDXL: ignored, as A1111:
                                         * both encoders give their penultimate layer) */
    struct sd_xl_cond xl, xl_neg;       /* SDXL size / crop / aesthetic conditioning (see above) */
    /* SDXL base + refiner hand-off (A1111 semantics): once a model call's
     * timestep t has (999 - t) / 1000 >= refiner_switch, that call and every
     * later one run `refiner` (same sampler state and random stream), with
     * its own conditioning of the same prompts (bigG, aesthetic scores);
     * its VAE then decodes. NULL = no refiner. The refiner must be SDXL with
     * the base's latent space, loaded, and released by the caller. */
    struct sd_model *refiner;
    float refiner_switch;               /* (0, 1]; A1111's default 0.8 */
    /* img2img / inpaint: init_image [3, height, width] in [-1, 1] */
    const float *init_image;
    float strength;                     /* (0, 1]: steps run = floor(steps * strength). img2img
                                         * starts from the image noised to the first step's level
                                         * (also at 1, as diffusers); inpaint at 1 from pure noise */
    const float *mask;                  /* [height, width] in [0, 1]; >= 0.5 repaints */
    enum sd_inpaint_fill inpaint_fill;  /* with a mask: what the repainted region starts from
                                         * (inpaint_fill.h; default SD_FILL_ORIGINAL) */
    /* VAE tiling (vae_tiling.h): vae_tiling 1 = always; 0 = only where the untiled VAE's
     * activation arena for one image would exceed memory_budget bytes (0 = no budget).
     * vae_tile: tile side in pixels, a multiple of 32 for SD (0 = the VAE's sample_size,
     * halved while one tile's arena would still exceed memory_budget). */
    int vae_tiling, vae_tile;
    uint64_t memory_budget;
    /* Optional: decode the final latents with this TAESD (taesd.h) instead of the VAE
     * (fast, approximate; tiling does not apply). Its latent channels and factor must
     * match the model's VAE. */
    struct sd_taesd *taesd_decode;
    sd_gen_event_fn on_event;
    void *user;
    /* When a step event cancels: 0 = stop at once (images unwritten); 1 = as
     * A1111's interrupt, decode the last finished step's x0 prediction
     * (inpainting with an ordinary model: blended with the init latent
     * outside the mask) into images, send the vae_decode phase event (the
     * sign that images were written) and return SD_ERR_CANCELLED. A cancel
     * before the first step finished writes nothing and sends no such event. */
    int decode_on_cancel;
    /* Optional: receives the final latents [batch, C, height/f, width/f] in
     * UNet space (before 1/scaling_factor; diffusers output_type="latent");
     * C = model->vae.latent_channels, f = sd_vae_downscale(&model->vae). */
    float *latents_out;
    /* LoRAs: these, plus the prompt's <lora:NAME:W> / <lora:NAME:TE:UNET> tags
     * (NAME looked up in lora_dir by file stem or ss_output_name). The set is
     * merged into the model before CLIP and stays until the next generation
     * asks for another (none: the loaded weights, restored exactly). Needs
     * sd_pipeline.lora. */
    const struct sd_lora_req *loras;
    int n_loras;
    const char *lora_dir;
};

/* Largest width or height generated (and so of an init image or mask). */
#define SD_GEN_MAX_SIDE 4096

void sd_gen_params_init(struct sd_gen_params *g); /* 512x512, batch 1, cfg 7.5, 20 steps Euler a, strength 0.75 */
/* Checks what needs no model: sizes positive and <= 4096, batch 1..64,
 * steps 1..1000, strength in (0, 1], cfg in [0, 100], clip skip >= 0
 * (sd_generate also checks it against the model's layer count). */
int sd_gen_params_check(struct sd_ctx *ctx, const struct sd_gen_params *g);
/* Sizes must be multiples of the model's VAE downscale factor
 * (sd_vae_downscale: 8 for SD 1.x/2.x); SD_ERR_INVALID otherwise. */
int sd_gen_check_size(struct sd_ctx *ctx, const struct sd_model *m, int width, int height);

struct sd_pipeline {
    struct sd_ctx *ctx;
    struct sd_model *model;
    struct sd_runtime *rt;
    struct sd_tokenizer *tok;
    struct sd_embed_cache *cache;
    struct sd_lora_state *lora;         /* the model's LoRA state (sd_lora_state_new), or NULL: no LoRAs */
    const struct sd_log *log;           /* LoRA match reports; NULL = none */
    /* The caller has already made this generation's LoRA set active on
     * `lora` (sd_lora_apply with every runtime over the model, under its own
     * lock: the server's workers) and keeps it for the whole call: then
     * sd_generate only reads `lora` (the embedding cache key) and neither
     * resolves the prompt's tags nor applies g->loras. */
    int lora_applied;
};

/* Validates g against the model (sizes multiples of the VAE factor, steps,
 * strength, batch) and generates; images is [batch, 3, height, width] in [-1, 1].
 * Returns SD_OK or SD_ERR_* with ctx set. */
int sd_generate(struct sd_pipeline *p, const struct sd_gen_params *g, float *images);

/* Tokenises and encodes one prompt into [n_chunks * 77, hidden] (75-token
 * chunks, BOS/EOS/pad per chunk); *emb is malloc'd. Uses the cache. */
int sd_encode_prompt(struct sd_pipeline *p, const char *prompt, int clip_skip, float **emb, int *n_chunks, int *cached);

#endif
