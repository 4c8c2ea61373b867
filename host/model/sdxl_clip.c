/* sdxl_clip.c - SDXL's text encoders as graphs (sd-reference §9.2).
 *
 * Both encoders (CLIP ViT-L, quick_gelu; OpenCLIP bigG, gelu) feed the UNet
 * the output of their penultimate layer (hidden_states[-2]) without the final
 * LayerNorm; the two are concatenated along channels by the pipeline. bigG
 * also gives the pooled vector: final_layer_norm(output of the last layer) at
 * the EOS token, times text_projection (diffusers CLIPTextModelWithProjection
 * text_embeds; OpenCLIP's x[eos] @ text_projection). The EOS row is picked
 * with the embedding op from the [B*77, d] states (the caller passes flat row
 * indices), so everything runs through the op table on every backend.
 */
#include "model_util.h"

#include <stdio.h>

struct sd_tensor *sd_clip_xl_build(struct sd_graph *g, const struct sd_clip_config *c, struct sd_weights *w,
                                   struct sd_tensor *ids, struct sd_tensor *eos) {
    if (!ids) return NULL;
    g->half_ok = 1; /* graph.h: as fp16 text encoders run */
    const int64_t d = c->hidden, B = sd_tensor_dim(ids, 0), L = sd_tensor_dim(ids, 1);
    if (c->layers < 2) {
        g->status = sd_errorf(g->ctx, SD_ERR_FORMAT, "SDXL text encoder: %d layer(s); the penultimate layer is needed",
                              c->layers);
        return NULL;
    }
    struct sd_tensor *h = mb_clip_embed(g, c, w, ids);
    for (int l = 0; l < c->layers - 1; l++) h = mb_clip_layer(g, c, w, h, l);
    struct sd_tensor *pen = sd_reshape(g, h, 2, (int64_t[]){B, L * d});               /* hidden_states[-2] */
    if (!eos || c->projection <= 0) return pen;
    h = mb_clip_layer(g, c, w, h, c->layers - 1);
    h = mb_layer_norm(g, w, h, c->eps, "text_model.final_layer_norm");                /* [B, L, d] */
    struct sd_tensor *rows = sd_reshape(g, h, 2, (int64_t[]){B * L, d});
    struct sd_tensor *at = sd_reshape(g, eos, 2, (int64_t[]){1, B});
    struct sd_tensor *pooled = sd_reshape(g, sd_embedding(g, at, rows), 2, (int64_t[]){B, d});
    struct sd_tensor *pw;
    if (wt_has(w, "text_projection.openclip")) { /* SGM files: OpenCLIP's [width, embed] for x @ P */
        pw = wt(g, w, 2, (int64_t[]){d, c->projection}, "text_projection.openclip");
        pw = sd_permute(g, pw, (int[]){1, 0});
    } else {
        pw = wt(g, w, 2, (int64_t[]){c->projection, d}, "text_projection.weight");
    }
    pooled = sd_name(sd_linear(g, pooled, pw, NULL), "text_projection");              /* [B, proj] */
    return sd_concat(g, pen, pooled, 1);
}

void sd_clip_eos_rows(const int32_t *ids, int B, int L, int32_t *eos) {
    for (int b = 0; b < B; b++) {
        int best = 0;
        for (int i = 1; i < L; i++)
            if (ids[(size_t)b * L + i] > ids[(size_t)b * L + best]) best = i;
        eos[b] = b * L + best;
    }
}
