/* lora.h - LoRA / LyCORIS adapters: reading the files (lora_file.c),
 * matching their modules to a model's weights (lora_keys.c), their weight
 * deltas (lora_delta.c) and merging a set of them into a loaded model with
 * an exact restore (lora_apply.c). See docs/architecture.md "LoRA".
 *
 *   struct sd_lora_state *ls = sd_lora_state_new(ctx, model);
 *   struct sd_lora_req r = {.path = "x.safetensors", .te_mult = 1, .unet_mult = 1};
 *   if (sd_lora_apply(ls, &r, 1, &rt, 1, &report)) ...   // ctx: what was wrong; model unchanged
 *   ... generate ...
 *   sd_lora_apply(ls, NULL, 0, &rt, 1, NULL);           // back to the loaded weights, bit for bit
 *   sd_lora_state_free(ls);                             // before sd_model_free
 *
 * Formats (per key, so one file may mix them): kohya/A1111
 * `lora_unet_*` / `lora_te_*` with .lora_down/.lora_up/.alpha (Linear, conv
 * "LoCon", Tucker .lora_mid), .scale, .diff/.diff_b; LyCORIS LoHa (hada_*)
 * and LoKr (lokr_*); diffusers/PEFT `unet.` / `text_encoder.` /
 * `base_model.model.` with lora_A/lora_B (also `.default`), and the older
 * attention-processor keys (`processor.to_q_lora.down`,
 * `lora_linear_layer.down`). DoRA is refused, naming the key.
 */
#ifndef SDRT_LORA_H
#define SDRT_LORA_H

#include "model.h"
#include "runtime.h"
#include "safetensors.h"

/* What one tensor of a LoRA file is (sd_lora_parse_key). */
enum sd_lora_role {
    SD_LR_DOWN, SD_LR_UP, SD_LR_MID, SD_LR_ALPHA, SD_LR_SCALE, SD_LR_DIFF, SD_LR_DIFF_B,
    SD_LR_HADA_W1A, SD_LR_HADA_W1B, SD_LR_HADA_W2A, SD_LR_HADA_W2B, SD_LR_HADA_T1, SD_LR_HADA_T2,
    SD_LR_LOKR_W1, SD_LR_LOKR_W1A, SD_LR_LOKR_W1B, SD_LR_LOKR_W2, SD_LR_LOKR_W2A, SD_LR_LOKR_W2B, SD_LR_LOKR_T2,
    SD_LR_DORA,
    SD_LR_COUNT
};

enum sd_lora_kind { SD_LK_LORA, SD_LK_LOHA, SD_LK_LOKR, SD_LK_DIFF };
enum sd_lora_style { SD_LS_KOHYA = 1, SD_LS_PEFT = 2, SD_LS_DIFFUSERS_OLD = 4 };

/* Parses one tensor name of a LoRA file. On success returns 1, writes the
 * module's kohya name ("lora_unet_<diffusers path with _>" or
 * "lora_te_<HF CLIP path with _>") to module[0..n) and sets *role and
 * *style; returns 0 for a name of no known family. Pure string function. */
int sd_lora_parse_key(const char *key, char *module, size_t n, enum sd_lora_role *role, enum sd_lora_style *style);

struct sd_lora_module {
    char *name;                                  /* kohya name, the lookup key */
    const struct sd_st_tensor *t[SD_LR_COUNT];   /* by role; NULL when absent */
    enum sd_lora_kind kind;
    int te;                                      /* text encoder (else UNet) */
    int rank;                                    /* 0 when the format has none (full diff, plain LoKr) */
    float alpha;                                 /* = rank when the file gives none */
    float scale;                                 /* .scale (replaces alpha / rank) when has_scale */
    int has_scale;
    const char *key;                             /* one of its tensor names, for messages */
};

struct sd_lora_file {
    struct sd_st_file *f;
    char *path;
    char stem[256];                 /* file name without .safetensors */
    char hash[16];                  /* A1111 short hash: sha256 of the data after the header, 12 hex */
    char format[96];                /* "kohya LoRA", "kohya LoCon", "LyCORIS LoHa", "PEFT LoRA", ... */
    int n_mods;
    struct sd_lora_module *mods;
    int n_te, n_unet;
    int min_rank, max_rank;
    uint64_t id;                    /* unique per opened file (cache and merge identity) */
};

