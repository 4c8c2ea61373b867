/* cmd_info.c - `sdrt info MODEL [--config DIR] [--json]`: identifies a
 * checkpoint (layout, family, dtype) and counts tensors and parameters per
 * component, reading headers only (weights load lazily). A path that is no
 * SD checkpoint but a TAESD (AutoencoderTiny folder, taesd_*.safetensors)
 * is described as one. */
#include "cli_opts.h"
#include "cmd.h"
#include "lora.h"
#include "model_load.h"
#include "taesd.h"
#include "weights.h"

#include <stdio.h>
#include <string.h>

static void component(const char *name, struct sd_weights *w, int json, int *first) {
    if (json) {
        printf("%s\"%s\": {\"tensors\": %d, \"parameters\": %lld}", *first ? "" : ", ", name, w ? sd_weights_count(w) : 0,
               (long long)(w ? sd_weights_n_params(w) : 0));
        *first = 0;
    } else if (w) {
        printf("  %-13s %5d tensors  %13lld parameters\n", name, sd_weights_count(w), (long long)sd_weights_n_params(w));
    } else {
        printf("  %-13s absent\n", name);
    }
}

struct info_opts { const char *config, *model; int json; };

static const struct cli_opt options[] = {
    {"config", 0, CLI_STR, CLI_OFF(struct info_opts, config), "DIR", "diffusers folder describing a single-file model", NULL, 0},
    {"model", 'm', CLI_STR, CLI_OFF(struct info_opts, model), "PATH", "for a LoRA file: count the modules that match this model", NULL, 0},
    {"json", 0, CLI_FLAG, CLI_OFF(struct info_opts, json), NULL, "one JSON object on stdout", NULL, 0},
    {NULL, 0, 0, 0, NULL, NULL, NULL, 0},
};

static void usage(unsigned mode, FILE *f) {
    (void)mode;
    fprintf(f, "usage: sdrt info MODEL [options]\n"
               "  MODEL  a single-file .safetensors checkpoint (LDM key names) or a diffusers folder,\n"
               "         or a LoRA / LyCORIS .safetensors (format, rank, alpha, targets; --model: matches)\n");
    cli_usage(f, options, 0);
}

/* A LoRA file: format, ranks, alphas, targets, A1111 hash; with a model,
 * how many modules match its weights. Returns the exit status. */
