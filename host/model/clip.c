/* clip.c - the CLIP text encoder as a graph (sd-reference §2).
 *
 * SD1 (OpenAI ViT-L/14, quick_gelu) and SD2 (OpenCLIP ViT-H, gelu) share the
 * HF CLIPTextModel structure once SD2's packed in_proj is split at load
 * (model_keys.c). Pre-LN transformer with a causal mask; the hidden state SD
 * uses is final_layer_norm(output of the selected layer).
 */
#include "model_util.h"

#include <math.h>
#include <stdio.h>

/* The token + position embeddings of ids [B, 77] -> [B, 77, d]. */
struct sd_tensor *mb_clip_embed(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                struct sd_tensor *ids) {
    const int64_t d = c->hidden;
    struct sd_tensor *tok = wt(g, w, 2, (int64_t[]){c->vocab, d}, "text_model.embeddings.token_embedding.weight");
    struct sd_tensor *pos = wt(g, w, 2, (int64_t[]){c->max_pos, d}, "text_model.embeddings.position_embedding.weight");
    return sd_name(sd_add(g, sd_embedding(g, ids, tok), pos), "text_model.embeddings");
}

/* Encoder layer l: pre-LN causal self-attention, then the MLP. */
struct sd_tensor *mb_clip_layer(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                struct sd_tensor *h, int l) {
    const float scale = 1.0f / sqrtf((float)(c->hidden / c->heads));
    char p[160], n[200];
    snprintf(p, sizeof p, "text_model.encoder.layers.%d", l);
    snprintf(n, sizeof n, "%s.layer_norm1", p);
    struct sd_tensor *x = mb_layer_norm(g, w, h, c->eps, n);               /* [B, 77, d] */
    snprintf(n, sizeof n, "%s.self_attn.q_proj", p);
    struct sd_tensor *q = mb_linear(g, w, x, n);
    snprintf(n, sizeof n, "%s.self_attn.k_proj", p);
    struct sd_tensor *k = mb_linear(g, w, x, n);
    snprintf(n, sizeof n, "%s.self_attn.v_proj", p);
    struct sd_tensor *v = mb_linear(g, w, x, n);
    struct sd_tensor *a = sd_name(sd_attention(g, q, k, v, c->heads, scale, 1), "%s.self_attn", p);
    snprintf(n, sizeof n, "%s.self_attn.out_proj", p);
    h = sd_add(g, h, mb_linear(g, w, a, n));
    snprintf(n, sizeof n, "%s.layer_norm2", p);
    x = mb_layer_norm(g, w, h, c->eps, n);
    snprintf(n, sizeof n, "%s.mlp.fc1", p);
    x = mb_linear(g, w, x, n);                                               /* [B, 77, ff] */
    x = c->quick_gelu ? sd_quick_gelu(g, x) : sd_gelu(g, x);
    snprintf(n, sizeof n, "%s.mlp.fc2", p);
    return sd_name(sd_add(g, h, mb_linear(g, w, x, n)), "%s", p);          /* [B, 77, d] */
}

struct sd_tensor *sd_clip_build(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                struct sd_tensor *ids, int clip_skip) {
    if (!ids) return NULL;
    g->half_ok = 1; /* graph.h: as fp16 text encoders run */
    struct sd_tensor *h = mb_clip_embed(g, c, w, ids);                     /* [B, 77, d] */
    int n_layers = c->layers;
    if (clip_skip >= 2) n_layers = c->layers - (clip_skip - 1);
    if (n_layers < 1) n_layers = 1;
    for (int l = 0; l < n_layers; l++) h = mb_clip_layer(g, c, w, h, l);
    return mb_layer_norm(g, w, h, c->eps, "text_model.final_layer_norm");
}
