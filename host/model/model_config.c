/* model_config.c - model configs: family defaults, diffusers config.json,
 * and the structural numbers read from the weights themselves.
 *
 * Structure (levels, widths, layers per block, which levels have attention,
 * in/out channels, context width, linear vs conv projections) is always
 * inferred from tensor names and shapes, so any SD-architecture model loads
 * whatever its size. What shapes cannot tell (attention heads, GroupNorm
 * groups, eps, activation, VAE scaling factor) comes from the diffusers
 * config.json files when the model has them, else from the family defaults.
 */
#include "model_util.h"
#include "model_load_int.h"
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sd_family_name(enum sd_family f) {
    switch (f) {
    case SD_FAMILY_SD1: return "SD1.x";
    case SD_FAMILY_SD1_INPAINT: return "SD1.x inpainting";
    case SD_FAMILY_SD2: return "SD2.x";
    case SD_FAMILY_SD2_INPAINT: return "SD2.x inpainting";
    case SD_FAMILY_SDXL: return "SDXL base";
    case SD_FAMILY_SDXL_REFINER: return "SDXL refiner";
    case SD_FAMILY_SDXL_INPAINT: return "SDXL inpainting";
    default: return "unknown";
    }
}

static bool is_sd2(enum sd_family f) { return f == SD_FAMILY_SD2 || f == SD_FAMILY_SD2_INPAINT; }

void sd_model_config_defaults(struct sd_model *m) {
    bool v2 = is_sd2(m->family);
    m->clip = (struct sd_clip_config){
        .hidden = v2 ? 1024 : 768, .layers = v2 ? 23 : 12, .heads = v2 ? 16 : 12, .intermediate = v2 ? 4096 : 3072,
        .max_pos = 77, .vocab = 49408, .quick_gelu = !v2, .eps = 1e-5f, .pad_id = v2 ? 0 : 49407,
    };
    memset(&m->unet, 0, sizeof m->unet);
    m->unet.norm_groups = 32;
    m->unet.norm_eps = 1e-5f;
    for (int i = 0; i < SD_MAX_LEVELS; i++) m->unet.heads[i] = 8;
    m->unet.head_dim = v2 ? 64 : 0;
    memset(&m->vae, 0, sizeof m->vae);
    m->vae.norm_groups = 32;
    m->vae.scaling_factor = 0.18215f;
    if (sd_family_is_xl(m->family)) { /* CLIP ViT-L above; OpenCLIP ViT-bigG/14; 64-wide heads; SDXL VAE */
        m->clip2 = (struct sd_clip_config){
            .hidden = 1280, .layers = 32, .heads = 20, .intermediate = 5120, .max_pos = 77, .vocab = 49408,
            .quick_gelu = 0, .eps = 1e-5f, .pad_id = 0, .projection = 1280,
        };
        m->unet.head_dim = 64;
        m->unet.add_time_dim = 256;
        m->vae.scaling_factor = 0.13025f;
    }
}

