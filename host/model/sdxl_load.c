/* sdxl_load.c - SDXL checkpoints: SGM single files and diffusers folders
 * (sd-reference §9.2), configs and family (base / refiner / inpainting).
 *
 * SGM single files: "conditioner.embedders.N.transformer.*" is CLIP ViT-L
 * (HF names under text_model.), "conditioner.embedders.N.model.*" OpenCLIP
 * bigG (resblocks with a packed in_proj, positional_embedding, ln_final,
 * text_projection stored [width, embed] for x @ P; every layer is kept: the
 * pooled output needs the last one), "model.diffusion_model.*" the UNet
 * (label_emb.0.0/0.2 = add_embedding), "first_stage_model.*" the VAE. The
 * base has both encoders (embedders 0 and 1), the refiner bigG only
 * (embedder 0). Folders: text_encoder/ (absent in the refiner),
 * text_encoder_2/ (CLIPTextModelWithProjection), tokenizer_2/.
 *
 * The family is decided by the UNet's add_embedding: its input is the pooled
 * width plus 6 (base: original size, crop, target size) or 5 (refiner:
 * original size, crop, aesthetic score) Fourier-embedded time ids.
 */
#include "model_load_int.h"

#include "json.h"
#include "model_keys.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *ren_bigg(const char *name, char *buf, size_t size, void *user) {
    (void)user;
    if (strcmp(name, "text_projection") == 0) return snprintf(buf, size, "text_projection.openclip"), buf;
    return sd_keys_clip_openclip(name, INT_MAX, buf, size) ? buf : NULL;
}

/* text_encoder_2/: CLIPTextModelWithProjection keeps text_projection.weight ([embed, width], a Linear). */
static const char *ren_te2(const char *name, char *buf, size_t size, void *user) {
    if (strcmp(name, "text_projection.weight") == 0) return name;
    return sd_ren_diffusers_clip(name, buf, size, user);
}

int sd_sdxl_load_single(struct sd_ctx *ctx, struct sd_model *m, struct sd_st_file *f, const char *path) {
    const struct sd_st_tensor *cin = sd_st_find(f, "model.diffusion_model.input_blocks.0.0.weight");
    if (!cin || cin->n_dims != 4)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: SDXL checkpoint without a 4-d 'model.diffusion_model.input_blocks.0.0.weight'",
                         path);
    m->file_dtype = cin->type;
    int clipl = -1, bigg = -1;
    char p[128];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "conditioner.embedders.%d.transformer.", i);
        if (clipl < 0 && sd_has_prefix_key(f, p)) clipl = i;
        snprintf(p, sizeof p, "conditioner.embedders.%d.model.token_embedding.weight", i);
        if (bigg < 0 && sd_st_find(f, p)) bigg = i;
    }
    if (clipl >= 0 && bigg < 0)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: SDXL checkpoint with CLIP ViT-L (conditioner.embedders.%d) but no OpenCLIP bigG "
                         "text encoder (conditioner.embedders.1.model.*): the second encoder is missing", path, clipl);
    m->family = bigg >= 0 && clipl < 0 ? SD_FAMILY_SDXL_REFINER : cin->shape[1] == 9 ? SD_FAMILY_SDXL_INPAINT : SD_FAMILY_SDXL;
    snprintf(m->family_why, sizeof m->family_why, "SGM keys: %s", clipl >= 0 ? "conditioner.embedders.0 CLIP ViT-L + .1 OpenCLIP bigG"
             : bigg >= 0 ? "conditioner.embedders.0 OpenCLIP bigG only" : "model.diffusion_model.label_emb (no text encoders)");
    sd_model_config_defaults(m);

    int rc;
    if ((rc = sd_ldm_load_unet_vae(ctx, m, f))) return rc;
    if (clipl >= 0) {
        snprintf(p, sizeof p, "conditioner.embedders.%d.transformer.", clipl);
        if (!(m->te = sd_deferred_weights(ctx))) return ctx->status;
        if ((rc = sd_weights_add_file(m->te, f, p, sd_ren_clip1, NULL))) return rc;
    }
    if (bigg >= 0) {
        char fmt[128];
        snprintf(fmt, sizeof fmt, "conditioner.embedders.%d.model.transformer.resblocks.%%d.ln_1.weight", bigg);
        const int layers = sd_count_indexed(f, fmt);
        snprintf(p, sizeof p, "conditioner.embedders.%d.model.token_embedding.weight", bigg);
        const struct sd_st_tensor *tok = sd_st_find(f, p);
        snprintf(p, sizeof p, "conditioner.embedders.%d.model.", bigg);
        if (!(m->te2 = sd_deferred_weights(ctx))) return ctx->status;
        if ((rc = sd_weights_add_file(m->te2, f, p, ren_bigg, NULL))) return rc;
        if ((rc = sd_split_in_proj(ctx, m->te2, layers, tok->n_dims == 2 ? tok->shape[1] : 0))) return rc;
    }
    return SD_OK;
}

