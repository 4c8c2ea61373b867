/* tokenizer.h - the CLIP byte-level BPE tokenizer of SD 1.x/2.x (sd-reference §1).
 *
 *   struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(ctx, "bpe_simple_vocab_16e6.txt.gz");
 *   // or: sd_tokenizer_load_diffusers(ctx, "/models/sd15")  (reads tokenizer/vocab.json + merges.txt)
 *   sd_tokenizer_set_family(tok, SD_TOKENIZER_SD2);   // .gz only: SD1 is the default
 *   int ids[SD_TOKENIZER_CTX], n;
 *   if (sd_tokenizer_encode_clip(tok, "a photo of a cat", ids, &n)) ...;
 *   sd_tokenizer_free(tok);
 *
 * Reference: transformers' slow CLIPTokenizer (the class SD's model_index.json
 * names) as it runs when the `ftfy` package is NOT installed, which is the case
 * in a plain `pip install diffusers transformers`. It is meant to give the
 * same ids for any input; tests/golden/tokenizer_ids.txt checks 581 prompts
 * (SD1 and SD2 configs, transformers 4.46.3). What it does:
 *
 *   1. Split the raw text on the literal special tokens "<|startoftext|>" and
 *      "<|endoftext|>" (exact, case-sensitive); they become 49406 / 49407.
 *      SD2's diffusers tokenizer declares pad_token "!", which transformers
 *      makes an added token too: with SD_TOKENIZER_SD2 every "!" is split
 *      out the same way and becomes id 0 ("hi!" -> "hi</w>" 0, not 256).
 *   2. Each other piece is normalised like BERT's BasicTokenizer(strip_accents
 *      =False, do_split_on_punc=False): drop U+0000, U+FFFD and every category
 *      C* character (controls, format chars such as ZWJ, private use,
 *      unassigned) except \t \n \r; turn \t \n \r and Zs into spaces; put
 *      spaces around CJK ideographs; NFC; split on str.isspace() whitespace;
 *      Python str.lower() (full mapping, final sigma); join with one space.
 *      No accent stripping, no HTML unescaping ("&amp;" stays as written).
 *   3. Pre-tokenise with the regex of §1.3 (contractions, letter runs, single
 *      digits, runs of other non-space characters, and the special literals,
 *      which after lowercasing still become 49406/49407 when spelt exactly).
 *   4. Byte-level BPE with "</w>" on the last symbol (§1.4), cached per
 *      pre-token.
 *
 * Known difference from the ftfy path (openai/CLIP, open_clip, and transformers
 * when ftfy IS installed): ftfy.fix_text repairs mojibake, unescapes HTML
 * entities when the text has no '<', straightens curly quotes, maps full-width
 * ASCII to half-width, expands Latin ligatures; OpenAI/open_clip additionally
 * html.unescape twice. Those paths therefore differ on prompts with curly
 * quotes, full-width forms, ligatures, "&amp;"-style entities and broken
 * encodings; plain ASCII/Latin prompts tokenise identically (sd-reference §11.1).
 *
 * SD2 and open_clip: the original LDM SD2 code tokenises with open_clip (ftfy,
 * "!" an ordinary character, pad 0); diffusers' SD2 tokenizer is the
 * CLIPTokenizer with pad "!" described above. We follow diffusers.
 *
 * Other notes:
 * - Input is UTF-8; malformed bytes become U+FFFD and are thus dropped (Python
 *   would never see them). Unicode tables come from the build machine's
 *   Python unicodedata (sd_unicode_version()), which is what transformers uses
 *   (its `regex` module's \p{L}/\p{N} agreed with unicodedata 14.0 on every
 *   character that survives step 2 when checked).
 * - Vocabulary: the OpenAI .gz (read with zlib, a plain-text file works too)
 *   builds the 49408 ids of §1.1; the diffusers files give the same ids. Only
 *   the first 48894 merges are used, as in both references.
 * - Encoding is serialised by a mutex (it updates the pre-token cache and
 *   scratch buffers), so threads may share one tokenizer (a server's workers
 *   do). It borrows ctx for encode's errors; ctx must outlive it.
 */
#ifndef SDRT_TOKENIZER_H
#define SDRT_TOKENIZER_H

#include "hashmap.h"
#include "sdrt.h"

#include <pthread.h>

#define SD_TOKENIZER_CTX 77          /* CLIP context length: BOS + 75 + EOS */
#define SD_TOKENIZER_BOS 49406       /* <|startoftext|> */
#define SD_TOKENIZER_EOS 49407       /* <|endoftext|> */
#define SD_TOKENIZER_N_MERGES 48894  /* merges used: 49152 - 256 - 2 */

/* File name of OpenAI's vocabulary; `make vocab` puts it in build/vocab/. The
 * environment variable SDRT_VOCAB may name another copy (read by callers). */
#define SD_TOKENIZER_GZ_NAME "bpe_simple_vocab_16e6.txt.gz"

struct sd_tok_cache;

/* Padding conventions (sd-reference §1.5, §11.2). */
enum sd_tokenizer_family {
    SD_TOKENIZER_SD1 = 1,  /* pad with <|endoftext|> = 49407 (CLIPTokenizer default) */
    SD_TOKENIZER_SD2 = 2,  /* pad with "!" = 0, and "!" is an added token (see above) */
};

