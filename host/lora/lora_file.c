/* lora_file.c - opening a LoRA / LyCORIS .safetensors file: every tensor
 * name parsed (lora_key.c) and grouped into modules, each module's kind,
 * rank and alpha decided and its shapes checked for consistency (the
 * target's shape is checked later, against the model: lora_delta.c). */
#include "lora.h"
#include "sha256.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *role_suffix(enum sd_lora_role r) {
    static const char *s[SD_LR_COUNT] = {"lora_down", "lora_up", "lora_mid", "alpha", "scale", "diff", "diff_b",
                                         "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
                                         "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b",
                                         "lokr_t2", "dora_scale"};
    return r < SD_LR_COUNT ? s[r] : "?";
}

/* The value of a one-element tensor. */
static int scalar(struct sd_ctx *ctx, const char *path, const struct sd_st_tensor *t, float *v) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
    if (n != 1 || t->type == SD_DTYPE_COUNT || t->type == SD_I32 || t->type == SD_I64)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: '%s' should hold one float value", path, t->name);
    unsigned char tmp[8];
    memcpy(tmp, t->data, t->nbytes < sizeof tmp ? t->nbytes : sizeof tmp);
    sd_convert_to_f32(v, tmp, t->type, 1);
    if (!isfinite(*v)) return sd_errorf(ctx, SD_ERR_FORMAT, "%s: '%s' is not a finite number", path, t->name);
    return SD_OK;
}

static int64_t dim(const struct sd_st_tensor *t, int d) { return t && d < t->n_dims ? t->shape[d] : 1; }
static int64_t tail(const struct sd_st_tensor *t) { /* elements per row */
    int64_t n = 1;
    for (int d = 1; t && d < t->n_dims; d++) n *= t->shape[d];
    return n;
}

#define MAX_RANK 8192

/* Kind, rank and alpha of a module; consistency of its shapes. */
static int module_finish(struct sd_ctx *ctx, const char *path, struct sd_lora_module *m, float file_alpha,
                         int has_file_alpha) {
    const struct sd_st_tensor *const *t = m->t;
    char a[96], b[96];
    if (t[SD_LR_DORA])
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s: DoRA ('%s') is not supported: merge it into a plain LoRA first",
                         path, t[SD_LR_DORA]->name);
    for (int r = 0; r < SD_LR_COUNT; r++)
        if (t[r] && t[r]->type == SD_DTYPE_COUNT)
            return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s: '%s' has dtype %s (LoRA files: F32, F16, BF16)", path,
                             t[r]->name, t[r]->dtype);
    int hada = 0, lokr = 0;
    for (int r = SD_LR_HADA_W1A; r <= SD_LR_HADA_T2; r++) hada |= t[r] != NULL;
    for (int r = SD_LR_LOKR_W1; r <= SD_LR_LOKR_T2; r++) lokr |= t[r] != NULL;
    int64_t rank = 0;
    if (t[SD_LR_DIFF] || t[SD_LR_DIFF_B]) {
        m->kind = SD_LK_DIFF;
    } else if (hada) {
        m->kind = SD_LK_LOHA;
        for (int r = SD_LR_HADA_W1A; r <= SD_LR_HADA_W2B; r++)
            if (!t[r]) return sd_errorf(ctx, SD_ERR_FORMAT, "%s: LoHa module '%s' has no .%s", path, m->name, role_suffix(r));
        rank = dim(t[SD_LR_HADA_W1B], 0);
        if (dim(t[SD_LR_HADA_W2B], 0) != rank ||
            (t[SD_LR_HADA_T1] ? dim(t[SD_LR_HADA_W1A], 0) : dim(t[SD_LR_HADA_W1A], 1)) != rank)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: LoHa module '%s': the factors' ranks differ (%s vs %s)", path,
                             m->name, sd_st_shape_str(t[SD_LR_HADA_W1A]->n_dims, t[SD_LR_HADA_W1A]->shape, a, sizeof a),
                             sd_st_shape_str(t[SD_LR_HADA_W1B]->n_dims, t[SD_LR_HADA_W1B]->shape, b, sizeof b));
    } else if (lokr) {
        m->kind = SD_LK_LOKR;
        if (!t[SD_LR_LOKR_W1] && !(t[SD_LR_LOKR_W1A] && t[SD_LR_LOKR_W1B]))
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: LoKr module '%s' has neither .lokr_w1 nor .lokr_w1_a/_b", path, m->name);
        if (!t[SD_LR_LOKR_W2] && !(t[SD_LR_LOKR_W2A] && t[SD_LR_LOKR_W2B]))
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: LoKr module '%s' has neither .lokr_w2 nor .lokr_w2_a/_b", path, m->name);
        /* A1111 network_lokr: dim = w1b rows, else w2b rows; none: scale 1 */
        rank = t[SD_LR_LOKR_W1B] ? dim(t[SD_LR_LOKR_W1B], 0) : t[SD_LR_LOKR_W2B] ? dim(t[SD_LR_LOKR_W2B], 0) : 0;
    } else if (t[SD_LR_DOWN] || t[SD_LR_UP]) {
        m->kind = SD_LK_LORA;
        if (!t[SD_LR_DOWN] || !t[SD_LR_UP])
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: LoRA module '%s' has %s but no %s", path, m->name,
                             t[SD_LR_DOWN] ? t[SD_LR_DOWN]->name : t[SD_LR_UP]->name, t[SD_LR_DOWN] ? "up (lora_up / lora_B)" : "down (lora_down / lora_A)");
        rank = dim(t[SD_LR_DOWN], 0);
        int64_t up_r = dim(t[SD_LR_UP], 1);
        if (t[SD_LR_UP]->n_dims < 2 || t[SD_LR_DOWN]->n_dims < 2 || up_r != rank ||
            (t[SD_LR_MID] && (dim(t[SD_LR_MID], 0) != rank || dim(t[SD_LR_MID], 1) != rank)))
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: LoRA module '%s': down %s and up %s do not share a rank", path,
                             m->name, sd_st_shape_str(t[SD_LR_DOWN]->n_dims, t[SD_LR_DOWN]->shape, a, sizeof a),
                             sd_st_shape_str(t[SD_LR_UP]->n_dims, t[SD_LR_UP]->shape, b, sizeof b));
        if (tail(t[SD_LR_UP]) != up_r || (t[SD_LR_MID] && tail(t[SD_LR_DOWN]) != dim(t[SD_LR_DOWN], 1)))
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: LoRA module '%s': up %s must be [out, rank] or [out, rank, 1, 1]",
                             path, m->name, sd_st_shape_str(t[SD_LR_UP]->n_dims, t[SD_LR_UP]->shape, a, sizeof a));
    } else {
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: module '%s' has %s but no weights", path, m->name, m->key);
    }
    if (m->kind != SD_LK_DIFF && m->kind != SD_LK_LOKR && (rank < 1 || rank > MAX_RANK))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: module '%s' has rank %lld (expected 1..%d)", path, m->name,
                         (long long)rank, MAX_RANK);
    if (rank > MAX_RANK)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: module '%s' has rank %lld (expected 1..%d)", path, m->name,
                         (long long)rank, MAX_RANK);
    m->rank = (int)rank;
    m->alpha = (float)rank;
    if (t[SD_LR_ALPHA]) {
        if (scalar(ctx, path, t[SD_LR_ALPHA], &m->alpha)) return ctx->status;
    } else if (has_file_alpha) {
        m->alpha = file_alpha;
    }
    if (t[SD_LR_SCALE]) {
        if (scalar(ctx, path, t[SD_LR_SCALE], &m->scale)) return ctx->status;
        m->has_scale = 1;
    }
    return SD_OK;
}

