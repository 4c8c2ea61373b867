/* test_server.c - `sdrt serve` end to end: the built binary started on a
 * free loopback port with the tiny model (two CPU workers, an API key),
 * raw HTTP/1.1 to every endpoint, errors (malformed JSON, wrong types, bad
 * base64, oversized sizes, unknown sampler/model, credentials, body limit)
 * with the server serving on, SSE event order, and a concurrency run:
 * N jobs from 8 clients with cancels, each finished image byte-identical to
 * `sdrt txt2img` with the same settings, none lost or duplicated, RSS back
 * near its start. Then the real client packages (webuiapi, openai) from
 * build/testenv drive it (tests/server_clients.py). Bounded in time. */
#define _GNU_SOURCE
#include "test.h"
#include "png_io.h"
#include "http_client.h"

#include <jansson.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define N_JOBS 40
#define N_CANCEL 4
#else
#define N_JOBS 200
#define N_CANCEL 20
#endif
#define N_CLIENTS 8
#define KEY "test-key-123"

static char bindir[PATH_MAX];
static char models_dir[64];

static const char *A = "Bearer " KEY;

static json_t *call_json(const char *method, const char *path, const char *body, int *status) {
    struct resp r;
    if (http(method, path, A, NULL, body, body ? strlen(body) : 0, &r)) { *status = -1; return NULL; }
    *status = r.status;
    json_t *j = json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL);
    resp_free(&r);
    return j;
}

