/* safetensors.c - validated safetensors reader (mmap or borrowed memory) and
 * an atomic writer. See safetensors.h for the contract and the list of
 * checks done on open. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_dtype {
    const char *name;
    int bits;            /* per element */
    enum sd_dtype type;  /* SD_DTYPE_COUNT: known but not loadable */
};

static const struct st_dtype st_dtypes[] = {
    {"F32", 32, SD_F32},          {"F16", 16, SD_F16},          {"BF16", 16, SD_BF16},
    {"I32", 32, SD_I32},          {"I64", 64, SD_I64},          {"F64", 64, SD_DTYPE_COUNT},
    {"I8", 8, SD_DTYPE_COUNT},    {"U8", 8, SD_DTYPE_COUNT},    {"I16", 16, SD_DTYPE_COUNT},
    {"U16", 16, SD_DTYPE_COUNT},  {"U32", 32, SD_DTYPE_COUNT},  {"U64", 64, SD_DTYPE_COUNT},
    {"BOOL", 8, SD_DTYPE_COUNT},  {"F8_E4M3", 8, SD_DTYPE_COUNT}, {"F8_E5M2", 8, SD_DTYPE_COUNT},
    {"F8_E8M0", 8, SD_DTYPE_COUNT}, {"F6_E2M3", 6, SD_DTYPE_COUNT}, {"F6_E3M2", 6, SD_DTYPE_COUNT},
    {"F4", 4, SD_DTYPE_COUNT},    {"C64", 64, SD_DTYPE_COUNT},
};
#define N_DTYPES (int)(sizeof st_dtypes / sizeof st_dtypes[0])

static const struct st_dtype *dtype_by_name(const char *name) {
    for (int k = 0; k < N_DTYPES; k++)
        if (strcmp(st_dtypes[k].name, name) == 0) return &st_dtypes[k];
    return NULL;
}

size_t sd_st_dtype_size(const char *dtype) {
    const struct st_dtype *d = dtype ? dtype_by_name(dtype) : NULL;
    return d && d->bits % 8 == 0 ? (size_t)d->bits / 8 : 0;
}

static const char *dtype_name_of(enum sd_dtype t) {
    for (int k = 0; k < N_DTYPES; k++)
        if (st_dtypes[k].type == t) return st_dtypes[k].name;
    return NULL;
}

