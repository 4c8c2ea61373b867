/* api_a1111.c - A1111 endpoints under /sdapi/v1 as its clients call them
 * (webuiapi, SillyTavern, Open WebUI): txt2img, img2img (inpainting),
 * progress with A1111's formula, interrupt, skip, options, the lists,
 * refresh-*, png-info (srv.h). */
#include "srv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "png_io.h"

static const char *const sampler_names[] = {"Euler", "Euler a", "DDIM", "DPM++ 2M", "DPM++ 2M SDE", "LCM", "PLMS", "LMS"};

/* A1111's Gaussian mask blur (radius = sigma = mask_blur px), separable. */
static void blur_mask(float *m, int w, int h, int sigma) {
    if (sigma <= 0) return;
    int r = 3 * sigma;
    float *k = malloc(sizeof(float) * (size_t)(2 * r + 1)), *t = malloc(sizeof(float) * (size_t)w * h);
    if (!k || !t) { free(k); free(t); return; }
    float sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = expf(-(float)(i * i) / (2.0f * (float)(sigma * sigma)));
    for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
    for (int pass = 0; pass < 2; pass++) {
        float *src = pass ? t : m, *dst = pass ? m : t;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float acc = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = pass ? x : x + i, yy = pass ? y + i : y;
                    xx = xx < 0 ? 0 : xx >= w ? w - 1 : xx;
                    yy = yy < 0 ? 0 : yy >= h ? h - 1 : yy;
                    acc += k[i + r] * src[(size_t)yy * w + xx];
                }
                dst[(size_t)y * w + x] = acc;
            }
    }
    free(k);
    free(t);
}

static int parse_img2img(struct srv *s, json_t *o, struct gen_req *r, struct perr *e) {
    json_t *imgs = json_object_get(o, "init_images");
    if (!json_is_array(imgs) || json_array_size(imgs) < 1 || !json_is_string(json_array_get(imgs, 0)))
        return perr_set(e, 422, "init_images", "expected a list with one base64 PNG");
    r->mode = MODE_IMG2IMG;
    r->strength = 0.75f;
    if (req_float(o, "denoising_strength", &r->strength, 0.0f, 1.0f, e)) return -1;
    if (r->strength <= 0) return perr_set(e, 422, "denoising_strength", "must be above 0");
    if (req_image(s, "init_images[0]", json_string_value(json_array_get(imgs, 0)), 0, &r->init, &r->width, &r->height, e))
        return -1;
    json_t *mask = json_object_get(o, "mask");
    if (mask && !json_is_null(mask)) {
        if (!json_is_string(mask)) return perr_set(e, 422, "mask", "expected a base64 PNG");
        int invert = 0, fill = SD_FILL_FILL, blur = 4; /* A1111's defaults */
        if (req_int(o, "inpainting_mask_invert", &invert, 0, 1, e) || req_int(o, "inpainting_fill", &fill, 0, 3, e) ||
            req_int(o, "mask_blur", &blur, 0, 64, e))
            return -1;
        if (req_image(s, "mask", json_string_value(mask), 1, &r->mask, &r->width, &r->height, e)) return -1;
        size_t n = (size_t)r->width * r->height;
        for (size_t i = 0; i < n; i++) r->mask[i] = r->mask[i] >= 0.5f ? 1.0f : 0.0f;
        blur_mask(r->mask, r->width, r->height, blur);
        if (invert)
            for (size_t i = 0; i < n; i++) r->mask[i] = 1.0f - r->mask[i];
        r->inpaint_fill = fill;
        r->mode = MODE_INPAINT;
    }
    return 0;
}

