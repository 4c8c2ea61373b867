/* demo_judge.c - the demo model's judge (see demo_judge.h): a classifier
 * written here, independent of the model (dominant colors and shape moments):
 *
 *   background  the per-channel median of the image's outer 4-pixel ring
 *               (robust to the shape reaching into it and to edge pixels),
 *               nearest of the three background colors (white, black, gray);
 *   color       the mean of the pixels farthest from the background (distance
 *               > 0.8 of the largest), nearest of the shape colors asked for
 *               (the base model's four, or those and the LoRA's orange);
 *   shape       moments of the mask of pixels more than half way from the
 *               background to the judged color: the skewness of y (the
 *               triangle points up: -0.57 for the exact shape, 0 for the
 *               others) and the 4-fold anisotropy E[dx^4 + dy^4 - 6 dx^2 dy^2]
 *               / E[r^4] (-0.43 for a square, whose mass reaches out along the
 *               diagonals; 0 for a disc): skewness < -0.25 triangle, else
 *               anisotropy < -0.19 square, else circle. Both are averages over
 *               the whole mask, so blurred edges and rounded corners move them
 *               little (drawn scenes: triangle skewness -0.62..-0.54, others 0;
 *               square anisotropy -0.44..-0.39, circle -0.11..0.01, triangle
 *               -0.01..0.06).
 */
#include "demo_judge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S DEMO_S

const char *const demo_color[5] = {"red", "green", "blue", "yellow", "orange"};
const float demo_color_rgb[5][3] = {{220, 40, 40}, {40, 170, 60}, {40, 70, 220}, {240, 215, 40}, {250, 130, 20}};
const char *const demo_shape[3] = {"circle", "square", "triangle"};
const char *const demo_bg[3] = {"white", "black", "gray"};
const float demo_bg_rgb[3][3] = {{240, 240, 240}, {20, 20, 20}, {128, 128, 128}};

static double dist2(const float *a, const float *b) {
    return (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]);
}

static int nearest(const float *c, const float (*pal)[3], int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (dist2(c, pal[i]) < dist2(c, pal[best])) best = i;
    return best;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median(float *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return v[n / 2];
}

struct demo_verdict demo_judge(const float *img, int n_colors) {
    float px[S * S][3];
    float ring[3][S * S];
    double d[S * S], dmax = 0;
    int nring = 0;
    for (int i = 0; i < S * S; i++)
        for (int c = 0; c < 3; c++) {
            float v = roundf((img[c * S * S + i] / 2 + 0.5f) * 255);
            px[i][c] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            if (y < 4 || y >= S - 4 || x < 4 || x >= S - 4) {
                for (int c = 0; c < 3; c++) ring[c][nring] = px[y * S + x][c];
                nring++;
            }
    float bg[3];
    for (int c = 0; c < 3; c++) bg[c] = median(ring[c], nring);
    struct demo_verdict v = {.bg = nearest(bg, demo_bg_rgb, 3), .color = -1, .shape = -1};
    for (int i = 0; i < S * S; i++) d[i] = sqrt(dist2(px[i], bg)), dmax = fmax(dmax, d[i]);
    if (dmax < 30) return v; /* no shape */
    double sum[3] = {0};
    int n = 0;
    for (int i = 0; i < S * S; i++)
        if (d[i] > 0.8 * dmax) {
            for (int c = 0; c < 3; c++) sum[c] += px[i][c];
            n++;
        }
    float col[3] = {(float)(sum[0] / n), (float)(sum[1] / n), (float)(sum[2] / n)};
    v.color = nearest(col, demo_color_rgb, n_colors);
    /* shape moments of the mask (pixels more than half way to the color) */
    double half = 0.5 * sqrt(dist2(demo_color_rgb[v.color], bg)), m0 = 0, mx = 0, my = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            if (d[y * S + x] > half) m0++, mx += x, my += y;
    if (m0 < 3) return v;
    mx /= m0, my /= m0;
    double yy = 0, yyy = 0, c4 = 0, r4 = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            if (d[y * S + x] > half) {
                double dx = x - mx, dy = y - my, r2 = dx * dx + dy * dy;
                yy += dy * dy, yyy += dy * dy * dy;
                c4 += dx * dx * dx * dx + dy * dy * dy * dy - 6 * dx * dx * dy * dy, r4 += r2 * r2;
            }
    v.skew = (yyy / m0) / pow(yy / m0, 1.5);
    v.aniso = c4 / r4;
    v.shape = v.skew < -0.25 ? 2 : v.aniso < -0.19 ? 1 : 0;
    return v;
}

int demo_agrees(struct demo_verdict v, int c, int s, int b) { return v.color == c && v.shape == s && v.bg == b; }

const char *demo_name(const char *const *names, int i) { return i < 0 ? "none" : names[i]; }

void demo_draw(float *img, int c, int s, int b, double cx, double cy, double r) {
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int hit = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++) {
                    double dx = x + (sx + 0.5) / 4 - cx, dy = y + (sy + 0.5) / 4 - cy, R = 1.15 * r;
                    if (s == 0) hit += dx * dx + dy * dy <= r * r;
                    else if (s == 1) hit += fabs(dx) <= 0.9 * r && fabs(dy) <= 0.9 * r;
                    else hit += dy >= -R && dy <= R / 2 && fabs(dx) <= (dy + R) / (1.5 * R) * (R * sqrt(3) / 2);
                }
            double m = hit / 16.0;
            for (int k = 0; k < 3; k++) {
                double v = roundf((float)((1 - m) * demo_bg_rgb[b][k] + m * demo_color_rgb[c][k]));
                img[k * S * S + y * S + x] = (float)(v / 127.5 - 1);
            }
        }
}

