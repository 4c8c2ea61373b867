/* test_tokenizer.c - the CLIP tokenizer against transformers' CLIPTokenizer.
 *
 * Needs the vocabulary from `make vocab` (build/vocab/bpe_simple_vocab_16e6.txt.gz,
 * or $SDRT_VOCAB) and tests/golden/tokenizer_ids.txt (tests/reference/
 * gen_tokenizer_goldens.py). Checks: the §1.5 vectors, every golden prompt
 * (SD1 and SD2 77-id inputs, raw ids of long prompts, normalised text), the
 * diffusers vocab.json/merges.txt path against the .gz path (files derived
 * here, written to a temporary folder), error cases, and load/encode speed.
 */
#include "json.h"
#include "test.h"
#include "tokenizer.h"
#include "unicode.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define GOLDEN "tests/golden/tokenizer_ids.txt"

/* ---- golden file --------------------------------------------------------- */

struct golden {
    char *text;           /* unescaped prompt bytes */
    char *norm;           /* unescaped normalised text, or NULL */
    int sd1[SD_TOKENIZER_CTX], sd2[SD_TOKENIZER_CTX];
    int has_sd1, has_sd2;
    int *raw, n_raw;      /* all ids, for long prompts */
};

static char *unescape(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && s[i + 1] == 'x' && i + 3 < n + 1) {
            unsigned v = 0;
            sscanf(s + i + 2, "%2x", &v);
            *w++ = (char)v;
            i += 3;
        } else *w++ = s[i];
    }
    *w = 0;
    return o;
}

/* Parses "v v v*k ..." into ids (room for max); returns the count or -1. */
static int parse_ids(const char *s, int *ids, int max) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) return -1;
        long k = 1;
        if (*end == '*') k = strtol(end + 1, &end, 10);
        for (long j = 0; j < k; j++) {
            if (n >= max) return -1;
            ids[n++] = (int)v;
        }
        s = end;
        while (*s == ' ') s++;
    }
    return n;
}

static int load_goldens(struct golden **out) {
    FILE *f = fopen(GOLDEN, "rb");
    if (!f) return -1;
    static char line[1 << 16];
    struct golden *g = NULL;
    int n = 0, cap = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\n') line[--l] = 0;
        if (!l || line[0] == '#') continue;
        if (l < 2 || line[1] != ' ') { bad++; continue; }
        const char *v = line + 2;
        if (line[0] == 'T') {
            if (n == cap) g = realloc(g, (size_t)(cap = cap ? cap * 2 : 256) * sizeof *g);
            memset(&g[n], 0, sizeof g[n]);
            g[n++].text = unescape(v);
            continue;
        }
        if (!n) { bad++; continue; }
        struct golden *c = &g[n - 1];
        if (line[0] == 'N') c->norm = unescape(v);
        else if (line[0] == '1') c->has_sd1 = parse_ids(v, c->sd1, SD_TOKENIZER_CTX) == SD_TOKENIZER_CTX;
        else if (line[0] == '2') c->has_sd2 = parse_ids(v, c->sd2, SD_TOKENIZER_CTX) == SD_TOKENIZER_CTX;
        else if (line[0] == 'R') {
            c->raw = malloc(sizeof(int) * 8192);
            c->n_raw = parse_ids(v, c->raw, 8192);
            if (c->n_raw < 0) bad++;
        } else bad++;
    }
    fclose(f);
    for (int i = 0; i < n; i++) bad += !g[i].has_sd1;
    *out = g;
    return bad ? -2 : n;
}

static void free_goldens(struct golden *g, int n) {
    for (int i = 0; i < n; i++) free(g[i].text), free(g[i].norm), free(g[i].raw);
    free(g);
}