static json_t *info_json(struct srv *s, struct job *j) {
    const struct gen_req *r = &j->r;
    json_t *seeds = json_array(), *prompts = json_array(), *negs = json_array(), *texts = json_array(), *sub = json_array();
    for (int i = 0; i < j->n_images; i++) {
        json_array_append_new(seeds, json_integer((json_int_t)j->images[i].seed));
        json_array_append_new(sub, json_integer((json_int_t)j->images[i].seed));
        json_array_append_new(prompts, json_string(r->prompt));
        json_array_append_new(negs, json_string(r->negative));
        json_array_append_new(texts, json_string(j->images[i].infotext ? j->images[i].infotext : ""));
    }
    json_t *o = json_object();
    json_object_set_new(o, "prompt", json_string(r->prompt));
    json_object_set_new(o, "all_prompts", prompts);
    json_object_set_new(o, "negative_prompt", json_string(r->negative));
    json_object_set_new(o, "all_negative_prompts", negs);
    json_object_set_new(o, "seed", json_integer(r->seed));
    json_object_set_new(o, "all_seeds", seeds);
    json_object_set_new(o, "subseed", json_integer(r->seed));
    json_object_set_new(o, "all_subseeds", sub);
    json_object_set_new(o, "subseed_strength", json_integer(0));
    json_object_set_new(o, "width", json_integer(r->width));
    json_object_set_new(o, "height", json_integer(r->height));
    json_object_set_new(o, "sampler_name", json_string(sd_sampler_display_name(r->sampler.kind, false)));
    json_object_set_new(o, "cfg_scale", json_real(r->cfg));
    json_object_set_new(o, "steps", json_integer(r->sampler.steps));
    json_object_set_new(o, "batch_size", json_integer(r->batch));
    json_object_set_new(o, "restore_faces", json_false());
    json_object_set_new(o, "face_restoration_model", json_null());
    json_object_set_new(o, "sd_model_name", json_string(j->ran_model >= 0 ? s->models[j->ran_model].name : srv_model_name(s)));
    json_object_set_new(o, "sd_model_hash", json_null());
    json_object_set_new(o, "sd_vae_name", json_null());
    json_object_set_new(o, "sd_vae_hash", json_null());
    json_object_set_new(o, "seed_resize_from_w", json_integer(-1));
    json_object_set_new(o, "seed_resize_from_h", json_integer(-1));
    json_object_set_new(o, "denoising_strength", r->mode == MODE_TXT2IMG ? json_null() : json_real(r->strength));
    json_object_set_new(o, "extra_generation_params",
                        r->sampler.karras ? json_pack("{s:s}", "Schedule type", "Karras") : json_object());
    json_object_set_new(o, "index_of_first_image", json_integer(0));
    json_object_set_new(o, "infotexts", texts);
    json_object_set_new(o, "styles", json_array());
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y%m%d%H%M%S", localtime_r(&now, &tm));
    json_object_set_new(o, "job_timestamp", json_string(ts));
    json_object_set_new(o, "clip_skip", json_integer(r->clip_skip > 1 ? r->clip_skip : 1));
    json_object_set_new(o, "is_using_inpainting_conditioning", json_false());
    json_object_set_new(o, "version", json_string("sdrt " SDRT_VERSION));
    return o;
}

