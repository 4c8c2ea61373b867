/* hashmap.h - the one hash table of the project, and its hash functions.
 *
 * struct sd_hmap is an open-addressing index from hashes to uint32 values.
 * It keeps no keys: the caller keeps its entries (an array, an arena) and
 * stores each entry's hash with a value that finds the entry again (its
 * position or id). A lookup visits the values stored under the same hash
 * and the caller compares its own key:
 *
 *   struct sd_hmap_iter it;
 *   for (uint32_t v = sd_hmap_find(&m, sd_hash_str(name), &it); v != SD_HMAP_NONE; v = sd_hmap_next(&m, &it))
 *       if (strcmp(entries[v].name, name) == 0) return &entries[v];
 *
 * Hashes are given as 64 bits (sd_fnv1a, sd_hash_str, sd_hash_u64 below)
 * and kept as 32 (the two halves xor-ed), so a slot is 8 bytes: a table of
 * 50000 names is 1 MiB. Linear probing over a power-of-two table; the home
 * slot is the top bits of hash * 2^32/phi, so hashes need not be random in
 * their low bits. At most half full: sd_hmap_put doubles the table first
 * when needed. Deleting shifts the rest of the probe run back (no
 * tombstones). A zeroed struct sd_hmap is a valid empty map. A map made by
 * sd_hmap_init_fixed lives in the caller's memory and never grows: a put
 * that would make it more than half full fails. Not thread-safe; a put may
 * move every slot, so an iterator is valid until the next put.
 */
#ifndef SDRT_HASHMAP_H
#define SDRT_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sdrt.h"

/* "No value": returned when nothing is found; never store it. */
#define SD_HMAP_NONE UINT32_MAX

struct sd_hmap_slot { uint32_t hash, val; }; /* val SD_HMAP_NONE: empty */

struct sd_hmap {
    struct sd_hmap_slot *slots;
    uint32_t cap;    /* slots, a power of two (0: no table yet) */
    uint32_t n;      /* values stored */
    int shift;       /* 32 - log2(cap) */
    bool fixed;      /* slots belong to the caller */
};

/* Where a lookup stands (sd_hmap_find / sd_hmap_next / sd_hmap_remove). */
struct sd_hmap_iter { uint32_t hash, i; };

/* Makes an empty map with room for n values before it grows. Returns SD_OK
 * or SD_ERR_NOMEM (m is then an empty map with no table). */
int sd_hmap_init(struct sd_hmap *m, size_t n);
/* The number of slots a fixed map for n values needs (a power of two >= 2n). */
size_t sd_hmap_slots_for(size_t n);
/* Makes an empty map over slots[0..n_slots) (n_slots from sd_hmap_slots_for). */
void sd_hmap_init_fixed(struct sd_hmap *m, struct sd_hmap_slot *slots, size_t n_slots);
/* Frees the table (not a fixed map's memory) and leaves an empty map. */
void sd_hmap_free(struct sd_hmap *m);
/* Removes every value; keeps the table. */
void sd_hmap_clear(struct sd_hmap *m);


/* Removes the value the iterator returned last; continue with sd_hmap_next. */
void sd_hmap_remove(struct sd_hmap *m, struct sd_hmap_iter *it);

/* Replaces the value the iterator returned last (e.g. its entry moved);
 * val must not be SD_HMAP_NONE. */
static inline void sd_hmap_set(struct sd_hmap *m, const struct sd_hmap_iter *it, uint32_t val) {
    m->slots[it->i].val = val;
}

/* Replaces the value old stored under hash by val (for entries kept in an
 * array: the one at position old moved to val). Returns false, changing
 * nothing, when old is not stored under hash. */
bool sd_hmap_replace(struct sd_hmap *m, uint64_t hash, uint32_t old, uint32_t val);

/* Visits every stored value, in no particular order: start with *pos = 0;
 * returns SD_HMAP_NONE at the end. The map must not change meanwhile.
 *   for (uint32_t pos = 0; (v = sd_hmap_each(&m, &pos)) != SD_HMAP_NONE;) ... */
uint32_t sd_hmap_each(const struct sd_hmap *m, uint32_t *pos);

/* The 32 bits of a hash the map keeps, and their home slot. */
static inline uint32_t sd_hmap_fold(uint64_t hash) { return (uint32_t)hash ^ (uint32_t)(hash >> 32); }
static inline uint32_t sd_hmap_home(const struct sd_hmap *m, uint32_t h32) { return (h32 * 0x9E3779B9u) >> m->shift; }

