/* model_load.c - opening a model: a single-file LDM checkpoint
 * (.safetensors) or a diffusers folder; family detection; weights renamed to
 * diffusers names; configs (model_config.c).
 *
 * Single files: UNet under "model.diffusion_model.", VAE under
 * "first_stage_model.", text encoder under "cond_stage_model.transformer."
 * (SD1, HF CLIP) or "cond_stage_model.model." (SD2, OpenCLIP, whose packed
 * in_proj is split into q/k/v and whose last resblock is dropped: SD2 uses
 * the penultimate layer). EMA copies ("model_ema.*") and training buffers lie
 * outside these prefixes and are ignored. Detection follows diffusers
 * (sd-reference §0.4): SDXL keys -> sdxl_load.c; OpenCLIP text encoder or a
 * 1024-wide context -> SD2; conv_in with 9 input channels -> inpainting.
 * Weights load lazily (weights.h): `sdrt info` reads headers only.
 */
#include "model_load.h"

#include "model_load_int.h"
#include "model_keys.h"
#include "json.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A model's weight sets are deferred (weights.h): the backends keep their
 * own layouts of the big tensors, so no plain f32 copy of those is made
 * unless something reads one in place. */
struct sd_weights *sd_deferred_weights(struct sd_ctx *ctx) {
    struct sd_weights *w = sd_weights_new(ctx);
    if (w) sd_weights_set_deferred(w, 1);
    return w;
}

int sd_ldm_load_unet_vae(struct sd_ctx *ctx, struct sd_model *m, struct sd_st_file *f) {
    /* layers_per_block: the first downsampler is input_blocks.(L+1).0.op */
    struct rename_ctx un = {2};
    for (int k = 1; k < 16; k++) {
        char name[128];
        snprintf(name, sizeof name, "model.diffusion_model.input_blocks.%d.0.op.weight", k);
        if (sd_st_find(f, name)) { un.n = k - 1; break; }
    }
    int rc;
    if (!(m->un = sd_deferred_weights(ctx))) return ctx->status;
    if ((rc = sd_weights_add_file(m->un, f, "model.diffusion_model.", sd_ren_unet, &un))) return rc;
    if (sd_has_prefix_key(f, "first_stage_model.")) {
        struct rename_ctx va = {sd_count_indexed(f, "first_stage_model.decoder.up.%d.block.0.conv1.weight")};
        if (!(m->va = sd_deferred_weights(ctx))) return ctx->status;
        if ((rc = sd_weights_add_file(m->va, f, "first_stage_model.", sd_ren_vae, &va))) return rc;
        sd_vae_attn_to_linear(m->va);
    }
    return SD_OK;
}

const char *sd_ren_unet(const char *name, char *buf, size_t size, void *user) {
    return sd_keys_unet_from_ldm(name, ((struct rename_ctx *)user)->n, buf, size) ? buf : NULL;
}
const char *sd_ren_vae(const char *name, char *buf, size_t size, void *user) {
    return sd_keys_vae_from_ldm(name, ((struct rename_ctx *)user)->n, buf, size) ? buf : NULL;
}
const char *sd_ren_clip1(const char *name, char *buf, size_t size, void *user) {
    (void)user;
    return sd_keys_clip_sd1_from_ldm(name, buf, size) ? buf : NULL;
}
static const char *ren_openclip(const char *name, char *buf, size_t size, void *user) {
    return sd_keys_clip_openclip(name, ((struct rename_ctx *)user)->n, buf, size) ? buf : NULL;
}
const char *sd_ren_diffusers_clip(const char *name, char *buf, size_t size, void *user) {
    (void)user;
    if (strstr(name, "position_ids")) return NULL;
    return sd_keys_clip_sd1_from_ldm(name, buf, size) ? buf : NULL;
}

bool sd_has_prefix_key(const struct sd_st_file *f, const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < f->n_tensors; i++)
        if (strncmp(f->tensors[i].name, prefix, n) == 0) return true;
    return false;
}

int sd_count_indexed(const struct sd_st_file *f, const char *fmt) {
    char name[256];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!sd_st_find(f, name)) return n;
    }
}

