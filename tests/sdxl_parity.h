/* sdxl_parity.h - the tiny SDXL component checks shared by test_sdxl.c
 * (CPU) and test_cl_sdxl.c (OpenCL): text encoders (hidden_states[-2],
 * pooled text_embeds), the UNet with add_embedding, the VAE, against
 * tests/golden/sdxl.safetensors (tests/reference/gen_tiny_sdxl.py). The
 * tolerance scale `k` multiplies the CPU bounds (about 10x the measured
 * error there). Header-only, for the tests. */
#ifndef SDRT_SDXL_PARITY_H
#define SDRT_SDXL_PARITY_H

#include "model_load.h"
#include "model_run.h"
#include "test.h"
#include "golden_st.h"

static double sdxl_tol_scale = 1.0;

__attribute__((unused)) static void compare(const char *what, const float *got, const float *ref, int64_t n, double atol, double rtol) {
    double mx = 0;
    atol *= sdxl_tol_scale, rtol *= sdxl_tol_scale;
    if (check_close(what, got, ref, n, atol, rtol, &mx)) test_fail("%s (max abs err %.3g)", what, mx);
    else test_ok("%s matches diffusers", what);
}

static void test_text(struct sd_runtime *rt, struct sd_model *m, const char *label, struct sd_st_file *g) {
    char what[160];
    for (int which = 1; which <= 2; which++) {
        char n[64];
        snprintf(n, sizeof n, "te%d.input_ids", which);
        const struct sd_st_tensor *ids = gt(g, n);
        snprintf(n, sizeof n, "te%d.penultimate", which);
        const struct sd_st_tensor *pen = gt(g, n);
        const struct sd_st_tensor *pooled = which == 2 ? gt(g, "te2.text_embeds") : NULL;
        if (!ids || !pen || (which == 2 && !pooled)) continue;
        const int B = (int)ids->shape[0], L = (int)ids->shape[1], d = (int)pen->shape[2];
        const int p = pooled ? (int)pooled->shape[1] : 0, row = L * d + p;
        float *out = malloc(sizeof(float) * (size_t)B * row), *a = malloc(sizeof(float) * (size_t)B * L * d);
        float *b = malloc(sizeof(float) * (size_t)B * (p ? p : 1));
        int32_t eos[16];
        sd_clip_eos_rows(ids->data, B, L, eos);
        snprintf(what, sizeof what, "%s text encoder %d", label, which);
        if (sd_run_clip_xl(rt, m, which, ids->data, which == 2 ? eos : NULL, B, out)) {
            test_fail("%s: %s", what, sd_runtime_ctx(rt)->msg);
        } else {
            for (int r = 0; r < B; r++) {
                memcpy(a + (size_t)r * L * d, out + (size_t)r * row, sizeof(float) * (size_t)L * d);
                if (p) memcpy(b + (size_t)r * p, out + (size_t)r * row + (size_t)L * d, sizeof(float) * (size_t)p);
            }
            snprintf(what, sizeof what, "%s text encoder %d hidden_states[-2]", label, which);
            compare(what, a, pen->data, numel(pen), 2e-5, 2e-4);
            if (p) {
                snprintf(what, sizeof what, "%s text encoder 2 pooled text_embeds", label);
                compare(what, b, pooled->data, numel(pooled), 2e-5, 2e-4);
            }
        }
        free(out), free(a), free(b);
    }
}

static void test_unet(struct sd_runtime *rt, struct sd_model *m, const char *label, struct sd_st_file *g) {
    static const char *cases[2] = {"a", "b"};
    static const char *parts[6] = {"sample", "timestep", "context", "text_embeds", "time_ids", "out"};
    for (int c = 0; c < 2; c++) {
        const struct sd_st_tensor *t[6];
        int ok = 1;
        for (int i = 0; i < 6; i++) {
            char n[64];
            snprintf(n, sizeof n, "unet.%s.%s", cases[c], parts[i]);
            ok &= (t[i] = gt(g, n)) != NULL;
        }
        if (!ok) continue;
        char what[160];
        snprintf(what, sizeof what, "%s unet (add_embedding) %lldx%lld batch 2", label, (long long)t[0]->shape[2],
                 (long long)t[0]->shape[3]);
        float *out = malloc(sizeof(float) * (size_t)numel(t[5]));
        if (sd_run_unet_xl(rt, m, t[0]->data, 2, (int)t[0]->shape[2], (int)t[0]->shape[3], t[1]->data, t[2]->data,
                           (int)t[2]->shape[1], t[3]->data, t[4]->data, out))
            test_fail("%s: %s", what, sd_runtime_ctx(rt)->msg);
        else
            compare(what, out, t[5]->data, numel(t[5]), 2e-5, 2e-4);
        free(out);
    }
}

static void test_vae(struct sd_runtime *rt, struct sd_model *m, const char *label, struct sd_st_file *g) {
    const struct sd_st_tensor *lat = gt(g, "vae.decode.latent"), *img = gt(g, "vae.decode.image");
    const struct sd_st_tensor *ein = gt(g, "vae.encode.image"), *mom = gt(g, "vae.encode.moments");
    if (!lat || !img || !ein || !mom) return;
    char what[160];
    CHECK(fabsf(m->vae.scaling_factor - 0.13025f) < 1e-7f, "%s VAE scaling factor %g (SDXL 0.13025)", label,
          (double)m->vae.scaling_factor);
    float *z = malloc(sizeof(float) * (size_t)numel(lat)), *out = malloc(sizeof(float) * (size_t)numel(img));
    for (int64_t i = 0; i < numel(lat); i++) z[i] = ((const float *)lat->data)[i] / m->vae.scaling_factor;
    snprintf(what, sizeof what, "%s vae decode (latent / 0.13025)", label);
    if (sd_run_vae_decode(rt, m, z, 1, (int)lat->shape[2], (int)lat->shape[3], out)) test_fail("%s: %s", what, sd_runtime_ctx(rt)->msg);
    else compare(what, out, img->data, numel(img), 3e-5, 3e-4);
    free(out);
    out = malloc(sizeof(float) * (size_t)numel(mom));
    snprintf(what, sizeof what, "%s vae encode moments", label);
    if (sd_run_vae_encode(rt, m, ein->data, 1, (int)ein->shape[2], (int)ein->shape[3], out))
        test_fail("%s: %s", what, sd_runtime_ctx(rt)->msg);
    else
        compare(what, out, mom->data, numel(mom), 1e-5, 1e-4);
    free(z), free(out);
}

#endif
