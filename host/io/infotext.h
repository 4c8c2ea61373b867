/* infotext.h - the A1111 "parameters" text stored in output PNGs.
 *
 * Format (A1111 processing.create_infotext):
 *   <prompt>
 *   Negative prompt: <negative>        (line omitted when empty)
 *   Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1, Size: 512x512, ...
 * then the whole string stripped of surrounding whitespace. Values that
 * contain ',', ':' or a newline are JSON-quoted (json.dumps, non-ASCII kept);
 * floats print as Python's str() (shortest round trip, "7.0" not "7"). Keys
 * appear in A1111's order; unset optional fields are left out.
 */
#ifndef SDRT_INFOTEXT_H
#define SDRT_INFOTEXT_H

#include "sdrt.h"

struct sd_infotext {
    const char *prompt, *negative_prompt; /* UTF-8; NULL = "" */
    int steps;
    const char *sampler;                  /* e.g. "DPM++ 2M Karras" */
    const char *schedule_type;            /* NULL = omitted */
    double cfg_scale;
    uint64_t seed;
    int width, height;
    const char *model_hash, *model;       /* NULL = omitted */
    double denoising_strength;            /* < 0 = omitted (txt2img) */
    int clip_skip;                        /* <= 1 = omitted */
    const char *rng;                      /* "CPU" for the torch CPU generator; NULL = omitted (GPU) */
    const char *refiner;                  /* SDXL refiner model name; NULL = omitted */
    double refiner_switch;                /* "Refiner switch at", written with refiner */
    const char *lora_hashes;              /* NULL = omitted */
    const char *version;                  /* NULL = omitted */
};

/* Sets every field to "unset" (denoising_strength -1, pointers NULL). */
void sd_infotext_init(struct sd_infotext *it);

/* Returns the text (malloc'd, caller frees), or NULL when out of memory. */
char *sd_infotext_format(const struct sd_infotext *it);

/* The double nearest the shortest decimal that reads back as f: a float
 * option such as 0.6f is written "0.6" as A1111 (whose values are Python
 * floats parsed from decimals) writes it, not 0.6000000238418579. */
double sd_infotext_from_float(float f);

/* Python str() of a float into buf (>= 32 bytes). */
void sd_infotext_float(double v, char *buf, size_t size);

#endif
