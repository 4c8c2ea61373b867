/* workers.c - models (the current one shared by every worker, switched
 * when no job runs) and the device workers: one thread per device, each
 * with its own runtime, taking the oldest job from the queue (a free worker
 * takes work: least-busy placement, queued work included; round-robin and
 * random placement pin jobs to workers when queued). A job that fails
 * on a device with SD_ERR_BACKEND is retried once on another device, and
 * that device rests for opts.backoff_s (srv.h). */
#include "srv.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infotext.h"
#include "model_load.h"
#include "png_io.h"
#include "preview.h"

/* "dir/name.safetensors" -> "name"; "dir/folder/" -> "folder". */
static void model_name_of(const char *path, char *out, size_t n) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t len = strlen(tmp);
    while (len > 1 && tmp[len - 1] == '/') tmp[--len] = 0;
    const char *base = strrchr(tmp, '/');
    snprintf(out, n, "%s", base && base[1] ? base + 1 : tmp);
    char *dot = strrchr(out, '.');
    if (dot && !strcmp(dot, ".safetensors")) *dot = 0;
}

static void add_model(struct srv *s, const char *path) {
    char name[128];
    model_name_of(path, name, sizeof name);
    for (int i = 0; i < s->n_models; i++)
        if (!strcmp(s->models[i].name, name)) return;
    if (s->n_models == SRV_MAX_MODELS) return;
    struct model_entry *e = &s->models[s->n_models++];
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->path, sizeof e->path, "%s", path);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const struct model_entry *)a)->name, ((const struct model_entry *)b)->name);
}

int srv_models_scan(struct sd_ctx *ctx, struct srv *s) {
    char keep[PATH_MAX] = "", keep_opt[PATH_MAX] = "";
    if (s->n_models && s->cur_model >= 0) snprintf(keep, sizeof keep, "%s", s->models[s->cur_model].path);
    if (s->n_models && s->opt_model >= 0) snprintf(keep_opt, sizeof keep_opt, "%s", s->models[s->opt_model].path);
    s->n_models = 0;
    if (s->model_path[0]) add_model(s, s->model_path);
    if (s->models_dir[0]) {
        DIR *d = opendir(s->models_dir);
        if (!d) return sd_errorf(ctx, SD_ERR_IO, "--models-dir %s cannot be read", s->models_dir);
        int first = s->n_models;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char p[PATH_MAX], idx[PATH_MAX + 32];
            snprintf(p, sizeof p, "%s/%s", s->models_dir, e->d_name);
            snprintf(idx, sizeof idx, "%s/model_index.json", p);
            size_t n = strlen(e->d_name);
            struct stat st;
            if ((n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) || stat(idx, &st) == 0) add_model(s, p);
        }
        closedir(d);
        qsort(s->models + first, (size_t)(s->n_models - first), sizeof *s->models, cmp_entry);
    }
    s->cur_model = s->opt_model = -1;
    for (int i = 0; i < s->n_models && keep[0]; i++)
        if (!strcmp(s->models[i].path, keep)) s->cur_model = i;
    for (int i = 0; i < s->n_models; i++)
        if (!strcmp(s->models[i].path, keep_opt)) s->opt_model = i;
    if (!s->n_models) return sd_errorf(ctx, SD_ERR_INVALID, "no model: give --model PATH or --models-dir DIR");
    return SD_OK;
}

int srv_model_find(struct srv *s, const char *name) {
    for (int i = 0; i < s->n_models; i++) {
        const char *n = s->models[i].name;
        size_t len = strlen(n);
        /* "name", "name.safetensors", "name [hash]" (A1111 titles) */
        if (!strncmp(name, n, len) && (!name[len] || !strcmp(name + len, ".safetensors") || name[len] == ' '))
            return i;
    }
    return -1;
}

const char *srv_model_name(struct srv *s) { return s->cur_model >= 0 ? s->models[s->cur_model].name : ""; }
const char *srv_option_model_name(struct srv *s) { return s->opt_model >= 0 ? s->models[s->opt_model].name : srv_model_name(s); }

