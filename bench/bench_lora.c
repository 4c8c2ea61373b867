/* bench_lora.c - cost of applying and switching LoRA sets (host/lora) beside
 * one UNet CFG step, on one model.
 *
 *   bench_lora MODEL LORA [--config DIR] [--threads N] [--size LATENT] [--low-memory] [--no-unet]
 *
 * Prints the matched-key report, then (seconds, median of 3 unless noted):
 *   open+parse    the LoRA file, cold (once)
 *   apply         no LoRA -> LORA at 1.0 (every touched tensor: copy + delta)
 *   switch        LORA at 1.0 -> LORA at 0.5 (every tensor re-merged)
 *   restore       LORA -> none (pointers back, copies freed)
 *   unet step     one UNet call at batch 2 (CFG), LATENT x LATENT latents
 *                 (default 64: a 512x512 image), after a warm-up call
 * and that the restored weights are the loaded ones (an FNV-1a hash of every
 * tensor's bytes before the first apply and after the last restore).
 * --low-memory: the CPU convolution policy that keeps no transformed weight
 * copies (the merged copies already double the touched weights' memory).
 * --no-unet: only the LoRA figures (when memory is short; time the step
 * with `sdrt bench --components unet` instead).
 * A generation would tell the runtime about the changed tensors; that
 * cost (dropping their oneDNN reorders, made again on the next step) is in
 * the "unet step after switch" line.
 */
#include "lora.h"
#include "model_load.h"
#include "model_run.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* FNV-1a over every te/un tensor's bytes, in order. */
static uint64_t weights_hash(struct sd_model *m) {
    uint64_t h = 0xcbf29ce484222325ull;
    struct sd_weights *ws[2] = {m->te, m->un};
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < sd_weights_count(ws[c]); i++) {
            const struct sd_tensor *t = sd_weights_tensor(ws[c], i);
            /* Deferred weights (weights.h) are read without making them resident. */
            unsigned char *tmp = t->data && (t->flags & SD_TF_DEFERRED) ? malloc(sd_tensor_nbytes(t)) : NULL;
            if (tmp && sd_weight_read_f32(NULL, t, (float *)tmp)) free(tmp), tmp = NULL;
            const unsigned char *p = tmp ? tmp : (t->flags & SD_TF_DEFERRED) ? NULL : t->data;
            for (size_t k = 0; p && k < sd_tensor_nbytes(t); k++) h = (h ^ p[k]) * 0x100000001b3ull;
            free(tmp);
        }
    return h;
}

