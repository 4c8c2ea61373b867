/* fuzz_tokenizer.c - libFuzzer target for the CLIP BPE tokenizer
 * (host/text/tokenizer.c, unicode.c).
 *
 * Inputs starting with 'L' are a diffusers tokenizer folder: the rest split
 * at NUL bytes into vocab.json, merges.txt and tokenizer_config.json, loaded
 * with sd_tokenizer_load_diffusers and then used on a fixed text. Any other
 * input is text for the real CLIP vocabulary (build/vocab or $SDRT_VOCAB,
 * loaded once): encode, encode_clip, normalize, and decode of the ids.
 * Contract: failures are reported; ids are in the vocabulary; encode_clip
 * gives BOS ... and 77 ids; decode never overruns its buffer.
 * tests/run.sh replays tests/fuzz/tokenizer/ (test_fuzz_tokenizer).
 */
#include "fuzz_util.h"
#include "tokenizer.h"

static struct sd_tokenizer *clip_tok(void) {
    static struct sd_tokenizer *tok;
    static struct sd_ctx ctx;
    if (!tok) {
        const char *p = getenv("SDRT_VOCAB");
        tok = sd_tokenizer_load_bpe_gz(&ctx, p && *p ? p : "build/vocab/bpe_simple_vocab_16e6.txt.gz");
        if (!tok) {
            fprintf(stderr, "fuzz_tokenizer: %s (run `make vocab` or set SDRT_VOCAB)\n", ctx.msg);
            __builtin_trap();
        }
    }
    return tok;
}

static void use(struct sd_tokenizer *tok, const char *text, int n_vocab) {
    int ids[128], n = 0;
    if (sd_tokenizer_encode(tok, text, ids, 128, &n) == SD_OK) {
        FUZZ_REQUIRE(n >= 0);
        for (int i = 0; i < n && i < 128; i++) FUZZ_REQUIRE(ids[i] >= 0 && ids[i] < n_vocab);
        char buf[64];
        size_t len = sd_tokenizer_decode(tok, ids, n < 128 ? n : 128, buf, sizeof buf);
        FUZZ_REQUIRE(strlen(buf) < sizeof buf && strlen(buf) <= len);
    }
    int clip[SD_TOKENIZER_CTX], nt = 0;
    if (sd_tokenizer_encode_clip(tok, text, clip, &nt) == SD_OK) {
        FUZZ_REQUIRE(clip[0] == 49406 || n_vocab < 49408);
        for (int i = 0; i < SD_TOKENIZER_CTX; i++) FUZZ_REQUIRE(clip[i] >= 0 && clip[i] < n_vocab);
    }
    char *norm = sd_tokenizer_normalize(tok, text);
    free(norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    if (size && data[0] == 'L') {
        const uint8_t *p = data + 1, *end = data + size;
        static const char *names[3] = {"tok/vocab.json", "tok/merges.txt", "tok/tokenizer_config.json"};
        for (int k = 0; k < 3; k++) {
            const uint8_t *z = k < 2 ? memchr(p, 0, (size_t)(end - p)) : NULL;
            size_t n = z ? (size_t)(z - p) : (size_t)(end - p);
            fuzz_write(names[k], p, n);
            p = z ? z + 1 : end;
        }
        char dir[256];
        snprintf(dir, sizeof dir, "%s/tok", fuzz_tmpdir());
        struct sd_ctx ctx = {0};
        struct sd_tokenizer *tok = sd_tokenizer_load_diffusers(&ctx, dir);
        if (!tok) {
            FUZZ_REPORTED(&ctx);
            return 0;
        }
        use(tok, "a photo of a cat, (masterpiece:1.2) <|endoftext|> caf\xc3\xa9", 1 << 30);
        sd_tokenizer_free(tok);
        return 0;
    }
    char *s = fuzz_str(data, size);
    use(clip_tok(), s, 49408);
    free(s);
    return 0;
}