/* PEFT alpha: adapter_config.json beside the file, or the metadata. */
static int file_alpha(struct sd_ctx *ctx, const struct sd_st_file *f, const char *path, float *alpha) {
    const char *meta = sd_st_metadata(f, "lora_adapter_metadata");
    char cfg[1100];
    const char *slash = strrchr(path, '/');
    snprintf(cfg, sizeof cfg, "%.*sadapter_config.json", slash ? (int)(slash - path + 1) : 0, path);
    char *text = NULL;
    FILE *fp = meta ? NULL : fopen(cfg, "rb");
    if (fp) {
        long n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
        if (n > 0 && n < (1 << 20) && fseek(fp, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1))) {
            if (fread(text, 1, (size_t)n, fp) != (size_t)n) n = 0;
            text[n] = 0;
        }
        fclose(fp);
        meta = text;
    }
    if (!meta) return 0;
    struct sd_json *j = NULL;
    int found = 0;
    if (sd_json_parse(ctx, meta, strlen(meta), &j) == SD_OK) {
        static const char *keys[] = {"lora_alpha", "unet.lora_alpha", "text_encoder.lora_alpha"};
        for (int i = 0; i < 3 && !found; i++) {
            const struct sd_json *v = sd_json_get(j, keys[i]);
            double d = sd_json_num(v, NAN);
            if (isfinite(d)) *alpha = (float)d, found = 1;
        }
        const struct sd_json *u = sd_json_get(j, "unet");
        if (!found && u && isfinite(sd_json_num(sd_json_get(u, "lora_alpha"), NAN)))
            *alpha = (float)sd_json_num(sd_json_get(u, "lora_alpha"), 0), found = 1;
        sd_json_free(j);
    }
    sd_ctx_clear(ctx);
    free(text);
    return found;
}

