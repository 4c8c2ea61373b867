/* model_run.c - CLIP, UNet and VAE graphs through the runtime's graph cache. */
#include "model_run.h"

#include <stdlib.h>

#include "weights.h"

enum { RUN_CLIP = 1, RUN_UNET, RUN_VAE_DEC, RUN_VAE_ENC, RUN_CLIP_XL1, RUN_CLIP_XL2 };

struct run_args {
    struct sd_model *m;
    int B, a, b, c; /* per component: clip (clip_skip), unet (h, w, ctx_len), vae (h, w) */
};

static struct sd_tensor *build_clip(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct run_args *r = user;
    in[0] = sd_graph_input(g, "ids", SD_I32, 2, (int64_t[]){r->B, r->m->clip.max_pos});
    *n_in = 1;
    return sd_clip_build(g, &r->m->clip, r->m->te, in[0], r->a);
}

static struct sd_tensor *build_clip_xl(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct run_args *r = user;
    const bool second = r->a == 2;
    const struct sd_clip_config *c = second ? &r->m->clip2 : &r->m->clip;
    in[0] = sd_graph_input(g, "ids", SD_I32, 2, (int64_t[]){r->B, c->max_pos});
    *n_in = 1;
    if (second) in[(*n_in)++] = sd_graph_input(g, "eos", SD_I32, 1, (int64_t[]){r->B});
    return sd_clip_xl_build(g, c, second ? r->m->te2 : r->m->te, in[0], second ? in[1] : NULL);
}

static struct sd_tensor *build_unet(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct run_args *r = user;
    const struct sd_unet_config *c = &r->m->unet;
    in[0] = sd_graph_input(g, "latent", SD_F32, 4, (int64_t[]){r->B, c->in_channels, r->a, r->b});
    in[1] = sd_graph_input(g, "timestep", SD_F32, 1, (int64_t[]){r->B});
    in[2] = sd_graph_input(g, "context", SD_F32, 3, (int64_t[]){r->B, r->c, c->context_dim});
    *n_in = 3;
    if (c->add_in <= 0) return sd_unet_build(g, c, r->m->un, in[0], in[1], in[2]);
    in[3] = sd_graph_input(g, "text_embeds", SD_F32, 2, (int64_t[]){r->B, c->add_in - c->add_n_ids * c->add_time_dim});
    in[4] = sd_graph_input(g, "time_ids", SD_F32, 1, (int64_t[]){(int64_t)r->B * c->add_n_ids});
    *n_in = 5;
    return sd_unet_build_xl(g, c, r->m->un, in[0], in[1], in[2], in[3], in[4]);
}

/* The caller's buffer is sized from the documented shape (model_run.h): a
 * graph whose output differs would leave part of it unwritten or overrun
 * it, so it is refused. */
static struct sd_tensor *expect_shape(struct sd_graph *g, struct sd_tensor *o, const char *what, int64_t n, int64_t c,
                                      int64_t h, int64_t w) {
    if (!o) return NULL;
    if (o->ne[0] != n || o->ne[1] != c || o->ne[2] != h || o->ne[3] != w) {
        g->status = sd_errorf(g->ctx, SD_ERR_FORMAT, "%s output is [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, %lld]",
                              what, (long long)o->ne[0], (long long)o->ne[1], (long long)o->ne[2], (long long)o->ne[3],
                              (long long)n, (long long)c, (long long)h, (long long)w);
        return NULL;
    }
    return o;
}

static struct sd_tensor *build_vae_dec(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct run_args *r = user;
    const int f = sd_vae_downscale(&r->m->vae);
    in[0] = sd_graph_input(g, "z", SD_F32, 4, (int64_t[]){r->B, r->m->vae.latent_channels, r->a, r->b});
    *n_in = 1;
    return expect_shape(g, sd_vae_decode_build(g, &r->m->vae, r->m->va, in[0]), "vae decoder", r->B, 3,
                        (int64_t)f * r->a, (int64_t)f * r->b);
}

static struct sd_tensor *build_vae_enc(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct run_args *r = user;
    const int f = sd_vae_downscale(&r->m->vae);
    in[0] = sd_graph_input(g, "image", SD_F32, 4, (int64_t[]){r->B, 3, r->a, r->b});
    *n_in = 1;
    return expect_shape(g, sd_vae_encode_build(g, &r->m->vae, r->m->va, in[0]), "vae encoder", r->B,
                        2 * r->m->vae.latent_channels, r->a / f, r->b / f);
}

int sd_run_clip(struct sd_runtime *rt, struct sd_model *m, const int32_t *ids, int B, int clip_skip, float *out) {
    if (!m->te) return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "%s: the model has no text encoder", m->path);
    struct run_args r = {m, B, clip_skip, 0, 0};
    struct sd_graph_key k = {RUN_CLIP, m->id, {B, clip_skip, m->clip.max_pos}, "text encoder"};
    const void *in[1] = {ids};
    return sd_runtime_run(rt, &k, build_clip, &r, in, out);
}