static void print_ids(const char *what, const int *ids, int n) {
    printf("    %s:", what);
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* Prints the prompt with non-printable bytes escaped. */
static void print_prompt(const char *s) {
    printf("    prompt: \"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7F || *p == '\\') printf("\\x%02x", *p);
        else putchar(*p);
    printf("\"\n");
}

/* ---- checks -------------------------------------------------------------- */

static void test_vectors(struct sd_tokenizer *tok) {
    static const struct { const char *text; int ids[12]; int n; } v[] = {
        {"a photo of a cat", {49406, 320, 1125, 539, 320, 2368, 49407}, 7},
        {"A photograph of an astronaut riding a horse", {49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407}, 10},
        {"hello, world! 123 don't", {49406, 3306, 267, 1002, 256, 272, 273, 274, 847, 713, 49407}, 11},
        {"(masterpiece:1.2), best quality", {49406, 263, 12066, 281, 272, 269, 273, 2361, 949, 3027, 49407}, 11},
        {"", {49406, 49407}, 2},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        int ids[SD_TOKENIZER_CTX], n = -1;
        int rc = sd_tokenizer_encode_clip(tok, v[i].text, ids, &n);
        int ok = rc == SD_OK && n == v[i].n - 2 && memcmp(ids, v[i].ids, sizeof(int) * (size_t)v[i].n) == 0;
        for (int j = v[i].n; j < SD_TOKENIZER_CTX; j++) ok &= ids[j] == 49407;
        CHECK(ok, "sd-reference 1.5 vector \"%s\" (%d content tokens)", v[i].text, n);
        if (!ok) print_ids("got", ids, v[i].n + 1);
    }
    int sd2[SD_TOKENIZER_CTX], sd1[SD_TOKENIZER_CTX];
    int rc = sd_tokenizer_set_family(tok, SD_TOKENIZER_SD2);
    sd_tokenizer_encode_clip(tok, "a photo of a cat", sd2, NULL);
    CHECK(rc == SD_OK && tok->pad_id == 0 && sd2[6] == 49407 && sd2[7] == 0 && sd2[76] == 0, "SD2 pads with 0 after EOS");
    sd_tokenizer_encode_clip(tok, "hi!", sd2, NULL);
    sd_tokenizer_set_family(tok, SD_TOKENIZER_SD1);
    sd_tokenizer_encode_clip(tok, "hi!", sd1, NULL);
    CHECK(sd2[1] == 1883 && sd2[2] == 0 && sd2[3] == 49407 && sd1[2] == 256 && sd1[3] == 49407 && sd1[4] == 49407,
          "\"!\" is an added token (id 0) for SD2 only: SD2 %d %d %d, SD1 %d %d %d", sd2[1], sd2[2], sd2[3], sd1[1],
          sd1[2], sd1[3]);
    struct sd_ctx *ctx = tok->ctx;
    CHECK(sd_tokenizer_set_family(tok, (enum sd_tokenizer_family)7) == SD_ERR_INVALID &&
              sd_tokenizer_set_pad(tok, "<pad>") == SD_ERR_UNSUPPORTED && tok->pad_id == 49407,
          "bad family / pad token rejected, setting kept: %s", ctx->msg);
    CHECK(tok->n_vocab == 49408 && tok->bos_id == 49406 && tok->eos_id == 49407 &&
              !strcmp(sd_tokenizer_token(tok, 267), ",</w>") && !strcmp(sd_tokenizer_token(tok, 0), "!") &&
              !strcmp(sd_tokenizer_token(tok, 320), "a</w>") && !strcmp(sd_tokenizer_token(tok, 256), "!</w>") &&
              sd_tokenizer_token(tok, 49408) == NULL && sd_tokenizer_token(tok, -1) == NULL,
          "vocabulary layout: 49408 ids, 267 = \",</w>\", 0 = \"!\", 320 = \"a</w>\", specials 49406/49407");
}

static void test_goldens(struct sd_tokenizer *tok, struct golden *g, int n) {
    int ok1 = 0, ok2 = 0, n2 = 0, okr = 0, nr = 0, okn = 0, nn = 0, shown = 0;
    static int raw[8192];
    for (int i = 0; i < n; i++) {
        int ids[SD_TOKENIZER_CTX], cnt;
        int rc = sd_tokenizer_encode_clip(tok, g[i].text, ids, &cnt);
        if (rc == SD_OK && !memcmp(ids, g[i].sd1, sizeof ids)) ok1++;
        else if (shown++ < 8) {
            printf("  golden %d: SD1 ids differ (rc %d %s)\n", i, rc, tok->ctx->msg);
            print_prompt(g[i].text);
            print_ids("expected", g[i].sd1, SD_TOKENIZER_CTX);
            print_ids("got     ", ids, SD_TOKENIZER_CTX);
        }
        if (g[i].has_sd2) {
            n2++;
            sd_tokenizer_set_family(tok, SD_TOKENIZER_SD2);
            rc = sd_tokenizer_encode_clip(tok, g[i].text, ids, NULL);
            sd_tokenizer_set_family(tok, SD_TOKENIZER_SD1);
            if (rc == SD_OK && !memcmp(ids, g[i].sd2, sizeof ids)) ok2++;
            else if (shown++ < 8) { print_prompt(g[i].text); print_ids("SD2 got", ids, SD_TOKENIZER_CTX); }
        }
        if (g[i].raw) {
            nr++;
            int m = -1;
            rc = sd_tokenizer_encode(tok, g[i].text, raw, 8192, &m);
            if (rc == SD_OK && m == g[i].n_raw && !memcmp(raw, g[i].raw, sizeof(int) * (size_t)m) && cnt == m) okr++;
            else if (shown++ < 8) { print_prompt(g[i].text); printf("    raw: got %d ids, expected %d\n", m, g[i].n_raw); }
        }
        if (g[i].norm) {
            nn++;
            char *s = sd_tokenizer_normalize(tok, g[i].text);
            if (s && !strcmp(s, g[i].norm)) okn++;
            else if (shown++ < 8) { print_prompt(g[i].text); printf("    normalised: got \"%s\" expected \"%s\"\n", s, g[i].norm); }
            free(s);
        }
    }
    CHECK(ok1 == n, "goldens: %d/%d prompts give transformers' SD1 77-id input exactly", ok1, n);
    CHECK(n2 > 100 && ok2 == n2, "goldens: %d/%d prompts give the SD2 (pad and \"!\" = 0) input exactly", ok2, n2);
    CHECK(nr > 10 && okr == nr, "goldens: %d/%d long prompts give all raw ids (untruncated) exactly", okr, nr);
    CHECK(nn > 400 && okn == nn, "goldens: %d/%d normalised texts equal BasicTokenizer's", okn, nn);
}

static void test_encode_api(struct sd_tokenizer *tok) {
    int all[64], few[3], n_all = 0, n_few = 0;
    const char *t = "a photograph of an astronaut riding a horse";
    sd_tokenizer_encode(tok, t, all, 64, &n_all);
    int rc = sd_tokenizer_encode(tok, t, few, 3, &n_few);
    CHECK(rc == SD_OK && n_all == 8 && n_few == 8 && !memcmp(all, few, sizeof few),
          "encode with max < total keeps the first ids and reports the total (%d)", n_few);
    rc = sd_tokenizer_encode(tok, t, NULL, 0, &n_few);
    CHECK(rc == SD_OK && n_few == 8, "encode with max = 0 counts tokens only");
    struct sd_ctx *ctx = tok->ctx;
    sd_ctx_clear(ctx);
    rc = sd_tokenizer_encode(tok, NULL, all, 64, &n_all);
    CHECK(rc == SD_ERR_INVALID && ctx->msg[0], "encode(NULL) is SD_ERR_INVALID: %s", ctx->msg);
    int ids[SD_TOKENIZER_CTX], n = 0;
    char buf[256];
    sd_tokenizer_encode_clip(tok, "A Photo of a CAT, 1.5", ids, &n);
    size_t len = sd_tokenizer_decode(tok, ids, SD_TOKENIZER_CTX, buf, sizeof buf);
    CHECK(!strcmp(buf, "a photo of a cat , 1 . 5") && len == strlen(buf), "decode: \"%s\"", buf);
    char small[5];
    len = sd_tokenizer_decode(tok, ids, SD_TOKENIZER_CTX, small, sizeof small);
    CHECK(len == strlen("a photo of a cat , 1 . 5") && !strcmp(small, "a ph"), "decode truncates like snprintf");
    /* A prompt past 75 tokens: BOS + first 75 + EOS, no padding. */
    char long_text[1024] = "";
    for (int i = 0; i < 100; i++) strcat(long_text, "cat ");
    sd_tokenizer_encode_clip(tok, long_text, ids, &n);
    int ok = n == 100 && ids[0] == 49406 && ids[76] == 49407;
    for (int i = 1; i < 76; i++) ok &= ids[i] == 2368;
    CHECK(ok, "truncation: 100 tokens -> BOS + 75 + EOS (*n_tokens = %d)", n);
    /* Overflow the pre-token cache (it clears itself); the goldens are
     * checked again afterwards (test_diffusers). */
    int first[SD_TOKENIZER_CTX], again[SD_TOKENIZER_CTX];
    sd_tokenizer_encode_clip(tok, "qx1zz quokka zebra", first, NULL);
    for (int i = 0; i < 3000; i++) {
        char w[64] = "qx";
        for (int v = i, k = 2; v; v /= 26) w[k++] = (char)('a' + v % 26), w[k] = 0;  /* distinct letter runs */
        strcat(w, i % 3 ? " quokka zebra" : "");
        sd_tokenizer_encode_clip(tok, w, ids, NULL);
    }
    sd_tokenizer_encode_clip(tok, "qx1zz quokka zebra", again, NULL);
    CHECK(!memcmp(first, again, sizeof first), "3000 distinct pre-tokens through the cache change nothing");
}

/* JSON-quotes s with every non-ASCII code point as \uXXXX (exercises the
 * parser's escapes; the byte-to-unicode symbols are all below U+0144). */
static void write_json_string(FILE *f, const char *s, int escape_all) {
    if (!escape_all) {
        char *q = sd_json_quote(s, strlen(s));
        fputs(q, f);
        free(q);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p < 0x80) {
            if (*p == '"' || *p == '\\') fputc('\\', f);
            fputc(*p++, f);
        } else {
            unsigned cp = (unsigned)(p[0] & 0x1F) << 6 | (p[1] & 0x3F); /* 2-byte only */
            fprintf(f, "\\u%04x", cp);
            p += 2;
        }
    }
    fputc('"', f);
}

/* Writes <dir>/tokenizer/{vocab.json,merges.txt} from tok's own strings:
 * vocab members in reverse id order, half of them \u-escaped; merges from
 * the .gz text plus extra junk lines past the 48894 used (which must be
 * ignored). bad_line > 0 replaces that merges.txt line with one symbol. */
static int write_diffusers(const char *dir, const struct sd_tokenizer *tok, const char *gz_text, int bad_line) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/tokenizer/vocab.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs("{\n", f);
    for (int id = tok->n_vocab - 1; id >= 0; id--) {
        fputs("  ", f);
        write_json_string(f, sd_tokenizer_token(tok, id), id % 2);
        fprintf(f, ": %d%s\n", id, id ? "," : "");
    }
    fputs("}\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/tokenizer/merges.txt", dir);
    f = fopen(path, "wb");
    if (!f) return -1;
    fputs("#version: 0.2\n", f);
    const char *p = strchr(gz_text, '\n') + 1;
    for (int i = 0; i < SD_TOKENIZER_N_MERGES; i++) {
        const char *nl = strchr(p, '\n');
        if (i + 2 == bad_line) fputs("onlyone\n", f);
        else fwrite(p, 1, (size_t)(nl - p + 1), f);
        p = nl + 1;
    }
    fputs("zzzq qqqz\nnot a merge line at all\n\n", f);
    fclose(f);
    return 0;
}

