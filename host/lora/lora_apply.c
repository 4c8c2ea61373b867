/* lora_apply.c - the active LoRA set of one model, merged lazily with an
 * exact restore (see lora.h).
 *
 * Only tensors a LoRA touches change: such a tensor (for SD2's fused
 * in_proj: the whole in_proj, whose q/k/v slices follow it) gets a private
 * f32 copy = its original bytes + the sum of its deltas, and its data
 * pointer moves to the copy (mmap'd weights are never written). The
 * original pointer is kept, so leaving the set hands the tensor its own
 * bytes back untouched - bit for bit what a fresh load gives, no
 * subtraction. Each patched tensor carries a signature of its
 * contributions (file, module, multiplier, rows); a new set re-merges only
 * tensors whose signature changed and restores those no longer touched.
 * Runtimes are told about exactly those tensors before (their old bytes'
 * copies go) and after (nothing stale can sit at the new address). Parsed
 * files stay in a small LRU cache.
 *
 * Threads: one thread of control applies a set, while no graph of the
 * model runs (the caller serialises, as it does for generations). */
#include "lora.h"
#include "weights.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CACHE_FILES 8

struct patch {
    struct sd_weights *w;
    int idx, te;
    float *orig, *copy;
    uint64_t sig;
};

struct cache_ent {
    char *path;
    struct sd_lora_file *lf;
    uint64_t used;
};

struct sd_lora_state {
    struct sd_ctx *ctx;
    struct sd_model *m;
    struct sd_lora_keymap *km;
    struct patch *p;
    int n_p;
    struct cache_ent cache[CACHE_FILES];
    uint64_t tick, te_sig;
};

struct contrib {
    const struct sd_lora_file *lf;
    const struct sd_lora_module *mod;
    int mod_i, bias, te;
    float mult;
    struct sd_lora_target t;
};

struct sd_lora_state *sd_lora_state_new(struct sd_ctx *ctx, struct sd_model *m) {
    struct sd_lora_state *ls = calloc(1, sizeof *ls);
    if (!ls) {
        sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
        return NULL;
    }
    ls->ctx = ctx;
    ls->m = m;
    return ls;
}

static void restore(struct patch *p) {
    sd_weights_set_data(p->w, p->idx, p->orig);
    sd_free_aligned(p->copy);
    p->copy = NULL;
}

void sd_lora_state_free(struct sd_lora_state *ls) {
    if (!ls) return;
    for (int i = 0; i < ls->n_p; i++) restore(&ls->p[i]);
    free(ls->p);
    for (int i = 0; i < CACHE_FILES; i++) {
        free(ls->cache[i].path);
        sd_lora_file_free(ls->cache[i].lf);
    }
    sd_lora_keymap_free(ls->km);
    free(ls);
}

void sd_lora_state_set_ctx(struct sd_lora_state *ls, struct sd_ctx *ctx) {
    if (ls) ls->ctx = ctx;
}

uint64_t sd_lora_te_signature(const struct sd_lora_state *ls) { return ls ? ls->te_sig : 0; }

