/* vae.c - AutoencoderKL encoder and decoder as graphs (sd-reference §4).
 *
 * Resnets without time embedding, GroupNorm eps 1e-6, a single-head
 * attention in the mid block, the asymmetric (0,1,0,1) stride-2 downsampler
 * in the encoder, nearest x2 + conv upsamplers in the decoder.
 */
#include "model_util.h"

#include <math.h>
#include <stdio.h>

static struct sd_tensor *mid_attention(struct sd_graph *g, const struct sd_vae_config *c, struct sd_weights *w,
                                       struct sd_tensor *x, const char *p) {
    if (!x) return NULL;
    const int64_t C = x->ne[1], H = x->ne[2], W = x->ne[3];
    char n[224];
    snprintf(n, sizeof n, "%s.group_norm", p);
    struct sd_tensor *h = mb_to_tokens(g, mb_group_norm(g, w, x, c->norm_groups, 1e-6f, 0, n)); /* [B, HW, C] */
    snprintf(n, sizeof n, "%s.to_q", p);
    struct sd_tensor *q = mb_linear(g, w, h, n);
    snprintf(n, sizeof n, "%s.to_k", p);
    struct sd_tensor *k = mb_linear(g, w, h, n);
    snprintf(n, sizeof n, "%s.to_v", p);
    struct sd_tensor *v = mb_linear(g, w, h, n);
    struct sd_tensor *a = sd_name(sd_attention(g, q, k, v, 1, 1.0f / sqrtf((float)C), 0), "%s", p);
    snprintf(n, sizeof n, "%s.to_out.0", p);
    a = mb_from_tokens(g, mb_linear(g, w, a, n), H, W);                            /* [B, C, H, W] */
    return sd_add(g, a, x);
}

static struct sd_tensor *mid_block(struct sd_graph *g, const struct sd_vae_config *c, struct sd_weights *w,
                                   struct sd_tensor *h, const char *part) {
    char p[128];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", part);
    h = mb_resnet(g, w, h, NULL, c->norm_groups, 1e-6f, p);
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", part);
    h = mid_attention(g, c, w, h, p);
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", part);
    return mb_resnet(g, w, h, NULL, c->norm_groups, 1e-6f, p);
}

struct sd_tensor *sd_vae_decode_build(struct sd_graph *g, const struct sd_vae_config *c, struct sd_weights *w,
                                      struct sd_tensor *z) {
    if (!z) return NULL;
    char p[128];
    struct sd_tensor *h = z;
    if (wt_has(w, "post_quant_conv.weight")) h = mb_conv(g, w, h, 1, 0, "post_quant_conv");
    h = mb_conv(g, w, h, 1, 1, "decoder.conv_in");                                 /* [B, Clast, h, w] */
    h = mid_block(g, c, w, h, "decoder");
    for (int u = 0; u < c->n_levels; u++) {
        for (int j = 0; j <= c->layers_per_block; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", u, j);
            h = mb_resnet(g, w, h, NULL, c->norm_groups, 1e-6f, p);
        }
        if (u < c->n_levels - 1 && h) {
            h = sd_upsample(g, h, h->ne[2] * 2, h->ne[3] * 2);
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", u);
            h = mb_conv(g, w, h, 1, 1, p);
        }
    }
    h = mb_group_norm(g, w, h, c->norm_groups, 1e-6f, 1, "decoder.conv_norm_out");
    return mb_conv(g, w, h, 1, 1, "decoder.conv_out");                             /* [B, 3, f*h, f*w] */
}

struct sd_tensor *sd_vae_encode_build(struct sd_graph *g, const struct sd_vae_config *c, struct sd_weights *w,
                                      struct sd_tensor *x) {
    if (!x) return NULL;
    char p[128];
    struct sd_tensor *h = mb_conv(g, w, x, 1, 1, "encoder.conv_in");
    for (int i = 0; i < c->n_levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            h = mb_resnet(g, w, h, NULL, c->norm_groups, 1e-6f, p);
        }
        if (i < c->n_levels - 1 && h) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            struct sd_tensor *dw = wt(g, w, 4, (int64_t[]){h->ne[1], h->ne[1], 3, 3}, "%s.weight", p);
            struct sd_tensor *db = wt_opt(g, w, "%s.bias", p);
            struct sd_conv2d_params cp = {2, 2, 0, 0, 1, 1, 0};                      /* F.pad(x, (0,1,0,1)) */
            h = sd_name(sd_conv2d_ex(g, h, dw, db, cp), "%s", p);
        }
    }
    h = mid_block(g, c, w, h, "encoder");
    h = mb_group_norm(g, w, h, c->norm_groups, 1e-6f, 1, "encoder.conv_norm_out");
    h = mb_conv(g, w, h, 1, 1, "encoder.conv_out");                                /* [B, 2*latent, H/f, W/f] */
    if (wt_has(w, "quant_conv.weight")) h = mb_conv(g, w, h, 1, 0, "quant_conv");
    return h;
}
