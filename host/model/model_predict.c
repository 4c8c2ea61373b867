/* model_predict.c - is a single-file checkpoint epsilon- or v-prediction?
 *
 * Single files do not store it, and SD 2.x comes in both kinds (512-px
 * "base" models predict epsilon, the 768-px models v). We use ComfyUI's rule
 * (comfy/supported_models.py, SD20.model_type): an SD2 UNet with 4 input
 * channels is v-prediction when the population standard deviation of
 * output_blocks.11.1.transformer_blocks.0.norm1.bias (the first LayerNorm of
 * the last output block's transformer; diffusers
 * up_blocks.3.attentions.2.transformer_blocks.0.norm1.bias) exceeds 0.09.
 * That is ComfyUI's empirical separation of the released SD 2.x
 * checkpoints (no real checkpoint was at hand to re-measure it here); the
 * rule reads one small tensor, so `sdrt info` stays cheap.
 * SD2 inpainting models and SD 1.x are epsilon (ComfyUI and A1111 agree).
 * The other established heuristic, A1111's
 * is_using_v_parameterization_for_sd2 (one UNet evaluation at t = 999 on a
 * constant input: v when mean(out - x) < -1), needs the whole UNet loaded
 * and run; it is not used. The tensor is generalised to any depth: the last
 * up block's last transformer.
 */
#include "model_util.h"

#include <math.h>
#include <stdio.h>

#define V_STD_THRESHOLD 0.09

void sd_model_detect_prediction(struct sd_model *m) {
    m->prediction = SD_PRED_EPSILON;
    if (m->family == SD_FAMILY_SD1 || m->family == SD_FAMILY_SD1_INPAINT) {
        snprintf(m->prediction_why, sizeof m->prediction_why, "SD 1.x single file: epsilon");
        return;
    }
    if (sd_family_is_xl(m->family)) {
        snprintf(m->prediction_why, sizeof m->prediction_why, "SDXL single file: epsilon");
        return;
    }
    if (m->family == SD_FAMILY_SD2_INPAINT) {
        snprintf(m->prediction_why, sizeof m->prediction_why, "SD 2.x inpainting single file: epsilon");
        return;
    }
    char name[160];
    int n = 0, L = 0;
    while (n <= SD_MAX_LEVELS) {
        snprintf(name, sizeof name, "up_blocks.%d.resnets.0.conv1.weight", n);
        if (!sd_weights_find(m->un, name)) break;
        n++;
    }
    for (;; L++) {
        snprintf(name, sizeof name, "up_blocks.%d.attentions.%d.transformer_blocks.0.norm1.bias", n - 1, L + 1);
        if (!sd_weights_find(m->un, name)) break;
    }
    snprintf(name, sizeof name, "up_blocks.%d.attentions.%d.transformer_blocks.0.norm1.bias", n - 1, L);
    const struct sd_tensor *t = n > 0 ? sd_weights_find(m->un, name) : NULL;
    /* LDM index of that block: each up block has layers_per_block + 1 = L + 1 output blocks. */
    const int ldm = n * (L + 1) - 1;
    if (!t || !t->data) {
        snprintf(m->prediction_why, sizeof m->prediction_why,
                 "SD 2.x single file without output_blocks.%d.1.transformer_blocks.0.norm1.bias: epsilon (default)", ldm);
        return;
    }
    const int64_t k = sd_tensor_nelements(t);
    const float *d = t->data;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < k; i++) mean += d[i];
    mean /= (double)(k ? k : 1);
    for (int64_t i = 0; i < k; i++) var += (d[i] - mean) * (d[i] - mean);
    const double sd = sqrt(var / (double)(k ? k : 1));
    m->prediction = sd > V_STD_THRESHOLD ? SD_PRED_V : SD_PRED_EPSILON;
    snprintf(m->prediction_why, sizeof m->prediction_why,
             "detected: std of output_blocks.%d.1.transformer_blocks.0.norm1.bias = %.4f %s %.2f (ComfyUI's SD2 rule)", ldm,
             sd, sd > V_STD_THRESHOLD ? ">" : "<=", V_STD_THRESHOLD);
}