const struct sd_lora_file *sd_lora_state_file(struct sd_lora_state *ls, const char *path) {
    int lru = 0;
    for (int i = 0; i < CACHE_FILES; i++) {
        if (ls->cache[i].path && !strcmp(ls->cache[i].path, path)) {
            ls->cache[i].used = ++ls->tick;
            return ls->cache[i].lf;
        }
        if (ls->cache[i].used < ls->cache[lru].used) lru = i;
    }
    struct sd_lora_file *lf = NULL;
    char *dup = strdup(path);
    if (!dup) {
        sd_errorf(ls->ctx, SD_ERR_NOMEM, "lora: out of memory");
        return NULL;
    }
    if (sd_lora_file_open(ls->ctx, path, &lf)) {
        free(dup);
        return NULL;
    }
    free(ls->cache[lru].path);
    sd_lora_file_free(ls->cache[lru].lf);
    ls->cache[lru] = (struct cache_ent){dup, lf, ++ls->tick};
    return lf;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static int by_target(const void *a, const void *b) {
    const struct contrib *x = a, *y = b;
    if (x->t.w != y->t.w) return (uintptr_t)x->t.w < (uintptr_t)y->t.w ? -1 : 1;
    return x->t.idx - y->t.idx;
}

/* by_target, then a fixed order inside a tensor's group (qsort is not
 * stable), so an unchanged set always gives the same signatures. */
static int by_target_total(const void *a, const void *b) {
    const struct contrib *x = a, *y = b;
    int c = by_target(a, b);
    if (c) return c;
    if (x->lf->id != y->lf->id) return x->lf->id < y->lf->id ? -1 : 1;
    if (x->mod_i != y->mod_i) return x->mod_i - y->mod_i;
    return x->bias - y->bias;
}

/* Matches every module of the requested files; checks shapes. */
static int collect(struct sd_lora_state *ls, const struct sd_lora_req *reqs, int n, const struct sd_log *log,
                   struct contrib **out, int *n_out, struct sd_lora_report *rep) {
    struct sd_ctx *ctx = ls->ctx;
    int cap = 0, nc = 0;
    struct contrib *c = NULL;
    for (int r = 0; r < n; r++) {
        const struct sd_lora_file *lf = sd_lora_state_file(ls, reqs[r].path);
        if (!lf) goto fail;
        int matched = 0, unmatched = 0;
        char miss[400] = "";
        size_t mo = 0;
        if (cap < nc + 2 * lf->n_mods) {
            cap = nc + 2 * lf->n_mods + 16;
            struct contrib *nc2 = realloc(c, (size_t)cap * sizeof *c);
            if (!nc2) {
                sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
                goto fail;
            }
            c = nc2;
        }
        for (int i = 0; i < lf->n_mods; i++) {
            const struct sd_lora_module *mod = &lf->mods[i];
            float mult = mod->te ? reqs[r].te_mult : reqs[r].unet_mult;
            int hit = 0;
            for (int bias = 0; bias < 2; bias++) {
                if (bias && !mod->t[SD_LR_DIFF_B]) continue;
                if (!bias && mod->kind == SD_LK_DIFF && !mod->t[SD_LR_DIFF]) continue;
                struct sd_lora_target t;
                if (!sd_lora_keymap_find(ls->km, mod->name, bias, &t)) continue;
                if (sd_lora_delta_check(ctx, lf, mod, bias, t.rows, t.cols)) goto fail;
                hit = 1;
                if (mult != 0.0f)
                    c[nc++] = (struct contrib){.lf = lf, .mod = mod, .mod_i = i, .bias = bias, .te = mod->te,
                                               .mult = mult, .t = t};
            }
            if (hit) {
                matched++;
            } else {
                if (unmatched < 3 && mo < sizeof miss) mo += (size_t)snprintf(miss + mo, sizeof miss - mo, "%s'%s'", unmatched ? ", " : "", mod->key);
                unmatched++;
            }
        }
        if (!matched) {
            char ex[600];
            sd_lora_keymap_examples(ls->km, lf->mods[0].te, ex, sizeof ex);
            sd_errorf(ctx, SD_ERR_FORMAT,
                      "%s (%s): none of its %d modules matches a weight of %s (keys such as %s; this model's modules "
                      "look like %s)", lf->path, lf->format, lf->n_mods, ls->m->path, miss, ex);
            goto fail;
        }
        sd_logf(log, unmatched ? SD_LOG_WARN : SD_LOG_INFO,
                "lora %s (%s, rank %d..%d): %d modules matched, %d unmatched%s%s (te x%g, unet x%g)", lf->stem,
                lf->format, lf->min_rank, lf->max_rank, matched, unmatched, unmatched ? ": " : "", miss,
                (double)reqs[r].te_mult, (double)reqs[r].unet_mult);
        if (rep) rep->matched += matched, rep->unmatched += unmatched;
    }
    *out = c;
    *n_out = nc;
    return SD_OK;
fail:
    free(c);
    return ctx->status ? ctx->status : SD_ERR_FORMAT;
}

static void notify(struct sd_runtime **rts, int n_rts, struct sd_tensor **t, int n) {
    for (int i = 0; i < n_rts; i++) sd_runtime_weights_changed(rts[i], t, n);
}

/* Merges group c[0..k) (one target tensor) into p->copy. */
static int merge(struct sd_ctx *ctx, struct patch *p, const struct contrib *c, int k) {
    struct sd_tensor *t = sd_weights_tensor(p->w, p->idx);
    size_t nb = sd_tensor_nbytes(t);
    if (!p->copy && !(p->copy = sd_malloc_aligned(nb ? nb : 4))) return sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory copying '%s'", t->name);
    memcpy(p->copy, p->orig, nb);
    for (int i = 0; i < k; i++) {
        float *dst = p->copy + c[i].t.row0 * c[i].t.cols;
        int rc = sd_lora_delta_add(ctx, c[i].lf, c[i].mod, c[i].bias, c[i].mult, c[i].t.rows, c[i].t.cols, dst);
        if (rc) return rc;
    }
    return sd_weights_set_data(p->w, p->idx, p->copy);
}

int sd_lora_apply(struct sd_lora_state *ls, const struct sd_lora_req *reqs, int n, struct sd_runtime **rts, int n_rts,
                  const struct sd_log *log, struct sd_lora_report *rep) {
    struct sd_ctx *ctx = ls->ctx;
    double t0 = sd_time_s();
    if (rep) *rep = (struct sd_lora_report){.n_loras = n};
    if (n < 0 || n > CACHE_FILES)
        return sd_errorf(ctx, SD_ERR_INVALID, "lora: %d LoRAs at once (at most %d)", n, CACHE_FILES);
    if (n > 0 && !ls->km && !(ls->km = sd_lora_keymap_new(ctx, ls->m))) return ctx->status;
    struct contrib *c = NULL;
    int nc = 0, rc = n > 0 ? collect(ls, reqs, n, log, &c, &nc, rep) : SD_OK;
    if (rc) return rc;
    if (nc > 1) qsort(c, (size_t)nc, sizeof *c, by_target_total);
    /* Load every target with its original bytes readable (the lazy loader
     * converts them; a deferred weight is materialised: weights.h). */
    for (int i = 0; i < nc; i++)
        if (!sd_weights_find(c[i].t.w, sd_weights_name(c[i].t.w, c[i].t.idx)) ||
            sd_weight_materialize(ctx, sd_weights_tensor(c[i].t.w, c[i].t.idx))) {
            rc = sd_errorf(ctx, SD_ERR_FORMAT, "lora: cannot load the model's '%s'", sd_weights_name(c[i].t.w, c[i].t.idx));
            free(c);
            return rc;
        }
    /* New groups and their signatures. */
    int ng = 0;
    int *gs = malloc(sizeof(int) * (size_t)(nc + 1));
    uint64_t *sig = malloc(sizeof(uint64_t) * (size_t)(nc + 1));
    struct patch *np = calloc((size_t)(nc + ls->n_p + 1), sizeof *np);
    struct sd_tensor **changed = malloc(sizeof *changed * (size_t)(nc + ls->n_p + 1));
    int *dirty = calloc((size_t)(nc + ls->n_p + 1), sizeof *dirty);
    if (!gs || !sig || !np || !changed || !dirty) {
        rc = sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
        goto done;
    }
    for (int i = 0; i < nc; i++) {
        if (i == 0 || by_target(&c[i - 1], &c[i])) gs[ng] = i, sig[ng++] = 0x5d;
        uint32_t mb;
        memcpy(&mb, &c[i].mult, 4);
        sig[ng - 1] = mix(mix(mix(mix(sig[ng - 1], c[i].lf->id), (uint64_t)c[i].mod_i * 2 + (uint64_t)c[i].bias), mb),
                          (uint64_t)c[i].t.row0);
    }
    gs[ng] = nc;
    /* Old patches: kept (same signature), re-merged, or restored. */
    int n_new = 0, n_changed = 0;
    for (int g = 0; g < ng; g++) {
        struct contrib *f = &c[gs[g]];
        struct patch p = {.w = f->t.w, .idx = f->t.idx, .te = f->te, .sig = sig[g]};
        int found = 0;
        for (int j = 0; j < ls->n_p; j++)
            if (ls->p[j].w == p.w && ls->p[j].idx == p.idx && ls->p[j].copy) {
                p.orig = ls->p[j].orig, p.copy = ls->p[j].copy;
                dirty[n_new] = ls->p[j].sig != p.sig;
                ls->p[j].copy = NULL; /* moved */
                found = 1;
                break;
            }
        if (!found) p.orig = sd_weights_tensor(p.w, p.idx)->data, dirty[n_new] = 1;
        if (dirty[n_new]) changed[n_changed++] = sd_weights_tensor(p.w, p.idx);
        np[n_new++] = p;
    }
    int n_restore = 0;
    struct patch *gone = ls->p;
    for (int j = 0; j < ls->n_p; j++)
        if (gone[j].copy) changed[n_changed++] = sd_weights_tensor(gone[j].w, gone[j].idx), n_restore++;
    notify(rts, n_rts, changed, n_changed);
    for (int j = 0; j < ls->n_p; j++)
        if (gone[j].copy) restore(&gone[j]);
    free(gone);
    ls->p = np;
    ls->n_p = n_new;
    np = NULL;
    /* Tensors merge in parallel (one each: its page faults, copy and
     * products; sgemm inside runs on that thread), largest work first. */
    #pragma omp parallel for schedule(dynamic, 1)
    for (int g = 0; g < ng; g++) {
        if (!dirty[g]) continue;
        struct sd_ctx lc = {0};
        int r = merge(&lc, &ls->p[g], &c[gs[g]], gs[g + 1] - gs[g]);
        if (r) {
            #pragma omp critical(sd_lora_merge_error)
            if (!rc) rc = sd_errorf(ctx, r, "%s", lc.msg);
        }
    }
    if (rc) { /* leave no half-merged set behind: back to the loaded weights */
        for (int j = 0; j < ls->n_p; j++) {
            restore(&ls->p[j]);
            changed[j] = sd_weights_tensor(ls->p[j].w, ls->p[j].idx);
        }
        n_changed = ls->n_p;
        ls->n_p = 0;
    }
    notify(rts, n_rts, changed, n_changed);
    ls->te_sig = 0;
    for (int j = 0; j < ls->n_p; j++)
        if (ls->p[j].te) ls->te_sig = mix(ls->te_sig ? ls->te_sig : 0x7e, mix(ls->p[j].sig, (uint64_t)ls->p[j].idx));
    if (rep) {
        rep->tensors_changed = n_changed;
        rep->tensors_patched = ls->n_p;
        rep->seconds = sd_time_s() - t0;
    }
    if (!rc && (n || n_restore))
        sd_logf(log, SD_LOG_INFO, "lora: %d tensors merged, %d re-merged or restored, %.3f s", ls->n_p, n_changed,
                sd_time_s() - t0);
done:
    free(c), free(gs), free(sig), free(np), free(changed), free(dirty);
    return rc;
}

int sd_lora_resolve(struct sd_ctx *ctx, const char *dir, const char *name, char *path, size_t n) {
    struct stat st;
    if (!dir || !*dir)
        return sd_errorf(ctx, SD_ERR_INVALID, "<lora:%s>: no LoRA folder given (--lora-dir)", name);
    if (name[0] == '/' || !strncmp(name, "../", 3) || strstr(name, "/../") || !strcmp(name, "..") ||
        (strlen(name) >= 3 && !strcmp(name + strlen(name) - 3, "/..")))
        return sd_errorf(ctx, SD_ERR_INVALID, "<lora:%s>: a LoRA name must stay inside the LoRA folder %s", name, dir);
    snprintf(path, n, "%s/%s.safetensors", dir, name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return SD_OK;
    DIR *d = opendir(dir);
    if (!d) return sd_errorf(ctx, SD_ERR_IO, "<lora:%s>: cannot open the LoRA folder %s", name, dir);
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
        snprintf(path, n, "%s/%s", dir, e->d_name);
        struct sd_st_file *f = NULL;
        struct sd_ctx quiet = {0};
        if (sd_st_open(&quiet, path, &f) == SD_OK) {
            const char *alias = sd_st_metadata(f, "ss_output_name");
            found = alias && !strcmp(alias, name);
            sd_st_close(f);
        }
    }
    closedir(d);
    if (!found)
        return sd_errorf(ctx, SD_ERR_INVALID,
                         "<lora:%s>: no %s/%s.safetensors and no file there whose ss_output_name is '%s'", name, dir,
                         name, name);
    return SD_OK;
}