/* The decompressed start of the .gz (header + the merges used). */
static char *read_gz_text(const char *path) {
    gzFile gz = gzopen(path, "rb");
    if (!gz) return NULL;
    size_t cap = 4 << 20;
    char *buf = malloc(cap + 1);
    int n = gzread(gz, buf, (unsigned)cap);
    gzclose(gz);
    if (n <= 0) { free(buf); return NULL; }
    buf[n] = 0;
    return buf;
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(data, 1, n, f);
    return fclose(f);
}

static int write_str(const char *path, const char *s) { return write_bytes(path, s, strlen(s)); }

static void test_diffusers(struct sd_tokenizer *gz_tok, struct golden *g, int ng, const char *dir) {
    struct sd_ctx ctx = {0};
    char *text = read_gz_text(vocab_path());
    if (!text || write_diffusers(dir, gz_tok, text, 0) != 0) {
        test_fail("diffusers: could not write the test folder in %s", dir);
        free(text);
        return;
    }
    double t0 = sd_time_s();
    struct sd_tokenizer *tok = sd_tokenizer_load_diffusers(&ctx, dir);
    double dt = sd_time_s() - t0;
    CHECK(tok != NULL, "diffusers: vocab.json + merges.txt load (%.0f ms) %s", dt * 1e3, ctx.msg);
    if (!tok) { free(text); return; }
    int same = tok->n_vocab == gz_tok->n_vocab && tok->bos_id == gz_tok->bos_id && tok->eos_id == gz_tok->eos_id &&
               tok->n_merges == SD_TOKENIZER_N_MERGES;
    for (int id = 0; same && id < tok->n_vocab; id++)
        same = !strcmp(sd_tokenizer_token(tok, id), sd_tokenizer_token(gz_tok, id));
    for (int b = 0; same && b < 256; b++)
        same = tok->byte_id[b] == gz_tok->byte_id[b] && tok->byte_id_end[b] == gz_tok->byte_id_end[b];
    CHECK(same, "diffusers: same 49408 ids and strings as the .gz, extra merge lines ignored");
    int eq = 0;
    for (int i = 0; i < ng; i++) {
        int a[SD_TOKENIZER_CTX], b[SD_TOKENIZER_CTX];
        sd_tokenizer_encode_clip(tok, g[i].text, a, NULL);
        sd_tokenizer_encode_clip(gz_tok, g[i].text, b, NULL);
        eq += !memcmp(a, b, sizeof a) && !memcmp(a, g[i].sd1, sizeof a);
    }
    CHECK(eq == ng, "diffusers: %d/%d golden prompts encode identically via vocab.json", eq, ng);
    sd_tokenizer_free(tok);

    /* The pad token from the config files: special_tokens_map.json wins over
     * tokenizer_config.json, either a string or an AddedToken object. */
    char cfg_map[512], cfg_tok[512];
    snprintf(cfg_map, sizeof cfg_map, "%s/tokenizer/special_tokens_map.json", dir);
    snprintf(cfg_tok, sizeof cfg_tok, "%s/tokenizer/tokenizer_config.json", dir);
    write_str(cfg_tok, "{\"pad_token\": {\"content\": \"<|endoftext|>\", \"lstrip\": false}, \"do_lower_case\": true}");
    write_str(cfg_map, "{\"bos_token\": \"<|startoftext|>\", \"pad_token\": \"!\"}");
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    int ok2 = 0, n2 = 0;
    for (int i = 0; tok && i < ng; i++) {
        if (!g[i].has_sd2) continue;
        int a[SD_TOKENIZER_CTX];
        n2++;
        ok2 += sd_tokenizer_encode_clip(tok, g[i].text, a, NULL) == SD_OK && !memcmp(a, g[i].sd2, sizeof a);
    }
    CHECK(tok && tok->pad_id == 0 && n2 > 100 && ok2 == n2,
          "diffusers: pad_token \"!\" in special_tokens_map.json -> SD2, %d/%d SD2 goldens", ok2, n2);
    sd_tokenizer_free(tok);
    remove(cfg_map);
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    CHECK(tok && tok->pad_id == 49407 && !tok->pad_split, "diffusers: pad_token object in tokenizer_config.json -> SD1");
    sd_tokenizer_free(tok);
    write_str(cfg_map, "{\"pad_token\": \"<pad>\"}");
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    CHECK(!tok && ctx.status == SD_ERR_UNSUPPORTED && strstr(ctx.msg, "special_tokens_map.json"),
          "diffusers: unknown pad token: %s", ctx.msg);
    write_str(cfg_map, "{\"pad_token\": ");
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT && strstr(ctx.msg, "special_tokens_map.json"),
          "diffusers: malformed special_tokens_map.json: %s", ctx.msg);
    remove(cfg_map);
    remove(cfg_tok);

    /* The tokenizer folder itself works as dir too. */
    char sub[512];
    snprintf(sub, sizeof sub, "%s/tokenizer", dir);
    tok = sd_tokenizer_load_diffusers(&ctx, sub);
    CHECK(tok && tok->n_vocab == 49408, "diffusers: accepts the tokenizer/ folder directly");
    sd_tokenizer_free(tok);

    /* A plain-text (not gzipped) copy of the OpenAI file loads the same. */
    char plain[512];
    snprintf(plain, sizeof plain, "%s/bpe.txt", dir);
    write_bytes(plain, text, strlen(text));
    tok = sd_tokenizer_load_bpe_gz(&ctx, plain);
    int ids[SD_TOKENIZER_CTX];
    if (tok) sd_tokenizer_encode_clip(tok, "a photo of a cat", ids, NULL);
    CHECK(tok && ids[5] == 2368, "a plain-text bpe file loads like the .gz");
    sd_tokenizer_free(tok);
    remove(plain);

    /* Malformed merges.txt: one symbol on file line 1001. */
    write_diffusers(dir, gz_tok, text, 1001);
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT && strstr(ctx.msg, "merges.txt:1001:"),
          "bad merges line -> SD_ERR_FORMAT with its line: %s", ctx.msg);
    sd_tokenizer_free(tok);

    /* A merges.txt symbol missing from vocab.json. */
    snprintf(sub, sizeof sub, "%s/tokenizer/merges.txt", dir);
    write_str(sub, "#version: 0.2\ni n\nt h\nzz\xc4\x8a q\n");
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT && strstr(ctx.msg, "merges.txt:4:") && strstr(ctx.msg, "not in"),
          "unknown merge symbol -> SD_ERR_FORMAT: %s", ctx.msg);
    sd_tokenizer_free(tok);

    /* Broken vocab.json. */
    snprintf(sub, sizeof sub, "%s/tokenizer/vocab.json", dir);
    write_str(sub, "{\"a\": 1,");
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT && strstr(ctx.msg, "vocab.json"), "truncated vocab.json: %s", ctx.msg);
    write_str(sub, "[1, 2]");
    tok = sd_tokenizer_load_diffusers(&ctx, dir);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT, "vocab.json not an object: %s", ctx.msg);
    sd_tokenizer_free(tok);
    remove(sub);
    snprintf(sub, sizeof sub, "%s/tokenizer/merges.txt", dir);
    remove(sub);
    snprintf(sub, sizeof sub, "%s/tokenizer", dir);
    rmdir(sub);
    free(text);
}

