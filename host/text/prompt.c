/* prompt.c - A1111 prompt parsing, chunking and emphasis (see prompt.h).
 *
 * parse_prompt_attention, restated: the prompt is cut into tokens by the
 * alternatives (first match wins at each position)
 *   \( \) \[ \] \\   escaped character -> literal text, weight 1
 *   \                lone backslash    -> empty text (the backslash vanishes)
 *   (  [             open a bracket (remember the current fragment count)
 *   :\s*NUM\s*)      close the innermost '(' multiplying by NUM
 *   )  ]             close the innermost '(' x1.1 / '[' x1/1.1
 *   [^\()[]:]+  :    text (split on BREAK)
 * A close with no open bracket of its kind is text. Each multiplier applies
 * to every fragment appended since the bracket opened; brackets still open
 * at the end apply to everything after them. Finally adjacent fragments of
 * equal weight are merged.
 */
#include "prompt.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct frag_list {
    struct sd_prompt_frag *v;
    int n, cap;
};

static int frag_push(struct frag_list *l, const char *s, size_t len, double w, bool brk) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        void *nv = realloc(l->v, (size_t)cap * sizeof *l->v);
        if (!nv) return SD_ERR_NOMEM;
        l->v = nv, l->cap = cap;
    }
    char *t = malloc(len + 1);
    if (!t) return SD_ERR_NOMEM;
    memcpy(t, s, len);
    t[len] = 0;
    l->v[l->n++] = (struct sd_prompt_frag){.text = t, .weight = w, .is_break = brk};
    return SD_OK;
}

static void warn(struct sd_prompt *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct sd_prompt *p, const char *fmt, ...) {
    size_t used = strlen(p->warnings);
    if (used + 4 >= sizeof p->warnings) return;
    if (used) used += (size_t)snprintf(p->warnings + used, sizeof p->warnings - used, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->warnings + used, sizeof p->warnings - used, fmt, ap);
    va_end(ap);
}

static bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }
static bool is_word(unsigned char c) { return isalnum(c) || c == '_' || c >= 0x80; }

/* Python float() of a [+-]?[.0-9]+ string, locale-free. Returns false when
 * it is not a number ("1.2.3", "."). */
static bool parse_weight(const char *s, size_t len, double *out) {
    size_t i = 0;
    bool neg = false;
    if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i] == '-', i++;
    int dots = 0, digits = 0, frac = 0;
    uint64_t mant = 0;
    bool exact = true;
    for (; i < len; i++) {
        if (s[i] == '.') {
            dots++;
            continue;
        }
        digits++;
        if (mant > (UINT64_MAX - 9) / 10) {
            exact = false;
            continue;
        }
        mant = mant * 10 + (uint64_t)(s[i] - '0');
        if (dots) frac++;
    }
    if (dots > 1 || digits == 0) return false;
    double v;
    if (exact && mant < (1ull << 53) && frac <= 22) {
        static const double p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        v = (double)mant / p10[frac]; /* both exact: the quotient is correctly rounded */
    } else {
        char buf[64];
        size_t k = len < sizeof buf - 1 ? len : sizeof buf - 1;
        memcpy(buf, s, k);
        buf[k] = 0;
        v = strtod(buf + (buf[0] == '+' || buf[0] == '-'), NULL);
    }
    *out = neg ? -v : v;
    return true;
}

/* Appends text s[0..len) split on \s*\bBREAK\b\s* (re.split semantics). */
static int push_text(struct frag_list *l, const char *s, size_t len) {
    size_t start = 0, i = 0;
    while (i + 5 <= len) {
        if (memcmp(s + i, "BREAK", 5) == 0 && (i == 0 || !is_word((unsigned char)s[i - 1])) &&
            (i + 5 == len || !is_word((unsigned char)s[i + 5]))) {
            size_t a = i, b = i + 5;
            while (a > start && is_space((unsigned char)s[a - 1])) a--;
            while (b < len && is_space((unsigned char)s[b])) b++;
            if (frag_push(l, s + start, a - start, 1.0, false) || frag_push(l, "BREAK", 5, 1.0, true))
                return SD_ERR_NOMEM;
            start = i = b;
            continue;
        }
        i++;
    }
    return frag_push(l, s + start, len - start, 1.0, false);
}

