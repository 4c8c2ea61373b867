/* sdxl_cond.c - SDXL conditioning (see sdxl_cond.h; sd-reference §9.2).
 *
 * A1111 (modules/sd_hijack_clip.py, sd_models_xl.py) and diffusers
 * (pipeline_stable_diffusion_xl.py) agree for prompts of <= 75 tokens: both
 * encoders see the same ids (CLIP ViT-L padded with EOS, bigG with "!" = 0),
 * the context is cat(hidden_states[-2] of each) per token, the pooled vector
 * is bigG's text_embeds, and an empty negative prompt is all zeros (A1111
 * force_zero_negative_prompt, diffusers force_zeros_for_empty_prompt; the
 * pipeline does that). A1111's clip skip does not apply to SDXL (its
 * sdxl_clip_l_skip option is off by default): both encoders always give the
 * penultimate layer.
 */
#include "sdxl_cond.h"

#include "prompt.h"

#include <stdlib.h>
#include <string.h>

/* Tags that keep the two encoders' cache entries apart (the clip_skip slot). */
enum { TAG_TE1 = 1001, TAG_TE2 = 1002 };

int sd_sdxl_context_width(const struct sd_model *m) {
    return (m->te ? m->clip.hidden : 0) + (m->te2 ? m->clip2.hidden : 0);
}

int sd_sdxl_pooled_width(const struct sd_model *m) { return m->te2 ? m->clip2.projection : 0; }

/* One encoder's output rows [n_chunks, row] for the ids, from the cache or run. */
static int run_encoder(struct sd_pipeline *p, int which, const int32_t *ids, int nch, int row, float *out, int *cached) {
    const int L = p->model->clip2.max_pos, nid = nch * L;
    const uint64_t key = sd_te_cache_key(p);
    const int tag = which == 1 ? TAG_TE1 : TAG_TE2;
    if (sd_embed_cache_get(p->cache, key, tag, ids, nid, out, (int64_t)nch * row)) {
        *cached = 1;
        return SD_OK;
    }
    *cached = 0;
    int32_t *eos = malloc(sizeof(int32_t) * (size_t)nch);
    if (!eos) return sd_errorf(p->ctx, SD_ERR_NOMEM, "prompt: out of memory");
    sd_clip_eos_rows(ids, nch, L, eos);
    int rc = sd_run_clip_xl(p->rt, p->model, which, ids, which == 2 ? eos : NULL, nch, out);
    free(eos);
    if (!rc) sd_embed_cache_put(p->cache, key, tag, ids, nid, out, (int64_t)nch * row);
    return rc;
}

int sd_sdxl_encode_prompt(struct sd_pipeline *p, const char *prompt, float **ctx, int *n_chunks, float *pooled,
                          int *cached) {
    const struct sd_model *m = p->model;
    const int L = m->clip2.max_pos, W = sd_sdxl_context_width(m), P = sd_sdxl_pooled_width(m);
    int rc = SD_OK, off = 0;
    *ctx = NULL;
    *cached = 1;
    for (int which = 1; which <= 2 && !rc; which++) {
        const struct sd_clip_config *c = which == 1 ? &m->clip : &m->clip2;
        if (!(which == 1 ? m->te : m->te2)) continue;
        if (c->max_pos != L) return sd_errorf(p->ctx, SD_ERR_FORMAT, "SDXL text encoders with %d and %d positions", c->max_pos, L);
        int32_t *ids = NULL;
        float *w = NULL, *out = NULL, *z = NULL;
        int nch = 0, hit = 0;
        if ((rc = sd_tokenize_chunks(p, prompt, c->pad_id == 0, &ids, &w, &nch))) break;
        if (*ctx && nch != *n_chunks)
            rc = sd_errorf(p->ctx, SD_ERR_INVALID, "prompt: %d chunks for one encoder, %d for the other", *n_chunks, nch);
        const int d = c->hidden, pw = which == 2 ? P : 0, row = L * d + pw;
        if (!rc && !*ctx) {
            *n_chunks = nch;
            if (!(*ctx = malloc(sizeof(float) * (size_t)nch * L * W))) rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "prompt: out of memory");
        }
        if (!rc && (!(out = malloc(sizeof(float) * (size_t)nch * row)) || !(z = malloc(sizeof(float) * (size_t)nch * L * d))))
            rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "prompt: out of memory");
        if (!rc) rc = run_encoder(p, which, ids, nch, row, out, &hit);
        if (!rc) {
            *cached &= hit;
            for (int k = 0; k < nch; k++) memcpy(z + (size_t)k * L * d, out + (size_t)k * row, sizeof(float) * (size_t)L * d);
            bool weighted = false;
            for (int i = 0; i < nch * L; i++) weighted |= w[i] != 1.0f;
            if (weighted) sd_prompt_apply_weights(z, w, nch, L, d);
            for (int t = 0; t < nch * L; t++) memcpy(*ctx + (size_t)t * W + off, z + (size_t)t * d, sizeof(float) * (size_t)d);
            if (pw) memcpy(pooled, out + (size_t)L * d, sizeof(float) * (size_t)pw); /* the first chunk's */
            off += d;
        }
        free(ids), free(w), free(out), free(z);
    }
    if (rc) {
        free(*ctx);
        *ctx = NULL;
    }
    return rc;
}

