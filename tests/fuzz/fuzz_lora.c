/* fuzz_lora.c - libFuzzer target for the LoRA key parser
 * (host/lora/lora_key.c): every line of the input is one tensor name.
 *
 * Contract: a name is either refused (0) or gives a module name that is
 * NUL-terminated inside the buffer, starts with lora_unet_ or lora_te_,
 * holds no '.', and a role in range; a buffer too small to hold the module
 * is a refusal, never an overflow (checked with a small second buffer).
 * tests/run.sh replays tests/fuzz/lora/ (test_fuzz_lora).
 */
#include "fuzz_util.h"
#include "lora.h"

static void one(const char *key) {
    char mod[512], small[24];
    enum sd_lora_role role = SD_LR_COUNT;
    enum sd_lora_style style = 0;
    if (sd_lora_parse_key(key, mod, sizeof mod, &role, &style)) {
        FUZZ_REQUIRE(memchr(mod, 0, sizeof mod) != NULL);
        FUZZ_REQUIRE(!strncmp(mod, "lora_unet_", 10) || !strncmp(mod, "lora_te_", 8));
        FUZZ_REQUIRE(strchr(mod, '.') == NULL);
        FUZZ_REQUIRE(role < SD_LR_COUNT);
        FUZZ_REQUIRE(style == SD_LS_KOHYA || style == SD_LS_PEFT || style == SD_LS_DIFFUSERS_OLD);
    }
    if (sd_lora_parse_key(key, small, sizeof small, NULL, NULL)) FUZZ_REQUIRE(strlen(small) < sizeof small);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        one(line);
    }
    free(buf);
    return 0;
}