static const struct sd_tensor *find(struct sd_weights *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const struct sd_tensor *find(struct sd_weights *w, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return w ? sd_weights_find(w, name) : NULL;
}

/* Size of PyTorch dim d of a weight. */
static int64_t dim(const struct sd_tensor *t, int d) { return t ? sd_tensor_dim(t, d) : 0; }

int sd_model_infer_unet(struct sd_ctx *ctx, struct sd_unet_config *c, struct sd_weights *w) {
    const struct sd_tensor *t;
    if (!(t = find(w, "conv_in.weight"))) return sd_errorf(ctx, SD_ERR_FORMAT, "unet: missing tensor 'conv_in.weight'");
    c->in_channels = (int)dim(t, 1);
    if (!(t = find(w, "conv_out.weight"))) return sd_errorf(ctx, SD_ERR_FORMAT, "unet: missing tensor 'conv_out.weight'");
    c->out_channels = (int)dim(t, 0);
    int nl = 0;
    while (nl < SD_MAX_LEVELS && (t = find(w, "down_blocks.%d.resnets.0.conv1.weight", nl))) c->block_out[nl++] = (int)dim(t, 0);
    if (nl == 0) return sd_errorf(ctx, SD_ERR_FORMAT, "unet: missing tensor 'down_blocks.0.resnets.0.conv1.weight'");
    c->n_levels = nl;
    int L = 0;
    while (find(w, "down_blocks.0.resnets.%d.conv1.weight", L)) L++;
    c->layers_per_block = L;
    for (int i = 0; i < nl; i++) {
        c->down_attn[i] = find(w, "down_blocks.%d.attentions.0.norm.weight", i) != NULL;
        c->up_attn[i] = find(w, "up_blocks.%d.attentions.0.norm.weight", i) != NULL;
    }
    if (!(t = find(w, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")))
        return sd_errorf(ctx, SD_ERR_FORMAT, "unet: missing tensor 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight'");
    c->context_dim = (int)dim(t, 1);
    t = find(w, "mid_block.attentions.0.proj_in.weight");
    c->linear_proj = t && t->n_dims == 2;
    if (!(t = find(w, "time_embedding.linear_1.weight")))
        return sd_errorf(ctx, SD_ERR_FORMAT, "unet: missing tensor 'time_embedding.linear_1.weight'");
    c->time_embed_dim = (int)dim(t, 0);
    return SD_OK;
}

int sd_model_infer_vae(struct sd_ctx *ctx, struct sd_vae_config *c, struct sd_weights *w) {
    const struct sd_tensor *t;
    c->has_decoder = find(w, "decoder.conv_in.weight") != NULL;
    c->has_encoder = find(w, "encoder.conv_in.weight") != NULL;
    if (!c->has_decoder) return sd_errorf(ctx, SD_ERR_FORMAT, "vae: missing tensor 'decoder.conv_in.weight'");
    c->latent_channels = (int)dim(find(w, "decoder.conv_in.weight"), 1);
    int nl = 0;
    while (nl <= SD_MAX_LEVELS && (t = find(w, "decoder.up_blocks.%d.resnets.0.conv1.weight", nl))) nl++;
    if (nl == 0) return sd_errorf(ctx, SD_ERR_FORMAT, "vae: missing tensor 'decoder.up_blocks.0.resnets.0.conv1.weight'");
    if (nl > SD_MAX_LEVELS)
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "vae: more than %d decoder levels are not supported", SD_MAX_LEVELS);
    c->n_levels = nl;
    /* Any depth works (the latent is image / 2^(levels-1)) as long as the
     * encoder has as many levels as the decoder. */
    if (c->has_encoder && (!find(w, "encoder.down_blocks.%d.resnets.0.conv1.weight", nl - 1) ||
                           find(w, "encoder.down_blocks.%d.resnets.0.conv1.weight", nl)))
        return sd_errorf(ctx, SD_ERR_FORMAT, "vae: the encoder does not have the decoder's %d levels", nl);
    for (int i = 0; i < nl; i++) /* encoder order: widths of decoder up blocks reversed */
        c->block_out[i] = (int)dim(find(w, "decoder.up_blocks.%d.resnets.0.conv1.weight", nl - 1 - i), 0);
    int L = 0;
    while (find(w, "decoder.up_blocks.0.resnets.%d.conv1.weight", L)) L++;
    c->layers_per_block = L - 1;
    if (c->layers_per_block < 1) return sd_errorf(ctx, SD_ERR_FORMAT, "vae: decoder up blocks have %d resnets", L);
    c->in_channels = 3;
    return SD_OK;
}

int sd_model_infer_clip(struct sd_ctx *ctx, struct sd_clip_config *c, struct sd_weights *w) {
    const struct sd_tensor *t;
    if (!(t = find(w, "text_model.embeddings.token_embedding.weight")))
        return sd_errorf(ctx, SD_ERR_FORMAT, "text encoder: missing tensor 'text_model.embeddings.token_embedding.weight'");
    c->vocab = (int)dim(t, 0);
    c->hidden = (int)dim(t, 1);
    if ((t = find(w, "text_model.embeddings.position_embedding.weight"))) c->max_pos = (int)dim(t, 0);
    int l = 0;
    while (find(w, "text_model.encoder.layers.%d.layer_norm1.weight", l)) l++;
    if (l == 0) return sd_errorf(ctx, SD_ERR_FORMAT, "text encoder: no layers (text_model.encoder.layers.0.*)");
    c->layers = l;
    if ((t = find(w, "text_model.encoder.layers.0.mlp.fc1.weight"))) c->intermediate = (int)dim(t, 0);
    if (c->hidden % c->heads) c->heads = c->hidden / 64 > 0 ? c->hidden / 64 : 1;
    return SD_OK;
}

/* Reads dir/name into a JSON DOM; returns NULL (no error) if absent. */
struct sd_json *sd_model_read_json(struct sd_ctx *ctx, const char *dir, const char *name, int *rc) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    *rc = SD_OK;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n > 0 && n < (64 << 20) ? malloc((size_t)n) : NULL;
    struct sd_json *doc = NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        *rc = sd_errorf(ctx, SD_ERR_IO, "cannot read %s", path);
    } else if ((*rc = sd_json_parse(ctx, buf, (size_t)n, &doc)) != SD_OK) {
        sd_error_wrap(ctx, "%s", path);
    }
    free(buf);
    fclose(f);
    return doc;
}

static void int_list(const struct sd_json *v, int *out, int n) {
    if (!v) return;
    if (sd_json_type(v) == SD_JSON_NUM) {
        for (int i = 0; i < n; i++) out[i] = (int)sd_json_int(v, out[i]);
    } else {
        for (int i = 0; i < n && i < (int)sd_json_len(v); i++) out[i] = (int)sd_json_int(sd_json_at(v, (size_t)i), out[i]);
    }
}

/* scheduler_config.json: prediction_type, timestep_spacing, steps_offset
 * (each only when present: a --config folder must not undo a detection). A
 * folder's own file without prediction_type means diffusers' default,
 * epsilon. */
static int read_scheduler(struct sd_ctx *ctx, struct sd_model *m, const char *dir, const struct sd_json *j) {
    const struct sd_json *v = sd_json_get(j, "prediction_type");
    const char *pt = sd_json_str(v);
    if (v && sd_json_type(v) != SD_JSON_NULL) {
        if (!pt || (strcmp(pt, "v_prediction") && strcmp(pt, "epsilon")))
            return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s/scheduler/scheduler_config.json: prediction_type '%s' is not "
                             "supported (epsilon, v_prediction)", dir, pt ? pt : "?");
        m->prediction = strcmp(pt, "v_prediction") == 0 ? SD_PRED_V : SD_PRED_EPSILON;
        snprintf(m->prediction_why, sizeof m->prediction_why, "%s/scheduler/scheduler_config.json: prediction_type %s",
                 dir, pt);
    } else if (!m->prediction_why[0]) {
        m->prediction = SD_PRED_EPSILON;
        snprintf(m->prediction_why, sizeof m->prediction_why,
                 "%s/scheduler/scheduler_config.json has no prediction_type (diffusers' default: epsilon)", dir);
    }
    v = sd_json_get(j, "timestep_spacing");
    if (v && sd_json_type(v) != SD_JSON_NULL) {
        const char *ts = sd_json_str(v);
        if (!ts || (strcmp(ts, "leading") && strcmp(ts, "linspace") && strcmp(ts, "trailing")))
            return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s/scheduler/scheduler_config.json: timestep_spacing '%s' is not "
                             "one of leading, linspace, trailing", dir, ts ? ts : "?");
        snprintf(m->timestep_spacing, sizeof m->timestep_spacing, "%s", ts);
    }
    v = sd_json_get(j, "steps_offset");
    if (v && sd_json_type(v) != SD_JSON_NULL) {
        int64_t so = sd_json_int(v, -1);
        if (so < 0 || so >= 1000)
            return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s/scheduler/scheduler_config.json: steps_offset %lld is not in 0..999",
                             dir, (long long)so);
        m->steps_offset = (int)so;
    }
    return SD_OK;
}

