/* sampler.h - diffusion samplers as loops over a denoise callback.
 *
 * A sampler owns the timestep/sigma lists of one diffusers scheduler
 * configuration and runs its update rule; the model is a callback:
 *
 *   struct sd_sampler_params p;
 *   sd_sampler_params_init(&p);                     // Euler a, 20 steps, SD config
 *   sd_sampler_parse_name(ctx, "DPM++ 2M Karras", &p);
 *   struct sd_sampler *s = sd_sampler_new(ctx, &p, NULL, n);   // n = B*4*h*w
 *   sd_sampler_init_latents(s, &rng, x);            // txt2img: randn * init_noise_sigma
 *   sd_sampler_run(s, x, 0, unet_cfg, &my_model, &rng, on_step, &me);
 *   sd_sampler_free(s);
 *
 * The callback receives the model input (already scale_model_input-ed, in
 * the VP space the UNet expects) and the timestep to pass to the UNet, and
 * writes the raw model output (epsilon or v, with CFG already applied) of the
 * same size. Prediction type is handled inside the sampler.
 *
 * Reproduces diffusers 0.31 (EulerDiscrete, EulerAncestralDiscrete, DDIM,
 * DPMSolverMultistep dpmsolver++/sde-dpmsolver++ order 2 midpoint, LCM,
 * PNDM with skip_prk_steps, LMSDiscrete) in float32 with the same operation
 * order, including the RNG draw order (sd-reference §5, §5.11).
 */
#ifndef SDRT_SAMPLER_H
#define SDRT_SAMPLER_H

#include "noise_schedule.h"
#include "rng.h"
#include "sdrt.h"

enum sd_sampler_kind {
    SD_SAMPLER_EULER = 0,     /* EulerDiscreteScheduler ("Euler") */
    SD_SAMPLER_EULER_A,       /* EulerAncestralDiscreteScheduler ("Euler a") */
    SD_SAMPLER_DDIM,          /* DDIMScheduler ("DDIM"), eta */
    SD_SAMPLER_DPMPP_2M,      /* DPMSolverMultistep dpmsolver++ order 2 ("DPM++ 2M") */
    SD_SAMPLER_DPMPP_2M_SDE,  /* DPMSolverMultistep sde-dpmsolver++ ("DPM++ 2M SDE") */
    SD_SAMPLER_LCM,           /* LCMScheduler ("LCM") */
    SD_SAMPLER_PNDM,          /* PNDMScheduler, skip_prk_steps ("PLMS", "PNDM") */
    SD_SAMPLER_LMS,           /* LMSDiscreteScheduler order 4 ("LMS") */
    SD_SAMPLER_COUNT
};


struct sd_sampler_params {
    enum sd_sampler_kind kind;
    int steps;                    /* num_inference_steps (PNDM makes steps+1 model calls) */
    enum sd_spacing spacing;      /* DEFAULT = the diffusers class default for `kind` */
    int steps_offset;             /* SD configs: 1 */
    bool karras;                  /* Karras sigmas (Euler, LMS, DPM++ 2M [SDE] only) */
    enum sd_prediction prediction;
    float eta;                    /* DDIM only; 0 = deterministic */
    bool clip_sample;             /* DDIM/LCM x0 clamp to [-1, 1]; SD configs: false */
    int lcm_original_steps;       /* LCM original_inference_steps; 50 */
};

/* Defaults: Euler a, 20 steps, DEFAULT spacing, steps_offset 1, epsilon,
 * eta 0, no clipping, LCM original steps 50. */
void sd_sampler_params_init(struct sd_sampler_params *p);

/* Sets p->kind and p->karras from a sampler name: A1111 names ("Euler",
 * "Euler a", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE [Karras]",
 * "LCM", "PLMS", "PNDM", "LMS", "LMS Karras", "Euler Karras"), k-diffusion
 * aliases ("k_euler", "k_euler_a", "k_euler_ancestral", "k_dpmpp_2m",
 * "k_dpmpp_2m_ka", "k_dpmpp_2m_sde", "k_lms"), ComfyUI names ("euler",
 * "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "lms", "ddim", "lcm") and
 * diffusers class names ("EulerDiscreteScheduler", ...). Case, spaces, '_'
 * and '-' are ignored. Returns SD_OK, or SD_ERR_INVALID with a message that
 * lists the valid names. Other fields of p are left alone. */
