/* test_server_lora.c - LoRA in `sdrt serve`: the built binary on a free
 * loopback port with the tiny model, two CPU workers and a --lora-dir (a
 * copy of tests/lora plus a broken file). GET /sdapi/v1/loras as A1111
 * lists it, refresh-loras; an A1111 txt2img with a <lora:NAME:W> tag is
 * byte-identical to `sdrt txt2img` with the same tag (PNG parameters with
 * Lora hashes included); jobs with two LoRA sets, the native `loras` field
 * and no LoRA, interleaved over the two workers, each equal to its
 * sequential CLI reference; unknown names, bad files and paths outside the
 * folder -> 422 naming them, a LoRA that does not fit the model -> a failed
 * job, and the next job without LoRA equals the CLI's image. */
#define _GNU_SOURCE
#include "test.h"
#include "safetensors.h"
#include "http_client.h"

#include <jansson.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
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
#define N_JOBS 8
#else
#define N_JOBS 16
#endif
#define KEY "test-key-lora"

static char bindir[PATH_MAX];
static char lora_dir[64];

static const char *A = "Bearer " KEY;

static json_t *call_json(const char *method, const char *path, const char *body, int *status) {
    struct resp r;
    if (http(method, path, A, NULL, body, body ? strlen(body) : 0, &r)) { *status = -1; return NULL; }
    *status = r.status;
    json_t *j = json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL);
    resp_free(&r);
    return j;
}

/* `sdrt txt2img` as the jobs run it: prompt (tags resolved in tests/lora),
 * optional --lora, seed. */
static char *reference_png_of(const char *model, const char *prompt, const char *lora, long long seed, size_t *n) {
    char cmd[PATH_MAX * 2], out[96];
    snprintf(out, sizeof out, "/tmp/sdrt-test-slora-%d-%lld.png", (int)getpid(), seed);
    snprintf(cmd, sizeof cmd, "%s/../sdrt txt2img --model %s -p '%s' -n 'blurry' --steps 2 "
             "-W 64 -H 64 --sampler 'Euler a' --cfg-scale 7.5 --seed %lld --lora-dir tests/lora %s%s -q -o %s 2>/dev/null",
             bindir, model, prompt, seed, lora ? "--lora " : "", lora ? lora : "", out);
    if (system(cmd) != 0) return NULL;
    char *b = test_read_file(out, n);
    unlink(out);
    return b;
}

static char *reference_png(const char *prompt, const char *lora, long long seed, size_t *n) {
    return reference_png_of("tests/models/tiny-sd1", prompt, lora, seed, n);
}

static char *b64_decode_cmd(const char *b64, size_t *n) {
    char cmd[256], path[96];
    snprintf(path, sizeof path, "/tmp/sdrt-test-slora-%d.png", (int)getpid());
    snprintf(cmd, sizeof cmd, "base64 -d > %s", path);
    FILE *p = popen(cmd, "w");
    fputs(b64, p);
    pclose(p);
    char *got = test_read_file(path, n);
    unlink(path);
    return got;
}

