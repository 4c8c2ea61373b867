/* fuzz_wire.c - libFuzzer target for the wire form of a job request
 * (host/server/req_wire.c): the `req` field of a Redis stream entry, which
 * `sdrt worker` reads from whoever can write to Redis.
 *
 * Contract: decoding either fails with SD_ERR_INVALID (or NOMEM) and a
 * message, leaving nothing allocated, or yields a request within the wire's
 * bounds (sizes multiples of 8 in 8..16384, init/mask present exactly as
 * the mode says, at most 8 LoRAs each with a name, finite floats, seed >=
 * 0) that encodes and decodes again to the same fields, floats bit-exact.
 * tests/run.sh replays tests/fuzz/wire/ (test_fuzz_wire).
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "req_wire.h"

/* reqparse.c's model lookup (linked, unused here). */
int srv_model_find(struct srv *s, const char *name) {
    (void)s, (void)name;
    return -1;
}

static int same_floats(const float *a, const float *b, size_t n) { return (!a && !b) || (a && b && !memcmp(a, b, n * sizeof *a)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    struct sd_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    struct gen_req r;
    enum job_origin o;
    char model[128];
    int st = req_wire_decode(&ctx, in, &r, model, sizeof model, &o);
    if (st) {
        FUZZ_REPORTED(&ctx);
        FUZZ_REQUIRE(!r.prompt && !r.init && !r.mask && !r.loras);
    } else {
        FUZZ_REQUIRE(r.width % 8 == 0 && r.width >= 8 && r.width <= 16384 && r.height % 8 == 0 && r.height >= 8 && r.height <= 16384);
        FUZZ_REQUIRE((r.init != NULL) == (r.mode != MODE_TXT2IMG) && (r.mask != NULL) == (r.mode == MODE_INPAINT));
        FUZZ_REQUIRE(r.n_loras >= 0 && r.n_loras <= SRV_MAX_LORAS && r.seed >= 0 && r.prompt && r.negative);
        FUZZ_REQUIRE(isfinite(r.cfg) && r.strength >= 0 && r.strength <= 1 && r.model == -1);
        for (int i = 0; i < r.n_loras; i++) FUZZ_REQUIRE(r.loras[i].name && r.loras[i].name[0] && isfinite(r.loras[i].te));
        json_t *again = NULL;
        FUZZ_REQUIRE(req_wire_encode(&r, model, o, &again) == 0);
        struct gen_req b;
        enum job_origin ob;
        char mb[128];
        struct sd_ctx c2;
        memset(&c2, 0, sizeof c2);
        FUZZ_REQUIRE(req_wire_decode(&c2, again, &b, mb, sizeof mb, &ob) == SD_OK);
        size_t hw = (size_t)r.width * r.height;
        FUZZ_REQUIRE(ob == o && !strcmp(mb, model) && b.mode == r.mode && !strcmp(b.prompt, r.prompt) &&
                     !strcmp(b.negative, r.negative) && b.width == r.width && b.height == r.height && b.batch == r.batch &&
                     b.n_iter == r.n_iter && b.seed == r.seed && !memcmp(&b.cfg, &r.cfg, 4) &&
                     !memcmp(&b.strength, &r.strength, 4) && b.sampler.kind == r.sampler.kind &&
                     b.sampler.steps == r.sampler.steps && b.n_loras == r.n_loras);
        FUZZ_REQUIRE(same_floats(b.init, r.init, 3 * hw) && same_floats(b.mask, r.mask, hw));
        gen_req_free(&b);
        json_decref(again);
        gen_req_free(&r);
    }
    json_decref(in);
    return 0;
}
