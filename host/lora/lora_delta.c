/* lora_delta.c - the f32 weight delta of one LoRA / LyCORIS module
 * (sd-reference §7; A1111 extensions-builtin/Lora network_*.py and the
 * LyCORIS formulas), flattened to [rows, cols] = [out, in * kh * kw]:
 *
 *   LoRA      s * up @ down                       (conv: down flattened; 1x1 up)
 *   Tucker    W[o,i,kl] = s * sum up[o,n] mid[n,m,kl] down[m,i]   (.lora_mid)
 *   LoHa      s * (w1a @ w1b) * (w2a @ w2b)       (elementwise; Tucker with hada_t1/t2:
 *             W[p,r,kl] = sum t[i,j,kl] wa[i,p] wb[j,r])
 *   LoKr      s * kron(w1, w2), w1 = lokr_w1 or w1a @ w1b, w2 = lokr_w2, w2a @ w2b or Tucker
 *   diff      s * diff (and .diff_b for the bias)
 *
 * s = multiplier * (.scale if present, else alpha / rank, else 1). Products
 * run through oneDNN's sgemm; factors are converted to f32 first. */
#include "lora.h"

#include <dnnl.h>
#include <stdlib.h>
#include <string.h>

static int64_t nel(const struct sd_st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; t && d < t->n_dims; d++) n *= t->shape[d];
    return n;
}
static int64_t dim(const struct sd_st_tensor *t, int d) { return t && d < t->n_dims ? t->shape[d] : 1; }
static int64_t tail(const struct sd_st_tensor *t, int from) {
    int64_t n = 1;
    for (int d = from; t && d < t->n_dims; d++) n *= t->shape[d];
    return n;
}

/* out = alpha * op(A) @ B + out, row-major, A [m,k] (or [k,m] transposed). */
static int gemm(struct sd_ctx *ctx, char ta, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                const float *b, float *c) {
    dnnl_status_t st = dnnl_sgemm(ta, 'N', m, n, k, alpha, a, ta == 'N' ? k : m, b, n, 1.0f, c, n);
    return st == dnnl_success ? SD_OK : sd_errorf(ctx, SD_ERR_BACKEND, "oneDNN: dnnl_sgemm = %d in a LoRA delta", (int)st);
}

static float *f32(const struct sd_st_tensor *t) {
    int64_t n = nel(t);
    float *o = malloc(sizeof(float) * (size_t)(n ? n : 1));
    void *tmp = malloc(t->nbytes ? t->nbytes : 1);
    if (o && tmp) {
        memcpy(tmp, t->data, t->nbytes); /* the mapping need not be aligned */
        sd_convert_to_f32(o, tmp, t->type, n);
    } else {
        free(o);
        o = NULL;
    }
    free(tmp);
    return o;
}

/* Shape of the delta before it is compared with the target. */
static void delta_shape(const struct sd_lora_module *m, int bias, int64_t *rows, int64_t *cols) {
    const struct sd_st_tensor *const *t = m->t;
    switch (m->kind) {
    case SD_LK_DIFF:
        if (bias) *rows = nel(t[SD_LR_DIFF_B]), *cols = 1;
        else *rows = dim(t[SD_LR_DIFF], 0), *cols = tail(t[SD_LR_DIFF], 1);
        return;
    case SD_LK_LORA:
        *rows = dim(t[SD_LR_UP], 0);
        *cols = t[SD_LR_MID] ? dim(t[SD_LR_DOWN], 1) * tail(t[SD_LR_MID], 2) : tail(t[SD_LR_DOWN], 1);
        return;
    case SD_LK_LOHA:
        if (t[SD_LR_HADA_T1]) *rows = dim(t[SD_LR_HADA_W1A], 1), *cols = dim(t[SD_LR_HADA_W1B], 1) * tail(t[SD_LR_HADA_T1], 2);
        else *rows = dim(t[SD_LR_HADA_W1A], 0), *cols = tail(t[SD_LR_HADA_W1B], 1);
        return;
    case SD_LK_LOKR: {
        int64_t a = t[SD_LR_LOKR_W1] ? dim(t[SD_LR_LOKR_W1], 0) : dim(t[SD_LR_LOKR_W1A], 0);
        int64_t b = t[SD_LR_LOKR_W1] ? tail(t[SD_LR_LOKR_W1], 1) : tail(t[SD_LR_LOKR_W1B], 1);
        int64_t c, d;
        if (t[SD_LR_LOKR_W2]) c = dim(t[SD_LR_LOKR_W2], 0), d = tail(t[SD_LR_LOKR_W2], 1);
        else if (t[SD_LR_LOKR_T2]) c = dim(t[SD_LR_LOKR_W2A], 1), d = dim(t[SD_LR_LOKR_W2B], 1) * tail(t[SD_LR_LOKR_T2], 2);
        else c = dim(t[SD_LR_LOKR_W2A], 0), d = tail(t[SD_LR_LOKR_W2B], 1);
        *rows = a * c, *cols = b * d;
        return;
    }
    }
}

