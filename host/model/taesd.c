/* taesd.c - TAESD loading (both layouts), graphs and runs (see taesd.h). */
#include "taesd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "model_util.h"
#include "safetensors.h"
#include "weights.h"

enum { RUN_TAESD_DEC = 0x7A01, RUN_TAESD_ENC };

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Original layout: "<k>.<rest>" -> "decoder.layers.<k-1>.<rest>" (index 0
 * of taesd_decoder is the parameterless clamp) or "encoder.layers.<k>.<rest>". */
static const char *ren_raw(const char *name, char *buf, size_t size, void *user) {
    const int dec = *(const int *)user;
    char *end;
    errno = 0;
    long k = strtol(name, &end, 10);
    if (end == name || *end != '.' || errno || k < dec || k > 1000) return NULL;
    snprintf(buf, size, "%s.layers.%ld%s", dec ? "decoder" : "encoder", k - dec, end);
    return buf;
}

static int add_file(struct sd_ctx *ctx, struct sd_taesd *t, const char *path, int raw_dec) {
    struct sd_st_file *f = NULL;
    int rc = sd_st_open(ctx, path, &f);
    if (rc) return rc;
    rc = t->diffusers ? sd_weights_add_file(t->w, f, NULL, NULL, NULL) : sd_weights_add_file(t->w, f, NULL, ren_raw, &raw_dec);
    sd_st_close(f);
    return rc;
}

/* Which raw part a file holds: the decoder's first conv reads the latent
 * (`1.weight` [C, 4, 3, 3], no `0.weight`), the encoder's the image
 * (`0.weight` [C, 3, 3, 3]). -1: neither. */
static int raw_part(struct sd_ctx *ctx, const char *path, int *rc) {
    struct sd_st_file *f = NULL;
    if ((*rc = sd_st_open(ctx, path, &f))) return -1;
    const struct sd_st_tensor *e = sd_st_find(f, "0.weight"), *d = sd_st_find(f, "1.weight");
    int part = e && e->n_dims == 4 && e->shape[1] == 3 ? 0 : !e && d && d->n_dims == 4 ? 1 : -1;
    if (part < 0 && (sd_st_find(f, "decoder.layers.0.weight") || sd_st_find(f, "encoder.layers.0.weight"))) part = 2;
    sd_st_close(f);
    return part;
}

static int read_config(struct sd_ctx *ctx, struct sd_taesd *t, const char *dir) {
    char path[2048];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return SD_OK;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    struct sd_json *j = NULL;
    int rc = sd_json_parse(ctx, buf, n, &j);
    if (rc) return sd_error_wrap(ctx, "%s", path), rc;
    const char *cls = sd_json_str(sd_json_get(j, "_class_name"));
    const char *act = sd_json_str(sd_json_get(j, "act_fn"));
    const char *up = sd_json_str(sd_json_get(j, "upsample_fn"));
    const double usf = sd_json_num(sd_json_get(j, "upsampling_scaling_factor"), 2);
    t->scaling_factor = (float)sd_json_num(sd_json_get(j, "scaling_factor"), 1.0);
    if (cls && strcmp(cls, "AutoencoderTiny"))
        rc = sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s: _class_name %s is not AutoencoderTiny", path, cls);
    else if ((act && strcmp(act, "relu")) || (up && strcmp(up, "nearest")) || usf != 2)
        rc = sd_errorf(ctx, SD_ERR_UNSUPPORTED, "%s: only act_fn relu, upsample_fn nearest, upsampling_scaling_factor 2 "
                       "are supported (got %s, %s, %g)", path, act ? act : "relu", up ? up : "nearest", usf);
    else if (!(t->scaling_factor > 0) || t->scaling_factor > 1e6)
        rc = sd_errorf(ctx, SD_ERR_FORMAT, "%s: scaling_factor %g", path, (double)t->scaling_factor);
    sd_json_free(j);
    return rc;
}