int sd_keep_file(struct sd_ctx *ctx, struct sd_model *m, struct sd_st_file *f) {
    if (m->n_files == (int)(sizeof m->files / sizeof m->files[0])) {
        sd_st_close(f);
        return sd_errorf(ctx, SD_ERR_INVALID, "model: too many weight files");
    }
    m->files[m->n_files++] = f;
    return SD_OK;
}

/* SD2 OpenCLIP: in_proj [3d, d] -> q/k/v [d, d] slices. */
int sd_split_in_proj(struct sd_ctx *ctx, struct sd_weights *w, int layers, int64_t d) {
    static const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
    char src[256], dst[256];
    for (int l = 0; l < layers; l++)
        for (int part = 0; part < 2; part++)
            for (int i = 0; i < 3; i++) {
                snprintf(src, sizeof src, "text_model.encoder.layers.%d.self_attn.in_proj.%s", l, part ? "bias" : "weight");
                snprintf(dst, sizeof dst, "text_model.encoder.layers.%d.self_attn.%s.%s", l, qkv[i], part ? "bias" : "weight");
                if (!sd_weights_add_slice(w, dst, src, i * d, (i + 1) * d)) return ctx->status ? ctx->status : SD_ERR_FORMAT;
            }
    return SD_OK;
}

/* LDM VAE attention projections are 1x1 convs [C, C, 1, 1]; the graph uses
 * them as Linear [C, C] (same bytes). */
void sd_vae_attn_to_linear(struct sd_weights *w) {
    static const char *parts[2] = {"encoder", "decoder"};
    static const char *names[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    char n[160];
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 4; i++) {
            snprintf(n, sizeof n, "%s.mid_block.attentions.0.%s.weight", parts[p], names[i]);
            int64_t d[SD_ST_MAX_DIMS];
            if (sd_weights_shape(w, n, d) == 4 && d[2] == 1 && d[3] == 1)
                sd_weights_reshape(w, n, 2, (int64_t[]){d[0], d[1]});
        }
}

/* The single file's own preview map: metadata sdrt_latent_rgb, a JSON object
 * {"factors": [[r, g, b] x 4], "bias": [r, g, b]} (sd_model.latent_rgb). */
static int read_latent_rgb(struct sd_ctx *ctx, struct sd_model *m, const struct sd_st_file *f, const char *path) {
    const char *s = sd_st_metadata(f, "sdrt_latent_rgb");
    if (!s) return SD_OK;
    char where[1100];
    snprintf(where, sizeof where, "%s: metadata sdrt_latent_rgb", path);
    struct sd_json *j = NULL;
    int rc = sd_json_parse(ctx, s, strlen(s), &j);
    if (rc) return sd_error_wrap(ctx, "%s", where);
    if (sd_json_type(j) != SD_JSON_OBJ)
        rc = sd_errorf(ctx, SD_ERR_FORMAT, "%s: expected a JSON object {\"factors\": ..., \"bias\": ...}", where);
    else
        rc = sd_latent_rgb_read(ctx, sd_json_get(j, "factors"), sd_json_get(j, "bias"), where, &m->latent_rgb);
    m->has_latent_rgb = rc == SD_OK;
    sd_json_free(j);
    return rc;
}

