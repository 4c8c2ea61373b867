/* preview.c - latent -> RGB8 by a 4x3 linear map (see preview.h). */
#include "preview.h"

#include <math.h>
#include <stdlib.h>

#include "png_io.h"

/* ComfyUI's maps (comfy/latent_formats.py); rows: latent channel 0..3,
 * columns: R, G, B */
static const struct sd_latent_rgb sd15_map = {
    .factors = {
        {0.3512f, 0.2297f, 0.3227f},
        {0.3250f, 0.4974f, 0.2350f},
        {-0.2829f, 0.1762f, 0.2721f},
        {-0.2120f, -0.2616f, -0.7177f},
    },
};
static const struct sd_latent_rgb sdxl_map = {
    .factors = {
        {0.3651f, 0.4232f, 0.4341f},
        {-0.2533f, -0.0042f, 0.1068f},
        {0.1076f, 0.1111f, -0.0362f},
        {-0.3165f, -0.2492f, -0.2188f},
    },
    .bias = {0.1084f, -0.0175f, -0.0011f},
};

void sd_preview_rgb8_map(const float *latent, int w, int h, const struct sd_latent_rgb *map, uint8_t *rgb) {
    const int64_t plane = (int64_t)w * h;
    for (int64_t i = 0; i < plane; i++)
        for (int k = 0; k < 3; k++) {
            float v = map->bias[k];
            for (int c = 0; c < 4; c++) v += latent[c * plane + i] * map->factors[c][k];
            v = (v + 1.0f) * 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            if (v != v) v = 0.0f;
            rgb[i * 3 + k] = (uint8_t)rintf(v * 255.0f);
        }
}

void sd_preview_rgb8(const float *latent, int w, int h, enum sd_preview_kind kind, uint8_t *rgb) {
    sd_preview_rgb8_map(latent, w, h, kind == SD_PREVIEW_SDXL ? &sdxl_map : &sd15_map, rgb);
}

void sd_preview_rgb8_for(const float *latent, int w, int h, const struct sd_latent_rgb *own, int sdxl, uint8_t *rgb) {
    sd_preview_rgb8_map(latent, w, h, own ? own : sdxl ? &sdxl_map : &sd15_map, rgb);
}

int sd_preview_taesd_rgb8(struct sd_runtime *rt, struct sd_taesd *t, const float *latent, int w, int h, uint8_t *rgb) {
    const int f = t->downscale;
    float *img = malloc(sizeof(float) * 3 * (size_t)(f * w) * (size_t)(f * h));
    if (!img) return sd_errorf(sd_runtime_ctx(rt), SD_ERR_NOMEM, "taesd preview: out of memory");
    int rc = sd_run_taesd_decode(rt, t, latent, 1, h, w, img);
    if (!rc) sd_image_to_rgb8(img, f * w, f * h, rgb);
    free(img);
    return rc;
}
