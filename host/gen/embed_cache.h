/* embed_cache.h - LRU cache of text embeddings (and VAE encodes), bounded
 * in bytes.
 *
 * Key: (model id, clip skip, the 77-id sequences); value: the CLIP output
 * [n_chunks * 77, hidden]. A repeated prompt costs no CLIP time. May be
 * shared by every pipeline, runtime and thread (a mutex guards it; a hit is
 * copied out under it); the pipeline folds the runtime's numerics
 * (sd_runtime_numerics) and the LoRA set into the model id, so runtimes
 * that round differently (a pool's devices, precisions) keep apart. The pipeline also keeps VAE-encode
 * moments here, keyed by the image's bytes under a negative "clip skip" tag
 * (pipeline.c).
 */
#ifndef SDRT_EMBED_CACHE_H
#define SDRT_EMBED_CACHE_H

#include "sdrt.h"

struct sd_embed_cache;

/* Returns a cache holding at most max_bytes of embeddings (NULL on OOM). */
struct sd_embed_cache *sd_embed_cache_new(size_t max_bytes);
void sd_embed_cache_free(struct sd_embed_cache *c);

/* When the key is cached with exactly n floats, copies them into out and
 * returns true (a hit); otherwise returns false (a miss). */
bool sd_embed_cache_get(struct sd_embed_cache *c, uint64_t model_id, int clip_skip, const int32_t *ids, int n_ids,
                        float *out, int64_t n);
/* Stores a copy of emb (n floats); evicts least recently used entries. */
void sd_embed_cache_put(struct sd_embed_cache *c, uint64_t model_id, int clip_skip, const int32_t *ids, int n_ids,
                        const float *emb, int64_t n);

/* Statistics. */
void sd_embed_cache_stats(struct sd_embed_cache *c, int *hits, int *misses, size_t *bytes);

#endif