static struct sd_tokenizer *load_tok(struct sd_ctx *ctx, struct srv *s, const char *path, const struct sd_model *m) {
    char p[PATH_MAX + 32];
    struct stat st;
    snprintf(p, sizeof p, "%s/tokenizer/vocab.json", path);
    if (!m->single_file && stat(p, &st) == 0) return sd_tokenizer_load_diffusers(ctx, path);
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(ctx, s->vocab);
    if (!tok) {
        sd_error_wrap(ctx, "tokenizer (give --vocab PATH to bpe_simple_vocab_16e6.txt.gz)");
        return NULL;
    }
    sd_tokenizer_set_family(tok, m->clip.pad_id == 0 ? SD_TOKENIZER_SD2 : SD_TOKENIZER_SD1);
    return tok;
}

/* Loads models[idx] (outside the lock), then swaps it in when no job runs. */
int srv_model_switch(struct sd_ctx *ctx, struct srv *s, int idx) {
    pthread_mutex_lock(&s->switch_mu);
    if (idx == s->cur_model && s->model) { pthread_mutex_unlock(&s->switch_mu); return SD_OK; }
    struct sd_model *m = NULL;
    struct sd_tokenizer *tok = NULL;
    const char *path = s->models[idx].path;
    int rc = sd_model_load(ctx, path, s->config[0] ? s->config : NULL, &m);
    if (!rc && !(tok = load_tok(ctx, s, path, m))) rc = ctx->status ? ctx->status : SD_ERR_INVALID;
    if (!rc) rc = sd_model_load_weights(m);
    struct sd_lora_state *ls = rc ? NULL : sd_lora_state_new(&s->lora_ctx, m);
    if (!rc && !ls) rc = sd_errorf(ctx, SD_ERR_NOMEM, "%s", s->lora_ctx.msg);
    if (rc) {
        sd_tokenizer_free(tok);
        sd_model_free(m);
        sd_error_wrap(ctx, "model %s", s->models[idx].name);
        pthread_mutex_unlock(&s->switch_mu);
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    s->switching = 1;
    while (s->running > 0) pthread_cond_wait(&s->ev_cv, &s->mu);
    struct sd_model *old = s->model;
    struct sd_tokenizer *old_tok = s->tok;
    struct sd_lora_state *old_ls = s->lora;
    for (int i = 0; i < s->n_workers && old; i++)
        if (s->workers[i].rt) sd_runtime_release_model(s->workers[i].rt, old);
    s->model = m, s->tok = tok, s->cur_model = idx, s->lora = ls;
    free(s->lora_key);
    free(s->lora_hash);
    s->lora_key = NULL, s->lora_hash = NULL; /* a fresh model: no LoRA */
    s->switching = 0;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    sd_lora_state_free(old_ls); /* its copies are released above; the originals come back before the free */
    sd_model_free(old);
    sd_tokenizer_free(old_tok);
    sd_logf(&s->o.log, SD_LOG_INFO, "model %s loaded (%s)", s->models[idx].name, path);
    pthread_mutex_unlock(&s->switch_mu);
    return SD_OK;
}

struct run_ctx {
    struct worker *w;
    struct job *j;
    double t_step;
    int decoded;      /* the vae_decode phase was reported: the images are written */
};

static int on_event(void *user, const struct sd_gen_event *ev) {
    struct run_ctx *rc = user;
    struct srv *s = rc->w->s;
    struct job *j = rc->j;
    if (ev->kind != SD_EV_STEP) {
        if (ev->kind == SD_EV_PHASE && ev->phase && !strcmp(ev->phase, "vae_decode")) rc->decoded = 1;
        pthread_mutex_lock(&s->mu);
        int stop = j->cancel || j->skip || s->stopping;
        pthread_mutex_unlock(&s->mu);
        return stop;
    }
    uint8_t *png = NULL;
    size_t len = 0;
    int every = j->r.preview_every;
    if (every > 0 && ev->x0 && ev->channels == 4 && ((ev->step + 1) % every == 0 || ev->step + 1 == ev->n_steps)) {
        uint8_t *rgb = malloc((size_t)ev->h * ev->w * 3);
        struct sd_ctx ctx = {0};
        if (rgb) {
            sd_preview_rgb8_for(ev->x0, ev->w, ev->h, ev->latent_rgb, ev->sdxl, rgb);
            sd_png_encode_rgb8(&ctx, rgb, ev->w, ev->h, NULL, &png, &len);
            free(rgb);
        }
    }
    char *b64 = png ? b64_encode(png, len, NULL) : NULL;
    pthread_mutex_lock(&s->mu);
    j->step = ev->step + 1;
    j->n_steps = ev->n_steps;
    j->step_sum += ev->seconds;
    hist_add(&s->step_h, ev->seconds);
    job_event(s, j, "step", json_pack("{s:i,s:i,s:i,s:i,s:f}", "step", j->step, "steps", ev->n_steps, "iteration",
                                      j->iter, "iterations", j->r.n_iter, "seconds", ev->seconds));
    if (png) {
        free(j->preview);
        j->preview = png, j->preview_len = len, j->preview_step = j->step;
        if (b64) {
            char url[80];
            snprintf(url, sizeof url, "data:image/png;base64,");
            json_t *d = json_pack("{s:i,s:i,s:i}", "step", j->step, "iteration", j->iter, "width", ev->w);
            json_object_set_new(d, "height", json_integer(ev->h));
            size_t n = strlen(url) + strlen(b64) + 1;
            char *u = malloc(n);
            if (u) {
                snprintf(u, n, "%s%s", url, b64);
                json_object_set_new(d, "image", json_string(u));
                free(u);
            }
            job_event(s, j, "preview", d);
        }
    }
    int stop = j->cancel || j->skip || s->stopping;
    pthread_mutex_unlock(&s->mu);
    free(b64);
    return stop;
}

static char *infotext(struct srv *s, const struct job *j, uint64_t seed) {
    const struct gen_req *r = &j->r;
    struct sd_infotext it;
    sd_infotext_init(&it);
    it.prompt = r->prompt;
    it.negative_prompt = r->negative;
    it.steps = r->sampler.steps;
    it.sampler = sd_sampler_display_name(r->sampler.kind, false);
    it.schedule_type = r->sampler.karras ? "Karras" : NULL;
    it.cfg_scale = r->cfg;
    it.seed = seed;
    it.width = r->width, it.height = r->height;
    it.model = srv_model_name(s);
    it.denoising_strength = r->mode == MODE_TXT2IMG ? -1 : r->strength;
    it.clip_skip = r->clip_skip;
    it.rng = "CPU";
    it.lora_hashes = j->lora_hashes;
    it.version = "sdrt " SDRT_VERSION;
    return sd_infotext_format(&it);
}

void gen_params_of(const struct gen_req *r, struct sd_gen_params *g) {
    sd_gen_params_init(g);
    g->prompt = r->prompt, g->negative_prompt = r->negative;
    g->width = r->width, g->height = r->height, g->batch = r->batch;
    g->cfg_scale = r->cfg, g->clip_skip = r->clip_skip, g->sampler = r->sampler;
    g->strength = r->strength;
    g->init_image = r->init, g->mask = r->mask;
    if (r->mask) g->inpaint_fill = (enum sd_inpaint_fill)r->inpaint_fill;
    g->seed = (uint64_t)r->seed;
}

/* Runs every iteration of j; returns SD_OK, SD_ERR_CANCELLED or an error on ctx. */
static int run_job(struct worker *w, struct job *j, struct sd_ctx *ctx) {
    struct srv *s = w->s;
    struct gen_req *r = &j->r;
    struct sd_gen_params g;
    gen_params_of(r, &g);
    struct run_ctx rc = {.w = w, .j = j};
    g.on_event = on_event, g.user = &rc;
    /* A1111: an interrupted request also returns the image of the iteration
     * it stopped (its last step's prediction, decoded). */
    g.decode_on_cancel = j->origin == ORIGIN_A1111;
    int err = sd_gen_params_check(ctx, &g);
    if (!err) err = sd_gen_check_size(ctx, s->model, g.width, g.height);
    if (err) return err;
    size_t plane = (size_t)3 * g.width * g.height;
    float *images = malloc(sizeof(float) * plane * (size_t)g.batch);
    uint8_t *rgb = malloc(plane);
    if (!images || !rgb) { free(images); free(rgb); return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory"); }
    /* The job holds the model's active LoRA set (its own: worker_main). */
    struct sd_pipeline p = {.ctx = ctx, .model = s->model, .rt = w->rt, .tok = s->tok, .cache = s->cache,
                            .lora = s->lora, .log = &s->o.log, .lora_applied = 1};
    for (int it = j->iter; it < r->n_iter && !err; it++) {
        pthread_mutex_lock(&s->mu);
        j->iter = it, j->step = 0;
        pthread_mutex_unlock(&s->mu);
        g.seed = (uint64_t)(r->seed + it);
        rc.decoded = 0;
        err = sd_generate(&p, &g, images);
        pthread_mutex_lock(&s->mu);
        int skipped = j->skip && !j->cancel;
        j->skip = 0;
        pthread_mutex_unlock(&s->mu);
        if (err == SD_ERR_CANCELLED && skipped) { sd_ctx_clear(ctx); err = SD_OK; continue; }
        const int interrupted = err == SD_ERR_CANCELLED && rc.decoded;
        if (interrupted) sd_ctx_clear(ctx), err = SD_OK;
        for (int b = 0; b < g.batch && !err; b++) {
            sd_image_to_rgb8(images + (size_t)b * plane, g.width, g.height, rgb);
            char *txt = infotext(s, j, g.seed);
            uint8_t *png = NULL;
            size_t len = 0;
            if (!txt) err = sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
            else err = sd_png_encode_rgb8(ctx, rgb, g.width, g.height, txt, &png, &len);
            pthread_mutex_lock(&s->mu);
            struct job_image *n = err ? NULL : realloc(j->images, sizeof *n * (size_t)(j->n_images + 1));
            if (n) {
                j->images = n;
                n[j->n_images++] = (struct job_image){.png = png, .len = len, .seed = g.seed, .infotext = txt};
                png = NULL, txt = NULL;
            } else if (!err) {
                err = sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
            }
            pthread_mutex_unlock(&s->mu);
            free(png);
            free(txt);
        }
        if (interrupted && !err) err = sd_errorf(ctx, SD_ERR_CANCELLED, "interrupted at step %d", j->step);
    }
    free(images);
    free(rgb);
    return err;
}

/* The next job this worker may run (under mu), taken off the queue.
 * LoRA sets (srv.h): the oldest eligible job runs when it needs the
 * model's active set or when no generation uses the model (then *activate:
 * this worker switches the set, lora_switching keeps others out; a job
 * for a model other than the current one counts as a switch too). Else a
 * younger job with the active set may go first, at most
 * SRV_LORA_MAX_BYPASS times per waiting job; after that nothing new starts
 * until the model is free and the old job switches it. */
static struct job *take(struct worker *w, int *activate) {
    struct srv *s = w->s;
    *activate = 0;
    if (s->switching || s->lora_switching || sd_time_s() < w->unhealthy_until) return NULL;
    struct job **pp = &s->qhead, *prev = NULL, *head = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        struct job *j = *pp;
        if (j->exclude_worker == w->idx || (j->pin >= 0 && j->pin != w->idx)) continue;
        /* A job for another model needs the model to itself, like a LoRA
         * set switch: the worker switches the model, then applies its set. */
        const int want = j->r.model >= 0 ? j->r.model : s->opt_model;
        int same = (want < 0 || want == s->cur_model) && srv_lora_key_eq(j->r.lora_key, s->lora_key);
        if (!head) {
            head = j;
            if (!same && s->lora_users > 0) {
                if (j->lora_bypassed >= SRV_LORA_MAX_BYPASS) return NULL;
                continue; /* look for a younger job with the active set */
            }
            *activate = !same;
        } else if (!same) {
            continue;
        } else {
            head->lora_bypassed++;
        }
        *pp = j->next;
        if (s->qtail == j) s->qtail = prev;
        s->qlen--;
        j->next = NULL;
        s->lora_users++;
        if (*activate) s->lora_switching = 1;
        else srv_lora_job_hashes(s, j);
        return j; /* the queue's reference moves to the worker */
    }
    return NULL;
}

static int other_healthy(struct srv *s, int idx) {
    for (int i = 0; i < s->n_workers; i++)
        if (i != idx && sd_time_s() >= s->workers[i].unhealthy_until) return 1;
    return 0;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct srv *s = w->s;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        int activate = 0;
        struct job *j = take(w, &activate);
        if (!j) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
            continue;
        }
        /* The job's model: its override, else the option's; switch to it
         * (waits for running jobs; other workers take none meanwhile). */
        const int want = j->r.model >= 0 ? j->r.model : s->opt_model;
        int sw_err = 0;
        struct sd_ctx sctx = {0};
        while (!sw_err && want >= 0 && want != s->cur_model && !s->stopping) {
            pthread_mutex_unlock(&s->mu);
            sw_err = srv_model_switch(&sctx, s, want);
            pthread_mutex_lock(&s->mu);
        }
        if (sw_err) {
            if (activate) s->lora_switching = 0;
            if (--s->lora_users == 0 || activate) pthread_cond_broadcast(&s->work_cv);
            snprintf(j->err, sizeof j->err, "%s", sctx.msg);
            sd_logf(&s->o.log, SD_LOG_WARN, "job %s failed: %s", j->id, sctx.msg);
            job_finish(s, j, JOB_FAILED);
            job_unref(s, j);
            pthread_cond_broadcast(&s->ev_cv);
            continue;
        }
        j->ran_model = s->cur_model;
        j->state = JOB_RUNNING;
        j->worker = w->idx;
        j->t_start = sd_time_s();
        w->cur = j;
        s->running++;
        job_event(s, j, "running", json_pack("{s:s,s:s}", "status", "running", "device", w->name));
        jobs_announce_positions(s);
        pthread_mutex_unlock(&s->mu);

        struct sd_ctx ctx = {0};
        sd_runtime_set_ctx(w->rt, &ctx);
        double t0 = sd_time_s();
        int err = activate ? srv_lora_activate(s, j, &ctx) : SD_OK;
        /* The request's fault, not the server's: a LoRA set that does not fit
         * the model (its files parsed at submit), invalid or unsupported input. */
        const int lora_err = err == SD_ERR_FORMAT || err == SD_ERR_INVALID || err == SD_ERR_UNSUPPORTED;
        if (!err) err = run_job(w, j, &ctx);
        double t1 = sd_time_s();

        pthread_mutex_lock(&s->mu);
        w->busy_s += t1 - t0;
        w->cur = NULL;
        s->running--;
        if (--s->lora_users == 0) pthread_cond_broadcast(&s->work_cv);
        if (err == SD_ERR_BACKEND && !j->retried && other_healthy(s, w->idx) && !j->cancel) {
            w->unhealthy_until = sd_time_s() + s->o.backoff_s;
            for (struct job *q = s->qhead; q; q = q->next)
                if (q->pin == w->idx) job_place(s, q);
            w->failures++;
            s->retries++;
            sd_logf(&s->o.log, SD_LOG_WARN, "device %s failed job %s (%s): retrying on another device; %s rests %d s",
                    w->name, j->id, ctx.msg, w->name, s->o.backoff_s);
            j->retried = 1, j->exclude_worker = w->idx, j->state = JOB_QUEUED, j->iter = 0, j->step = 0;
            for (int i = 0; i < j->n_images; i++) { free(j->images[i].png); free(j->images[i].infotext); }
            j->n_images = 0;
            job_place(s, j); /* pinned elsewhere (round-robin, random), or free for any */
            j->next = s->qhead; /* back to the front; the worker's reference is the queue's again */
            s->qhead = j;
            if (!s->qtail) s->qtail = j;
            s->qlen++;
            pthread_cond_broadcast(&s->work_cv);
            pthread_cond_broadcast(&s->ev_cv);
            continue;
        }
        w->jobs_done++;
        if (err == SD_ERR_CANCELLED || (err && (j->cancel || s->stopping))) {
            job_finish(s, j, JOB_CANCELLED);
        } else if (err) {
            snprintf(j->err, sizeof j->err, "%s", ctx.msg);
            j->client_error = lora_err || err == SD_ERR_INVALID || err == SD_ERR_UNSUPPORTED;
            sd_logf(&s->o.log, SD_LOG_WARN, "job %s failed: %s", j->id, ctx.msg);
            job_finish(s, j, JOB_FAILED);
        } else {
            job_finish(s, j, JOB_DONE);
        }
        job_unref(s, j);
        pthread_cond_broadcast(&s->ev_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* One 64x64, 1-step generation per worker: graphs built, weights prepared. */
static int warm_up(struct sd_ctx *ctx, struct srv *s, struct worker *w) {
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = "warm-up", g.negative_prompt = "";
    g.width = g.height = 64;
    g.sampler.steps = 1;
    float *img = malloc(sizeof(float) * 3 * 64 * 64);
    if (!img) return sd_errorf(ctx, SD_ERR_NOMEM, "out of memory");
    struct sd_pipeline p = {.ctx = ctx, .model = s->model, .rt = w->rt, .tok = s->tok, .cache = s->cache};
    double t0 = sd_time_s();
    int rc = sd_generate(&p, &g, img);
    free(img);
    if (!rc) sd_logf(&s->o.log, SD_LOG_INFO, "worker %s warmed up in %.2f s", w->name, sd_time_s() - t0);
    return rc;
}

int srv_workers_start(struct sd_ctx *ctx, struct srv *s) {
    int n = s->o.n_devices > 0 ? s->o.n_devices : 1;
    for (int i = 0; i < n; i++) {
        struct worker *w = &s->workers[i];
        w->s = s, w->idx = i;
        w->dev = s->o.n_devices > 0 ? s->o.devices[i] : (struct sd_server_device){SD_BACKEND_CPU, -1};
        if (w->dev.backend == SD_BACKEND_OPENCL) snprintf(w->name, sizeof w->name, "opencl:%d", w->dev.cl_device < 0 ? 0 : w->dev.cl_device);
        else snprintf(w->name, sizeof w->name, "cpu%s", n > 1 ? "" : "");
        for (int k = 0; k < i; k++)
            if (!strcmp(s->workers[k].name, w->name)) snprintf(w->name + strlen(w->name), 8, ".%d", i);
        struct sd_runtime_opts ro = s->o.rt;
        ro.backend = w->dev.backend;
        ro.cl_device = w->dev.cl_device;
        if (!(w->rt = sd_runtime_new(ctx, &ro))) return sd_error_wrap(ctx, "device %s", w->name);
        s->n_workers = i + 1;
        if (s->o.warmup && warm_up(ctx, s, w)) return sd_error_wrap(ctx, "warm-up on %s", w->name);
    }
    for (int i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].th, NULL, worker_main, &s->workers[i]) != 0)
            return sd_errorf(ctx, SD_ERR_NOMEM, "cannot start the worker thread of %s", s->workers[i].name);
        s->workers[i].started = 1;
    }
    return SD_OK;
}

void srv_workers_stop(struct srv *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    while (s->qhead) job_cancel(s, s->qhead);
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].cur) s->workers[i].cur->cancel = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->ev_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].started) pthread_join(s->workers[i].th, NULL);
    for (int i = 0; i < s->n_workers; i++) {
        if (s->workers[i].rt && s->model) sd_runtime_release_model(s->workers[i].rt, s->model);
        sd_runtime_free(s->workers[i].rt);
        s->workers[i].rt = NULL;
    }
}
