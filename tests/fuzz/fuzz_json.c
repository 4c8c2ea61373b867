/* fuzz_json.c - libFuzzer target for the JSON reader (host/io/json.c on jansson) and
 * the diffusers config readers on top of it (host/model/model_config.c:
 * unet, vae, text_encoder, scheduler and tokenizer configs).
 *
 * Contract: the parser either reports a failure or gives a DOM every
 * accessor walks safely (ASan checks), whose strings re-quote; the config
 * readers, given the input as every config file of a folder, either report
 * a failure or leave values the model builders can use (positive head
 * counts, group counts and finite positive epsilons, a finite non-zero VAE
 * scaling factor). tests/run.sh replays tests/fuzz/json/ (test_fuzz_json).
 */
#include <math.h>

#include "fuzz_util.h"
#include "json.h"
#include "model.h"

static size_t walk(const struct sd_json *v, int depth) {
    size_t n = 1;
    FUZZ_REQUIRE(depth < 10000);
    switch (sd_json_type(v)) {
    case SD_JSON_STR: {
        FUZZ_REQUIRE(sd_json_str(v) != NULL);
        char *q = sd_json_quote(sd_json_str(v), sd_json_slen(v));
        FUZZ_REQUIRE(q && q[0] == '"');
        free(q);
        break;
    }
    case SD_JSON_NUM: (void)sd_json_num(v, 0), (void)sd_json_int(v, 0), (void)sd_json_is_int(v); break;
    case SD_JSON_ARR:
        for (size_t i = 0; i < sd_json_len(v); i++) {
            const struct sd_json *c = sd_json_at(v, i);
            FUZZ_REQUIRE(c != NULL);
            n += walk(c, depth + 1);
        }
        FUZZ_REQUIRE(sd_json_at(v, sd_json_len(v)) == NULL);
        break;
    case SD_JSON_OBJ: {
        size_t count = 0;
        for (struct sd_json_member m = {0}; sd_json_next(v, &m); count++) {
            FUZZ_REQUIRE(m.key && m.value && strlen(m.key) == m.klen && sd_json_get(v, m.key) == m.value);
            n += walk(m.value, depth + 1);
        }
        FUZZ_REQUIRE(count == sd_json_len(v) && sd_json_at(v, 0) == NULL);
        break;
    }
    default: break;
    }
    (void)sd_json_type_name(sd_json_type(v));
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct sd_ctx ctx = {0};
    struct sd_json *doc = NULL;
    if (sd_json_parse(&ctx, (const char *)data, size, &doc) == SD_OK) {
        FUZZ_REQUIRE(doc != NULL);
        walk(doc, 0);
        sd_json_free(doc);
    } else {
        FUZZ_REPORTED(&ctx);
        FUZZ_REQUIRE(doc == NULL);
    }
    if (size > 16384) return 0;
    static const char *files[] = {"unet/config.json", "vae/config.json", "text_encoder/config.json",
                                  "scheduler/scheduler_config.json", "tokenizer/tokenizer_config.json"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) fuzz_write(files[k], data, size);
    struct sd_model *m = calloc(1, sizeof *m);
    m->family = (size & 1) ? SD_FAMILY_SD2 : SD_FAMILY_SD1;
    sd_model_config_defaults(m);
    sd_ctx_clear(&ctx);
    if (sd_model_read_configs(&ctx, m, fuzz_tmpdir()) == SD_OK) {
        for (int i = 0; i < SD_MAX_LEVELS; i++) FUZZ_REQUIRE(m->unet.heads[i] >= 0);
        FUZZ_REQUIRE(m->unet.norm_groups >= 1 && m->vae.norm_groups >= 1 && m->clip.heads >= 1);
        FUZZ_REQUIRE(isfinite(m->unet.norm_eps) && m->unet.norm_eps > 0);
        FUZZ_REQUIRE(isfinite(m->clip.eps) && m->clip.eps > 0);
        FUZZ_REQUIRE(isfinite(m->vae.scaling_factor) && m->vae.scaling_factor != 0);
    } else {
        FUZZ_REPORTED(&ctx);
    }
    free(m);
    return 0;
}
