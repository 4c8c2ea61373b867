/* test_prompt.c - A1111 prompt parsing, chunking and emphasis rescale.
 *
 * Expected fragment lists are A1111's parse_prompt_attention results: its
 * documented doctest examples plus cases evaluated with that function
 * (stable-diffusion-webui modules/prompt_parser.py), written out by hand.
 * Weights compare exactly: the same multiplications in the same order. */
#include "prompt.h"
#include "test.h"

struct ef { const char *text; double w; };
struct pcase { const char *in; int n; struct ef f[9]; };

#define BRK {"BREAK", -999} /* marker: a BREAK entry */

static const struct pcase pcases[] = {
    {"normal text", 1, {{"normal text", 1.0}}},
    {"an (important) word", 3, {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}}},
    {"(unbalanced", 1, {{"unbalanced", 1.1}}},
    {"\\(literal\\]", 1, {{"(literal]", 1.0}}},
    {"(unnecessary)(parens)", 1, {{"unnecessaryparens", 1.1}}},
    {"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", 9,
     {{"a ", 1.0}, {"house", 1.5730000000000004}, {" ", 1.1}, {"on", 1.0}, {" a ", 1.1}, {"hill", 0.55},
      {", sun, ", 1.1}, {"sky", 1.4641000000000006}, {".", 1.1}}},
    {"a (very beautiful:1.5) [cat]", 4, {{"a ", 1.0}, {"very beautiful", 1.5}, {" ", 1.0}, {"cat", 0.9090909090909091}}},
    {"(word:abc)", 1, {{"word:abc", 1.1}}},
    {"(a:1.2 )", 1, {{"a", 1.2}}},
    {"[[x]]", 1, {{"x", 0.8264462809917354}}},
    {"a BREAK b", 3, {{"a", 1.0}, BRK, {"b", 1.0}}},
    {"BREAK", 3, {{"", 1.0}, BRK, {"", 1.0}}},
    {"x ) y ] z", 1, {{"x ) y ] z", 1.0}}},
    {"(a:0.5) :1.2) c", 2, {{"a", 0.5}, {" :1.2) c", 1.0}}},
    {"a\\b\\\\c\\", 1, {{"ab\\c", 1.0}}},
    {"aBREAK b BREAKs", 1, {{"aBREAK b BREAKs", 1.0}}},
    {"(a:-1)", 1, {{"a", -1.0}}},
    {"(a: +.5)", 1, {{"a", 0.5}}},
    {"[a:b:0.5]", 1, {{"a:b:0.5", 0.9090909090909091}}},
    {"x\nBREAK\ny", 3, {{"x", 1.0}, BRK, {"y", 1.0}}},
    {"(x:1.)", 1, {{"x", 1.0}}},
    {"", 1, {{"", 1.0}}},
    /* deviation: A1111 gives BREAK weight -1.1 here (and tokenises it as a word) */
    {"((a) BREAK (b))", 5, {{"a", 1.2100000000000002}, {"", 1.1}, BRK, {"", 1.1}, {"b", 1.2100000000000002}}},
};

static void test_parse(void) {
    int bad_cases = 0;
    for (size_t c = 0; c < sizeof pcases / sizeof *pcases; c++) {
        const struct pcase *pc = &pcases[c];
        struct sd_ctx ctx = {0};
        struct sd_prompt *p = sd_prompt_parse(&ctx, pc->in);
        int bad = !p || p->n_frags != pc->n;
        for (int i = 0; !bad && i < pc->n; i++) {
            const struct sd_prompt_frag *f = &p->frags[i];
            bool brk = pc->f[i].w == -999;
            if (strcmp(f->text, pc->f[i].text) || f->is_break != brk || (!brk && f->weight != pc->f[i].w)) bad = 1;
        }
        if (bad) {
            printf("  '%s':", pc->in);
            for (int i = 0; p && i < p->n_frags; i++)
                printf(" ['%s', %.17g%s]", p->frags[i].text, p->frags[i].weight, p->frags[i].is_break ? " BREAK" : "");
            printf("\n");
            bad_cases++;
        }
        sd_prompt_free(p);
    }
    CHECK(!bad_cases, "%zu prompts parse to A1111's (text, weight) lists", sizeof pcases / sizeof *pcases);

    struct sd_ctx ctx = {0};
    struct sd_prompt *p = sd_prompt_parse(&ctx, "a (cat:1.2.3) here");
    CHECK(!p && ctx.status == SD_ERR_INVALID && strstr(ctx.msg, "'1.2.3'") && strstr(ctx.msg, "offset 7"),
          "non-numeric weight rejected (A1111 raises): %s", ctx.msg);
    p = sd_prompt_parse(&ctx, "((a) b");
    CHECK(p && strstr(p->warnings, "unclosed '('"), "unbalanced '(' accepted with a warning: %s", p ? p->warnings : "");
    sd_prompt_free(p);
    p = sd_prompt_parse(&ctx, "a ] b");
    CHECK(p && strstr(p->warnings, "unmatched ']'"), "stray ']' kept as text with a warning: %s", p ? p->warnings : "");
    sd_prompt_free(p);
    p = sd_prompt_parse(&ctx, "a (b) c");
    CHECK(p && p->warnings[0] == 0, "balanced prompt: no warnings");
    sd_prompt_free(p);
}