static int load_single_file(struct sd_ctx *ctx, struct sd_model *m, const char *path) {
    struct sd_st_file *f = NULL;
    int rc = sd_st_open(ctx, path, &f);
    if (rc) return rc;
    if ((rc = sd_keep_file(ctx, m, f))) return rc;
    m->single_file = 1;
    if ((rc = read_latent_rgb(ctx, m, f, path))) return rc;
    if (sd_has_prefix_key(f, "conditioner.embedders.") || sd_st_find(f, "model.diffusion_model.label_emb.0.0.weight"))
        return sd_sdxl_load_single(ctx, m, f, path);
    const struct sd_st_tensor *cin = sd_st_find(f, "model.diffusion_model.input_blocks.0.0.weight");
    if (!cin)
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED,
                         "%s: not a Stable Diffusion checkpoint (no tensor 'model.diffusion_model.input_blocks.0.0.weight')", path);
    if (cin->n_dims != 4)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor 'model.diffusion_model.input_blocks.0.0.weight' has %d dims, expected 4",
                         path, cin->n_dims);
    m->file_dtype = cin->type;
    bool openclip = sd_st_find(f, "cond_stage_model.model.token_embedding.weight") != NULL;
    bool hfclip = sd_has_prefix_key(f, "cond_stage_model.transformer.");
    bool inpaint = cin->shape[1] == 9;
    bool v2 = openclip;
    if (openclip || hfclip) {
        snprintf(m->family_why, sizeof m->family_why, "text encoder keys %s",
                 openclip ? "cond_stage_model.model.* (OpenCLIP, SD 2.x)" : "cond_stage_model.transformer.* (OpenAI CLIP, SD 1.x)");
    } else { /* no text encoder: guess from the context width */
        const struct sd_st_tensor *k =
            sd_st_find(f, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight");
        v2 = k && k->n_dims == 2 && k->shape[1] == 1024;
        snprintf(m->family_why, sizeof m->family_why, "no text encoder; UNet context width %lld",
                 k && k->n_dims == 2 ? (long long)k->shape[1] : 0LL);
    }
    m->family = v2 ? (inpaint ? SD_FAMILY_SD2_INPAINT : SD_FAMILY_SD2) : (inpaint ? SD_FAMILY_SD1_INPAINT : SD_FAMILY_SD1);
    sd_model_config_defaults(m);

    if ((rc = sd_ldm_load_unet_vae(ctx, m, f))) return rc;
    if (hfclip) {
        if (!(m->te = sd_deferred_weights(ctx))) return ctx->status;
        if ((rc = sd_weights_add_file(m->te, f, "cond_stage_model.transformer.", sd_ren_clip1, NULL))) return rc;
    } else if (openclip) {
        int stored = sd_count_indexed(f, "cond_stage_model.model.transformer.resblocks.%d.ln_1.weight");
        struct rename_ctx oc = {stored > 1 ? stored - 1 : stored};
        if (!(m->te = sd_deferred_weights(ctx))) return ctx->status;
        if ((rc = sd_weights_add_file(m->te, f, "cond_stage_model.model.", ren_openclip, &oc))) return rc;
        const struct sd_st_tensor *tok = sd_st_find(f, "cond_stage_model.model.token_embedding.weight");
        if ((rc = sd_split_in_proj(ctx, m->te, oc.n, tok->n_dims == 2 ? tok->shape[1] : 0))) return rc;
    }
    return SD_OK;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Opens dir/sub/<first existing name> into *w with the given renamer. */
int sd_load_component(struct sd_ctx *ctx, struct sd_model *m, const char *dir, const char *sub,
                          const char *const *names, sd_weights_rename_fn ren, void *user, struct sd_weights **w) {
    char path[2048];
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, sub, names[i]);
        if (!file_exists(path)) continue;
        struct sd_st_file *f = NULL;
        int rc = sd_st_open(ctx, path, &f);
        if (rc) return rc;
        if ((rc = sd_keep_file(ctx, m, f))) return rc;
        if (!(*w = sd_deferred_weights(ctx))) return ctx->status;
        if (m->file_dtype == SD_F32 && f->n_tensors) m->file_dtype = f->tensors[0].type;
        return sd_weights_add_file(*w, f, NULL, ren, user);
    }
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, strcmp(sub, "text_encoder") ? "diffusion_pytorch_model.bin" : "pytorch_model.bin");
    if (file_exists(path))
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s: PyTorch .bin weights are not supported; use the .safetensors files", path);
    return sd_errorf(ctx, SD_ERR_IO, "%s: no %s/%s (or .fp16 variant) in the diffusers folder", dir, sub, names[0]);
}

/* SD2 or not, for a diffusers folder: the text encoder's config (hidden_act:
 * quick_gelu = OpenAI CLIP ViT-L, gelu = OpenCLIP), else the tokenizer's pad
 * token (SD1 pads with <|endoftext|>, SD2 with "!"), else the text encoder's
 * width (768 / 1024), else the UNet's context width; the family's name for
 * the evidence goes to m->family_why. */