static int lora_info(const char *path, const struct info_opts *io) {
    struct sd_ctx ctx = {0};
    struct sd_lora_file *lf = NULL;
    struct sd_model *m = NULL;
    struct sd_lora_keymap *km = NULL;
    if (sd_lora_file_open(&ctx, path, &lf)) return fprintf(stderr, "sdrt: %s\n", ctx.msg), 1;
    if (io->model && (sd_model_load(&ctx, io->model, io->config, &m) || !(km = sd_lora_keymap_new(&ctx, m)))) {
        fprintf(stderr, "sdrt: %s\n", ctx.msg);
        sd_model_free(m);
        sd_lora_file_free(lf);
        return 1;
    }
    int kinds[4] = {0}, conv = 0, matched = 0;
    float amin = 1e30f, amax = -1e30f;
    char miss[512] = "";
    size_t mo = 0;
    for (int i = 0; i < lf->n_mods; i++) {
        const struct sd_lora_module *md = &lf->mods[i];
        kinds[md->kind]++;
        const struct sd_st_tensor *d = md->t[SD_LR_DOWN] ? md->t[SD_LR_DOWN] : md->t[SD_LR_HADA_W1B];
        conv += md->t[SD_LR_MID] || md->t[SD_LR_HADA_T1] || (d && d->n_dims == 4 && d->shape[2] * d->shape[3] > 1);
        if (md->rank) amin = md->alpha < amin ? md->alpha : amin, amax = md->alpha > amax ? md->alpha : amax;
        struct sd_lora_target t;
        int bias = md->kind == SD_LK_DIFF && !md->t[SD_LR_DIFF];
        if (km && sd_lora_keymap_find(km, md->name, bias, &t)) matched++;
        else if (km && mo < 400) mo += (size_t)snprintf(miss + mo, sizeof miss - mo, "%s%s", mo ? ", " : "", md->name);
    }
    if (amin > amax) amin = amax = 0;
    const char *alias = sd_st_metadata(lf->f, "ss_output_name");
    if (io->json) {
        printf("{\"path\": ");
        cli_json_str(stdout, path);
        printf(", \"kind\": \"lora\", \"format\": \"%s\", \"modules\": %d, \"text_encoder\": %d, \"unet\": %d, "
               "\"rank_min\": %d, \"rank_max\": %d, \"alpha_min\": %g, \"alpha_max\": %g, \"lora\": %d, \"loha\": %d, "
               "\"lokr\": %d, \"diff\": %d, \"conv_kxk\": %d, \"hash\": \"%s\"", lf->format, lf->n_mods, lf->n_te,
               lf->n_unet, lf->min_rank, lf->max_rank, (double)amin, (double)amax, kinds[SD_LK_LORA],
               kinds[SD_LK_LOHA], kinds[SD_LK_LOKR], kinds[SD_LK_DIFF], conv, sd_lora_file_hash(lf));
        if (alias) printf(", \"alias\": "), cli_json_str(stdout, alias);
        if (km) printf(", \"matched\": %d, \"unmatched\": %d", matched, lf->n_mods - matched);
        printf("}\n");
    } else {
        printf("%s\n  LoRA          %s\n  modules       %d (text encoder %d, UNet %d)\n", path, lf->format, lf->n_mods,
               lf->n_te, lf->n_unet);
        printf("  rank          %d..%d, alpha %g..%g\n", lf->min_rank, lf->max_rank, (double)amin, (double)amax);
        printf("  targets       %d LoRA (%d k x k conv), %d LoHa, %d LoKr, %d full diff\n", kinds[SD_LK_LORA], conv,
               kinds[SD_LK_LOHA], kinds[SD_LK_LOKR], kinds[SD_LK_DIFF]);
        printf("  hash          %s (A1111 Lora hashes)%s%s\n", sd_lora_file_hash(lf), alias ? ", alias " : "", alias ? alias : "");
        if (km) printf("  %s: %d modules match, %d do not%s%s\n", io->model, matched, lf->n_mods - matched,
                       matched < lf->n_mods ? ": " : "", miss);
    }
    sd_lora_keymap_free(km);
    sd_model_free(m);
    sd_lora_file_free(lf);
    return 0;
}

/* Whether path is a safetensors file whose first tensor is a LoRA key. */
static int is_lora_file(const char *path) {
    struct sd_ctx ctx = {0};
    struct sd_st_file *f = NULL;
    if (sd_st_open(&ctx, path, &f)) return 0;
    char mod[512];
    int yes = f->n_tensors > 0 && sd_lora_parse_key(f->tensors[0].name, mod, sizeof mod, NULL, NULL);
    sd_st_close(f);
    return yes;
}