/* The response of a finished txt2img/img2img job (runs on an HTTP thread). */
json_t *a1111_result(struct srv *s, struct job *j, int *status) {
    pthread_mutex_lock(&s->mu);
    json_t *out;
    if (j->state == JOB_FAILED) {
        struct reply rp = {0};
        *status = job_http_status(j);
        reply_errorf(&rp, *status, NULL, 0, "%s", j->err);
        out = rp.json;
    } else {
        json_t *imgs = json_array();
        for (int i = 0; i < j->n_images; i++) {
            char *b = b64_encode(j->images[i].png, j->images[i].len, NULL);
            json_array_append_new(imgs, b ? json_string(b) : json_null());
            free(b);
        }
        json_t *info = info_json(s, j);
        char *txt = json_dumps(info, JSON_COMPACT);
        json_decref(info);
        out = json_pack("{s:o,s:O,s:s}", "images", imgs, "parameters", j->echo ? j->echo : json_object(), "info",
                        txt ? txt : "{}");
        free(txt);
        *status = 200;
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

static void generate(struct srv *s, json_t *body, int img2img, struct reply *rp) {
    struct perr e = {0};
    struct job *j = job_new(s, ORIGIN_A1111);
    if (!j) { reply_errorf(rp, 500, NULL, 0, "out of memory"); return; }
    if (req_gen_common(s, body, &j->r, 1, &e) || (img2img && parse_img2img(s, body, &j->r, &e))) {
        reply_error(rp, &e, 0);
        pthread_mutex_lock(&s->mu);
        job_unref(s, j);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    j->echo = json_deep_copy(body);
    json_object_del(j->echo, "init_images"); /* A1111 echoes them as null */
    json_object_set_new(j->echo, "init_images", json_null());
    if (json_object_get(j->echo, "mask")) json_object_set_new(j->echo, "mask", json_null());
    if (!img2img) json_object_del(j->echo, "init_images");
    if (srv_submit(s, j, rp)) {
        pthread_mutex_lock(&s->mu);
        job_unref(s, j);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    rp->suspend = j; /* our reference moves to the connection */
    rp->resume = a1111_result;
}

/* The job A1111's "current job" means: the oldest running A1111 job, else any running one. */
static struct job *current(struct srv *s) {
    if (s->rq) return rqfe_current(s); /* front-end mode: no local workers */
    struct job *best = NULL;
    for (int i = 0; i < s->n_workers; i++) {
        struct job *j = s->workers[i].cur;
        if (j && (!best || (j->origin == ORIGIN_A1111 && best->origin != ORIGIN_A1111) || j->t_start < best->t_start))
            best = j;
    }
    return best;
}

static void progress(struct srv *s, struct reply *rp, int skip_image) {
    pthread_mutex_lock(&s->mu);
    struct job *j = current(s);
    int queued = s->rq ? rqfe_queued(s) : s->qlen;
    json_t *state = json_pack("{s:b,s:b,s:b,s:s,s:i,s:s,s:i,s:i,s:i}", "skipped", j ? j->skip : 0, "interrupted",
                              j ? j->cancel : 0, "stopping_generation", 0, "job", j ? j->id : "", "job_count",
                              j ? j->r.n_iter : 0, "job_timestamp", "0", "job_no", j ? j->iter : 0, "sampling_step",
                              j ? j->step : 0, "sampling_steps", j ? (j->n_steps ? j->n_steps : j->r.sampler.steps) : 0);
    double progress = 0, eta = 0;
    json_t *img = json_null();
    if (j) {
        /* A1111 modules/api/api.py progressapi */
        progress = 0.01;
        if (j->r.n_iter > 0) progress += (double)j->iter / j->r.n_iter;
        if (j->n_steps > 0) progress += 1.0 / j->r.n_iter * j->step / j->n_steps;
        double since = sd_time_s() - j->t_start;
        eta = since / progress - since;
        if (progress > 1) progress = 1;
        if (!skip_image && j->preview) {
            char *b = b64_encode(j->preview, j->preview_len, NULL);
            if (b) { json_decref(img); img = json_string(b); free(b); }
        }
    }
    char info[96];
    snprintf(info, sizeof info, "%s%d queued", j ? "running, " : "", queued);
    rp->json = json_pack("{s:f,s:f,s:o,s:o,s:s}", "progress", progress, "eta_relative", eta, "state", state,
                         "current_image", img, "textinfo", info);
    pthread_mutex_unlock(&s->mu);
}

/* interrupt: stops every running job (A1111 has one); skip: the current iteration. */
static void interrupt(struct srv *s, int skip, struct reply *rp) {
    pthread_mutex_lock(&s->mu);
    int n = 0;
    if (s->rq) { /* front-end mode: this front-end's running jobs, flagged in Redis */
        char (*ids)[24] = calloc((size_t)s->n_jobs + 1, sizeof *ids);
        for (int i = 0; ids && i < s->n_jobs; i++)
            if (s->jobs[i]->state == JOB_RUNNING) {
                if (skip) s->jobs[i]->skip = 1;
                else s->jobs[i]->cancel = 1;
                memcpy(ids[n++], s->jobs[i]->id, sizeof ids[0]);
            }
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n; i++) rqfe_cancel(s, ids[i], skip);
        free(ids);
        rp->json = json_pack("{s:b,s:i}", skip ? "skipped" : "interrupted", n > 0, "jobs", n);
        return;
    }
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].cur) {
            if (skip) s->workers[i].cur->skip = 1;
            else s->workers[i].cur->cancel = 1;
            n++;
        }
    pthread_mutex_unlock(&s->mu);
    rp->json = json_pack("{s:b,s:i}", skip ? "skipped" : "interrupted", n > 0, "jobs", n);
}

static json_t *options_json(struct srv *s) {
    json_t *o = json_deep_copy(s->options);
    json_object_set_new(o, "sd_model_checkpoint", json_string(srv_option_model_name(s)));
    json_object_set_new(o, "CLIP_stop_at_last_layers", json_integer(s->clip_skip > 1 ? s->clip_skip : 1));
    json_object_set_new(o, "sd_vae", json_string("Automatic"));
    json_object_set_new(o, "samples_format", json_string("png"));
    json_object_set_new(o, "sd_checkpoint_hash", json_null());
    json_object_set_new(o, "show_progress_every_n_steps", json_integer(s->o.preview_every));
    json_object_set_new(o, "live_previews_enable", json_boolean(s->o.preview_every > 0));
    json_object_set_new(o, "eta_ddim", json_real(0));
    return o;
}

static void set_options(struct srv *s, json_t *body, struct reply *rp) {
    if (!json_is_object(body)) { reply_errorf(rp, 422, "body", 0, "expected a JSON object"); return; }
    struct perr e = {0};
    const char *ck = NULL;
    int clip = s->clip_skip > 1 ? s->clip_skip : 1;
    if (req_str(body, "sd_model_checkpoint", &ck, 1024, &e) || req_int(body, "CLIP_stop_at_last_layers", &clip, 1, 12, &e)) {
        reply_error(rp, &e, 0);
        return;
    }
    int idx = -1;
    if (ck && (idx = srv_model_find(s, ck)) < 0) {
        reply_errorf(rp, 422, "sd_model_checkpoint", 0, "unknown model '%s' (GET /sdapi/v1/sd-models)", ck);
        return;
    }
    if (idx >= 0 && !s->rq) { /* front-end mode: the workers load models; the option is the default */
        struct sd_ctx ctx = {0};
        if (srv_model_switch(&ctx, s, idx)) { reply_errorf(rp, 500, "sd_model_checkpoint", 0, "%s", ctx.msg); return; }
    }
    pthread_mutex_lock(&s->mu);
    if (idx >= 0) s->opt_model = idx;
    s->clip_skip = clip;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) /* the rest is kept as given (a GET's dict POSTed back) */
        if (strcmp(k, "sd_model_checkpoint") && strcmp(k, "CLIP_stop_at_last_layers")) json_object_set(s->options, k, v);
    pthread_mutex_unlock(&s->mu);
    rp->json = json_null();
}

