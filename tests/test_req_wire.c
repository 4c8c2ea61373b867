/* test_req_wire.c - the wire form of a job request (host/server/req_wire.c):
 * every field round-trips through JSON text (floats bit-exact, init/mask
 * planes included), every sampler kind with and without Karras, the
 * prompt's LoRA tags are left to the worker, malformed input is rejected
 * with the field named. */
#include <math.h>

#include "req_wire.h"
#include "test.h"

static int feq(float a, float b) { return !memcmp(&a, &b, sizeof a); }

static int same_req(const struct gen_req *a, const struct gen_req *b, char *why, size_t n) {
#define DIFF(cond, what) \
    if (cond) return snprintf(why, n, "%s", what), 0
    DIFF(a->mode != b->mode, "mode");
    DIFF(strcmp(a->prompt, b->prompt) || strcmp(a->negative, b->negative), "prompt");
    DIFF(a->width != b->width || a->height != b->height || a->batch != b->batch || a->n_iter != b->n_iter, "size");
    DIFF(a->clip_skip != b->clip_skip || !feq(a->cfg, b->cfg) || !feq(a->strength, b->strength), "cfg/strength/clip_skip");
    DIFF(a->seed != b->seed || a->inpaint_fill != b->inpaint_fill || a->preview_every != b->preview_every, "seed/fill/preview");
    const struct sd_sampler_params *p = &a->sampler, *q = &b->sampler;
    DIFF(p->kind != q->kind || p->karras != q->karras || p->steps != q->steps || p->spacing != q->spacing, "sampler");
    DIFF(p->steps_offset != q->steps_offset || p->prediction != q->prediction || !feq(p->eta, q->eta), "sampler 2");
    DIFF(p->clip_sample != q->clip_sample || p->lcm_original_steps != q->lcm_original_steps, "sampler 3");
    DIFF(a->n_loras != b->n_loras, "n_loras");
    for (int i = 0; i < a->n_loras; i++)
        DIFF(strcmp(a->loras[i].name, b->loras[i].name) || !feq(a->loras[i].te, b->loras[i].te) ||
                 !feq(a->loras[i].unet, b->loras[i].unet),
             "loras");
    size_t hw = (size_t)a->width * a->height;
    DIFF(!a->init != !b->init || (a->init && memcmp(a->init, b->init, 3 * hw * sizeof(float))), "init");
    DIFF(!a->mask != !b->mask || (a->mask && memcmp(a->mask, b->mask, hw * sizeof(float))), "mask");
    return 1;
#undef DIFF
}

/* encode -> text -> parse -> decode. */
static int round_trip(const struct gen_req *r, const char *model, enum job_origin o, struct gen_req *back,
                      enum job_origin *ob, char *mb, struct sd_ctx *ctx) {
    json_t *j = NULL;
    if (req_wire_encode(r, model, o, &j)) return -1;
    char *txt = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    json_t *p = txt ? json_loads(txt, 0, NULL) : NULL;
    free(txt);
    int st = req_wire_decode(ctx, p, back, mb, 128, ob);
    json_decref(p);
    return st;
}

static char *sdup(const char *s) { return strdup(s); }

