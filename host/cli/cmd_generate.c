/* cmd_generate.c - `sdrt txt2img | img2img | inpaint | demo`.
 *
 * Parses the A1111-style options, loads the model and the tokenizer, runs
 * the pipeline and writes PNGs (atomically, with the A1111 "parameters"
 * text). Progress: a bar with step, s/it and ETA on a terminal (stderr),
 * nothing with --quiet, and with --json one JSON object per line on stdout
 * for every phase, step, preview and result. Exit status: 0 ok, 1 runtime
 * error, 2 bad usage or bad input; nothing is written on failure.
 */
#include "cmd.h"
#include "infotext.h"
#include "model_load.h"
#include "pipeline.h"
#include "png_io.h"
#include "preview.h"

#include <strings.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_TXT2IMG, MODE_IMG2IMG, MODE_INPAINT };

struct opts {
    enum mode mode;
    const char *model, *config, *prompt, *negative, *sampler, *scheduler, *output, *init, *mask, *vocab;
    const char *preview_dir, *backend;
    int n_iter;
    int steps, width, height, batch, clip_skip, threads, preview_every, quiet, json, width_given, height_given;
    float cfg, strength, eta;
    long long seed;
    int prediction; /* -1 = from the model */
};

struct run {
    struct opts *o;
    int total;
    double t_start, step_sum;
    int steps_done;
    struct sd_model *m;
    char preview_path[PATH_MAX];
    struct sd_ctx *ctx;
};

static void usage(enum mode mode, FILE *f) {
    const char *name = mode == MODE_TXT2IMG ? "txt2img" : mode == MODE_IMG2IMG ? "img2img" : "inpaint";
    fprintf(f,
            "usage: sdrt %s --model MODEL --prompt TEXT [options]\n"
            "  --model PATH          single-file .safetensors (LDM names) or diffusers folder\n"
            "  --config DIR          diffusers folder whose config.json files describe a single-file model\n"
            "  --prompt TEXT         the prompt; A1111 syntax: (word), (word:1.3), [word], \\( \\), BREAK\n"
            "  --negative-prompt T   the negative prompt (default empty)\n"
            "  --steps N             sampling steps (default 20)\n"
            "  --cfg-scale X         classifier-free guidance scale (default 7.5; <= 1 disables CFG)\n"
            "  --seed N              seed (-1 = random; the seed used is printed)\n"
            "  --sampler NAME        Euler, Euler a (default), DDIM, DPM++ 2M, DPM++ 2M Karras, LMS, PLMS, LCM, ...\n"
            "  --scheduler NAME      karras | normal (Karras sigmas for Euler, LMS, DPM++)\n"
            "  --eta X               DDIM eta (default 0)\n"
            "  --width N --height N  image size, multiples of 8 (default 512x512)\n"
            "  --batch N             images per run, denoised together (default 1)\n"
            "  --n-iter N            runs one after another with seeds seed, seed+1, ... (A1111 batch count);\n"
            "                        later runs reuse the prompt embeddings (no CLIP time)\n"
            "  --clip-skip N         A1111 clip skip (1 = last layer, 2 = penultimate)\n"
            "  --prediction epsilon|v  override the model's prediction type (SD2 768 models: v)\n"
            "%s"
            "  --rng torch           noise from a bit-exact copy of torch's CPU generator (the default and\n"
            "                        only choice: the same seed gives diffusers' CPU starting noise)\n"
            "  --backend cpu|opencl|auto  (default cpu)\n"
            "  --threads N           CPU threads (default: all cores)\n"
            "  --low-memory          CPU convolutions keep no transformed weight copies: SD 1.5 at 512x512\n"
            "                        peaks at ~6 GB instead of ~13 GB, ~1.4x slower UNet (SDRT_CONV_ALGO=lowmem)\n"
            "  --output PATH         PNG to write (default out.png; batches: %%d in PATH or -N before .png)\n"
            "  --preview-every N     write a cheap latent preview every N steps to --preview-dir\n"
            "  --preview-dir DIR     where previews go (default: the output's directory)\n"
            "  --vocab PATH          CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt.gz); default: the model's\n"
            "                        tokenizer/ folder, $SDRT_VOCAB, or the one `make vocab` installed\n"
            "  --quiet               no progress output\n"
            "  --json                one JSON event per line on stdout (phases, steps, previews, result)\n",
            name,
            mode == MODE_TXT2IMG ? ""
            : mode == MODE_IMG2IMG
                ? "  --init-image PNG      the image to start from; its size is the output size (multiples of 8)\n"
                  "  --strength X          how much to change it, (0, 1] (default 0.75)\n"
                : "  --init-image PNG      the image to repaint\n"
                  "  --mask PNG            white = repaint, black = keep (same size as the image)\n"
                  "  --strength X          (0, 1] (default 1.0)\n");
}