enum sd_family sd_model_family_from_text_config(struct sd_ctx *ctx, const char *dir, char *why, size_t why_size,
                                                int *rc) {
    struct sd_json *j = sd_model_read_json(ctx, dir, "text_encoder/config.json", rc);
    enum sd_family f = SD_FAMILY_UNKNOWN;
    if (!j) return f;
    const char *act = sd_json_str(sd_json_get(j, "hidden_act"));
    int64_t hidden = sd_json_int(sd_json_get(j, "hidden_size"), 0);
    if (act && (!strcmp(act, "quick_gelu") || !strcmp(act, "gelu"))) {
        f = act[0] == 'q' ? SD_FAMILY_SD1 : SD_FAMILY_SD2;
        snprintf(why, why_size, "text_encoder/config.json: hidden_act %s (%s)", act,
                 f == SD_FAMILY_SD1 ? "OpenAI CLIP ViT-L, SD 1.x" : "OpenCLIP ViT-H, SD 2.x");
    } else if (hidden == 768 || hidden == 1024) {
        f = hidden == 768 ? SD_FAMILY_SD1 : SD_FAMILY_SD2;
        snprintf(why, why_size, "text_encoder/config.json: hidden_size %lld", (long long)hidden);
    }
    sd_json_free(j);
    return f;
}

