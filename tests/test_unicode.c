/* test_unicode.c - UTF-8 decoding, NFC, str.lower() and classes against
 * values printed by CPython 3.11 (bytes.decode("utf-8", "replace"),
 * unicodedata.normalize("NFC"), str.lower(), unicodedata.category). The
 * tokenizer goldens exercise the same code on whole prompts. */
#include "test.h"
#include "unicode.h"

#define N(...) (sizeof((uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t))
#define CP(...) (const uint32_t[]){__VA_ARGS__}, N(__VA_ARGS__)

static int same(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    return na == nb && memcmp(a, b, na * sizeof *a) == 0;
}

static void test_utf8(void) {
    static const struct { const char *s; uint32_t want[5]; size_t n; } v[] = {
        {"\xe2\x82 ", {0xFFFD, 0x20}, 2},                         /* truncated: one U+FFFD */
        {"\xc0\xaf", {0xFFFD, 0xFFFD}, 2},                        /* overlong lead */
        {"\xed\xa0\x80", {0xFFFD, 0xFFFD, 0xFFFD}, 3},            /* surrogate */
        {"\x80\x80", {0xFFFD, 0xFFFD}, 2},                        /* lone continuations */
        {"\xf4\x90\x80\x80", {0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD}, 4}, /* above U+10FFFF */
        {"\xf0\x9f\x98", {0xFFFD}, 1},
        {"a\xff", {0x61, 0xFFFD}, 2},
        {"\xf0\x9f\x98\x80", {0x1F600}, 1},
        {"\xe0\x80\x80", {0xFFFD, 0xFFFD, 0xFFFD}, 3},
        {"\xc3\xa9", {0xE9}, 1},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        uint32_t out[16];
        size_t n = sd_unicode_utf8_decode(v[i].s, strlen(v[i].s), out);
        if (!same(out, n, v[i].want, v[i].n)) { bad++; printf("  utf8 case %zu: got %zu code points\n", i, n); }
    }
    CHECK(bad == 0, "utf8 decode: %zu cases incl. malformed input match bytes.decode(\"utf-8\", \"replace\")",
          sizeof v / sizeof *v);
    char buf[4];
    CHECK(sd_unicode_utf8_encode(0x1F600, buf) == 4 && !memcmp(buf, "\xf0\x9f\x98\x80", 4) &&
              sd_unicode_utf8_encode(0xE9, buf) == 2 && sd_unicode_utf8_encode('a', buf) == 1,
          "utf8 encode");
}

static void check_map(const char *what, size_t (*fn)(const uint32_t *, size_t, uint32_t *), const uint32_t *in,
                      size_t n, const uint32_t *want, size_t nw, int *bad) {
    uint32_t out[64];
    size_t m = fn(in, n, out);
    if (same(out, m, want, nw)) return;
    (*bad)++;
    printf("  %s of U+%04X...: got", what, in[0]);
    for (size_t i = 0; i < m; i++) printf(" %04X", out[i]);
    printf("\n");
}

static void test_nfc(void) {
    int bad = 0;
    check_map("nfc", sd_unicode_nfc, CP(0x65, 0x301), CP(0xE9), &bad);
    check_map("nfc", sd_unicode_nfc, CP(0x1100, 0x1161, 0x11A8), CP(0xAC01), &bad);  /* Hangul LVT */
    check_map("nfc", sd_unicode_nfc, CP(0x61, 0x323, 0x302), CP(0x1EAD), &bad);       /* two marks */
    check_map("nfc", sd_unicode_nfc, CP(0x212B), CP(0xC5), &bad);                     /* singleton */
    check_map("nfc", sd_unicode_nfc, CP(0x344), CP(0x308, 0x301), &bad);              /* excluded */
    check_map("nfc", sd_unicode_nfc, CP(0x71, 0x307, 0x323), CP(0x71, 0x323, 0x307), &bad); /* reorder */
    check_map("nfc", sd_unicode_nfc, CP(0x301, 0x61), CP(0x301, 0x61), &bad);         /* leading mark */
    check_map("nfc", sd_unicode_nfc, CP(0xB47, 0xB3E), CP(0xB4B), &bad);              /* starter + starter */
    check_map("nfc", sd_unicode_nfc, CP(0x1E0B, 0x323), CP(0x1E0D, 0x307), &bad);     /* recompose */
    check_map("nfc", sd_unicode_nfc, CP(0x41, 0x42), CP(0x41, 0x42), &bad);
    CHECK(bad == 0, "NFC: 10 cases match unicodedata.normalize (Unicode %s)", sd_unicode_version());
}

static void test_lower(void) {
    int bad = 0;
    check_map("lower", sd_unicode_lower, CP(0x391, 0x3A3), CP(0x3B1, 0x3C2), &bad);  /* final sigma */
    check_map("lower", sd_unicode_lower, CP(0x3A3), CP(0x3C3), &bad);
    check_map("lower", sd_unicode_lower, CP(0x391, 0x3A3, 0x2E), CP(0x3B1, 0x3C2, 0x2E), &bad);
    check_map("lower", sd_unicode_lower, CP(0x391, 0x3A3, 0x27, 0x391), CP(0x3B1, 0x3C3, 0x27, 0x3B1), &bad);
    check_map("lower", sd_unicode_lower, CP(0x130), CP(0x69, 0x307), &bad);         /* one to two */
    check_map("lower", sd_unicode_lower, CP(0x1C5), CP(0x1C6), &bad);               /* titlecase */
    check_map("lower", sd_unicode_lower, CP(0x1E9E), CP(0xDF), &bad);
    check_map("lower", sd_unicode_lower, CP(0x41, 0x345, 0x3A3), CP(0x61, 0x345, 0x3C2), &bad);
    CHECK(bad == 0, "str.lower(): 8 cases incl. final sigma and U+0130 match CPython");
}

static void test_classes(void) {
    CHECK((sd_unicode_class('a') & SD_UC_LETTER) && (sd_unicode_class(0x4E2D) & SD_UC_LETTER) &&
              (sd_unicode_class('7') & SD_UC_NUMBER) && (sd_unicode_class(0xBD) & SD_UC_NUMBER) &&
              (sd_unicode_class(0x200D) & SD_UC_OTHER) && (sd_unicode_class(0x378) & SD_UC_OTHER) &&
              (sd_unicode_class(0xE000) & SD_UC_OTHER) && (sd_unicode_class(0x3000) & SD_UC_ZS) &&
              (sd_unicode_class(0x2028) & SD_UC_SPACE) && !(sd_unicode_class(0x2028) & SD_UC_ZS) &&
              (sd_unicode_class('\t') & SD_UC_SPACE) && !(sd_unicode_class('!') & 0x1F) &&
              sd_unicode_class(0x110000) == 0,
          "classes: L, N, C (Cf, Cn, Co), Zs, isspace");
}

int main(void) {
    test_utf8();
    test_nfc();
    test_lower();
    test_classes();
    return test_summary();
}
