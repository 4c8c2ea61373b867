/* pipeline.c - txt2img / img2img / inpaint (see pipeline.h; sd-reference §6).
 *
 * Prompts use A1111's syntax: emphasis weights `(word:1.2)`, `[word]`,
 * BREAK, and long prompts as 75-token chunks (a plain prompt of <= 75
 * tokens is exactly diffusers' 77-id input). Each chunk is encoded by CLIP
 * as its own 77-token sequence, weights are applied with A1111's
 * mean-preserving rescale, and the chunk outputs are concatenated along the
 * sequence axis. The positive and negative prompts are padded to the same
 * number of chunks with empty chunks.
 */
#include "pipeline.h"
#include "poison.h"
#include "prompt.h"
#include "sdxl_cond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

/* The double a user meant by a float strength: the shortest decimal that
 * reads back as the same float (0.7f -> 0.7, not 0.699999988), as Python
 * holds it. diffusers counts img2img steps as int(steps * strength) in
 * double: 20 * 0.7 = 14.000000000000002 -> 14, where 20 * 0.7f = 13.9999998
 * would give 13. */
static double decimal_of(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

void sd_gen_params_init(struct sd_gen_params *g) {
    memset(g, 0, sizeof *g);
    g->prompt = "";
    g->negative_prompt = "";
    g->width = g->height = 512;
    g->batch = 1;
    g->cfg_scale = 7.5f;
    g->strength = 0.75f;
    g->inpaint_fill = SD_FILL_ORIGINAL;
    sd_sampler_params_init(&g->sampler);
}

/* A1111 prompt -> chunks of 77 ids and per-token weights: the emphasis
 * syntax is parsed (prompt.c), each fragment tokenised, and the tokens cut
 * into 75-token chunks (comma backtracking, BREAK). *ids and *w are
 * malloc'd [n_chunks * 77]. */
/* The text encoder's weights (its active LoRA set) and the runtime's numerics
 * (a pool's devices round differently) key the cached outputs too. */
uint64_t sd_te_cache_key(const struct sd_pipeline *p) {
    return p->model->id ^ sd_lora_te_signature(p->lora) ^ sd_runtime_numerics(p->rt);
}

int sd_tokenize_chunks(struct sd_pipeline *p, const char *text, int pad_zero, int32_t **ids, float **w, int *n_chunks) {
    struct sd_prompt *pr = sd_prompt_parse(p->ctx, text);
    if (!pr) return p->ctx->status ? p->ctx->status : SD_ERR_INVALID;
    int cap = 256, n = 0, rc = SD_OK;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)cap);
    float *wt = malloc(sizeof(float) * (size_t)cap);
    int *tmp = NULL;
    if (!all || !wt) rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "prompt: out of memory");
    for (int f = 0; f < pr->n_frags && !rc; f++) {
        const struct sd_prompt_frag *fr = &pr->frags[f];
        int k = 0;
        if (!fr->is_break && (rc = sd_tokenizer_encode(p->tok, fr->text, NULL, 0, &k))) break;
        int need = n + (fr->is_break ? 1 : k);
        if (need > cap) {
            while (cap < need) cap *= 2;
            int32_t *na = realloc(all, sizeof(int32_t) * (size_t)cap);
            if (na) all = na;
            float *nw = realloc(wt, sizeof(float) * (size_t)cap);
            if (nw) wt = nw;
            if (!na || !nw) { rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "prompt: out of memory"); break; }
        }
        if (fr->is_break) {
            all[n] = SD_PROMPT_BREAK_ID;
            wt[n++] = 1.0f;
            continue;
        }
        free(tmp);
        if (!(tmp = malloc(sizeof(int) * (size_t)(k > 0 ? k : 1)))) { rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "prompt: out of memory"); break; }
        int got = 0;
        if ((rc = sd_tokenizer_encode(p->tok, fr->text, tmp, k, &got))) break;
        if (got != k) { rc = sd_errorf(p->ctx, SD_ERR_INVALID, "prompt: the tokenizer gave %d ids, then %d", k, got); break; }
        for (int i = 0; i < k; i++) all[n] = tmp[i], wt[n++] = (float)fr->weight;
    }
    if (!rc) {
        struct sd_chunk_params cp;
        sd_chunk_params_init(&cp, pad_zero);
        cp.chunk_len = (p->model->te ? p->model->clip.max_pos : p->model->clip2.max_pos) - 2;
        rc = sd_prompt_chunk(p->ctx, all, wt, n, &cp, ids, w, n_chunks);
    }
    free(tmp);
    free(all);
    free(wt);
    sd_prompt_free(pr);
    return rc;
}