/* A config value the builders divide by or normalise with must be sane:
 * a downloaded model's config.json is untrusted input. */
static int bad_int(struct sd_ctx *ctx, const char *dir, const char *file, const char *key, int v) {
    return sd_errorf(ctx, SD_ERR_FORMAT, "%s/%s: %s must be 1..4096 (got %d)", dir, file, key, v);
}

static int check_configs(struct sd_ctx *ctx, const struct sd_model *m, const char *dir) {
    for (int i = 0; i < SD_MAX_LEVELS; i++)
        if (m->unet.heads[i] < 1 || m->unet.heads[i] > 4096)
            return bad_int(ctx, dir, "unet/config.json", "num_attention_heads", m->unet.heads[i]);
    if (m->unet.norm_groups < 1 || m->unet.norm_groups > 4096)
        return bad_int(ctx, dir, "unet/config.json", "norm_num_groups", m->unet.norm_groups);
    if (m->vae.norm_groups < 1 || m->vae.norm_groups > 4096)
        return bad_int(ctx, dir, "vae/config.json", "norm_num_groups", m->vae.norm_groups);
    if (m->clip.heads < 1 || m->clip.heads > 4096)
        return bad_int(ctx, dir, "text_encoder/config.json", "num_attention_heads", m->clip.heads);
    if (!(m->unet.norm_eps > 0 && m->unet.norm_eps < 1))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s/unet/config.json: norm_eps must be in (0, 1) (got %g)", dir,
                         (double)m->unet.norm_eps);
    if (!(m->clip.eps > 0 && m->clip.eps < 1))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s/text_encoder/config.json: layer_norm_eps must be in (0, 1) (got %g)",
                         dir, (double)m->clip.eps);
    if (m->vae.sample_size < 0 || m->vae.sample_size > 65536)
        return bad_int(ctx, dir, "vae/config.json", "sample_size", m->vae.sample_size);
    if (!isfinite(m->vae.scaling_factor) || m->vae.scaling_factor == 0)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s/vae/config.json: scaling_factor must be finite and non-zero (got %g)",
                         dir, (double)m->vae.scaling_factor);
    return SD_OK;
}

/* n finite numbers of the JSON array v into out; 0 when it is not one. */
static int num_row(const struct sd_json *v, float *out, size_t n) {
    if (sd_json_type(v) != SD_JSON_ARR || sd_json_len(v) != n) return 0;
    for (size_t i = 0; i < n; i++) {
        const struct sd_json *x = sd_json_at(v, i);
        double d = sd_json_num(x, NAN);
        if (sd_json_type(x) != SD_JSON_NUM || !isfinite(d) || fabs(d) > 1e6) return 0;
        out[i] = (float)d;
    }
    return 1;
}