static void test_errors(const char *dir) {
    struct sd_ctx ctx = {0};
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(&ctx, "/nonexistent/bpe.txt.gz");
    CHECK(!tok && ctx.status == SD_ERR_IO && strstr(ctx.msg, "/nonexistent/bpe.txt.gz"), "missing .gz: %s", ctx.msg);
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_diffusers(&ctx, "/nonexistent/model");
    CHECK(!tok && ctx.status == SD_ERR_IO && strstr(ctx.msg, "/nonexistent/model/tokenizer/vocab.json"),
          "missing diffusers folder: %s", ctx.msg);
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_files(&ctx, "/nonexistent/vocab.json", "/nonexistent/merges.txt");
    CHECK(!tok && ctx.status == SD_ERR_IO && strstr(ctx.msg, "/nonexistent/vocab.json"), "missing vocab.json: %s", ctx.msg);

    /* Corrupt .gz files made from the real one. */
    FILE *f = fopen(vocab_path(), "rb");
    static unsigned char data[4 << 20];
    size_t n = f ? fread(data, 1, sizeof data, f) : 0;
    if (f) fclose(f);
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gz", dir);
    write_bytes(path, data, 100000); /* truncated before the last merge used */
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_bpe_gz(&ctx, path);
    CHECK(n > 100000 && !tok && ctx.status == SD_ERR_IO && strstr(ctx.msg, path), "truncated .gz: %s", ctx.msg);
    for (int i = 0; i < 64; i++) data[30000 + i * 7] ^= 0x5A;
    write_bytes(path, data, n);
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_bpe_gz(&ctx, path);
    CHECK(!tok && ctx.status != SD_OK && strstr(ctx.msg, path), "corrupted .gz data: %s", ctx.msg);
    write_str(path, "\"bpe#version: 0.2\ni n\nt h\n");
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_bpe_gz(&ctx, path);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT && strstr(ctx.msg, "has 2 merge lines"), "short bpe file: %s", ctx.msg);
    write_str(path, "\"bpe#version: 0.2\ni n\nt h\nth e</w> x\n");
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_bpe_gz(&ctx, path);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT && strstr(ctx.msg, ":4:"), "bad bpe line 4: %s", ctx.msg);
    write_str(path, "\"bpe#version: 0.2\ni n\nt h\nthe </w>\n");
    sd_ctx_clear(&ctx);
    tok = sd_tokenizer_load_bpe_gz(&ctx, path);
    CHECK(!tok && ctx.status == SD_ERR_FORMAT && strstr(ctx.msg, ":4:") && strstr(ctx.msg, "not in"),
          "bpe merge of a symbol not made yet: %s", ctx.msg);
    remove(path);
    sd_tokenizer_free(tok);
    sd_tokenizer_free(NULL); /* a no-op; a crash here fails the binary */
}