int sd_encode_prompt(struct sd_pipeline *p, const char *prompt, int clip_skip, float **emb, int *n_chunks, int *cached) {
    int32_t *ids = NULL;
    float *w = NULL;
    int rc = sd_tokenize_chunks(p, prompt, p->tok->pad_id == 0, &ids, &w, n_chunks);
    if (rc) return rc;
    const int L = p->model->clip.max_pos, d = p->model->clip.hidden, nid = *n_chunks * L;
    *emb = malloc(sizeof(float) * (size_t)nid * d);
    if (!*emb) {
        free(ids);
        free(w);
        return sd_errorf(p->ctx, SD_ERR_NOMEM, "prompt: out of memory");
    }
    /* The cache holds the unweighted CLIP output, keyed by the ids and
     * sd_te_cache_key. */
    const uint64_t key = sd_te_cache_key(p);
    if (sd_embed_cache_get(p->cache, key, clip_skip, ids, nid, *emb, (int64_t)nid * d)) {
        *cached = 1;
    } else {
        *cached = 0;
        if ((rc = sd_run_clip(p->rt, p->model, ids, *n_chunks, clip_skip, *emb)) == SD_OK)
            sd_embed_cache_put(p->cache, key, clip_skip, ids, nid, *emb, (int64_t)nid * d);
    }
    if (!rc) {
        bool weighted = false;
        for (int i = 0; i < nid; i++) weighted |= w[i] != 1.0f;
        if (weighted) sd_prompt_apply_weights(*emb, w, *n_chunks, L, d);
    }
    free(ids);
    free(w);
    if (rc) {
        free(*emb);
        *emb = NULL;
    }
    return rc;
}

struct gen {
    struct sd_pipeline *p;
    const struct sd_gen_params *g;
    int B, h, w, cin, chunks;
    int lc, f;              /* latent channels, VAE downscale factor (image = f * latent) */
    size_t lat;             /* floats per latent image (lc*h*w) */
    float *context;         /* [2B or B, chunks*77, d]: uncond first */
    float *pooled, *time_ids; /* SDXL: [2B or B, pooled], [2B or B, add_n_ids], uncond first */
    int L;                  /* tokens per chunk (77) */
    struct sd_model *ref;   /* SDXL refiner hand-off: the refiner, its conditioning rows (as context/pooled/time_ids) */
    float *rctx, *rpooled, *rtime;
    int rchunks, refining;  /* refining: the switch happened */
    float *xin, *tin, *eps; /* UNet batch buffers */
    float *mask_lat;        /* inpaint: [B, 1, h, w] */
    float *masked_lat;      /* inpaint (2*lc+1 channels): [B, lc, h, w] */
    float *init_lat;        /* img2img/inpaint: [B, lc, h, w] */
    float *noise;           /* inpaint blending noise */
    float *x0_last;         /* decode_on_cancel: the last step's x0 prediction [B, lc, h, w] */
    int have_x0;
    struct sd_sampler *s;
    double t_step;
    int cfg;
    int vae_cached;         /* an encode came from the cache */
    int tiled;              /* the VAE phase being reported ran in tiles */
};

static int denoise(void *user, const float *x, float t, float *out) {
    struct gen *G = user;
    const int B = G->B, nb = G->cfg ? 2 * B : B;
    const size_t lat = G->lat, hw = (size_t)G->h * G->w;
    for (int r = 0; r < nb; r++) {
        int b = r % B;
        float *dst = G->xin + (size_t)r * G->cin * hw;
        memcpy(dst, x + b * lat, lat * sizeof(float));
        if (G->cin == 2 * G->lc + 1) {
            memcpy(dst + (size_t)G->lc * hw, G->mask_lat + b * hw, hw * sizeof(float));
            memcpy(dst + (size_t)(G->lc + 1) * hw, G->masked_lat + b * lat, lat * sizeof(float));
        }
        G->tin[r] = t;
    }
    if (G->ref && !G->refining && sd_sdxl_refiner_due(t, G->g->refiner_switch)) G->refining = 1;
    int rc = G->refining ? sd_run_unet_xl(G->p->rt, G->ref, G->xin, nb, G->h, G->w, G->tin, G->rctx, G->rchunks * G->L, G->rpooled,
                                          G->rtime, G->eps)
                         : sd_run_unet_xl(G->p->rt, G->p->model, G->xin, nb, G->h, G->w, G->tin, G->context, G->chunks * G->L,
                                          G->pooled, G->time_ids, G->eps);
    if (rc) return rc;
    if (!G->cfg) {
        memcpy(out, G->eps, (size_t)B * lat * sizeof(float));
        return SD_OK;
    }
    const float cfg = G->g->cfg_scale;
    const float *u = G->eps, *c = G->eps + (size_t)B * lat;
    for (size_t i = 0; i < (size_t)B * lat; i++) out[i] = u[i] + cfg * (c[i] - u[i]);
    return SD_OK;
}

