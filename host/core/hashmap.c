/* hashmap.c - the open-addressing index of hashmap.h. */
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

enum { MIN_CAP = 16 };

static int log2u(size_t x) {
    int k = 0;
    while (((size_t)1 << k) < x) k++;
    return k;
}

size_t sd_hmap_slots_for(size_t n) {
    size_t cap = MIN_CAP;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

static void set_table(struct sd_hmap *m, struct sd_hmap_slot *slots, size_t cap) {
    for (size_t i = 0; i < cap; i++) slots[i].val = SD_HMAP_NONE;
    m->slots = slots;
    m->cap = (uint32_t)cap;
    m->shift = 32 - log2u(cap);
    m->n = 0;
}

void sd_hmap_init_fixed(struct sd_hmap *m, struct sd_hmap_slot *slots, size_t n_slots) {
    set_table(m, slots, n_slots);
    m->fixed = true;
}

int sd_hmap_init(struct sd_hmap *m, size_t n) {
    *m = (struct sd_hmap){0};
    if (n > (size_t)1 << 29) return SD_ERR_NOMEM;
    size_t cap = sd_hmap_slots_for(n);
    struct sd_hmap_slot *s = malloc(cap * sizeof *s);
    if (!s) return SD_ERR_NOMEM;
    set_table(m, s, cap);
    return SD_OK;
}

void sd_hmap_free(struct sd_hmap *m) {
    if (!m->fixed) free(m->slots);
    *m = (struct sd_hmap){0};
}

void sd_hmap_clear(struct sd_hmap *m) {
    for (uint32_t i = 0; i < m->cap; i++) m->slots[i].val = SD_HMAP_NONE;
    m->n = 0;
}

int sd_hmap_grow(struct sd_hmap *m) {
    if (m->fixed || m->cap >= (uint32_t)1 << 30) return SD_ERR_NOMEM;
    size_t cap = m->cap ? 2 * (size_t)m->cap : MIN_CAP;
    struct sd_hmap_slot *s = malloc(cap * sizeof *s);
    if (!s) return SD_ERR_NOMEM;
    struct sd_hmap old = *m;
    set_table(m, s, cap);
    const uint32_t mask = m->cap - 1;
    for (uint32_t k = 0; k < old.cap; k++) {
        if (old.slots[k].val == SD_HMAP_NONE) continue;
        uint32_t i = sd_hmap_home(m, old.slots[k].hash);
        while (m->slots[i].val != SD_HMAP_NONE) i = (i + 1) & mask;
        m->slots[i] = old.slots[k];
    }
    m->n = old.n;
    free(old.slots);
    return SD_OK;
}

/* Backward-shift deletion: every later value of the probe run whose home
 * slot is not between the hole and itself moves into the hole. */
void sd_hmap_remove(struct sd_hmap *m, struct sd_hmap_iter *it) {
    const uint32_t mask = m->cap - 1;
    uint32_t hole = it->i;
    for (uint32_t j = (hole + 1) & mask; m->slots[j].val != SD_HMAP_NONE; j = (j + 1) & mask) {
        uint32_t h = sd_hmap_home(m, m->slots[j].hash);
        /* j may move to hole unless h lies cyclically in (hole, j]. */
        if (((j - h) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].val = SD_HMAP_NONE;
    m->n--;
    it->i--; /* the slot just emptied may hold a later value now: next() looks at it again */
}

bool sd_hmap_replace(struct sd_hmap *m, uint64_t hash, uint32_t old, uint32_t val) {
    struct sd_hmap_iter it;
    for (uint32_t v = sd_hmap_find(m, hash, &it); v != SD_HMAP_NONE; v = sd_hmap_next(m, &it))
        if (v == old) {
            sd_hmap_set(m, &it, val);
            return true;
        }
    return false;
}

uint32_t sd_hmap_each(const struct sd_hmap *m, uint32_t *pos) {
    for (; *pos < m->cap; (*pos)++)
        if (m->slots[*pos].val != SD_HMAP_NONE) return m->slots[(*pos)++].val;
    return SD_HMAP_NONE;
}

/* ---- sd_hash_bulk ---- */

#define BULK_CHUNK ((size_t)1 << 20)
#define BULK_P1 0x9E3779B185EBCA87ull
#define BULK_P2 0xC2B2AE3D27D4EB4Full

static inline uint64_t bulk_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t bulk_chunk(const unsigned char *p, size_t n, uint64_t seed) {
    uint64_t a[4] = {seed + BULK_P1, seed ^ BULK_P2, seed - BULK_P1, ~seed};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * l, 8);
            a[l] = bulk_rotl(a[l] + v * BULK_P2, 31) * BULK_P1;
        }
    uint64_t h = n;
    for (int l = 0; l < 4; l++) h = sd_hash_u64(h ^ bulk_rotl(a[l], 7 + 13 * l));
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull; /* the tail (< 32 bytes) */
    return sd_hash_u64(h);
}

uint64_t sd_hash_bulk(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    const size_t nc = n ? (n + BULK_CHUNK - 1) / BULK_CHUNK : 0;
    uint64_t h = sd_hash_u64(seed ^ n);
    if (nc <= 1) return sd_hash_u64(h ^ bulk_chunk(b, n, seed));
    uint64_t small[64], *c = nc <= 64 ? small : malloc(nc * sizeof *c);
    if (!c) { /* no memory for the chunk hashes: the same values, one at a time */
        for (size_t k = 0; k < nc; k++)
            h = sd_hash_u64(h ^ bulk_chunk(b + k * BULK_CHUNK, k + 1 < nc ? BULK_CHUNK : n - k * BULK_CHUNK, seed));
        return h;
    }
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nc; k++)
        c[k] = bulk_chunk(b + k * BULK_CHUNK, k + 1 < nc ? BULK_CHUNK : n - k * BULK_CHUNK, seed);
    for (size_t k = 0; k < nc; k++) h = sd_hash_u64(h ^ c[k]);
    if (c != small) free(c);
    return h;
}