int sd_latent_rgb_read(struct sd_ctx *ctx, const struct sd_json *factors, const struct sd_json *bias, const char *where,
                       struct sd_latent_rgb *out) {
    struct sd_latent_rgb r = {0};
    if (sd_json_type(factors) != SD_JSON_ARR || sd_json_len(factors) != 4) {
        if (sd_json_type(factors) == SD_JSON_ARR)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: latent_rgb_factors must be 4 rows (one per latent channel) of 3 "
                             "numbers (R, G, B), got %zu rows", where, sd_json_len(factors));
        if (!factors) return sd_errorf(ctx, SD_ERR_FORMAT, "%s: latent_rgb_bias without latent_rgb_factors", where);
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: latent_rgb_factors must be 4 rows (one per latent channel) of 3 "
                         "numbers (R, G, B), got a %s", where, sd_json_type_name(sd_json_type(factors)));
    }
    for (size_t c = 0; c < 4; c++)
        if (!num_row(sd_json_at(factors, c), r.factors[c], 3))
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: latent_rgb_factors row %zu must be 3 finite numbers (R, G, B)",
                             where, c);
    if (bias && sd_json_type(bias) != SD_JSON_NULL && !num_row(bias, r.bias, 3))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: latent_rgb_bias must be 3 finite numbers (R, G, B)", where);
    *out = r;
    return SD_OK;
}

int sd_model_read_configs(struct sd_ctx *ctx, struct sd_model *m, const char *dir) {
    int rc;
    struct sd_json *j = sd_model_read_json(ctx, dir, "unet/config.json", &rc);
    if (rc) return rc;
    if (j) {
        const struct sd_json *h = sd_json_get(j, "num_attention_heads");
        if (!h || sd_json_type(h) == SD_JSON_NULL) h = sd_json_get(j, "attention_head_dim");
        if (h) {
            int_list(h, m->unet.heads, SD_MAX_LEVELS);
            m->unet.head_dim = 0;
        }
        m->unet.norm_groups = (int)sd_json_int(sd_json_get(j, "norm_num_groups"), m->unet.norm_groups);
        m->unet.norm_eps = (float)sd_json_num(sd_json_get(j, "norm_eps"), m->unet.norm_eps);
        sd_json_free(j);
    }
    j = sd_model_read_json(ctx, dir, "vae/config.json", &rc);
    if (rc) return rc;
    if (j) {
        m->vae.norm_groups = (int)sd_json_int(sd_json_get(j, "norm_num_groups"), m->vae.norm_groups);
        m->vae.scaling_factor = (float)sd_json_num(sd_json_get(j, "scaling_factor"), m->vae.scaling_factor);
        int ss[1] = {m->vae.sample_size};
        int_list(sd_json_get(j, "sample_size"), ss, 1);
        m->vae.sample_size = ss[0];
        const struct sd_json *f = sd_json_get(j, "latent_rgb_factors"), *b = sd_json_get(j, "latent_rgb_bias");
        if ((f && sd_json_type(f) != SD_JSON_NULL) || (b && sd_json_type(b) != SD_JSON_NULL)) {
            char where[1100];
            snprintf(where, sizeof where, "%s/vae/config.json", dir);
            rc = sd_latent_rgb_read(ctx, f, b, where, &m->latent_rgb);
            m->has_latent_rgb = rc == SD_OK;
        }
        sd_json_free(j);
        if (rc) return rc;
    }
    j = sd_model_read_json(ctx, dir, "text_encoder/config.json", &rc);
    if (rc) return rc;
    if (j) {
        m->clip.heads = (int)sd_json_int(sd_json_get(j, "num_attention_heads"), m->clip.heads);
        m->clip.eps = (float)sd_json_num(sd_json_get(j, "layer_norm_eps"), m->clip.eps);
        const char *act = sd_json_str(sd_json_get(j, "hidden_act"));
        if (act) m->clip.quick_gelu = strcmp(act, "quick_gelu") == 0;
        sd_json_free(j);
    }
    j = sd_model_read_json(ctx, dir, "scheduler/scheduler_config.json", &rc);
    if (rc) return rc;
    if (j) {
        rc = read_scheduler(ctx, m, dir, j);
        sd_json_free(j);
        if (rc) return rc;
    }
    j = sd_model_read_json(ctx, dir, "tokenizer/tokenizer_config.json", &rc);
    if (rc) return rc;
    if (j) {
        const struct sd_json *pad = sd_json_get(j, "pad_token");
        const char *ps = sd_json_str(pad);
        if (!ps) ps = sd_json_str(sd_json_get(pad, "content"));
        if (ps) m->clip.pad_id = strcmp(ps, "!") == 0 ? 0 : 49407;
        sd_json_free(j);
    }
    return check_configs(ctx, m, dir);
}
