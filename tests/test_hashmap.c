/* test_hashmap.c - host/core/hashmap: the hashes against published values,
 * and the map against a naive reference (a direct-address table over a
 * universe of random keys) through long random sequences of insert, find
 * and delete, with growth from an empty map, many values per hash, probe
 * runs that wrap around the table's end, and fixed maps.
 */
#include "hashmap.h"
#include "sdrt.h"
#include "test.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}

enum { U = 4096 };
static uint64_t key[U];   /* the universe of keys; values stored are indices into it */
static bool present[U];   /* the reference */

/* Looks key[k] up the way a caller does: the values under its hash, each
 * compared by key. Returns the value or SD_HMAP_NONE; *it left on it. */
static uint32_t lookup(const struct sd_hmap *m, uint64_t (*hash)(uint64_t), int k, struct sd_hmap_iter *it) {
    for (uint32_t v = sd_hmap_find(m, hash(key[k]), it); v != SD_HMAP_NONE; v = sd_hmap_next(m, it))
        if (key[v] == key[k]) return v;
    return SD_HMAP_NONE;
}

static uint64_t weak_hash(uint64_t x) { return x % 61; } /* ~67 keys per hash */
static uint64_t good_hash(uint64_t x) { return sd_hash_u64(x); }

/* Random ops against the reference (adds by sd_hmap_put and by
 * sd_hmap_insert after the failed lookup); every 2000 ops every key is
 * looked up and the count and load checked. Returns the mismatches. */
static long random_ops(uint64_t (*hash)(uint64_t), long n_ops, uint32_t *max_cap, long *n_del) {
    struct sd_hmap m = {0};
    long bad = 0, count = 0;
    memset(present, 0, sizeof present);
    for (long op = 0; op < n_ops; op++) {
        int k = (int)(rnd() % U);
        /* Insert-biased at first (the map grows), delete-biased later. */
        int insert = (int)(rnd() % 100) < (op < n_ops / 2 ? 70 : 35);
        struct sd_hmap_iter it;
        uint32_t v = lookup(&m, hash, k, &it);
        if ((v != SD_HMAP_NONE) != present[k] || (v != SD_HMAP_NONE && v != (uint32_t)k)) bad++;
        if (insert && !present[k]) {
            /* Half the adds through the failed lookup's slot (sd_hmap_insert). */
            int rc = op & 1 ? sd_hmap_insert(&m, &it, (uint32_t)k) : sd_hmap_put(&m, hash(key[k]), (uint32_t)k);
            if (rc != SD_OK) bad++;
            present[k] = true, count++;
        } else if (!insert && v != SD_HMAP_NONE) {
            sd_hmap_remove(&m, &it);
            present[k] = false, count--, (*n_del)++;
        }
        if (op % 2000 == 1999 || op == n_ops - 1) {
            for (int j = 0; j < U; j++) {
                uint32_t w = lookup(&m, hash, j, &it);
                if ((w != SD_HMAP_NONE) != present[j] || (w != SD_HMAP_NONE && w != (uint32_t)j)) bad++;
            }
            if (m.n != (uint32_t)count || (m.cap && 2 * m.n > m.cap)) bad++;
            /* each() visits every stored value once. */
            static int seen[U];
            memset(seen, 0, sizeof seen);
            uint32_t pos = 0, n = 0;
            for (uint32_t w; (w = sd_hmap_each(&m, &pos)) != SD_HMAP_NONE; n++)
                if (w >= U || !present[w] || seen[w]++) bad++;
            if (n != m.n) bad++;
        }
        if (m.cap > *max_cap) *max_cap = m.cap;
    }
    sd_hmap_free(&m);
    return bad;
}

