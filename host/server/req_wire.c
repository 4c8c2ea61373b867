/* req_wire.c - a gen_req to and from its wire JSON (req_wire.h). */
#include "req_wire.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inpaint_fill.h"
#include "prompt.h"

static const char *const origin_names[] = {"native", "a1111", "openai"};
static const char *const mode_names[] = {"txt2img", "img2img", "inpaint"};

static char *planes_b64(const float *x, size_t n) {
    uint8_t *b = malloc(n ? n * 4 : 1);
    if (!b) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        b[4 * i] = (uint8_t)u, b[4 * i + 1] = (uint8_t)(u >> 8), b[4 * i + 2] = (uint8_t)(u >> 16), b[4 * i + 3] = (uint8_t)(u >> 24);
    }
    char *s = b64_encode(b, n * 4, NULL);
    free(b);
    return s;
}

/* json_real of a finite float (NULL otherwise: jansson has no NaN). */
static json_t *jf(float f) { return isfinite(f) ? json_real((double)f) : NULL; }

/* The prompt's <lora:...> tags count (they are the last r->n_loras entries once prepared). */
static int prompt_tags(const char *prompt) {
    struct sd_ctx ctx = {0};
    struct sd_prompt *p = sd_prompt_parse(&ctx, prompt ? prompt : "");
    int n = p ? p->n_loras : 0;
    sd_prompt_free(p);
    return n;
}

int req_wire_encode(const struct gen_req *r, const char *model, enum job_origin o, json_t **out) {
    *out = NULL;
    const struct sd_sampler_params *sp = &r->sampler;
    json_t *s = json_object(), *j = json_object(), *loras = json_array();
    int bad = !s || !j || !loras;
    bad |= json_object_set_new(s, "name", json_string(sd_sampler_display_name(sp->kind, false)));
    bad |= json_object_set_new(s, "karras", json_boolean(sp->karras));
    bad |= json_object_set_new(s, "steps", json_integer(sp->steps));
    bad |= json_object_set_new(s, "spacing", json_integer(sp->spacing));
    bad |= json_object_set_new(s, "steps_offset", json_integer(sp->steps_offset));
    bad |= json_object_set_new(s, "prediction", json_integer(sp->prediction));
    bad |= json_object_set_new(s, "eta", jf(sp->eta));
    bad |= json_object_set_new(s, "clip_sample", json_boolean(sp->clip_sample));
    bad |= json_object_set_new(s, "lcm_original_steps", json_integer(sp->lcm_original_steps));
    /* Once srv_loras_prepare ran (lora_key set), the prompt's tags were
     * appended after the explicit LoRAs: the worker resolves them again. */
    int n = r->n_loras - (r->lora_key ? prompt_tags(r->prompt) : 0);
    for (int i = 0; i < n; i++) {
        const struct srv_lora *l = &r->loras[i];
        json_t *e = json_object();
        bad |= !e || json_object_set_new(e, "name", json_string(l->name ? l->name : "")) ||
               json_object_set_new(e, "te", jf(l->te)) || json_object_set_new(e, "unet", jf(l->unet)) ||
               json_array_append_new(loras, e);
    }
    bad |= json_object_set_new(j, "v", json_integer(REQ_WIRE_VERSION));
    bad |= json_object_set_new(j, "model", json_string(model ? model : ""));
    bad |= json_object_set_new(j, "origin", json_string(origin_names[o]));
    bad |= json_object_set_new(j, "mode", json_string(mode_names[r->mode]));
    bad |= json_object_set_new(j, "prompt", json_string(r->prompt ? r->prompt : ""));
    bad |= json_object_set_new(j, "negative_prompt", json_string(r->negative ? r->negative : ""));
    bad |= json_object_set_new(j, "width", json_integer(r->width));
    bad |= json_object_set_new(j, "height", json_integer(r->height));
    bad |= json_object_set_new(j, "batch_size", json_integer(r->batch));
    bad |= json_object_set_new(j, "n_iter", json_integer(r->n_iter));
    bad |= json_object_set_new(j, "clip_skip", json_integer(r->clip_skip));
    bad |= json_object_set_new(j, "cfg_scale", jf(r->cfg));
    bad |= json_object_set_new(j, "strength", jf(r->strength));
    bad |= json_object_set_new(j, "seed", json_integer(r->seed));
    bad |= json_object_set_new(j, "sampler", s);
    bad |= json_object_set_new(j, "inpaint_fill", json_integer(r->inpaint_fill));
    bad |= json_object_set_new(j, "preview_every", json_integer(r->preview_every));
    bad |= json_object_set_new(j, "loras", loras);
    if (!bad && r->init) {
        char *b = planes_b64(r->init, (size_t)3 * r->width * r->height);
        bad |= !b || json_object_set_new(j, "init_f32", json_string(b));
        free(b);
        bad |= json_object_set_new(j, "init_w", json_integer(r->width)) || json_object_set_new(j, "init_h", json_integer(r->height));
    }
    if (!bad && r->mask) {
        char *b = planes_b64(r->mask, (size_t)r->width * r->height);
        bad |= !b || json_object_set_new(j, "mask_f32", json_string(b));
        free(b);
    }
    if (bad) {
        json_decref(j);
        return -1;
    }
    *out = j;
    return 0;
}

