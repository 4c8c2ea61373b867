/* model_util.c - weight lookup and the building blocks shared by the
 * CLIP, UNet and VAE builders (see model_util.h). */
#include "model_util.h"

#include <stdio.h>

static struct sd_tensor *record(struct sd_graph *g, struct sd_tensor *t) {
    if (!t && g->status == SD_OK) g->status = g->ctx && g->ctx->status ? g->ctx->status : SD_ERR_INVALID;
    return t ? sd_graph_weight(g, t) : NULL;
}

struct sd_tensor *wt(struct sd_graph *g, struct sd_weights *w, int n_dims, const int64_t *dims, const char *fmt, ...) {
    if (!g || g->status) return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return record(g, sd_weights_get_to(w, g->ctx, name, n_dims, dims));
}

struct sd_tensor *wt_opt(struct sd_graph *g, struct sd_weights *w, const char *fmt, ...) {
    if (!g || g->status) return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    struct sd_tensor *t = sd_weights_find_to(w, g->ctx, name);
    return t ? sd_graph_weight(g, t) : NULL;
}

bool wt_has(struct sd_weights *w, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sd_weights_find(w, name) != NULL;
}

struct sd_tensor *mb_group_norm(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, int groups, float eps,
                                int silu, const char *prefix) {
    if (!x) return NULL;
    int64_t c = x->ne[1];
    struct sd_tensor *gw = wt(g, w, 1, &c, "%s.weight", prefix);
    struct sd_tensor *gb = wt(g, w, 1, &c, "%s.bias", prefix);
    return sd_name(sd_group_norm(g, x, gw, gb, groups, eps, silu), "%s", prefix);
}

struct sd_tensor *mb_layer_norm(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, float eps,
                                const char *prefix) {
    if (!x) return NULL;
    int64_t c = x->ne[3];
    struct sd_tensor *gw = wt(g, w, 1, &c, "%s.weight", prefix);
    struct sd_tensor *gb = wt(g, w, 1, &c, "%s.bias", prefix);
    return sd_name(sd_layer_norm(g, x, gw, gb, eps), "%s", prefix);
}

struct sd_tensor *mb_linear(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, const char *prefix) {
    if (!x) return NULL;
    struct sd_tensor *lw = wt(g, w, 2, (int64_t[]){-1, x->ne[3]}, "%s.weight", prefix);
    struct sd_tensor *lb = wt_opt(g, w, "%s.bias", prefix);
    return sd_name(sd_linear(g, x, lw, lb), "%s", prefix);
}

struct sd_tensor *mb_conv(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, int stride, int pad,
                          const char *prefix) {
    if (!x) return NULL;
    struct sd_tensor *cw = wt(g, w, 4, (int64_t[]){-1, x->ne[1], -1, -1}, "%s.weight", prefix);
    struct sd_tensor *cb = wt_opt(g, w, "%s.bias", prefix);
    return sd_name(sd_conv2d(g, x, cw, cb, stride, pad), "%s", prefix);
}

struct sd_tensor *mb_resnet(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, struct sd_tensor *temb_act,
                            int groups, float eps, const char *prefix) {
    char n[256];
    snprintf(n, sizeof n, "%s.norm1", prefix);
    struct sd_tensor *h = mb_group_norm(g, w, x, groups, eps, 1, n);        /* [B, Ci, H, W] */
    snprintf(n, sizeof n, "%s.conv1", prefix);
    h = mb_conv(g, w, h, 1, 1, n);                                          /* [B, Co, H, W] */
    if (temb_act && h) {
        snprintf(n, sizeof n, "%s.time_emb_proj", prefix);
        struct sd_tensor *t = mb_linear(g, w, temb_act, n);                 /* [B, Co] */
        t = sd_reshape(g, t, 4, (int64_t[]){h->ne[0], h->ne[1], 1, 1});
        h = sd_add(g, h, t);
    }
    snprintf(n, sizeof n, "%s.norm2", prefix);
    h = mb_group_norm(g, w, h, groups, eps, 1, n);
    snprintf(n, sizeof n, "%s.conv2", prefix);
    h = mb_conv(g, w, h, 1, 1, n);
    struct sd_tensor *sc = x;
    if (wt_has(w, "%s.conv_shortcut.weight", prefix)) {
        snprintf(n, sizeof n, "%s.conv_shortcut", prefix);
        sc = mb_conv(g, w, x, 1, 0, n);
    }
    return sd_name(sd_add(g, sc, h), "%s", prefix);                        /* [B, Co, H, W] */
}

struct sd_tensor *mb_to_tokens(struct sd_graph *g, struct sd_tensor *x) {
    if (!x) return NULL;
    struct sd_tensor *t = sd_permute(g, x, (int[]){0, 2, 3, 1});           /* [B, H, W, C] */
    return sd_reshape(g, t, 3, (int64_t[]){x->ne[0], x->ne[2] * x->ne[3], x->ne[1]});
}

struct sd_tensor *mb_from_tokens(struct sd_graph *g, struct sd_tensor *x, int64_t h, int64_t wd) {
    if (!x) return NULL;
    struct sd_tensor *t = sd_reshape(g, x, 4, (int64_t[]){x->ne[1], h, wd, x->ne[3]});
    return sd_permute(g, t, (int[]){0, 3, 1, 2});                           /* [B, C, H, W] */
}
