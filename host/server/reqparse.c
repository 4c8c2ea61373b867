/* reqparse.c - typed fields of JSON request bodies with limits; every
 * error names the field (srv.h). */
#include "srv.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "png_io.h"

void gen_req_free(struct gen_req *r) {
    free(r->prompt);
    free(r->negative);
    free(r->init);
    free(r->mask);
    for (int i = 0; i < r->n_loras; i++) {
        free(r->loras[i].name);
        free(r->loras[i].path);
    }
    free(r->loras);
    free(r->lora_key);
    memset(r, 0, sizeof *r);
}

int perr_set(struct perr *e, int status, const char *field, const char *fmt, ...) {
    e->status = status;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    char m[400];
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (field && *field) snprintf(e->msg, sizeof e->msg, "%s: %s", field, m);
    else snprintf(e->msg, sizeof e->msg, "%s", m);
    return -1;
}

/* The value at key, NULL when absent or JSON null (defaults apply). */
static json_t *get(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) ? v : NULL;
}

int req_int(json_t *o, const char *key, int *out, int lo, int hi, struct perr *e) {
    json_t *v = get(o, key);
    if (!v) return 0;
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) d = json_real_value(v);
    else return perr_set(e, 422, key, "expected an integer");
    if (d < lo || d > hi) return perr_set(e, 422, key, "%.0f is outside %d..%d", d, lo, hi);
    *out = (int)d;
    return 0;
}

int req_llong(json_t *o, const char *key, long long *out, struct perr *e) {
    json_t *v = get(o, key);
    if (!v) return 0;
    if (json_is_integer(v)) *out = json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) && fabs(json_real_value(v)) < 9e15)
        *out = (long long)json_real_value(v);
    else return perr_set(e, 422, key, "expected an integer");
    return 0;
}

int req_float(json_t *o, const char *key, float *out, float lo, float hi, struct perr *e) {
    json_t *v = get(o, key);
    if (!v) return 0;
    if (!json_is_number(v)) return perr_set(e, 422, key, "expected a number");
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return perr_set(e, 422, key, "%g is outside %g..%g", d, (double)lo, (double)hi);
    *out = (float)d;
    return 0;
}

int req_str(json_t *o, const char *key, const char **out, size_t max_len, struct perr *e) {
    json_t *v = get(o, key);
    if (!v) return 0;
    if (!json_is_string(v)) return perr_set(e, 422, key, "expected a string");
    if (json_string_length(v) > max_len)
        return perr_set(e, 422, key, "%zu bytes is longer than the limit %zu", json_string_length(v), max_len);
    if (strlen(json_string_value(v)) != json_string_length(v)) return perr_set(e, 422, key, "contains a NUL character");
    *out = json_string_value(v);
    return 0;
}

int req_bool(json_t *o, const char *key, int *out, struct perr *e) {
    json_t *v = get(o, key);
    if (!v) return 0;
    if (json_is_boolean(v)) *out = json_is_true(v);
    else if (json_is_integer(v)) *out = json_integer_value(v) != 0;
    else return perr_set(e, 422, key, "expected a boolean");
    return 0;
}

/* Bilinear resize of c planes (A1111 resizes init images to the request's size). */
static float *resize(const float *src, int c, int sw, int sh, int dw, int dh) {
    float *d = malloc(sizeof(float) * (size_t)c * dw * dh);
    if (!d) return NULL;
    for (int y = 0; y < dh; y++) {
        float fy = ((float)y + 0.5f) * (float)sh / (float)dh - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
        float wy = fy - (float)y0;
        for (int x = 0; x < dw; x++) {
            float fx = ((float)x + 0.5f) * (float)sw / (float)dw - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
            float wx = fx - (float)x0;
            for (int k = 0; k < c; k++) {
                const float *p = src + (size_t)k * sw * sh;
                float a = p[(size_t)y0 * sw + x0] * (1 - wx) + p[(size_t)y0 * sw + x1] * wx;
                float b = p[(size_t)y1 * sw + x0] * (1 - wx) + p[(size_t)y1 * sw + x1] * wx;
                d[(size_t)k * dw * dh + (size_t)y * dw + x] = a * (1 - wy) + b * wy;
            }
        }
    }
    return d;
}