static void multiply_range(struct frag_list *l, int from, double m) {
    for (int p = from; p < l->n; p++)
        if (!l->v[p].is_break) l->v[p].weight *= m;
}

/* Removes <type:args> tags (A1111 re_extra_net = <(\w+):([^>]+)>) into
 * p->loras and p->text. */
static int extract_networks(struct sd_ctx *ctx, struct sd_prompt *p, const char *s) {
    const size_t n = strlen(s);
    p->text = malloc(n + 1);
    if (!p->text) return sd_errorf(ctx, SD_ERR_NOMEM, "prompt: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        if (s[i] == '<')
            while (j < n && is_word((unsigned char)s[j])) j++;
        size_t k = j + 1;
        if (s[i] == '<' && j > i + 1 && j < n && s[j] == ':')
            while (k < n && s[k] != '>') k++;
        if (!(s[i] == '<' && j > i + 1 && j < n && s[j] == ':' && k > j + 1 && k < n)) {
            p->text[o++] = s[i++];
            continue;
        }
        /* tag s[i..k], type s[i+1..j), args s[j+1..k) */
        const char *type = s + i + 1, *args = s + j + 1;
        size_t tlen = j - i - 1, alen = k - j - 1;
        if (!((tlen == 4 && !memcmp(type, "lora", 4)) || (tlen == 4 && !memcmp(type, "lyco", 4)))) {
            warn(p, "removed extra network tag <%.*s:...> (only lora is supported)", (int)tlen, type);
            i = k + 1;
            continue;
        }
        char *a = malloc(alen + 1);
        if (!a) return sd_errorf(ctx, SD_ERR_NOMEM, "prompt: out of memory");
        memcpy(a, args, alen);
        a[alen] = 0;
        char *items[8];
        int ni = 0;
        for (char *q = a, *c; ni < 8; q = c + 1) {
            items[ni++] = q;
            if (!(c = strchr(q, ':'))) break;
            *c = 0;
        }
        double te = 1.0, un = 0;
        bool has_un = false;
        int npos = 0, rc = SD_OK;
        const char *name = NULL;
        for (int t = 0; t < ni && rc == SD_OK; t++) {
            char *eq = strchr(items[t], '=');
            double v;
            if (eq) {
                *eq = 0;
                const char *val = eq + 1;
                bool okv = parse_weight(val, strlen(val), &v) && strspn(val, "+-.0123456789") == strlen(val);
                if (!strcmp(items[t], "te") && okv) te = v;
                else if (!strcmp(items[t], "unet") && okv) un = v, has_un = true;
                else if (!strcmp(items[t], "dyn")) warn(p, "<lora:%s>: dyn= is ignored", name ? name : "");
                else
                    rc = sd_errorf(ctx, SD_ERR_INVALID, "prompt: bad argument '%s=%s' in <lora:%s> at offset %zu",
                                   items[t], val, a, i);
            } else if (npos == 0) {
                name = items[t], npos++;
            } else if (npos <= 2) {
                const char *it = items[t];
                if (!parse_weight(it, strlen(it), &v) || strspn(it, "+-.0123456789") != strlen(it))
                    rc = sd_errorf(ctx, SD_ERR_INVALID,
                                   "prompt: LoRA multiplier '%s' in <lora:%.*s> at offset %zu is not a number", it,
                                   (int)alen, args, i);
                else if (npos == 1) te = v;
                else un = v, has_un = true;
                npos++;
            } else {
                warn(p, "<lora:%s>: extra field '%s' ignored", name, items[t]);
            }
        }
        if (rc == SD_OK && (!name || !*name))
            rc = sd_errorf(ctx, SD_ERR_INVALID, "prompt: <lora:...> at offset %zu has no name", i);
        if (rc == SD_OK) {
            void *nv = realloc(p->loras, (size_t)(p->n_loras + 1) * sizeof *p->loras);
            char *nm = nv ? strdup(name) : NULL;
            if (!nv || !nm) {
                free(nm);
                if (nv) p->loras = nv;
                free(a);
                return sd_errorf(ctx, SD_ERR_NOMEM, "prompt: out of memory");
            }
            p->loras = nv;
            p->loras[p->n_loras++] = (struct sd_prompt_lora){nm, (float)te, (float)(has_un ? un : te)};
        }
        free(a);
        if (rc) return rc;
        i = k + 1;
    }
    p->text[o] = 0;
    return SD_OK;
}

