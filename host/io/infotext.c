/* infotext.c - A1111 generation-parameters text (see infotext.h). */
#include "infotext.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_infotext_init(struct sd_infotext *it) {
    memset(it, 0, sizeof *it);
    it->denoising_strength = -1;
}

void sd_infotext_float(double v, char *buf, size_t size) {
    if (isnan(v)) { snprintf(buf, size, "nan"); return; }
    if (isinf(v)) { snprintf(buf, size, v > 0 ? "inf" : "-inf"); return; }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".e")) strncat(buf, ".0", size - strlen(buf) - 1);
}

double sd_infotext_from_float(float f) {
    if (!isfinite(f)) return f;
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) return strtod(buf, NULL);
    }
    return f;
}

struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = (b->n + len + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np, b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A1111 quote(): JSON string when the value has ',', ':' or '\n'. */
static void sb_value(struct sbuf *b, const char *v) {
    if (!strpbrk(v, ",:\n")) { sb_str(b, v); return; }
    sb_str(b, "\"");
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        char esc[8];
        switch (*c) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        default:
            if (*c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", *c), sb_str(b, esc);
            else sb_put(b, (const char *)c, 1);
        }
    }
    sb_str(b, "\"");
}

static void sb_kv(struct sbuf *b, bool *first, const char *key, const char *val) {
    if (!*first) sb_str(b, ", ");
    *first = false;
    sb_str(b, key);
    sb_str(b, ": ");
    sb_value(b, val);
}

char *sd_infotext_format(const struct sd_infotext *it) {
    struct sbuf b = {0};
    char num[64];
    bool first = true;
    sb_str(&b, it->prompt ? it->prompt : "");
    if (it->negative_prompt && *it->negative_prompt) {
        sb_str(&b, "\nNegative prompt: ");
        sb_str(&b, it->negative_prompt);
    }
    sb_str(&b, "\n");
    snprintf(num, sizeof num, "%d", it->steps);
    sb_kv(&b, &first, "Steps", num);
    if (it->sampler) sb_kv(&b, &first, "Sampler", it->sampler);
    if (it->schedule_type) sb_kv(&b, &first, "Schedule type", it->schedule_type);
    sd_infotext_float(it->cfg_scale, num, sizeof num);
    sb_kv(&b, &first, "CFG scale", num);
    snprintf(num, sizeof num, "%" PRIu64, it->seed);
    sb_kv(&b, &first, "Seed", num);
    snprintf(num, sizeof num, "%dx%d", it->width, it->height);
    sb_kv(&b, &first, "Size", num);
    if (it->model_hash) sb_kv(&b, &first, "Model hash", it->model_hash);
    if (it->model) sb_kv(&b, &first, "Model", it->model);
    if (it->denoising_strength >= 0) {
        sd_infotext_float(it->denoising_strength, num, sizeof num);
        sb_kv(&b, &first, "Denoising strength", num);
    }
    if (it->clip_skip > 1) {
        snprintf(num, sizeof num, "%d", it->clip_skip);
        sb_kv(&b, &first, "Clip skip", num);
    }
    if (it->rng) sb_kv(&b, &first, "RNG", it->rng);
    if (it->refiner) { /* A1111 extra_generation_params, set up before the LoRA hashes */
        sb_kv(&b, &first, "Refiner", it->refiner);
        sd_infotext_float(it->refiner_switch, num, sizeof num);
        sb_kv(&b, &first, "Refiner switch at", num);
    }
    if (it->lora_hashes) sb_kv(&b, &first, "Lora hashes", it->lora_hashes);
    if (it->version) sb_kv(&b, &first, "Version", it->version);
    if (b.oom) { free(b.p); return NULL; }
    /* .strip(): surrounding whitespace */
    size_t s = 0, e = b.n;
    while (s < e && strchr(" \t\n\r\v\f", b.p[s])) s++;
    while (e > s && strchr(" \t\n\r\v\f", b.p[e - 1])) e--;
    memmove(b.p, b.p + s, e - s);
    b.p[e - s] = 0;
    return b.p;
}