/* Waits for a native job; returns its final status (malloc'd JSON). */
static json_t *wait_job(const char *id) {
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    for (int i = 0; i < 3000; i++) {
        int st;
        json_t *j = call_json("GET", path, NULL, &st);
        const char *s = json_string_value(json_object_get(j, "status"));
        if (s && (!strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled"))) return j;
        json_decref(j);
        if (kill(server_pid, 0) != 0 || server_dead()) return NULL; /* the server died: fail now, not in minutes */
        usleep(20000);
    }
    return NULL;
}

static char *job_png(const char *id, size_t *n) {
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s/images/0.png", id);
    struct resp r;
    if (http("GET", path, A, NULL, NULL, 0, &r) || r.status != 200) { resp_free(&r); return NULL; }
    char *b = r.body;
    *n = r.len;
    r.body = NULL;
    resp_free(&r);
    return b;
}

static char *submit(const char *body) {
    int st;
    json_t *j = call_json("POST", "/v1/jobs", body, &st);
    const char *id = st == 202 ? json_string_value(json_object_get(j, "id")) : NULL;
    char *r = id ? strdup(id) : NULL;
    json_decref(j);
    return r;
}

static void test_listing(void) {
    int st;
    json_t *j = call_json("GET", "/sdapi/v1/loras", NULL, &st);
    int n = (int)json_array_size(j), alias = 0, fields = 1;
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(j, i);
        fields &= json_is_string(json_object_get(e, "name")) && json_is_string(json_object_get(e, "alias")) &&
                   json_is_string(json_object_get(e, "path")) && json_is_object(json_object_get(e, "metadata"));
        if (!strcmp(json_string_value(json_object_get(e, "name")) ? json_string_value(json_object_get(e, "name")) : "", "sd1_kohya"))
            alias = !strcmp(json_string_value(json_object_get(e, "alias")), "kohya_alias") &&
                    json_is_string(json_object_get(json_object_get(e, "metadata"), "ss_output_name"));
    }
    CHECK(st == 200 && n == 12 && fields && alias,
          "loras: GET /sdapi/v1/loras lists the 12 files of tests/lora as A1111 (name, alias = ss_output_name, path, metadata) (%d, %d)", st, n);
    json_decref(j);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/extra.safetensors", lora_dir);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "cp tests/lora/sd1_te.safetensors %s", p);
    if (system(cmd)) test_fail("loras: cannot copy %s", p);
    j = call_json("GET", "/sdapi/v1/loras", NULL, &st);
    int before = (int)json_array_size(j);
    json_decref(j);
    j = call_json("POST", "/sdapi/v1/refresh-loras", "{}", &st);
    json_decref(j);
    j = call_json("GET", "/sdapi/v1/loras", NULL, &st);
    CHECK(before == 12 && json_array_size(j) == 13, "loras: refresh-loras rescans --lora-dir (%d -> %zu)", before, json_array_size(j));
    json_decref(j);
    unlink(p);
    j = call_json("POST", "/sdapi/v1/refresh-loras", "{}", &st);
    json_decref(j);
}

static void test_a1111_tag(void) {
    size_t ref_len = 0, n = 0;
    char *ref = reference_png("a red cube <lora:kohya_alias:0.8>", NULL, 7, &ref_len);
    int st;
    json_t *j = call_json("POST", "/sdapi/v1/txt2img",
                          "{\"prompt\":\"a red cube <lora:kohya_alias:0.8>\",\"negative_prompt\":\"blurry\",\"steps\":2,"
                          "\"width\":64,\"height\":64,\"sampler_name\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":7}", &st);
    const char *b64 = json_string_value(json_array_get(json_object_get(j, "images"), 0));
    char *got = b64 ? b64_decode_cmd(b64, &n) : NULL;
    const char *info = json_string_value(json_object_get(j, "info"));
    CHECK(st == 200 && ref && got && n == ref_len && !memcmp(got, ref, n) && info && strstr(info, "Lora hashes: \\\"kohya_alias: "),
          "a1111: txt2img with <lora:kohya_alias:0.8> byte-identical to sdrt txt2img with the tag, Lora hashes in the "
          "parameters (%d, %zu bytes)", st, n);
    free(got);
    free(ref);
    json_decref(j);
    /* OpenAI with a tag */
    j = call_json("POST", "/v1/images/generations", "{\"prompt\":\"a cat <lora:sd1_unet:0.7>\",\"size\":\"64x64\","
                  "\"steps\":2,\"response_format\":\"b64_json\"}", &st);
    CHECK(st == 200 && json_is_string(json_object_get(json_array_get(json_object_get(j, "data"), 0), "b64_json")),
          "openai: images.generations with a <lora:...> tag (%d)", st);
    json_decref(j);
}

/* A request for another model (override_settings) with the LoRA set that is
 * active on the current model: the worker switches the model, whose fresh
 * LoRA state has no set, and must apply the request's set to it. */
static void test_model_override(void) {
    size_t n = 0, ref_len = 0, n2 = 0, ref2_len = 0;
    int st;
    json_t *j = call_json("POST", "/sdapi/v1/txt2img",
                          "{\"prompt\":\"a red cube <lora:kohya_alias:0.8>\",\"negative_prompt\":\"blurry\",\"steps\":2,"
                          "\"width\":64,\"height\":64,\"sampler_name\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":11}", &st);
    json_decref(j);
    char *ref = reference_png_of("tests/models/tiny-sd1-sched", "a red cube <lora:kohya_alias:0.8>", NULL, 11, &ref_len);
    j = call_json("POST", "/sdapi/v1/txt2img",
                  "{\"prompt\":\"a red cube <lora:kohya_alias:0.8>\",\"negative_prompt\":\"blurry\",\"steps\":2,"
                  "\"width\":64,\"height\":64,\"sampler_name\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":11,"
                  "\"override_settings\":{\"sd_model_checkpoint\":\"tiny-sd1-sched\"}}", &st);
    const char *b64 = json_string_value(json_array_get(json_object_get(j, "images"), 0));
    char *got = b64 ? b64_decode_cmd(b64, &n) : NULL;
    CHECK(st == 200 && ref && got && n == ref_len && !memcmp(got, ref, n),
          "model override with the active LoRA set: the LoRA is applied to the other model (byte-identical to sdrt "
          "txt2img --model tiny-sd1-sched with the tag) (%d, %zu bytes)", st, n);
    json_decref(j);
    free(got);
    free(ref);
    /* and back on the option's model, the same set again */
    char *ref2 = reference_png("a red cube <lora:kohya_alias:0.8>", NULL, 11, &ref2_len);
    j = call_json("POST", "/sdapi/v1/txt2img",
                  "{\"prompt\":\"a red cube <lora:kohya_alias:0.8>\",\"negative_prompt\":\"blurry\",\"steps\":2,"
                  "\"width\":64,\"height\":64,\"sampler_name\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":11}", &st);
    b64 = json_string_value(json_array_get(json_object_get(j, "images"), 0));
    got = b64 ? b64_decode_cmd(b64, &n2) : NULL;
    CHECK(st == 200 && ref2 && got && n2 == ref2_len && !memcmp(got, ref2, n2),
          "model restored after the override: the LoRA set applied again on tiny-sd1 (byte-identical) (%d)", st);
    json_decref(j);
    free(got);
    free(ref2);
}

/* Jobs with set A (tag), set B (tag), C (none) and D (`loras` field, the
 * same file and weights as B) interleaved over two workers. */
static void test_concurrent_sets(void) {
    static const char *prompts[4] = {"a red cube <lora:kohya_alias:0.8>", "a red cube <lora:sd1_locon:0.5>", "a red cube",
                                     "a red cube"};
    static const char *cli_lora[4] = {NULL, NULL, NULL, "tests/lora/sd1_locon.safetensors:0.5"};
    char *ref[4][2];
    size_t ref_len[4][2];
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < 2; k++) ref[s][k] = reference_png(prompts[s], cli_lora[s], 100 + k, &ref_len[s][k]);
    char *ids[N_JOBS];
    double t0 = (double)time(NULL);
    for (int i = 0; i < N_JOBS; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"negative_prompt\":\"blurry\",\"steps\":2,\"width\":64,\"height\":64,"
                 "\"sampler\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":%d,\"preview_every\":0%s}", prompts[i % 4], 100 + (i / 4) % 2,
                 i % 4 == 3 ? ",\"loras\":[{\"name\":\"sd1_locon\",\"weight\":0.5}]" : "");
        ids[i] = submit(body);
    }
    int equal = 0, done = 0, devices = 0;
    char seen[2][32] = {"", ""};
    for (int i = 0; i < N_JOBS; i++) {
        json_t *st = ids[i] ? wait_job(ids[i]) : NULL;
        const char *s = json_string_value(json_object_get(st, "status"));
        const char *dev = json_string_value(json_object_get(st, "device"));
        if (dev && strcmp(dev, seen[0]) && strcmp(dev, seen[1]) && devices < 2) snprintf(seen[devices++], 32, "%s", dev);
        if (s && !strcmp(s, "done")) {
            done++;
            size_t n = 0;
            char *png = job_png(ids[i], &n);
            const int set = i % 4, k = (i / 4) % 2;
            if (png && ref[set][k] && n == ref_len[set][k] && !memcmp(png, ref[set][k], n)) equal++;
            else printf("# job %d (set %d, seed %d) differs from its CLI reference\n", i, set, 100 + k);
            free(png);
        }
        json_decref(st);
        free(ids[i]);
    }
    struct resp r;
    long switches = -1;
    if (!http("GET", "/metrics", A, NULL, NULL, 0, &r)) {
        const char *p = strstr(r.body, "\nsdrt_lora_switches_total ");
        if (p) switches = atol(p + 26);
        resp_free(&r);
    }
    CHECK(done == N_JOBS && equal == N_JOBS && switches >= 2,
          "concurrency: %d interleaved jobs with LoRA sets A, B, none and `loras` (= B) on 2 CPU workers: %d done, %d "
          "byte-identical to their sequential sdrt txt2img, %ld LoRA set switches, %.0f s",
          N_JOBS, done, equal, switches, (double)time(NULL) - t0);
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < 2; k++) free(ref[s][k]);
}