static int on_step(void *user, const struct sd_step_info *info) {
    struct gen *G = user;
    /* Inpainting with an ordinary (lc-channel) model: keep the unmasked area
     * on the init image's trajectory (diffusers' latent blending). */
    if (G->mask_lat && G->cin == G->lc) {
        const size_t hw = (size_t)G->h * G->w;
        int next = info->index + 1;
        float *proper = G->xin; /* scratch of >= B*lat floats */
        if (next < sd_sampler_n_timesteps(G->s)) {
            int rc = sd_sampler_add_noise(G->s, next, G->init_lat, G->noise, proper);
            if (rc) return rc;
        } else {
            memcpy(proper, G->init_lat, (size_t)G->B * G->lat * sizeof(float));
        }
        for (int b = 0; b < G->B; b++)
            for (int c = 0; c < G->lc; c++)
                for (size_t i = 0; i < hw; i++) {
                    size_t k = (size_t)b * G->lat + c * hw + i;
                    float m = G->mask_lat[b * hw + i];
                    info->x[k] = (1 - m) * proper[k] + m * info->x[k];
                }
    }
    if (G->x0_last && info->x0) {
        memcpy(G->x0_last, info->x0, (size_t)G->B * G->lat * sizeof(float));
        if (G->mask_lat && G->cin == G->lc) /* keep the unmasked area, as the blend above */
            for (int b = 0; b < G->B; b++)
                for (int c = 0; c < G->lc; c++)
                    for (size_t i = 0; i < (size_t)G->h * G->w; i++) {
                        size_t k = (size_t)b * G->lat + c * (size_t)G->h * G->w + i;
                        float m = G->mask_lat[(size_t)b * G->h * G->w + i];
                        G->x0_last[k] = (1 - m) * G->init_lat[k] + m * G->x0_last[k];
                    }
        G->have_x0 = 1;
    }
    double now = sd_time_s();
    struct sd_gen_event ev = {.kind = SD_EV_STEP, .step = info->step, .n_steps = info->n_steps, .t = info->t,
                              .seconds = now - G->t_step, .x0 = info->x0, .batch = G->B, .channels = G->lc,
                              .h = G->h, .w = G->w, .sdxl = sd_family_is_xl(G->p->model->family),
                              .latent_rgb = G->p->model->has_latent_rgb ? &G->p->model->latent_rgb : NULL};
    G->t_step = now;
    if (G->g->on_event && G->g->on_event(G->g->user, &ev)) return 1;
    return 0;
}

static int phase(struct gen *G, const char *name, double seconds, int cached) {
    struct sd_gen_event ev = {.kind = SD_EV_PHASE, .phase = name, .seconds = seconds, .cached = cached,
                              .tiled = G->tiled};
    if (G->g->on_event && G->g->on_event(G->g->user, &ev)) return sd_errorf(G->p->ctx, SD_ERR_CANCELLED, "cancelled");
    return SD_OK;
}

/* The VAE-encode cache shares the embedding cache's store: the key is the
 * image's bytes (compared in full, as int32 words) under a tag that cannot
 * collide with a CLIP key (clip_skip slot = -(H * 65536 + W)). */
static int vae_encode_cached(struct gen *G, const float *img, float *moments) {
    struct sd_pipeline *p = G->p;
    const int H = G->g->height, W = G->g->width;
    const int tag = -(H * 65536 + W), n_words = 3 * H * W;
    const size_t n_mom = (size_t)2 * p->model->vae.latent_channels * G->h * G->w;
    int tile, rc = sd_vae_want_tiles(p->ctx, p->model, 0, H, W, G->g->vae_tiling, G->g->memory_budget, G->g->vae_tile,
                                     &G->tiled, &tile);
    if (rc) return rc;
    if (G->tiled) return sd_vae_encode_tiled(p->rt, p->model, img, 1, H, W, tile, moments); /* not cached */
    const uint64_t key = p->model->id ^ sd_runtime_numerics(p->rt);
    if (sd_embed_cache_get(p->cache, key, tag, (const int32_t *)(const void *)img, n_words, moments,
                           (int64_t)n_mom)) {
        G->vae_cached = 1;
        return SD_OK;
    }
    rc = sd_run_vae_encode(p->rt, p->model, img, 1, H, W, moments);
    if (!rc) sd_embed_cache_put(p->cache, key, tag, (const int32_t *)(const void *)img, n_words, moments, (int64_t)n_mom);
    return rc;
}

/* UNet-space latents of one image [3, H, W], repeated for the batch:
 * out[b] = scaling * (mean + std * eps) for every b with ONE eps. diffusers
 * encodes the single init image once (retrieve_latents with a generator
 * samples the posterior: one randn_tensor(mean.shape) = [1, 4, h, w] call)
 * and then repeats the latents to the batch size, so every image of a batch
 * starts from the same posterior sample. */