int sd_sampler_parse_name(struct sd_ctx *ctx, const char *name, struct sd_sampler_params *p);

/* A1111 display name of a kind ("Euler a"); karras appends " Karras". The
 * returned string is static. */
const char *sd_sampler_display_name(enum sd_sampler_kind kind, bool karras);

/* diffusers' class default timestep_spacing for kind (§5.2). */
enum sd_spacing sd_sampler_default_spacing(enum sd_sampler_kind kind);

/* The model. x_in: model input (n floats); t: the UNet timestep; out: raw
 * model output (n floats). Returns SD_OK or an SD_ERR_* status (with the
 * message recorded on the sampler's ctx); the sampler stops on failure. */
typedef int (*sd_denoise_fn)(void *user, const float *x_in, float t, float *model_out);

/* Per-step progress. x is the latent after the step and may be modified by
 * the callback (inpaint latent blending); x0 is the sampler's current
 * prediction of the clean latent (diffusers pred_original_sample / denoised),
 * suitable for previews (§8.1). */
struct sd_step_info {
    int step;        /* 0-based step within this run */
    int n_steps;     /* model calls in this run */
    int index;       /* position in the full timestep list */
    float t;         /* timestep given to the model */
    int64_t n;       /* latent elements */
    float *x;
    const float *x0;
};

/* Returns 0 to continue; non-zero stops the run with SD_ERR_CANCELLED. */
typedef int (*sd_step_fn)(void *user, const struct sd_step_info *info);

struct sd_sampler;

/* Creates a sampler for latents of n floats. sched may be NULL (the SD
 * schedule); it is copied. Returns NULL with ctx set on invalid parameters
 * (steps out of range, Karras or eta on a sampler without them, LCM steps >
 * original steps) or allocation failure. The sampler keeps ctx for errors. */
struct sd_sampler *sd_sampler_new(struct sd_ctx *ctx, const struct sd_sampler_params *p,
                                  const struct sd_noise_schedule *sched, int64_t n);
void sd_sampler_free(struct sd_sampler *s);

/* Length of the timestep list (= model calls of a full run; PNDM: steps+1). */
int sd_sampler_n_timesteps(const struct sd_sampler *s);
/* Timestep at list position i (what the model receives). */
float sd_sampler_timestep(const struct sd_sampler *s, int i);
/* Noise level at list position i as a VE sigma, sqrt((1-acp)/acp); for
 * sigma-based samplers the sigma list itself (i = n_timesteps gives the final
 * 0 or the final target level). */
float sd_sampler_sigma(const struct sd_sampler *s, int i);
/* diffusers init_noise_sigma (§5.5; Euler family leading spacing uses
 * sqrt(sigma_max^2+1), linspace/trailing sigma_max; others 1). */
float sd_sampler_init_noise_sigma(const struct sd_sampler *s);

/* img2img: first list position for `strength` in (0, 1] (diffusers
 * get_timesteps: t_start = steps - min(floor(steps*strength), steps)).
 * Returns the index, or -1 with ctx set when strength leaves no step. */
int sd_sampler_start_index(struct sd_sampler *s, double strength);

/* out = x0 noised to the level of list position `index` (scheduler
 * add_noise, §5.10; no init_noise_sigma factor). out may alias x0 or noise.
 * index may be n_timesteps for the final level (inpaint blending). */
int sd_sampler_add_noise(struct sd_sampler *s, int index, const float *x0, const float *noise, float *out);

/* txt2img start: x = randn(n) * init_noise_sigma (one torch.randn call). */
void sd_sampler_init_latents(struct sd_sampler *s, struct sd_rng *rng, float *x);

/* Runs list positions start_index .. n_timesteps-1 on x (in place). rng
 * supplies the per-step noise of ancestral samplers (may be NULL for the
 * deterministic ones). on_step may be NULL. Returns SD_OK, the callback's
 * status (message wrapped with the step), SD_ERR_BACKEND if the model output
 * contains NaN/Inf, SD_ERR_INVALID (bad start_index, missing rng), or
 * SD_ERR_CANCELLED. The sampler can be run again (history is reset). */
int sd_sampler_run(struct sd_sampler *s, float *x, int start_index, sd_denoise_fn denoise, void *user,
                   struct sd_rng *rng, sd_step_fn on_step, void *step_user);

#endif
