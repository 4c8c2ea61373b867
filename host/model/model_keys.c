/* model_keys.c - original (LDM) checkpoint key names -> diffusers names
 * (sd-reference §2.4, §3.6, §4.5). Pure string functions: each takes a key
 * with its component prefix already stripped and writes the diffusers name,
 * returning 1, or returns 0 for keys the runtime does not use (EMA copies,
 * training buffers, loss weights, OpenCLIP extras).
 */
#include "model_keys.h"

#include <stdio.h>
#include <string.h>

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Rewrites a leading "<from>" of s into "<to>"; returns the rest pointer. */
static const char *eat(const char *s, const char *from) { return starts(s, from) ? s + strlen(from) : NULL; }

static void resnet_suffix(const char *rest, char *out, size_t n) {
    static const char *map[][2] = {
        {"in_layers.0.", "norm1."},      {"in_layers.2.", "conv1."},   {"emb_layers.1.", "time_emb_proj."},
        {"out_layers.0.", "norm2."},     {"out_layers.3.", "conv2."},  {"skip_connection.", "conv_shortcut."},
        {"nin_shortcut.", "conv_shortcut."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (starts(rest, map[i][0])) {
            snprintf(out, n, "%s%s", map[i][1], rest + strlen(map[i][0]));
            return;
        }
    snprintf(out, n, "%s", rest);
}

int sd_keys_unet_from_ldm(const char *k, int layers_per_block, char *out, size_t n) {
    const int L = layers_per_block;
    int a, b, used = 0;
    char suf[224];
    const char *r;
    if ((r = eat(k, "time_embed.0."))) return snprintf(out, n, "time_embedding.linear_1.%s", r), 1;
    if ((r = eat(k, "time_embed.2."))) return snprintf(out, n, "time_embedding.linear_2.%s", r), 1;
    if ((r = eat(k, "input_blocks.0.0."))) return snprintf(out, n, "conv_in.%s", r), 1;
    if ((r = eat(k, "label_emb.0.0."))) return snprintf(out, n, "add_embedding.linear_1.%s", r), 1; /* SDXL */
    if ((r = eat(k, "label_emb.0.2."))) return snprintf(out, n, "add_embedding.linear_2.%s", r), 1;
    if ((r = eat(k, "out.0."))) return snprintf(out, n, "conv_norm_out.%s", r), 1;
    if ((r = eat(k, "out.2."))) return snprintf(out, n, "conv_out.%s", r), 1;
    if (sscanf(k, "input_blocks.%d.%d.%n", &a, &b, &used) == 2 && used > 0) {
        r = k + used;
        int level = (a - 1) / (L + 1), layer = (a - 1) % (L + 1);
        if (layer == L) {
            if ((r = eat(r, "op."))) return snprintf(out, n, "down_blocks.%d.downsamplers.0.conv.%s", level, r), 1;
            return 0;
        }
        if (b == 0) {
            resnet_suffix(r, suf, sizeof suf);
            return snprintf(out, n, "down_blocks.%d.resnets.%d.%s", level, layer, suf), 1;
        }
        return snprintf(out, n, "down_blocks.%d.attentions.%d.%s", level, layer, r), 1;
    }
    if (sscanf(k, "middle_block.%d.%n", &a, &used) == 1 && used > 0) {
        r = k + used;
        if (a == 1) return snprintf(out, n, "mid_block.attentions.0.%s", r), 1;
        resnet_suffix(r, suf, sizeof suf);
        return snprintf(out, n, "mid_block.resnets.%d.%s", a / 2, suf), 1;
    }
    if (sscanf(k, "output_blocks.%d.%d.%n", &a, &b, &used) == 2 && used > 0) {
        r = k + used;
        int up = a / (L + 1), layer = a % (L + 1);
        if (b == 0) {
            resnet_suffix(r, suf, sizeof suf);
            return snprintf(out, n, "up_blocks.%d.resnets.%d.%s", up, layer, suf), 1;
        }
        if (starts(r, "conv.")) return snprintf(out, n, "up_blocks.%d.upsamplers.0.%s", up, r), 1;
        return snprintf(out, n, "up_blocks.%d.attentions.%d.%s", up, layer, r), 1;
    }
    return 0;
}

static void vae_attn_suffix(const char *rest, char *out, size_t n) {
    static const char *map[][2] = {
        {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."},
        /* legacy diffusers names */
        {"query.", "to_q."}, {"key.", "to_k."}, {"value.", "to_v."}, {"proj_attn.", "to_out.0."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (starts(rest, map[i][0])) {
            snprintf(out, n, "%s%s", map[i][1], rest + strlen(map[i][0]));
            return;
        }
    snprintf(out, n, "%s", rest);
}

static int vae_mid(const char *part, const char *r, char *out, size_t n) {
    char suf[224];
    const char *s;
    if ((s = eat(r, "block_1."))) {
        resnet_suffix(s, suf, sizeof suf);
        return snprintf(out, n, "%s.mid_block.resnets.0.%s", part, suf), 1;
    }
    if ((s = eat(r, "block_2."))) {
        resnet_suffix(s, suf, sizeof suf);
        return snprintf(out, n, "%s.mid_block.resnets.1.%s", part, suf), 1;
    }
    if ((s = eat(r, "attn_1."))) {
        vae_attn_suffix(s, suf, sizeof suf);
        return snprintf(out, n, "%s.mid_block.attentions.0.%s", part, suf), 1;
    }
    return 0;
}

int sd_keys_vae_from_ldm(const char *k, int n_levels, char *out, size_t n) {
    int a, b, used = 0;
    char suf[224];
    const char *r;
    if (starts(k, "loss.") || starts(k, "model_ema.")) return 0;
    if (starts(k, "quant_conv.") || starts(k, "post_quant_conv.") || starts(k, "encoder.conv_in.") ||
        starts(k, "encoder.conv_out.") || starts(k, "decoder.conv_in.") || starts(k, "decoder.conv_out."))
        return snprintf(out, n, "%s", k), 1;
    if ((r = eat(k, "encoder.norm_out."))) return snprintf(out, n, "encoder.conv_norm_out.%s", r), 1;
    if ((r = eat(k, "decoder.norm_out."))) return snprintf(out, n, "decoder.conv_norm_out.%s", r), 1;
    if ((r = eat(k, "encoder.mid."))) return vae_mid("encoder", r, out, n);
    if ((r = eat(k, "decoder.mid."))) return vae_mid("decoder", r, out, n);
    /* diffusers-named mid attention with legacy names */
    if ((r = eat(k, "encoder.mid_block.attentions.0.")) || (r = eat(k, "decoder.mid_block.attentions.0."))) {
        vae_attn_suffix(r, suf, sizeof suf);
        return snprintf(out, n, "%.*s.mid_block.attentions.0.%s", 7, k, suf), 1;
    }
    if (sscanf(k, "encoder.down.%d.block.%d.%n", &a, &b, &used) == 2 && used > 0) {
        resnet_suffix(k + used, suf, sizeof suf);
        return snprintf(out, n, "encoder.down_blocks.%d.resnets.%d.%s", a, b, suf), 1;
    }
    if (sscanf(k, "encoder.down.%d.downsample.conv.%n", &a, &used) == 1 && used > 0)
        return snprintf(out, n, "encoder.down_blocks.%d.downsamplers.0.conv.%s", a, k + used), 1;
    if (sscanf(k, "decoder.up.%d.block.%d.%n", &a, &b, &used) == 2 && used > 0) {
        resnet_suffix(k + used, suf, sizeof suf);
        return snprintf(out, n, "decoder.up_blocks.%d.resnets.%d.%s", n_levels - 1 - a, b, suf), 1;
    }
    if (sscanf(k, "decoder.up.%d.upsample.conv.%n", &a, &used) == 1 && used > 0)
        return snprintf(out, n, "decoder.up_blocks.%d.upsamplers.0.conv.%s", n_levels - 1 - a, k + used), 1;
    /* already diffusers-named (standalone diffusers VAE) */
    if (starts(k, "encoder.") || starts(k, "decoder.")) return snprintf(out, n, "%s", k), 1;
    return 0;
}

int sd_keys_clip_sd1_from_ldm(const char *k, char *out, size_t n) {
    if (strstr(k, "position_ids")) return 0;
    if (starts(k, "text_model.")) return snprintf(out, n, "%s", k), 1;
    if (starts(k, "embeddings.") || starts(k, "encoder.") || starts(k, "final_layer_norm."))
        return snprintf(out, n, "text_model.%s", k), 1;
    return 0;
}

int sd_keys_clip_openclip(const char *k, int n_layers_used, char *out, size_t n) {
    int l, used = 0;
    const char *r;
    if (strcmp(k, "token_embedding.weight") == 0)
        return snprintf(out, n, "text_model.embeddings.token_embedding.weight"), 1;
    if (strcmp(k, "positional_embedding") == 0)
        return snprintf(out, n, "text_model.embeddings.position_embedding.weight"), 1;
    if ((r = eat(k, "ln_final."))) return snprintf(out, n, "text_model.final_layer_norm.%s", r), 1;
    if (sscanf(k, "transformer.resblocks.%d.%n", &l, &used) == 1 && used > 0) {
        if (l >= n_layers_used) return 0;
        r = k + used;
        static const char *map[][2] = {
            {"ln_1.", "layer_norm1."},           {"ln_2.", "layer_norm2."},  {"attn.out_proj.", "self_attn.out_proj."},
            {"mlp.c_fc.", "mlp.fc1."},           {"mlp.c_proj.", "mlp.fc2."},
            {"attn.in_proj_weight", "self_attn.in_proj.weight"}, {"attn.in_proj_bias", "self_attn.in_proj.bias"},
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (starts(r, map[i][0]))
                return snprintf(out, n, "text_model.encoder.layers.%d.%s%s", l, map[i][1], r + strlen(map[i][0])), 1;
    }
    return 0;
}