/* The layer sequence of one part from the keys present. */
static int scan(struct sd_ctx *ctx, struct sd_taesd *t, int dec) {
    const char *p = dec ? "decoder" : "encoder";
    unsigned char *L = dec ? t->dec_layers : t->enc_layers;
    int64_t d[SD_ST_MAX_DIMS];
    char n[96];
    int last = -1;
    for (int i = 0; i < SD_TAESD_MAX_LAYERS; i++) {
        snprintf(n, sizeof n, "%s.layers.%d.weight", p, i);
        if (sd_weights_shape(t->w, n, d) == 4) { L[i] = TAESD_CONV, last = i; continue; }
        snprintf(n, sizeof n, "%s.layers.%d.conv.0.weight", p, i);
        if (sd_weights_shape(t->w, n, d) == 4) { L[i] = TAESD_BLOCK, last = i; continue; }
        L[i] = dec && i == 1 ? TAESD_RELU : dec ? TAESD_UPSAMPLE : TAESD_NONE;
    }
    snprintf(n, sizeof n, "%s.layers.%d.weight", p, SD_TAESD_MAX_LAYERS);
    if (last < 1 || sd_weights_shape(t->w, n, d) >= 0 || L[0] != TAESD_CONV || L[last] != TAESD_CONV)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: the TAESD %s is not a sequence of 3x3 convs and blocks starting and "
                         "ending with a conv", t->path, p);
    for (int i = 0; i <= last; i++)
        if (L[i] == TAESD_NONE || (dec && L[i] == TAESD_UPSAMPLE && L[i + 1] != TAESD_CONV))
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: TAESD %s layer %d has no weights", t->path, p, i);
    if (dec) t->n_dec = last + 1;
    else t->n_enc = last + 1;
    /* Widths and the latent size from the first and last convs. */
    int64_t first[SD_ST_MAX_DIMS], lastw[SD_ST_MAX_DIMS];
    snprintf(n, sizeof n, "%s.layers.0.weight", p);
    sd_weights_shape(t->w, n, first);
    snprintf(n, sizeof n, "%s.layers.%d.weight", p, last);
    sd_weights_shape(t->w, n, lastw);
    const int64_t lat = dec ? first[1] : lastw[0], img = dec ? lastw[0] : first[1];
    if (img != 3 || lat < 1 || lat > 64 || (t->latent_channels && t->latent_channels != lat))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: TAESD %s maps %lld image channels to %lld latent channels", t->path, p,
                         (long long)img, (long long)lat);
    t->latent_channels = (int)lat;
    t->width = (int)first[0];
    int f = 1;
    for (int i = 0; i <= last; i++)
        if (dec ? L[i] == TAESD_UPSAMPLE : (L[i] == TAESD_CONV && i > 0 && i < last)) f *= 2;
    if (t->downscale && t->downscale != f)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: TAESD encoder and decoder scale by %d and %d", t->path, t->downscale, f);
    t->downscale = f;
    return SD_OK;
}

int sd_taesd_load(struct sd_ctx *ctx, const char *path, struct sd_taesd **out) {
    *out = NULL;
    struct sd_taesd *t = calloc(1, sizeof *t);
    if (!t || !(t->w = sd_weights_new(ctx))) {
        free(t);
        return sd_errorf(ctx, SD_ERR_NOMEM, "taesd: out of memory");
    }
    snprintf(t->path, sizeof t->path, "%s", path);
    t->scaling_factor = 1.0f;
    char dir[1024], p[2048];
    struct stat st;
    int rc = SD_OK;
    if (stat(path, &st) != 0) {
        rc = sd_errorf(ctx, SD_ERR_IO, "taesd %s: no such file or directory", path);
        goto done;
    }
    snprintf(dir, sizeof dir, "%s", path);
    if (!S_ISDIR(st.st_mode)) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
    if (S_ISDIR(st.st_mode) && is_file(p)) {
        t->diffusers = 1;
        if (!(rc = read_config(ctx, t, dir))) rc = add_file(ctx, t, p, 0);
    } else if (S_ISDIR(st.st_mode)) {
        for (int part = 0; part < 2 && !rc; part++) {
            snprintf(p, sizeof p, "%s/taesd_%s.safetensors", dir, part ? "decoder" : "encoder");
            if (is_file(p)) rc = add_file(ctx, t, p, part);
        }
    } else {
        int part = raw_part(ctx, path, &rc);
        if (rc) goto done;
        if (part == 2) {
            t->diffusers = 1;
            if (!(rc = read_config(ctx, t, dir))) rc = add_file(ctx, t, path, 0);
        } else if (part >= 0) {
            if ((rc = add_file(ctx, t, path, part))) goto done;
            /* The other half next to it: taesd_decoder <-> taesd_encoder. */
            const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
            const char *from = part ? "decoder" : "encoder", *to = part ? "encoder" : "decoder";
            const char *at = strstr(base, from);
            if (at) {
                snprintf(p, sizeof p, "%s/%.*s%s%s", dir, (int)(at - base), base, to, at + strlen(from));
                if (is_file(p) && raw_part(ctx, p, &rc) == !part && !rc) rc = add_file(ctx, t, p, !part);
            }
        } else {
            rc = sd_errorf(ctx, SD_ERR_FORMAT, "%s: not a TAESD file (no `0.weight` image conv, `1.weight` latent conv "
                           "or encoder./decoder.layers.* tensors)", path);
        }
    }
    if (rc) goto done;
    int64_t d[SD_ST_MAX_DIMS];
    t->has_encoder = sd_weights_shape(t->w, "encoder.layers.0.weight", d) >= 0;
    t->has_decoder = sd_weights_shape(t->w, "decoder.layers.0.weight", d) >= 0;
    if (!t->has_encoder && !t->has_decoder) {
        rc = sd_errorf(ctx, SD_ERR_FORMAT, "%s: no TAESD encoder or decoder found", path);
        goto done;
    }
    if (t->has_decoder && (rc = scan(ctx, t, 1))) goto done;
    if (t->has_encoder && (rc = scan(ctx, t, 0))) goto done;
    static _Atomic uint64_t next_id = 1;
    t->id = (1ull << 63) | next_id++;
done:
    if (rc) {
        sd_taesd_free(t);
        return rc;
    }
    *out = t;
    return SD_OK;
}

