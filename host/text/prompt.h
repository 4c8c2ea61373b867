/* prompt.h - A1111 prompt syntax: emphasis weights, BREAK, <lora:...> tags,
 * 75-token chunking and the weighted-embedding rescale (sd-reference §6.6).
 *
 * Parsing follows A1111's modules/prompt_parser.py parse_prompt_attention
 * exactly, including its tolerance: unbalanced '(' / '[' weight everything
 * to the end, an unmatched ')' or ']' is plain text, `(word:abc)` is
 * "word:abc" at 1.1. We add warnings for those cases (the CLI prints them)
 * and reject only what makes A1111 itself fail: a weight that is not a number
 * (`(word:1.2.3)`), or a bad <lora:...> multiplier. Deliberate deviations:
 *  - BREAK is a separate marker that brackets do not multiply and that never
 *    merges (A1111 stores it as weight -1, so "(a BREAK b)" turns BREAK into
 *    the word "BREAK" with weight -1.1 there - a bug we do not copy);
 *  - \s and \b use ASCII whitespace/word characters (bytes >= 0x80 count as
 *    word characters), \d is ASCII digits; weights parse locale-free.
 * Not supported (A1111 features outside emphasis): prompt editing
 * [from:to:when], alternation [a|b], AND, textual-inversion embeddings.
 */
#ifndef SDRT_PROMPT_H
#define SDRT_PROMPT_H

#include "sdrt.h"

struct sd_prompt_frag {
    char *text;      /* UTF-8, may be empty (A1111 keeps empty pieces) */
    double weight;   /* product of the enclosing bracket multipliers */
    bool is_break;   /* a BREAK marker (text "BREAK", weight 1) */
};

struct sd_prompt_lora {
    char *name;
    float te_mult;   /* text-encoder multiplier (2nd field, default 1) */
    float unet_mult; /* UNet multiplier (3rd field or unet=, default te_mult) */
};

struct sd_prompt {
    int n_frags;
    struct sd_prompt_frag *frags;
    int n_loras;
    struct sd_prompt_lora *loras;
    char *text;          /* the prompt with extra-network tags removed */
    char warnings[1024]; /* "; "-separated notes, empty when none */
};

/* Parses text. Returns a prompt owned by the caller (sd_prompt_free), or
 * NULL with ctx set (SD_ERR_INVALID naming the offending piece and its byte
 * offset, or SD_ERR_NOMEM). */
struct sd_prompt *sd_prompt_parse(struct sd_ctx *ctx, const char *text);
void sd_prompt_free(struct sd_prompt *p);

/* Chunking of a tokenised prompt, A1111 sd_hijack_clip.tokenize_line. */
struct sd_chunk_params {
    int32_t bos, eos, pad; /* SD1: 49406, 49407, 49407; SD2: pad 0 */
    int32_t comma;         /* ",</w>" = 267 */
    int chunk_len;         /* content tokens per chunk: 75 */
    int comma_backtrack;   /* A1111 comma_padding_backtrack: 20 (0 = off) */
};

#define SD_PROMPT_BREAK_ID (-1) /* token id marking BREAK in sd_prompt_chunk input */

void sd_chunk_params_init(struct sd_chunk_params *cp, bool sd2);

/* ids/w: the prompt's tokens (no BOS/EOS) with their weights, BREAK as
 * SD_PROMPT_BREAK_ID. Writes *n_chunks chunks of chunk_len+2 ids (BOS,
 * content padded with EOS, EOS; on SD2 everything after the first EOS is
 * pad) and weights (1 for BOS/EOS/padding) to malloc'd *ids_out, *w_out.
 * An empty prompt gives one chunk. A full chunk whose last comma is within
 * comma_backtrack tokens of the end is cut after that comma. */
int sd_prompt_chunk(struct sd_ctx *ctx, const int32_t *ids, const float *w, int n, const struct sd_chunk_params *cp,
                    int32_t **ids_out, float **w_out, int *n_chunks);

/* A1111 "Original" emphasis on text-encoder output z [n_chunks*L, d]: for
 * each chunk of L tokens, m0 = mean(z_chunk); z_chunk *= w (per token);
 * z_chunk *= m0 / mean(z_chunk). Means accumulate in double. A chunk whose
 * weighted mean is 0 is left weighted but unscaled. */
void sd_prompt_apply_weights(float *z, const float *w, int n_chunks, int tokens_per_chunk, int d);

#endif
