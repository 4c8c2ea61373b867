/* noise_schedule.h - the SD training noise schedule and the timestep/sigma
 * lists the samplers are built from (sd-reference §5.1, §5.2, §5.5).
 *
 * Contract: every table is computed the way diffusers computes it, in the same
 * precision (float32 tables built by torch: betas from a float32 linspace
 * squared, alphas_cumprod accumulated in double and stored as float, sigmas
 * in float; np.interp and Karras ramps in double), so lists match diffusers
 * to the last bit or within an ulp. Pure functions, no allocation.
 */
#ifndef SDRT_NOISE_SCHEDULE_H
#define SDRT_NOISE_SCHEDULE_H

#include "sdrt.h"

#define SD_TRAIN_STEPS 1000

enum sd_beta_schedule {
    SD_BETA_SCALED_LINEAR = 0, /* betas = linspace(sqrt(b0), sqrt(b1), N)^2 (SD 1.x/2.x) */
    SD_BETA_LINEAR,            /* betas = linspace(b0, b1, N) */
};

struct sd_noise_schedule {
    int n_train;                          /* num_train_timesteps, 1000 */
    float betas[SD_TRAIN_STEPS];
    float alphas_cumprod[SD_TRAIN_STEPS]; /* acp[t] = prod_{i<=t} (1 - betas[i]) */
    float sigmas[SD_TRAIN_STEPS];         /* sqrt((1 - acp) / acp), float32 */
    float log_sigmas[SD_TRAIN_STEPS];     /* ln(sigmas), for sigma -> t */
};

/* Timestep spacing (diffusers `timestep_spacing`). SD_SPACING_DEFAULT means
 * "the scheduler class default" (see sd_sampler_default_spacing). */
enum sd_spacing { SD_SPACING_DEFAULT = 0, SD_SPACING_LEADING, SD_SPACING_LINSPACE, SD_SPACING_TRAILING };

const char *sd_spacing_name(enum sd_spacing s);
/* "leading", "linspace" or "trailing" -> the spacing; anything else (NULL,
 * "") -> SD_SPACING_DEFAULT. */
enum sd_spacing sd_spacing_parse(const char *name);

/* SD 1.x/2.x schedule: scaled_linear 0.00085 .. 0.012, 1000 steps. */
void sd_noise_schedule_init_sd(struct sd_noise_schedule *s);

/* Any beta range/kind with SD_TRAIN_STEPS steps. Returns SD_OK or
 * SD_ERR_INVALID (non-positive or > 1 betas). */
int sd_noise_schedule_init(struct sd_ctx *ctx, struct sd_noise_schedule *s, enum sd_beta_schedule kind,
                           double beta_start, double beta_end);

/* np.interp(t, arange(N), sigmas): linear interpolation of the sigma table at
 * a (fractional) timestep, clamped to the ends. */
double sd_sigma_at(const struct sd_noise_schedule *s, double t);

/* diffusers _sigma_to_t: the fractional timestep whose interpolated log-sigma
 * equals ln(sigma) (clamped to [0, N-1]). */
double sd_sigma_to_t(const struct sd_noise_schedule *s, double sigma);

/* Karras et al. ramp (rho = 7) from sigma_max down to sigma_min, n values. */
void sd_karras_sigmas(double sigma_min, double sigma_max, int n, double *out);

/* Which diffusers set_timesteps rule to apply. */
enum sd_timestep_rule {
    SD_TS_FLOAT = 0, /* Euler, Euler a, LMS: linspace kept as float32 */
    SD_TS_INT,       /* DDIM, PNDM: linspace rounded (half to even) */
    SD_TS_DPM,       /* DPMSolverMultistep: the n+1 rules of §5.2 */
};

/* Writes n descending timesteps for `spacing` (not DEFAULT) into out, as
 * diffusers' set_timesteps does. Returns SD_OK or SD_ERR_INVALID (n out of
 * 1..N). Deviation: for the ~6% of n where numpy's arange(1000, 0, -1000/n)
 * has n+1 elements (n = 61, 103, ...), diffusers' `trailing` list gains a
 * bogus timestep -1; we keep the first n. */
int sd_schedule_timesteps(struct sd_ctx *ctx, const struct sd_noise_schedule *s, enum sd_timestep_rule rule,
                          enum sd_spacing spacing, int n, int steps_offset, double *out);

#endif