void sd_taesd_free(struct sd_taesd *t) {
    if (!t) return;
    sd_weights_free(t->w);
    free(t);
}

void sd_taesd_describe(const struct sd_taesd *t, char *buf, size_t size) {
    double params = 0;
    for (int i = 0; i < sd_weights_count(t->w); i++) params += (double)sd_tensor_nelements(sd_weights_tensor(t->w, i));
    snprintf(buf, size, "TAESD (tiny autoencoder, %s layout): %s%s%s, width %d, %d latent channels, factor %d, "
             "scaling_factor %g, %.2f M parameters",
             t->diffusers ? "diffusers AutoencoderTiny" : "original taesd_*.safetensors",
             t->has_encoder ? "encoder" : "", t->has_encoder && t->has_decoder ? " + " : "", t->has_decoder ? "decoder" : "",
             t->width, t->latent_channels, t->downscale, (double)t->scaling_factor, params / 1e6);
}

/* AutoencoderTinyBlock: relu(conv4(relu(conv2(relu(conv0(x))))) + skip(x)). */
static struct sd_tensor *block(struct sd_graph *g, struct sd_weights *w, struct sd_tensor *x, const char *p) {
    char n[128];
    snprintf(n, sizeof n, "%s.conv.0", p);
    struct sd_tensor *h = sd_relu(g, mb_conv(g, w, x, 1, 1, n));
    snprintf(n, sizeof n, "%s.conv.2", p);
    h = sd_relu(g, mb_conv(g, w, h, 1, 1, n));
    snprintf(n, sizeof n, "%s.conv.4", p);
    h = mb_conv(g, w, h, 1, 1, n);
    struct sd_tensor *skip = x;
    if (wt_has(w, "%s.skip.weight", p)) {
        snprintf(n, sizeof n, "%s.skip", p);
        skip = mb_conv(g, w, x, 1, 0, n);
    }
    return sd_relu(g, sd_add(g, h, skip));
}

static struct sd_tensor *layers(struct sd_graph *g, struct sd_taesd *t, int dec, struct sd_tensor *h) {
    const int n = dec ? t->n_dec : t->n_enc;
    const unsigned char *L = dec ? t->dec_layers : t->enc_layers;
    char p[96];
    for (int i = 0; i < n && h; i++) {
        snprintf(p, sizeof p, "%s.layers.%d", dec ? "decoder" : "encoder", i);
        switch (L[i]) {
        case TAESD_CONV: {
            const int stride = !dec && i > 0 && i < n - 1 ? 2 : 1; /* encoder downsamplers: symmetric pad 1 */
            h = mb_conv(g, t->w, h, stride, 1, p);
            break;
        }
        case TAESD_BLOCK: h = block(g, t->w, h, p); break;
        case TAESD_RELU: h = sd_relu(g, h); break;
        case TAESD_UPSAMPLE: h = sd_upsample(g, h, h->ne[2] * 2, h->ne[3] * 2); break;
        default: return NULL;
        }
    }
    return h;
}