static long rss_kb(void) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)server_pid);
    FILE *f = fopen(p, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

static int start_server(const char *const *extra) {
    char sdrt[PATH_MAX + 16];
    snprintf(sdrt, sizeof sdrt, "%s/../sdrt", bindir);
    const char *argv[40] = {sdrt, "serve", "--model", "tests/models/tiny-sd1", "--port", "0", "--threads", "1",
                            "--devices", "cpu,cpu", "--api-key", KEY, "--max-body-mb", "1", "--max-side", "1024", "--queue-max", "256",
                            "--api-auth", "user:pass,other:secret", "--models-dir", models_dir, "--lora-dir", "tests/lora"};
    int n = 24;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    return start_server_args(argv);
}

/* `sdrt txt2img` with the settings the concurrency jobs use. */
static char *reference_png(long long seed, size_t *n) {
    char cmd[PATH_MAX * 2], out[64];
    snprintf(out, sizeof out, "/tmp/sdrt-test-server-%d-%lld.png", (int)getpid(), seed);
    snprintf(cmd, sizeof cmd, "%s/../sdrt txt2img --model tests/models/tiny-sd1 -p 'a red cube' -n 'blurry' --steps 2 "
             "-W 64 -H 64 --sampler 'Euler a' --cfg-scale 7.5 --seed %lld -q -o %s", bindir, seed, out);
    if (system(cmd) != 0) return NULL;
    char *b = test_read_file(out, n);
    unlink(out);
    return b;
}

static void test_endpoints(void) {
    int st;
    struct resp r;
    /* Auth: /health open; everything else needs the key. */
    http("GET", "/health", NULL, NULL, NULL, 0, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"ok\""), "auth: GET /health needs no credentials (%d)", r.status);
    resp_free(&r);
    http("GET", "/sdapi/v1/options", NULL, NULL, NULL, 0, &r);
    CHECK(r.status == 401 && strcasestr(r.head, "WWW-Authenticate:") && strstr(r.body, "\"detail\""),
          "auth: missing credentials -> 401 + WWW-Authenticate + JSON (%d)", r.status);
    resp_free(&r);
    http("GET", "/sdapi/v1/options", "Bearer wrong-key-123", NULL, NULL, 0, &r);
    CHECK(r.status == 401, "auth: wrong key -> 401 (%d)", r.status);
    resp_free(&r);
    http("GET", "/sdapi/v1/options", "Basic dXNlcjpwYXNz", NULL, NULL, 0, &r); /* user:pass */
    CHECK(r.status == 200, "auth: HTTP Basic user:pass -> 200 (%d)", r.status);
    resp_free(&r);
    http("GET", "/sdapi/v1/options", "Basic dXNlcjpwYXNT", NULL, NULL, 0, &r); /* user:pasS */
    CHECK(r.status == 401, "auth: HTTP Basic wrong password -> 401 (%d)", r.status);
    resp_free(&r);
    http("POST", "/v1/images/generations", "Bearer nope", NULL, "{}", 2, &r);
    CHECK(r.status == 401 && strstr(r.body, "\"error\":{"), "auth: OpenAI route -> 401 with OpenAI's error shape");
    resp_free(&r);

    static const char *lists[] = {"samplers", "schedulers", "sd-models", "loras", "sd-vae", "upscalers",
                                  "latent-upscale-modes", "scripts", "embeddings", "options", NULL};
    for (int i = 0; lists[i]; i++) {
        char p[96];
        snprintf(p, sizeof p, "/sdapi/v1/%s", lists[i]);
        json_t *j = call_json("GET", p, NULL, &st);
        CHECK(st == 200 && j && (json_is_array(j) || json_is_object(j)), "a1111: GET %s -> 200 JSON", p);
        if (!strcmp(lists[i], "sd-models"))
            CHECK(json_array_size(j) == 2 && !strcmp(json_string_value(json_object_get(json_array_get(j, 0), "title")), "tiny-sd1"),
                  "a1111: sd-models lists --model and --models-dir (%zu)", json_array_size(j));
        if (!strcmp(lists[i], "options")) {
            char *txt = json_dumps(j, 0);
            json_t *k = call_json("POST", "/sdapi/v1/options", txt, &st);
            CHECK(st == 200, "a1111: POST of the whole options dict back -> 200 (%d)", st);
            free(txt);
            json_decref(k);
        }
        json_decref(j);
    }
    json_t *j = call_json("POST", "/sdapi/v1/refresh-checkpoints", "{}", &st);
    CHECK(st == 200, "a1111: refresh-checkpoints");
    json_decref(j);
    j = call_json("POST", "/sdapi/v1/refresh-loras", "{}", &st);
    CHECK(st == 200, "a1111: refresh-loras");
    json_decref(j);

    /* txt2img: the image is the CLI's, byte for byte. */
    size_t ref_len = 0;
    char *ref = reference_png(7, &ref_len);
    j = call_json("POST", "/sdapi/v1/txt2img",
                  "{\"prompt\":\"a red cube\",\"negative_prompt\":\"blurry\",\"steps\":2,\"width\":64,\"height\":64,"
                  "\"sampler_name\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":7,\"unknown_key\":[1,2]}", &st);
    const char *b64 = json_string_value(json_array_get(json_object_get(j, "images"), 0));
    const char *info = json_string_value(json_object_get(j, "info"));
    json_t *ij = info ? json_loads(info, 0, NULL) : NULL;
    CHECK(st == 200 && b64 && ij && json_integer_value(json_object_get(ij, "seed")) == 7 &&
          json_array_size(json_object_get(ij, "infotexts")) == 1 && json_is_object(json_object_get(j, "parameters")),
          "a1111: txt2img -> images, parameters, info with A1111's keys (%d)", st);
    char *b64_copy = b64 ? strdup(b64) : NULL;
    if (b64 && ref) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "base64 -d > /tmp/sdrt-test-server-%d.png", (int)getpid());
        FILE *p = popen(cmd, "w");
        fputs(b64, p);
        pclose(p);
        snprintf(cmd, sizeof cmd, "/tmp/sdrt-test-server-%d.png", (int)getpid());
        size_t n = 0;
        char *got = test_read_file(cmd, &n);
        unlink(cmd);
        CHECK(got && n == ref_len && !memcmp(got, ref, n), "a1111: txt2img PNG byte-identical to sdrt txt2img (%zu bytes)", n);
        free(got);
    }
    json_decref(ij);
    json_decref(j);
    free(ref);

    /* png-info on that image. */
    if (b64_copy) {
        json_t *req = json_pack("{s:s}", "image", b64_copy);
        char *txt = json_dumps(req, 0);
        j = call_json("POST", "/sdapi/v1/png-info", txt, &st);
        const char *inf = json_string_value(json_object_get(j, "info"));
        CHECK(st == 200 && inf && strstr(inf, "Seed: 7") && strstr(inf, "Negative prompt: blurry"), "a1111: png-info reads the parameters");
        json_decref(j);
        free(txt);
        /* img2img and inpaint from it. */
        json_decref(req);
        req = json_pack("{s:s,s:[s],s:f,s:i,s:i,s:i,s:i}", "prompt", "a blue cube", "init_images", b64_copy,
                        "denoising_strength", 0.5, "steps", 4, "seed", 3, "width", 64, "height", 64);
        txt = json_dumps(req, 0);
        j = call_json("POST", "/sdapi/v1/img2img", txt, &st);
        CHECK(st == 200 && json_array_size(json_object_get(j, "images")) == 1, "a1111: img2img -> one image (%d)", st);
        json_decref(j);
        free(txt);
        json_object_set_new(req, "mask", json_string(b64_copy));
        json_object_set_new(req, "mask_blur", json_integer(2));
        json_object_set_new(req, "inpainting_fill", json_integer(1));
        txt = json_dumps(req, 0);
        j = call_json("POST", "/sdapi/v1/img2img", txt, &st);
        CHECK(st == 200 && json_array_size(json_object_get(j, "images")) == 1, "a1111: img2img with mask (inpaint) -> one image (%d)", st);
        char *original = strdup(st == 200 ? json_string_value(json_array_get(json_object_get(j, "images"), 0)) : "");
        json_decref(j);
        free(txt);
        /* A1111's masked content: fill, latent noise, latent nothing each start
         * the repainted region elsewhere than original (1): another image. */
        for (int fill = 0; fill <= 3; fill++) {
            if (fill == 1) continue;
            json_object_set_new(req, "inpainting_fill", json_integer(fill));
            txt = json_dumps(req, 0);
            j = call_json("POST", "/sdapi/v1/img2img", txt, &st);
            const char *im = json_string_value(json_array_get(json_object_get(j, "images"), 0));
            CHECK(st == 200 && im && original && strcmp(im, original), "a1111: inpainting_fill %d gives another image than 1 (%d)",
                  fill, st);
            json_decref(j);
            free(txt);
        }
        free(original);
        /* a data: URL works too */
        size_t n = strlen(b64_copy) + 32;
        char *url = malloc(n);
        snprintf(url, n, "data:image/png;base64,%s", b64_copy);
        json_object_set_new(req, "init_images", json_pack("[s]", url));
        json_object_del(req, "mask");
        txt = json_dumps(req, 0);
        j = call_json("POST", "/sdapi/v1/img2img", txt, &st);
        CHECK(st == 200, "a1111: img2img with a data: URL (%d)", st);
        json_decref(j);
        free(txt);
        free(url);
        json_decref(req);
    }
    free(b64_copy);

    /* progress during a long job; skip moves to its next iteration; interrupt ends it. */
    j = call_json("POST", "/v1/jobs", "{\"prompt\":\"slow\",\"steps\":150,\"n_iter\":2,\"width\":64,\"height\":64,"
                  "\"seed\":1,\"preview_every\":1}", &st);
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "id")) ? json_string_value(json_object_get(j, "id")) : "");
    json_decref(j);
    double p = 0;
    int step = 0, has_img = 0, job_no = 0;
    for (int i = 0; i < 300 && step < 3; i++) {
        usleep(20000);
        j = call_json("GET", "/sdapi/v1/progress", NULL, &st);
        p = json_number_value(json_object_get(j, "progress"));
        step = (int)json_integer_value(json_object_get(json_object_get(j, "state"), "sampling_step"));
        has_img = json_is_string(json_object_get(j, "current_image"));
        json_decref(j);
    }
    CHECK(step >= 3 && p > 0.01 && p < 0.5 && has_img, "a1111: progress while running (step %d, progress %.3f, current_image %d)", step, p, has_img);
    j = call_json("POST", "/sdapi/v1/skip", NULL, &st);
    CHECK(st == 200 && json_is_object(j), "a1111: POST skip -> JSON body");
    json_decref(j);
    for (int i = 0; i < 300 && job_no != 1; i++) {
        usleep(20000);
        j = call_json("GET", "/sdapi/v1/progress", NULL, &st);
        job_no = (int)json_integer_value(json_object_get(json_object_get(j, "state"), "job_no"));
        p = json_number_value(json_object_get(j, "progress"));
        json_decref(j);
    }
    CHECK(job_no == 1 && p > 0.5, "a1111: skip ends the current iteration (job_no %d, progress %.3f)", job_no, p);
    j = call_json("POST", "/sdapi/v1/interrupt", NULL, &st);
    CHECK(st == 200 && json_is_object(j), "a1111: POST interrupt -> JSON body");
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    const char *state = "";
    for (int i = 0; i < 500; i++) {
        j = call_json("GET", path, NULL, &st);
        state = json_string_value(json_object_get(j, "status"));
        int fin = state && (!strcmp(state, "cancelled") || !strcmp(state, "done") || !strcmp(state, "failed"));
        if (fin) { state = !strcmp(state, "cancelled") ? "cancelled" : "other"; json_decref(j); break; }
        json_decref(j);
        usleep(20000);
    }
    CHECK(!strcmp(state, "cancelled"), "native: an interrupted job ends cancelled (%s)", state);

    /* OpenAI */
    j = call_json("GET", "/v1/models", NULL, &st);
    CHECK(st == 200 && !strcmp(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id")), "tiny-sd1"),
          "openai: GET /v1/models");
    json_decref(j);
    j = call_json("POST", "/v1/images/generations", "{\"prompt\":\"a cat\",\"n\":2,\"size\":\"64x64\",\"response_format\":\"b64_json\","
                  "\"steps\":2,\"quality\":\"hd\",\"style\":\"vivid\",\"user\":\"u\",\"model\":\"dall-e-3\"}", &st);
    CHECK(st == 200 && json_array_size(json_object_get(j, "data")) == 2 &&
          json_is_string(json_object_get(json_array_get(json_object_get(j, "data"), 1), "b64_json")), "openai: images.generations n=2 (%d)", st);
    json_decref(j);

    /* metrics and page */
    http("GET", "/metrics", A, NULL, NULL, 0, &r);
    CHECK(r.status == 200 && strstr(r.body, "sdrt_queue_depth 0") && strstr(r.body, "sdrt_jobs_total{outcome=\"done\"}") &&
          strstr(r.body, "sdrt_step_seconds_bucket") && strstr(r.body, "sdrt_device_busy_seconds_total{device=\"cpu\"}"),
          "metrics: Prometheus text with queue, outcomes, histograms, device busy time");
    resp_free(&r);
    http("GET", "/", A, NULL, NULL, 0, &r);
    CHECK(r.status == 200 && strstr(r.body, "EventSource") && !strstr(r.body, "http://") && !strstr(r.body, "https://"),
          "page: GET / is one self-contained page");
    resp_free(&r);
}

