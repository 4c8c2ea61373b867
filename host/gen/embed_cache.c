/* embed_cache.c - bounded LRU of text embeddings (see embed_cache.h). A
 * linear list: a handful of prompts is the common case; lookups compare a
 * 64-bit hash (FNV-1a, hashmap.h) first, then the ids. */
#include "embed_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

struct entry {
    uint64_t hash, model, tick;
    int clip_skip, n_ids;
    int32_t *ids;
    float *emb;
    int64_t n;
};

struct sd_embed_cache {
    struct entry *e;
    int n, cap;
    size_t bytes, max_bytes;
    uint64_t tick;
    int hits, misses;
    pthread_mutex_t lock;
};

static uint64_t hash(uint64_t model, int clip_skip, const int32_t *ids, int n) {
    uint64_t h = sd_fnv1a(&model, sizeof model, SD_FNV1A_SEED);
    h = sd_fnv1a(&clip_skip, sizeof clip_skip, h);
    return sd_fnv1a(ids, (size_t)n * sizeof *ids, h);
}

struct sd_embed_cache *sd_embed_cache_new(size_t max_bytes) {
    struct sd_embed_cache *c = calloc(1, sizeof *c);
    if (c && pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    if (c) c->max_bytes = max_bytes;
    return c;
}

static void drop(struct sd_embed_cache *c, int i) {
    c->bytes -= (size_t)c->e[i].n * sizeof(float) + (size_t)c->e[i].n_ids * sizeof(int32_t);
    free(c->e[i].ids);
    free(c->e[i].emb);
    c->e[i] = c->e[--c->n];
}

void sd_embed_cache_free(struct sd_embed_cache *c) {
    if (!c) return;
    while (c->n) drop(c, 0);
    free(c->e);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bool sd_embed_cache_get(struct sd_embed_cache *c, uint64_t model_id, int clip_skip, const int32_t *ids, int n_ids,
                        float *out, int64_t n) {
    if (!c) return false;
    uint64_t h = hash(model_id, clip_skip, ids, n_ids);
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n && !hit; i++) {
        struct entry *e = &c->e[i];
        if (e->hash == h && e->model == model_id && e->clip_skip == clip_skip && e->n_ids == n_ids && e->n == n &&
            !memcmp(e->ids, ids, (size_t)n_ids * sizeof *ids)) {
            e->tick = ++c->tick;
            memcpy(out, e->emb, (size_t)n * sizeof *out);
            hit = true;
        }
    }
    if (hit) c->hits++;
    else c->misses++;
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void sd_embed_cache_put(struct sd_embed_cache *c, uint64_t model_id, int clip_skip, const int32_t *ids, int n_ids,
                        const float *emb, int64_t n) {
    if (!c) return;
    size_t need = (size_t)n * sizeof(float) + (size_t)n_ids * sizeof(int32_t);
    if (need > c->max_bytes) return;
    /* Copies made outside the lock. */
    struct entry e = {hash(model_id, clip_skip, ids, n_ids), model_id, 0, clip_skip, n_ids, NULL, NULL, n};
    e.ids = malloc((size_t)n_ids * sizeof(int32_t));
    e.emb = malloc((size_t)n * sizeof(float));
    if (!e.ids || !e.emb) {
        free(e.ids);
        free(e.emb);
        return;
    }
    memcpy(e.ids, ids, (size_t)n_ids * sizeof(int32_t));
    memcpy(e.emb, emb, (size_t)n * sizeof(float));
    pthread_mutex_lock(&c->lock);
    while (c->n && c->bytes + need > c->max_bytes) {
        int lru = 0;
        for (int i = 1; i < c->n; i++)
            if (c->e[i].tick < c->e[lru].tick) lru = i;
        drop(c, lru);
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        struct entry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
        if (!ne) {
            pthread_mutex_unlock(&c->lock);
            free(e.ids);
            free(e.emb);
            return;
        }
        c->e = ne, c->cap = cap;
    }
    e.tick = ++c->tick;
    c->e[c->n++] = e;
    c->bytes += need;
    pthread_mutex_unlock(&c->lock);
}

void sd_embed_cache_stats(struct sd_embed_cache *c, int *hits, int *misses, size_t *bytes) {
    if (!c) {
        *hits = *misses = 0;
        *bytes = 0;
        return;
    }
    pthread_mutex_lock(&c->lock);
    *hits = c->hits;
    *misses = c->misses;
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}