static int parse_attention(struct sd_ctx *ctx, struct sd_prompt *p, struct frag_list *l) {
    const char *s = p->text;
    const size_t n = strlen(s);
    int *round = malloc(sizeof(int) * (n + 1)), *square = malloc(sizeof(int) * (n + 1));
    int nr = 0, nsq = 0, rc = SD_OK;
    if (!round || !square) {
        rc = SD_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n && rc == SD_OK;) {
        const char c = s[i];
        if (c == '\\') {
            if (i + 1 < n && strchr("()[]\\", s[i + 1])) rc = frag_push(l, s + i + 1, 1, 1.0, false), i += 2;
            else rc = frag_push(l, "", 0, 1.0, false), i += 1;
        } else if (c == '(') {
            round[nr++] = l->n, i++;
        } else if (c == '[') {
            square[nsq++] = l->n, i++;
        } else if (c == ':') {
            size_t j = i + 1, a, b;
            while (j < n && is_space((unsigned char)s[j])) j++;
            a = j;
            if (j < n && (s[j] == '+' || s[j] == '-')) j++;
            b = j;
            while (j < n && (s[j] == '.' || (s[j] >= '0' && s[j] <= '9'))) j++;
            size_t e = j;
            while (j < n && is_space((unsigned char)s[j])) j++;
            if (e > b && j < n && s[j] == ')') {
                if (nr > 0) {
                    double w;
                    if (!parse_weight(s + a, e - a, &w)) {
                        rc = sd_errorf(ctx, SD_ERR_INVALID, "prompt: weight '%.*s' at offset %zu is not a number",
                                       (int)(e - a), s + a, a);
                        break;
                    }
                    multiply_range(l, round[--nr], w);
                } else {
                    warn(p, "'%.*s' at offset %zu closes no '(': kept as text", (int)(j + 1 - i), s + i, i);
                    rc = push_text(l, s + i, j + 1 - i);
                }
                i = j + 1;
            } else {
                rc = push_text(l, ":", 1), i++;
            }
        } else if (c == ')' || c == ']') {
            int *stk = c == ')' ? &nr : &nsq;
            if (*stk > 0) {
                (*stk)--;
                multiply_range(l, c == ')' ? round[nr] : square[nsq], c == ')' ? 1.1 : 1 / 1.1);
            } else {
                warn(p, "unmatched '%c' at offset %zu kept as text", c, i);
                rc = push_text(l, s + i, 1);
            }
            i++;
        } else {
            size_t j = i;
            while (j < n && !strchr("\\()[]:", s[j])) j++;
            rc = push_text(l, s + i, j - i), i = j;
        }
    }
    if (rc == SD_OK) {
        if (nr) warn(p, "%d unclosed '(': weighted x1.1 to the end, as A1111 does", nr);
        if (nsq) warn(p, "%d unclosed '[': weighted /1.1 to the end, as A1111 does", nsq);
        for (int k = 0; k < nr; k++) multiply_range(l, round[k], 1.1);
        for (int k = 0; k < nsq; k++) multiply_range(l, square[k], 1 / 1.1);
        if (l->n == 0) rc = frag_push(l, "", 0, 1.0, false);
    }
    /* merge runs of identical weights */
    for (int k = 0; rc == SD_OK && k + 1 < l->n;) {
        struct sd_prompt_frag *x = &l->v[k], *y = &l->v[k + 1];
        if (x->is_break || y->is_break || x->weight != y->weight) {
            k++;
            continue;
        }
        size_t lx = strlen(x->text), ly = strlen(y->text);
        char *t = realloc(x->text, lx + ly + 1);
        if (!t) {
            rc = SD_ERR_NOMEM;
            break;
        }
        memcpy(t + lx, y->text, ly + 1);
        x->text = t;
        free(y->text);
        memmove(y, y + 1, (size_t)(l->n - k - 2) * sizeof *y);
        l->n--;
    }
done:
    free(round);
    free(square);
    if (rc == SD_ERR_NOMEM) sd_errorf(ctx, SD_ERR_NOMEM, "prompt: out of memory");
    return rc;
}

