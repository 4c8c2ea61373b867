/* loras.c - LoRA in the server (docs/server.md "LoRA"): the --lora-dir
 * listing (GET /sdapi/v1/loras, POST refresh-loras), a request's LoRAs
 * (the native `loras` field and the prompt's <lora:NAME:...> tags)
 * resolved and validated when it is submitted, and the switch of the
 * shared model's active set (workers.c decides when; srv.h). */
#include "srv.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "prompt.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The safetensors header's "__metadata__" as A1111 lists it: strings, with
 * values that hold JSON objects parsed (read_metadata_from_safetensors). */
static json_t *file_metadata(const char *path) {
    json_t *out = json_object();
    FILE *f = fopen(path, "rb");
    unsigned char n8[8];
    if (!f || fread(n8, 1, 8, f) != 8) { if (f) fclose(f); return out; }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | n8[i];
    char *h = n > 0 && n < (100u << 20) ? malloc((size_t)n) : NULL;
    json_t *hdr = h && fread(h, 1, (size_t)n, f) == n ? json_loadb(h, (size_t)n, 0, NULL) : NULL;
    fclose(f);
    free(h);
    json_t *md = json_object_get(hdr, "__metadata__");
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v) {
        const char *sv = json_string_value(v);
        json_t *parsed = sv && sv[0] == '{' ? json_loads(sv, 0, NULL) : NULL;
        json_object_set_new(out, k, parsed ? parsed : json_copy(v));
    }
    json_decref(hdr);
    return out;
}

int srv_loras_scan(struct sd_ctx *ctx, struct srv *s) {
    json_t *list = json_array();
    if (!list) return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
    if (s->lora_dir[0]) {
        DIR *d = opendir(s->lora_dir);
        if (!d) { json_decref(list); return sd_errorf(ctx, SD_ERR_IO, "--lora-dir %s cannot be read", s->lora_dir); }
        char **names = NULL;
        int n = 0, cap = 0;
        for (struct dirent *e; (e = readdir(d));) {
            size_t l = strlen(e->d_name);
            if (e->d_name[0] == '.' || l <= 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
            if (n == cap) {
                char **nn = realloc(names, sizeof *nn * (size_t)(cap = cap ? 2 * cap : 16));
                if (!nn) break;
                names = nn;
            }
            if (!(names[n] = strdup(e->d_name))) break;
            n++;
        }
        closedir(d);
        if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
        for (int i = 0; i < n; i++) {
            char path[PATH_MAX * 2], stem[256];
            snprintf(path, sizeof path, "%s/%s", s->lora_dir, names[i]);
            snprintf(stem, sizeof stem, "%.*s", (int)(strlen(names[i]) - 12), names[i]);
            json_t *md = file_metadata(path);
            const char *alias = json_string_value(json_object_get(md, "ss_output_name"));
            json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:o}", "name", stem, "alias", alias ? alias : stem,
                                                  "path", path, "metadata", md));
            free(names[i]);
        }
        free(names);
    }
    pthread_mutex_lock(&s->mu);
    json_t *old = s->lora_list;
    s->lora_list = list;
    pthread_mutex_unlock(&s->mu);
    json_decref(old);
    return SD_OK;
}

/* An explicit path must name a file inside --lora-dir. */
static int inside_dir(const char *dir, const char *path, char *out, size_t n) {
    char rd[PATH_MAX], rp[PATH_MAX];
    if (!realpath(dir, rd) || !realpath(path, rp)) return 0;
    size_t l = strlen(rd);
    if (strncmp(rp, rd, l) || rp[l] != '/') return 0;
    snprintf(out, n, "%s", rp);
    return 1;
}

static void stem_of(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    snprintf(out, n, "%s", b ? b + 1 : path);
    size_t l = strlen(out);
    if (l > 12 && !strcmp(out + l - 12, ".safetensors")) out[l - 12] = 0;
}