int sd_sdxl_load_folder(struct sd_ctx *ctx, struct sd_model *m, const char *dir) {
    static const char *const unet_names[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", NULL};
    static const char *const te_names[] = {"model.safetensors", "model.fp16.safetensors", NULL};
    int64_t dims[SD_ST_MAX_DIMS];
    if (sd_weights_shape(m->un, "conv_in.weight", dims) != 4)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: unet has no 4-d 'conv_in.weight'", dir);
    char p[2048];
    FILE *probe = NULL;
    snprintf(p, sizeof p, "%s/text_encoder_2/config.json", dir);
    if (!(probe = fopen(p, "rb")))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: an SDXL folder (the UNet has add_embedding) without text_encoder_2/ "
                         "(the OpenCLIP bigG text encoder): the second encoder is missing", dir);
    fclose(probe);
    int rc;
    if ((rc = sd_load_component(ctx, m, dir, "vae", unet_names, NULL, NULL, &m->va))) return rc;
    sd_vae_attn_to_linear(m->va);
    snprintf(p, sizeof p, "%s/text_encoder/config.json", dir);
    bool has_te = (probe = fopen(p, "rb")) != NULL;
    if (probe) fclose(probe);
    if (has_te && (rc = sd_load_component(ctx, m, dir, "text_encoder", te_names, sd_ren_diffusers_clip, NULL, &m->te)))
        return rc;
    if ((rc = sd_load_component(ctx, m, dir, "text_encoder_2", te_names, ren_te2, NULL, &m->te2))) return rc;
    m->family = !has_te ? SD_FAMILY_SDXL_REFINER : dims[1] == 9 ? SD_FAMILY_SDXL_INPAINT : SD_FAMILY_SDXL;
    snprintf(m->family_why, sizeof m->family_why, "diffusers folder with text_encoder_2/%s", has_te ? " and text_encoder/" : " only");
    sd_model_config_defaults(m);
    return SD_OK;
}

static int read_one(struct sd_ctx *ctx, struct sd_model *m, const char *dir) {
    int rc;
    struct sd_json *j = sd_model_read_json(ctx, dir, "text_encoder_2/config.json", &rc);
    if (rc) return rc;
    if (j) {
        m->clip2.heads = (int)sd_json_int(sd_json_get(j, "num_attention_heads"), m->clip2.heads);
        m->clip2.eps = (float)sd_json_num(sd_json_get(j, "layer_norm_eps"), m->clip2.eps);
        const char *act = sd_json_str(sd_json_get(j, "hidden_act"));
        if (act) m->clip2.quick_gelu = strcmp(act, "quick_gelu") == 0;
        sd_json_free(j);
    }
    j = sd_model_read_json(ctx, dir, "tokenizer_2/tokenizer_config.json", &rc);
    if (rc) return rc;
    if (j) {
        const struct sd_json *pad = sd_json_get(j, "pad_token");
        const char *ps = sd_json_str(pad);
        if (!ps) ps = sd_json_str(sd_json_get(pad, "content"));
        if (ps) m->clip2.pad_id = strcmp(ps, "!") == 0 ? 0 : 49407;
        sd_json_free(j);
    }
    j = sd_model_read_json(ctx, dir, "unet/config.json", &rc);
    if (rc) return rc;
    if (j) {
        m->unet.add_time_dim = (int)sd_json_int(sd_json_get(j, "addition_time_embed_dim"), m->unet.add_time_dim);
        sd_json_free(j);
    }
    if (m->clip2.heads < 1 || m->clip2.heads > 4096 || !(m->clip2.eps > 0 && m->clip2.eps < 1))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s/text_encoder_2/config.json: num_attention_heads must be 1..4096 and "
                         "layer_norm_eps in (0, 1) (got %d, %g)", dir, m->clip2.heads, (double)m->clip2.eps);
    if (m->unet.add_time_dim < 2 || m->unet.add_time_dim > 65536 || m->unet.add_time_dim % 2)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s/unet/config.json: addition_time_embed_dim must be even, 2..65536 (got %d)",
                         dir, m->unet.add_time_dim);
    return SD_OK;
}