/* The home slot of hash in a map of cap slots. */
static uint32_t home_of(uint64_t h, uint32_t cap) {
    struct sd_hmap m = {.cap = cap, .shift = 32};
    for (uint32_t c = cap; c > 1; c >>= 1) m.shift--;
    return sd_hmap_home(&m, sd_hmap_fold(h));
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    /* Hashes. FNV-1a 64 test vectors (Fowler/Noll/Vo's reference), and
     * splitmix64's first output from seed 0 (its finaliser of 0x9E37...). */
    CHECK(sd_hash_str("") == 0xcbf29ce484222325ull && sd_hash_str("a") == 0xaf63dc4c8601ec8cull &&
              sd_hash_str("foobar") == 0x85944171f73967e8ull && sd_fnv1a("foobar", 6, SD_FNV1A_SEED) == sd_hash_str("foobar") &&
              sd_fnv1a("bar", 3, sd_fnv1a("foo", 3, SD_FNV1A_SEED)) == sd_hash_str("foobar"),
          "FNV-1a 64: \"\", \"a\", \"foobar\" match the published values; sd_fnv1a continues a hash");
    CHECK(sd_hash_u64(0x9E3779B97F4A7C15ull) == 0xe220a8397b1dcdafull && sd_hash_ptr((void *)(uintptr_t)42) == sd_hash_u64(42),
          "sd_hash_u64 is splitmix64's finaliser (first output of seed 0: e220a8397b1dcdaf)");
    CHECK(sd_hmap_fold(0x0123456789abcdefull) == (0x01234567u ^ 0x89abcdefu), "the map keeps the two halves of a hash xor-ed");
    {
        /* 2^20 aligned "pointers": distinct hashes (a bijection), and a map
         * of them all finds each with one key comparison. */
        enum { N = 1 << 20 };
        uint64_t *h = malloc(N * sizeof *h), *sorted = malloc(N * sizeof *h);
        for (uint64_t i = 0; i < N; i++) sorted[i] = h[i] = sd_hash_ptr((void *)(uintptr_t)(i * 64));
        qsort(sorted, N, sizeof *sorted, cmp_u64);
        int dup = 0;
        for (int i = 1; i < N; i++) dup |= sorted[i] == sorted[i - 1];
        struct sd_hmap m = {0};
        long wrong = 0, probes = 0;
        for (uint32_t i = 0; i < N; i++) wrong += sd_hmap_put(&m, h[i], i) != SD_OK;
        for (uint32_t i = 0; i < N; i++) {
            struct sd_hmap_iter it;
            uint32_t v = sd_hmap_find(&m, h[i], &it);
            for (; v != SD_HMAP_NONE && h[v] != h[i]; v = sd_hmap_next(&m, &it)) probes++;
            wrong += v != i;
        }
        CHECK(!dup && !wrong && m.n == N, "2^20 pointer keys through sd_hash_ptr: distinct hashes; each found "
              "(cap %u, %ld other values under a shared 32-bit hash met on the way)", m.cap, probes);
        sd_hmap_free(&m);
        free(h), free(sorted);
    }

    /* The universe: random 64-bit keys, distinct. */
    for (int i = 0; i < U; i++) key[i] = rnd() | 1;
    for (int i = 1; i < U; i++)
        for (int j = 0; j < i; j++)
            if (key[i] == key[j]) key[i] = rnd() | 1, j = -1;

    uint32_t max_cap = 0;
    long n_del = 0;
    long bad = random_ops(good_hash, 200000, &max_cap, &n_del);
    CHECK(bad == 0, "200000 random put/insert/find/delete over %d keys vs a direct-address reference: %ld mismatches "
          "(grew from empty to %u slots, %ld deletes)", U, bad, max_cap, n_del);
    max_cap = 0, n_del = 0;
    bad = random_ops(weak_hash, 100000, &max_cap, &n_del);
    CHECK(bad == 0, "the same with 61 distinct hashes (~67 keys under each, long shared runs): %ld mismatches, "
          "%ld deletes", bad, n_del);

    /* Probe runs wrapping around the end: values whose home is the last slot. */
    {
        struct sd_hmap_slot slots[16];
        struct sd_hmap m;
        sd_hmap_init_fixed(&m, slots, 16);
        uint64_t hs[8];
        int n = 0;
        for (uint64_t h = 1; n < 8; h++)
            if (home_of(h, 16) == (n < 5 ? 15u : 0u)) hs[n++] = h;
        for (int i = 0; i < 8; i++) sd_hmap_put(&m, hs[i], (uint32_t)i);
        int ok = m.n == 8 && slots[15].val == 0 && slots[0].val == 1; /* 0 at home, 1.. wrapped */
        struct sd_hmap_iter it;
        for (int del = 0; del < 8; del += 2) { /* remove 0, 2, 4, 6 */
            ok &= sd_hmap_find(&m, hs[del], &it) == (uint32_t)del;
            sd_hmap_remove(&m, &it);
            for (int i = 0; i < 8; i++)
                ok &= sd_hmap_find(&m, hs[i], &it) == ((i <= del && i % 2 == 0) ? SD_HMAP_NONE : (uint32_t)i);
        }
        CHECK(ok && m.n == 4, "a probe run wrapping from the last slot to the first: deletes shift the run back "
              "across the end, every other value still found");
        /* A full fixed map refuses the next value and stays as it was. */
        sd_hmap_clear(&m);
        int rc = SD_OK;
        for (uint32_t i = 0; i < 8 && rc == SD_OK; i++) rc = sd_hmap_put(&m, sd_hash_u64(i), i);
        int rc9 = sd_hmap_put(&m, sd_hash_u64(8), 8);
        ok = rc == SD_OK && rc9 == SD_ERR_NOMEM && m.n == 8 && sd_hmap_find(&m, sd_hash_u64(8), &it) == SD_HMAP_NONE;
        for (uint32_t i = 0; i < 8; i++) ok &= sd_hmap_find(&m, sd_hash_u64(i), &it) == i;
        CHECK(ok && sd_hmap_slots_for(8) == 16 && sd_hmap_slots_for(9) == 32,
              "fixed map of 16 slots: 8 values fit, the 9th is refused (SD_ERR_NOMEM) and changes nothing");
        sd_hmap_free(&m); /* no-op on the caller's memory */
        CHECK(m.n == 0 && m.cap == 0 && sd_hmap_find(&m, 1, &it) == SD_HMAP_NONE && sd_hmap_put(&m, 1, SD_HMAP_NONE) == SD_ERR_INVALID,
              "a freed or zeroed map is empty; SD_HMAP_NONE cannot be stored");
    }
    {
        /* Removing while iterating: every value under one hash (interleaved
         * with values of other hashes) goes, the others stay. */
        struct sd_hmap m = {0};
        for (uint32_t i = 0; i < 600; i++) sd_hmap_put(&m, i % 3 == 0 ? 7 : 1000 + i % 5, i);
        struct sd_hmap_iter it;
        int removed = 0, ok = 1;
        for (uint32_t v = sd_hmap_find(&m, 7, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&m, &it))
            if (v % 2 == 0) sd_hmap_remove(&m, &it), removed++;
        for (uint32_t v = sd_hmap_find(&m, 7, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&m, &it)) ok &= v % 2 == 1;
        int left = 0;
        for (uint32_t v = sd_hmap_find(&m, 7, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&m, &it)) sd_hmap_remove(&m, &it), left++;
        CHECK(ok && removed == 100 && left == 100 && m.n == 400 && sd_hmap_find(&m, 7, &it) == SD_HMAP_NONE,
              "removing during a lookup: 100 of the 200 values under one hash, then the other 100; the 400 "
              "others stay");
        /* sd_hmap_set: re-pointing one value (an entry that moved). */
        for (uint32_t v = sd_hmap_find(&m, 1001, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&m, &it))
            if (v == 301) sd_hmap_set(&m, &it, 5000);
        int n301 = 0, n5000 = 0, n1001 = 0;
        for (uint32_t v = sd_hmap_find(&m, 1001, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&m, &it))
            n301 += v == 301, n5000 += v == 5000, n1001++;
        CHECK(n301 == 0 && n5000 == 1 && n1001 == 80 && m.n == 400, "sd_hmap_set replaces one value in place");
        bool r1 = sd_hmap_replace(&m, 1001, 5000, 301), r2 = sd_hmap_replace(&m, 1001, 5000, 7);
        bool r3 = sd_hmap_replace(&m, 1002, 301, 9);
        n301 = 0;
        for (uint32_t v = sd_hmap_find(&m, 1001, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&m, &it)) n301 += v == 301;
        CHECK(r1 && !r2 && !r3 && n301 == 1, "sd_hmap_replace: a value stored under the hash is replaced; one that "
              "is not, or under another hash, changes nothing");
        sd_hmap_free(&m);
    }
    {
        struct sd_hmap m;
        int rc = sd_hmap_init(&m, 1000);
        uint32_t cap0 = m.cap;
        for (uint32_t i = 0; i < 1000 && rc == SD_OK; i++) rc = sd_hmap_put(&m, sd_hash_u64(i), i);
        CHECK(rc == SD_OK && cap0 == 2048 && m.cap == cap0, "sd_hmap_init(1000): 2048 slots, 1000 values without growing");
        sd_hmap_free(&m);
    }
    return test_summary();
}
