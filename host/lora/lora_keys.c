/* lora_keys.c - which weight of the model each LoRA module merges into.
 *
 * The model's weights carry diffusers / HF CLIP names (single files are
 * renamed at load, model_keys.c), so the kohya name of every weight is
 * built once per model - "lora_unet_" / "lora_te_" + the name without
 * .weight with every '.' replaced by '_', as kohya and A1111 do - and
 * modules are looked up in that table; underscores are never turned back
 * into dots. SD2 single files keep the text encoder's q/k/v as row slices
 * of the fused in_proj (model_load.c): a q/k/v module then targets those
 * rows of in_proj, which is how A1111 stacks them. UNet modules named with
 * LDM paths (lora_unet_input_blocks_4_1_...) are renamed through the
 * checkpoint key table first (sd_keys_unet_from_ldm). */
#include "lora.h"
#include "model_keys.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct km_entry {
    char *kohya;            /* lora_unet_... / lora_te_... */
    struct sd_weights *w;
    int weight, bias;       /* positions in w; -1 when absent */
};

struct sd_lora_keymap {
    struct km_entry *e;
    int n, cap;
    uint32_t *slot, mask;
    int layers_per_block;
    int xl;                 /* SDXL: te is lora_te1_ (lora_te_ accepted too), te2 lora_te2_ */
};

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h ^ (h >> 15);
}

static struct km_entry *km_lookup(const struct sd_lora_keymap *km, const char *k) {
    for (uint32_t s = hash_str(k) & km->mask; km->slot[s]; s = (s + 1) & km->mask)
        if (!strcmp(km->e[km->slot[s] - 1].kohya, k)) return &km->e[km->slot[s] - 1];
    return NULL;
}

static int add_weights(struct sd_lora_keymap *km, struct sd_weights *w, const char *prefix) {
    char k[600];
    for (int i = 0; w && i < sd_weights_count(w); i++) {
        const char *name = sd_weights_name(w, i);
        size_t len = strlen(name);
        int bias = len > 5 && !strcmp(name + len - 5, ".bias");
        if (!bias && !(len > 7 && !strcmp(name + len - 7, ".weight"))) continue;
        size_t base = len - (bias ? 5 : 7);
        int o = snprintf(k, sizeof k, "%s", prefix);
        for (size_t j = 0; j < base && o + 1 < (int)sizeof k; j++) k[o++] = name[j] == '.' ? '_' : name[j];
        k[o] = 0;
        struct km_entry *e = km_lookup(km, k);
        if (!e) {
            if (km->n == km->cap) return SD_ERR_NOMEM; /* sized up front */
            e = &km->e[km->n];
            if (!(e->kohya = strdup(k))) return SD_ERR_NOMEM;
            e->w = w;
            e->weight = e->bias = -1;
            uint32_t s = hash_str(k) & km->mask;
            while (km->slot[s]) s = (s + 1) & km->mask;
            km->slot[s] = (uint32_t)++km->n;
        }
        if (bias) e->bias = i;
        else e->weight = i;
    }
    return SD_OK;
}

void sd_lora_keymap_free(struct sd_lora_keymap *km) {
    if (!km) return;
    for (int i = 0; i < km->n; i++) free(km->e[i].kohya);
    free(km->e);
    free(km->slot);
    free(km);
}

struct sd_lora_keymap *sd_lora_keymap_new(struct sd_ctx *ctx, struct sd_model *m) {
    struct sd_lora_keymap *km = calloc(1, sizeof *km);
    int n = sd_weights_count(m->te) + sd_weights_count(m->te2) + sd_weights_count(m->un);
    uint32_t cap = 64;
    while (cap < 2u * (uint32_t)n + 2) cap *= 2;
    if (km) {
        km->cap = n;
        km->e = calloc((size_t)n + 1, sizeof *km->e);
        km->slot = calloc(cap, sizeof *km->slot);
        km->mask = cap - 1;
        km->layers_per_block = m->unet.layers_per_block;
        km->xl = sd_family_is_xl(m->family);
    }
    if (!km || !km->e || !km->slot || add_weights(km, m->te, km->xl ? "lora_te1_" : "lora_te_") ||
        add_weights(km, m->te2, "lora_te2_") || add_weights(km, m->un, "lora_unet_")) {
        sd_lora_keymap_free(km);
        sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory for the model's key table");
        return NULL;
    }
    return km;
}