static void lists(struct srv *s, const char *p, struct reply *rp) {
    if (!strcmp(p, "samplers")) {
        json_t *a = json_array();
        for (size_t i = 0; i < sizeof sampler_names / sizeof *sampler_names; i++)
            json_array_append_new(a, json_pack("{s:s,s:[s],s:{}}", "name", sampler_names[i], "aliases", sampler_names[i], "options"));
        rp->json = a;
    } else if (!strcmp(p, "schedulers")) {
        rp->json = json_pack("[{s:s,s:s,s:[],s:n,s:b},{s:s,s:s,s:[],s:f,s:b}]", "name", "automatic", "label", "Automatic",
                             "aliases", "default_rho", "need_inner_model", 0, "name", "karras", "label", "Karras",
                             "aliases", "default_rho", 7.0, "need_inner_model", 0);
    } else if (!strcmp(p, "sd-models")) {
        json_t *a = json_array();
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->n_models; i++)
            json_array_append_new(a, json_pack("{s:s,s:s,s:n,s:n,s:s,s:n}", "title", s->models[i].name, "model_name",
                                               s->models[i].name, "hash", "sha256", "filename", s->models[i].path, "config"));
        pthread_mutex_unlock(&s->mu);
        rp->json = a;
    } else if (!strcmp(p, "loras")) {
        pthread_mutex_lock(&s->mu);
        rp->json = s->lora_list ? json_deep_copy(s->lora_list) : json_array();
        pthread_mutex_unlock(&s->mu);
    } else if (!strcmp(p, "sd-vae") || !strcmp(p, "hypernetworks") || !strcmp(p, "face-restorers") ||
               !strcmp(p, "prompt-styles") || !strcmp(p, "realesrgan-models")) {
        rp->json = json_array();
    } else if (!strcmp(p, "upscalers")) {
        rp->json = json_pack("[{s:s,s:n,s:n,s:n,s:i}]", "name", "None", "model_name", "model_path", "model_url", "scale", 1);
    } else if (!strcmp(p, "latent-upscale-modes")) {
        rp->json = json_array();
    } else if (!strcmp(p, "scripts")) {
        rp->json = json_pack("{s:[],s:[]}", "txt2img", "img2img");
    } else if (!strcmp(p, "embeddings")) {
        rp->json = json_pack("{s:{},s:{}}", "loaded", "skipped");
    } else if (!strcmp(p, "cmd-flags")) {
        rp->json = json_pack("{s:b}", "api", 1);
    } else {
        rp->status = -1;
    }
}

