/* fuzz_png.c - libFuzzer target for the PNG reader (host/io/png_io.c): the
 * image decoder and the text-chunk (A1111 "parameters") reader, on bytes
 * from memory as an upload would give them.
 *
 * Contract: a failure leaves a status and a message and no output; a
 * success gives an image within the maximum side (256 here) whose values all
 * lie in [-1, 1], and a NUL-terminated text. Build and run with `make fuzz`;
 * tests/run.sh replays tests/fuzz/png/ (test_fuzz_png).
 */
#include <math.h>

#include "fuzz_util.h"
#include "png_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct sd_ctx ctx = {0};
    float *img = NULL;
    int w = 0, h = 0;
    int rc = sd_png_read_mem(&ctx, "fuzz.png", data, size, 256, &img, &w, &h);
    if (rc) {
        FUZZ_REPORTED(&ctx);
        FUZZ_REQUIRE(img == NULL);
    } else {
        FUZZ_REQUIRE(img && w >= 1 && h >= 1 && w <= 256 && h <= 256);
        for (int64_t i = 0; i < 3LL * w * h; i++) FUZZ_REQUIRE(img[i] >= -1.0f && img[i] <= 1.0f);
    }
    free(img);
    sd_ctx_clear(&ctx);
    char *txt = NULL;
    rc = sd_png_read_text_mem(&ctx, "fuzz.png", data, size, "parameters", &txt);
    if (rc) {
        FUZZ_REPORTED(&ctx);
        FUZZ_REQUIRE(txt == NULL);
    } else {
        FUZZ_REQUIRE(txt && strlen(txt) <= 2 * (size_t)SD_PNG_MAX_CHUNK);
    }
    free(txt);
    return 0;
}
