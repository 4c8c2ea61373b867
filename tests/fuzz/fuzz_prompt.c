/* fuzz_prompt.c - libFuzzer target for the A1111 prompt syntax
 * (host/text/prompt.c): emphasis, BREAK, <lora:...> tags, then the 75-token
 * chunking and the emphasis rescale on what the parse gave.
 *
 * Contract: a failure leaves a status and a message; a success gives
 * fragments whose texts are NUL-terminated pieces no longer than the input,
 * LoRA names and multipliers, and chunking yields n_chunks >= 1 chunks of
 * 77 ids each starting with BOS and ending with EOS (or pad on SD2).
 * tests/run.sh replays tests/fuzz/prompt/ (test_fuzz_prompt).
 */
#include "fuzz_util.h"
#include "prompt.h"

static void chunk(const struct sd_prompt *p, bool sd2) {
    struct sd_chunk_params cp;
    sd_chunk_params_init(&cp, sd2);
    int n = 0;
    for (int i = 0; i < p->n_frags; i++) n += p->frags[i].is_break ? 1 : (int)strlen(p->frags[i].text);
    int32_t *ids = malloc(sizeof *ids * (size_t)(n + 1));
    float *w = malloc(sizeof *w * (size_t)(n + 1));
    int k = 0;
    for (int i = 0; i < p->n_frags; i++) { /* one id per byte (',' -> the comma token) */
        const struct sd_prompt_frag *f = &p->frags[i];
        if (f->is_break) { ids[k] = SD_PROMPT_BREAK_ID, w[k++] = 1.0f; continue; }
        for (const unsigned char *c = (const unsigned char *)f->text; *c; c++)
            ids[k] = *c == ',' ? cp.comma : 256 + *c, w[k++] = (float)f->weight;
    }
    struct sd_ctx ctx = {0};
    int32_t *out = NULL;
    float *wo = NULL;
    int nc = 0;
    if (sd_prompt_chunk(&ctx, ids, w, n, &cp, &out, &wo, &nc) == SD_OK) {
        const int L = cp.chunk_len + 2;
        FUZZ_REQUIRE(nc >= 1 && out && wo);
        for (int c = 0; c < nc; c++) {
            FUZZ_REQUIRE(out[c * L] == cp.bos);
            FUZZ_REQUIRE(out[c * L + L - 1] == cp.eos || out[c * L + L - 1] == cp.pad);
        }
        float *z = calloc((size_t)nc * L * 2, sizeof *z);
        for (int i = 0; i < nc * L * 2; i++) z[i] = (float)(i % 7) - 3.0f;
        sd_prompt_apply_weights(z, wo, nc, L, 2);
        free(z);
    } else {
        FUZZ_REPORTED(&ctx);
    }
    free(out), free(wo), free(ids), free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0; /* prompts are short; keeps the fuzzer fast */
    char *s = fuzz_str(data, size);
    struct sd_ctx ctx = {0};
    struct sd_prompt *p = sd_prompt_parse(&ctx, s);
    if (!p) {
        FUZZ_REPORTED(&ctx);
    } else {
        FUZZ_REQUIRE(p->n_frags >= 0 && p->n_loras >= 0 && p->text && strlen(p->text) <= size);
        for (int i = 0; i < p->n_frags; i++) FUZZ_REQUIRE(p->frags[i].text && strlen(p->frags[i].text) <= size);
        for (int i = 0; i < p->n_loras; i++) FUZZ_REQUIRE(p->loras[i].name && strlen(p->loras[i].name) <= size);
        FUZZ_REQUIRE(memchr(p->warnings, 0, sizeof p->warnings) != NULL);
        chunk(p, false);
        chunk(p, true);
        sd_prompt_free(p);
    }
    free(s);
    return 0;
}