void sd_sdxl_time_ids(const struct sd_model *m, const struct sd_gen_params *g, int negative, float *ids) {
    struct sd_xl_cond c = g->xl;
    if (negative) {
        const struct sd_xl_cond *n = &g->xl_neg;
        if (n->orig_w || n->orig_h) c.orig_w = n->orig_w, c.orig_h = n->orig_h;
        if (n->crop_top || n->crop_left) c.crop_top = n->crop_top, c.crop_left = n->crop_left;
        if (n->target_w || n->target_h) c.target_w = n->target_w, c.target_h = n->target_h;
        c.aesthetic = n->aesthetic > 0 ? n->aesthetic : 2.5f;
    } else if (!(c.aesthetic > 0)) {
        c.aesthetic = 6.0f;
    }
    const float oh = (float)(c.orig_h > 0 ? c.orig_h : g->height), ow = (float)(c.orig_w > 0 ? c.orig_w : g->width);
    const float th = (float)(c.target_h > 0 ? c.target_h : g->height), tw = (float)(c.target_w > 0 ? c.target_w : g->width);
    ids[0] = oh, ids[1] = ow, ids[2] = (float)c.crop_top, ids[3] = (float)c.crop_left;
    if (m->unet.add_n_ids == 5) {
        ids[4] = c.aesthetic;
    } else {
        ids[4] = th, ids[5] = tw;
    }
}

int sd_sdxl_cond_rows(struct sd_pipeline *p, const struct sd_gen_params *g, int cfg, int B, float **ctx, int *chunks,
                      float **pooled, float **time_ids) {
    const struct sd_model *m = p->model;
    const int W = sd_sdxl_context_width(m), P = sd_sdxl_pooled_width(m), NI = m->unet.add_n_ids, L = m->clip2.max_pos;
    const char *neg = g->negative_prompt ? g->negative_prompt : "";
    float *side[3] = {NULL, NULL, NULL}; /* cond, uncond, "" */
    float *pool = calloc((size_t)3 * (P > 0 ? P : 1), sizeof(float));
    int n[3] = {0, 0, 0}, cached = 0, rc = pool ? SD_OK : sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
    *ctx = *pooled = *time_ids = NULL;
    if (!rc) rc = sd_sdxl_encode_prompt(p, g->prompt, &side[0], &n[0], pool, &cached);
    if (!rc && cfg) {
        if (*neg) {
            rc = sd_sdxl_encode_prompt(p, neg, &side[1], &n[1], pool + P, &cached);
        } else if (!(side[1] = calloc((size_t)L * W, sizeof(float)))) {
            rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
        } else {
            n[1] = 1;
        }
    }
    if (!rc && cfg && n[0] != n[1]) rc = sd_sdxl_encode_prompt(p, "", &side[2], &n[2], pool + 2 * P, &cached);
    const int nch = n[0] > n[1] ? n[0] : n[1], rows = cfg ? 2 * B : B;
    const size_t per = (size_t)nch * L * W;
    if (!rc && (!(*ctx = malloc(sizeof(float) * per * rows)) || !(*pooled = malloc(sizeof(float) * (size_t)rows * (P > 0 ? P : 1))) ||
                !(*time_ids = malloc(sizeof(float) * (size_t)rows * NI))))
        rc = sd_errorf(p->ctx, SD_ERR_NOMEM, "out of memory");
    for (int r = 0; !rc && r < rows; r++) {
        const int c = !cfg || r >= B ? 0 : 1;
        for (int k = 0; k < nch; k++)
            memcpy(*ctx + r * per + (size_t)k * L * W, k < n[c] ? side[c] + (size_t)k * L * W : side[2], sizeof(float) * (size_t)L * W);
        memcpy(*pooled + (size_t)r * P, pool + (size_t)c * P, sizeof(float) * (size_t)P);
        sd_sdxl_time_ids(m, g, c == 1, *time_ids + (size_t)r * NI);
    }
    *chunks = nch;
    for (int i = 0; i < 3; i++) free(side[i]);
    free(pool);
    if (rc) {
        free(*ctx), free(*pooled), free(*time_ids);
        *ctx = *pooled = *time_ids = NULL;
    }
    return rc;
}
