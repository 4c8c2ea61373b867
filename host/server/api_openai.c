/* api_openai.c - the OpenAI Images API: POST /v1/images/generations and
 * GET /v1/models (srv.h). Extensions: negative_prompt, steps, seed,
 * cfg_scale, sampler; model, quality, style, user are accepted. */
#include "srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *result(struct srv *s, struct job *j, int *status) {
    pthread_mutex_lock(&s->mu);
    json_t *out;
    if (j->state == JOB_FAILED || (j->state == JOB_CANCELLED && !j->n_images)) {
        struct reply rp = {0};
        *status = j->state == JOB_FAILED ? job_http_status(j) : 409;
        reply_errorf(&rp, *status, NULL, 1, "%s", j->state == JOB_FAILED ? j->err : "cancelled");
        out = rp.json;
    } else {
        json_t *data = json_array();
        for (int i = 0; i < j->n_images; i++) {
            char *b = b64_encode(j->images[i].png, j->images[i].len, NULL);
            json_array_append_new(data, json_pack("{s:s,s:s}", "b64_json", b ? b : "", "revised_prompt", j->r.prompt));
            free(b);
        }
        out = json_pack("{s:I,s:o}", "created", (json_int_t)time(NULL), "data", data);
        *status = 200;
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

int api_openai(struct srv *s, const char *method, const char *path, json_t *body, struct reply *rp) {
    if (!strcmp(path, "/v1/models") && !strcmp(method, "GET")) {
        json_t *a = json_array();
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->n_models; i++)
            json_array_append_new(a, json_pack("{s:s,s:s,s:I,s:s}", "id", s->models[i].name, "object", "model", "created",
                                               (json_int_t)0, "owned_by", "sdrt"));
        pthread_mutex_unlock(&s->mu);
        rp->json = json_pack("{s:s,s:o}", "object", "list", "data", a);
        return 1;
    }
    if (strcmp(path, "/v1/images/generations") || strcmp(method, "POST")) return 0;
    struct perr e = {0};
    if (!json_is_object(body)) { reply_errorf(rp, 400, "body", 1, "expected a JSON object"); return 1; }
    const char *prompt = NULL, *size = NULL, *fmt = NULL, *model = NULL, *ignored = NULL;
    int n = 1;
    if (req_str(body, "prompt", &prompt, (size_t)s->o.max_prompt, &e) || req_str(body, "size", &size, 32, &e) ||
        req_str(body, "response_format", &fmt, 32, &e) || req_int(body, "n", &n, 1, s->o.max_batch, &e) ||
        req_str(body, "model", &model, 1024, &e) || req_str(body, "quality", &ignored, 64, &e) ||
        req_str(body, "style", &ignored, 64, &e) || req_str(body, "user", &ignored, 256, &e)) {
        reply_error(rp, &e, 1);
        return 1;
    }
    if (!prompt) { reply_errorf(rp, 400, "prompt", 1, "required"); return 1; }
    if (fmt && strcmp(fmt, "b64_json")) { reply_errorf(rp, 400, "response_format", 1, "only b64_json is served"); return 1; }
    json_t *o = json_deep_copy(body);
    json_object_del(o, "n");
    json_object_set_new(o, "batch_size", json_integer(n));
    if (size) {
        int w = 0, h = 0;
        char x;
        if (sscanf(size, "%d%c%d", &w, &x, &h) != 3 || (x != 'x' && x != 'X')) {
            json_decref(o);
            reply_errorf(rp, 400, "size", 1, "expected WIDTHxHEIGHT, got '%s'", size);
            return 1;
        }
        json_object_set_new(o, "width", json_integer(w));
        json_object_set_new(o, "height", json_integer(h));
    }
    if (model && srv_model_find(s, model) >= 0)
        json_object_set_new(o, "override_settings", json_pack("{s:s}", "sd_model_checkpoint", model));
    struct job *j = job_new(s, ORIGIN_OPENAI);
    int rc = !j ? perr_set(&e, 500, NULL, "out of memory") : req_gen_common(s, o, &j->r, 0, &e);
    json_decref(o);
    if (rc) reply_error(rp, &e, 1);
    if (rc || srv_submit(s, j, rp)) {
        pthread_mutex_lock(&s->mu);
        job_unref(s, j);
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    rp->suspend = j;
    rp->resume = result;
    rp->openai_err = 1;
    return 1;
}
