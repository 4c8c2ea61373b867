/* test_preview.c - latent preview: hand-computed pixels from the ComfyUI
 * factor table (sd-reference §8.1), clamping, plane layout. */
#include "preview.h"
#include "test.h"

int main(void) {
    /* 2x1 latent: pixel 0 = unit channel 0, pixel 1 = unit channel 3 */
    float lat[8] = {1, 0, 0, 0, 0, 0, 0, 1};
    uint8_t rgb[6];
    sd_preview_rgb8(lat, 2, 1, SD_PREVIEW_SD15, rgb);
    /* (0.3512+1)/2*255 = 172.278, (0.2297+1)/2*255 = 156.787, (0.3227+1)/2*255 = 168.644;
     * (-0.2120+1)/2*255 = 100.47, (-0.2616+1)/2*255 = 94.146, (-0.7177+1)/2*255 = 35.99 */
    CHECK(rgb[0] == 172 && rgb[1] == 157 && rgb[2] == 169 && rgb[3] == 100 && rgb[4] == 94 && rgb[5] == 36,
          "SD1.5 factors: unit channel 0 -> (172,157,169), unit channel 3 -> (100,94,36): got (%d,%d,%d) (%d,%d,%d)",
          rgb[0], rgb[1], rgb[2], rgb[3], rgb[4], rgb[5]);
    float big[8] = {10, -10, 0, 0, 0, 0, 0, 0};
    sd_preview_rgb8(big, 2, 1, SD_PREVIEW_SD15, rgb);
    CHECK(rgb[0] == 255 && rgb[1] == 255 && rgb[2] == 255 && rgb[3] == 0 && rgb[4] == 0 && rgb[5] == 0,
          "large values clamp to 0 and 255");
    float zero[4] = {0, 0, 0, 0};
    sd_preview_rgb8(zero, 1, 1, SD_PREVIEW_SDXL, rgb);
    /* bias only: (0.1084+1)/2*255 = 141.32, (-0.0175+1)/2*255 = 125.27, (-0.0011+1)/2*255 = 127.36 */
    CHECK(rgb[0] == 141 && rgb[1] == 125 && rgb[2] == 127, "SDXL bias on a zero latent -> (141,125,127)");
    return test_summary();
}