static void test_speed(struct sd_tokenizer *tok, double load_s) {
    const char *p = "masterpiece, best quality, a highly detailed oil painting of a majestic castle on a cliff "
                    "above a stormy sea, dramatic lighting, volumetric clouds, by greg rutkowski and thomas kinkade, "
                    "trending on artstation, 8k, sharp focus, intricate details, cinematic composition";
    int ids[SD_TOKENIZER_CTX], n = 0;
    double t0 = sd_time_s();
    sd_tokenizer_encode_clip(tok, p, ids, &n);
    double cold = sd_time_s() - t0;
    int reps = getenv("SDRT_TEST_SAN") ? 20 : 200;
    t0 = sd_time_s();
    for (int i = 0; i < reps; i++) sd_tokenizer_encode_clip(tok, p, ids, &n);
    double warm = (sd_time_s() - t0) / reps;
    int san = getenv("SDRT_TEST_SAN") != NULL;
    CHECK(san || (warm < 1e-3 && load_s < 1.0),
          "speed: load %.1f ms, %d-token prompt %.1f us first time, %.1f us cached", load_s * 1e3, n, cold * 1e6,
          warm * 1e6);
}

/* Threads sharing one tokenizer (as a server's workers do): every prompt of
 * the golden set, encoded by two threads at once in opposite orders, gives
 * the golden ids each time (the pre-token cache and scratch buffers are
 * shared state). */