int sd_sdxl_read_configs(struct sd_ctx *ctx, struct sd_model *m, const char *dir, const char *config_dir) {
    int rc;
    if (dir && (rc = read_one(ctx, m, dir))) return rc;
    if (config_dir && (rc = read_one(ctx, m, config_dir))) return rc;
    return SD_OK;
}

int sd_sdxl_finish(struct sd_ctx *ctx, struct sd_model *m) {
    int rc;
    int64_t d[SD_ST_MAX_DIMS];
    if (m->te2) {
        if ((rc = sd_model_infer_clip(ctx, &m->clip2, m->te2))) {
            sd_error_wrap(ctx, "second text encoder (bigG)");
            return rc;
        }
        if (sd_weights_shape(m->te2, "text_projection.weight", d) == 2) m->clip2.projection = (int)d[0];
        else if (sd_weights_shape(m->te2, "text_projection.openclip", d) == 2) m->clip2.projection = (int)d[1];
        else return sd_errorf(ctx, SD_ERR_FORMAT, "%s: the OpenCLIP bigG text encoder has no text_projection", m->path);
        if (m->clip2.layers < 2)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: the bigG text encoder has %d layer(s); SDXL uses the penultimate",
                             m->path, m->clip2.layers);
    }
    if (m->te && m->clip.layers < 2)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: the CLIP ViT-L text encoder has %d layer(s); SDXL uses the penultimate",
                         m->path, m->clip.layers);
    if (sd_weights_shape(m->un, "add_embedding.linear_1.weight", d) != 2)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: SDXL checkpoint whose UNet has no add_embedding (label_emb.0.0)", m->path);
    m->unet.add_in = (int)d[1];
    const int pooled = m->te2 ? m->clip2.projection : 1280, td = m->unet.add_time_dim, rest = m->unet.add_in - pooled;
    if (td < 2 || rest <= 0 || rest % td || (rest / td != 5 && rest / td != 6))
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s: the UNet's add_embedding takes %d inputs: not %d pooled + 5 or 6 time ids "
                         "of %d (SDXL refiner / base)", m->path, m->unet.add_in, pooled, td);
    m->unet.add_n_ids = rest / td;
    if (m->unet.add_n_ids == 6 && m->family == SD_FAMILY_SDXL_REFINER)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: an SDXL base UNet (6 time ids) with only the bigG text encoder: CLIP ViT-L "
                         "(conditioner.embedders.0 / text_encoder/) is missing", m->path);
    if (m->unet.add_n_ids == 5) m->family = SD_FAMILY_SDXL_REFINER;
    const int ctx_w = (m->unet.add_n_ids == 6 && m->te ? m->clip.hidden : 0) + (m->te2 ? m->clip2.hidden : 0);
    if (m->te2 && ctx_w != m->unet.context_dim)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: the UNet's context is %d wide, the text encoders give %d", m->path,
                         m->unet.context_dim, ctx_w);
    if (m->te2 && m->unet.add_n_ids == 6 && !m->te)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: SDXL base without its CLIP ViT-L text encoder", m->path);
    return SD_OK;
}