int srv_loras_prepare(struct srv *s, struct gen_req *r, struct perr *e) {
    struct sd_ctx ctx = {0};
    struct sd_prompt *pr = sd_prompt_parse(&ctx, r->prompt ? r->prompt : "");
    if (!pr) return perr_set(e, 422, "prompt", "%s", ctx.msg);
    int rc = 0;
    const int n_exp = r->n_loras;
    if ((r->n_loras || pr->n_loras) && !s->lora_dir[0]) {
        rc = perr_set(e, 422, r->n_loras ? "loras" : "prompt", "LoRAs were asked for (%s) but the server has no --lora-dir",
                      r->n_loras ? "loras" : "a <lora:...> tag in the prompt");
    } else if (r->n_loras + pr->n_loras > SRV_MAX_LORAS) {
        rc = perr_set(e, 422, "prompt", "at most %d LoRAs per request (got %d)", SRV_MAX_LORAS, r->n_loras + pr->n_loras);
    } else if (pr->n_loras) {
        struct srv_lora *n = realloc(r->loras, sizeof *n * (size_t)(r->n_loras + pr->n_loras));
        if (!n) rc = perr_set(e, 500, NULL, "out of memory");
        else r->loras = n;
        for (int i = 0; !rc && i < pr->n_loras; i++)
            n[r->n_loras++] = (struct srv_lora){strdup(pr->loras[i].name), NULL, pr->loras[i].te_mult, pr->loras[i].unet_mult};
    }
    sd_prompt_free(pr);
    size_t klen = 1;
    for (int i = 0; !rc && i < r->n_loras; i++) {
        struct srv_lora *l = &r->loras[i];
        char path[PATH_MAX * 2], stem[256];
        const char *field = i < n_exp ? "loras" : "prompt";
        if (l->path) {
            if (!inside_dir(s->lora_dir, l->path, path, sizeof path)) {
                rc = perr_set(e, 422, field, "LoRA path %s is not a file inside --lora-dir %s", l->path, s->lora_dir);
                break;
            }
        } else if (sd_lora_resolve(&ctx, s->lora_dir, l->name, path, sizeof path)) {
            rc = perr_set(e, 422, field, "%s", ctx.msg);
            break;
        }
        struct sd_lora_file *lf = NULL;
        if (sd_lora_file_open(&ctx, path, &lf)) {
            rc = perr_set(e, 422, field, "%s", ctx.msg);
            break;
        }
        sd_lora_file_free(lf);
        if (!l->name) {
            stem_of(path, stem, sizeof stem);
            l->name = strdup(stem);
        }
        free(l->path);
        l->path = strdup(path);
        if (!l->name || !l->path) rc = perr_set(e, 500, NULL, "out of memory");
        else klen += strlen(path) + 64;
    }
    if (rc) return rc;
    /* The key: every file and multiplier in order (hex floats: exact). */
    if (!(r->lora_key = malloc(klen))) return perr_set(e, 500, NULL, "out of memory");
    size_t o = 0;
    r->lora_key[0] = 0;
    for (int i = 0; i < r->n_loras; i++)
        o += (size_t)snprintf(r->lora_key + o, klen - o, "%s\t%a\t%a\n", r->loras[i].path, (double)r->loras[i].te,
                              (double)r->loras[i].unet);
    return 0;
}

int srv_lora_key_eq(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

int srv_lora_activate(struct srv *s, struct job *j, struct sd_ctx *ctx) {
    const struct gen_req *r = &j->r;
    struct sd_lora_req reqs[SRV_MAX_LORAS];
    struct sd_runtime *rts[SD_SERVER_MAX_DEVICES];
    char(*hash)[16] = calloc((size_t)r->n_loras + 1, sizeof *hash);
    char *key = strdup(r->lora_key ? r->lora_key : "");
    int n_rts = 0, rc = SD_OK;
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].rt) rts[n_rts++] = s->workers[i].rt;
    for (int i = 0; i < r->n_loras; i++) reqs[i] = (struct sd_lora_req){r->loras[i].path, r->loras[i].te, r->loras[i].unet};
    struct sd_lora_report rep = {0};
    if (!hash || !key) rc = sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
    sd_lora_state_set_ctx(s->lora, ctx);
    if (!rc) rc = sd_lora_apply(s->lora, reqs, r->n_loras, rts, n_rts, &s->o.log, &rep);
    for (int i = 0; !rc && i < r->n_loras; i++) {
        struct sd_lora_file *lf = (struct sd_lora_file *)sd_lora_state_file(s->lora, r->loras[i].path);
        snprintf(hash[i], sizeof hash[i], "%s", lf ? sd_lora_file_hash(lf) : "");
    }
    sd_lora_state_set_ctx(s->lora, &s->lora_ctx);
    pthread_mutex_lock(&s->mu);
    if (!rc) {
        free(s->lora_key);
        free(s->lora_hash);
        s->lora_key = key, s->lora_hash = hash;
        key = NULL, hash = NULL;
        s->lora_switches++;
        srv_lora_job_hashes(s, j);
    }
    s->lora_switching = 0;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    if (!rc)
        sd_logf(&s->o.log, SD_LOG_INFO, "job %s: LoRA set of %d file%s active: %d modules matched, %d tensors merged in %.3f s",
                j->id, r->n_loras, r->n_loras == 1 ? "" : "s", rep.matched, rep.tensors_patched, rep.seconds);
    free(key);
    free(hash);
    return rc;
}

void srv_lora_job_hashes(struct srv *s, struct job *j) {
    free(j->lora_hashes);
    j->lora_hashes = NULL;
    const struct gen_req *r = &j->r;
    if (!r->n_loras || !s->lora_hash) return;
    size_t n = 1;
    for (int i = 0; i < r->n_loras; i++) n += strlen(r->loras[i].name) + 20;
    if (!(j->lora_hashes = malloc(n))) return;
    size_t o = 0;
    for (int i = 0; i < r->n_loras; i++)
        o += (size_t)snprintf(j->lora_hashes + o, n - o, "%s%s: %s", i ? ", " : "", r->loras[i].name, s->lora_hash[i]);
}