static int int_of(long x) {
    if (x > INT_MAX || x < INT_MIN) {
        errno = ERANGE;
        return 0;
    }
    return (int)x;
}

static int parse(int argc, char **argv, struct opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(o->mode, stdout); return 1; }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) { o->quiet = 1; continue; }
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--low-memory")) { setenv("SDRT_CONV_ALGO", "lowmem", 1); continue; }
        if (i + 1 >= argc) { fprintf(stderr, "sdrt: option %s needs a value\n", a); return 2; }
        const char *v = argv[++i];
        char *end = NULL;
#define NUM(field, conv)                                                                     \
    do {                                                                                     \
        errno = 0;                                                                           \
        o->field = conv;                                                                     \
        if (errno || !end || *end || end == v) {                                             \
            fprintf(stderr, "sdrt: %s expects a number, got '%s'\n", a, v);                  \
            return 2;                                                                        \
        }                                                                                    \
    } while (0)
/* strtol into an int: out-of-range values set errno like strtol's own. */
#define INT(v, end) int_of(strtol(v, end, 10))
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "--config")) o->config = v;
        else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) o->prompt = v;
        else if (!strcmp(a, "--negative-prompt") || !strcmp(a, "-n")) o->negative = v;
        else if (!strcmp(a, "--sampler")) o->sampler = v;
        else if (!strcmp(a, "--scheduler")) o->scheduler = v;
        else if (!strcmp(a, "--output") || !strcmp(a, "-o")) o->output = v;
        else if (!strcmp(a, "--init-image")) o->init = v;
        else if (!strcmp(a, "--mask")) o->mask = v;
        else if (!strcmp(a, "--vocab")) o->vocab = v;
        else if (!strcmp(a, "--preview-dir")) o->preview_dir = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--rng")) {
            if (strcmp(v, "torch") && strcmp(v, "cpu")) {
                fprintf(stderr, "sdrt: --rng %s is not supported: sdrt draws noise with torch's CPU generator (--rng torch, "
                                "the default); A1111's GPU (philox) noise is not implemented\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--prediction")) {
            if (!strcmp(v, "v") || !strcmp(v, "v_prediction")) o->prediction = SD_PRED_V;
            else if (!strcmp(v, "epsilon") || !strcmp(v, "eps")) o->prediction = SD_PRED_EPSILON;
            else { fprintf(stderr, "sdrt: --prediction is epsilon or v, got '%s'\n", v); return 2; }
        }
        else if (!strcmp(a, "--steps")) NUM(steps, INT(v, &end));
        else if (!strcmp(a, "--width") || !strcmp(a, "-W")) { NUM(width, INT(v, &end)); o->width_given = 1; }
        else if (!strcmp(a, "--height") || !strcmp(a, "-H")) { NUM(height, INT(v, &end)); o->height_given = 1; }
        else if (!strcmp(a, "--batch")) NUM(batch, INT(v, &end));
        else if (!strcmp(a, "--n-iter") || !strcmp(a, "--batch-count")) NUM(n_iter, INT(v, &end));
        else if (!strcmp(a, "--clip-skip")) NUM(clip_skip, INT(v, &end));
        else if (!strcmp(a, "--threads")) NUM(threads, INT(v, &end));
        else if (!strcmp(a, "--preview-every")) NUM(preview_every, INT(v, &end));
        else if (!strcmp(a, "--cfg-scale") || !strcmp(a, "--cfg")) NUM(cfg, strtof(v, &end));
        else if (!strcmp(a, "--strength")) NUM(strength, strtof(v, &end));
        else if (!strcmp(a, "--eta")) NUM(eta, strtof(v, &end));
        else if (!strcmp(a, "--seed")) NUM(seed, strtoll(v, &end, 10));
        else { fprintf(stderr, "sdrt: unknown option %s (see --help)\n", a); return 2; }
