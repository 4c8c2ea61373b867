/* test_json.c - strict JSON reading (host/io/json.c on jansson): values,
 * escapes, surrogates, errors with byte offsets, the nesting limit,
 * duplicates, NUL bytes, integers beyond int64, big documents. */
#include "json.h"
#include "test.h"

static struct sd_ctx ctx;

static struct sd_json *parse(const char *s) {
    struct sd_json *j = NULL;
    sd_ctx_clear(&ctx);
    if (sd_json_parse(&ctx, s, strlen(s), &j) != SD_OK) return NULL;
    return j;
}

/* True when parsing s fails with a message containing `want`. */
static int parse_fails(const char *s, size_t len, const char *want) {
    struct sd_json *j = (struct sd_json *)1;
    sd_ctx_clear(&ctx);
    int rc = sd_json_parse(&ctx, s, len, &j);
    if (rc == SD_OK) {
        printf("  parsed unexpectedly: %.60s\n", s);
        sd_json_free(j);
        return 0;
    }
    if (j != NULL || rc != SD_ERR_FORMAT || !strstr(ctx.msg, want)) {
        printf("  rc %d, msg \"%s\", wanted \"%s\"\n", rc, ctx.msg, want);
        return 0;
    }
    return 1;
}

static int fails(const char *s, const char *want) { return parse_fails(s, strlen(s), want); }

static void test_values(void) {
    struct sd_json *j = parse(" {\"z\": 1, \"a\": [true, false, null, \"s\", -2.5e1, {}], \"m\": {\"x\": 0.18215}} ");
    CHECK(j && sd_json_type(j) == SD_JSON_OBJ && sd_json_len(j) == 3, "object with 3 members (%s)", ctx.msg);
    if (!j) return;
    char order[8] = "";
    for (struct sd_json_member m = {0}; sd_json_next(j, &m);)
        if (m.klen == 1 && strlen(order) < 7 && sd_json_get(j, m.key) == m.value) strncat(order, m.key, 1);
    CHECK(strcmp(order, "zam") == 0 && sd_json_at(j, 0) == NULL, "object keeps key order (%s)", order);
    const struct sd_json *a = sd_json_get(j, "a");
    CHECK(sd_json_len(a) == 6 && sd_json_bool(sd_json_at(a, 0), -1) == 1 && sd_json_bool(sd_json_at(a, 1), -1) == 0 &&
              sd_json_type(sd_json_at(a, 2)) == SD_JSON_NULL && strcmp(sd_json_str(sd_json_at(a, 3)), "s") == 0 &&
              sd_json_num(sd_json_at(a, 4), 0) == -25.0 && sd_json_type(sd_json_at(a, 5)) == SD_JSON_OBJ &&
              sd_json_len(sd_json_at(a, 5)) == 0, "array of mixed values");
    CHECK(sd_json_num(sd_json_get(sd_json_get(j, "m"), "x"), 0) == 0.18215, "nested lookup of a float");
    CHECK(sd_json_get(j, "nope") == NULL && sd_json_at(a, 6) == NULL && sd_json_get(a, "z") == NULL &&
              sd_json_str(sd_json_get(NULL, "x")) == NULL && sd_json_int(NULL, 7) == 7 && sd_json_len(NULL) == 0,
          "missing keys, out-of-range and NULL are safe");
    CHECK(sd_json_int(sd_json_get(j, "z"), -1) == 1 && sd_json_str(sd_json_get(j, "z")) == NULL &&
              sd_json_bool(sd_json_get(j, "z"), 5) == 5, "typed accessors return defaults on type mismatch");
    sd_json_free(j);
    sd_json_free(NULL);
    j = parse("\xef\xbb\xbf 42 ");
    CHECK(j && sd_json_type(j) == SD_JSON_NUM && sd_json_is_int(j) && sd_json_int(j, 0) == 42,
          "top-level scalar after a BOM");
    sd_json_free(j);
    j = parse("{\"a\": 1, \"b\": [2]}");
    struct sd_json_member m = {0};
    CHECK(j && sd_json_next(j, &m) && sd_json_next(j, &m) && !sd_json_next(j, &m) && !m.key &&
              !sd_json_next(sd_json_get(j, "b"), &(struct sd_json_member){0}) && !sd_json_next(NULL, &m),
          "member walk ends; arrays and NULL have no members");
    sd_json_free(j);
}