struct sd_prompt *sd_prompt_parse(struct sd_ctx *ctx, const char *text) {
    struct sd_prompt *p = calloc(1, sizeof *p);
    struct frag_list l = {0};
    if (!p) {
        sd_errorf(ctx, SD_ERR_NOMEM, "prompt: out of memory");
        return NULL;
    }
    if (!text) text = "";
    if (extract_networks(ctx, p, text) != SD_OK || parse_attention(ctx, p, &l) != SD_OK) {
        for (int i = 0; i < l.n; i++) free(l.v[i].text);
        free(l.v);
        sd_prompt_free(p);
        return NULL;
    }
    p->frags = l.v;
    p->n_frags = l.n;
    return p;
}

void sd_prompt_free(struct sd_prompt *p) {
    if (!p) return;
    for (int i = 0; i < p->n_frags; i++) free(p->frags[i].text);
    for (int i = 0; i < p->n_loras; i++) free(p->loras[i].name);
    free(p->frags);
    free(p->loras);
    free(p->text);
    free(p);
}

/* ---- chunking ---------------------------------------------------------- */

void sd_chunk_params_init(struct sd_chunk_params *cp, bool sd2) {
    cp->bos = 49406;
    cp->eos = 49407;
    cp->pad = sd2 ? 0 : 49407;
    cp->comma = 267;
    cp->chunk_len = 75;
    cp->comma_backtrack = 20;
}

struct chunker {
    const struct sd_chunk_params *cp;
    int32_t *ids;  /* output */
    float *w;
    int n_chunks, cap;
    int32_t *cur;  /* current chunk content */
    float *cw;
    int len;
};

static int next_chunk(struct chunker *c) {
    const int L = c->cp->chunk_len + 2;
    if (c->n_chunks == c->cap) {
        int cap = c->cap ? c->cap * 2 : 4;
        int32_t *ni = realloc(c->ids, (size_t)cap * L * sizeof *ni);
        if (!ni) return SD_ERR_NOMEM;
        c->ids = ni;
        float *nw = realloc(c->w, (size_t)cap * L * sizeof *nw);
        if (!nw) return SD_ERR_NOMEM;
        c->w = nw;
        c->cap = cap;
    }
    int32_t *o = c->ids + (size_t)c->n_chunks * L;
    float *ow = c->w + (size_t)c->n_chunks * L;
    o[0] = c->cp->bos, ow[0] = 1.0f;
    for (int k = 0; k < c->cp->chunk_len; k++) {
        o[1 + k] = k < c->len ? c->cur[k] : c->cp->eos;
        ow[1 + k] = k < c->len ? c->cw[k] : 1.0f;
    }
    o[L - 1] = c->cp->eos, ow[L - 1] = 1.0f;
    if (c->cp->pad != c->cp->eos) { /* SD2: pad after the first EOS */
        int k = 0;
        while (k < L && o[k] != c->cp->eos) k++;
        for (k++; k < L; k++) o[k] = c->cp->pad;
    }
    c->n_chunks++;
    c->len = 0;
    return SD_OK;
}

