/* model_util.h - helpers shared by the model builders (private to host/).
 *
 * wt() looks a weight up by a printf-formatted diffusers name, checks its
 * shape when dims are given (-1 = any), registers it with the graph, and on
 * failure records the error on the graph so building stops cleanly.
 * wt_opt() returns NULL without an error when the tensor is absent.
 */
#ifndef SDRT_MODEL_UTIL_H
#define SDRT_MODEL_UTIL_H

#include "model.h"
#include "weights.h"

struct sd_tensor *wt(struct sd_graph *g, struct sd_weights *w, int n_dims, const int64_t *dims, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
struct sd_tensor *wt_opt(struct sd_graph *g, struct sd_weights *w, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool wt_has(struct sd_weights *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* GroupNorm (+SiLU) with `<prefix>.weight/.bias`. */
struct sd_tensor *mb_group_norm(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, int groups, float eps,
                                int silu, const char *prefix);
struct sd_tensor *mb_layer_norm(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, float eps,
                                const char *prefix);
/* Linear with `<prefix>.weight` and optional `<prefix>.bias`. */
struct sd_tensor *mb_linear(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, const char *prefix);
/* Conv with `<prefix>.weight` and optional `<prefix>.bias`. */
struct sd_tensor *mb_conv(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, int stride, int pad,
                          const char *prefix);
/* ResnetBlock2D (sd-reference §3.3); temb_act = SiLU(temb) [B, T] or NULL. */
struct sd_tensor *mb_resnet(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, struct sd_tensor *temb_act,
                            int groups, float eps, const char *prefix);
/* [B, C, H, W] -> [B, H*W, C] and back. */
/* clip.c: a CLIP text encoder's embeddings and its encoder layer l (shared by
 * SD 1.x/2.x and both SDXL encoders). */
struct sd_clip_config;
struct sd_tensor *mb_clip_embed(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                struct sd_tensor *ids);
struct sd_tensor *mb_clip_layer(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                struct sd_tensor *h, int l);
struct sd_tensor *mb_to_tokens(struct sd_graph *g, struct sd_tensor *x);
struct sd_tensor *mb_from_tokens(struct sd_graph *g, struct sd_tensor *x, int64_t h, int64_t wd);

#endif