/* Scheduling: a long job holds set A on one worker; B waits for the model
 * while at most 4 younger A jobs pass it on the other worker (grouping,
 * SRV_LORA_MAX_BYPASS); B is still queued then. The long job is cancelled:
 * B switches the set, and the A jobs behind it start after it. */
static void test_fairness(void) {
    char *ids[8];
    ids[0] = submit("{\"prompt\":\"long <lora:kohya_alias:0.8>\",\"steps\":150,\"n_iter\":16,\"width\":256,\"height\":256,"
                    "\"preview_every\":0}");
    usleep(100000);
    ids[1] = submit("{\"prompt\":\"b <lora:sd1_locon:0.5>\",\"steps\":2,\"width\":64,\"height\":64,\"preview_every\":0}");
    for (int i = 2; i < 8; i++)
        ids[i] = submit("{\"prompt\":\"a <lora:kohya_alias:0.8>\",\"steps\":2,\"width\":64,\"height\":64,\"preview_every\":0}");
    for (int i = 2; i < 6; i++) json_decref(ids[i] ? wait_job(ids[i]) : NULL);
    char path[128];
    int st, queued = 0;
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof path, "/v1/jobs/%s", ids[i] ? ids[i] : "none");
        json_t *j = call_json("GET", path, NULL, &st);
        const char *s = json_string_value(json_object_get(j, "status"));
        queued |= (s && !strcmp(s, "queued")) << i;
        json_decref(j);
    }
    snprintf(path, sizeof path, "/v1/jobs/%s", ids[0] ? ids[0] : "none");
    json_decref(call_json("DELETE", path, NULL, &st));
    double at[8] = {0};
    int done = 0;
    const char *want[8] = {"cancelled", "done", "done", "done", "done", "done", "done", "done"};
    for (int i = 0; i < 8; i++) {
        json_t *j = ids[i] ? wait_job(ids[i]) : NULL;
        const char *s = json_string_value(json_object_get(j, "status"));
        done += s && !strcmp(s, want[i]);
        at[i] = json_number_value(json_object_get(j, "started_at"));
        json_decref(j);
        free(ids[i]);
    }
    int before = 0, after = 0;
    for (int i = 2; i < 8; i++) {
        before += at[i] < at[1];
        after += at[i] > at[1];
    }
    CHECK(done == 8 && queued == (1 << 1 | 1 << 6 | 1 << 7) && before == 4 && after == 2,
          "scheduling: while a long set-A job runs, 4 younger set-A jobs pass the waiting set-B job (bound 4) and the "
          "other 2 wait behind it; B runs once the model is free (%d before, %d after, queued mask 0x%x)",
          before, after, queued);
}