static int encode_image(struct gen *G, const float *img, struct sd_rng *rng, float *out) {
    struct sd_model *m = G->p->model;
    const int lc = m->vae.latent_channels;
    const size_t hw = (size_t)G->h * G->w, n = (size_t)lc * hw;
    float *mom = malloc(sizeof(float) * 2 * n), *eps = malloc(sizeof(float) * n);
    int rc = mom && eps ? SD_OK : sd_errorf(G->p->ctx, SD_ERR_NOMEM, "vae encode: out of memory");
    if (!rc) sd_rng_randn(rng, eps, (int64_t)n);
    if (!rc) rc = vae_encode_cached(G, img, mom);
    for (size_t k = 0; !rc && k < n; k++) {
        float mean = mom[k], logvar = mom[n + k];
        logvar = logvar < -30 ? -30 : logvar > 20 ? 20 : logvar;
        float std = expf(0.5f * logvar);
        out[k] = m->vae.scaling_factor * (mean + std * eps[k]);
    }
    for (int b = 1; !rc && b < G->B; b++) memcpy(out + b * n, out, n * sizeof(float));
    free(mom);
    free(eps);
    return rc;
}

int sd_gen_params_check(struct sd_ctx *ctx, const struct sd_gen_params *g) {
    if (g->width < 1 || g->height < 1)
        return sd_errorf(ctx, SD_ERR_INVALID,
                         "width and height must be positive multiples of the VAE's downscale factor (multiples of 8 for "
                         "SD 1.x/2.x; got %dx%d)", g->width, g->height);
    if (g->width > SD_GEN_MAX_SIDE || g->height > SD_GEN_MAX_SIDE)
        return sd_errorf(ctx, SD_ERR_INVALID, "%dx%d is too large (at most %d per side)", g->width, g->height,
                         SD_GEN_MAX_SIDE);
    if (g->batch < 1 || g->batch > 64) return sd_errorf(ctx, SD_ERR_INVALID, "batch must be 1..64 (got %d)", g->batch);
    if (g->sampler.steps < 1 || g->sampler.steps > 1000)
        return sd_errorf(ctx, SD_ERR_INVALID, "steps must be 1..1000 (got %d)", g->sampler.steps);
    if (!(g->strength > 0 && g->strength <= 1))
        return sd_errorf(ctx, SD_ERR_INVALID, "strength must be in (0, 1] (got %g)", (double)g->strength);
    if (!(g->cfg_scale >= 0 && g->cfg_scale <= 100))
        return sd_errorf(ctx, SD_ERR_INVALID, "cfg scale must be in [0, 100] (got %g)", (double)g->cfg_scale);
    if ((unsigned)g->inpaint_fill > SD_FILL_LATENT_NOTHING)
        return sd_errorf(ctx, SD_ERR_INVALID, "inpainting fill must be 0-3 (fill, original, latent noise, latent nothing; got %d)",
                         (int)g->inpaint_fill);
    if (g->clip_skip < 0) return sd_errorf(ctx, SD_ERR_INVALID, "clip skip must be >= 0 (got %d; 1 = last layer)", g->clip_skip);
    return SD_OK;
}

int sd_gen_check_size(struct sd_ctx *ctx, const struct sd_model *m, int width, int height) {
    const int f = sd_vae_downscale(&m->vae);
    if (width < f || height < f || width % f || height % f)
        return sd_errorf(ctx, SD_ERR_INVALID,
                         "width and height must be positive multiples of %d for %s (its VAE downscales by %d; got %dx%d)", f,
                         m->path, f, width, height);
    return SD_OK;
}