char *sd_st_shape_str(int n_dims, const int64_t *shape, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* ---- reading ---------------------------------------------------------- */

struct span {
    size_t begin, end;
    int tensor;
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->tensor - y->tensor;
}

/* "a number", "an array", ... for messages. */
static const char *a_type(const struct sd_json *v) {
    static const char *names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[sd_json_type(v)];
}

/* Reads a non-negative integer JSON value into *out; 0 when not one. */
static int json_uint(const struct sd_json *v, int64_t *out) {
    if (!sd_json_is_int(v) || sd_json_int(v, -1) < 0) return 0;
    *out = sd_json_int(v, -1);
    return 1;
}

/* Validates one header entry into t. */
static int parse_entry(struct sd_ctx *ctx, struct sd_st_file *f, const struct sd_json_member *em,
                       struct sd_st_tensor *t, size_t data_len, size_t *begin) {
    const char *P = f->path, *N = em->key;
    const struct sd_json *e = em->value;
    char sh[256];
    t->name = N;
    if (strlen(N) != em->klen)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor name '%s...' contains a NUL byte", P, N);
    if (sd_json_type(e) != SD_JSON_OBJ)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': entry is %s, not an object", P, N,
                         a_type(e));
    const struct sd_json *dt = sd_json_get(e, "dtype"), *shape = sd_json_get(e, "shape"),
                         *offs = sd_json_get(e, "data_offsets");
    if (!dt || !shape || !offs)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", P, N,
                         !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (sd_json_type(dt) != SD_JSON_STR)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is %s, not a string", P, N,
                         a_type(dt));
    const struct st_dtype *d = dtype_by_name(sd_json_str(dt));
    if (!d) return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", P, N, sd_json_str(dt));
    t->type = d->type;
    t->dtype = d->name;
    if (sd_json_type(shape) != SD_JSON_ARR)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': \"shape\" is %s, not an array", P, N,
                         a_type(shape));
    if (sd_json_len(shape) > SD_ST_MAX_DIMS)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': shape has %zu dims (at most %d supported)", P, N,
                         sd_json_len(shape), SD_ST_MAX_DIMS);
    t->n_dims = (int)sd_json_len(shape);
    uint64_t count = 1;
    int overflow = 0;
    for (int k = 0; k < t->n_dims; k++) {
        const struct sd_json *v = sd_json_at(shape, (size_t)k);
        if (!json_uint(v, &t->shape[k])) {
            if (sd_json_type(v) == SD_JSON_NUM)
                return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': shape[%d] = %g is not a non-negative integer",
                                 P, N, k, sd_json_num(v, 0));
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': shape[%d] is %s, not an integer", P, N, k,
                             a_type(v));
        }
        uint64_t dim = (uint64_t)t->shape[k];
        if (dim && count > UINT64_MAX / dim) overflow = 1;
        else count *= dim;
    }
    /* Bits, then bytes; any product beyond 2^62 bytes cannot be in a file. */
    if (overflow || count > (UINT64_MAX >> 8) / (uint64_t)d->bits)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': shape %s overflows", P, N,
                         sd_st_shape_str(t->n_dims, t->shape, sh, sizeof sh));
    uint64_t bits = count * (uint64_t)d->bits;
    if (bits % 8)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': shape %s of %s is not a whole number of bytes", P, N,
                         sd_st_shape_str(t->n_dims, t->shape, sh, sizeof sh), d->name);
    int64_t b, en;
    if (sd_json_type(offs) != SD_JSON_ARR || sd_json_len(offs) != 2 || !json_uint(sd_json_at(offs, 0), &b) ||
        !json_uint(sd_json_at(offs, 1), &en))
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not [begin, end] with integers >= 0",
                         P, N);
    if (b > en || (uint64_t)en > data_len)
        return sd_errorf(ctx, SD_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] are not inside the data section (%zu bytes)", P, N,
                         (long long)b, (long long)en, data_len);
    if ((uint64_t)(en - b) != bits / 8)
        return sd_errorf(ctx, SD_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes but shape %s of %s needs %llu", P,
                         N, (long long)b, (long long)en, (long long)(en - b),
                         sd_st_shape_str(t->n_dims, t->shape, sh, sizeof sh), d->name,
                         (unsigned long long)(bits / 8));
    t->nbytes = (size_t)(en - b);
    t->data = f->base + f->data_start + b;
    *begin = (size_t)b;
    return SD_OK;
}

static int check_metadata(struct sd_ctx *ctx, struct sd_st_file *f, const struct sd_json *m) {
    if (sd_json_type(m) != SD_JSON_OBJ)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: \"__metadata__\" is %s, not an object", f->path,
                         a_type(m));
    for (struct sd_json_member k = {0}; sd_json_next(m, &k);)
        if (sd_json_type(k.value) != SD_JSON_STR)
            return sd_errorf(ctx, SD_ERR_FORMAT, "%s: \"__metadata__\" value of '%s' is %s, not a string", f->path,
                             k.key, a_type(k.value));
    f->metadata = m;
    return SD_OK;
}