void sd_lora_file_free(struct sd_lora_file *lf) {
    if (!lf) return;
    for (int i = 0; i < lf->n_mods; i++) free(lf->mods[i].name);
    free(lf->mods);
    free(lf->path);
    sd_st_close(lf->f);
    free(lf);
}

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int sd_lora_file_open(struct sd_ctx *ctx, const char *path, struct sd_lora_file **out) {
    static atomic_ullong next_id = 1;
    *out = NULL;
    struct sd_lora_file *lf = calloc(1, sizeof *lf);
    if (!lf || !(lf->path = strdup(path))) {
        free(lf);
        return sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
    }
    int rc = sd_st_open(ctx, path, &lf->f);
    if (rc) {
        sd_lora_file_free(lf);
        return rc;
    }
    const char *base = strrchr(path, '/');
    snprintf(lf->stem, sizeof lf->stem, "%s", base ? base + 1 : path);
    char *dot = strrchr(lf->stem, '.');
    if (dot && dot != lf->stem) *dot = 0;
    lf->id = atomic_fetch_add(&next_id, 1);
    const struct sd_st_file *f = lf->f;
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)f->n_tensors + 2) cap *= 2;
    int *slot = calloc(cap, sizeof *slot);
    lf->mods = calloc((size_t)f->n_tensors + 1, sizeof *lf->mods);
    if (!slot || !lf->mods) {
        free(slot);
        sd_lora_file_free(lf);
        return sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
    }
    int styles = 0, unknown = 0;
    char mod[512];
    for (int k = 0; k < f->n_tensors && !rc; k++) {
        const struct sd_st_tensor *t = &f->tensors[k];
        enum sd_lora_role role;
        enum sd_lora_style st;
        if (!sd_lora_parse_key(t->name, mod, sizeof mod, &role, &st)) {
            rc = sd_errorf(ctx, SD_ERR_FORMAT,
                           "%s: key '%s' belongs to no known LoRA family (expected e.g. "
                           "'lora_unet_<module>.lora_down.weight', 'lora_te_<module>.alpha', "
                           "'unet.<module>.lora_A.weight', 'text_encoder.<module>.lora_B.weight', "
                           "'<...>.hada_w1_a', '<...>.lokr_w1'; SDXL's lora_te1_/lora_te2_ are not supported)",
                           path, t->name);
            unknown++;
            break;
        }
        styles |= st;
        uint32_t s = hash_str(mod) & (cap - 1);
        while (slot[s] && strcmp(lf->mods[slot[s] - 1].name, mod)) s = (s + 1) & (cap - 1);
        struct sd_lora_module *m;
        if (!slot[s]) {
            m = &lf->mods[lf->n_mods];
            if (!(m->name = strdup(mod))) {
                rc = sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
                break;
            }
            m->te = !strncmp(mod, "lora_te", 7); /* lora_te_, and SDXL's lora_te1_ / lora_te2_ */
            m->key = t->name;
            slot[s] = ++lf->n_mods;
        } else {
            m = &lf->mods[slot[s] - 1];
        }
        if (m->t[role])
            rc = sd_errorf(ctx, SD_ERR_FORMAT, "%s: '%s' and '%s' are the same tensor of module '%s'", path,
                           m->t[role]->name, t->name, mod);
        m->t[role] = t;
    }
    free(slot);
    if (!rc && lf->n_mods == 0) rc = sd_errorf(ctx, SD_ERR_FORMAT, "%s: holds no LoRA tensors", path);
    float falpha = 0;
    int has_falpha = rc ? 0 : file_alpha(ctx, f, path, &falpha);
    int kinds = 0, conv = 0;
    lf->min_rank = MAX_RANK + 1;
    for (int i = 0; i < lf->n_mods && !rc; i++) {
        struct sd_lora_module *m = &lf->mods[i];
        rc = module_finish(ctx, path, m, falpha, has_falpha);
        kinds |= 1 << m->kind;
        conv |= m->t[SD_LR_MID] || (m->t[SD_LR_DOWN] && m->t[SD_LR_DOWN]->n_dims == 4 && tail(m->t[SD_LR_DOWN]) != dim(m->t[SD_LR_DOWN], 1));
        if (m->rank && m->rank < lf->min_rank) lf->min_rank = m->rank;
        if (m->rank > lf->max_rank) lf->max_rank = m->rank;
        if (m->te) lf->n_te++;
        else lf->n_unet++;
    }
    if (lf->min_rank > MAX_RANK) lf->min_rank = 0;
    if (rc) {
        sd_lora_file_free(lf);
        return rc;
    }
    const char *style = styles & SD_LS_KOHYA ? "kohya" : styles & SD_LS_PEFT ? "PEFT" : "diffusers (attention processor)";
    size_t o = (size_t)snprintf(lf->format, sizeof lf->format, "%s", style);
    if (kinds & (1 << SD_LK_LORA)) o += (size_t)snprintf(lf->format + o, sizeof lf->format - o, " %s", conv ? "LoCon" : "LoRA");
    if (kinds & (1 << SD_LK_LOHA)) o += (size_t)snprintf(lf->format + o, sizeof lf->format - o, " LyCORIS LoHa");
    if (kinds & (1 << SD_LK_LOKR)) o += (size_t)snprintf(lf->format + o, sizeof lf->format - o, " LyCORIS LoKr");
    if (kinds & (1 << SD_LK_DIFF)) snprintf(lf->format + o, sizeof lf->format - o, " full diff");
    *out = lf;
    return SD_OK;
}

const char *sd_lora_file_hash(struct sd_lora_file *lf) {
    if (!lf->hash[0]) {
        char hex[65];
        sd_sha256_hex(lf->f->base + lf->f->data_start, lf->f->size - lf->f->data_start, hex);
        snprintf(lf->hash, sizeof lf->hash, "%.12s", hex);
    }
    return lf->hash;
}