static void test_errors(void) {
    size_t ref_len = 0;
    char *ref = reference_png("a red cube", NULL, 100, &ref_len);
    const char *plain = "{\"prompt\":\"a red cube\",\"negative_prompt\":\"blurry\",\"steps\":2,\"width\":64,\"height\":64,"
                        "\"sampler\":\"Euler a\",\"cfg_scale\":7.5,\"seed\":100}";
    int st;
    json_t *j = call_json("POST", "/sdapi/v1/txt2img", "{\"prompt\":\"cat <lora:nope:1>\",\"steps\":2,\"width\":64,\"height\":64}", &st);
    const char *d = json_string_value(json_object_get(j, "detail"));
    if (!d) d = json_string_value(json_object_get(j, "error"));
    char *txt = j ? json_dumps(j, 0) : NULL;
    CHECK(st == 422 && txt && strstr(txt, "nope") && strstr(txt, "ss_output_name"),
          "errors: unknown <lora:nope:1> -> 422 naming it (%d: %.160s)", st, txt ? txt : "");
    free(txt);
    json_decref(j);
    j = call_json("POST", "/v1/jobs", "{\"prompt\":\"cat <lora:broken:1>\",\"steps\":2,\"width\":64,\"height\":64}", &st);
    txt = j ? json_dumps(j, 0) : NULL;
    CHECK(st == 422 && txt && strstr(txt, "broken"), "errors: a malformed LoRA file -> 422 naming it (%d: %.160s)", st, txt ? txt : "");
    free(txt);
    json_decref(j);
    j = call_json("POST", "/v1/jobs", "{\"prompt\":\"cat\",\"loras\":[{\"path\":\"/etc/passwd\"}],\"steps\":2,\"width\":64,\"height\":64}", &st);
    txt = j ? json_dumps(j, 0) : NULL;
    CHECK(st == 422 && txt && strstr(txt, "inside --lora-dir"), "errors: a `loras` path outside --lora-dir -> 422 (%d: %.160s)", st,
          txt ? txt : "");
    free(txt);
    json_decref(j);
    j = call_json("POST", "/v1/jobs", "{\"prompt\":\"cat\",\"loras\":[{\"name\":\"sd1_te\",\"weight\":\"x\"}]}", &st);
    CHECK(st == 422, "errors: a `loras` weight of the wrong type -> 422 (%d)", st);
    json_decref(j);
    /* A LoRA for another model: the job fails before sampling, the model stays as it was. */
    char *id = submit("{\"prompt\":\"cat <lora:nomatch:1>\",\"steps\":2,\"width\":64,\"height\":64}");
    json_t *fs = id ? wait_job(id) : NULL;
    const char *s = json_string_value(json_object_get(fs, "status"));
    txt = fs ? json_dumps(fs, 0) : NULL;
    CHECK(s && !strcmp(s, "failed") && strstr(txt, "nomatch") && strstr(txt, "no_such_block"),
          "errors: a LoRA that matches nothing in the model -> failed job naming the file and a key (%.300s)",
          txt ? txt : "");
    free(txt);
    json_decref(fs);
    free(id);
    /* The same through A1111's synchronous txt2img: the request's fault, so a
     * 422 naming the file (was 500), as an OpenAI images request. */
    j = call_json("POST", "/sdapi/v1/txt2img", "{\"prompt\":\"cat <lora:nomatch:1>\",\"steps\":2,\"width\":64,\"height\":64}", &st);
    txt = j ? json_dumps(j, 0) : NULL;
    CHECK(st == 422 && txt && strstr(txt, "nomatch"), "errors: A1111 txt2img with a LoRA that does not fit -> 422 naming it (%d: %.200s)",
          st, txt ? txt : "");
    free(txt);
    json_decref(j);
    j = call_json("POST", "/v1/images/generations", "{\"prompt\":\"cat <lora:nomatch:1>\",\"size\":\"64x64\"}", &st);
    txt = j ? json_dumps(j, 0) : NULL;
    CHECK(st == 422 && txt && strstr(txt, "nomatch"), "errors: OpenAI images with a LoRA that does not fit -> 422 naming it (%d: %.200s)",
          st, txt ? txt : "");
    free(txt);
    json_decref(j);
    id = submit(plain);
    fs = id ? wait_job(id) : NULL;
    size_t n = 0;
    char *png = id ? job_png(id, &n) : NULL;
    CHECK(png && ref && n == ref_len && !memcmp(png, ref, n), "errors: the next job without LoRA equals sdrt txt2img (%zu bytes)", n);
    free(png);
    json_decref(fs);
    free(id);
    free(ref);
}