static int validate(struct sd_pipeline *p, const struct sd_gen_params *g) {
    struct sd_ctx *ctx = p->ctx;
    int rc = sd_gen_params_check(ctx, g);
    if (rc) return rc;
    if ((rc = sd_gen_check_size(ctx, p->model, g->width, g->height))) return rc;
    const bool xl = sd_family_is_xl(p->model->family);
    if ((!p->model->te && !(xl && p->model->te2)) || !p->model->va)
        return sd_errorf(ctx, SD_ERR_INVALID, "%s: generation needs a text encoder and a VAE", p->model->path);
    if (xl && !p->model->te2)
        return sd_errorf(ctx, SD_ERR_INVALID, "%s: SDXL generation needs the OpenCLIP bigG text encoder", p->model->path);
    if (p->model->family == SD_FAMILY_SDXL_REFINER && !g->init_image)
        return sd_errorf(ctx, SD_ERR_INVALID, "%s is an SDXL refiner: it refines an image (img2img, or --refiner after an SDXL "
                         "base model), it does not generate from noise; use an SDXL base model for txt2img", p->model->path);
    if (g->mask && !g->init_image) return sd_errorf(ctx, SD_ERR_INVALID, "a mask needs an init image");
    const int lc = p->model->vae.latent_channels;
    if (g->taesd_decode && (rc = sd_taesd_decode_check(ctx, g->taesd_decode, lc, sd_vae_downscale(&p->model->vae))))
        return rc;
    if (p->model->unet.in_channels == 2 * lc + 1 && !g->mask)
        return sd_errorf(ctx, SD_ERR_INVALID, "%s is an inpainting model: give an init image and a mask", p->model->path);
    if (g->refiner) {
        const struct sd_model *r = g->refiner;
        if (!xl || !sd_family_is_xl(r->family) || !r->te2)
            return sd_errorf(ctx, SD_ERR_INVALID, "a refiner needs an SDXL base model and an SDXL model as the refiner (%s is %s, "
                             "%s is %s)", p->model->path, sd_family_name(p->model->family), r->path, sd_family_name(r->family));
        if (!(g->refiner_switch > 0 && g->refiner_switch <= 1))
            return sd_errorf(ctx, SD_ERR_INVALID, "refiner switch must be in (0, 1] (got %g)", (double)g->refiner_switch);
        if (r->unet.in_channels != lc || p->model->unet.in_channels != lc || r->unet.out_channels != lc ||
            (r->va && r->vae.latent_channels != lc))
            return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "refiner %s (UNet %d input channels) does not take %s's %d-channel latents "
                             "(inpainting UNets cannot hand off)", r->path, r->unet.in_channels, p->model->path, lc);
    }
    if (!xl && g->clip_skip > p->model->clip.layers)
        return sd_errorf(ctx, SD_ERR_INVALID, "clip skip %d is too large for %s: its text encoder has %d layers (1 = last layer)",
                         g->clip_skip, p->model->path, p->model->clip.layers);
    if (p->model->unet.in_channels != lc && p->model->unet.in_channels != 2 * lc + 1)
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "UNet with %d input channels for a VAE with %d latent channels",
                         p->model->unet.in_channels, lc);
    return SD_OK;
}

/* Makes g's LoRAs (g->loras and the prompt's tags) the model's active set,
 * or restores the loaded weights when there are none. */
static int apply_loras(struct sd_pipeline *p, const struct sd_gen_params *g) {
    struct sd_prompt *pr = sd_prompt_parse(p->ctx, g->prompt ? g->prompt : "");
    if (!pr) return p->ctx->status ? p->ctx->status : SD_ERR_INVALID;
    const int n = g->n_loras + pr->n_loras;
    int rc = SD_OK;
    if (n > 0 && !p->lora) {
        rc = sd_errorf(p->ctx, SD_ERR_INVALID, "LoRAs were asked for but this pipeline has no LoRA state");
    } else if (p->lora) {
        struct sd_lora_req *r = calloc((size_t)n + 1, sizeof *r);
        char(*paths)[1024] = calloc((size_t)n + 1, sizeof *paths);
        char hashes[1024] = "";
        size_t ho = 0;
        if (!r || !paths) rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
        for (int i = 0; !rc && i < g->n_loras; i++) r[i] = g->loras[i];
        for (int i = 0; !rc && i < pr->n_loras; i++) {
            const struct sd_prompt_lora *l = &pr->loras[i];
            rc = sd_lora_resolve(p->ctx, g->lora_dir, l->name, paths[i], sizeof paths[i]);
            r[g->n_loras + i] = (struct sd_lora_req){paths[i], l->te_mult, l->unet_mult};
        }
        struct sd_lora_report rep;
        if (!rc) rc = sd_lora_apply(p->lora, r, n, &p->rt, 1, p->log, &rep);
        for (int i = 0; !rc && i < n; i++) {
            struct sd_lora_file *lf = (struct sd_lora_file *)sd_lora_state_file(p->lora, r[i].path);
            if (lf && ho < sizeof hashes)
                ho += (size_t)snprintf(hashes + ho, sizeof hashes - ho, "%s%s: %s", i ? ", " : "",
                                       i >= g->n_loras ? pr->loras[i - g->n_loras].name : lf->stem, sd_lora_file_hash(lf));
        }
        if (!rc && n > 0 && g->on_event) {
            struct sd_gen_event ev = {.kind = SD_EV_LORA, .phase = "lora", .seconds = rep.seconds, .lora = &rep,
                                      .lora_hashes = hashes};
            if (g->on_event(g->user, &ev)) rc = sd_errorf(p->ctx, SD_ERR_CANCELLED, "cancelled");
        }
        free(r);
        free(paths);
    }
    sd_prompt_free(pr);
    return rc;
}

/* One side's conditioning: SD's CLIP context, or SDXL's two-encoder context
 * and pooled vector (pooled, [pooled width]); an empty SDXL negative prompt
 * is all zeros, as A1111 and diffusers make it. */