int sd_prompt_chunk(struct sd_ctx *ctx, const int32_t *ids, const float *w, int n, const struct sd_chunk_params *cp,
                    int32_t **ids_out, float **w_out, int *n_chunks) {
    if (cp->chunk_len < 1 || n < 0)
        return sd_errorf(ctx, SD_ERR_INVALID, "prompt chunking: chunk length %d, %d tokens", cp->chunk_len, n);
    struct chunker c = {.cp = cp};
    c.cur = malloc(sizeof *c.cur * (size_t)cp->chunk_len);
    c.cw = malloc(sizeof *c.cw * (size_t)cp->chunk_len);
    int32_t *rid = malloc(sizeof *rid * (size_t)cp->chunk_len);
    float *rw = malloc(sizeof *rw * (size_t)cp->chunk_len);
    int rc = c.cur && c.cw && rid && rw ? SD_OK : SD_ERR_NOMEM;
    int last_comma = -1;
    for (int i = 0; i < n && rc == SD_OK; i++) {
        if (ids[i] == SD_PROMPT_BREAK_ID) {
            rc = next_chunk(&c);
            last_comma = -1;
            continue;
        }
        if (ids[i] == cp->comma) {
            last_comma = c.len;
        } else if (cp->comma_backtrack && c.len == cp->chunk_len && last_comma != -1 &&
                   c.len - last_comma <= cp->comma_backtrack) {
            int at = last_comma + 1, nr = c.len - at;
            memcpy(rid, c.cur + at, sizeof *rid * (size_t)nr);
            memcpy(rw, c.cw + at, sizeof *rw * (size_t)nr);
            c.len = at;
            if ((rc = next_chunk(&c))) break;
            last_comma = -1;
            memcpy(c.cur, rid, sizeof *rid * (size_t)nr);
            memcpy(c.cw, rw, sizeof *rw * (size_t)nr);
            c.len = nr;
        }
        if (c.len == cp->chunk_len) {
            if ((rc = next_chunk(&c))) break;
            last_comma = -1;
        }
        c.cur[c.len] = ids[i];
        c.cw[c.len] = w[i];
        c.len++;
    }
    if (rc == SD_OK && (c.len > 0 || c.n_chunks == 0)) rc = next_chunk(&c);
    free(c.cur), free(c.cw), free(rid), free(rw);
    if (rc) {
        free(c.ids), free(c.w);
        return sd_errorf(ctx, SD_ERR_NOMEM, "prompt chunking: out of memory");
    }
    *ids_out = c.ids, *w_out = c.w, *n_chunks = c.n_chunks;
    return SD_OK;
}

void sd_prompt_apply_weights(float *z, const float *w, int n_chunks, int tokens_per_chunk, int d) {
    const size_t per = (size_t)tokens_per_chunk * (size_t)d;
    for (int c = 0; c < n_chunks; c++) {
        float *zc = z + (size_t)c * per;
        const float *wc = w + (size_t)c * tokens_per_chunk;
        double m0 = 0, m1 = 0;
        for (size_t i = 0; i < per; i++) m0 += zc[i];
        for (int t = 0; t < tokens_per_chunk; t++)
            for (int k = 0; k < d; k++) {
                float v = zc[(size_t)t * d + k] * wc[t];
                zc[(size_t)t * d + k] = v;
                m1 += v;
            }
        m0 /= (double)per;
        m1 /= (double)per;
        if (m1 == 0) continue;
        const float s = (float)(m0 / m1);
        for (size_t i = 0; i < per; i++) zc[i] *= s;
    }
}