static void png_info(json_t *body, struct reply *rp) {
    const char *img = NULL;
    struct perr e = {0};
    if (!json_is_object(body)) { reply_errorf(rp, 422, "body", 0, "expected {\"image\": base64 PNG}"); return; }
    if (req_str(body, "image", &img, 64u << 20, &e)) { reply_error(rp, &e, 0); return; }
    if (!img) { reply_errorf(rp, 422, "image", 0, "required"); return; }
    if (!strncmp(img, "data:", 5) && strchr(img, ',')) img = strchr(img, ',') + 1;
    size_t n = 0;
    uint8_t *bytes = b64_decode(img, strlen(img), &n);
    if (!bytes) { reply_errorf(rp, 422, "image", 0, "is not valid base64"); return; }
    struct sd_ctx ctx = {0};
    char *txt = NULL;
    int rc = sd_png_read_text_mem(&ctx, "image", bytes, n, "parameters", &txt);
    free(bytes);
    if (rc) { reply_errorf(rp, 422, "image", 0, "%s", ctx.msg); return; }
    json_t *items = json_object();
    if (txt) json_object_set_new(items, "parameters", json_string(txt));
    rp->json = json_pack("{s:s,s:o,s:{}}", "info", txt ? txt : "", "items", items, "parameters");
    free(txt);
}

int api_a1111(struct srv *s, const char *method, const char *p, json_t *body, const char *raw, size_t raw_len,
              struct reply *rp) {
    (void)raw, (void)raw_len;
    int post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    if (post && (!strcmp(p, "txt2img") || !strcmp(p, "img2img"))) {
        if (!body) { reply_errorf(rp, 422, "body", 0, "expected a JSON object"); return 1; }
        generate(s, body, p[0] == 'i', rp);
    } else if (get && !strncmp(p, "progress", 8) && (!p[8] || p[8] == '?')) {
        progress(s, rp, 0);
    } else if (post && (!strcmp(p, "interrupt") || !strcmp(p, "skip"))) {
        interrupt(s, p[0] == 's', rp);
    } else if (get && !strcmp(p, "options")) {
        pthread_mutex_lock(&s->mu);
        rp->json = options_json(s);
        pthread_mutex_unlock(&s->mu);
    } else if (post && !strcmp(p, "options")) {
        set_options(s, body, rp);
    } else if (post && (!strcmp(p, "refresh-checkpoints") || !strcmp(p, "refresh-loras") || !strcmp(p, "refresh-vae"))) {
        if (p[8] == 'c') {
            struct sd_ctx ctx = {0};
            pthread_mutex_lock(&s->switch_mu);
            pthread_mutex_lock(&s->mu);
            int rc = srv_models_scan(&ctx, s);
            pthread_mutex_unlock(&s->mu);
            pthread_mutex_unlock(&s->switch_mu);
            if (rc) { reply_errorf(rp, 500, NULL, 0, "%s", ctx.msg); return 1; }
        } else if (p[8] == 'l') {
            struct sd_ctx ctx = {0};
            int rc = srv_loras_scan(&ctx, s);
            if (rc) { reply_errorf(rp, 500, NULL, 0, "%s", ctx.msg); return 1; }
        }
        rp->json = json_null();
    } else if (post && !strcmp(p, "png-info")) {
        png_info(body, rp);
    } else if (get) {
        lists(s, p, rp);
        if (rp->status == -1) { rp->status = 0; return 0; }
    } else {
        return 0;
    }
    return 1;
}