/* The model of a finished A1111 request (its info's sd_model_name). */
static char *a1111_model(const char *body, int *st) {
    json_t *j = call_json("POST", "/sdapi/v1/txt2img", body, st);
    json_t *info = json_loads(json_string_value(json_object_get(j, "info")) ? json_string_value(json_object_get(j, "info")) : "",
                              0, NULL);
    const char *m = json_string_value(json_object_get(info, "sd_model_name"));
    char *out = strdup(m ? m : "?");
    json_decref(info);
    json_decref(j);
    return out;
}

static char *option_model(void) {
    int st;
    json_t *j = call_json("GET", "/sdapi/v1/options", NULL, &st);
    const char *m = json_string_value(json_object_get(j, "sd_model_checkpoint"));
    char *out = strdup(m ? m : "?");
    json_decref(j);
    return out;
}

/* override_settings.sd_model_checkpoint is the request's own unless
 * override_settings_restore_afterwards is false (A1111). */
static void test_override_restore(void) {
    int st1, st2, st3;
    char *before = option_model();
    char *m1 = a1111_model("{\"prompt\":\"a\",\"steps\":2,\"width\":64,\"height\":64,\"seed\":1,"
                           "\"override_settings\":{\"sd_model_checkpoint\":\"tiny-sd1-sched\"}}", &st1);
    char *after = option_model();
    char *m2 = a1111_model("{\"prompt\":\"a\",\"steps\":2,\"width\":64,\"height\":64,\"seed\":1}", &st2);
    CHECK(st1 == 200 && st2 == 200 && !strcmp(before, "tiny-sd1") && !strcmp(m1, "tiny-sd1-sched") && !strcmp(after, before) &&
              !strcmp(m2, before),
          "a1111: override_settings model runs that request on it (%s) and is restored afterwards (option %s -> %s, next "
          "request on %s)", m1, before, after, m2);
    free(m1); free(after); free(m2);
    m1 = a1111_model("{\"prompt\":\"a\",\"steps\":2,\"width\":64,\"height\":64,\"seed\":1,"
                     "\"override_settings_restore_afterwards\":false,"
                     "\"override_settings\":{\"sd_model_checkpoint\":\"tiny-sd1-sched\"}}", &st1);
    after = option_model();
    m2 = a1111_model("{\"prompt\":\"a\",\"steps\":2,\"width\":64,\"height\":64,\"seed\":1}", &st2);
    CHECK(st1 == 200 && st2 == 200 && !strcmp(m1, "tiny-sd1-sched") && !strcmp(after, "tiny-sd1-sched") &&
              !strcmp(m2, "tiny-sd1-sched"),
          "a1111: override_settings_restore_afterwards false keeps the override as the option (%s, next request on %s)", after, m2);
    free(m1); free(after); free(m2);
    json_t *j = call_json("POST", "/sdapi/v1/options", "{\"sd_model_checkpoint\":\"tiny-sd1\"}", &st3);
    json_decref(j);
    after = option_model();
    CHECK(st3 == 200 && !strcmp(after, "tiny-sd1"), "a1111: POST options switches the option back (%s)", after);
    free(after);
    free(before);
}