struct shared_run { struct sd_tokenizer *tok; const struct golden *g; int ng, reverse, bad, checked; };

static void *shared_encode(void *arg) {
    struct shared_run *r = arg;
    for (int rep = 0; rep < 4; rep++)
        for (int k = 0; k < r->ng; k++) {
            const struct golden *g = &r->g[r->reverse ? r->ng - 1 - k : k];
            if (!g->has_sd1) continue;
            int ids[SD_TOKENIZER_CTX];
            if (sd_tokenizer_encode_clip(r->tok, g->text, ids, NULL) || memcmp(ids, g->sd1, sizeof ids)) r->bad++;
            r->checked++;
        }
    return NULL;
}

static void test_shared_threads(struct sd_tokenizer *tok, const struct golden *g, int ng) {
    struct shared_run r[2] = {{tok, g, ng, 0, 0, 0}, {tok, g, ng, 1, 0, 0}};
    pthread_t th[2];
    int started = 0;
    for (int i = 0; i < 2; i++) started += pthread_create(&th[i], NULL, shared_encode, &r[i]) == 0;
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    CHECK(started == 2 && r[0].bad == 0 && r[1].bad == 0 && r[0].checked > 0,
          "one tokenizer shared by two threads: %d + %d encodings equal the goldens (%d + %d differ)", r[0].checked,
          r[1].checked, r[0].bad, r[1].bad);
}