/* The inner factor shapes agree (checked before any arithmetic). */
static int factors_ok(const struct sd_lora_module *m) {
    const struct sd_st_tensor *const *t = m->t;
    switch (m->kind) {
    case SD_LK_LORA:
        return !t[SD_LR_MID] || tail(t[SD_LR_DOWN], 1) == dim(t[SD_LR_DOWN], 1);
    case SD_LK_LOHA: {
        int64_t r1 = 0, c1 = 0, r2 = 0, c2 = 0;
        for (int k = 0; k < 2; k++) {
            const struct sd_st_tensor *wa = t[k ? SD_LR_HADA_W2A : SD_LR_HADA_W1A], *wb = t[k ? SD_LR_HADA_W2B : SD_LR_HADA_W1B],
                                      *tt = t[k ? SD_LR_HADA_T2 : SD_LR_HADA_T1];
            int64_t r = tt ? dim(wa, 1) : dim(wa, 0), c = tt ? dim(wb, 1) * tail(tt, 2) : tail(wb, 1);
            if (tt && (dim(tt, 0) != dim(wa, 0) || dim(tt, 1) != dim(wb, 0) || wa->n_dims != 2 || wb->n_dims != 2)) return 0;
            if (!tt && (wa->n_dims != 2 || dim(wa, 1) != dim(wb, 0))) return 0;
            if (k) r2 = r, c2 = c;
            else r1 = r, c1 = c;
        }
        return r1 == r2 && c1 == c2 && (!t[SD_LR_HADA_T1]) == (!t[SD_LR_HADA_T2]);
    }
    case SD_LK_LOKR:
        if (!t[SD_LR_LOKR_W1] && (dim(t[SD_LR_LOKR_W1A], 1) != dim(t[SD_LR_LOKR_W1B], 0) || t[SD_LR_LOKR_W1A]->n_dims != 2)) return 0;
        if (!t[SD_LR_LOKR_W2] && t[SD_LR_LOKR_T2])
            return dim(t[SD_LR_LOKR_T2], 0) == dim(t[SD_LR_LOKR_W2A], 0) && dim(t[SD_LR_LOKR_T2], 1) == dim(t[SD_LR_LOKR_W2B], 0);
        if (!t[SD_LR_LOKR_W2] && (dim(t[SD_LR_LOKR_W2A], 1) != dim(t[SD_LR_LOKR_W2B], 0) || t[SD_LR_LOKR_W2A]->n_dims != 2)) return 0;
        return 1;
    case SD_LK_DIFF:
        return 1;
    }
    return 0;
}

int sd_lora_delta_check(struct sd_ctx *ctx, const struct sd_lora_file *lf, const struct sd_lora_module *mod, int bias,
                        int64_t rows, int64_t cols) {
    int64_t r = 0, c = 0;
    if (bias && mod->kind != SD_LK_DIFF) return SD_OK;
    delta_shape(mod, bias, &r, &c);
    if (!factors_ok(mod))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: module '%s' (%s): its factors' shapes do not chain", lf->path,
                         mod->name, mod->key);
    if (r != rows || c != cols)
        return sd_errorf(ctx, SD_ERR_FORMAT,
                         "%s: module '%s' (%s) gives a %s delta of [%lld, %lld] (out x in*kh*kw) but its target has "
                         "[%lld, %lld]", lf->path, mod->name, mod->key, bias ? "bias" : "weight", (long long)r,
                         (long long)c, (long long)rows, (long long)cols);
    return SD_OK;
}