static void test_errors(void) {
    struct { const char *method, *path, *body; int status; const char *field; } cases[] = {
        {"POST", "/sdapi/v1/txt2img", "{\"prompt\": \"x\",", 400, "body"},
        {"POST", "/sdapi/v1/txt2img", "{\"prompt\": 5}", 422, "prompt"},
        {"POST", "/sdapi/v1/txt2img", "{\"steps\": \"many\"}", 422, "steps"},
        {"POST", "/sdapi/v1/txt2img", "{\"width\": 100000}", 422, "width"},
        {"POST", "/sdapi/v1/txt2img", "{\"width\": 60}", 422, "width"},
        {"POST", "/sdapi/v1/txt2img", "{\"steps\": 100000}", 422, "steps"},
        {"POST", "/sdapi/v1/txt2img", "{\"batch_size\": 1000}", 422, "batch_size"},
        {"POST", "/sdapi/v1/txt2img", "{\"sampler_name\": \"Nope 3000\"}", 422, "sampler_name"},
        {"POST", "/sdapi/v1/txt2img", "{\"override_settings\": {\"sd_model_checkpoint\": \"nope\"}}", 422,
         "override_settings.sd_model_checkpoint"},
        {"POST", "/sdapi/v1/options", "{\"sd_model_checkpoint\": \"nope\"}", 422, "sd_model_checkpoint"},
        {"POST", "/sdapi/v1/img2img", "{\"init_images\": [\"***not base64***\"]}", 422, "init_images[0]"},
        {"POST", "/sdapi/v1/img2img", "{\"init_images\": [\"aGVsbG8gd29ybGQ=\"]}", 422, "init_images[0]"},
        {"POST", "/sdapi/v1/img2img", "{\"init_images\": 3}", 422, "init_images"},
        {"POST", "/sdapi/v1/png-info", "{\"image\": \"%%%\"}", 422, "image"},
        {"POST", "/v1/jobs", "[1, 2]", 422, "body"},
        {"GET", "/v1/jobs/doesnotexist", NULL, 404, "id"},
        {"GET", "/sdapi/v1/nothing-here", NULL, 404, NULL},
        {"POST", "/v1/images/generations", "{\"prompt\": \"x\", \"size\": \"big\"}", 400, "size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int st;
        json_t *j = call_json(cases[i].method, cases[i].path, cases[i].body, &st);
        const char *field = json_string_value(json_object_get(j, "field"));
        if (!field) field = json_string_value(json_object_get(json_object_get(j, "error"), "param"));
        int ok = st == cases[i].status && j && (!cases[i].field || (field && !strcmp(field, cases[i].field)));
        CHECK(ok, "errors: %s %s %.40s -> %d naming '%s' (got %d, '%s')", cases[i].method, cases[i].path,
              cases[i].body ? cases[i].body : "", cases[i].status, cases[i].field ? cases[i].field : "", st, field ? field : "");
        json_decref(j);
    }
    /* Body over --max-body-mb 1. */
    size_t big = (3u << 20) / 2;
    char *b = malloc(big);
    memset(b, ' ', big);
    b[0] = '{', b[big - 1] = '}';
    struct resp r;
    http("POST", "/sdapi/v1/txt2img", A, NULL, b, big, &r);
    CHECK(r.status == 413 && strstr(r.body, "limit"), "errors: 1.5 MiB body over a 1 MiB limit -> 413 JSON (%d)", r.status);
    resp_free(&r);
    free(b);
    int st;
    json_t *j = call_json("GET", "/health", NULL, &st);
    CHECK(st == 200, "errors: the server keeps serving after every bad request");
    json_decref(j);
}

static void test_sse(void) {
    int st;
    json_t *j = call_json("POST", "/v1/jobs", "{\"prompt\":\"sse\",\"steps\":4,\"width\":64,\"height\":64,\"seed\":5,\"preview_every\":2}", &st);
    const char *id = json_string_value(json_object_get(j, "id"));
    CHECK(st == 202 && id, "native: POST /v1/jobs -> 202 with an id (%d)", st);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/events", id ? id : "x");
    json_decref(j);
    struct resp r;
    http("GET", path, A, NULL, NULL, 0, &r);
    /* queue < running < step 1 < preview (step 2) < result */
    const char *q = strstr(r.body, "event: queue"), *run = strstr(r.body, "event: running"), *s1 = strstr(r.body, "event: step"),
               *pv = strstr(r.body, "event: preview"), *res = strstr(r.body, "event: result");
    CHECK(r.status == 200 && strcasestr(r.head, "text/event-stream") && q && run && s1 && pv && res && q < run && run < s1 &&
          s1 < pv && pv < res, "sse: queue, running, step, preview, result in order");
    int steps = 0;
    for (const char *p = r.body; (p = strstr(p, "event: step")); p++) steps++;
    CHECK(steps == 4, "sse: one step event per step (%d)", steps);
    resp_free(&r);
    http("GET", path, A, "Last-Event-ID: 3\r\n", NULL, 0, &r);
    CHECK(r.status == 200 && !strstr(r.body, "id: 3\n") && strstr(r.body, "id: 4\n") && strstr(r.body, "event: result"),
          "sse: Last-Event-ID 3 resumes at event 4");
    resp_free(&r);
}

struct conc {
    pthread_mutex_t mu;
    int next, done, cancelled, failed, mismatched, lost;
    char ids[N_JOBS][32];
    char *ref[4];
    size_t ref_len[4];
    double deadline;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *client(void *arg) {
    struct conc *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        int i = c->next++;
        pthread_mutex_unlock(&c->mu);
        if (i >= N_JOBS) return NULL;
        char body[256];
        snprintf(body, sizeof body, "{\"prompt\":\"a red cube\",\"negative_prompt\":\"blurry\",\"steps\":2,\"width\":64,"
                 "\"height\":64,\"sampler\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":%d,\"preview_every\":0}", 100 + i % 4);
        int st;
        json_t *j = call_json("POST", "/v1/jobs", body, &st);
        const char *id = json_string_value(json_object_get(j, "id"));
        pthread_mutex_lock(&c->mu);
        snprintf(c->ids[i], sizeof c->ids[i], "%s", id ? id : "");
        pthread_mutex_unlock(&c->mu);
        json_decref(j);
        if (st != 202 || !id) { pthread_mutex_lock(&c->mu); c->lost++; pthread_mutex_unlock(&c->mu); continue; }
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%s", c->ids[i]);
        if (i % (N_JOBS / N_CANCEL) == 3) json_decref(call_json("DELETE", path, NULL, &st));
        const char *state = NULL;
        char sbuf[16] = "";
        while (now_s() < c->deadline) {
            j = call_json("GET", path, NULL, &st);
            state = json_string_value(json_object_get(j, "status"));
            snprintf(sbuf, sizeof sbuf, "%s", state ? state : "");
            json_decref(j);
            if (!strcmp(sbuf, "done") || !strcmp(sbuf, "cancelled") || !strcmp(sbuf, "failed")) break;
            usleep(10000);
        }
        int ok = 0;
        if (!strcmp(sbuf, "done")) {
            char ip[160];
            snprintf(ip, sizeof ip, "%s/images/0.png", path);
            struct resp r;
            http("GET", ip, A, NULL, NULL, 0, &r);
            int k = i % 4;
            ok = r.status == 200 && r.len == c->ref_len[k] && !memcmp(r.body, c->ref[k], r.len);
            if (!ok) {
                struct sd_ctx ctx = {0};
                float *a = NULL, *b = NULL;
                int w, h, w2, h2;
                double md = -1;
                if (!sd_png_read_mem(&ctx, "got", r.body, r.len, 64, &a, &w, &h) &&
                    !sd_png_read_mem(&ctx, "ref", c->ref[k], c->ref_len[k], 64, &b, &w2, &h2) && w == w2 && h == h2) {
                    md = 0;
                    for (int q = 0; q < 3 * w * h; q++) md = fmax(md, fabs((double)a[q] - (double)b[q]) * 127.5);
                }
                printf("  job %d (%s, seed %d): image of %zu bytes differs from the reference (%zu bytes), max diff %.1f levels\n",
                       i, c->ids[i], 100 + k, r.len, c->ref_len[k], md);
                free(a);
                free(b);
            }
            resp_free(&r);
        }
        pthread_mutex_lock(&c->mu);
        if (!strcmp(sbuf, "done")) { c->done++; c->mismatched += !ok; }
        else if (!strcmp(sbuf, "cancelled")) c->cancelled++;
        else if (!strcmp(sbuf, "failed")) c->failed++;
        else c->lost++;
        pthread_mutex_unlock(&c->mu);
    }
}

static void test_concurrency(void) {
    static struct conc c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    for (int k = 0; k < 4; k++) c.ref[k] = reference_png(100 + k, &c.ref_len[k]);
    CHECK(c.ref[0] && c.ref[3], "concurrency: reference images from sdrt txt2img");
    long rss0 = rss_kb();
    double t0 = now_s();
    c.deadline = t0 + 240;
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) pthread_create(&th[i], NULL, client, &c);
    for (int i = 0; i < N_CLIENTS; i++) pthread_join(th[i], NULL);
    double secs = now_s() - t0;
    int dup = 0;
    for (int i = 0; i < N_JOBS; i++)
        for (int k = i + 1; k < N_JOBS; k++) dup += c.ids[i][0] && !strcmp(c.ids[i], c.ids[k]);
    CHECK(c.done + c.cancelled == N_JOBS && c.failed == 0 && c.lost == 0 && dup == 0 && c.cancelled >= 1,
          "concurrency: %d jobs from %d clients: %d done, %d cancelled, %d failed, %d lost, %d duplicate ids (%.1f s)",
          N_JOBS, N_CLIENTS, c.done, c.cancelled, c.failed, c.lost, dup, secs);
    CHECK(c.mismatched == 0, "concurrency: every finished image byte-identical to sdrt txt2img (%d of %d differ)", c.mismatched, c.done);
    long rss1 = rss_kb();
    CHECK(rss0 > 0 && rss1 > 0 && rss1 - rss0 < 64 * 1024, "concurrency: server RSS %ld kB before, %ld kB after (+%ld kB)",
          rss0, rss1, rss1 - rss0);
    for (int k = 0; k < 4; k++) free(c.ref[k]);
}