int sd_run_clip_xl(struct sd_runtime *rt, struct sd_model *m, int which, const int32_t *ids, const int32_t *eos, int B,
                   float *out) {
    struct sd_weights *w = which == 2 ? m->te2 : which == 1 ? m->te : NULL;
    if (!w || !sd_family_is_xl(m->family))
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "%s: the model has no SDXL text encoder %d", m->path, which);
    if (which == 2 && !eos) return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "SDXL text encoder 2: EOS positions needed");
    struct run_args r = {m, B, which, 0, 0};
    struct sd_graph_key k = {which == 2 ? RUN_CLIP_XL2 : RUN_CLIP_XL1, m->id, {B, which}, "text encoder"};
    const void *in[2] = {ids, eos};
    return sd_runtime_run(rt, &k, build_clip_xl, &r, in, out);
}

int sd_run_unet(struct sd_runtime *rt, struct sd_model *m, const float *x, int B, int h, int w, const float *t,
                const float *context, int ctx_len, float *out) {
    return sd_run_unet_xl(rt, m, x, B, h, w, t, context, ctx_len, NULL, NULL, out);
}

int sd_run_unet_xl(struct sd_runtime *rt, struct sd_model *m, const float *x, int B, int h, int w, const float *t,
                   const float *context, int ctx_len, const float *text_embeds, const float *time_ids, float *out) {
    if (m->unet.add_in > 0 && (!text_embeds || !time_ids))
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "%s: the SDXL UNet needs pooled text embeddings and time ids",
                         m->path);
    struct run_args r = {m, B, h, w, ctx_len};
    struct sd_graph_key k = {RUN_UNET, m->id, {B, h, w, ctx_len}, "unet"};
    const void *in[5] = {x, t, context, text_embeds, time_ids};
    return sd_runtime_run(rt, &k, build_unet, &r, in, out);
}

int sd_run_vae_decode(struct sd_runtime *rt, struct sd_model *m, const float *z, int B, int h, int w, float *img) {
    if (!m->va) return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "%s: the model has no VAE", m->path);
    struct run_args r = {m, B, h, w, 0};
    struct sd_graph_key k = {RUN_VAE_DEC, m->id, {B, h, w}, "vae decoder"};
    const void *in[1] = {z};
    return sd_runtime_run(rt, &k, build_vae_dec, &r, in, img);
}

int sd_run_vae_encode(struct sd_runtime *rt, struct sd_model *m, const float *img, int B, int H, int W, float *moments) {
    if (!m->va || !m->vae.has_encoder)
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "%s: the model has no VAE encoder", m->path);
    const int f = sd_vae_downscale(&m->vae);
    if (H < f || W < f || H % f || W % f)
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "vae encoder: %dx%d is not a multiple of the VAE's factor %d", W,
                         H, f);
    struct run_args r = {m, B, H, W, 0};
    struct sd_graph_key k = {RUN_VAE_ENC, m->id, {B, H, W}, "vae encoder"};
    const void *in[1] = {img};
    return sd_runtime_run(rt, &k, build_vae_enc, &r, in, moments);
}

int sd_vae_arena_estimate(struct sd_ctx *ctx, struct sd_model *m, int decode, int h, int w, size_t *bytes) {
    *bytes = 0;
    if (!m->va || (!decode && !m->vae.has_encoder))
        return sd_errorf(ctx, SD_ERR_INVALID, "%s: the model has no VAE %s", m->path, decode ? "decoder" : "encoder");
    struct sd_graph *g = sd_graph_new(ctx);
    if (!g) return sd_errorf(ctx, SD_ERR_NOMEM, "vae arena estimate: out of memory");
    struct run_args r = {m, 1, h, w, 0};
    struct sd_tensor *in[SD_GRAPH_MAX_INPUTS];
    int n_in = 0;
    struct sd_tensor *o = decode ? build_vae_dec(g, &r, in, &n_in) : build_vae_enc(g, &r, in, &n_in);
    if (o) sd_graph_output(g, o);
    int rc = sd_graph_plan(g);
    if (rc == SD_OK) *bytes = g->arena_size;
    sd_graph_free(g);
    return rc;
}

/* Every weight tensor of m (all components), malloc'd; *n gets the count. */
static struct sd_tensor **model_weights(const struct sd_model *m, int *n) {
    struct sd_weights *parts[4] = {m->te, m->un, m->va, m->te2};
    int total = 0, k = 0;
    for (int p = 0; p < 4; p++) total += sd_weights_count(parts[p]);
    struct sd_tensor **w = malloc((size_t)(total > 0 ? total : 1) * sizeof *w);
    for (int p = 0; w && p < 4; p++)
        for (int i = 0; i < sd_weights_count(parts[p]); i++) w[k++] = sd_weights_tensor(parts[p], i);
    *n = w ? k : 0;
    return w;
}

void sd_runtime_drop_weights(struct sd_runtime *rt, struct sd_weights *w) {
    const int n = sd_weights_count(w);
    if (n == 0) return; /* no such component (m->te2 of an SD 1.x model): nothing to drop or trim */
    struct sd_tensor **t = n > 0 ? malloc((size_t)n * sizeof *t) : NULL;
    for (int i = 0; t && i < n; i++) t[i] = sd_weights_tensor(w, i);
    if (t) sd_runtime_drop_copies(rt, t, n);
    free(t);
    sd_runtime_trim(rt);
}

void sd_runtime_release_model(struct sd_runtime *rt, const struct sd_model *m) {
    if (!rt || !m) return;
    int n = 0;
    struct sd_tensor **w = model_weights(m, &n);
    /* Without the list (out of memory) the graphs still go; the backends'
     * copies are then only dropped when the runtime is freed. */
    sd_runtime_release_owner(rt, m->id, w, n);
    free(w);
}