/* lora_unet_<LDM path> -> lora_unet_<diffusers path>, or 0. */
static int from_ldm(const struct sd_lora_keymap *km, const char *mod, char *out, size_t n) {
    static const char *parts[][2] = {{"in_layers_0_", "in_layers.0."}, {"in_layers_2_", "in_layers.2."},
                                     {"out_layers_0_", "out_layers.0."}, {"out_layers_3_", "out_layers.3."},
                                     {"emb_layers_1_", "emb_layers.1."}, {"skip_connection_", "skip_connection."},
                                     {"op_", "op."}, {"conv_", "conv."}};
    const char *r = mod + 10;
    int a = 0, b = 0, used = 0;
    char ldm[512], diff[512];
    if (sscanf(r, "input_blocks_%d_%d_%n", &a, &b, &used) == 2 && used)
        snprintf(ldm, sizeof ldm, "input_blocks.%d.%d.", a, b);
    else if (sscanf(r, "output_blocks_%d_%d_%n", &a, &b, &used) == 2 && used)
        snprintf(ldm, sizeof ldm, "output_blocks.%d.%d.", a, b);
    else if (sscanf(r, "middle_block_%d_%n", &a, &used) == 1 && used)
        snprintf(ldm, sizeof ldm, "middle_block.%d.", a);
    else
        return 0;
    r += used;
    size_t o = strlen(ldm);
    /* mark the end of the module path with "._" so the suffix survives the rename */
    int done = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts && !done; i++) {
        size_t pl = strlen(parts[i][0]) - 1; /* without the trailing '_' */
        if (!strncmp(r, parts[i][0], pl) && r[pl] == 0) {
            snprintf(ldm + o, sizeof ldm - o, "%sX", parts[i][1]);
            done = 1;
        }
    }
    if (!done) snprintf(ldm + o, sizeof ldm - o, "%s.X", r);
    if (!sd_keys_unet_from_ldm(ldm, km->layers_per_block, diff, sizeof diff)) return 0;
    size_t dl = strlen(diff);
    if (dl < 2 || strcmp(diff + dl - 2, ".X")) return 0;
    diff[dl - 2] = 0;
    int w = snprintf(out, n, "lora_unet_");
    for (size_t i = 0; diff[i] && w + 1 < (int)n; i++) out[w++] = diff[i] == '.' ? '_' : diff[i];
    out[w] = 0;
    return 1;
}

int sd_lora_keymap_find(const struct sd_lora_keymap *km, const char *mod, int bias, struct sd_lora_target *t) {
    const struct km_entry *e = km_lookup(km, mod);
    char alt[512];
    if (!e && !strncmp(mod, "lora_unet_", 10) && from_ldm(km, mod, alt, sizeof alt)) e = km_lookup(km, alt);
    if (!e && km->xl && !strncmp(mod, "lora_te_", 8)) { /* SDXL: a plain text_encoder. (PEFT) / lora_te_ is te1 */
        snprintf(alt, sizeof alt, "lora_te1_%s", mod + 8);
        e = km_lookup(km, alt);
    }
    if (!e) return 0;
    int i = bias ? e->bias : e->weight;
    if (i < 0) return 0;
    int64_t dims[SD_ST_MAX_DIMS], row = 0;
    const char *name = sd_weights_name(e->w, i);
    int nd = sd_weights_shape(e->w, name, dims);
    int64_t cols = 1;
    for (int d = 1; d < nd; d++) cols *= dims[d];
    int src = sd_weights_slice_of(e->w, i, &row);
    *t = (struct sd_lora_target){.w = e->w, .idx = src >= 0 ? src : i, .row0 = src >= 0 ? row : 0,
                                 .rows = nd > 0 ? dims[0] : 1, .cols = cols, .name = name};
    return 1;
}

void sd_lora_keymap_examples(const struct sd_lora_keymap *km, int te, char *buf, size_t n) {
    size_t o = 0;
    int shown = 0;
    buf[0] = 0;
    for (int i = 0; i < km->n && shown < 3 && o < n; i++) {
        const struct km_entry *e = &km->e[i];
        if (e->weight < 0 || !!strncmp(e->kohya, "lora_te", 7) == !!te) continue;
        if (!strstr(e->kohya, te ? "q_proj" : "to_q")) continue;
        o += (size_t)snprintf(buf + o, n - o, "%s'%s'", shown ? ", " : "", e->kohya);
        shown++;
    }
}