/* A pool over the CPU and the OpenCL device (PoCL here): jobs run on both;
 * the same seed gives the same image on either, within a rounding level
 * of 8-bit output per pixel (OpenCL vs CPU differ in float rounding). */
static void test_pool(void) {
    char sdrt[PATH_MAX + 16];
    snprintf(sdrt, sizeof sdrt, "%s/../sdrt", bindir);
    const char *argv[] = {sdrt, "serve", "--model", "tests/models/tiny-sd1", "--port", "0", "--threads", "1",
                          "--devices", "cpu,opencl:0", "--balance", "round-robin", NULL}; /* no credentials: the page test uses it too */
    if (start_server_args(argv)) { test_fail("pool: the cpu,opencl:0 server did not start"); return; }
    size_t ref_len = 0;
    char *ref = reference_png(100, &ref_len);
    struct sd_ctx ctx = {0};
    float *rimg = NULL;
    int w, h;
    if (!ref || sd_png_read_mem(&ctx, "ref", ref, ref_len, 64, &rimg, &w, &h)) { test_fail("pool: reference: %s", ctx.msg); free(ref); stop_server(); return; }
    char ids[8][32];
    for (int i = 0; i < 8; i++) {
        int st;
        json_t *j = call_json("POST", "/v1/jobs", "{\"prompt\":\"a red cube\",\"negative_prompt\":\"blurry\",\"steps\":2,"
                              "\"width\":64,\"height\":64,\"sampler\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":100,\"preview_every\":0}", &st);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(j, "id")) ? json_string_value(json_object_get(j, "id")) : "");
        json_decref(j);
    }
    int on_cpu = 0, on_cl = 0, done = 0, identical_cpu = 0;
    double max_diff = 0;
    for (int i = 0; i < 8; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%s", ids[i]);
        json_t *j = NULL;
        int st;
        for (int k = 0; k < 1500; k++) {
            json_decref(j);
            j = call_json("GET", path, NULL, &st);
            const char *s = json_string_value(json_object_get(j, "status"));
            if (s && strcmp(s, "queued") && strcmp(s, "running")) break;
            usleep(20000);
        }
        const char *dev = json_string_value(json_object_get(j, "device"));
        int is_cl = dev && !strncmp(dev, "opencl", 6);
        if (json_string_value(json_object_get(j, "status")) && !strcmp(json_string_value(json_object_get(j, "status")), "done")) {
            done++;
            on_cl += is_cl, on_cpu += !is_cl;
            char ip[160];
            snprintf(ip, sizeof ip, "%s/images/0.png", path);
            struct resp r;
            http("GET", ip, A, NULL, NULL, 0, &r);
            float *img = NULL;
            int iw, ih;
            if (r.status == 200 && !sd_png_read_mem(&ctx, "got", r.body, r.len, 64, &img, &iw, &ih) && iw == w && ih == h) {
                for (int q = 0; q < 3 * w * h; q++) {
                    double d = fabs((double)img[q] - (double)rimg[q]) * 127.5; /* in 8-bit levels */
                    if (d > max_diff) max_diff = d;
                }
                if (!is_cl && r.len == ref_len && !memcmp(r.body, ref, ref_len)) identical_cpu++;
            }
            free(img);
            resp_free(&r);
        }
        json_decref(j);
    }
    CHECK(done == 8 && on_cpu == 4 && on_cl == 4, "pool: 8 jobs round-robin over cpu + opencl:0: %d done, %d on cpu, %d on opencl",
          done, on_cpu, on_cl);
    CHECK(identical_cpu == on_cpu && max_diff <= 2.0, "pool: same seed, same image on either device (cpu byte-identical %d/%d; "
          "max diff %.2f of 255 levels, tolerance 2)", identical_cpu, on_cpu, max_diff);
    free(rimg);
    free(ref);
}