static void test_loras(void) {
    struct sd_ctx ctx = {0};
    struct sd_prompt *p = sd_prompt_parse(&ctx, "a cat <lora:detail:0.8>, (best:1.2) <lora:my style v2> x");
    CHECK(p && p->n_loras == 2 && !strcmp(p->loras[0].name, "detail") && p->loras[0].te_mult == 0.8f &&
              p->loras[0].unet_mult == 0.8f && !strcmp(p->loras[1].name, "my style v2") && p->loras[1].te_mult == 1.0f,
          "<lora:name:w> and <lora:name> extracted (names may contain spaces)");
    CHECK(p && !strcmp(p->text, "a cat , (best:1.2)  x") && p->n_frags == 3 && !strcmp(p->frags[0].text, "a cat , ") &&
              p->frags[1].weight == 1.2 && !strcmp(p->frags[2].text, "  x"),
          "tags removed from the text before emphasis parsing: '%s'", p ? p->text : "");
    sd_prompt_free(p);
    p = sd_prompt_parse(&ctx, "<lora:a:0.5:0.25><lora:b:te=0.3:unet=0.7>");
    CHECK(p && p->n_loras == 2 && p->loras[0].te_mult == 0.5f && p->loras[0].unet_mult == 0.25f &&
              p->loras[1].te_mult == 0.3f && p->loras[1].unet_mult == 0.7f && p->n_frags == 1 && !p->frags[0].text[0],
          "separate text-encoder/UNet multipliers (positional and te=/unet=)");
    sd_prompt_free(p);
    p = sd_prompt_parse(&ctx, "x <hypernet:foo:1> y <b> 1 < 2 > 0");
    CHECK(p && p->n_loras == 0 && !strcmp(p->text, "x  y <b> 1 < 2 > 0") && strstr(p->warnings, "hypernet"),
          "other extra networks removed with a warning; non-tags kept: '%s'", p ? p->text : "");
    sd_prompt_free(p);
    p = sd_prompt_parse(&ctx, "a <lora:x:strong> b");
    CHECK(!p && strstr(ctx.msg, "'strong'") && strstr(ctx.msg, "not a number"), "bad LoRA multiplier: %s", ctx.msg);
    p = sd_prompt_parse(&ctx, "<lora::1>");
    CHECK(!p && strstr(ctx.msg, "no name"), "LoRA without a name: %s", ctx.msg);
}