#undef NUM
#undef INT
    }
    return 0;
}

/* Output path for image k of n: PATTERN with %d, or -k inserted before .png. */
static void output_path(const char *pattern, int k, int n, char *out, size_t size) {
    if (strstr(pattern, "%d")) {
        const char *p = strstr(pattern, "%d");
        snprintf(out, size, "%.*s%d%s", (int)(p - pattern), pattern, k, p + 2);
    } else if (n == 1) {
        snprintf(out, size, "%s", pattern);
    } else {
        const char *dot = strrchr(pattern, '.');
        const char *slash = strrchr(pattern, '/');
        if (!dot || (slash && dot < slash)) snprintf(out, size, "%s-%d", pattern, k);
        else snprintf(out, size, "%.*s-%d%s", (int)(dot - pattern), pattern, k, dot);
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static int on_event(void *user, const struct sd_gen_event *ev) {
    struct run *r = user;
    struct opts *o = r->o;
    if (ev->kind == SD_EV_PHASE) {
        if (o->json) {
            printf("{\"event\": \"phase\", \"phase\": \"%s\", \"seconds\": %.4f%s}\n", ev->phase, ev->seconds,
                   strcmp(ev->phase, "vae_decode") ? (ev->cached ? ", \"cached\": true" : ", \"cached\": false") : "");
            fflush(stdout);
        } else if (!o->quiet && isatty(2) && strcmp(ev->phase, "clip")) {
            fprintf(stderr, "\n");
        }
        return 0;
    }
    r->steps_done = ev->step + 1;
    r->step_sum += ev->seconds;
    if (o->json) {
        printf("{\"event\": \"step\", \"step\": %d, \"steps\": %d, \"timestep\": %.3f, \"seconds\": %.4f}\n", ev->step + 1,
               ev->n_steps, (double)ev->t, ev->seconds);
    } else if (!o->quiet && isatty(2)) {
        double per = r->step_sum / r->steps_done, eta = per * (ev->n_steps - r->steps_done);
        int width = 30, fill = width * r->steps_done / ev->n_steps;
        fprintf(stderr, "\r[%.*s%*s] %d/%d %.2f s/it ETA %.0fs ", fill, "##############################", width - fill, "",
                r->steps_done, ev->n_steps, per, eta);
    }
    if (o->preview_every > 0 && ev->x0 && ((ev->step + 1) % o->preview_every == 0 || ev->step + 1 == ev->n_steps)) {
        uint8_t *rgb = malloc((size_t)ev->h * ev->w * 3);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/preview-%03d.png", r->preview_path, ev->step + 1);
        if (rgb) {
            sd_preview_rgb8(ev->x0, ev->w, ev->h, SD_PREVIEW_SD15, rgb);
            if (sd_png_write_rgb8(r->ctx, path, rgb, ev->w, ev->h, NULL) == SD_OK && o->json) {
                printf("{\"event\": \"preview\", \"step\": %d, \"path\": ", ev->step + 1);
                json_str(stdout, path);
                printf("}\n");
            }
            free(rgb);
        }
    }
    fflush(stdout);
    return 0;
}

static const char *default_vocab(char *buf, size_t size) {
    const char *env = getenv("SDRT_VOCAB");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(buf, size, "%s/vocab/bpe_simple_vocab_16e6.txt.gz", exe);
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, size, "build/vocab/bpe_simple_vocab_16e6.txt.gz");
    return buf;
}

static struct sd_tokenizer *load_tokenizer(struct sd_ctx *ctx, const struct opts *o, const struct sd_model *m) {
    char p[PATH_MAX];
    struct stat st;
    if (!o->vocab && !m->single_file) {
        snprintf(p, sizeof p, "%s/tokenizer/vocab.json", o->model);
        if (stat(p, &st) == 0) return sd_tokenizer_load_diffusers(ctx, o->model);
    }
    const char *path = o->vocab ? o->vocab : default_vocab(p, sizeof p);
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(ctx, path);
    if (!tok) {
        sd_error_wrap(ctx, "tokenizer (give --vocab PATH to bpe_simple_vocab_16e6.txt.gz, or run `make vocab`)");
        return NULL;
    }
    bool v2 = m->family == SD_FAMILY_SD2 || m->family == SD_FAMILY_SD2_INPAINT;
    sd_tokenizer_set_family(tok, v2 ? SD_TOKENIZER_SD2 : SD_TOKENIZER_SD1);
    return tok;
}

/* The directory part of path ("." when there is none, "/" for "/x"). */
static void dir_of(const char *path, char *dir, size_t size) {
    snprintf(dir, size, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, size, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
}

/* Checks that dir exists, is a directory and is writable; `what` names it
 * in the message ("output directory x does not exist"). */
static int check_dir(struct sd_ctx *ctx, const char *what, const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) return sd_errorf(ctx, SD_ERR_IO, "%s %s does not exist", what, dir);
    if (!S_ISDIR(st.st_mode)) return sd_errorf(ctx, SD_ERR_IO, "%s %s is not a directory", what, dir);
    if (access(dir, W_OK) != 0) return sd_errorf(ctx, SD_ERR_IO, "%s %s is not writable", what, dir);
    return SD_OK;
}

/* Before any work: the output's directory is writable and the output is
 * not itself a directory. */
static int check_output_path(struct sd_ctx *ctx, const char *path) {
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof dir);
    int rc = check_dir(ctx, "output directory", dir);
    if (rc) return rc;
    struct stat st;
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] == '/' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
        return sd_errorf(ctx, SD_ERR_IO, "output '%s' is a directory; give a file name such as %s%sout.png", path, path,
                         n && path[n - 1] == '/' ? "" : "/");
    return SD_OK;
}

