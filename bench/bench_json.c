/* bench_json.c - JSON parsing cost where it matters (host/io/json.c):
 *
 *   vocab.json   a CLIP-like vocab object of 49408 "token</w>": id entries
 *                (~1 MB): parse, then every key looked up once
 *   safetensors  sd_st_open_memory on a file of 1200 tensors with
 *                checkpoint-like names (header ~150 KB): parse + validate
 *
 * Prints the median of 9 runs of each, in milliseconds.
 */
#include "json.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS 9

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t) {
    qsort(t, RUNS, sizeof *t, cmp_d);
    return t[RUNS / 2];
}

static int bench_vocab(void) {
    const int n = 49408;
    char *s = malloc((size_t)n * 40 + 16);
    size_t o = 0;
    s[o++] = '{';
    for (int k = 0; k < n; k++)
        o += (size_t)sprintf(s + o, "%s\"tok%d\\u00e9</w>\": %d", k ? ", " : "", k * 7919 % n, k);
    s[o++] = '}';
    double tp[RUNS], tl[RUNS];
    char key[64];
    for (int r = 0; r < RUNS; r++) {
        struct sd_ctx ctx = {0};
        struct sd_json *j = NULL;
        double t0 = sd_time_s();
        if (sd_json_parse(&ctx, s, o, &j) != SD_OK) {
            fprintf(stderr, "bench_json: vocab: %s\n", ctx.msg);
            free(s);
            return 1;
        }
        double t1 = sd_time_s();
        int64_t sum = 0;
        for (int k = 0; k < n; k++) {
            snprintf(key, sizeof key, "tok%d\xc3\xa9</w>", k);
            sum += sd_json_int(sd_json_get(j, key), 0);
        }
        double t2 = sd_time_s();
        sd_json_free(j);
        if (sum != (int64_t)n * (n - 1) / 2) {
            fprintf(stderr, "bench_json: vocab lookups summed to %lld\n", (long long)sum);
            free(s);
            return 1;
        }
        tp[r] = (t1 - t0) * 1e3;
        tl[r] = (t2 - t1) * 1e3;
    }
    printf("json vocab.json      %6.1f KB  parse %7.2f ms  %d lookups %6.2f ms\n", o / 1024.0, median(tp), n,
           median(tl));
    free(s);
    return 0;
}

static int bench_safetensors(void) {
    const int n = 1200;
    size_t cap = (size_t)n * 200 + 64;
    char *hdr = malloc(cap);
    size_t o = 0;
    o += (size_t)sprintf(hdr + o, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (int k = 0; k < n; k++)
        o += (size_t)snprintf(hdr + o, cap - o,
                              ", \"model.diffusion_model.output_blocks.%d.1.transformer_blocks.0.attn%d.to_q.weight\": "
                              "{\"dtype\": \"F32\", \"shape\": [4, 4], \"data_offsets\": [%d, %d]}",
                              k / 2, k % 2 + 1, k * 64, k * 64 + 64);
    o += (size_t)sprintf(hdr + o, "}");
    size_t size = 8 + o + (size_t)n * 64;
    unsigned char *buf = calloc(1, size);
    for (int k = 0; k < 8; k++) buf[k] = (unsigned char)((uint64_t)o >> (8 * k));
    memcpy(buf + 8, hdr, o);
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
        struct sd_ctx ctx = {0};
        struct sd_st_file *f = NULL;
        double t0 = sd_time_s();
        int rc = sd_st_open_memory(&ctx, "bench.safetensors", buf, size, &f);
        t[r] = (sd_time_s() - t0) * 1e3;
        if (rc != SD_OK || f->n_tensors != n) {
            fprintf(stderr, "bench_json: safetensors: %s\n", ctx.msg);
            sd_st_close(f);
            free(buf);
            free(hdr);
            return 1;
        }
        sd_st_close(f);
    }
    printf("json safetensors     %6.1f KB  %d tensors: open %7.2f ms\n", o / 1024.0, n, median(t));
    free(buf);
    free(hdr);
    return 0;
}

int main(void) { return bench_vocab() || bench_safetensors(); }