void demo_caption(char *buf, size_t n, int c, int s, int b) {
    snprintf(buf, n, "a %s %s on a %s background", demo_color[c], demo_shape[s], demo_bg[b]);
}

void demo_env_free(struct demo_env *e) {
    if (e->lora) {
        sd_lora_apply(e->lora, NULL, 0, &e->rt, 1, NULL, NULL);
        sd_lora_state_free(e->lora);
    }
    if (e->rt && e->m) sd_runtime_release_model(e->rt, e->m);
    sd_runtime_free(e->rt);
    sd_embed_cache_free(e->cache);
    sd_tokenizer_free(e->tok);
    sd_model_free(e->m);
    struct sd_ctx keep = e->ctx;
    memset(e, 0, sizeof *e);
    e->ctx = keep;
}

int demo_env_open(struct demo_env *e, const char *path, const struct sd_runtime_opts *o, const char *vocab) {
    memset(e, 0, sizeof *e);
    struct sd_runtime_opts def;
    if (!o) {
        sd_runtime_opts_init(&def);
        def.threads = 1;
        o = &def;
    }
    if (sd_model_load(&e->ctx, path, NULL, &e->m) || !(e->tok = sd_tokenizer_load_bpe_gz(&e->ctx, vocab)) ||
        sd_tokenizer_set_family(e->tok, SD_TOKENIZER_SD1) || !(e->rt = sd_runtime_new(&e->ctx, o)) ||
        !(e->cache = sd_embed_cache_new(4u << 20))) {
        if (!e->ctx.status) sd_errorf(&e->ctx, SD_ERR_NOMEM, "embedding cache: out of memory");
        demo_env_free(e);
        return 1;
    }
    e->p = (struct sd_pipeline){.ctx = &e->ctx, .model = e->m, .rt = e->rt, .tok = e->tok, .cache = e->cache};
    return 0;
}

int demo_env_lora(struct demo_env *e) {
    if (!(e->lora = sd_lora_state_new(&e->ctx, e->m))) return 1;
    e->p.lora = e->lora;
    return 0;
}

int demo_gen(struct demo_env *e, const struct demo_run *r, float *img, float *lat) {
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = r->prompt, g.negative_prompt = r->negative ? r->negative : "";
    g.width = g.height = S;
    g.cfg_scale = r->cfg, g.seed = r->seed;
    g.init_image = r->init, g.strength = r->init ? r->strength : 1.0f;
    g.latents_out = lat;
    g.on_event = r->on_event, g.user = r->user;
    g.lora_dir = r->lora_dir;
    int rc = sd_sampler_parse_name(&e->ctx, r->sampler ? r->sampler : "Euler a", &g.sampler);
    if (!rc) g.sampler.steps = r->steps, rc = sd_generate(&e->p, &g, img);
    if (rc) printf("  %s: %s\n", r->prompt, e->ctx.msg);
    return rc;
}

int demo_grid(struct demo_env *e, float cfg, float (*imgs)[3 * S * S], int attr[3], int verbose) {
    static float one[3 * S * S];
    int ok = 0, i = 0;
    attr[0] = attr[1] = attr[2] = 0;
    for (int c = 0; c < DEMO_COLORS; c++)
        for (int s = 0; s < 3; s++)
            for (int b = 0; b < 3; b++, i++) {
                char p[96];
                demo_caption(p, sizeof p, c, s, b);
                struct demo_run r = {.prompt = p, .steps = 20, .cfg = cfg, .seed = 1000 + (uint64_t)i};
                float *img = imgs ? imgs[i] : one;
                if (demo_gen(e, &r, img, NULL)) return -1;
                struct demo_verdict v = demo_judge(img, DEMO_COLORS);
                ok += demo_agrees(v, c, s, b);
                attr[0] += v.color == c, attr[1] += v.shape == s, attr[2] += v.bg == b;
                if (verbose && !demo_agrees(v, c, s, b))
                    printf("  cfg %.1f \"%s\" judged %s %s on %s (skewness %.2f, anisotropy %.2f)\n", cfg, p,
                           demo_name(demo_color, v.color), demo_name(demo_shape, v.shape), demo_bg[v.bg], v.skew,
                           v.aniso);
            }
    return ok;
}