/* w (rows x cols) of a LoHa pair k or a Tucker / plain product, into out (zeroed). */
static int product(struct sd_ctx *ctx, const struct sd_st_tensor *wa_t, const struct sd_st_tensor *wb_t,
                   const struct sd_st_tensor *t_t, int64_t rows, int64_t cols, float *out) {
    float *wa = f32(wa_t), *wb = f32(wb_t), *tt = t_t ? f32(t_t) : NULL, *tmp = NULL;
    int rc = wa && wb && (!t_t || tt) ? SD_OK : sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
    if (!rc && !t_t) {
        rc = gemm(ctx, 'N', rows, cols, dim(wa_t, 1), 1.0f, wa, wb, out);
    } else if (!rc) {
        /* W[p, r, kl] = sum_i wa[i, p] (sum_j t[i, j, kl] wb[j, r]) */
        const int64_t R1 = dim(t_t, 0), R2 = dim(t_t, 1), KK = tail(t_t, 2), in = dim(wb_t, 1);
        tmp = calloc((size_t)(R1 * in * KK), sizeof(float));
        if (!tmp) rc = sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
        for (int64_t i = 0; !rc && i < R1; i++)
            for (int64_t j = 0; j < R2; j++)
                for (int64_t r = 0; r < in; r++) {
                    float v = wb[j * in + r];
                    float *d = tmp + (i * in + r) * KK;
                    const float *s = tt + (i * R2 + j) * KK;
                    for (int64_t kl = 0; kl < KK; kl++) d[kl] += v * s[kl];
                }
        if (!rc) rc = gemm(ctx, 'T', rows, cols, R1, 1.0f, wa, tmp, out);
    }
    free(wa), free(wb), free(tt), free(tmp);
    return rc;
}

static int lora_delta(struct sd_ctx *ctx, const struct sd_lora_module *m, float s, int64_t rows, int64_t cols, float *out) {
    const struct sd_st_tensor *const *t = m->t;
    const int64_t r = m->rank;
    float *up = f32(t[SD_LR_UP]), *down = f32(t[SD_LR_DOWN]), *mid = t[SD_LR_MID] ? f32(t[SD_LR_MID]) : NULL, *tmp = NULL;
    int rc = up && down && (!t[SD_LR_MID] || mid) ? SD_OK : sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
    if (!rc && !mid) {
        rc = gemm(ctx, 'N', rows, cols, r, s, up, down, out);
    } else if (!rc) {
        /* tmp[n, i, kl] = sum_m mid[n, m, kl] down[m, i] */
        const int64_t KK = tail(t[SD_LR_MID], 2), in = dim(t[SD_LR_DOWN], 1);
        tmp = calloc((size_t)(r * in * KK), sizeof(float));
        if (!tmp) rc = sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
        for (int64_t n = 0; !rc && n < r; n++)
            for (int64_t mm = 0; mm < r; mm++)
                for (int64_t i = 0; i < in; i++) {
                    float v = down[mm * in + i];
                    float *d = tmp + (n * in + i) * KK;
                    const float *src = mid + (n * r + mm) * KK;
                    for (int64_t kl = 0; kl < KK; kl++) d[kl] += v * src[kl];
                }
        if (!rc) rc = gemm(ctx, 'N', rows, cols, r, s, up, tmp, out);
    }
    free(up), free(down), free(mid), free(tmp);
    return rc;
}

static int loha_delta(struct sd_ctx *ctx, const struct sd_lora_module *m, float s, int64_t rows, int64_t cols, float *out) {
    const struct sd_st_tensor *const *t = m->t;
    size_t n = (size_t)(rows * cols);
    float *w1 = calloc(n, sizeof(float)), *w2 = calloc(n, sizeof(float));
    int rc = w1 && w2 ? SD_OK : sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
    if (!rc) rc = product(ctx, t[SD_LR_HADA_W1A], t[SD_LR_HADA_W1B], t[SD_LR_HADA_T1], rows, cols, w1);
    if (!rc) rc = product(ctx, t[SD_LR_HADA_W2A], t[SD_LR_HADA_W2B], t[SD_LR_HADA_T2], rows, cols, w2);
    for (size_t i = 0; !rc && i < n; i++) out[i] += s * w1[i] * w2[i];
    free(w1), free(w2);
    return rc;
}

