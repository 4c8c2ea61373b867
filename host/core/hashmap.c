/* hashmap.c - the open-addressing index of hashmap.h. */
#include "hashmap.h"

#include <stdlib.h>

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
