/* fuzz_request.c - libFuzzer target for the server's request parsing
 * (host/server/reqparse.c, base64.c): the input is a JSON request body as
 * a client sends it to txt2img / img2img / POST /v1/jobs; its string
 * fields are also decoded as base64 images (init_images, mask).
 *
 * Contract: parsing either reports an error naming a field with a 4xx
 * status, or yields a request within the server's limits (sizes multiples
 * of 8 within max_side, steps, batch, n_iter in range, prompts within
 * max_prompt, at most 8 `loras` with a name or a path and bounded
 * weights); a decoded image has the size asked for. tests/run.sh
 * replays tests/fuzz/request/ (test_fuzz_request).
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "srv.h"

/* The harness's model list: one model named "tiny". */
int srv_model_find(struct srv *s, const char *name) {
    (void)s;
    return !strcmp(name, "tiny") ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct srv s;
    s.o.max_side = 256, s.o.max_prompt = 1024, s.o.max_steps = 150, s.o.max_batch = 8, s.o.max_n_iter = 16;
    s.o.preview_every = 5;
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    struct gen_req r;
    memset(&r, 0, sizeof r);
    struct perr e;
    memset(&e, 0, sizeof e);
    if (body && req_gen_common(&s, body, &r, 1, &e) == 0) {
        FUZZ_REQUIRE(r.width % 8 == 0 && r.width >= 8 && r.width <= s.o.max_side);
        FUZZ_REQUIRE(r.height % 8 == 0 && r.height >= 8 && r.height <= s.o.max_side);
        FUZZ_REQUIRE(r.sampler.steps >= 1 && r.sampler.steps <= s.o.max_steps);
        FUZZ_REQUIRE(r.batch >= 1 && r.batch <= s.o.max_batch && r.n_iter >= 1 && r.n_iter <= s.o.max_n_iter);
        FUZZ_REQUIRE(r.prompt && strlen(r.prompt) <= (size_t)s.o.max_prompt && r.negative);
        FUZZ_REQUIRE(r.model == -1 || r.model == 0);
        if (req_loras(&s, body, &r, &e) == 0) {
            FUZZ_REQUIRE(r.n_loras >= 0 && r.n_loras <= SRV_MAX_LORAS);
            for (int i = 0; i < r.n_loras; i++)
                FUZZ_REQUIRE(!r.loras[i].name != !r.loras[i].path && fabsf(r.loras[i].te) <= 20 && fabsf(r.loras[i].unet) <= 20);
        } else {
            FUZZ_REQUIRE(e.status >= 400 && e.status < 600 && e.msg[0]);
        }
    } else if (body) {
        FUZZ_REQUIRE(e.status >= 400 && e.status < 600 && e.msg[0]);
    }
    gen_req_free(&r);
    /* Every string field as a base64 image (raw or data: URL), resized to 16x16. */
    const char *key;
    json_t *v;
    if (json_is_object(body))
        json_object_foreach(body, key, v) {
            if (!json_is_string(v)) continue;
            float *img = NULL;
            int w = 16, h = 16;
            memset(&e, 0, sizeof e);
            if (req_image(&s, key, json_string_value(v), key[0] == 'm', &img, &w, &h, &e) == 0) {
                FUZZ_REQUIRE(img && w == 16 && h == 16);
                free(img);
            } else {
                FUZZ_REQUIRE(!img && e.status == 422 && e.msg[0]);
            }
        }
    /* And the raw input as base64. */
    size_t n = 0;
    uint8_t *dec = b64_decode((const char *)data, size, &n);
    if (dec) {
        FUZZ_REQUIRE(n <= size / 4 * 3 + 3);
        size_t m = 0;
        char *re = b64_encode(dec, n, &m);
        FUZZ_REQUIRE(re && m == (n + 2) / 3 * 4);
        free(re);
        free(dec);
    }
    json_decref(body);
    return 0;
}