static bool family_of_folder(struct sd_ctx *ctx, struct sd_model *m, const char *dir, int *rc) {
    enum sd_family f = sd_model_family_from_text_config(ctx, dir, m->family_why, sizeof m->family_why, rc);
    if (*rc || f != SD_FAMILY_UNKNOWN) return f == SD_FAMILY_SD2;
    struct sd_model probe = {0};
    probe.clip.pad_id = -1;
    if ((*rc = sd_model_read_configs(ctx, &probe, dir))) return false;
    if (probe.clip.pad_id >= 0) {
        snprintf(m->family_why, sizeof m->family_why, "tokenizer pad token %s", probe.clip.pad_id ? "<|endoftext|>" : "\"!\"");
        return probe.clip.pad_id == 0;
    }
    int64_t d[SD_ST_MAX_DIMS] = {0};
    if (m->te && sd_weights_shape(m->te, "text_model.embeddings.token_embedding.weight", d) == 2 &&
        (d[1] == 768 || d[1] == 1024)) {
        snprintf(m->family_why, sizeof m->family_why, "text encoder width %lld", (long long)d[1]);
        return d[1] == 1024;
    }
    bool v2 = sd_weights_shape(m->un, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", d) == 2 &&
              d[1] == 1024;
    snprintf(m->family_why, sizeof m->family_why, "UNet context width %lld (no text encoder config)", (long long)d[1]);
    return v2;
}

static int load_diffusers(struct sd_ctx *ctx, struct sd_model *m, const char *dir) {
    static const char *const unet_names[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", NULL};
    static const char *const te_names[] = {"model.safetensors", "model.fp16.safetensors", NULL};
    char p[2048];
    snprintf(p, sizeof p, "%s/unet", dir);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s: not a diffusers Stable Diffusion folder (no unet/)", dir);
    m->file_dtype = SD_F32;
    int rc;
    if ((rc = sd_load_component(ctx, m, dir, "unet", unet_names, NULL, NULL, &m->un))) return rc;
    snprintf(p, sizeof p, "%s/text_encoder_2", dir);
    if (stat(p, &st) == 0 || sd_weights_find(m->un, "add_embedding.linear_1.weight")) return sd_sdxl_load_folder(ctx, m, dir);
    int64_t dims[SD_ST_MAX_DIMS];
    int nd = sd_weights_shape(m->un, "conv_in.weight", dims);
    if (nd != 4) return sd_errorf(ctx, SD_ERR_FORMAT, "%s: unet has no 4-d 'conv_in.weight'", dir);
    if ((rc = sd_load_component(ctx, m, dir, "vae", unet_names, NULL, NULL, &m->va))) return rc;
    sd_vae_attn_to_linear(m->va);
    if ((rc = sd_load_component(ctx, m, dir, "text_encoder", te_names, sd_ren_diffusers_clip, NULL, &m->te))) return rc;
    /* Family: inpainting from conv_in; SD1 vs SD2 from the text encoder (the
     * UNet's projection kind says nothing: SD1 finetunes with linear
     * projections exist), see family_of_folder. */
    bool v2 = family_of_folder(ctx, m, dir, &rc);
    if (rc) return rc;
    bool inpaint = dims[1] == 9;
    m->family = v2 ? (inpaint ? SD_FAMILY_SD2_INPAINT : SD_FAMILY_SD2) : (inpaint ? SD_FAMILY_SD1_INPAINT : SD_FAMILY_SD1);
    sd_model_config_defaults(m);
    return SD_OK;
}

int sd_model_load(struct sd_ctx *ctx, const char *path, const char *config_dir, struct sd_model **out) {
    *out = NULL;
    struct sd_model *m = calloc(1, sizeof *m);
    if (!m) return sd_errorf(ctx, SD_ERR_NOMEM, "model: out of memory");
    snprintf(m->path, sizeof m->path, "%s", path);
    m->steps_offset = -1;
    double t0 = sd_time_s();
    struct stat st;
    int rc;
    if (stat(path, &st) != 0) {
        rc = sd_errorf(ctx, SD_ERR_IO, "model %s: no such file or directory", path);
        goto fail;
    }
    rc = S_ISDIR(st.st_mode) ? load_diffusers(ctx, m, path) : load_single_file(ctx, m, path);
    if (rc) goto fail;
    if (S_ISDIR(st.st_mode) && (rc = sd_model_read_configs(ctx, m, path))) goto fail;
    /* Single files do not say their prediction type: detect it (a --config
     * folder's scheduler_config.json with prediction_type still decides). */
    if (!S_ISDIR(st.st_mode)) sd_model_detect_prediction(m);
    if (config_dir && (rc = sd_model_read_configs(ctx, m, config_dir))) goto fail;
    if (!m->prediction_why[0]) snprintf(m->prediction_why, sizeof m->prediction_why, "no scheduler config: epsilon (default)");
    if (sd_family_is_xl(m->family) && (rc = sd_sdxl_read_configs(ctx, m, S_ISDIR(st.st_mode) ? path : NULL, config_dir)))
        goto fail;
    if ((rc = sd_model_infer_unet(ctx, &m->unet, m->un))) goto fail;
    if (m->va && (rc = sd_model_infer_vae(ctx, &m->vae, m->va))) goto fail;
    if (m->te && (rc = sd_model_infer_clip(ctx, &m->clip, m->te))) goto fail;
    if (sd_family_is_xl(m->family) && (rc = sd_sdxl_finish(ctx, m))) goto fail;
    /* The UNet works in the VAE's latent space: C channels, or 2C+1 for
     * inpainting (latent, mask, masked-image latent). */
    if (m->va) {
        const int lc = m->vae.latent_channels, in = m->unet.in_channels;
        if ((in != lc && in != 2 * lc + 1) || m->unet.out_channels != lc) {
            rc = sd_errorf(ctx, SD_ERR_UNSUPPORTED,
                           "%s: the UNet (%d input, %d output channels) does not fit the VAE's %d latent channels "
                           "(expected %d or %d inputs and %d outputs)",
                           path, in, m->unet.out_channels, lc, lc, 2 * lc + 1, lc);
            goto fail;
        }
    }
    /* What the shapes cannot tell must still fit them: a model whose config
     * differs from its family's defaults needs its config.json. */
    for (int i = 0; i < m->unet.n_levels; i++)
        if (m->unet.norm_groups < 1 || m->unet.block_out[i] % m->unet.norm_groups ||
            (m->unet.head_dim > 0 && m->unet.block_out[i] % m->unet.head_dim)) {
            rc = sd_errorf(ctx, SD_ERR_UNSUPPORTED,
                           "%s: UNet width %d does not fit %d GroupNorm groups%s; this is not a standard %s "
                           "configuration: pass the diffusers config folder with --config DIR",
                           path, m->unet.block_out[i], m->unet.norm_groups,
                           m->unet.head_dim > 0 ? " / attention head dim 64" : "", sd_family_name(m->family));
            goto fail;
        }
    m->load_seconds = sd_time_s() - t0;
    static _Atomic uint64_t next_id = 1;
    m->id = next_id++;
    *out = m;
    return SD_OK;
fail:
    sd_model_free(m);
    return rc;
}

void sd_model_free(struct sd_model *m) {
    if (!m) return;
    sd_weights_free(m->un);
    sd_weights_free(m->va);
    sd_weights_free(m->te);
    sd_weights_free(m->te2);
    for (int i = 0; i < m->n_files; i++) sd_st_close(m->files[i]);
    free(m);
}

int sd_model_load_weights(struct sd_model *m) {
    int rc;
    if (m->un && (rc = sd_weights_load_all(m->un))) return rc;
    if (m->va && (rc = sd_weights_load_all(m->va))) return rc;
    if (m->te && (rc = sd_weights_load_all(m->te))) return rc;
    if (m->te2 && (rc = sd_weights_load_all(m->te2))) return rc;
    return SD_OK;
}