int sd_cmd_info(int argc, char **argv) {
    struct info_opts io = {0};
    const char *pos[1];
    int n_pos = 0, rc = cli_parse("info", options, 0, argc, argv, &io, usage, pos, 1, &n_pos);
    if (rc) return rc == 1 ? 0 : rc;
    if (n_pos == 0) {
        fprintf(stderr, "sdrt: info: missing MODEL (see sdrt info --help)\n");
        return 2;
    }
    const char *path = pos[0], *config = io.config;
    int json = io.json;
    if (is_lora_file(path)) return lora_info(path, &io);
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    if (sd_model_load(&ctx, path, config, &m) != SD_OK) {
        struct sd_ctx tctx = {0};
        struct sd_taesd *t = NULL;
        if (sd_taesd_load(&tctx, path, &t) != SD_OK) {
            fprintf(stderr, "sdrt: %s\n", ctx.msg);
            return 1;
        }
        char d[512];
        sd_taesd_describe(t, d, sizeof d);
        if (json)
            printf("{\"path\": \"%s\", \"kind\": \"taesd\", \"layout\": \"%s\", \"encoder\": %s, \"decoder\": %s, "
                   "\"width\": %d, \"latent_channels\": %d, \"downscale\": %d, \"scaling_factor\": %g}\n", path,
                   t->diffusers ? "diffusers" : "taesd", t->has_encoder ? "true" : "false", t->has_decoder ? "true" : "false",
                   t->width, t->latent_channels, t->downscale, (double)t->scaling_factor);
        else
            printf("%s\n  %s\n  use with: sdrt txt2img ... --taesd %s --vae taesd (final image) or --preview taesd\n", path,
                   d, path);
        sd_taesd_free(t);
        return 0;
    }
    const char *layout = !m->single_file ? "diffusers folder"
                         : sd_family_is_xl(m->family) ? "single-file (SGM names)" : "single-file (LDM names)";
    const char *pred = m->prediction == SD_PRED_V ? "v_prediction" : "epsilon";
    if (json) {
        int first = 1;
        printf("{\"path\": \"%s\", \"layout\": \"%s\", \"family\": \"%s\", \"dtype\": \"%s\", \"prediction\": \"%s\", ", path,
               m->single_file ? "single-file" : "diffusers", sd_family_name(m->family), sd_dtype_name(m->file_dtype), pred);
        printf("\"family_from\": \"%s\", \"prediction_from\": \"%s\", \"vae_downscale\": %d, ", m->family_why,
               m->prediction_why, sd_vae_downscale(&m->vae));
        component("text_encoder", m->te, 1, &first);
        if (sd_family_is_xl(m->family)) component("text_encoder_2", m->te2, 1, &first);
        component("unet", m->un, 1, &first);
        component("vae", m->va, 1, &first);
        printf("}\n");
    } else {
        printf("%s\n  layout        %s\n  family        %s (%s)\n  dtype         %s\n  prediction    %s (%s)\n", path, layout,
               sd_family_name(m->family), m->family_why, sd_dtype_name(m->file_dtype), pred, m->prediction_why);
        component("text encoder", m->te, 0, NULL);
        if (sd_family_is_xl(m->family)) component("text enc 2", m->te2, 0, NULL);
        component("unet", m->un, 0, NULL);
        component("vae", m->va, 0, NULL);
        char widths[96] = "";
        for (int i = 0, o = 0; i < m->unet.n_levels && o < (int)sizeof widths; i++)
            o += snprintf(widths + o, sizeof widths - (size_t)o, "%s%d", i ? "/" : "", m->unet.block_out[i]);
        printf("  unet          widths %s, %d layers/block, context %d, %s projections, %d input channels\n", widths,
               m->unet.layers_per_block, m->unet.context_dim, m->unet.linear_proj ? "linear" : "conv", m->unet.in_channels);
        if (m->va)
            printf("  vae           %d levels, %d latent channels, image = %d x latent\n", m->vae.n_levels,
                   m->vae.latent_channels, sd_vae_downscale(&m->vae));
        if (m->te)
            printf("  text encoder  %d layers, width %d, %d heads, %s\n", m->clip.layers, m->clip.hidden, m->clip.heads,
                   m->clip.quick_gelu ? "quick_gelu" : "gelu");
        if (m->te2)
            printf("  text enc 2    %d layers, width %d, %d heads, %s, pooled output %d wide (text_projection)\n",
                   m->clip2.layers, m->clip2.hidden, m->clip2.heads, m->clip2.quick_gelu ? "quick_gelu" : "gelu",
                   m->clip2.projection);
        if (m->unet.add_in)
            printf("  add_embedding %d inputs: pooled text + %d time ids x %d (%s)\n", m->unet.add_in, m->unet.add_n_ids,
                   m->unet.add_time_dim, m->unet.add_n_ids == 5 ? "original size, crop, aesthetic score"
                                                                 : "original size, crop, target size");
    }
    sd_model_free(m);
    return 0;
}