/* Parses and validates the header of f (base/size set). */
static int st_parse(struct sd_ctx *ctx, struct sd_st_file *f) {
    const char *P = f->path;
    struct span *spans = NULL;
    int rc;
    if (f->size < 8)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", P, f->size);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = hlen << 8 | f->base[k];
    if (hlen > SD_ST_MAX_HEADER)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: header length %llu is absurd (limit %u bytes); not a safetensors file?",
                         P, (unsigned long long)hlen, SD_ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file (truncated?)",
                         P, (unsigned long long)hlen, f->size);
    f->data_start = 8 + (size_t)hlen;
    size_t data_len = f->size - f->data_start;
    rc = sd_json_parse(ctx, (const char *)f->base + 8, (size_t)hlen, &f->header);
    if (rc) {
        sd_error_wrap(ctx, "%s: bad header (JSON starting at byte 8)", P);
        return rc;
    }
    const struct sd_json *h = f->header;
    size_t hn = sd_json_len(h);
    if (sd_json_type(h) != SD_JSON_OBJ)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: header is %s, not a JSON object", P, a_type(h));
    if (hn > (size_t)INT32_MAX / 4)
        return sd_errorf(ctx, SD_ERR_FORMAT, "%s: header has too many entries (%zu)", P, hn);
    f->tensors = calloc(hn ? hn : 1, sizeof *f->tensors);
    spans = malloc((hn ? hn : 1) * sizeof *spans);
    if (!f->tensors || !spans || sd_hmap_init(&f->index, hn) != SD_OK) {
        rc = sd_errorf(ctx, SD_ERR_NOMEM, "%s: out of memory for %zu header entries", P, hn);
        goto fail;
    }
    int n = 0, ns = 0;
    for (struct sd_json_member e = {0}; sd_json_next(h, &e);) {
        if (strcmp(e.key, "__metadata__") == 0) {
            if ((rc = check_metadata(ctx, f, e.value))) goto fail;
            continue;
        }
        struct sd_st_tensor *t = &f->tensors[n];
        size_t begin = 0;
        if ((rc = parse_entry(ctx, f, &e, t, data_len, &begin))) goto fail;
        if (t->nbytes) spans[ns++] = (struct span){begin, begin + t->nbytes, n};
        /* Names are unique: the JSON parser rejects duplicates. */
        if (sd_hmap_put(&f->index, sd_hash_str(t->name), (uint32_t)n) != SD_OK) {
            rc = sd_errorf(ctx, SD_ERR_NOMEM, "%s: out of memory for %zu header entries", P, hn);
            goto fail;
        }
        n++;
    }
    f->n_tensors = n;
    qsort(spans, (size_t)ns, sizeof *spans, cmp_span);
    for (int k = 1; k < ns; k++)
        if (spans[k].begin < spans[k - 1].end) {
            const struct span *a = &spans[k - 1], *b = &spans[k];
            rc = sd_errorf(ctx, SD_ERR_FORMAT, "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", P,
                           f->tensors[a->tensor].name, a->begin, a->end, f->tensors[b->tensor].name, b->begin, b->end);
            goto fail;
        }
    free(spans);
    return SD_OK;
fail:
    free(spans);
    return rc;
}

static struct sd_st_file *st_new(struct sd_ctx *ctx, const char *name) {
    struct sd_st_file *f = calloc(1, sizeof *f);
    if (f) f->path = strdup(name ? name : "(memory)");
    if (!f || !f->path) {
        free(f);
        sd_errorf(ctx, SD_ERR_NOMEM, "out of memory opening %s", name ? name : "(memory)");
        return NULL;
    }
    atomic_init(&f->refs, 1);
    return f;
}

static void st_free(struct sd_st_file *f) {
    if (f->mapped && f->base) munmap((void *)f->base, f->size);
    sd_json_free(f->header);
    free(f->tensors);
    sd_hmap_free(&f->index);
    free(f->path);
    free(f);
}

int sd_st_open_memory(struct sd_ctx *ctx, const char *name, const void *buf, size_t len, struct sd_st_file **out) {
    *out = NULL;
    struct sd_st_file *f = st_new(ctx, name);
    if (!f) return SD_ERR_NOMEM;
    f->base = buf;
    f->size = buf ? len : 0;
    int rc = st_parse(ctx, f);
    if (rc) {
        st_free(f);
        return rc;
    }
    *out = f;
    return SD_OK;
}