struct sd_tokenizer {
    struct sd_ctx *ctx;  /* borrowed: where encode reports errors */
    int n_vocab;         /* 49408 */
    int bos_id, eos_id;  /* 49406, 49407 */
    int pad_id;          /* 49407 (SD1) or 0 (SD2) */
    char pad_token[32];  /* its string; when not BOS/EOS it is split out of the
                            text like the specials (pad_split) */
    int pad_split;
    /* Internal. */
    int byte_id[256], byte_id_end[256]; /* symbol of a byte, without / with "</w>" */
    char *strs;          /* token strings (byte-to-unicode form), NUL-separated */
    size_t strs_len, strs_cap;
    uint32_t *str_off;   /* [n_vocab] offset of each id's string in strs */
    struct sd_hmap str_index; /* FNV-1a of a string -> its id */
    struct sd_tok_merge { int32_t a, b, out; } *merge; /* [rank]: a + b -> out */
    struct sd_hmap merge_index; /* hash of (a, b) -> rank */
    int n_merges;
    struct sd_tok_cache *cache;
    uint32_t *scratch;   /* normalisation buffers, grown on demand */
    size_t scratch_cap;
    pthread_mutex_t lock; /* encode and normalise use the cache and scratch: one thread at a time
                           * (a server's workers share one tokenizer) */
};

/* Loads OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip or plain text) and builds
 * the vocabulary of §1.1. Returns a tokenizer owned by the caller (free with
 * sd_tokenizer_free), or NULL with ctx set: SD_ERR_IO (unreadable or corrupt
 * file, naming the path), SD_ERR_FORMAT (malformed merge, with its line). */
struct sd_tokenizer *sd_tokenizer_load_bpe_gz(struct sd_ctx *ctx, const char *path);

/* Loads <dir>/tokenizer/vocab.json and <dir>/tokenizer/merges.txt of a
 * diffusers model folder (dir may also be the tokenizer folder itself), and
 * the pad_token of special_tokens_map.json or tokenizer_config.json beside
 * them when present (SD1 otherwise). Same ownership and errors as
 * sd_tokenizer_load_bpe_gz, plus SD_ERR_UNSUPPORTED for a pad token that is
 * not in the vocabulary. */
struct sd_tokenizer *sd_tokenizer_load_diffusers(struct sd_ctx *ctx, const char *dir);

/* Loads from the files vocab_json + merges_txt directly (family SD1). */
struct sd_tokenizer *sd_tokenizer_load_files(struct sd_ctx *ctx, const char *vocab_json, const char *merges_txt);

void sd_tokenizer_free(struct sd_tokenizer *tok);

/* Chooses the padding convention (loaders default to SD1). Returns SD_OK or
 * SD_ERR_INVALID. */
int sd_tokenizer_set_family(struct sd_tokenizer *tok, enum sd_tokenizer_family family);

/* Same by the pad token's vocabulary string ("<|endoftext|>", "!"), as a
 * tokenizer_config.json names it. SD_ERR_UNSUPPORTED when not in the vocabulary. */
int sd_tokenizer_set_pad(struct sd_tokenizer *tok, const char *pad_token);

/* Tokenises UTF-8 text into raw BPE ids (no BOS/EOS added; special literals in
 * the text do give 49406/49407, and "!" gives 0 for SD2). Writes the first min(max, total) ids to ids
 * and the total count to *n, snprintf-style, so *n > max means truncated.
 * Returns SD_OK or SD_ERR_NOMEM / SD_ERR_INVALID (NULL text) with tok->ctx set. */
int sd_tokenizer_encode(struct sd_tokenizer *tok, const char *text, int *ids, int max, int *n);

/* The 77-id model input: BOS + the first 75 ids of text + EOS, then the pad
 * id up to 77 (49407 for SD1, 0 for SD2; §1.5), like diffusers' call
 * tokenizer(text, padding="max_length", max_length=77, truncation=True).
 * *n_tokens (may be NULL) gets the number of content ids before truncation,
 * so *n_tokens > 75 means the prompt was cut. Returns as sd_tokenizer_encode. */
int sd_tokenizer_encode_clip(struct sd_tokenizer *tok, const char *text, int out[SD_TOKENIZER_CTX], int *n_tokens);

/* The normalised text of step 2 above (UTF-8, malloc'd, owned by the caller),
 * for one piece without special literals; NULL with tok->ctx set on OOM. */
char *sd_tokenizer_normalize(struct sd_tokenizer *tok, const char *text);

/* The vocabulary string of id (byte-to-unicode form, e.g. "cat</w>"), or NULL
 * when out of range. Borrowed from tok. */
const char *sd_tokenizer_token(const struct sd_tokenizer *tok, int id);

/* Decodes ids back to text (bytes restored, "</w>" -> space, specials
 * dropped, trailing space removed) into buf[size], NUL-terminated and
 * truncated to fit; returns the full length, like snprintf. */
size_t sd_tokenizer_decode(const struct sd_tokenizer *tok, const int *ids, int n, char *buf, size_t size);

#endif