static int encode_side(struct sd_pipeline *p, const struct sd_gen_params *g, const char *text, int negative, float **emb,
                       int *n, int *cached, float *pooled) {
    if (!sd_family_is_xl(p->model->family)) return sd_encode_prompt(p, text, g->clip_skip, emb, n, cached);
    if (negative && !*text) {
        *n = 1, *cached = 1;
        memset(pooled, 0, sizeof(float) * (size_t)sd_sdxl_pooled_width(p->model));
        if (!(*emb = calloc((size_t)p->model->clip2.max_pos * sd_sdxl_context_width(p->model), sizeof(float))))
            return sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
        return SD_OK;
    }
    return sd_sdxl_encode_prompt(p, text, emb, n, pooled, cached);
}

int sd_generate(struct sd_pipeline *p, const struct sd_gen_params *g, float *images) {
    int rc = validate(p, g);
    if (!rc && !p->lora_applied) rc = apply_loras(p, g);
    if (rc) return rc;
    struct sd_model *m = p->model;
    const int f = sd_vae_downscale(&m->vae);
    struct gen G = {.p = p, .g = g, .B = g->batch, .h = g->height / f, .w = g->width / f, .cin = m->unet.in_channels,
                    .lc = m->vae.latent_channels, .f = f};
    G.cfg = g->cfg_scale > 1.0f;
    G.lat = (size_t)G.lc * G.h * G.w;
    const size_t hw = (size_t)G.h * G.w;
    const bool xl = sd_family_is_xl(m->family);
    const int d = xl ? sd_sdxl_context_width(m) : m->clip.hidden, L = xl ? m->clip2.max_pos : m->clip.max_pos;
    const int P = xl ? sd_sdxl_pooled_width(m) : 0, NI = xl ? m->unet.add_n_ids : 0;
    G.L = L;
    float *cond = NULL, *unc = NULL, *x = NULL;
    float *pooled_cu = xl ? calloc((size_t)3 * (P > 0 ? P : 1), sizeof(float)) : NULL; /* cond, uncond, scratch */
    struct sd_rng rng;
    sd_rng_seed(&rng, g->seed);
    if (xl && !pooled_cu) return sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");

    /* 1. Prompts. */
    double t0 = sd_time_s();
    int nc = 0, nu = 0, cached_c = 0, cached_u = 1;
    if ((rc = encode_side(p, g, g->prompt, 0, &cond, &nc, &cached_c, pooled_cu))) goto done;
    if (G.cfg && (rc = encode_side(p, g, g->negative_prompt ? g->negative_prompt : "", 1, &unc, &nu, &cached_u,
                                   xl ? pooled_cu + P : NULL)))
        goto done;
    G.chunks = nc > nu ? nc : nu;
    float *empty = NULL;
    if (G.cfg && nc != nu) { /* pad the shorter with empty chunks */
        int ne = 0, ce = 0;
        if ((rc = encode_side(p, g, "", 0, &empty, &ne, &ce, xl ? pooled_cu + 2 * P : NULL))) goto done;
    }
    const int nb = G.cfg ? 2 * G.B : G.B;
    const size_t per = (size_t)G.chunks * L * d;
    G.context = malloc(sizeof(float) * per * nb);
    G.xin = malloc(sizeof(float) * (size_t)nb * G.cin * hw);
    G.tin = malloc(sizeof(float) * (size_t)nb);
    G.eps = malloc(sizeof(float) * (size_t)nb * G.lat);
    x = malloc(sizeof(float) * (size_t)G.B * G.lat);
    if (!G.context || !G.xin || !G.tin || !G.eps || !x) { free(empty); rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory"); goto done; }
    for (int r = 0; r < nb; r++) {
        int is_cond = !G.cfg || r >= G.B;
        const float *src = is_cond ? cond : unc;
        int have = is_cond ? nc : nu;
        for (int c = 0; c < G.chunks; c++)
            memcpy(G.context + r * per + (size_t)c * L * d, c < have ? src + (size_t)c * L * d : empty,
                   sizeof(float) * (size_t)L * d);
    }
    free(empty);
    if (xl) { /* pooled text and time ids per UNet row, uncond first */
        G.pooled = malloc(sizeof(float) * (size_t)nb * (P > 0 ? P : 1));
        G.time_ids = malloc(sizeof(float) * (size_t)nb * NI);
        if (!G.pooled || !G.time_ids) { rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory"); goto done; }
        for (int r = 0; r < nb; r++) {
            const int is_cond = !G.cfg || r >= G.B;
            memcpy(G.pooled + (size_t)r * P, pooled_cu + (is_cond ? 0 : P), sizeof(float) * (size_t)P);
            sd_sdxl_time_ids(m, g, !is_cond, G.time_ids + (size_t)r * NI);
        }
    }
    if (g->refiner) { /* the refiner's own conditioning of the same prompts */
        struct sd_pipeline rp = *p;
        rp.model = G.ref = g->refiner;
        rp.lora = NULL;
        if ((rc = sd_sdxl_cond_rows(&rp, g, G.cfg, G.B, &G.rctx, &G.rchunks, &G.rpooled, &G.rtime))) goto done;
    }
    if ((rc = phase(&G, "clip", sd_time_s() - t0, cached_c && cached_u))) goto done;
    if (sd_runtime_low_memory(p->rt)) { /* every text encoder's copies go (made again for the next prompt) */
        sd_runtime_drop_weights(p->rt, m->te);
        sd_runtime_drop_weights(p->rt, m->te2);
        if (G.ref) sd_runtime_drop_weights(p->rt, G.ref->te2);
    }

    /* 2. Sampler and starting latents. */
    struct sd_sampler_params sp = g->sampler;
    sp.prediction = m->prediction;
    /* The folder's scheduler_config.json, unless the caller chose. */
    if (sp.spacing == SD_SPACING_DEFAULT) sp.spacing = sd_spacing_parse(m->timestep_spacing);
    if (m->steps_offset >= 0) sp.steps_offset = m->steps_offset;
    if (!(G.s = sd_sampler_new(p->ctx, &sp, NULL, (int64_t)G.B * G.lat))) { rc = p->ctx->status; goto done; }
    int start = 0;
    if (!g->init_image) {
        sd_sampler_init_latents(G.s, &rng, x);
    } else {
        /* diffusers' draw order: the image posterior sample (img2img; inpaint
         * with a 4-channel model or strength < 1), the starting noise, then
         * the masked image's posterior sample (inpaint, both model kinds). */
        const size_t HW = (size_t)g->height * g->width;
        G.init_lat = malloc(sizeof(float) * (size_t)G.B * G.lat);
        G.noise = malloc(sizeof(float) * (size_t)G.B * G.lat);
        if (!G.init_lat || !G.noise) { rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory"); goto done; }
        t0 = sd_time_s();
        /* img2img always starts from add_noise(image, noise, timesteps[0]),
         * also at strength 1; only the inpaint pipeline starts from pure
         * noise * init_noise_sigma at strength 1 (is_strength_max). */
        const bool pure_noise = g->mask && g->strength >= 1.0f;
        start = sd_sampler_start_index(G.s, decimal_of(g->strength));
        if (start < 0) { rc = p->ctx->status; goto done; }
        if (g->mask) {
            /* Binarised mask, nearest-resized to the latent grid (pixel (f*y, f*x)). */
            G.mask_lat = malloc(sizeof(float) * (size_t)G.B * hw);
            if (!G.mask_lat) rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
            for (int y = 0; !rc && y < G.h; y++)
                for (int xx = 0; xx < G.w; xx++) {
                    float v = g->mask[(size_t)(y * f) * g->width + (size_t)xx * f] >= 0.5f ? 1.0f : 0.0f;
                    for (int b = 0; b < G.B; b++) G.mask_lat[b * hw + (size_t)y * G.w + xx] = v;
                }
        }
        /* A1111's masked content: every mode but "original" fills the image's
         * masked pixels before encoding; the latent modes then replace the
         * repainted region of the init latent (inpaint_fill.h). */
        const bool filling = g->mask && g->inpaint_fill != SD_FILL_ORIGINAL;
        float *filled = NULL;
        if (!rc && filling && (!pure_noise || G.cin == 4)) {
            if (!(filled = malloc(sizeof(float) * 3 * HW))) rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
            if (!rc) memcpy(filled, g->init_image, sizeof(float) * 3 * HW);
            if (!rc) rc = sd_inpaint_fill_image(p->ctx, filled, g->mask, g->width, g->height);
        }
        if (!rc && (!pure_noise || G.cin == 4)) rc = encode_image(&G, filled ? filled : g->init_image, &rng, G.init_lat);
        free(filled);
        if (!rc && filling && (!pure_noise || G.cin == 4))
            rc = sd_inpaint_fill_latent(p->ctx, g->inpaint_fill, G.init_lat, G.mask_lat, G.B, G.lc, G.h, G.w, g->seed);
        if (!rc) {
            sd_rng_randn(&rng, G.noise, (int64_t)G.B * G.lat);
            if (pure_noise) {
                float sigma = sd_sampler_init_noise_sigma(G.s);
                for (size_t i = 0; i < (size_t)G.B * G.lat; i++) x[i] = G.noise[i] * sigma;
            } else {
                rc = sd_sampler_add_noise(G.s, start, G.init_lat, G.noise, x);
            }
        }
        if (!rc && g->mask) {
            if (G.cin == 2 * G.lc + 1) {
                /* masked image = image where mask < 0.5, else 0 (mid grey) */
                float *masked = malloc(sizeof(float) * 3 * HW);
                G.masked_lat = malloc(sizeof(float) * (size_t)G.B * G.lat);
                if (!masked || !G.masked_lat) rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
                for (int c = 0; !rc && c < 3; c++)
                    for (size_t i = 0; i < HW; i++) masked[c * HW + i] = g->mask[i] >= 0.5f ? 0.0f : g->init_image[c * HW + i];
                if (!rc) rc = encode_image(&G, masked, &rng, G.masked_lat);
                free(masked);
            } else if (!rc) {
                /* diffusers also encodes (samples) the masked image for lc-channel
                 * models and then ignores it: draw the same numbers (one image's
                 * worth) to keep the generator in step for ancestral samplers. */
                sd_rng_randn(&rng, G.eps, (int64_t)G.lat);
            }
        }
        if (rc) goto done;
        if ((rc = phase(&G, "vae_encode", sd_time_s() - t0, G.vae_cached))) goto done;
        G.tiled = 0;
    }

    /* 3. Denoising loop. */
    G.t_step = sd_time_s();
    if (g->decode_on_cancel && !(G.x0_last = malloc(sizeof(float) * (size_t)G.B * G.lat))) {
        rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = sd_sampler_run(G.s, x, start, denoise, &G, &rng, on_step, &G);
    int interrupted = 0;
    if (rc == SD_ERR_CANCELLED && G.have_x0) { /* decode_on_cancel */
        memcpy(x, G.x0_last, sizeof(float) * (size_t)G.B * G.lat);
        sd_ctx_clear(p->ctx);
        interrupted = 1, rc = SD_OK;
    }
    if (rc) goto done;

    /* 4. Decode. Low memory: the UNet's copies and arena go first (made
     * again by the next image's first step), the VAE's after. */
    if (sd_runtime_low_memory(p->rt)) {
        sd_runtime_drop_weights(p->rt, m->un);
        if (G.ref) sd_runtime_drop_weights(p->rt, G.ref->un);
    }
    t0 = sd_time_s();
    if (g->latents_out) memcpy(g->latents_out, x, sizeof(float) * (size_t)G.B * G.lat);
    const size_t n_img = (size_t)3 * g->height * g->width;
#ifdef SDRT_POISON
    sd_poison_f32(images, (size_t)G.B * n_img);
#endif
    if (g->taesd_decode) { /* UNet-space latents: TAESD applies its own scaling */
        for (int b = 0; b < G.B && !rc; b++)
            rc = sd_run_taesd_decode(p->rt, g->taesd_decode, x + b * G.lat, 1, G.h, G.w, images + (size_t)b * n_img);
    } else {
        /* After a refiner hand-off the refiner's VAE decodes (A1111's current model, diffusers' refiner pipeline). */
        struct sd_model *dm = G.refining && G.ref->va ? G.ref : m;
        const float inv = 1.0f / dm->vae.scaling_factor;
        for (size_t i = 0; i < (size_t)G.B * G.lat; i++) x[i] *= inv;
        int tile;
        rc = sd_vae_want_tiles(p->ctx, dm, 1, G.h, G.w, g->vae_tiling, g->memory_budget, g->vae_tile, &G.tiled, &tile);
        for (int b = 0; b < G.B && !rc; b++)
            rc = G.tiled ? sd_vae_decode_tiled(p->rt, dm, x + b * G.lat, 1, G.h, G.w, tile, images + (size_t)b * n_img)
                         : sd_run_vae_decode(p->rt, dm, x + b * G.lat, 1, G.h, G.w, images + (size_t)b * n_img);
    }
#ifdef SDRT_POISON
    size_t unwritten = rc ? 0 : sd_poison_count(images, (size_t)G.B * n_img);
    if (unwritten)
        rc = sd_errorf(p->ctx, SD_ERR_BACKEND, "vae decode left %zu of %zu image values unwritten", unwritten,
                       (size_t)G.B * n_img);
#endif
    if (!rc && interrupted) { /* the phase event says the images were written */
        phase(&G, "vae_decode", sd_time_s() - t0, 0);
        rc = sd_errorf(p->ctx, SD_ERR_CANCELLED, "cancelled; the images are the last finished step's prediction");
    } else if (!rc) {
        rc = phase(&G, "vae_decode", sd_time_s() - t0, 0);
    }
    if (sd_runtime_low_memory(p->rt)) {
        sd_runtime_drop_weights(p->rt, m->va);
        if (G.ref) sd_runtime_drop_weights(p->rt, G.ref->va);
    }
done:
    sd_sampler_free(G.s);
    free(cond); free(unc); free(x);
    free(G.context); free(G.xin); free(G.tin); free(G.eps); free(G.pooled); free(G.time_ids); free(pooled_cu);
    free(G.rctx); free(G.rpooled); free(G.rtime);
    free(G.mask_lat); free(G.masked_lat); free(G.init_lat); free(G.noise); free(G.x0_last);
    return rc;
}