int req_image(struct srv *s, const char *field, const char *b64, int is_mask, float **out, int *w, int *h, struct perr *e) {
    const char *p = b64;
    if (!strncmp(p, "data:", 5)) {
        const char *comma = strchr(p, ',');
        if (!comma || !strstr(p, ";base64")) return perr_set(e, 422, field, "a data: URL must be base64 (data:image/png;base64,...)");
        p = comma + 1;
    }
    size_t n = 0;
    uint8_t *bytes = b64_decode(p, strlen(p), &n);
    if (!bytes) return perr_set(e, 422, field, "is not valid base64");
    struct sd_ctx ctx = {0};
    float *img = NULL;
    int iw, ih;
    int rc = sd_png_read_mem(&ctx, field, bytes, n, s->o.max_side, &img, &iw, &ih);
    free(bytes);
    if (rc) return perr_set(e, 422, field, "%s (images are PNG)", ctx.msg);
    int c = 3;
    if (is_mask) { /* luma in [0, 1] */
        float *m = malloc(sizeof(float) * (size_t)iw * ih);
        if (!m) { free(img); return perr_set(e, 500, field, "out of memory"); }
        size_t hw = (size_t)iw * ih;
        for (size_t i = 0; i < hw; i++)
            m[i] = (0.299f * img[i] + 0.587f * img[hw + i] + 0.114f * img[2 * hw + i] + 1.0f) * 0.5f;
        free(img);
        img = m, c = 1;
    }
    if (*w > 0 && *h > 0 && (iw != *w || ih != *h)) {
        float *r = resize(img, c, iw, ih, *w, *h);
        free(img);
        if (!r) return perr_set(e, 500, field, "out of memory");
        img = r;
    } else {
        *w = iw, *h = ih;
    }
    *out = img;
    return 0;
}

/* A1111 scheduler names: Automatic / Karras use the sampler's own. */
static int parse_scheduler(const char *v, struct sd_sampler_params *sp, struct perr *e) {
    if (!strcasecmp(v, "karras")) sp->karras = true;
    else if (strcasecmp(v, "automatic") && strcasecmp(v, "normal") && strcasecmp(v, "default") && strcasecmp(v, "uniform"))
        return perr_set(e, 422, "scheduler", "unknown scheduler '%s' (Automatic, Karras, Normal)", v);
    return 0;
}

