/* unet.c - UNet2DConditionModel as a graph (sd-reference §3).
 *
 * Down path: per level, layers_per_block x (resnet [+ transformer]), each
 * output pushed as a skip, then a stride-2 downsampler (pushed) except at the
 * last level. Mid: resnet, transformer, resnet. Up path: per up block,
 * (layers_per_block + 1) x (concat [x, skip] -> resnet [+ transformer]),
 * then nearest-resize to the next skip's size and a 3x3 conv (§3.5: sizes
 * that are not multiples of 8 resize to the skip, not x2).
 */
#include "model_util.h"

#include <math.h>
#include <stdio.h>

/* Transformer2DModel with one BasicTransformerBlock (§3.3). */
static struct sd_tensor *transformer(struct sd_graph *g, const struct sd_unet_config *c, struct sd_weights *w,
                                     struct sd_tensor *x, struct sd_tensor *ctx, int heads, const char *p) {
    if (!x) return NULL;
    const int64_t C = x->ne[1], H = x->ne[2], W = x->ne[3];
    char n[256];
    snprintf(n, sizeof n, "%s.norm", p);
    struct sd_tensor *h = mb_group_norm(g, w, x, c->norm_groups, 1e-6f, 0, n); /* [B, C, H, W] */
    snprintf(n, sizeof n, "%s.proj_in", p);
    if (c->linear_proj) {
        h = mb_linear(g, w, mb_to_tokens(g, h), n);                           /* [B, HW, C] */
    } else {
        h = mb_to_tokens(g, mb_conv(g, w, h, 1, 0, n));
    }
    const float scale = 1.0f / sqrtf((float)(C / heads));
    for (int blk = 0; wt_has(w, "%s.transformer_blocks.%d.norm1.weight", p, blk); blk++) {
        char b[224];
        snprintf(b, sizeof b, "%s.transformer_blocks.%d", p, blk);
        snprintf(n, sizeof n, "%s.norm1", b);
        struct sd_tensor *t = mb_layer_norm(g, w, h, 1e-5f, n);
        snprintf(n, sizeof n, "%s.attn1.to_q", b);
        struct sd_tensor *q = mb_linear(g, w, t, n);
        snprintf(n, sizeof n, "%s.attn1.to_k", b);
        struct sd_tensor *k = mb_linear(g, w, t, n);
        snprintf(n, sizeof n, "%s.attn1.to_v", b);
        struct sd_tensor *v = mb_linear(g, w, t, n);
        struct sd_tensor *a = sd_name(sd_attention(g, q, k, v, heads, scale, 0), "%s.attn1", b);
        snprintf(n, sizeof n, "%s.attn1.to_out.0", b);
        h = sd_add(g, h, mb_linear(g, w, a, n));                              /* [B, HW, C] */

        snprintf(n, sizeof n, "%s.norm2", b);
        t = mb_layer_norm(g, w, h, 1e-5f, n);
        snprintf(n, sizeof n, "%s.attn2.to_q", b);
        q = mb_linear(g, w, t, n);
        snprintf(n, sizeof n, "%s.attn2.to_k", b);
        k = mb_linear(g, w, ctx, n);                                          /* [B, 77, C] */
        snprintf(n, sizeof n, "%s.attn2.to_v", b);
        v = mb_linear(g, w, ctx, n);
        a = sd_name(sd_attention(g, q, k, v, heads, scale, 0), "%s.attn2", b);
        snprintf(n, sizeof n, "%s.attn2.to_out.0", b);
        h = sd_add(g, h, mb_linear(g, w, a, n));

        snprintf(n, sizeof n, "%s.norm3", b);
        t = mb_layer_norm(g, w, h, 1e-5f, n);
        snprintf(n, sizeof n, "%s.ff.net.0.proj", b);
        t = sd_geglu(g, mb_linear(g, w, t, n));                               /* [B, HW, 4C] */
        snprintf(n, sizeof n, "%s.ff.net.2", b);
        h = sd_name(sd_add(g, h, mb_linear(g, w, t, n)), "%s", b);           /* [B, HW, C] */
    }
    snprintf(n, sizeof n, "%s.proj_out", p);
    if (c->linear_proj) {
        h = mb_from_tokens(g, mb_linear(g, w, h, n), H, W);
    } else {
        h = mb_conv(g, w, mb_from_tokens(g, h, H, W), 1, 0, n);              /* [B, C, H, W] */
    }
    return sd_name(sd_add(g, h, x), "%s", p);
}

static int level_heads(const struct sd_unet_config *c, int level, int64_t ch) {
    if (c->head_dim > 0) return (int)(ch / c->head_dim);
    return c->heads[level];
}

/* SDXL: add_embedding(cat(text_embeds, Fourier(time_ids))) [B, T], added to
 * the time embedding (diffusers addition_embed_type "text_time"; SGM
 * label_emb). */