static int lokr_delta(struct sd_ctx *ctx, const struct sd_lora_module *m, float s, float *out) {
    const struct sd_st_tensor *const *t = m->t;
    int64_t a = t[SD_LR_LOKR_W1] ? dim(t[SD_LR_LOKR_W1], 0) : dim(t[SD_LR_LOKR_W1A], 0);
    int64_t b = t[SD_LR_LOKR_W1] ? tail(t[SD_LR_LOKR_W1], 1) : tail(t[SD_LR_LOKR_W1B], 1);
    int64_t c, d;
    if (t[SD_LR_LOKR_W2]) c = dim(t[SD_LR_LOKR_W2], 0), d = tail(t[SD_LR_LOKR_W2], 1);
    else if (t[SD_LR_LOKR_T2]) c = dim(t[SD_LR_LOKR_W2A], 1), d = dim(t[SD_LR_LOKR_W2B], 1) * tail(t[SD_LR_LOKR_T2], 2);
    else c = dim(t[SD_LR_LOKR_W2A], 0), d = tail(t[SD_LR_LOKR_W2B], 1);
    float *w1 = t[SD_LR_LOKR_W1] ? f32(t[SD_LR_LOKR_W1]) : calloc((size_t)(a * b), sizeof(float));
    float *w2 = t[SD_LR_LOKR_W2] ? f32(t[SD_LR_LOKR_W2]) : calloc((size_t)(c * d), sizeof(float));
    int rc = w1 && w2 ? SD_OK : sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
    if (!rc && !t[SD_LR_LOKR_W1]) rc = product(ctx, t[SD_LR_LOKR_W1A], t[SD_LR_LOKR_W1B], NULL, a, b, w1);
    if (!rc && !t[SD_LR_LOKR_W2]) rc = product(ctx, t[SD_LR_LOKR_W2A], t[SD_LR_LOKR_W2B], t[SD_LR_LOKR_T2], c, d, w2);
    const int64_t cols = b * d;
    for (int64_t i = 0; !rc && i < a; i++)
        for (int64_t j = 0; j < b; j++) {
            float v = s * w1[i * b + j];
            for (int64_t p = 0; p < c; p++) {
                float *o = out + (i * c + p) * cols + j * d;
                const float *w = w2 + p * d;
                for (int64_t q = 0; q < d; q++) o[q] += v * w[q];
            }
        }
    free(w1), free(w2);
    return rc;
}

int sd_lora_delta_add(struct sd_ctx *ctx, const struct sd_lora_file *lf, const struct sd_lora_module *mod, int bias,
                      float mult, int64_t rows, int64_t cols, float *out) {
    int rc = sd_lora_delta_check(ctx, lf, mod, bias, rows, cols);
    if (rc || (bias && mod->kind != SD_LK_DIFF)) return rc;
    float s = mult * (mod->has_scale ? mod->scale : mod->rank > 0 ? mod->alpha / (float)mod->rank : 1.0f);
    switch (mod->kind) {
    case SD_LK_LORA: return lora_delta(ctx, mod, s, rows, cols, out);
    case SD_LK_LOHA: return loha_delta(ctx, mod, s, rows, cols, out);
    case SD_LK_LOKR: return lokr_delta(ctx, mod, s, out);
    case SD_LK_DIFF: {
        float *d = f32(mod->t[bias ? SD_LR_DIFF_B : SD_LR_DIFF]);
        if (!d) return sd_errorf(ctx, SD_ERR_NOMEM, "lora: out of memory");
        for (int64_t i = 0; i < rows * cols; i++) out[i] += s * d[i];
        free(d);
        return SD_OK;
    }
    }
    return SD_OK;
}
