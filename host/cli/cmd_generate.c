/* cmd_generate.c - `sdrt txt2img | img2img | inpaint | demo`.
 *
 * Parses the A1111-style options, loads the model and the tokenizer, runs
 * the pipeline and writes PNGs (atomically, with the A1111 "parameters"
 * text). Progress: a bar with step, s/it and ETA on a terminal (stderr),
 * nothing with --quiet, and with --json one JSON object per line on stdout
 * for every phase, step, preview, result and library log message. Exit
 * status: 0 ok, 1 runtime error, 2 bad usage or bad input. Nothing is
 * written on failure: each PNG is written to a temporary name and renamed,
 * and a run that fails after writing some of its images (--batch, --n-iter)
 * removes them again and names them in the error. Previews are not removed.
 * Options: the table `options` below (cli_opts.h); the environment:
 * cli_env.c.
 */
#include "cli_opts.h"
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

enum mode { MODE_TXT2IMG = 1, MODE_IMG2IMG = 2, MODE_INPAINT = 4 };
#define NOT_GIVEN INT_MIN /* --width/--height not on the command line */

struct opts {
    enum mode mode;
    const char *model, *config, *prompt, *negative, *sampler, *scheduler, *output, *init, *mask, *vocab, *precision;
    const char *weight_cache, *weight_cache_max;
    const char *preview_dir, *backend, *device;
    int n_iter;
    int steps, width, height, batch, clip_skip, threads, preview_every, quiet, json, low_memory;
    int vae_tiling, vae_tile;
    unsigned long long memory_budget; /* --memory-budget, bytes; 0 = none */
    const char *taesd, *vae, *preview; /* --taesd PATH, --vae full|taesd, --preview latent|taesd */
    float cfg, strength, eta;
    long long seed;
    int prediction; /* -1 = from the model */
    const char *spacing; /* --timestep-spacing; NULL = the model's scheduler config or the sampler's default */
    const char *lora_dir;
    struct sd_lora_req loras[8]; /* --lora PATH[:W] */
    char lora_paths[8][PATH_MAX];
    int n_loras;
    enum sd_inpaint_fill inpaint_fill; /* --inpainting-fill */
    const char *refiner, *refiner_config; /* SDXL: --refiner MODEL [--refiner-config DIR] */
    float refiner_switch;              /* --refiner-switch, default 0.8 */
};

struct run {
    struct opts *o;
    int total;
    double t_start, step_sum;
    int steps_done;
    struct sd_model *m;
    char preview_path[PATH_MAX];
    struct sd_ctx *ctx;
    char lora_hashes[1024]; /* A1111 "name: hash, ..." of the run's LoRAs */
    struct sd_runtime *rt;
    struct sd_taesd *preview_taesd; /* --preview taesd */
};

static int parse_prediction(void *opts, const char *v) {
    struct opts *o = opts;
    if (!strcmp(v, "v") || !strcmp(v, "v_prediction")) o->prediction = SD_PRED_V;
    else if (!strcmp(v, "epsilon") || !strcmp(v, "eps")) o->prediction = SD_PRED_EPSILON;
    else { fprintf(stderr, "sdrt: --prediction is epsilon or v, got '%s'\n", v); return 2; }
    return 0;
}

static int parse_fill(void *opts, const char *v) {
    struct sd_ctx ctx = {0};
    if (!sd_inpaint_fill_parse(&ctx, v, &((struct opts *)opts)->inpaint_fill)) return 0;
    fprintf(stderr, "sdrt: --inpainting-fill: %s\n", ctx.msg);
    return 2;
}

static int parse_spacing(void *opts, const char *v) {
    struct opts *o = opts;
    if (sd_spacing_parse(v) == SD_SPACING_DEFAULT) {
        fprintf(stderr, "sdrt: --timestep-spacing is leading, linspace or trailing, got '%s'\n", v);
        return 2;
    }
    o->spacing = v;
    return 0;
}