/* ---- decoding: every field checked, the error names it ---- */

static int need(struct sd_ctx *ctx, const json_t *o, const char *key, json_t **v) {
    *v = json_object_get(o, key);
    if (!*v) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: missing field '%s'", key);
    return SD_OK;
}

static int get_int(struct sd_ctx *ctx, const json_t *o, const char *key, long long lo, long long hi, long long *out) {
    json_t *v;
    int st = need(ctx, o, key, &v);
    if (st) return st;
    if (!json_is_integer(v)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' = %lld is outside %lld..%lld", key, x, lo, hi);
    *out = x;
    return SD_OK;
}

static int get_i(struct sd_ctx *ctx, const json_t *o, const char *key, int lo, int hi, int *out) {
    long long x;
    int st = get_int(ctx, o, key, lo, hi, &x);
    if (!st) *out = (int)x;
    return st;
}

static int get_f(struct sd_ctx *ctx, const json_t *o, const char *key, float lo, float hi, float *out) {
    json_t *v;
    int st = need(ctx, o, key, &v);
    if (st) return st;
    if (!json_is_number(v)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' = %g is outside %g..%g", key, d, (double)lo, (double)hi);
    *out = (float)d;
    return SD_OK;
}

static int get_b(struct sd_ctx *ctx, const json_t *o, const char *key, bool *out) {
    json_t *v;
    int st = need(ctx, o, key, &v);
    if (st) return st;
    if (!json_is_boolean(v)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' must be true or false", key);
    *out = json_is_true(v);
    return SD_OK;
}

static int get_s(struct sd_ctx *ctx, const json_t *o, const char *key, size_t max, const char **out) {
    json_t *v;
    int st = need(ctx, o, key, &v);
    if (st) return st;
    if (!json_is_string(v)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' must be a string", key);
    if (json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v))
        return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' is longer than %zu bytes or holds a NUL", key, max);
    *out = json_string_value(v);
    return SD_OK;
}

static int get_enum(struct sd_ctx *ctx, const json_t *o, const char *key, const char *const *names, int n, int *out) {
    const char *s;
    int st = get_s(ctx, o, key, 64, &s);
    if (st) return st;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return SD_OK;
        }
    return sd_errorf(ctx, SD_ERR_INVALID, "wire request: unknown %s '%s'", key, s);
}

/* n little-endian float32 values from base64 field `key`. */
static int get_planes(struct sd_ctx *ctx, const json_t *o, const char *key, size_t n, float **out) {
    const char *s;
    int st = get_s(ctx, o, key, (size_t)1 << 31, &s);
    if (st) return st;
    size_t len = 0;
    uint8_t *b = b64_decode(s, strlen(s), &len);
    if (!b) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' is not base64", key);
    if (len != n * 4) {
        free(b);
        return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' holds %zu bytes, expected %zu (float32 planes of the size)", key, len, n * 4);
    }
    float *x = malloc(n * sizeof *x);
    if (!x) {
        free(b);
        return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        memcpy(&x[i], &u, 4);
        if (!isfinite(x[i])) {
            free(b), free(x);
            return sd_errorf(ctx, SD_ERR_INVALID, "wire request: '%s' holds a non-finite value at %zu", key, i);
        }
    }
    free(b);
    *out = x;
    return SD_OK;
}

static int decode(struct sd_ctx *ctx, const json_t *in, struct gen_req *r, char *model, size_t model_cap, enum job_origin *o) {
    const char *s;
    int v, st;
    if (!json_is_object(in)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: not a JSON object");
    if ((st = get_i(ctx, in, "v", 0, 1 << 30, &v))) return st;
    if (v != REQ_WIRE_VERSION)
        return sd_errorf(ctx, SD_ERR_INVALID, "wire request: version %d, this worker reads version %d", v, REQ_WIRE_VERSION);
    if ((st = get_s(ctx, in, "model", model_cap - 1, &s))) return st;
    snprintf(model, model_cap, "%s", s);
    int oi = 0, mi = 0;
    if ((st = get_enum(ctx, in, "origin", origin_names, 3, &oi)) || (st = get_enum(ctx, in, "mode", mode_names, 3, &mi)))
        return st;
    *o = (enum job_origin)oi;
    r->mode = (enum job_mode)mi;
    r->model = -1;
    r->restore = 1;
    if ((st = get_s(ctx, in, "prompt", (size_t)1 << 20, &s)) || !(r->prompt = strdup(s))) return st ? st : SD_ERR_NOMEM;
    if ((st = get_s(ctx, in, "negative_prompt", (size_t)1 << 20, &s)) || !(r->negative = strdup(s))) return st ? st : SD_ERR_NOMEM;
    if ((st = get_i(ctx, in, "width", 8, 16384, &r->width)) || (st = get_i(ctx, in, "height", 8, 16384, &r->height)) ||
        (st = get_i(ctx, in, "batch_size", 1, 1024, &r->batch)) || (st = get_i(ctx, in, "n_iter", 1, 100000, &r->n_iter)) ||
        (st = get_i(ctx, in, "clip_skip", 0, 12, &r->clip_skip)) || (st = get_f(ctx, in, "cfg_scale", -1e30f, 1e30f, &r->cfg)) ||
        (st = get_f(ctx, in, "strength", 0, 1, &r->strength)) || (st = get_int(ctx, in, "seed", 0, (1LL << 53), &r->seed)) ||
        (st = get_i(ctx, in, "inpaint_fill", SD_FILL_FILL, SD_FILL_LATENT_NOTHING, &r->inpaint_fill)) ||
        (st = get_i(ctx, in, "preview_every", 0, 1 << 30, &r->preview_every)))
        return st;
    if (r->width % 8 || r->height % 8) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: width and height must be multiples of 8");
    json_t *sp;
    if ((st = need(ctx, in, "sampler", &sp))) return st;
    if (!json_is_object(sp)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: 'sampler' must be an object");
    struct sd_sampler_params *p = &r->sampler;
    sd_sampler_params_init(p);
    int spacing, pred;
    if ((st = get_s(ctx, sp, "name", 64, &s))) return st;
    if (sd_sampler_parse_name(ctx, s, p)) return sd_error_wrap(ctx, "wire request: sampler.name");
    if ((st = get_b(ctx, sp, "karras", &p->karras)) || (st = get_i(ctx, sp, "steps", 1, 100000, &p->steps)) ||
        (st = get_i(ctx, sp, "spacing", SD_SPACING_DEFAULT, SD_SPACING_TRAILING, &spacing)) ||
        (st = get_i(ctx, sp, "steps_offset", 0, 1000, &p->steps_offset)) ||
        (st = get_i(ctx, sp, "prediction", SD_PRED_EPSILON, SD_PRED_V, &pred)) || (st = get_f(ctx, sp, "eta", 0, 1e6f, &p->eta)) ||
        (st = get_b(ctx, sp, "clip_sample", &p->clip_sample)) ||
        (st = get_i(ctx, sp, "lcm_original_steps", 1, 100000, &p->lcm_original_steps)))
        return sd_error_wrap(ctx, "sampler");
    p->spacing = (enum sd_spacing)spacing;
    p->prediction = (enum sd_prediction)pred;
    json_t *la;
    if ((st = need(ctx, in, "loras", &la))) return st;
    if (!json_is_array(la) || json_array_size(la) > SRV_MAX_LORAS)
        return sd_errorf(ctx, SD_ERR_INVALID, "wire request: 'loras' must be an array of at most %d", SRV_MAX_LORAS);
    if (json_array_size(la) && !(r->loras = calloc(json_array_size(la), sizeof *r->loras))) return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(la); i++) {
        json_t *e = json_array_get(la, i);
        struct srv_lora *l = &r->loras[i];
        if (!json_is_object(e)) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: loras[%zu] must be an object", i);
        if ((st = get_s(ctx, e, "name", 255, &s)) || (st = get_f(ctx, e, "te", -1e30f, 1e30f, &l->te)) ||
            (st = get_f(ctx, e, "unet", -1e30f, 1e30f, &l->unet)))
            return sd_error_wrap(ctx, "loras[%zu]", i);
        if (!*s) return sd_errorf(ctx, SD_ERR_INVALID, "wire request: loras[%zu].name is empty", i);
        if (!(l->name = strdup(s))) return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
        r->n_loras++;
    }
    int has_init = json_object_get(in, "init_f32") != NULL, has_mask = json_object_get(in, "mask_f32") != NULL;
    if (has_init != (r->mode != MODE_TXT2IMG) || has_mask != (r->mode == MODE_INPAINT))
        return sd_errorf(ctx, SD_ERR_INVALID, "wire request: mode %s %s init_f32 and %s mask_f32", mode_names[r->mode],
                         r->mode == MODE_TXT2IMG ? "takes no" : "needs", r->mode == MODE_INPAINT ? "needs" : "takes no");
    if (has_init) {
        int w, h;
        if ((st = get_i(ctx, in, "init_w", 8, 16384, &w)) || (st = get_i(ctx, in, "init_h", 8, 16384, &h))) return st;
        if (w != r->width || h != r->height)
            return sd_errorf(ctx, SD_ERR_INVALID, "wire request: init image %dx%d differs from the size %dx%d", w, h, r->width, r->height);
        size_t hw = (size_t)w * h;
        if ((st = get_planes(ctx, in, "init_f32", 3 * hw, &r->init))) return st;
        if (has_mask && (st = get_planes(ctx, in, "mask_f32", hw, &r->mask))) return st;
    }
    return SD_OK;
}

int req_wire_decode(struct sd_ctx *ctx, const json_t *in, struct gen_req *r, char *model, size_t model_cap,
                    enum job_origin *o) {
    memset(r, 0, sizeof *r);
    *o = ORIGIN_NATIVE;
    int st = decode(ctx, in, r, model, model_cap, o);
    if (st) {
        if (!ctx->msg[0] || st == SD_ERR_NOMEM) sd_errorf(ctx, st, "wire request: out of memory");
        gen_req_free(r);
    }
    return st;
}