int main(int argc, char **argv) {
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    snprintf(bindir, sizeof bindir, "%s", n > 0 ? exe : argv[0]);
    char *slash = strrchr(bindir, '/');
    if (slash) *slash = 0;
    snprintf(lora_dir, sizeof lora_dir, "/tmp/sdrt-test-slora-dir-%d", (int)getpid());
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp tests/lora/*.safetensors %s && head -c 100 tests/lora/sd1_te.safetensors > %s/broken.safetensors",
             lora_dir, lora_dir, lora_dir);
    if (system(cmd)) { test_fail("server lora: cannot make %s", lora_dir); return 1; }
    /* A well-formed kohya LoRA for a module no SD model has: parsed at
     * submit, refused when it is applied (matches nothing). */
    static float down[4 * 8], up[8 * 4];
    struct sd_st_tensor t[2] = {
        {.name = "lora_unet_no_such_block_proj.lora_down.weight", .type = SD_F32, .n_dims = 2, .shape = {4, 8}, .nbytes = sizeof down, .data = down},
        {.name = "lora_unet_no_such_block_proj.lora_up.weight", .type = SD_F32, .n_dims = 2, .shape = {8, 4}, .nbytes = sizeof up, .data = up}};
    struct sd_ctx c = {0};
    snprintf(cmd, sizeof cmd, "%s/nomatch.safetensors", lora_dir);
    if (sd_st_write(&c, cmd, t, 2, NULL)) { test_fail("server lora: %s", c.msg); return 1; }
    char sdrt[PATH_MAX + 16];
    snprintf(sdrt, sizeof sdrt, "%s/../sdrt", bindir);
    char models_dir[64], cwd[PATH_MAX], link[PATH_MAX + 96];
    snprintf(models_dir, sizeof models_dir, "%s-models", lora_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", models_dir);
    if (system(cmd) || !getcwd(cwd, sizeof cwd)) { test_fail("server lora: cannot make %s", models_dir); return 1; }
    snprintf(link, sizeof link, "%s/tiny-sd1-sched", models_dir);
    snprintf(cmd, sizeof cmd, "%s/tests/models/tiny-sd1-sched", cwd);
    if (symlink(cmd, link)) { test_fail("server lora: cannot link %s", link); return 1; }
    const char *args[] = {sdrt, "serve", "--model", "tests/models/tiny-sd1", "--port", "0", "--threads", "1", "--devices", "cpu,cpu",
                          "--api-key", KEY, "--lora-dir", lora_dir, "--models-dir", models_dir, NULL};
    if (start_server_args(args)) { test_fail("server lora: did not start"); return 1; }
    test_ok("server lora: started on 127.0.0.1:%d with --lora-dir", port);
    test_listing();
    test_a1111_tag();
    test_concurrent_sets();
    test_fairness();
    test_errors();
    test_model_override();
    stop_server();
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", lora_dir, models_dir);
    if (system(cmd)) test_fail("server lora: cannot remove %s", lora_dir);
    return test_failures ? 1 : 0;
}
