/* random_like.c - writes a checkpoint with the same tensors (names, dtypes,
 * shapes) as a reference safetensors header, filled with seeded uniform
 * random values (std 0.02; 1-d tensors named *norm* get 1 + noise). For
 * timing and memory runs on machines where the full-size model cannot be
 * generated or copied (e.g. a lent GPU box): only the ~100 KB header travels.
 *
 *   random_like REF.safetensors|HEADER.json OUT.safetensors [SEED]
 *
 * A .json argument is the header itself (as `head -c` of a safetensors
 * file would give after the 8-byte length): {"name": {"dtype", "shape",
 * "data_offsets"}, ...}. Writes OUT.tmp then renames.
 */
#include "json.h"
#include "safetensors.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float uniform(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s REF.safetensors|HEADER.json OUT.safetensors [SEED]\n", argv[0]);
        return 2;
    }
    if (argc > 3) rng_state ^= strtoull(argv[3], NULL, 10) * 0x2545F4914F6CDD1Dull;
    struct sd_ctx ctx = {0};
    FILE *f = fopen(argv[1], "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", argv[1]); return 1; }
    uint64_t hlen = 0;
    char *hdr = NULL;
    size_t n = strlen(argv[1]);
    if (n > 5 && !strcmp(argv[1] + n - 5, ".json")) {
        fseek(f, 0, SEEK_END);
        hlen = (uint64_t)ftell(f);
        fseek(f, 0, SEEK_SET);
    } else if (fread(&hlen, 8, 1, f) != 1 || hlen > 100000000u) {
        fprintf(stderr, "%s: not a safetensors file\n", argv[1]);
        return 1;
    }
    hdr = malloc(hlen);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) { fprintf(stderr, "%s: short read\n", argv[1]); return 1; }
    fclose(f);
    struct sd_json *doc = NULL;
    if (sd_json_parse(&ctx, hdr, hlen, &doc)) { fprintf(stderr, "%s: %s\n", argv[1], ctx.msg); return 1; }
    size_t nt = sd_json_len(doc);
    struct sd_st_tensor *t = calloc(nt, sizeof *t);
    int k = 0;
    for (struct sd_json_member m = {0}; sd_json_next(doc, &m);) {
        const struct sd_json *e = m.value;
        if (!strcmp(m.key, "__metadata__")) continue;
        const char *dt = sd_json_str(sd_json_get(e, "dtype"));
        const struct sd_json *shape = sd_json_get(e, "shape");
        struct sd_st_tensor *x = &t[k];
        x->name = m.key;
        x->dtype = dt;
        x->n_dims = (int)sd_json_len(shape);
        int64_t el = 1;
        for (int d = 0; d < x->n_dims && d < SD_ST_MAX_DIMS; d++) el *= x->shape[d] = sd_json_int(sd_json_at(shape, (size_t)d), 1);
        size_t es = sd_st_dtype_size(dt);
        if (!es) { fprintf(stderr, "%s: dtype %s\n", x->name, dt ? dt : "?"); return 1; }
        x->type = !strcmp(dt, "F32") ? SD_F32 : !strcmp(dt, "F16") ? SD_F16 : !strcmp(dt, "BF16") ? SD_BF16 : !strcmp(dt, "I64") ? SD_I64 : SD_I32;
        x->nbytes = (size_t)el * es;
        void *data = malloc(x->nbytes ? x->nbytes : 1);
        if (!data) { fprintf(stderr, "out of memory\n"); return 1; }
        const int norm = x->n_dims == 1 && strstr(x->name, "norm") && strstr(x->name, "weight");
        const float sc = 0.02f * 1.7320508f;
        for (int64_t j = 0; j < el; j++) {
            float v = (norm ? 1.0f : 0.0f) + sc * uniform();
            if (x->type == SD_F32) ((float *)data)[j] = v;
            else if (x->type == SD_F16) ((uint16_t *)data)[j] = sd_f32_to_f16(v);
            else if (x->type == SD_BF16) { uint32_t b; memcpy(&b, &v, 4); ((uint16_t *)data)[j] = (uint16_t)(b >> 16); }
            else if (x->type == SD_I64) ((int64_t *)data)[j] = j;
            else ((int32_t *)data)[j] = (int32_t)j;
        }
        x->data = data;
        k++;
    }
    int rc = sd_st_write(&ctx, argv[2], t, k, NULL);
    if (rc) fprintf(stderr, "%s\n", ctx.msg);
    else printf("wrote %s: %d tensors\n", argv[2], k);
    for (int i = 0; i < k; i++) free((void *)t[i].data);
    free(t);
    sd_json_free(doc);
    free(hdr);
    return rc ? 1 : 0;
}