static void test_full(void) {
    struct gen_req r = {0};
    r.mode = MODE_INPAINT;
    r.prompt = sdup("a (red:1.2) fox, [snow], \"quoted\" \\ ünïcode 🦊");
    r.negative = sdup("blurry\nlow quality");
    r.width = 24, r.height = 16, r.batch = 3, r.n_iter = 2, r.clip_skip = 2;
    r.cfg = 7.123456789f, r.strength = 0.3333333f;
    sd_sampler_params_init(&r.sampler);
    r.sampler.kind = SD_SAMPLER_DPMPP_2M_SDE, r.sampler.karras = true, r.sampler.steps = 37;
    r.sampler.spacing = SD_SPACING_TRAILING, r.sampler.steps_offset = 0, r.sampler.prediction = SD_PRED_V;
    r.sampler.eta = 0.1f, r.sampler.clip_sample = true, r.sampler.lcm_original_steps = 77;
    r.seed = 9007199254740991LL;
    r.inpaint_fill = 2, r.preview_every = 5;
    r.n_loras = 2;
    r.loras = calloc(2, sizeof *r.loras);
    r.loras[0] = (struct srv_lora){sdup("watercolor"), NULL, 0.8f, 1.0f / 3.0f};
    r.loras[1] = (struct srv_lora){sdup("ink.v2"), NULL, -1.5f, 1e-7f};
    size_t hw = (size_t)r.width * r.height;
    r.init = malloc(3 * hw * sizeof(float));
    r.mask = malloc(hw * sizeof(float));
    fill_random(r.init, (int64_t)(3 * hw), 11);
    fill_random(r.mask, (int64_t)hw, 12);
    r.init[0] = -0.0f, r.init[1] = 1e-40f /* subnormal */, r.init[2] = 3.4e38f, r.mask[0] = 0.1f;
    struct gen_req b;
    enum job_origin ob;
    char mb[128];
    struct sd_ctx ctx = {0};
    int st = round_trip(&r, "tiny-sd1", ORIGIN_A1111, &b, &ob, mb, &ctx);
    char why[64] = "";
    int same = st == SD_OK && same_req(&r, &b, why, sizeof why) && ob == ORIGIN_A1111 && !strcmp(mb, "tiny-sd1") &&
               b.model == -1 && b.restore == 1 && !b.lora_key;
    test_err_note(0, 0, 1);
    CHECK(same, "req_wire: inpaint request with every field, 2 LoRAs, init/mask planes round-trip bit-exact (%s%s)", why, ctx.msg);
    gen_req_free(&b);
    /* img2img and txt2img, each origin. */
    free(r.mask);
    r.mask = NULL;
    r.mode = MODE_IMG2IMG;
    st = round_trip(&r, "m", ORIGIN_OPENAI, &b, &ob, mb, &ctx);
    int ok2 = st == SD_OK && same_req(&r, &b, why, sizeof why) && ob == ORIGIN_OPENAI;
    gen_req_free(&b);
    free(r.init);
    r.init = NULL;
    r.mode = MODE_TXT2IMG;
    st = round_trip(&r, "m", ORIGIN_NATIVE, &b, &ob, mb, &ctx);
    ok2 &= st == SD_OK && same_req(&r, &b, why, sizeof why) && ob == ORIGIN_NATIVE;
    gen_req_free(&b);
    CHECK(ok2, "req_wire: img2img (openai) and txt2img (native) round-trip (%s)", why);
    gen_req_free(&r);
}

static void test_samplers(void) {
    int n = 0, good = 0;
    char fails[256] = "";
    for (int k = 0; k < SD_SAMPLER_COUNT; k++)
        for (int karras = 0; karras < 2; karras++) {
            struct gen_req r = {0};
            r.prompt = sdup("p"), r.negative = sdup("");
            r.width = r.height = 64, r.batch = r.n_iter = 1, r.cfg = 7.5f, r.strength = 0.75f, r.seed = k;
            sd_sampler_params_init(&r.sampler);
            r.sampler.kind = (enum sd_sampler_kind)k, r.sampler.karras = karras;
            struct gen_req b;
            enum job_origin ob;
            char mb[128], why[64];
            struct sd_ctx ctx = {0};
            n++;
            if (round_trip(&r, "m", ORIGIN_NATIVE, &b, &ob, mb, &ctx) == SD_OK && same_req(&r, &b, why, sizeof why)) good++;
            else snprintf(fails + strlen(fails), sizeof fails - strlen(fails), " %d/%d", k, karras);
            gen_req_free(&b);
            gen_req_free(&r);
        }
    CHECK(good == n, "req_wire: all %d sampler kinds x Karras round-trip (failed:%s)", n, fails);
}

/* Prepared requests (srv_loras_prepare appended the prompt's tags after the
 * explicit LoRAs, lora_key set): only the explicit ones go on the wire. */
static void test_prompt_tags(void) {
    struct gen_req r = {0};
    r.prompt = sdup("a cat <lora:ink:0.5> <lora:paper:1>"), r.negative = sdup("");
    r.width = r.height = 64, r.batch = r.n_iter = 1;
    sd_sampler_params_init(&r.sampler);
    r.n_loras = 3;
    r.loras = calloc(3, sizeof *r.loras);
    r.loras[0] = (struct srv_lora){sdup("watercolor"), sdup("/l/watercolor.safetensors"), 1, 1};
    r.loras[1] = (struct srv_lora){sdup("ink"), sdup("/l/ink.safetensors"), 0.5f, 0.5f};
    r.loras[2] = (struct srv_lora){sdup("paper"), sdup("/l/paper.safetensors"), 1, 1};
    r.lora_key = sdup("x");
    json_t *j = NULL;
    int st = req_wire_encode(&r, "m", ORIGIN_NATIVE, &j);
    json_t *la = json_object_get(j, "loras");
    CHECK(!st && json_array_size(la) == 1 && !strcmp(json_string_value(json_object_get(json_array_get(la, 0), "name")), "watercolor") &&
              !json_object_get(json_array_get(la, 0), "path"),
          "req_wire: a prepared request sends its explicit LoRA by name only, the prompt's 2 tags stay in the prompt");
    json_decref(j);
    gen_req_free(&r);
}

