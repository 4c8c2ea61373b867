/* req_wire.h - the wire form of a job request (the `req` field of a Redis
 * stream entry, docs/scale-out.md): a gen_req fully resolved as JSON, so
 * that any `sdrt worker` produces the bytes the front-end's own server would.
 *
 * {"v":1, "model", "origin": native|a1111|openai, "mode": txt2img|img2img|
 *  inpaint, "prompt", "negative_prompt" (tags as given), "width", "height",
 *  "batch_size", "n_iter", "clip_skip", "cfg_scale", "strength", "seed"
 *  (resolved, >= 0), "sampler": {"name", "karras", "steps", "spacing",
 *  "steps_offset", "prediction", "eta", "clip_sample", "lcm_original_steps"},
 *  "inpaint_fill", "preview_every", "loras": [{"name", "te", "unet"}] (the
 *  explicit ones; the prompt's tags are resolved again by the worker),
 *  "init_w", "init_h", "init_f32", "mask_f32" (base64 of little-endian
 *  float32 planes: [3,h,w] in [-1,1], [h,w] in [0,1])}
 * Floats are JSON numbers with 17 significant digits: bit-exact.
 */
#ifndef SDRT_REQ_WIRE_H
#define SDRT_REQ_WIRE_H

#include "srv.h"

#define REQ_WIRE_VERSION 1

/* Encodes r (after srv_loras_prepare or before it) for model `model`: 0, or
 * -1 (out of memory, a non-finite float). */
int req_wire_encode(const struct gen_req *r, const char *model, enum job_origin o, json_t **out);
/* Decodes and validates a wire request into r (zeroed first; r->model = -1,
 * the caller resolves the model name): SD_OK, or SD_ERR_INVALID naming the
 * field that is missing or wrong. */
int req_wire_decode(struct sd_ctx *ctx, const json_t *in, struct gen_req *r, char *model, size_t model_cap,
                    enum job_origin *o);

#endif
