/* op_upsample.c - nearest resize of [N, C, H, W] to (oh, ow) on the CPU.
 *
 * PyTorch "nearest" (sd-reference 0.1): src = min(floor(dst * scale), in-1)
 * with scale = (float)in / out computed and applied in float32; equal sizes
 * copy, and out = 2*in maps dst -> dst/2 exactly (PyTorch special-cases
 * both). The x2 case has its own loop: each input row is widened once and
 * the widened row copied to the second output row.
 */
#include "cpu.h"

#include <math.h>
#include <string.h>

static int64_t nearest_src(int64_t dst, int64_t in, int64_t out) {
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    const float scale = (float)in / (float)out;
    const int64_t s = (int64_t)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

int sd_cpu_op_upsample_nearest(struct sd_cpu *cpu, struct sd_tensor *node) {
    const struct sd_tensor *xt = node->src[0];
    const float *x = xt->data;
    float *y = node->data;
    const int64_t NC = xt->ne[0] * xt->ne[1], H = xt->ne[2], W = xt->ne[3];
    const int64_t OH = node->ne[2], OW = node->ne[3];

    if (OH == 2 * H && OW == 2 * W) {
        #pragma omp parallel for collapse(2) schedule(static)
        for (int64_t p = 0; p < NC; p++) {
            for (int64_t h = 0; h < H; h++) {
                const float *xr = x + (p * H + h) * W;
                float *y0 = y + (p * OH + 2 * h) * OW;
                for (int64_t w = 0; w < W; w++) {
                    y0[2 * w] = xr[w];
                    y0[2 * w + 1] = xr[w];
                }
                memcpy(y0 + OW, y0, (size_t)OW * sizeof *y);
            }
        }
        return SD_OK;
    }

    /* General: column index table in scratch (shared, read-only). */
    int64_t *cols = sd_cpu_scratch(cpu, (size_t)OW * sizeof *cols);
    if (!cols) return cpu->ctx ? cpu->ctx->status : SD_ERR_NOMEM;
    for (int64_t w = 0; w < OW; w++) cols[w] = nearest_src(w, W, OW);

    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < NC; p++) {
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *xr = x + (p * H + nearest_src(oh, H, OH)) * W;
            float *yr = y + (p * OH + oh) * OW;
            for (int64_t w = 0; w < OW; w++) yr[w] = xr[cols[w]];
        }
    }
    return SD_OK;
}
