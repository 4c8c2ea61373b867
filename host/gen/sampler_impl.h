/* sampler_impl.h - private: the sampler struct and the per-kind ops table
 * (one file per kind: sampler_euler.c, sampler_euler_a.c, sampler_ddim.c,
 * sampler_dpmpp_2m.c, sampler_lcm.c, sampler_pndm.c, sampler_lms.c; the
 * loop, names and shared helpers live in sampler.c).
 *
 * Element-wise updates are written one float operation at a time in the
 * order torch evaluates the diffusers expressions (scalars are 0-dim float32
 * tensors there, so scalar coefficients are float too), which keeps results
 * within an ulp of diffusers per step.
 */
#ifndef SDRT_SAMPLER_IMPL_H
#define SDRT_SAMPLER_IMPL_H

#include "sampler.h"

#define SD_SAMPLER_HIST 4

/* How add_noise maps a list position to the noised latent. */
enum sd_noise_kind {
    SD_NOISE_VP = 0, /* sqrt(acp[t]) x0 + sqrt(1 - acp[t]) noise (DDIM, PNDM, LCM) */
    SD_NOISE_VE,     /* x0 + sigma noise (Euler, Euler a, LMS) */
    SD_NOISE_DPM,    /* alpha(sigma) x0 + sigma alpha(sigma) noise (DPM-Solver) */
};

struct sd_sampler;

struct sd_sampler_ops {
    const char *name;
    enum sd_noise_kind noise;
    bool sigma_space;  /* input scaled by 1/sqrt(sigma^2+1) (Euler family) */
    /* Fills s->timesteps (s->n_ts entries), s->sigmas if used, s->init_sigma. */
    int (*setup)(struct sd_sampler *s);
    /* One update at list position i: m = raw model output at x. Updates x in
     * place and writes s->x0. */
    int (*step)(struct sd_sampler *s, int i, const float *m, float *x, struct sd_rng *rng);
};

struct sd_sampler {
    struct sd_ctx *ctx;
    struct sd_sampler_params p;
    const struct sd_sampler_ops *ops;
    struct sd_noise_schedule sched;
    int64_t n;           /* latent elements */
    int n_ts;            /* timestep list length */
    double *timesteps;   /* n_ts (+1 spare) */
    float *sigmas;       /* n_ts + 1 for sigma-based samplers, else NULL */
    float init_sigma;    /* init_noise_sigma */
    float *x_in, *m, *x0, *noise, *saved;
    float *hist[SD_SAMPLER_HIST];
    int n_hist;          /* history entries in use (newest last) */
    int counter;         /* PNDM counter / DPM lower_order_nums */
};

extern const struct sd_sampler_ops sd_sampler_euler_ops, sd_sampler_euler_a_ops, sd_sampler_ddim_ops,
    sd_sampler_dpmpp_2m_ops, sd_sampler_lcm_ops, sd_sampler_pndm_ops, sd_sampler_lms_ops;

/* Shared helpers (sampler.c). */

/* Allocates s->timesteps for n_ts entries and s->sigmas for n_ts + 1. */
int sd_sampler_alloc_lists(struct sd_sampler *s, int n_ts, bool with_sigmas);

/* Euler/LMS set_timesteps: spaced float timesteps, interpolated sigmas
 * (optionally Karras with their t), final sigma 0, init_noise_sigma. */
int sd_sampler_setup_sigma_list(struct sd_sampler *s, bool allow_karras);

/* Pushes a history buffer (newest last), keeping at most keep entries;
 * returns the slot to fill. */
float *sd_sampler_hist_push(struct sd_sampler *s, int keep);

/* Spacing after resolving SD_SPACING_DEFAULT. */
enum sd_spacing sd_sampler_spacing(const struct sd_sampler *s);

/* VE x0 prediction: eps: x - sigma m; v: m (-sigma/sqrt(sigma^2+1)) + x/(sigma^2+1). */
void sd_sampler_x0_ve(const struct sd_sampler *s, float sigma, const float *x, const float *m, float *x0);

/* VP x0 prediction at timestep t (acp index): eps: (x - sqrt(1-a) m)/sqrt(a);
 * v: sqrt(a) x - sqrt(1-a) m. */
void sd_sampler_x0_vp(const struct sd_sampler *s, int t, const float *x, const float *m, float *x0);

#endif