struct taesd_args {
    struct sd_taesd *t;
    int B, a, b;
};

static struct sd_tensor *build_dec(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct taesd_args *r = user;
    struct sd_taesd *t = r->t;
    in[0] = sd_graph_input(g, "latents", SD_F32, 4, (int64_t[]){r->B, t->latent_channels, r->a, r->b});
    *n_in = 1;
    struct sd_tensor *h = in[0];
    if (t->scaling_factor != 1.0f) h = sd_scale(g, h, 1.0f / t->scaling_factor, 0.0f);
    h = sd_scale(g, sd_tanh(g, sd_scale(g, h, 1.0f / 3.0f, 0.0f)), 3.0f, 0.0f); /* tanh(x / 3) * 3 */
    return sd_scale(g, layers(g, t, 1, h), 2.0f, -1.0f);                        /* [0, 1] -> [-1, 1] */
}

static struct sd_tensor *build_enc(struct sd_graph *g, void *user, struct sd_tensor **in, int *n_in) {
    struct taesd_args *r = user;
    struct sd_taesd *t = r->t;
    in[0] = sd_graph_input(g, "image", SD_F32, 4, (int64_t[]){r->B, 3, r->a, r->b});
    *n_in = 1;
    struct sd_tensor *h = layers(g, t, 0, sd_scale(g, in[0], 0.5f, 0.5f)); /* (x + 1) / 2 */
    if (t->scaling_factor != 1.0f) h = sd_scale(g, h, t->scaling_factor, 0.0f);
    return h;
}

int sd_run_taesd_decode(struct sd_runtime *rt, struct sd_taesd *t, const float *latents, int B, int h, int w,
                        float *img) {
    if (!t->has_decoder) return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "%s: the TAESD has no decoder", t->path);
    struct taesd_args r = {t, B, h, w};
    struct sd_graph_key k = {RUN_TAESD_DEC, t->id, {B, h, w}, "taesd decoder"};
    const void *in[1] = {latents};
    return sd_runtime_run(rt, &k, build_dec, &r, in, img);
}

int sd_run_taesd_encode(struct sd_runtime *rt, struct sd_taesd *t, const float *img, int B, int H, int W,
                        float *latents) {
    if (!t->has_encoder) return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "%s: the TAESD has no encoder", t->path);
    const int f = t->downscale;
    if (H < f || W < f || H % f || W % f)
        return sd_errorf(sd_runtime_ctx(rt), SD_ERR_INVALID, "taesd encoder: %dx%d is not a multiple of %d", W, H, f);
    struct taesd_args r = {t, B, H, W};
    struct sd_graph_key k = {RUN_TAESD_ENC, t->id, {B, H, W}, "taesd encoder"};
    const void *in[1] = {img};
    return sd_runtime_run(rt, &k, build_enc, &r, in, latents);
}

int sd_taesd_decode_check(struct sd_ctx *ctx, const struct sd_taesd *t, int lc, int f) {
    if (!t->has_decoder) return sd_errorf(ctx, SD_ERR_INVALID, "%s: the TAESD has no decoder", t->path);
    if (t->latent_channels != lc || t->downscale != f)
        return sd_errorf(ctx, SD_ERR_INVALID, "%s: the TAESD decodes %d-channel latents at factor %d, the model's VAE "
                         "%d channels at factor %d", t->path, t->latent_channels, t->downscale, lc, f);
    return SD_OK;
}

void sd_runtime_release_taesd(struct sd_runtime *rt, const struct sd_taesd *t) {
    if (!rt || !t) return;
    const int n = sd_weights_count(t->w);
    struct sd_tensor **ws = malloc((size_t)(n > 0 ? n : 1) * sizeof *ws);
    for (int i = 0; ws && i < n; i++) ws[i] = sd_weights_tensor(t->w, i);
    sd_runtime_release_owner(rt, t->id, ws, ws ? n : 0);
    free(ws);
}