int main(void) {
    struct sd_ctx ctx = {0};
    double t0 = sd_time_s();
    struct sd_tokenizer *tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path());
    double load_s = sd_time_s() - t0;
    if (!tok) {
        test_fail("load %s: %s (run `make vocab` or set SDRT_VOCAB)", vocab_path(), ctx.msg);
        return 1;
    }
    test_ok("loaded %s (%d ids, %d merges, Unicode %s)", vocab_path(), tok->n_vocab, tok->n_merges,
            sd_unicode_version());
    struct golden *g = NULL;
    int ng = load_goldens(&g);
    CHECK(ng >= 500, "golden file %s parses: %d prompts", GOLDEN, ng);
    test_vectors(tok);
    if (ng > 0) test_goldens(tok, g, ng);
    if (ng > 0) test_shared_threads(tok, g, ng);
    test_encode_api(tok);
    char dir[] = "/tmp/sdrt_tok_XXXXXX";
    if (mkdtemp(dir)) {
        if (ng > 0) test_diffusers(tok, g, ng, dir);
        test_errors(dir);
        rmdir(dir);
    } else test_fail("mkdtemp: %s", strerror(errno));
    test_speed(tok, load_s);
    if (ng > 0) free_goldens(g, ng);
    sd_tokenizer_free(tok);
    return test_summary();
}
