/* demo_judge.h - the demo model's judge (tests/models/demo, trained by
 * tests/reference/train_demo.py on 32x32 scenes "a {color} {shape} on a
 * {background} background"): a classifier independent of the model
 * (dominant colors and shape moments, see demo_judge.c), and the runs it
 * judges (one loaded model + pipeline, the 36-prompt grid). Shared by
 * tests/test_demo_meaning.c, tests/test_demo_lora.c and bench/bench_demo.c.
 */
#ifndef SDRT_DEMO_JUDGE_H
#define SDRT_DEMO_JUDGE_H

#include "embed_cache.h"
#include "model_load.h"
#include "pipeline.h"
#include "tokenizer.h"

#define DEMO_S 32       /* the model's image size */
#define DEMO_GRID 36    /* 4 colors x 3 shapes x 3 backgrounds */
/* Shape colors: the base model's four, then the demo LoRA's (tests/models/
 * demo-lora/orange.safetensors, tests/reference/train_demo_lora.py). */
#define DEMO_COLORS 4
#define DEMO_ORANGE 4
extern const char *const demo_color[5];
extern const float demo_color_rgb[5][3];
extern const char *const demo_shape[3];
extern const char *const demo_bg[3];
extern const float demo_bg_rgb[3][3];

struct demo_verdict {
    int color, shape, bg;   /* indices; -1: no shape seen */
    double skew, aniso;     /* the shape moments */
};

/* img: [3, S, S] in [-1, 1] (sd_generate's output), judged as 8-bit RGB;
 * the color is the nearest of the first n_colors of demo_color_rgb. */
struct demo_verdict demo_judge(const float *img, int n_colors);
int demo_agrees(struct demo_verdict v, int c, int s, int b);
const char *demo_name(const char *const *names, int i); /* "none" for -1 */
/* A scene as train_demo.py draws it (4x4 supersampled coverage) into
 * [3, S, S] in [-1, 1]: color c, shape s of half size r centred at (cx, cy)
 * on background b. */
void demo_draw(float *img, int c, int s, int b, double cx, double cy, double r);
void demo_caption(char *buf, size_t n, int c, int s, int b);

/* One loaded model with its tokenizer, runtime and embedding cache. */
struct demo_env {
    struct sd_ctx ctx;
    struct sd_model *m;
    struct sd_tokenizer *tok;
    struct sd_runtime *rt;
    struct sd_embed_cache *cache;
    struct sd_lora_state *lora; /* demo_env_lora: the prompt's <lora:...> tags apply */
    struct sd_pipeline p;
};
/* Opens path on the runtime options o (NULL: CPU, f32, 1 thread); vocab is
 * the CLIP vocabulary. Returns 0, or non-zero with e->ctx.msg set (e freed). */
int demo_env_open(struct demo_env *e, const char *path, const struct sd_runtime_opts *o, const char *vocab);
void demo_env_free(struct demo_env *e);
/* Gives e a LoRA state (e->p.lora), so that runs with lora_dir apply the
 * prompt's tags; 0 or non-zero with e->ctx.msg set. */
int demo_env_lora(struct demo_env *e);

/* One generation at the model's size: img [3, S, S] in [-1, 1]; lat
 * [4, S/4, S/4] or NULL. sampler NULL = "Euler a". */
struct demo_run {
    const char *prompt, *negative, *sampler;
    int steps;
    float cfg, strength;
    uint64_t seed;
    const float *init;
    const char *lora_dir;   /* where <lora:NAME:W> tags look (needs demo_env_lora) */
    sd_gen_event_fn on_event;
    void *user;
};
int demo_gen(struct demo_env *e, const struct demo_run *r, float *img, float *lat);

/* The grid (every color x shape x background of the base model, seeds 1000 +
 * i, Euler a 20 steps) at one CFG scale: returns the number of prompts judged
 * right in all three attributes (-1 on error: e->ctx.msg), per attribute in
 * attr[3]; keeps the images in imgs[36][3 * S * S] unless NULL; with verbose,
 * prints the prompts judged wrong. */
int demo_grid(struct demo_env *e, float cfg, float (*imgs)[3 * DEMO_S * DEMO_S], int attr[3], int verbose);

#endif