/* The page in headless Chromium (Debian's chromium), end to end: autorun=1
 * submits the form from the query string; the DOM after the run shows a
 * preview received over SSE, the result image and its parameters; a
 * screenshot of the window decodes at the window's size and is not blank. */
static void test_page(void) {
    char cmd[1024], out[256];
    snprintf(out, sizeof out, "/tmp/sdrt-test-server-page-%d.png", (int)getpid());
    const char *url_q = "?autorun=1&prompt=a%20lighthouse&width=64&height=64&steps=6&seed=9";
    snprintf(cmd, sizeof cmd, "timeout 120 chromium --headless=new --no-sandbox --disable-gpu --virtual-time-budget=30000 "
             "--dump-dom 'http://127.0.0.1:%d/%s' 2>/dev/null", port, url_q);
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 20, len = 0;
    char *dom = calloc(1, cap);
    for (size_t k; p && len < cap - 1 && (k = fread(dom + len, 1, cap - 1 - len, p)) > 0;) len += k;
    int st = p ? pclose(p) : -1;
    CHECK(st == 0 && strstr(dom, "id=\"status\" data-preview=\"1\">done<") && strstr(dom, "src=\"/v1/jobs/") &&
          strstr(dom, "Seed: 9, Size: 64x64"), "page: headless Chromium submits the form, sees a preview over SSE, gets the "
          "image and its parameters (%zu bytes of DOM)", len);
    free(dom);
    snprintf(cmd, sizeof cmd, "timeout 120 chromium --headless=new --no-sandbox --disable-gpu --virtual-time-budget=30000 "
             "--window-size=800,700 --screenshot=%s 'http://127.0.0.1:%d/%s' >/dev/null 2>&1", out, port, url_q);
    st = system(cmd);
    struct sd_ctx ctx = {0};
    float *img = NULL;
    int w = 0, h = 0;
    double lo = 1e9, hi = -1e9;
    if (st == 0 && !sd_png_read(&ctx, out, 4096, &img, &w, &h))
        for (int q = 0; q < 3 * w * h; q++) lo = fmin(lo, img[q]), hi = fmax(hi, img[q]);
    CHECK(w == 800 && h == 700 && hi - lo > 1.0, "page: screenshot %dx%d, value range %.2f", w, h, hi - lo);
    free(img);
    unlink(out);
}