/* --lora PATH[:W]: W (default 1) applies to the text encoder and the UNet. */
static int parse_lora(void *opts, const char *v) {
    struct opts *o = opts;
    if (o->n_loras == 8) { fprintf(stderr, "sdrt: at most 8 --lora options\n"); return 2; }
    char *path = o->lora_paths[o->n_loras];
    snprintf(path, PATH_MAX, "%s", v);
    float w = 1.0f;
    char *colon = strrchr(path, ':'), *end = NULL;
    if (colon) {
        double d = strtod(colon + 1, &end);
        if (end != colon + 1 && *end == 0) w = (float)d, *colon = 0;
    }
    if (!*path) { fprintf(stderr, "sdrt: --lora needs a PATH (got '%s')\n", v); return 2; }
    o->loras[o->n_loras++] = (struct sd_lora_req){path, w, w};
    return 0;
}

static int parse_rng(void *opts, const char *v) {
    (void)opts;
    if (strcmp(v, "torch") && strcmp(v, "cpu")) {
        fprintf(stderr, "sdrt: --rng %s is not supported: sdrt draws noise with torch's CPU generator (--rng torch, "
                        "the default); A1111's GPU (philox) noise is not implemented\n", v);
        return 2;
    }
    return 0;
}

/* BYTES, or N with a unit: KiB, MiB, GiB (K, M, G, KB, MB, GB are read as the same powers of 1024). */
static int parse_budget(void *opts, const char *v) {
    struct opts *o = opts;
    if (cli_size_parse(v, &o->memory_budget)) {
        fprintf(stderr, "sdrt: --memory-budget takes bytes or a size with KiB, MiB or GiB (got '%s')\n", v);
        return 2;
    }
    return 0;
}

#define O(field) CLI_OFF(struct opts, field)
#define I2I (MODE_IMG2IMG | MODE_INPAINT)
/* The options of txt2img, img2img and inpaint; --help prints them in this
 * order. One entry per option (cli_opts.h); help NULL = a hidden alias. */