int main(int argc, char **argv) {
    const char *model = NULL, *lora = NULL, *config = NULL;
    int threads = 0, lat = 64, lowmem = 0, unet = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) lat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--low-memory")) lowmem = 1;
        else if (!strcmp(argv[i], "--no-unet")) unet = 0;
        else if (!model) model = argv[i];
        else lora = argv[i];
    }
    if (!model || !lora) {
        fprintf(stderr, "usage: bench_lora MODEL LORA [--config DIR] [--threads N] [--size LATENT]\n");
        return 2;
    }
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    if (threads) o.threads = threads;
    if (lowmem) o.conv = SD_CONV_POLICY_LOWMEM;
    if (sd_model_load(&ctx, model, config, &m)) return fprintf(stderr, "%s\n", ctx.msg), 1;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    struct sd_lora_state *ls = rt ? sd_lora_state_new(&ctx, m) : NULL;
    if (!ls) return fprintf(stderr, "%s\n", ctx.msg), 1;
    double t0 = sd_time_s();
    const struct sd_lora_file *lf = sd_lora_state_file(ls, lora);
    double t_open = sd_time_s() - t0;
    if (!lf) return fprintf(stderr, "%s\n", ctx.msg), 1;
    printf("%s: %s, %d modules (text encoder %d, UNet %d), rank %d..%d\n", lora, lf->format, lf->n_mods, lf->n_te,
           lf->n_unet, lf->min_rank, lf->max_rank);
    /* Load every weight first: apply times exclude the model's lazy load. */
    t0 = sd_time_s();
    if (sd_weights_load_all(m->te) || sd_weights_load_all(m->un)) return fprintf(stderr, "%s\n", ctx.msg), 1;
    printf("model weights loaded in %.2f s\n", sd_time_s() - t0);
    const uint64_t h0 = weights_hash(m);

    struct sd_lora_req full = {lora, 1.0f, 1.0f}, half = {lora, 0.5f, 0.5f};
    struct sd_lora_report rep;
    double ta[3], ts[3], tr[3];
    for (int k = 0; k < 3; k++) {
        if (sd_lora_apply(ls, &full, 1, &rt, 1, NULL, &rep)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        ta[k] = rep.seconds;
        if (k == 0) printf("matched %d modules, %d unmatched; %d tensors merged\n", rep.matched, rep.unmatched, rep.tensors_patched);
        if (sd_lora_apply(ls, &half, 1, &rt, 1, NULL, &rep)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        ts[k] = rep.seconds;
        if (sd_lora_apply(ls, NULL, 0, &rt, 1, NULL, &rep)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        tr[k] = rep.seconds;
    }
    qsort(ta, 3, sizeof *ta, cmp_d), qsort(ts, 3, sizeof *ts, cmp_d), qsort(tr, 3, sizeof *tr, cmp_d);

    /* One UNet CFG step (batch 2). */
    const int C = m->unet.in_channels, L = m->clip.max_pos, D = m->unet.context_dim;
    size_t nx = (size_t)2 * C * lat * lat;
    float *x = malloc(sizeof(float) * nx), *out = malloc(sizeof(float) * nx), tt[2] = {500, 500};
    float *ctxv = malloc(sizeof(float) * (size_t)2 * L * D);
    for (size_t i = 0; i < nx; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (size_t i = 0; i < (size_t)2 * L * D; i++) ctxv[i] = (float)((i * 40503u) % 1000) / 500.0f - 1.0f;
    double tu[3] = {0, 0, 0}, t_after = 0;
    if (unet) {
    if (sd_run_unet(rt, m, x, 2, lat, lat, tt, ctxv, L, out)) return fprintf(stderr, "%s\n", ctx.msg), 1;
    for (int k = 0; k < 3; k++) {
        t0 = sd_time_s();
        if (sd_run_unet(rt, m, x, 2, lat, lat, tt, ctxv, L, out)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        tu[k] = sd_time_s() - t0;
    }
    qsort(tu, 3, sizeof *tu, cmp_d);
    /* The step right after a switch re-derives the changed weights' reorders. */
    sd_lora_apply(ls, &full, 1, &rt, 1, NULL, &rep);
    t0 = sd_time_s();
    sd_run_unet(rt, m, x, 2, lat, lat, tt, ctxv, L, out);
    t_after = sd_time_s() - t0;
    sd_lora_apply(ls, NULL, 0, &rt, 1, NULL, &rep);
    }

    const int diff = weights_hash(m) != h0, n = sd_weights_count(m->te) + sd_weights_count(m->un);
    printf("open+parse        %8.3f s (cold, once)\n", t_open);
    printf("apply (none->L)   %8.3f s  (median of 3; min %.3f)\n", ta[1], ta[0]);
    printf("switch (L->L/2)   %8.3f s  (median of 3; min %.3f)\n", ts[1], ts[0]);
    printf("restore (L->none) %8.3f s  (median of 3; min %.3f)\n", tr[1], tr[0]);
    if (unet) {
        printf("unet CFG step     %8.3f s  (batch 2, %dx%d latents, median of 3)\n", tu[1], lat, lat);
        printf("unet step after a switch %.3f s (re-derives the changed weights' oneDNN layouts)\n", t_after);
    }
    printf("restore exact: the %d text-encoder and UNet tensors hash %s as loaded\n", n, diff ? "DIFFERENTLY" : "the same");
    free(x), free(out), free(ctxv);
    sd_lora_state_free(ls);
    sd_runtime_release_model(rt, m);
    sd_runtime_free(rt);
    sd_model_free(m);
    return diff ? 1 : 0;
}