static void test_clients(void) {
    char cmd[PATH_MAX * 2], line[1024];
    snprintf(cmd, sizeof cmd, "build/testenv/bin/python tests/server_clients.py %d %s 2>&1", port, KEY);
    FILE *p = popen(cmd, "r");
    int n = 0;
    while (p && fgets(line, sizeof line, p)) {
        if (!strncmp(line, "ok ", 3)) { fputs(line, stdout); n++; }
        else if (!strncmp(line, "FAIL ", 5)) { fputs(line, stdout); test_failures++; }
        else fprintf(stdout, "  %s", line);
    }
    int st = p ? pclose(p) : -1;
    CHECK(st == 0 && n >= 8, "clients: webuiapi and openai packages ran against the server (%d ok lines)", n);
}

int main(int argc, char **argv) {
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    /* The parity mode on every machine: the server and the sdrt txt2img
     * references it is compared with would otherwise default to --precision
     * auto (bf16 where the CPU has it), and the OpenCL device (PoCL, f32) is
     * held to the f32 CPU-vs-OpenCL tolerance. */
    setenv("SDRT_PRECISION", "f32", 1);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    snprintf(bindir, sizeof bindir, "%s", n > 0 ? exe : argv[0]);
    char *slash = strrchr(bindir, '/');
    if (slash) *slash = 0;
    /* --models-dir: a second model to switch to (webuiapi's options test). */
    snprintf(models_dir, sizeof models_dir, "/tmp/sdrt-test-server-models-%d", (int)getpid());
    char cwd[PATH_MAX], link[PATH_MAX + 64], target[PATH_MAX + 64];
    if (!getcwd(cwd, sizeof cwd) || mkdir(models_dir, 0755)) { test_fail("server: cannot make %s", models_dir); return 1; }
    snprintf(link, sizeof link, "%s/tiny-sd1-sched", models_dir);
    snprintf(target, sizeof target, "%s/tests/models/tiny-sd1-sched", cwd);
    if (symlink(target, link)) { test_fail("server: cannot link %s", link); return 1; }
    if (start_server(NULL)) {
        test_fail("server: did not start");
        return 1;
    }
    test_ok("server: started on 127.0.0.1:%d", port);
    test_endpoints();
    test_override_restore();
    test_errors();
    test_sse();
    test_concurrency();
    test_clients();
    stop_server();
    test_pool();
    test_page();
    stop_server();
    unlink(link);
    rmdir(models_dir);
    return test_failures ? 1 : 0;
}
