/* unicode.c - UTF-8, character classes, str.lower() and NFC over the tables
 * host/gen_unicode.py generates at build time (see unicode.h).
 *
 * NFC is the textbook algorithm (UAX #15): full canonical decomposition
 * (recursive table lookups, Hangul syllables algorithmically), canonical
 * ordering (stable sort of each run of non-starters by combining class),
 * then canonical composition: each character is combined with the last
 * starter when a primary composite exists and nothing between them blocks it
 * (an intervening character of class 0 or of a class >= its own).
 */
#include "unicode.h"

#include <stdbool.h>

#include "unicode_tables.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Hangul syllable arithmetic (Unicode ch. 3.12). */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

/* Value of the range containing cp in a table of (start << 8 | value). */
static unsigned range_lookup(const uint32_t *t, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n; /* t[0] starts at 0, so the answer is in [0, n) */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((t[mid] >> 8) <= cp) lo = mid;
        else hi = mid;
    }
    return t[lo] & 0xFF;
}

unsigned sd_unicode_class(uint32_t cp) {
    if (cp < 256) return sd_uc_class_latin1[cp];
    if (cp > 0x10FFFF) return 0;
    return range_lookup(sd_uc_class, NELEM(sd_uc_class), cp);
}

static unsigned ccc_of(uint32_t cp) {
    if (cp < 0x300 || cp > 0x10FFFF) return 0;
    return range_lookup(sd_uc_ccc, NELEM(sd_uc_ccc), cp);
}

/* Row index of key in a table of `stride`-wide rows sorted by their first
 * word, or -1. */
static long row_find(const uint32_t *t, size_t rows, size_t stride, uint32_t key) {
    size_t lo = 0, hi = rows;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t k = t[mid * stride];
        if (k == key) return (long)mid;
        if (k < key) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

size_t sd_unicode_utf8_decode(const char *str, size_t len, uint32_t *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) { out[n++] = c; i++; continue; }
        int need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else { out[n++] = 0xFFFD; i++; continue; }
        size_t j = i + 1;
        bool ok = true;
        for (int k = 0; k < need; k++, j++) {
            unsigned b = j < len ? s[j] : 0;
            unsigned blo = k == 0 ? lo : 0x80, bhi = k == 0 ? hi : 0xBF;
            if (j >= len || b < blo || b > bhi) { ok = false; break; }
            cp = cp << 6 | (b & 0x3F);
        }
        /* Invalid: one U+FFFD for the maximal valid prefix [i, j). */
        out[n++] = ok ? cp : 0xFFFD;
        i = j;
    }
    return n;
}

int sd_unicode_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | cp >> 6); o[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* CPython's handle_capital_sigma: U+03A3 at i lowers to final sigma when a
 * cased letter precedes it and none follows (skipping case-ignorables). */
static bool final_sigma(const uint32_t *in, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && (sd_unicode_class(in[j - 1]) & SD_UC_CASE_IGN)) j--;
    if (j == 0 || !(sd_unicode_class(in[j - 1]) & SD_UC_CASED)) return false;
    for (j = i + 1; j < n && (sd_unicode_class(in[j]) & SD_UC_CASE_IGN); j++) {}
    return j == n || !(sd_unicode_class(in[j]) & SD_UC_CASED);
}

size_t sd_unicode_lower(const uint32_t *in, size_t n, uint32_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 0x80) { out[m++] = c >= 'A' && c <= 'Z' ? c + 32 : c; continue; }
        if (c == 0x3A3) { out[m++] = final_sigma(in, n, i) ? 0x3C2 : 0x3C3; continue; }
        long r = row_find(sd_uc_lower, NELEM(sd_uc_lower) / 2, 2, c);
        if (r >= 0) { out[m++] = sd_uc_lower[r * 2 + 1]; continue; }
        r = row_find(sd_uc_lower_multi, NELEM(sd_uc_lower_multi) / 4, 4, c);
        if (r >= 0) {
            for (int k = 1; k < 4 && sd_uc_lower_multi[r * 4 + k]; k++) out[m++] = sd_uc_lower_multi[r * 4 + k];
            continue;
        }
        out[m++] = c;
    }
    return m;
}

/* Appends the full canonical decomposition of c to out; returns the count. */
static size_t decompose(uint32_t c, uint32_t *out) {
    if (c >= S_BASE && c < S_BASE + S_COUNT) {
        uint32_t s = c - S_BASE, t = s % T_COUNT;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (t) { out[2] = T_BASE + t; return 3; }
        return 2;
    }
    long r = c < 0xC0 ? -1 : row_find(sd_uc_decomp, NELEM(sd_uc_decomp) / 3, 3, c);
    if (r < 0) { out[0] = c; return 1; }
    size_t k = decompose(sd_uc_decomp[r * 3 + 1], out);
    if (sd_uc_decomp[r * 3 + 2]) k += decompose(sd_uc_decomp[r * 3 + 2], out + k);
    return k;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    if (b < SD_UC_COMP_MIN_B) return 0;
    size_t lo = 0, hi = NELEM(sd_uc_comp) / 3;
    uint64_t key = (uint64_t)a << 32 | b;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint64_t k = (uint64_t)sd_uc_comp[mid * 3] << 32 | sd_uc_comp[mid * 3 + 1];
        if (k == key) return sd_uc_comp[mid * 3 + 2];
        if (k < key) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

size_t sd_unicode_nfc(const uint32_t *in, size_t n, uint32_t *out) {
    /* Nothing below U+00C0 decomposes, combines or composes. */
    size_t m = 0;
    while (m < n && in[m] < 0xC0) m++;
    if (m == n) {
        for (size_t i = 0; i < n; i++) out[i] = in[i];
        return n;
    }
    /* 1. Decompose. */
    m = 0;
    for (size_t i = 0; i < n; i++) m += decompose(in[i], out + m);
    /* 2. Canonical ordering: insertion sort inside runs of non-starters. */
    for (size_t i = 1; i < m; i++) {
        unsigned ci = ccc_of(out[i]);
        if (ci == 0) continue;
        uint32_t c = out[i];
        size_t j = i;
        while (j > 0 && ccc_of(out[j - 1]) > ci) { out[j] = out[j - 1]; j--; }
        out[j] = c;
    }
    /* 3. Compose (UAX #15 reference algorithm). last_class is the class of
     * the last character kept since the starter (0: none or all composed);
     * 256 while the text opens with non-starters, which compose with nothing. */
    if (m == 0) return 0;
    size_t starter = 0, w = 1;
    unsigned last_class = ccc_of(out[0]) ? 256 : 0;
    for (size_t i = 1; i < m; i++) {
        uint32_t c = out[i];
        unsigned cc = ccc_of(c);
        uint32_t comp = last_class < cc || last_class == 0 ? compose(out[starter], c) : 0;
        if (comp) {
            out[starter] = comp;
            continue;
        }
        if (cc == 0) starter = w;
        last_class = cc;
        out[w++] = c;
    }
    return w;
}

const char *sd_unicode_version(void) { return SD_UC_UNIDATA_VERSION; }