int req_gen_common(struct srv *s, json_t *o, struct gen_req *r, int a1111, struct perr *e) {
    const struct sd_server_opts *L = &s->o;
    const char *prompt = "", *neg = "", *sampler = NULL, *sched = NULL;
    if (!json_is_object(o)) return perr_set(e, 422, "body", "expected a JSON object");
    sd_sampler_params_init(&r->sampler);
    r->width = r->height = 512, r->batch = 1, r->n_iter = 1;
    r->sampler.steps = a1111 ? 50 : 20;
    r->cfg = a1111 ? 7.0f : 7.5f;
    r->seed = -1;
    r->strength = 0.75f;
    r->clip_skip = s->clip_skip;
    r->preview_every = L->preview_every;
    r->model = -1;
    r->restore = 1;
    r->inpaint_fill = SD_FILL_ORIGINAL; /* native jobs; A1111's img2img: its field, default fill */
    if (req_str(o, "prompt", &prompt, (size_t)L->max_prompt, e) || req_str(o, "negative_prompt", &neg, (size_t)L->max_prompt, e) ||
        req_int(o, "width", &r->width, 8, L->max_side, e) || req_int(o, "height", &r->height, 8, L->max_side, e) ||
        req_int(o, "steps", &r->sampler.steps, 1, L->max_steps, e) ||
        req_int(o, "batch_size", &r->batch, 1, L->max_batch, e) || req_int(o, "n_iter", &r->n_iter, 1, L->max_n_iter, e) ||
        req_float(o, "cfg_scale", &r->cfg, 0, 100, e) || req_llong(o, "seed", &r->seed, e) ||
        req_str(o, "sampler_name", &sampler, 64, e) || (!sampler && req_str(o, "sampler_index", &sampler, 64, e)) ||
        req_str(o, "sampler", &sampler, 64, e) || req_str(o, "scheduler", &sched, 64, e) ||
        req_int(o, "preview_every", &r->preview_every, 0, 10000, e) || req_int(o, "clip_skip", &r->clip_skip, 0, 12, e))
        return -1;
    /* The defaults (512) too must fit a server started with a smaller --max-side. */
    if (r->width > L->max_side || r->height > L->max_side)
        return perr_set(e, 422, r->width > L->max_side ? "width" : "height", "%d is above the server's limit %d (give a smaller size)",
                        r->width > L->max_side ? r->width : r->height, L->max_side);
    if (r->width % 8 || r->height % 8) return perr_set(e, 422, r->width % 8 ? "width" : "height", "must be a multiple of 8");
    if (sampler) {
        struct sd_ctx ctx = {0};
        if (sd_sampler_parse_name(&ctx, sampler, &r->sampler)) return perr_set(e, 422, "sampler_name", "%s", ctx.msg);
    } else if (a1111) {
        struct sd_ctx ctx = {0};
        sd_sampler_parse_name(&ctx, "Euler", &r->sampler);
    }
    if (sched && parse_scheduler(sched, &r->sampler, e)) return -1;
    json_t *ov = json_object_get(o, "override_settings");
    if (ov && !json_is_null(ov)) {
        if (!json_is_object(ov)) return perr_set(e, 422, "override_settings", "expected an object");
        const char *ck = NULL;
        if (req_str(ov, "sd_model_checkpoint", &ck, 1024, e)) return -1;
        if (ck && (r->model = srv_model_find(s, ck)) < 0)
            return perr_set(e, 422, "override_settings.sd_model_checkpoint", "unknown model '%s' (GET /sdapi/v1/sd-models)", ck);
        if (req_int(ov, "CLIP_stop_at_last_layers", &r->clip_skip, 1, 12, e)) {
            snprintf(e->field, sizeof e->field, "override_settings.CLIP_stop_at_last_layers");
            return -1;
        }
    }
    if (req_bool(o, "override_settings_restore_afterwards", &r->restore, e)) return -1;
    if ((long long)r->width * r->height * r->batch > (long long)L->max_side * L->max_side)
        return perr_set(e, 422, "batch_size", "%dx%d x %d images is more than the server's pixel limit %dx%d", r->width,
                        r->height, r->batch, L->max_side, L->max_side);
    if (!(r->prompt = strdup(prompt)) || !(r->negative = strdup(neg))) return perr_set(e, 500, "", "out of memory");
    return 0;
}

/* The native `loras` field (srv.h); names and paths are resolved at submit
 * (srv_loras_prepare). */
int req_loras(struct srv *s, json_t *o, struct gen_req *r, struct perr *e) {
    json_t *a = json_object_get(o, "loras");
    if (!a || json_is_null(a)) return 0;
    if (!json_is_array(a)) return perr_set(e, 422, "loras", "expected an array of {\"name\" or \"path\", \"weight\", \"te\", \"unet\"}");
    if (json_array_size(a) > SRV_MAX_LORAS) return perr_set(e, 422, "loras", "at most %d LoRAs", SRV_MAX_LORAS);
    (void)s;
    size_t i;
    json_t *it;
    json_array_foreach(a, i, it) {
        if (!json_is_object(it)) return perr_set(e, 422, "loras", "item %zu: expected an object", i);
        const char *name = NULL, *path = NULL;
        float w = 1.0f, te, un;
        if (req_str(it, "name", &name, 255, e) || req_str(it, "path", &path, PATH_MAX - 1, e) ||
            req_float(it, "weight", &w, -20.0f, 20.0f, e))
            return snprintf(e->field, sizeof e->field, "loras[%zu]", i), -1;
        te = un = w;
        if (req_float(it, "te", &te, -20.0f, 20.0f, e) || req_float(it, "unet", &un, -20.0f, 20.0f, e))
            return snprintf(e->field, sizeof e->field, "loras[%zu]", i), -1;
        if (!name == !path) return perr_set(e, 422, "loras", "item %zu: give exactly one of \"name\" and \"path\"", i);
        struct srv_lora *n = realloc(r->loras, sizeof *n * (size_t)(r->n_loras + 1));
        if (!n) return perr_set(e, 500, NULL, "out of memory");
        r->loras = n;
        n[r->n_loras++] = (struct srv_lora){name ? strdup(name) : NULL, path ? strdup(path) : NULL, te, un};
    }
    return 0;
}