int sd_st_open(struct sd_ctx *ctx, const char *path, struct sd_st_file **out) {
    *out = NULL;
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sd_errorf(ctx, SD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct sd_st_file *f = st_new(ctx, path);
    struct stat st;
    if (!f) {
        rc = SD_ERR_NOMEM;
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        rc = sd_errorf(ctx, SD_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = sd_errorf(ctx, SD_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    f->size = (size_t)st.st_size;
    if (f->size >= 8) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = sd_errorf(ctx, SD_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, f->size, strerror(errno));
            goto fail;
        }
        f->base = p;
        f->mapped = 1;
    }
    if ((rc = st_parse(ctx, f))) goto fail;
    close(fd);
    *out = f;
    return SD_OK;
fail:
    close(fd);
    if (f) st_free(f);
    return rc;
}

struct sd_st_file *sd_st_ref(struct sd_st_file *f) {
    if (f) atomic_fetch_add(&f->refs, 1);
    return f;
}

void sd_st_close(struct sd_st_file *f) {
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) st_free(f);
}

const struct sd_st_tensor *sd_st_find(const struct sd_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    struct sd_hmap_iter it;
    for (uint32_t k = sd_hmap_find(&f->index, sd_hash_str(name), &it); k != SD_HMAP_NONE; k = sd_hmap_next(&f->index, &it))
        if (strcmp(f->tensors[k].name, name) == 0) return &f->tensors[k];
    return NULL;
}

const struct sd_st_tensor *sd_st_require(struct sd_ctx *ctx, const struct sd_st_file *f, const char *name) {
    const struct sd_st_tensor *t = sd_st_find(f, name);
    if (!t) {
        sd_errorf(ctx, SD_ERR_FORMAT, "missing tensor '%s' in %s", name, f ? f->path : "(no file)");
        return NULL;
    }
    if (t->type == SD_DTYPE_COUNT) {
        sd_errorf(ctx, SD_ERR_UNSUPPORTED, "tensor '%s' in %s has unsupported dtype %s (sdrt loads F32, F16, BF16, I32, I64)",
                  name, f->path, t->dtype);
        return NULL;
    }
    return t;
}

const char *sd_st_metadata(const struct sd_st_file *f, const char *key) {
    return f ? sd_json_str(sd_json_get(f->metadata, key)) : NULL;
}

/* ---- writing ---------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
    const char *unquotable;  /* a string sd_json_quote refused (not UTF-8, or no memory) */
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_quote(struct sbuf *b, const char *s) {
    char *q = sd_json_quote(s, strlen(s));
    if (!q && !b->unquotable) b->unquotable = s;
    if (!q) b->oom = 1;
    else sb_str(b, q);
    free(q);
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

struct wr_order {
    size_t esize;
    int k;
};

static int cmp_order(const void *a, const void *b) {
    const struct wr_order *x = a, *y = b;
    if (x->esize != y->esize) return x->esize > y->esize ? -1 : 1;
    return x->k - y->k;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sd_st_write(struct sd_ctx *ctx, const char *path, const struct sd_st_tensor *tensors, int n,
                const char *const *metadata) {
    struct sbuf hb = {0};
    struct wr_order *order = NULL;
    size_t *offs = NULL;
    const char **names = NULL;
    char *tmp = NULL, sh[256];
    int fd = -1, rc = SD_OK;
    if (n < 0 || (n > 0 && !tensors)) return sd_errorf(ctx, SD_ERR_INVALID, "sd_st_write(%s): bad tensor list", path);
    order = malloc(((size_t)n + 1) * sizeof *order);
    offs = malloc(((size_t)n + 1) * sizeof *offs);
    names = malloc(((size_t)n + 1) * sizeof *names);
    tmp = malloc(strlen(path) + 5);
    if (!order || !offs || !names || !tmp) {
        rc = sd_errorf(ctx, SD_ERR_NOMEM, "sd_st_write(%s): out of memory", path);
        goto fail;
    }
    sprintf(tmp, "%s.tmp", path);
    /* Validate and lay out the data section. */
    for (int k = 0; k < n; k++) {
        const struct sd_st_tensor *t = &tensors[k];
        const char *dn = t->type == SD_DTYPE_COUNT ? t->dtype : dtype_name_of(t->type);
        size_t es = sd_st_dtype_size(dn);
        if (!t->name || !es || t->n_dims < 0 || t->n_dims > SD_ST_MAX_DIMS || !strcmp(t->name, "__metadata__")) {
            rc = sd_errorf(ctx, SD_ERR_INVALID, "sd_st_write(%s): tensor '%s': bad name, dtype or rank (or the reserved name __metadata__)", path,
                           t->name ? t->name : "(null)");
            goto fail;
        }
        uint64_t count = 1;
        for (int d = 0; d < t->n_dims; d++) {
            if (t->shape[d] < 0 || (t->shape[d] && count > (UINT64_MAX >> 4) / (uint64_t)t->shape[d])) {
                count = UINT64_MAX;
                break;
            }
            count *= (uint64_t)t->shape[d];
        }
        if (count == UINT64_MAX || count * es != t->nbytes || (t->nbytes && !t->data)) {
            rc = sd_errorf(ctx, SD_ERR_INVALID, "sd_st_write(%s): tensor '%s': %zu bytes do not match shape %s of %s",
                           path, t->name, t->nbytes, sd_st_shape_str(t->n_dims, t->shape, sh, sizeof sh), dn);
            goto fail;
        }
        order[k] = (struct wr_order){es, k};
        names[k] = t->name;
    }
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (int k = 1; k < n; k++)
        if (strcmp(names[k], names[k - 1]) == 0) {
            rc = sd_errorf(ctx, SD_ERR_INVALID, "sd_st_write(%s): duplicate tensor name '%s'", path, names[k]);
            goto fail;
        }
    qsort(order, (size_t)n, sizeof *order, cmp_order);
    size_t pos = 0;
    for (int k = 0; k < n; k++) {
        offs[order[k].k] = pos;
        pos += tensors[order[k].k].nbytes;
    }
    /* Header. */
    sb_str(&hb, "{");
    int first = 1;
    if (metadata && metadata[0]) {
        sb_str(&hb, "\"__metadata__\":{");
        for (int k = 0; metadata[k]; k += 2) {
            if (!metadata[k + 1]) {
                rc = sd_errorf(ctx, SD_ERR_INVALID, "sd_st_write(%s): metadata key '%s' has no value", path, metadata[k]);
                goto fail;
            }
            if (k) sb_str(&hb, ",");
            sb_quote(&hb, metadata[k]);
            sb_str(&hb, ":");
            sb_quote(&hb, metadata[k + 1]);
        }
        sb_str(&hb, "}");
        first = 0;
    }
    for (int k = 0; k < n; k++) {
        const struct sd_st_tensor *t = &tensors[k];
        char num[64];
        if (!first) sb_str(&hb, ",");
        first = 0;
        sb_quote(&hb, t->name);
        sb_str(&hb, ":{\"dtype\":\"");
        sb_str(&hb, t->type == SD_DTYPE_COUNT ? t->dtype : dtype_name_of(t->type));
        sb_str(&hb, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(&hb, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offs[k], offs[k] + t->nbytes);
        sb_str(&hb, num);
    }
    sb_str(&hb, "}");
    while (!hb.oom && hb.n % 8) sb_str(&hb, " ");
    if (hb.unquotable) {
        rc = sd_errorf(ctx, SD_ERR_INVALID, "sd_st_write(%s): '%s' is not valid UTF-8 (or out of memory quoting it)",
                       path, hb.unquotable);
        goto fail;
    }
    if (hb.oom) {
        rc = sd_errorf(ctx, SD_ERR_NOMEM, "sd_st_write(%s): out of memory for the header", path);
        goto fail;
    }
    unsigned char len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)hb.n >> (8 * k));
    /* Write the temporary, then rename it over path. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sd_errorf(ctx, SD_ERR_IO, "sd_st_write: cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    errno = 0;
    int bad = write_all(fd, len8, 8) || write_all(fd, hb.p, hb.n);
    for (int k = 0; k < n && !bad; k++)
        bad = write_all(fd, tensors[order[k].k].data, tensors[order[k].k].nbytes);
    if (bad || fsync(fd) != 0) {
        rc = sd_errorf(ctx, SD_ERR_IO, "sd_st_write: writing %s: %s", tmp, strerror(errno ? errno : EIO));
        goto fail;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        rc = sd_errorf(ctx, SD_ERR_IO, "sd_st_write: closing %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        rc = sd_errorf(ctx, SD_ERR_IO, "sd_st_write: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto fail;
    }
    goto done;
fail:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
done:
    free(hb.p);
    free(order);
    free(offs);
    free(names);
    free(tmp);
    return rc;
}