static const struct cli_opt options[] = {
    {"model", 'm', CLI_STR, O(model), "PATH", "single-file .safetensors (LDM names) or diffusers folder", NULL, 0},
    {"config", 0, CLI_STR, O(config), "DIR", "diffusers folder whose config.json files describe a single-file model", NULL, 0},
    {"refiner", 0, CLI_STR, O(refiner), "MODEL", "SDXL refiner: takes over the sampling at --refiner-switch (A1111's\n"
                                                "hand-off; its VAE decodes)", NULL, 0},
    {"refiner-switch", 0, CLI_FLOAT, O(refiner_switch), "X", "fraction of the schedule after which the refiner runs (default 0.8)",
     NULL, 0},
    {"refiner-config", 0, CLI_STR, O(refiner_config), "DIR", "diffusers folder describing a single-file refiner", NULL, 0},
    {"prompt", 'p', CLI_STR, O(prompt), "TEXT", "the prompt; A1111 syntax: (word), (word:1.3), [word], \\( \\), BREAK", NULL, 0},
    {"negative-prompt", 'n', CLI_STR, O(negative), "TEXT", "the negative prompt (default empty)", NULL, 0},
    {"init-image", 0, CLI_STR, O(init), "PNG", "the image to start from (img2img) or to repaint (inpaint); its size is\n"
                                                "the output size (multiples of the VAE factor: 8 for SD)", NULL, I2I},
    {"mask", 0, CLI_STR, O(mask), "PNG", "white = repaint, black = keep (same size as the image)", NULL, MODE_INPAINT},
    {"inpainting-fill", 0, CLI_FN, 0, "MODE", "what the masked area starts from (A1111's masked content): fill, original\n"
                                               "(default), latent-noise, latent-nothing", parse_fill, MODE_INPAINT},
    {"strength", 0, CLI_FLOAT, O(strength), "X", "how much to change the image, (0, 1] (img2img 0.75, inpaint 1.0)", NULL, I2I},
    {"steps", 0, CLI_INT, O(steps), "N", "sampling steps (default 20)", NULL, 0},
    {"cfg-scale", 0, CLI_FLOAT, O(cfg), "X", "classifier-free guidance scale (default 7.5; <= 1 disables CFG)", NULL, 0},
    {"cfg", 0, CLI_FLOAT, O(cfg), "X", NULL, NULL, 0},
    {"seed", 0, CLI_LLONG, O(seed), "N", "seed (-1 = random; the seed used is printed)", NULL, 0},
    {"sampler", 0, CLI_STR, O(sampler), "NAME", "Euler, Euler a (default), DDIM, DPM++ 2M, DPM++ 2M Karras, LMS, PLMS, LCM, ...", NULL, 0},
    {"scheduler", 0, CLI_STR, O(scheduler), "NAME", "karras | normal (Karras sigmas for Euler, LMS, DPM++)", NULL, 0},
    {"eta", 0, CLI_FLOAT, O(eta), "X", "DDIM eta (default 0)", NULL, 0},
    {"width", 'W', CLI_INT, O(width), "N", "image width, a multiple of the VAE factor: 8 for SD (default 512,\n"
                                                     "SDXL 1024; img2img: the image's)", NULL, 0},
    {"height", 'H', CLI_INT, O(height), "N", "image height, a multiple of the VAE factor (default 512, SDXL 1024;\n"
                                                       "img2img: the image's)", NULL, 0},
    {"batch", 0, CLI_INT, O(batch), "N", "images per run, denoised together (default 1)", NULL, 0},
    {"n-iter", 0, CLI_INT, O(n_iter), "N", "runs one after another with seeds seed, seed+1, ... (A1111 batch count);\n"
                                          "later runs reuse the prompt embeddings (no CLIP time)", NULL, 0},
    {"batch-count", 0, CLI_INT, O(n_iter), "N", NULL, NULL, 0},
    {"clip-skip", 0, CLI_INT, O(clip_skip), "N", "A1111 clip skip (1 = last layer, 2 = penultimate)", NULL, 0},
    {"prediction", 0, CLI_FN, 0, "epsilon|v", "override the model's prediction type (default: the folder's scheduler\n"
                                                 "config; single SD2 files: detected from the weights, see sdrt info)",
     parse_prediction, 0},
    {"timestep-spacing", 0, CLI_FN, 0, "leading|linspace|trailing", "timestep spacing (default: the folder's\n"
                                                                   "scheduler_config.json, else the sampler's diffusers default)",
     parse_spacing, 0},
    {"rng", 0, CLI_FN, 0, "torch", "noise from a bit-exact copy of torch's CPU generator (the default and\n"
                                   "only choice: the same seed gives diffusers' CPU starting noise)", parse_rng, 0},
    {"lora", 0, CLI_FN, 0, "PATH[:W]", "merge a LoRA / LyCORIS .safetensors with weight W (default 1); repeatable.\n"
                                      "In the prompt: <lora:NAME:W>, <lora:NAME:TE:UNET>, <lora:NAME:te=X:unet=Y>", parse_lora, 0},
    {"lora-dir", 0, CLI_STR, O(lora_dir), "DIR", "where the prompt's <lora:NAME> are found (NAME.safetensors or ss_output_name)", NULL, 0},
    {"backend", 0, CLI_STR, O(backend), "cpu|opencl|auto", "where the graphs run (default cpu)", NULL, 0},
    {"device", 0, CLI_STR, O(device), "N", "the OpenCL device, numbered as `sdrt devices` lists them\n"
                                          "(default: the first GPU, else the first device)", NULL, 0},
    {"threads", 0, CLI_INT, O(threads), "N", "CPU threads (default: all cores)", NULL, 0},
    {"low-memory", 0, CLI_FLAG, O(low_memory), NULL, "least memory: no transformed (Winograd) weight copies, and each\n"
                                                      "component's copies and the activation arena dropped after its phase\n"
                                                      "(remade per image); see docs/benchmarks.md for the figures", NULL, 0},
    {"vae-tiling", 0, CLI_FLAG, O(vae_tiling), NULL, "decode (and encode) in overlapping tiles blended as diffusers'\n"
     "enable_tiling(): bounded memory for large images (differs slightly from untiled)", NULL, 0},
    {"vae-tile", 0, CLI_INT, O(vae_tile), "PX", "tile side in pixels, a multiple of 32 (default: the VAE's sample_size, 512)", NULL, 0},
    {"memory-budget", 0, CLI_FN, 0, "SIZE", "tile the VAE when its untiled activation memory would exceed SIZE\n"
     "(bytes, or with KiB/MiB/GiB, e.g. 4GiB)", parse_budget, 0},
    {"taesd", 0, CLI_STR, O(taesd), "PATH", "TAESD tiny autoencoder: an AutoencoderTiny folder, or taesd_decoder.safetensors\n"
     "(taesd_encoder beside it is picked up); used by --vae taesd and --preview taesd", NULL, 0},
    {"vae", 0, CLI_STR, O(vae), "full|taesd", "decoder of the final image: the model's VAE (default) or the --taesd one\n"
     "(several times faster, approximate)", NULL, 0},
    {"preview", 0, CLI_STR, O(preview), "latent|taesd", "--preview-every previews: the latent->RGB map at latent size\n"
     "(1/8; the model's own map if it carries one; default) or a full-size TAESD decode", NULL, 0},
    {"precision", 0, CLI_STR, O(precision), "auto|f32|bf16|f16", "convolutions, linears and attention in bf16 with f32\n"
                                                            "accumulation, or f32 (default auto: bf16 where the CPU has\n"
                                                            "bf16 instructions, avx512_bf16 or AMX; the choice is logged);\n"
                                                            "f16: OpenCL devices hold conv/linear weights in half (and\n"
                                                            "multiply in half where they have cl_khr_fp16; auto picks that)", NULL, 0},
    {"weight-cache", 0, CLI_STR, O(weight_cache), "DIR|off", "CPU: prepared (reordered) weights are cached in DIR/weights and mapped\n"
     "by later runs instead of made on their first step (default: the cache root,\n"
     "$SDRT_WEIGHT_CACHE or $SDRT_CACHE_DIR; off: none)", NULL, 0},
    {"weight-cache-max", 0, CLI_STR, O(weight_cache_max), "SIZE", "the most disk the prepared-weight cache keeps, least recently used\n"
     "packs removed first (default 32G, or $SDRT_WEIGHT_CACHE_MAX)", NULL, 0},
    {"output", 'o', CLI_STR, O(output), "PATH", "PNG to write (default out.png; several images: %d in PATH or -N before .png)", NULL, 0},
    {"preview-every", 0, CLI_INT, O(preview_every), "N", "write a cheap latent preview every N steps to --preview-dir", NULL, 0},
    {"preview-dir", 0, CLI_STR, O(preview_dir), "DIR", "where previews go (default: the output's directory)", NULL, 0},
    {"vocab", 0, CLI_STR, O(vocab), "PATH", "CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt.gz); default: the model's\n"
                                           "tokenizer/ folder, $SDRT_VOCAB, or the one `make vocab` installed", NULL, 0},
    {"quiet", 'q', CLI_FLAG, O(quiet), NULL, "no progress output", NULL, 0},
    {"json", 0, CLI_FLAG, O(json), NULL, "one JSON event per line on stdout (phases, steps, previews, result, logs)", NULL, 0},
    {NULL, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef O
#undef I2I

static const char *mode_name(unsigned mode) {
    return mode == MODE_TXT2IMG ? "txt2img" : mode == MODE_IMG2IMG ? "img2img" : "inpaint";
}

static void usage(unsigned mode, FILE *f) {
    fprintf(f, "usage: sdrt %s --model MODEL --prompt TEXT%s [options]\n", mode_name(mode),
            mode == MODE_TXT2IMG ? "" : mode == MODE_IMG2IMG ? " --init-image PNG" : " --init-image PNG --mask PNG");
    cli_usage(f, options, mode);
    fprintf(f, "Options take their value as --name VALUE or --name=VALUE. Environment: docs/running.md.\n");
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

static int on_event(void *user, const struct sd_gen_event *ev) {
    struct run *r = user;
    struct opts *o = r->o;
    if (ev->kind == SD_EV_LORA) {
        const struct sd_lora_report *l = ev->lora;
        snprintf(r->lora_hashes, sizeof r->lora_hashes, "%s", ev->lora_hashes ? ev->lora_hashes : "");
        if (o->json) {
            printf("{\"event\": \"lora\", \"loras\": %d, \"matched\": %d, \"unmatched\": %d, \"tensors\": %d, "
                   "\"changed\": %d, \"seconds\": %.4f, \"hashes\": ", l->n_loras, l->matched, l->unmatched,
                   l->tensors_patched, l->tensors_changed, l->seconds);
            cli_json_str(stdout, r->lora_hashes);
            printf("}\n");
            fflush(stdout);
        } else if (!o->quiet) {
            fprintf(stderr, "sdrt: %d LoRA%s: %d modules matched, %d unmatched; %d tensors merged (%d changed) in %.3f s\n",
                    l->n_loras, l->n_loras == 1 ? "" : "s", l->matched, l->unmatched, l->tensors_patched,
                    l->tensors_changed, l->seconds);
        }
        return 0;
    }
    if (ev->kind == SD_EV_PHASE) {
        if (o->json) {
            printf("{\"event\": \"phase\", \"phase\": \"%s\", \"seconds\": %.4f%s%s}\n", ev->phase, ev->seconds,
                   strcmp(ev->phase, "vae_decode") ? (ev->cached ? ", \"cached\": true" : ", \"cached\": false") : "",
                   ev->tiled ? ", \"tiled\": true" : "");
            fflush(stdout);
        } else if (!o->quiet && isatty(2) && strcmp(ev->phase, "clip")) {
            fprintf(stderr, "\n");
        }
        if (!o->json && !o->quiet && ev->tiled) fprintf(stderr, "sdrt: %s ran in tiles (%.2f s)\n", ev->phase, ev->seconds);
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
    /* The preview map is SD's 4-channel latent -> RGB fit. */
    if (o->preview_every > 0 && ev->x0 && ev->channels == 4 &&
        ((ev->step + 1) % o->preview_every == 0 || ev->step + 1 == ev->n_steps)) {
        uint8_t *rgb = malloc((size_t)ev->h * ev->w * 3);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/preview-%03d.png", r->preview_path, ev->step + 1);
        struct sd_taesd *t = r->preview_taesd;
        const int f = t ? t->downscale : 1, pw = ev->w * f, ph = ev->h * f;
        if (t) {
            free(rgb);
            rgb = malloc((size_t)pw * ph * 3);
        }
        if (rgb && t && sd_preview_taesd_rgb8(r->rt, t, ev->x0, ev->w, ev->h, rgb)) {
            fprintf(stderr, "sdrt: taesd preview: %s\n", r->ctx->msg);
        } else if (rgb) {
            if (!t) sd_preview_rgb8_for(ev->x0, ev->w, ev->h, ev->latent_rgb, ev->sdxl, rgb);
            if (sd_png_write_rgb8(r->ctx, path, rgb, pw, ph, NULL) == SD_OK && o->json) {
                printf("{\"event\": \"preview\", \"step\": %d, \"path\": ", ev->step + 1);
                cli_json_str(stdout, path);
                printf("}\n");
            }
            free(rgb);
        }
    }
    fflush(stdout);
    return 0;
}

static struct sd_tokenizer *load_tokenizer(struct sd_ctx *ctx, const struct opts *o, const struct sd_model *m) {
    char p[PATH_MAX];
    struct stat st;
    if (!o->vocab && !m->single_file) {
        snprintf(p, sizeof p, "%s/tokenizer/vocab.json", o->model);
        if (stat(p, &st) == 0) return sd_tokenizer_load_diffusers(ctx, o->model);
    }
    const char *path = o->vocab ? o->vocab : cli_default_vocab(p, sizeof p);
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(ctx, path);
    if (!tok) {
        sd_error_wrap(ctx, "tokenizer (give --vocab PATH to bpe_simple_vocab_16e6.txt.gz, or run `make vocab`)");
        return NULL;
    }
    /* No tokenizer/ files: the model's pad token (its tokenizer config, else its family's). */
    sd_tokenizer_set_family(tok, m->clip.pad_id == 0 ? SD_TOKENIZER_SD2 : SD_TOKENIZER_SD1);
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

/* A run that fails after writing some of its images removes them (the
 * promise: nothing is written on failure) and says so in the message. */
static void remove_written(struct sd_ctx *ctx, char (*written)[PATH_MAX], int n) {
    if (n == 0) return;
    char list[1024] = "";
    size_t len = 0;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (unlink(written[i]) != 0 && errno != ENOENT) kept++;
        len += (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0, "%s%s", i ? ", " : "", written[i]);
    }
    size_t m = strlen(ctx->msg);
    snprintf(ctx->msg + m, sizeof ctx->msg - m, "; removed the %d image%s this run had written (%s)%s", n - kept,
             n - kept == 1 ? "" : "s", list, kept ? "; some could not be removed" : "");
}

static int generate(struct opts *o) {
    struct sd_ctx ctx = {0};
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    int rc = 0, status = 1;
    struct sd_model *m = NULL, *refiner = NULL;
    struct sd_tokenizer *tok = NULL;
    struct sd_runtime *rt = NULL;
    struct sd_embed_cache *cache = NULL;
    struct sd_lora_state *lora = NULL;
    struct sd_taesd *taesd = NULL;
    float *init = NULL, *mask = NULL, *images = NULL;
    struct run r = {.o = o, .ctx = &ctx};
    struct cli_log log = {.json = o->json};
    struct sd_runtime_opts ro;
    /* The images this invocation wrote: removed again if a later one fails. */
    char (*written)[PATH_MAX] = NULL;
    int n_written = 0;

    /* Usage and input checks before loading anything. */
    sd_runtime_opts_init(&ro);
    if (cli_runtime_opts(&ctx, &ro, &log)) goto usage_err;
    int kind = sd_backend_kind_parse(o->backend ? o->backend : "cpu");
    if (kind < 0) { sd_errorf(&ctx, SD_ERR_INVALID, "unknown backend '%s' (cpu, opencl, auto)", o->backend); goto usage_err; }
    ro.backend = (enum sd_backend_kind)kind;
    if (o->threads < 0) { sd_errorf(&ctx, SD_ERR_INVALID, "--threads must be >= 0 (got %d)", o->threads); goto usage_err; }
    if (o->threads) ro.threads = o->threads;
    if (o->low_memory) ro.conv = SD_CONV_POLICY_LOWMEM, ro.low_memory = 1;
    if (cli_precision(&ctx, &ro, o->precision)) goto usage_err;
    cli_weight_cache(&ro, o->weight_cache);
    if (cli_weight_cache_max(&ctx, &ro, o->weight_cache_max)) goto usage_err;
    if (o->device && kind == SD_BACKEND_CPU) {
        sd_errorf(&ctx, SD_ERR_INVALID, "--device %s picks an OpenCL device: give --backend opencl (or auto)", o->device);
        goto usage_err;
    }
    if (o->device && cli_device_index(&ctx, "--device", o->device, &ro.cl_device)) goto usage_err;
    const int width_given = o->width != NOT_GIVEN, height_given = o->height != NOT_GIVEN;
    if (!width_given) o->width = 512;
    if (!height_given) o->height = 512;
    if (!o->model) { sd_errorf(&ctx, SD_ERR_INVALID, "--model is required (see --help)"); goto usage_err; }
    if (!o->prompt) { sd_errorf(&ctx, SD_ERR_INVALID, "--prompt is required (see --help)"); goto usage_err; }
    g.prompt = o->prompt;
    g.negative_prompt = o->negative ? o->negative : "";
    g.width = o->width, g.height = o->height, g.batch = o->batch, g.cfg_scale = o->cfg, g.clip_skip = o->clip_skip;
    g.strength = o->strength;
    g.vae_tiling = o->vae_tiling, g.vae_tile = o->vae_tile, g.memory_budget = o->memory_budget;
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
    g.sampler.spacing = sd_spacing_parse(o->spacing);
    if (sd_gen_params_check(&ctx, &g)) goto usage_err;
    if (o->n_iter < 1 || o->n_iter > 10000) { sd_errorf(&ctx, SD_ERR_INVALID, "--n-iter must be 1..10000 (got %d)", o->n_iter); goto usage_err; }
    if (o->mode != MODE_TXT2IMG && !o->init) { sd_errorf(&ctx, SD_ERR_INVALID, "--init-image is required"); goto usage_err; }
    if (o->mode == MODE_INPAINT && !o->mask) { sd_errorf(&ctx, SD_ERR_INVALID, "--mask is required"); goto usage_err; }
    const int vae_taesd = o->vae && !strcmp(o->vae, "taesd"), preview_taesd = o->preview && !strcmp(o->preview, "taesd");
    if ((o->vae && !vae_taesd && strcmp(o->vae, "full")) || (o->preview && !preview_taesd && strcmp(o->preview, "latent"))) {
        sd_errorf(&ctx, SD_ERR_INVALID, "--vae is full or taesd, --preview is latent or taesd (got %s)",
                  o->vae && !vae_taesd && strcmp(o->vae, "full") ? o->vae : o->preview);
        goto usage_err;
    }
    if ((vae_taesd || preview_taesd) && !o->taesd) {
        sd_errorf(&ctx, SD_ERR_INVALID, "--%s taesd needs --taesd PATH (an AutoencoderTiny folder or taesd_decoder.safetensors)",
                  vae_taesd ? "vae" : "preview");
        goto usage_err;
    }
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
        if ((width_given && w != g.width) || (height_given && h != g.height)) {
            sd_errorf(&ctx, SD_ERR_INVALID, "init image %s is %dx%d but --width/--height ask for %dx%d", o->init, w, h,
                      width_given ? g.width : w, height_given ? g.height : h);
            goto usage_err;
        }
        g.width = w, g.height = h;
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
        g.inpaint_fill = o->inpaint_fill;
    }
    if (o->seed < 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->seed = (long long)(((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) & 0xffffffffu);
    }
    g.seed = (uint64_t)o->seed;
    if (!(written = calloc((size_t)o->n_iter * (size_t)g.batch, sizeof *written))) { sd_errorf(&ctx, SD_ERR_NOMEM, "out of memory"); goto fail; }

    double t0 = sd_time_s();
    /* A model that is missing, unreadable, malformed or unsupported is bad input (2). */
    if ((rc = sd_model_load(&ctx, o->model, o->config, &m))) {
        if (rc == SD_ERR_NOMEM) goto fail;
        goto usage_err;
    }
    /* SDXL's native size is 1024x1024 (A1111's default for SDXL models). */
    if (sd_family_is_xl(m->family) && !o->init) {
        if (!width_given) g.width = 1024;
        if (!height_given) g.height = 1024;
    }
    /* Sizes must be multiples of the model's VAE factor (8 for SD 1.x/2.x). */
    if (sd_gen_check_size(&ctx, m, g.width, g.height)) {
        if (o->init) sd_error_wrap(&ctx, "init image %s is %dx%d", o->init, g.width, g.height);
        goto usage_err;
    }
    const int tile_unit = 4 * sd_vae_downscale(&m->vae);
    if (o->vae_tile < 0 || o->vae_tile % tile_unit) {
        sd_errorf(&ctx, SD_ERR_INVALID, "--vae-tile %d is not a positive multiple of %d (4 x the VAE's factor)", o->vae_tile,
                  tile_unit);
        goto usage_err;
    }
    if (o->prediction >= 0) {
        m->prediction = (enum sd_prediction)o->prediction;
        snprintf(m->prediction_why, sizeof m->prediction_why, "--prediction");
    }
    if (o->refiner) {
        if ((rc = sd_model_load(&ctx, o->refiner, o->refiner_config, &refiner))) {
            sd_error_wrap(&ctx, "refiner");
            if (rc == SD_ERR_NOMEM) goto fail;
            goto usage_err;
        }
        g.refiner = refiner, g.refiner_switch = o->refiner_switch;
    }
    if (!(tok = load_tokenizer(&ctx, o, m))) goto fail;
    if (o->taesd) {
        if ((rc = sd_taesd_load(&ctx, o->taesd, &taesd))) {
            if (rc == SD_ERR_NOMEM) goto fail;
            goto usage_err;
        }
        if (sd_taesd_decode_check(&ctx, taesd, m->vae.latent_channels, sd_vae_downscale(&m->vae))) goto usage_err;
        if (vae_taesd) g.taesd_decode = taesd;
        if (preview_taesd) r.preview_taesd = taesd;
    }
    if (!(rt = sd_runtime_new(&ctx, &ro))) goto fail;
    r.rt = rt;
    if (!(cache = sd_embed_cache_new(64u << 20))) { sd_errorf(&ctx, SD_ERR_NOMEM, "out of memory"); goto fail; }
    if (!(lora = sd_lora_state_new(&ctx, m))) goto fail;
    g.loras = o->loras, g.n_loras = o->n_loras, g.lora_dir = o->lora_dir;
    if (o->json) printf("{\"event\": \"phase\", \"phase\": \"load\", \"seconds\": %.4f}\n", sd_time_s() - t0);
    if (!o->quiet && !o->json)
        fprintf(stderr, "sdrt: %s (%s), %dx%d, %d steps %s, cfg %.1f, seed %lld\n", o->model, sd_family_name(m->family),
                g.width, g.height, g.sampler.steps, sd_sampler_display_name(g.sampler.kind, g.sampler.karras),
                (double)g.cfg_scale, o->seed);
    if (!o->quiet && !o->json)
        fprintf(stderr, "sdrt: %s (%s)\n", m->prediction == SD_PRED_V ? "v_prediction" : "epsilon", m->prediction_why);
    g.on_event = on_event;
    g.user = &r;
    r.m = m;
    images = malloc(sizeof(float) * 3 * (size_t)g.width * g.height * g.batch);
    if (!images) { sd_errorf(&ctx, SD_ERR_NOMEM, "out of memory for %d images", g.batch); goto fail; }
    struct sd_pipeline p = {.ctx = &ctx, .model = m, .rt = rt, .tok = tok, .cache = cache, .lora = lora, .log = &ro.log};
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
        it.cfg_scale = sd_infotext_from_float(g.cfg_scale);
        it.seed = (uint64_t)seed;
        it.width = g.width, it.height = g.height;
        it.model = model_name;
        it.denoising_strength = o->mode == MODE_TXT2IMG ? -1 : sd_infotext_from_float(g.strength);
        it.clip_skip = g.clip_skip;
        it.rng = "CPU";
        it.version = "sdrt " SDRT_VERSION;
        it.lora_hashes = r.lora_hashes[0] ? r.lora_hashes : NULL;
        char refiner_name[256];
        if (refiner) {
            const char *rb = strrchr(o->refiner, '/');
            snprintf(refiner_name, sizeof refiner_name, "%s", rb && rb[1] ? rb + 1 : o->refiner);
            char *rd = strrchr(refiner_name, '.');
            if (rd && !strcmp(rd, ".safetensors")) *rd = 0;
            it.refiner = refiner_name, it.refiner_switch = sd_infotext_from_float(o->refiner_switch);
        }
        char *params = sd_infotext_format(&it);
        int wrc = sd_png_write(&ctx, path, images + (size_t)b * 3 * g.width * g.height, g.width, g.height, params);
        free(params);
        if (wrc) goto fail;
        snprintf(written[n_written++], PATH_MAX, "%s", path);
        if (o->json) {
            printf("{\"event\": \"image\", \"path\": ");
            cli_json_str(stdout, path);
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
    remove_written(&ctx, written, n_written);
    fprintf(stderr, "%ssdrt: %s\n", isatty(2) && r.steps_done ? "\n" : "", ctx.msg);
    if (o->json) { printf("{\"event\": \"error\", \"message\": "); cli_json_str(stdout, ctx.msg); printf("}\n"); }
    status = 1;
    goto done;
usage_err:
    remove_written(&ctx, written, n_written);
    fprintf(stderr, "sdrt: %s\n", ctx.msg);
    if (o->json) { printf("{\"event\": \"error\", \"message\": "); cli_json_str(stdout, ctx.msg); printf("}\n"); }
    status = 2;
done:
    free(images); free(init); free(mask); free(written);
    sd_embed_cache_free(cache);
    if (lora && rt) sd_lora_apply(lora, NULL, 0, &rt, 1, NULL, NULL);
    sd_lora_state_free(lora);
    if (rt && m) sd_runtime_release_model(rt, m);
    if (rt && refiner) sd_runtime_release_model(rt, refiner);
    sd_model_free(refiner);
    if (rt && taesd) sd_runtime_release_taesd(rt, taesd);
    sd_runtime_free(rt);
    sd_taesd_free(taesd);
    sd_tokenizer_free(tok);
    sd_model_free(m);
    return status;
}

static void defaults(struct opts *o, enum mode mode) {
    memset(o, 0, sizeof *o);
    o->mode = mode;
    o->steps = 20;
    o->width = o->height = NOT_GIVEN;
    o->batch = 1;
    o->n_iter = 1;
    o->cfg = 7.5f;
    o->strength = mode == MODE_INPAINT ? 1.0f : 0.75f;
    o->seed = -1;
    o->prediction = -1;
    o->inpaint_fill = SD_FILL_ORIGINAL;
    o->refiner_switch = 0.8f;
}

static int run_mode(enum mode mode, int argc, char **argv) {
    struct opts o;
    defaults(&o, mode);
    int rc = cli_parse(mode_name(mode), options, mode, argc, argv, &o, usage, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    return generate(&o);
}

int sd_cmd_txt2img(int argc, char **argv) { return run_mode(MODE_TXT2IMG, argc, argv); }
int sd_cmd_img2img(int argc, char **argv) { return run_mode(MODE_IMG2IMG, argc, argv); }
int sd_cmd_inpaint(int argc, char **argv) { return run_mode(MODE_INPAINT, argc, argv); }