static void test_malformed(void) {
    struct gen_req r = {0};
    r.prompt = sdup("p"), r.negative = sdup("");
    r.width = r.height = 64, r.batch = r.n_iter = 1, r.cfg = 7, r.strength = 0.75f, r.seed = 1;
    sd_sampler_params_init(&r.sampler);
    json_t *good = NULL;
    req_wire_encode(&r, "m", ORIGIN_NATIVE, &good);
    gen_req_free(&r);
    struct {
        const char *patch; /* JSON object merged into the good request */
        const char *del;   /* a field removed, or NULL */
        const char *want;  /* in the error */
    } cases[] = {
        {NULL, "prompt", "missing field 'prompt'"},
        {"{\"width\": \"64\"}", NULL, "'width' must be an integer"},
        {"{\"width\": 60}", NULL, "multiples of 8"},
        {"{\"height\": 0}", NULL, "'height' = 0 is outside"},
        {"{\"seed\": -1}", NULL, "'seed' = -1"},
        {"{\"cfg_scale\": null}", NULL, "'cfg_scale' must be a number"},
        {"{\"strength\": 1.5}", NULL, "'strength'"},
        {"{\"v\": 2}", NULL, "version 2"},
        {"{\"origin\": \"comfy\"}", NULL, "unknown origin 'comfy'"},
        {"{\"mode\": \"img2img\"}", NULL, "needs init_f32"},
        {"{\"sampler\": {\"name\": \"Nope\"}}", NULL, "sampler.name"},
        {"{\"loras\": [{\"name\": \"\", \"te\": 1, \"unet\": 1}]}", NULL, "loras[0].name is empty"},
        {"{\"loras\": [1]}", NULL, "loras[0] must be an object"},
        {"{\"mode\": \"img2img\", \"init_w\": 64, \"init_h\": 64, \"init_f32\": \"AAAA\"}", NULL, "expected 49152"},
        {"{\"mode\": \"img2img\", \"init_w\": 64, \"init_h\": 64, \"init_f32\": \"!!\"}", NULL, "not base64"},
        {"{\"mode\": \"img2img\", \"init_w\": 32, \"init_h\": 64, \"init_f32\": \"\"}", NULL, "differs from the size"},
        {"{\"prompt\": 5}", NULL, "'prompt' must be a string"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]), good_n = 0;
    char last[300] = "";
    for (int i = 0; i < n; i++) {
        json_t *j = json_deep_copy(good);
        if (cases[i].patch) {
            json_t *p = json_loads(cases[i].patch, 0, NULL);
            json_object_update(j, p);
            json_decref(p);
        }
        if (cases[i].del) json_object_del(j, cases[i].del);
        struct sd_ctx ctx = {0};
        struct gen_req b;
        enum job_origin o;
        char m[128];
        int st = req_wire_decode(&ctx, j, &b, m, sizeof m, &o);
        if (st == SD_ERR_INVALID && strstr(ctx.msg, cases[i].want)) good_n++;
        else printf("  case %d: st %d msg '%s' (want '%s')\n", i, st, ctx.msg, cases[i].want);
        snprintf(last, sizeof last, "%s", ctx.msg);
        json_decref(j);
    }
    struct sd_ctx ctx = {0};
    struct gen_req b;
    enum job_origin o;
    char m[128];
    int st = req_wire_decode(&ctx, json_object_get(good, "sampler") /* not a request */, &b, m, sizeof m, &o);
    CHECK(good_n == n && st == SD_ERR_INVALID, "req_wire: %d malformed requests rejected naming the field (e.g. %s)", n, last);
    json_decref(good);
}

int main(void) {
    test_full();
    test_samplers();
    test_prompt_tags();
    test_malformed();
    return test_summary();
}