/* Opens, validates and parses a LoRA file (every tensor's name, dtype and
 * shape; alpha/scale values). Errors: SD_ERR_IO/FORMAT naming the file and
 * the key (unknown key family, a module without its up/down pair, a rank
 * that is not positive or larger than the module's sides, DoRA). */
int sd_lora_file_open(struct sd_ctx *ctx, const char *path, struct sd_lora_file **out);
void sd_lora_file_free(struct sd_lora_file *lf);
/* A1111's short hash (sha256 of the bytes after the header, first 12 hex
 * digits), computed on first use. */
const char *sd_lora_file_hash(struct sd_lora_file *lf);

/* lora_keys.c: the model's weight each module merges into. */
struct sd_lora_target {
    struct sd_weights *w;           /* the model's te or un */
    int idx;                        /* the base tensor (a slice's source) */
    int64_t row0;                   /* first row inside it (slices: q/k/v of SD2's in_proj) */
    int64_t rows, cols;             /* the block the delta covers: rows x (elements per row) */
    const char *name;               /* the model's name of the weight */
};
struct sd_lora_keymap;
struct sd_lora_keymap *sd_lora_keymap_new(struct sd_ctx *ctx, struct sd_model *m);
void sd_lora_keymap_free(struct sd_lora_keymap *km);
/* The target of module `mod` (bias = the .diff_b target); 0 when unmatched. */
int sd_lora_keymap_find(const struct sd_lora_keymap *km, const char *mod, int bias, struct sd_lora_target *t);
/* A few of the model's kohya names for module kind te/unet, for messages. */
void sd_lora_keymap_examples(const struct sd_lora_keymap *km, int te, char *buf, size_t n);

/* lora_delta.c: the f32 delta of one module, scale included (multiplier *
 * alpha / rank, or .scale, or the format's rule), as `rows * cols` floats
 * added to out (bias: the .diff_b vector). Shapes are checked against
 * rows x cols first: SD_ERR_FORMAT naming the key and both shapes. */
int sd_lora_delta_check(struct sd_ctx *ctx, const struct sd_lora_file *lf, const struct sd_lora_module *mod, int bias,
                        int64_t rows, int64_t cols);
int sd_lora_delta_add(struct sd_ctx *ctx, const struct sd_lora_file *lf, const struct sd_lora_module *mod, int bias,
                      float mult, int64_t rows, int64_t cols, float *out);

/* lora_apply.c */
struct sd_lora_req {
    const char *path;               /* the file */
    float te_mult, unet_mult;
};
struct sd_lora_report {
    int n_loras;
    int matched, unmatched;         /* modules over all files */
    int tensors_changed, tensors_patched;
    double seconds;
};
struct sd_lora_state;
struct sd_lora_state *sd_lora_state_new(struct sd_ctx *ctx, struct sd_model *m);
/* Binds the error context later calls report on (as sd_runtime_set_ctx):
 * a long-lived state (the server's) gets each caller's context. */
void sd_lora_state_set_ctx(struct sd_lora_state *ls, struct sd_ctx *ctx);
/* Restores the model's own weights (tell the runtimes first with
 * sd_lora_apply(ls, NULL, 0, rts, n, NULL) if any still hold copies). */
void sd_lora_state_free(struct sd_lora_state *ls);
/* Makes reqs[0..n) the active set: modules are validated and matched before
 * anything changes (on error the model keeps its previous set), tensors
 * whose contributions changed are merged again from their original bytes
 * into a private copy, tensors no longer touched get their original data
 * pointer back, and rts[0..n_rts) are told exactly which tensors changed.
 * A LoRA that matches nothing is an error naming a few keys. Logs the
 * matched/unmatched counts on `log` (may be NULL). */
int sd_lora_apply(struct sd_lora_state *ls, const struct sd_lora_req *reqs, int n, struct sd_runtime **rts, int n_rts,
                  const struct sd_log *log, struct sd_lora_report *report);
/* A value that changes whenever the text encoder's active LoRA set changes
 * (0 with none): part of the embedding cache key. */
uint64_t sd_lora_te_signature(const struct sd_lora_state *ls);
/* The parsed file for path, from the state's LRU cache (opened on a miss). */
const struct sd_lora_file *sd_lora_state_file(struct sd_lora_state *ls, const char *path);
/* Finds NAME in dir: NAME.safetensors, else a file whose ss_output_name
 * metadata is NAME. Writes the path; SD_ERR_INVALID naming dir when absent. */
int sd_lora_resolve(struct sd_ctx *ctx, const char *dir, const char *name, char *path, size_t n);

#endif