/* Reads the image (or mask) a user named, with what it is in the message:
 * "init image: cannot open 'x.png': ...", "mask x is a directory". */
static int read_input_png(struct sd_ctx *ctx, const char *what, const char *path, float **out, int *w, int *h, int is_mask) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return sd_errorf(ctx, SD_ERR_INVALID, "%s %s is a directory", what, path);
    int rc = is_mask ? sd_png_read_mask(ctx, path, SD_GEN_MAX_SIDE, out, w, h)
                     : sd_png_read(ctx, path, SD_GEN_MAX_SIDE, out, w, h);
    if (rc) sd_error_wrap(ctx, "%s", what);
    return rc;
}

static int generate(struct opts *o) {
    struct sd_ctx ctx = {0};
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    int rc = 0, status = 1;
    struct sd_model *m = NULL;
    struct sd_tokenizer *tok = NULL;
    struct sd_runtime *rt = NULL;
    struct sd_embed_cache *cache = NULL;
    float *init = NULL, *mask = NULL, *images = NULL;
    struct run r = {.o = o, .ctx = &ctx};

    /* Usage and input checks before loading anything. */
    if (!o->model) { sd_errorf(&ctx, SD_ERR_INVALID, "--model is required (see --help)"); goto usage_err; }
    if (!o->prompt) { sd_errorf(&ctx, SD_ERR_INVALID, "--prompt is required (see --help)"); goto usage_err; }
    g.prompt = o->prompt;
    g.negative_prompt = o->negative ? o->negative : "";
    g.width = o->width, g.height = o->height, g.batch = o->batch, g.cfg_scale = o->cfg, g.clip_skip = o->clip_skip;
    g.strength = o->strength;
    g.sampler.steps = o->steps;
    if (o->sampler && sd_sampler_parse_name(&ctx, o->sampler, &g.sampler)) goto usage_err;
    if (o->scheduler) {
        if (!strcasecmp(o->scheduler, "karras")) g.sampler.karras = true;
        else if (strcasecmp(o->scheduler, "normal") && strcasecmp(o->scheduler, "default")) {
            sd_errorf(&ctx, SD_ERR_INVALID, "unknown scheduler '%s' (karras, normal)", o->scheduler);
            goto usage_err;
        }
    }
    g.sampler.eta = o->eta;
    if (sd_gen_params_check(&ctx, &g)) goto usage_err;
    if (o->n_iter < 1 || o->n_iter > 10000) { sd_errorf(&ctx, SD_ERR_INVALID, "--n-iter must be 1..10000 (got %d)", o->n_iter); goto usage_err; }
    if (o->mode != MODE_TXT2IMG && !o->init) { sd_errorf(&ctx, SD_ERR_INVALID, "--init-image is required"); goto usage_err; }
    if (o->mode == MODE_INPAINT && !o->mask) { sd_errorf(&ctx, SD_ERR_INVALID, "--mask is required"); goto usage_err; }
    if (!o->output) o->output = "out.png";
    if (check_output_path(&ctx, o->output)) goto usage_err;
    if (o->preview_every > 0) {
        if (o->preview_dir) snprintf(r.preview_path, sizeof r.preview_path, "%s", o->preview_dir);
        else dir_of(o->output, r.preview_path, sizeof r.preview_path);
        if (check_dir(&ctx, "preview directory", r.preview_path)) goto usage_err;
    }
    if (o->init) {
        int w, h;
        if (read_input_png(&ctx, "init image", o->init, &init, &w, &h, 0)) goto usage_err;
        /* The size comes from the image; --width/--height, if given, must agree. */
        if ((o->width_given && w != g.width) || (o->height_given && h != g.height)) {
            sd_errorf(&ctx, SD_ERR_INVALID, "init image %s is %dx%d but --width/--height ask for %dx%d", o->init, w, h,
                      o->width_given ? g.width : w, o->height_given ? g.height : h);
            goto usage_err;
        }
        g.width = w, g.height = h;
        if (w % 8 || h % 8) {
            sd_errorf(&ctx, SD_ERR_INVALID, "init image %s is %dx%d: width and height must be multiples of 8", o->init, w, h);
            goto usage_err;
        }
        if (sd_gen_params_check(&ctx, &g)) { sd_error_wrap(&ctx, "init image %s", o->init); goto usage_err; }
        g.init_image = init;
    }
    if (o->mask) {
        int w, h;
        if (read_input_png(&ctx, "mask", o->mask, &mask, &w, &h, 1)) goto usage_err;
        if (w != g.width || h != g.height) {
            sd_errorf(&ctx, SD_ERR_INVALID, "mask %s is %dx%d but the image is %dx%d", o->mask, w, h, g.width, g.height);
            goto usage_err;
        }
        g.mask = mask;
    }
    if (o->seed < 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->seed = (long long)(((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) & 0xffffffffu);
    }
    g.seed = (uint64_t)o->seed;
    int kind = sd_backend_kind_parse(o->backend ? o->backend : "cpu");
    if (kind < 0) { sd_errorf(&ctx, SD_ERR_INVALID, "unknown backend '%s' (cpu, opencl, auto)", o->backend); goto usage_err; }

    double t0 = sd_time_s();
    /* A model that is missing, unreadable, malformed or unsupported is bad input (2). */
    if ((rc = sd_model_load(&ctx, o->model, o->config, &m))) {
        if (rc == SD_ERR_NOMEM) goto fail;
        goto usage_err;
    }
    if (o->prediction >= 0) m->prediction = (enum sd_prediction)o->prediction;
    if (!(tok = load_tokenizer(&ctx, o, m))) goto fail;
    if (!(rt = sd_runtime_new(&ctx, (enum sd_backend_kind)kind, o->threads))) goto fail;
    if (!(cache = sd_embed_cache_new(64u << 20))) { sd_errorf(&ctx, SD_ERR_NOMEM, "out of memory"); goto fail; }
    if (o->json) printf("{\"event\": \"phase\", \"phase\": \"load\", \"seconds\": %.4f}\n", sd_time_s() - t0);
    if (!o->quiet && !o->json)
        fprintf(stderr, "sdrt: %s (%s), %dx%d, %d steps %s, cfg %.1f, seed %lld\n", o->model, sd_family_name(m->family),
                g.width, g.height, g.sampler.steps, sd_sampler_display_name(g.sampler.kind, g.sampler.karras),
                (double)g.cfg_scale, o->seed);
    g.on_event = on_event;
    g.user = &r;
    r.m = m;
    images = malloc(sizeof(float) * 3 * (size_t)g.width * g.height * g.batch);
    if (!images) { sd_errorf(&ctx, SD_ERR_NOMEM, "out of memory for %d images", g.batch); goto fail; }
    struct sd_pipeline p = {.ctx = &ctx, .model = m, .rt = rt, .tok = tok, .cache = cache};
    r.t_start = sd_time_s();
    for (int iter = 0; iter < o->n_iter; iter++) {
    const long long seed = o->seed + iter; /* A1111 batch count: seed + i per run */
    g.seed = (uint64_t)seed;
    r.steps_done = 0, r.step_sum = 0;
    if (o->json && o->n_iter > 1) printf("{\"event\": \"run\", \"run\": %d, \"runs\": %d, \"seed\": %lld}\n", iter + 1, o->n_iter, seed);
    if ((rc = sd_generate(&p, &g, images))) goto rc_fail;
    for (int b = 0; b < g.batch; b++) {
        char path[PATH_MAX], model_name[256];
        output_path(o->output, iter * g.batch + b, g.batch * o->n_iter, path, sizeof path);
        const char *base = strrchr(o->model, '/');
        snprintf(model_name, sizeof model_name, "%s", base && base[1] ? base + 1 : o->model);
        char *dot = strrchr(model_name, '.');
        if (dot && !strcmp(dot, ".safetensors")) *dot = 0;
        struct sd_infotext it;
        sd_infotext_init(&it);
        it.prompt = g.prompt;
        it.negative_prompt = g.negative_prompt;
        it.steps = g.sampler.steps;
        it.sampler = sd_sampler_display_name(g.sampler.kind, false);
        it.schedule_type = g.sampler.karras ? "Karras" : NULL;
        it.cfg_scale = g.cfg_scale;
        it.seed = (uint64_t)seed;
        it.width = g.width, it.height = g.height;
        it.model = model_name;
        it.denoising_strength = o->mode == MODE_TXT2IMG ? -1 : g.strength;
        it.clip_skip = g.clip_skip;
        it.rng = "CPU";
        it.version = "sdrt " SDRT_VERSION;
        char *params = sd_infotext_format(&it);
        int wrc = sd_png_write(&ctx, path, images + (size_t)b * 3 * g.width * g.height, g.width, g.height, params);
        free(params);
        if (wrc) goto fail;
        if (o->json) {
            printf("{\"event\": \"image\", \"path\": ");
            json_str(stdout, path);
            printf(", \"seed\": %lld, \"width\": %d, \"height\": %d}\n", seed, g.width, g.height);
        } else if (!o->quiet) {
            fprintf(stderr, "wrote %s\n", path);
        }
    }
    }
    if (o->json) printf("{\"event\": \"done\", \"seconds\": %.4f, \"seed\": %lld}\n", sd_time_s() - r.t_start, o->seed);
    else if (!o->quiet) fprintf(stderr, "seed %lld, %.2f s\n", o->seed, sd_time_s() - r.t_start);
    status = 0;
    goto done;
rc_fail:
    if (rc == SD_ERR_INVALID) goto usage_err;
fail:
    fprintf(stderr, "%ssdrt: %s\n", isatty(2) && r.steps_done ? "\n" : "", ctx.msg);
    if (o->json) { printf("{\"event\": \"error\", \"message\": "); json_str(stdout, ctx.msg); printf("}\n"); }
    status = 1;
    goto done;
usage_err:
    fprintf(stderr, "sdrt: %s\n", ctx.msg);
    if (o->json) { printf("{\"event\": \"error\", \"message\": "); json_str(stdout, ctx.msg); printf("}\n"); }
    status = 2;
done:
    free(images); free(init); free(mask);
    sd_embed_cache_free(cache);
    if (rt && m) sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_tokenizer_free(tok);
    sd_model_free(m);
    return status;
}

static void defaults(struct opts *o, enum mode mode) {
    memset(o, 0, sizeof *o);
    o->mode = mode;
    o->steps = 20;
    o->width = o->height = 512;
    o->batch = 1;
    o->n_iter = 1;
    o->cfg = 7.5f;
    o->strength = mode == MODE_INPAINT ? 1.0f : 0.75f;
    o->seed = -1;
    o->prediction = -1;
}

static int run_mode(enum mode mode, int argc, char **argv) {
    struct opts o;
    defaults(&o, mode);
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    return generate(&o);
}

int sd_cmd_txt2img(int argc, char **argv) { return run_mode(MODE_TXT2IMG, argc, argv); }
int sd_cmd_img2img(int argc, char **argv) { return run_mode(MODE_IMG2IMG, argc, argv); }
int sd_cmd_inpaint(int argc, char **argv) { return run_mode(MODE_INPAINT, argc, argv); }