static void test_chunk(void) {
    struct sd_ctx ctx = {0};
    struct sd_chunk_params cp;
    sd_chunk_params_init(&cp, false);
    int32_t ids[200], *out = NULL;
    float w[200], *ow = NULL;
    int nc = 0;
    for (int i = 0; i < 200; i++) ids[i] = 1000 + i, w[i] = 1.0f + 0.01f * (float)i;

    int rc = sd_prompt_chunk(&ctx, ids, w, 3, &cp, &out, &ow, &nc);
    int bad = rc || nc != 1 || out[0] != 49406 || out[1] != 1000 || out[3] != 1002 || out[4] != 49407 ||
              out[76] != 49407 || ow[2] != w[1] || ow[0] != 1 || ow[50] != 1;
    CHECK(!bad, "3 tokens: one chunk BOS t t t EOS... (77), padding weight 1");
    free(out), free(ow);

    rc = sd_prompt_chunk(&ctx, ids, w, 75, &cp, &out, &ow, &nc);
    CHECK(!rc && nc == 1 && out[75] == 1074 && out[76] == 49407, "exactly 75 tokens: one chunk");
    free(out), free(ow);

    rc = sd_prompt_chunk(&ctx, ids, w, 80, &cp, &out, &ow, &nc);
    CHECK(!rc && nc == 2 && out[75] == 1074 && out[77] == 49406 && out[78] == 1075 && out[82] == 1079 &&
              out[83] == 49407 && ow[78] == w[75],
          "80 tokens, no comma: chunks of 75 and 5");
    free(out), free(ow);

    ids[70] = 267; /* comma at content position 70: 75 - 70 <= 20 -> cut after it */
    rc = sd_prompt_chunk(&ctx, ids, w, 80, &cp, &out, &ow, &nc);
    CHECK(!rc && nc == 2 && out[71] == 267 && out[72] == 49407 && out[78] == 1071 && out[78 + 8] == 1079 &&
              out[78 + 9] == 49407 && ow[78] == w[71],
          "comma within 20 tokens of the end: chunk cut after the comma, 4 tokens move on");
    free(out), free(ow);
    ids[70] = 1070;
    ids[50] = 267; /* 75 - 50 = 25 > 20: no backtrack */
    rc = sd_prompt_chunk(&ctx, ids, w, 80, &cp, &out, &ow, &nc);
    CHECK(!rc && nc == 2 && out[75] == 1074 && out[78] == 1075, "comma 25 tokens back: no backtrack");
    free(out), free(ow);
    ids[50] = 1050;

    int32_t bi[4] = {5, 6, SD_PROMPT_BREAK_ID, 7};
    float bw[4] = {1, 1.1f, 1, 0.9f};
    rc = sd_prompt_chunk(&ctx, bi, bw, 4, &cp, &out, &ow, &nc);
    CHECK(!rc && nc == 2 && out[1] == 5 && out[2] == 6 && out[3] == 49407 && out[78] == 7 && ow[78] == 0.9f,
          "BREAK starts a new chunk");
    free(out), free(ow);
    rc = sd_prompt_chunk(&ctx, NULL, NULL, 0, &cp, &out, &ow, &nc);
    CHECK(!rc && nc == 1 && out[0] == 49406 && out[1] == 49407 && out[76] == 49407, "empty prompt: one empty chunk");
    free(out), free(ow);
    sd_chunk_params_init(&cp, true);
    rc = sd_prompt_chunk(&ctx, ids, w, 2, &cp, &out, &ow, &nc);
    CHECK(!rc && nc == 1 && out[3] == 49407 && out[4] == 0 && out[76] == 0, "SD2: pad id 0 after the first EOS");
    free(out), free(ow);
}

static void test_weights(void) {
    enum { C = 2, L = 77, D = 8 };
    static float z[C * L * D], ref[C * L * D], w[C * L];
    fill_random(z, C * L * D, 9);
    for (int i = 0; i < C * L * D; i++) z[i] += 0.3f; /* non-zero mean */
    for (int i = 0; i < C * L; i++) w[i] = 1.0f;
    w[3] = 1.5f, w[4] = 0.8f, w[L + 10] = 1.21f;
    /* naive reference: mean, weight, mean, rescale, all in double */
    for (int c = 0; c < C; c++) {
        double m0 = 0, m1 = 0;
        for (int i = 0; i < L * D; i++) m0 += z[c * L * D + i];
        for (int i = 0; i < L * D; i++) m1 += (double)z[c * L * D + i] * w[c * L + i / D];
        for (int i = 0; i < L * D; i++)
            ref[c * L * D + i] = (float)((double)z[c * L * D + i] * w[c * L + i / D] * (m0 / m1));
    }
    float before0 = 0, after0 = 0;
    for (int i = 0; i < L * D; i++) before0 += z[i];
    sd_prompt_apply_weights(z, w, C, L, D);
    for (int i = 0; i < L * D; i++) after0 += z[i];
    double mx;
    int bad = check_close("z", z, ref, C * L * D, 1e-6, 1e-5, &mx);
    CHECK(!bad && fabsf(before0 - after0) < 1e-3f * fabsf(before0),
          "A1111 emphasis: z*w rescaled to the original mean per chunk (max diff %.2g)", mx);
}

int main(void) {
    test_parse();
    test_loras();
    test_chunk();
    test_weights();
    return test_summary();
}