static void test_numbers(void) {
    struct sd_json *j = parse("[0, -0, 123, -9223372036854775808, 9223372036854775807, 1e400, "
                              "1.5, 1e3, 64.0, 1E-2, 2.5, 1.2345678901234567890123e22, 9007199254740993]");
    CHECK(!j && strstr(ctx.msg, "json: real number overflow near '1e400' at byte 56"), "1e400 rejected (%s)",
          ctx.msg);
    j = parse("[0, -0, 123, -9223372036854775808, 9223372036854775807, 9.2233720368547758e18, "
              "1.5, 1e3, 64.0, 1E-2, 2.5, 1.2345678901234567890123e22, 9007199254740993]");
    CHECK(j && sd_json_len(j) == 13, "number array parses (%s)", ctx.msg);
    if (!j) return;
    const struct sd_json *v[13];
    for (size_t k = 0; k < 13; k++) v[k] = sd_json_at(j, k);
    CHECK(sd_json_is_int(v[0]) && sd_json_int(v[0], -1) == 0 && sd_json_is_int(v[1]) && sd_json_int(v[1], -1) == 0 &&
              sd_json_num(v[1], -1) == 0.0, "0 and -0 (the integer 0)");
    CHECK(sd_json_is_int(v[2]) && sd_json_int(v[2], -1) == 123 && sd_json_num(v[2], 0) == 123.0, "123");
    CHECK(sd_json_is_int(v[3]) && sd_json_int(v[3], 0) == INT64_MIN && sd_json_is_int(v[4]) &&
              sd_json_int(v[4], 0) == INT64_MAX, "int64 limits exact");
    CHECK(!sd_json_is_int(v[5]) && sd_json_num(v[5], 0) == 9223372036854775808.0 && sd_json_int(v[5], -1) == -1,
          "2^63 written as a real is a double, not an integer");
    CHECK(!sd_json_is_int(v[6]) && sd_json_num(v[6], 0) == 1.5 && sd_json_int(v[6], -1) == -1, "1.5 is not integral");
    CHECK(!sd_json_is_int(v[7]) && sd_json_int(v[7], -1) == 1000 && sd_json_int(v[8], -1) == 64,
          "1e3 and 64.0 read as integers by sd_json_int");
    CHECK(sd_json_num(v[9], 0) == 0.01 && sd_json_int(v[10], -1) == -1, "1E-2, 2.5");
    CHECK(!sd_json_is_int(v[11]) && sd_json_num(v[11], 0) == 12345678901234567890123.0, "huge real");
    CHECK(sd_json_is_int(v[12]) && sd_json_int(v[12], 0) == 9007199254740993LL, "integer above 2^53 kept exact");
    sd_json_free(j);
    /* Integer literals beyond int64 are errors, never rounded (safetensors
     * offsets must be exact). */
    CHECK(fails("[9223372036854775808]", "json: too big integer near '9223372036854775808' at byte 1"),
          "2^63 as an integer literal rejected");
    CHECK(fails("[-9223372036854775809]", "too big negative integer near '-9223372036854775809' at byte 1"),
          "-2^63-1 rejected");
    CHECK(fails("{\"n\": 12345678901234567890123}", "too big integer at byte 29"), "huge integer literal rejected");
    CHECK(fails("01", "json: invalid token near '0' at byte 0"), "leading zero rejected");
    CHECK(fails("[1.]", "invalid token near '1.' at byte 1"), "'1.' rejected");
    CHECK(fails("[-]", "invalid token near '-' at byte 1"), "'-' rejected");
    CHECK(fails("[.5]", "invalid token near '.' at byte 1"), "'.5' rejected");
    CHECK(fails("[1e]", "invalid token near '1e' at byte 1"), "'1e' rejected");
    CHECK(fails("[+1]", "invalid token near '+' at byte 1"), "'+1' rejected");
    CHECK(fails("[NaN]", "invalid token near 'NaN' at byte 1"), "NaN rejected");
    CHECK(fails("[Infinity]", "invalid token near 'Infinity' at byte 1"), "Infinity rejected");
}