/* sd_hmap_find: the first value stored under hash, or SD_HMAP_NONE;
 * sd_hmap_next: the next one. */
static inline uint32_t sd_hmap_next(const struct sd_hmap *m, struct sd_hmap_iter *it) {
    const uint32_t mask = m->cap - 1;
    for (uint32_t i = (it->i + 1) & mask;; i = (i + 1) & mask) {
        const struct sd_hmap_slot *s = &m->slots[i];
        if (s->val == SD_HMAP_NONE) { /* the end: it->i is the empty slot (sd_hmap_insert) */
            it->i = i;
            return SD_HMAP_NONE;
        }
        if (s->hash == it->hash) {
            it->i = i;
            return s->val;
        }
    }
}

static inline uint32_t sd_hmap_find(const struct sd_hmap *m, uint64_t hash, struct sd_hmap_iter *it) {
    it->hash = sd_hmap_fold(hash);
    if (!m->n) return SD_HMAP_NONE;
    it->i = sd_hmap_home(m, it->hash) - 1; /* next() starts at the home slot */
    return sd_hmap_next(m, it);
}

/* Doubles the table (or makes the first); SD_OK or SD_ERR_NOMEM. (For
 * sd_hmap_put; a fixed map never grows.) */
int sd_hmap_grow(struct sd_hmap *m);

/* Stores val under hash (also when hash already holds values: check first
 * where keys must be unique). Returns SD_OK, or SD_ERR_NOMEM when the table
 * cannot grow (allocation failed, or a full fixed map); the map is then
 * unchanged. val must not be SD_HMAP_NONE (SD_ERR_INVALID). */
static inline int sd_hmap_put(struct sd_hmap *m, uint64_t hash, uint32_t val) {
    if (val == SD_HMAP_NONE) return SD_ERR_INVALID;
    if (2 * ((size_t)m->n + 1) > m->cap && sd_hmap_grow(m) != SD_OK) return SD_ERR_NOMEM;
    const uint32_t mask = m->cap - 1, h = sd_hmap_fold(hash);
    uint32_t i = sd_hmap_home(m, h);
    while (m->slots[i].val != SD_HMAP_NONE) i = (i + 1) & mask;
    m->slots[i] = (struct sd_hmap_slot){h, val};
    m->n++;
    return SD_OK;
}

/* Find-then-add in one probe: right after a lookup `it` came back with
 * SD_HMAP_NONE (the key is absent; no change to the map since), stores val
 * under that lookup's hash in the empty slot where it stopped. Returns as
 * sd_hmap_put. */
static inline int sd_hmap_insert(struct sd_hmap *m, const struct sd_hmap_iter *it, uint32_t val) {
    if (val == SD_HMAP_NONE || !m->n || 2 * ((size_t)m->n + 1) > m->cap) return sd_hmap_put(m, it->hash, val);
    m->slots[it->i] = (struct sd_hmap_slot){it->hash, val};
    m->n++;
    return SD_OK;
}

/* ---- hashes ---------------------------------------------------------------- */

#define SD_FNV1A_SEED 0xcbf29ce484222325ull

/* 64-bit FNV-1a of p[0..n), continuing from h (SD_FNV1A_SEED to start). */
static inline uint64_t sd_fnv1a(const void *p, size_t n, uint64_t h) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* 64-bit FNV-1a of a NUL-terminated string (the same as sd_fnv1a over its
 * bytes from SD_FNV1A_SEED). */
static inline uint64_t sd_hash_str(const char *s) {
    uint64_t h = SD_FNV1A_SEED;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* A mix of a 64-bit integer (splitmix64's finaliser, a bijection). */
static inline uint64_t sd_hash_u64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t sd_hash_ptr(const void *p) { return sd_hash_u64((uint64_t)(uintptr_t)p); }

/* A fast 64-bit hash of a large buffer (content keys and checksums of
 * multi-megabyte weights, hashmap.c): 1 MiB chunks hashed in parallel
 * (OpenMP) with four multiply-rotate lanes, the chunk hashes folded in
 * order, so the value depends only on (p[0..n), seed), never on the thread
 * count. Not cryptographic: it detects corruption and tells contents
 * apart; it does not resist someone forging a collision. */
uint64_t sd_hash_bulk(const void *p, size_t n, uint64_t seed);

#endif