static struct sd_tensor *add_embedding(struct sd_graph *g, const struct sd_unet_config *c, struct sd_weights *w,
                                       struct sd_tensor *text_embeds, struct sd_tensor *time_ids) {
    if (!text_embeds || !time_ids) return NULL;
    const int64_t B = sd_tensor_dim(text_embeds, 0);
    if (sd_tensor_dim(text_embeds, 1) + (int64_t)c->add_n_ids * c->add_time_dim != c->add_in ||
        sd_tensor_nelements(time_ids) != B * c->add_n_ids) {
        g->status = sd_errorf(g->ctx, SD_ERR_INVALID, "unet add_embedding: text_embeds [%lld, %lld] and %lld time ids do not "
                              "make its %d inputs (%d ids x %d)", (long long)B, (long long)sd_tensor_dim(text_embeds, 1),
                              (long long)sd_tensor_nelements(time_ids), c->add_in, c->add_n_ids, c->add_time_dim);
        return NULL;
    }
    struct sd_tensor *te = sd_timestep_embed(g, time_ids, c->add_time_dim, 1, 0.0f);     /* [B*n, dt] */
    te = sd_reshape(g, te, 2, (int64_t[]){B, (int64_t)c->add_n_ids * c->add_time_dim});
    struct sd_tensor *a = sd_concat(g, text_embeds, te, 1);                              /* [B, add_in] */
    a = mb_linear(g, w, a, "add_embedding.linear_1");
    return mb_linear(g, w, sd_silu(g, a), "add_embedding.linear_2");                    /* [B, T] */
}

struct sd_tensor *sd_unet_build(struct sd_graph *g, const struct sd_unet_config *c, struct sd_weights *w,
                                struct sd_tensor *x, struct sd_tensor *t, struct sd_tensor *context) {
    return sd_unet_build_xl(g, c, w, x, t, context, NULL, NULL);
}

struct sd_tensor *sd_unet_build_xl(struct sd_graph *g, const struct sd_unet_config *c, struct sd_weights *w,
                                   struct sd_tensor *x, struct sd_tensor *t, struct sd_tensor *context,
                                   struct sd_tensor *text_embeds, struct sd_tensor *time_ids) {
    if (!x || !t || !context) return NULL;
    if (c->add_in > 0 && (!text_embeds || !time_ids)) {
        g->status = sd_errorf(g->ctx, SD_ERR_INVALID, "unet: this SDXL UNet needs pooled text embeddings and time ids");
        return NULL;
    }
    const int G = c->norm_groups, L = c->layers_per_block, nl = c->n_levels;
    const float eps = c->norm_eps;
    char p[160];
    /* Its convs accept F(4x4,3x3) Winograd in bf16 (graph.h): a full-size
     * SD1.5 UNet call's max abs error vs diffusers f32 is then 0.035 (F(2x2)
     * 0.017; PyTorch's own bf16 autocast 0.030), its 4-step image 42.8 dB
     * from f32 mode's (46.7), for a 6% faster step (docs/benchmarks.md). */
    g->wino4 = 1;
    g->half_ok = 1; /* graph.h: activations within half's range (fp16 UNets are the norm) */

    struct sd_tensor *temb = sd_timestep_embed(g, t, c->block_out[0], 1, 0.0f);   /* [B, C0] */
    temb = mb_linear(g, w, temb, "time_embedding.linear_1");
    temb = mb_linear(g, w, sd_silu(g, temb), "time_embedding.linear_2");          /* [B, 4*C0] */
    if (c->add_in > 0) temb = sd_add(g, temb, add_embedding(g, c, w, text_embeds, time_ids));
    struct sd_tensor *temb_act = sd_name(sd_silu(g, temb), "temb_act");           /* shared by every resnet */

    struct sd_tensor *skips[4 * SD_MAX_LEVELS * 4];
    int ns = 0;
    struct sd_tensor *h = mb_conv(g, w, x, 1, 1, "conv_in");                      /* [B, C0, h, w] */
    skips[ns++] = h;
    for (int i = 0; i < nl; i++) {
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            h = mb_resnet(g, w, h, temb_act, G, eps, p);
            if (c->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                h = transformer(g, c, w, h, context, level_heads(c, i, c->block_out[i]), p);
            }
            skips[ns++] = h;
        }
        if (i < nl - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            h = mb_conv(g, w, h, 2, 1, p);                                        /* [B, Ci, ceil(h/2), ...] */
            skips[ns++] = h;
        }
    }
    h = mb_resnet(g, w, h, temb_act, G, eps, "mid_block.resnets.0");
    h = transformer(g, c, w, h, context, level_heads(c, nl - 1, c->block_out[nl - 1]), "mid_block.attentions.0");
    h = mb_resnet(g, w, h, temb_act, G, eps, "mid_block.resnets.1");

    for (int u = 0; u < nl; u++) {
        const int level = nl - 1 - u;
        for (int j = 0; j <= L; j++) {
            struct sd_tensor *s = skips[--ns];
            h = sd_concat(g, h, s, 1);                                            /* [B, Ch + Cs, h, w] */
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", u, j);
            h = mb_resnet(g, w, h, temb_act, G, eps, p);
            if (c->up_attn[u]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", u, j);
                h = transformer(g, c, w, h, context, level_heads(c, level, c->block_out[level]), p);
            }
        }
        if (u < nl - 1 && h) {
            const struct sd_tensor *next = skips[ns - 1];
            h = sd_upsample(g, h, next->ne[2], next->ne[3]);
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", u);
            h = mb_conv(g, w, h, 1, 1, p);
        }
    }
    h = mb_group_norm(g, w, h, G, eps, 1, "conv_norm_out");
    return mb_conv(g, w, h, 1, 1, "conv_out");                                    /* [B, out, h, w] */
}