static void test_strings(void) {
    struct sd_json *j = parse("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\", "
                              "\"x\\u0000y\", \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\", \"</w>\"]");
    CHECK(j && sd_json_len(j) == 6, "string array parses (%s)", ctx.msg);
    if (!j) return;
    const char *v[6];
    for (size_t k = 0; k < 6; k++) v[k] = sd_json_str(sd_json_at(j, k));
    CHECK(strcmp(v[0], "a\"b\\c/d\b\f\n\r\t") == 0 && sd_json_slen(sd_json_at(j, 0)) == 12, "simple escapes");
    CHECK(strcmp(v[1], "\xc3\xa9\xe2\x82\xac") == 0, "\\u escapes to 2- and 3-byte UTF-8");
    CHECK(strcmp(v[2], "\xf0\x9f\x98\x80") == 0 && sd_json_slen(sd_json_at(j, 2)) == 4, "surrogate pair to 4-byte UTF-8");
    CHECK(sd_json_slen(sd_json_at(j, 3)) == 3 && memcmp(v[3], "x\0y", 4) == 0, "\\u0000 kept, length says 3");
    CHECK(strcmp(v[4], "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 0, "raw UTF-8 copied");
    CHECK(strcmp(v[5], "</w>") == 0 && sd_json_slen(NULL) == 0, "plain string");
    sd_json_free(j);
    CHECK(fails("[\"\\ud83d\"]", "invalid Unicode '\\uD83D' near '\"\\ud83d\"' at byte 2"), "lone high surrogate rejected");
    CHECK(fails("[\"\\ud83d\\u0041\"]", "invalid Unicode '\\uD83D\\u0041' near '\"\\ud83d\\u0041\"' at byte 2"), "high surrogate + non-low rejected");
    CHECK(fails("[\"\\ude00\"]", "invalid Unicode '\\uDE00' near '\"\\ude00\"' at byte 2"), "lone low surrogate rejected");
    CHECK(fails("[\"\\u12G4\"]", "invalid escape near '\"\\u12G' at byte 2"), "bad hex rejected");
    CHECK(fails("[\"\\u12\"]", "invalid escape near '\"\\u12\"' at byte 2"), "short \\u rejected");
    CHECK(fails("[\"\\x\"]", "invalid escape near '\"\\x' at byte 2"), "unknown escape rejected");
    CHECK(fails("[\"a\nb\"]", "unexpected newline in string at byte 3"), "raw newline rejected");
    CHECK(fails("[\"abc", "premature end of input near '\"abc' at byte 1 (end of input)"), "unterminated string");
    CHECK(fails("[\"abc\\", "invalid escape near '\"abc\\' at byte 5"), "unterminated string after backslash");
    CHECK(fails("[\"\xc0\x80\"]", "invalid UTF-8 (unable to decode byte 0xc0) at byte 2"), "overlong UTF-8 rejected");
    CHECK(fails("[\"\xed\xa0\x80\"]", "invalid UTF-8 (unable to decode byte 0xed) at byte 2"), "UTF-8-encoded surrogate rejected");
    CHECK(fails("[\"\xf4\x90\x80\x80\"]", "invalid UTF-8 (unable to decode byte 0xf4) at byte 2"), "code point above U+10FFFF rejected");
    CHECK(fails("[\"\xe2\x82\"]", "invalid UTF-8 (unable to decode byte 0xe2) at byte 2"), "truncated UTF-8 sequence rejected");
    char *q = sd_json_quote("a\"\\\n\x01\xc3\xa9", 7);
    struct sd_json *r = q ? parse(q) : NULL;
    CHECK(r && sd_json_type(r) == SD_JSON_STR && sd_json_slen(r) == 7 && memcmp(sd_json_str(r), "a\"\\\n\x01\xc3\xa9", 7) == 0,
          "sd_json_quote round-trips (%s)", q ? q : "NULL");
    sd_json_free(r);
    free(q);
}

static void test_errors(void) {
    CHECK(fails("{\"a\": 1 \"b\": 2}", "json: '}' expected near '\"b\"' at byte 8"), "missing comma in object");
    CHECK(fails("[1 2]", "json: ']' expected near '2' at byte 3"), "missing comma in array");
    CHECK(fails("[1,2,]", "json: unexpected token near ']' at byte 5"), "trailing comma in array");
    CHECK(fails("{\"a\":1,}", "json: string or '}' expected near '}' at byte 7"), "trailing comma in object");
    CHECK(fails("{\"a\" 1}", "json: ':' expected near '1' at byte 5"), "missing colon");
    CHECK(fails("{a:1}", "json: string or '}' expected near 'a' at byte 1"), "unquoted key");
    CHECK(fails("", "json: unexpected token at byte 0 (end of input)"), "empty input");
    CHECK(fails("   ", "json: unexpected token at byte 3 (end of input)"), "whitespace only");
    CHECK(fails("{} x", "json: end of file expected near 'x' at byte 3"), "trailing data");
    CHECK(fails("[tru]", "json: invalid token near 'tru' at byte 1"), "bad literal");
    CHECK(fails("[1, // c\n 2]", "json: invalid token near '/' at byte 4"), "comments rejected");
    CHECK(fails("[\x01]", "json: invalid token near '\\x01' at byte 1"), "control byte rejected");
    CHECK(fails("{\"k\": 1, \"k\": 2}", "json: duplicate key \"k\" in object at byte 9"), "duplicate key (small object)");
    CHECK(parse_fails("[1]\0", 4, "json: NUL byte at byte 3"), "embedded NUL after value");
    /* A big object: duplicates found through the hash index. */
    char big[4096];
    size_t o = (size_t)sprintf(big, "{");
    for (int k = 0; k < 100; k++) o += (size_t)sprintf(big + o, "\"k%d\": %d,", k, k);
    sprintf(big + o, "\"k57\": 0}");
    CHECK(fails(big, "json: duplicate key \"k57\" in object at byte 981"), "duplicate key (indexed object)");
    /* Every proper prefix of a valid document is an error, never a crash. */
    const char *doc = "{\"a\": [1, 2.5e-3, \"x\\u00e9\\ud83d\\ude00\", true, null], \"b\": {\"c\": false}}";
    int bad = 0;
    for (size_t n = 0; n < strlen(doc); n++) {
        struct sd_json *j = NULL;
        char *copy = malloc(n + 1); /* exact-size copy so ASan sees any overread */
        memcpy(copy, doc, n);
        if (sd_json_parse(&ctx, copy, n, &j) == SD_OK || j) bad++;
        sd_json_free(j);
        free(copy);
    }
    CHECK(bad == 0, "all %zu truncations of a document fail cleanly", strlen(doc));
}

static void test_nesting(void) {
    char s[2 * (SD_JSON_MAX_DEPTH + 1) + 1];
    int d = SD_JSON_MAX_DEPTH;
    for (int k = 0; k < d; k++) s[k] = '[', s[2 * d - 1 - k] = ']';
    s[2 * d] = 0;
    struct sd_json *j = parse(s);
    int depth = 0;
    for (const struct sd_json *v = j; v && sd_json_type(v) == SD_JSON_ARR; v = sd_json_at(v, 0)) depth++;
    CHECK(j && depth == d, "%d nested arrays parse (depth %d)", d, depth);
    sd_json_free(j);
    d = SD_JSON_MAX_DEPTH + 1;
    for (int k = 0; k < d; k++) s[k] = '[', s[2 * d - 1 - k] = ']';
    s[2 * d] = 0;
    char want[64];
    snprintf(want, sizeof want, "nesting deeper than %d at byte %d", SD_JSON_MAX_DEPTH, SD_JSON_MAX_DEPTH);
    CHECK(fails(s, want), "%d nested arrays rejected", d);
    /* Far deeper input must not recurse without bound. */
    size_t n = 1000000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    CHECK(parse_fails(deep, n, "nesting deeper than"), "a million '[' rejected without stack overflow");
    free(deep);
}

/* A vocab.json-like object (49408 entries, ~1 MB) and a big array. */
static void test_big(void) {
    const int n = 49408;
    char *s = malloc((size_t)n * 40 + 16);
    size_t o = 0;
    s[o++] = '{';
    for (int k = 0; k < n; k++)
        o += (size_t)sprintf(s + o, "%s\"tok%d\\u00e9</w>\": %d", k ? ", " : "", k * 7919 % n, k);
    s[o++] = '}';
    struct sd_json *j = NULL;
    double t0 = sd_time_s();
    int rc = sd_json_parse(&ctx, s, o, &j);
    double ms = (sd_time_s() - t0) * 1e3;
    CHECK(rc == SD_OK && sd_json_len(j) == (size_t)n, "vocab-like object: %d members, %.1f KB", n, o / 1024.0);
    int bad = 0;
    char key[64];
    for (int k = 0; k < n && j; k++) {
        snprintf(key, sizeof key, "tok%d\xc3\xa9</w>", k * 7919 % n);
        if (sd_json_int(sd_json_get(j, key), -1) != k) bad++;
    }
    int64_t i = 0;
    for (struct sd_json_member mb = {0}; sd_json_next(j, &mb); i++)
        if (sd_json_int(mb.value, -1) != i) bad++;
    if (i != n) bad++;
    CHECK(j && bad == 0 && !sd_json_get(j, "tok49408\xc3\xa9</w>"), "every vocab key found by hash lookup");
    /* jansson (~50 ms here unloaded) is slower than the hand-written parser it
     * replaced (~11 ms); the bound catches a quadratic regression. */
    double limit = getenv("SDRT_TEST_SAN") ? 3000.0 : 400.0;
    CHECK(ms < limit, "vocab-like parse in %.1f ms (limit %.0f ms)", ms, limit);
    sd_json_free(j);

    const int m = 200000;
    o = 0;
    s = realloc(s, (size_t)m * 12 + 16);
    s[o++] = '[';
    for (int k = 0; k < m; k++) o += (size_t)sprintf(s + o, "%s%d", k ? "," : "", k - 1000);
    s[o++] = ']';
    rc = sd_json_parse(&ctx, s, o, &j);
    double sum = 0;
    for (size_t k = 0; k < sd_json_len(j); k++) sum += sd_json_num(sd_json_at(j, k), 0);
    double want = (double)m * (m - 1) / 2 - 1000.0 * m;
    CHECK(rc == SD_OK && sd_json_len(j) == (size_t)m && sum == want, "array of %d numbers, sum %.0f", m, sum);
    sd_json_free(j);
    free(s);
}

int main(void) {
    test_values();
    test_numbers();
    test_strings();
    test_errors();
    test_nesting();
    test_big();
    return test_summary();
}
