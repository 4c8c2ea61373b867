/* weights.c - a model's f32 tensors by name, loaded lazily from safetensors
 * files (see weights.h for the contract).
 *
 * Threads: the lazy load (and the `used` mark) runs under one mutex per
 * weight set, so graphs of one model may be built from several threads at
 * once; everything else a lookup reads (the index, names, shapes) is fixed
 * once the model is loaded. The lock is taken once per sd_weights_get, at
 * graph build time only (a few hundred times per graph, uncontended ~20 ns
 * each), which is why it is preferred over loading every tensor at model
 * load: tensors nobody asks for (e.g. the VAE encoder for txt2img) would
 * then cost memory. */
#include "weights.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hashmap.h"

enum { W_FILE, W_ADDED, W_SLICE };

struct w_entry {
    struct sd_tensor t;              /* f32; t.data is NULL until loaded; first member (sd_weight_* cast) */
    struct sd_weights *w;            /* owner */
    char *name;                      /* full name (t.name may be truncated) */
    int kind;                        /* W_FILE, W_ADDED (data owned), W_SLICE (aliases another) */
    int loaded, used;
    int n_dims;                      /* logical shape, also for > 4 dims */
    int64_t shape[SD_ST_MAX_DIMS];
    const struct sd_st_tensor *src;  /* W_FILE: the file's tensor */
    struct sd_st_file *file;         /* W_FILE: borrowed from w->files */
    const char *from;                /* description of the source, for messages */
    float *dst;                      /* W_FILE: arena slot to convert into, NULL for zero copy */
    struct w_entry *slice_of;        /* W_SLICE: the tensor it aliases */
    int64_t slice_row;               /* W_SLICE: its first row in slice_of */
    int pos;                         /* position in w->e */
    size_t slot_bytes;               /* W_FILE conversion: dst's page-rounded size */
    atomic_int ready;                /* bytes at t.data readable (deferred: once materialised) */
    _Atomic uint64_t file_hash;      /* sd_weight_file_hash, 0 = not computed yet */
};

struct w_source {
    struct sd_st_file *file;         /* one reference held */
    char *desc;                      /* "path" or "path (prefix 'p.')" */
    void *arena;                     /* conversions of this file's tensors (reserved mapping) */
    size_t arena_bytes;
};

struct sd_weights {
    struct sd_ctx *ctx;
    struct w_entry **e;
    int n, cap;
    struct sd_hmap index;            /* FNV-1a of a name -> entry position */
    struct w_source *src;
    int n_src;
    pthread_mutex_t lock;            /* lazy loads, materialisations and `used` marks */
    int deferred;                    /* sd_weights_set_deferred */
    size_t page;
};

static struct w_entry *lookup(const struct sd_weights *w, const char *name) {
    struct sd_hmap_iter it;
    for (uint32_t k = sd_hmap_find(&w->index, sd_hash_str(name), &it); k != SD_HMAP_NONE;
         k = sd_hmap_next(&w->index, &it))
        if (strcmp(w->e[k]->name, name) == 0) return w->e[k];
    return NULL;
}

static void entry_free(struct w_entry *e) {
    if (!e) return;
    if (e->kind == W_ADDED) free(e->t.data);
    free(e->name);
    free(e);
}

/* Appends a new entry named `name` (must be new); returns it or NULL. */
static struct w_entry *entry_new(struct sd_weights *w, const char *name, int n_dims, const int64_t *shape) {
    struct w_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name))) goto nomem;
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 256;
        struct w_entry **p = realloc(w->e, (size_t)cap * sizeof *p);
        if (!p) goto nomem;
        w->e = p;
        w->cap = cap;
    }
    if (sd_hmap_put(&w->index, sd_hash_str(name), (uint32_t)w->n) != SD_OK) goto nomem;
    e->n_dims = n_dims;
    memcpy(e->shape, shape, (size_t)n_dims * sizeof *shape);
    if (n_dims <= 4) sd_tensor_set_shape(&e->t, SD_F32, n_dims, shape);
    e->t.flags = SD_TF_WEIGHT;
    e->t.index = -1;
    e->w = w;
    snprintf(e->t.name, sizeof e->t.name, "%s", name);
    e->pos = w->n;
    w->e[w->n++] = e;
    return e;
nomem:
    sd_errorf(w->ctx, SD_ERR_NOMEM, "weights: out of memory adding '%s'", name);
    entry_free(e);
    return NULL;
}

struct sd_weights *sd_weights_new(struct sd_ctx *ctx) {
    struct sd_weights *w = calloc(1, sizeof *w);
    if (!w) sd_errorf(ctx, SD_ERR_NOMEM, "weights: out of memory");
    else if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        sd_errorf(ctx, SD_ERR_NOMEM, "weights: cannot create a mutex");
        return NULL;
    } else {
        w->ctx = ctx;
        long page = sysconf(_SC_PAGESIZE);
        w->page = page > 0 ? (size_t)page : 4096;
    }
    return w;
}

void sd_weights_free(struct sd_weights *w) {
    if (!w) return;
    for (int k = 0; k < w->n; k++) entry_free(w->e[k]);
    for (int k = 0; k < w->n_src; k++) {
        if (w->src[k].arena) munmap(w->src[k].arena, w->src[k].arena_bytes);
        free(w->src[k].desc);
        sd_st_close(w->src[k].file);
    }
    free(w->src);
    free(w->e);
    sd_hmap_free(&w->index);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int sd_weights_add_file(struct sd_weights *w, struct sd_st_file *f, const char *strip_prefix,
                        sd_weights_rename_fn rename, void *user) {
    struct sd_ctx *ctx = w->ctx;
    size_t plen = strip_prefix ? strlen(strip_prefix) : 0;
    int n0 = w->n, rc = SD_OK;
    size_t arena_bytes = 0;
    char buf[512];
    struct w_source *srcs = realloc(w->src, (size_t)(w->n_src + 1) * sizeof *srcs);
    if (!srcs) return sd_errorf(ctx, SD_ERR_NOMEM, "weights: out of memory");
    w->src = srcs;
    struct w_source *s = &w->src[w->n_src];
    memset(s, 0, sizeof *s);
    size_t dlen = strlen(f->path) + plen + 32;
    if (!(s->desc = malloc(dlen))) return sd_errorf(ctx, SD_ERR_NOMEM, "weights: out of memory");
    if (plen) snprintf(s->desc, dlen, "%s (prefix '%s')", f->path, strip_prefix);
    else snprintf(s->desc, dlen, "%s", f->path);
    for (int k = 0; k < f->n_tensors; k++) {
        const struct sd_st_tensor *t = &f->tensors[k];
        if (plen && strncmp(t->name, strip_prefix, plen) != 0) continue;
        const char *name = t->name + plen;
        if (rename) {
            buf[0] = 0;
            name = rename(name, buf, sizeof buf, user);
            if (!name) continue;
        }
        struct w_entry *old = lookup(w, name);
        if (old) {
            rc = sd_errorf(ctx, SD_ERR_FORMAT, "weights: tensor '%s' from %s (as '%s') is already present (%s%s)",
                           name, s->desc, t->name, old->from ? "from " : "added at load time",
                           old->from ? old->from : "");
            goto fail;
        }
        struct w_entry *e = entry_new(w, name, t->n_dims, t->shape);
        if (!e) {
            rc = ctx && ctx->status ? ctx->status : SD_ERR_NOMEM;
            goto fail;
        }
        e->kind = W_FILE;
        e->src = t;
        e->file = f;
        e->from = s->desc;
        /* Conversions get a page-aligned slot of whole pages in this file's
         * arena (made accessible when converted into); the offset is kept
         * in dst until the arena exists. */
        int zero_copy = (t->type == SD_F32 && ((uintptr_t)t->data & 3) == 0) || t->nbytes == 0;
        int ok = t->type != SD_DTYPE_COUNT && e->n_dims <= 4;
        if (!zero_copy && ok) {
            e->dst = (float *)(uintptr_t)(arena_bytes + 1);
            e->slot_bytes = ((size_t)sd_tensor_nelements(&e->t) * sizeof(float) + w->page - 1) & ~(w->page - 1);
            arena_bytes += e->slot_bytes;
        }
        if (w->deferred && ok && e->n_dims >= 2 && sd_tensor_nelements(&e->t) >= SD_WEIGHTS_DEFER_MIN)
            e->t.flags |= SD_TF_DEFERRED;
    }
    if (arena_bytes) {
        /* Reserved, not committed: pages cost memory once converted into;
         * slots not yet converted stay inaccessible (a read of bytes never
         * materialised faults instead of reading zeros). */
        s->arena = mmap(NULL, arena_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (s->arena == MAP_FAILED) s->arena = NULL;
        else s->arena_bytes = arena_bytes;
        if (!s->arena) {
            rc = sd_errorf(ctx, SD_ERR_NOMEM, "weights: cannot reserve %.1f MiB for converting %s",
                           (double)arena_bytes / 1048576.0, s->desc);
            goto fail;
        }
    }
    for (int k = n0; k < w->n; k++)
        if (w->e[k]->dst) w->e[k]->dst = (float *)((char *)s->arena + ((uintptr_t)w->e[k]->dst - 1));
    s->file = sd_st_ref(f);
    w->n_src++;
    return SD_OK;
fail:
    for (int k = n0; k < w->n; k++) entry_free(w->e[k]);
    w->n = n0;
    sd_hmap_clear(&w->index); /* re-index the survivors: fewer than before, nothing allocates */
    for (int k = 0; k < w->n; k++) sd_hmap_put(&w->index, sd_hash_str(w->e[k]->name), (uint32_t)k);
    free(s->desc);
    return rc;
}

/* Checks that e can be loaded at all. */
static int entry_check(struct sd_ctx *ctx, const struct w_entry *e) {
    const struct sd_st_tensor *t = e->src;
    if (t->type == SD_DTYPE_COUNT)
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED,
                         "tensor '%s' in %s has unsupported dtype %s (sdrt loads F32, F16, BF16, I32, I64)", e->name,
                         e->from, t->dtype);
    if (e->n_dims > 4)
        return sd_errorf(ctx, SD_ERR_UNSUPPORTED, "tensor '%s' in %s has %d dims; sdrt tensors hold at most 4",
                         e->name, e->from, e->n_dims);
    return SD_OK;
}

/* Drops the whole pages of [a, a + n) of a read-only file mapping from our
 * resident set; they come back from the page cache if read again. */
static void drop_pages(const struct sd_weights *w, const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p, b = a + n, pg = (uintptr_t)w->page;
    uintptr_t pa = (a + pg - 1) & ~(pg - 1), pb = b & ~(pg - 1);
    if (pb > pa) madvise((void *)pa, pb - pa, MADV_DONTNEED);
}

/* Converts elements [first, first + n) of the file's bytes of W_FILE entry
 * e into dst (f32): the same values every time. Errors go to ctx (may be
 * NULL). */
static int entry_convert_range(struct sd_ctx *ctx, const struct w_entry *e, float *dst, int64_t first, int64_t n) {
    const struct sd_st_tensor *t = e->src;
    const struct sd_st_file *f = e->file;
    const size_t es = sd_dtype_size(t->type), nbytes = (size_t)n * es;
    const char *src = (const char *)t->data + (size_t)first * es;
    uintptr_t a = (uintptr_t)src, pg = (uintptr_t)e->w->page;
    if (f->mapped && nbytes >= (1u << 20)) madvise((void *)(a & ~(pg - 1)), a + nbytes - (a & ~(pg - 1)), MADV_WILLNEED);
    const void *from = src;
    void *tmp = NULL;
    if ((uintptr_t)from % es) {
        /* Misaligned (only in hand-made files): sd_convert_to_f32 reads
         * whole elements, so convert from an aligned copy. */
        if (!(tmp = sd_malloc_aligned(nbytes)))
            return sd_errorf(ctx, SD_ERR_NOMEM, "weights: out of memory loading '%s'", e->name);
        memcpy(tmp, from, nbytes);
        from = tmp;
    }
    sd_convert_to_f32(dst, from, t->type, n);
    sd_free_aligned(tmp);
    /* The source pages are no longer needed in our resident set. */
    if (f->mapped) drop_pages(e->w, src, nbytes);
    return SD_OK;
}

static int entry_convert(struct sd_ctx *ctx, const struct w_entry *e, float *dst) {
    return entry_convert_range(ctx, e, dst, 0, sd_tensor_nelements(&e->t));
}

/* Makes the f32 bytes of a loaded W_FILE entry readable: converts into its
 * slot (made accessible first). Caller holds w->lock. */
static int entry_materialise(struct sd_ctx *ctx, struct w_entry *e) {
    if (atomic_load_explicit(&e->ready, memory_order_relaxed)) return SD_OK;
    if (e->dst && e->t.data == e->dst) {
        if (mprotect(e->dst, e->slot_bytes, PROT_READ | PROT_WRITE) != 0)
            return sd_errorf(ctx, SD_ERR_NOMEM, "weights: cannot commit %.1f MiB for '%s'",
                             (double)e->slot_bytes / 1048576.0, e->name);
        int rc = entry_convert(ctx, e, e->dst);
        if (rc != SD_OK) return rc;
    }
    atomic_store_explicit(&e->ready, 1, memory_order_release);
    return SD_OK;
}

/* Points e's data into its slot or the mapping and, unless e is deferred,
 * makes the bytes readable. Errors go to ctx (may be NULL: the message is
 * dropped). Caller holds w->lock (or is the only thread). */
static int entry_load(struct sd_ctx *ctx, struct w_entry *e) {
    if (e->loaded) return SD_OK;
    int rc = entry_check(ctx, e);
    if (rc != SD_OK) return rc;
    e->t.data = e->dst ? (void *)e->dst : (void *)e->src->data; /* zero copy is read-only: see weights.h */
    e->loaded = 1;
    return e->t.flags & SD_TF_DEFERRED ? SD_OK : entry_materialise(ctx, e);
}

static int load(struct sd_weights *w, struct sd_ctx *ctx, struct w_entry *e) {
    pthread_mutex_lock(&w->lock);
    e->used = 1;
    int rc = e->kind == W_FILE ? entry_load(ctx, e) : SD_OK;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

struct sd_tensor *sd_weights_find_to(struct sd_weights *w, struct sd_ctx *ctx, const char *name) {
    struct w_entry *e = w && name ? lookup(w, name) : NULL;
    if (!e || load(w, ctx, e)) return NULL;
    return &e->t;
}

struct sd_tensor *sd_weights_find(struct sd_weights *w, const char *name) {
    return sd_weights_find_to(w, w ? w->ctx : NULL, name);
}

static const char *sources(const struct sd_weights *w, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < w->n_src && o < n; k++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", k ? ", " : "", w->src[k].desc);
    if (!w->n_src) snprintf(buf, n, "weights (no files)");
    return buf;
}

static char *dims_str(int n_dims, const int64_t *dims, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < n_dims && o < n; d++) {
        if (dims[d] < 0) o += (size_t)snprintf(buf + o, n - o, "%s*", d ? ", " : "");
        else o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)dims[d]);
    }
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

struct sd_tensor *sd_weights_get(struct sd_weights *w, const char *name, int n_dims, const int64_t *dims) {
    return sd_weights_get_to(w, w ? w->ctx : NULL, name, n_dims, dims);
}

struct sd_tensor *sd_weights_get_to(struct sd_weights *w, struct sd_ctx *ctx, const char *name, int n_dims,
                                    const int64_t *dims) {
    if (!w) return NULL;
    struct w_entry *e = name ? lookup(w, name) : NULL;
    char a[256], b[256];
    if (!e) {
        sd_errorf(ctx, SD_ERR_FORMAT, "missing tensor '%s' in %s", name ? name : "(null)", sources(w, a, sizeof a));
        return NULL;
    }
    if (n_dims >= 0) {
        int ok = n_dims == e->n_dims;
        for (int d = 0; ok && d < n_dims; d++)
            if (dims[d] != -1 && dims[d] != e->shape[d]) ok = 0;
        if (!ok) {
            sd_errorf(ctx, SD_ERR_FORMAT, "tensor '%s' in %s has shape %s, expected %s", name,
                      e->from ? e->from : "weights", dims_str(e->n_dims, e->shape, a, sizeof a),
                      dims_str(n_dims, dims, b, sizeof b));
            return NULL;
        }
    }
    return load(w, ctx, e) ? NULL : &e->t;
}

int sd_weights_shape(const struct sd_weights *w, const char *name, int64_t dims[SD_ST_MAX_DIMS]) {
    const struct w_entry *e = w && name ? lookup(w, name) : NULL;
    if (!e) return -1;
    memcpy(dims, e->shape, (size_t)e->n_dims * sizeof *dims);
    return e->n_dims;
}

static int check_new_name(struct sd_weights *w, const char *name) {
    if (!name || !*name) return sd_errorf(w->ctx, SD_ERR_INVALID, "weights: empty tensor name");
    struct w_entry *old = lookup(w, name);
    if (old)
        return sd_errorf(w->ctx, SD_ERR_INVALID, "weights: tensor '%s' is already present (%s%s)", name,
                         old->from ? "from " : "added at load time", old->from ? old->from : "");
    return SD_OK;
}

struct sd_tensor *sd_weights_add(struct sd_weights *w, const char *name, int n_dims, const int64_t *dims, float *data) {
    if (!w) {
        free(data);
        return NULL;
    }
    char a[256];
    int bad = n_dims < 0 || n_dims > 4 || !data;
    for (int d = 0; !bad && d < n_dims; d++) bad = dims[d] < 0;
    if (bad) {
        sd_errorf(w->ctx, SD_ERR_INVALID, "weights: cannot add '%s' with shape %s%s", name ? name : "(null)",
                  n_dims >= 0 && n_dims <= 4 ? dims_str(n_dims, dims, a, sizeof a) : "(rank out of 0..4)",
                  data ? "" : " and no data");
        free(data);
        return NULL;
    }
    struct w_entry *e = check_new_name(w, name) ? NULL : entry_new(w, name, n_dims, dims);
    if (!e) {
        free(data);
        return NULL;
    }
    e->kind = W_ADDED;
    e->t.data = data;
    e->loaded = 1;
    return &e->t;
}

struct sd_tensor *sd_weights_add_slice(struct sd_weights *w, const char *name, const char *src, int64_t begin,
                                       int64_t end) {
    if (!w) return NULL;
    struct sd_tensor *s = sd_weights_get(w, src, -1, NULL);
    if (!s) return NULL;
    struct w_entry *se = lookup(w, src);
    char a[256];
    if (se->n_dims < 1 || begin < 0 || end < begin || end > se->shape[0]) {
        sd_errorf(w->ctx, SD_ERR_INVALID, "weights: cannot slice rows [%lld, %lld) of '%s' with shape %s for '%s'",
                  (long long)begin, (long long)end, src, dims_str(se->n_dims, se->shape, a, sizeof a),
                  name ? name : "(null)");
        return NULL;
    }
    if (check_new_name(w, name)) return NULL;
    /* A slice reads its rows of the source's bytes: they must be there. */
    pthread_mutex_lock(&w->lock);
    int rc = se->kind == W_FILE ? entry_materialise(w->ctx, se) : SD_OK;
    pthread_mutex_unlock(&w->lock);
    if (rc != SD_OK) return NULL;
    int64_t shape[SD_ST_MAX_DIMS];
    memcpy(shape, se->shape, sizeof shape);
    shape[0] = end - begin;
    struct w_entry *e = entry_new(w, name, se->n_dims, shape);
    if (!e) return NULL;
    /* entry_new may have moved w->e, not the entries: se is still valid. */
    size_t row = (size_t)(sd_tensor_nelements(s) / (se->shape[0] ? se->shape[0] : 1));
    e->kind = W_SLICE;
    e->slice_of = se;
    e->slice_row = begin;
    e->from = se->from;
    e->t.data = (float *)s->data + (size_t)begin * row;
    e->loaded = e->used = 1;
    return &e->t;
}

int sd_weights_load_all(struct sd_weights *w) {
    /* One parallel region over the tensors (each conversion then runs on one
     * thread) instead of one region per tensor: fewer barriers, and the
     * page faults of different tensors overlap. Messages are recorded by a
     * serial pass over whatever failed. */
    int rc = SD_OK;
    pthread_mutex_lock(&w->lock);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < w->n; k++)
        if (w->e[k]->kind == W_FILE) entry_load(NULL, w->e[k]);
    for (int k = 0; k < w->n && rc == SD_OK; k++) {
        struct w_entry *e = w->e[k];
        if (e->kind == W_FILE && entry_load(w->ctx, e)) rc = w->ctx && w->ctx->status ? w->ctx->status : SD_ERR_FORMAT;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int sd_weights_count(const struct sd_weights *w) { return w ? w->n : 0; }

int64_t sd_weights_n_params(const struct sd_weights *w) {
    int64_t n = 0;
    for (int k = 0; w && k < w->n; k++) {
        const struct w_entry *e = w->e[k];
        if (e->kind == W_SLICE) continue;
        int64_t c = 1;
        for (int d = 0; d < e->n_dims; d++) c *= e->shape[d];
        n += c;
    }
    return n;
}

struct sd_tensor *sd_weights_tensor(struct sd_weights *w, int i) {
    return w && i >= 0 && i < w->n ? &w->e[i]->t : NULL;
}

size_t sd_weights_nbytes(const struct sd_weights *w) {
    size_t n = 0;
    for (int k = 0; w && k < w->n; k++)
        if (w->e[k]->kind != W_SLICE && w->e[k]->loaded &&
            (w->e[k]->kind == W_ADDED || atomic_load_explicit(&w->e[k]->ready, memory_order_acquire)))
            n += sd_tensor_nbytes(&w->e[k]->t);
    return n;
}

const char *sd_weights_name(const struct sd_weights *w, int i) {
    return w && i >= 0 && i < w->n ? w->e[i]->name : NULL;
}

int sd_weights_used(const struct sd_weights *w, int i) { return w && i >= 0 && i < w->n ? w->e[i]->used : 0; }

int sd_weights_reshape(struct sd_weights *w, const char *name, int n_dims, const int64_t *dims) {
    struct w_entry *e = lookup(w, name);
    if (!e) return sd_errorf(w->ctx, SD_ERR_INVALID, "reshape: missing tensor '%s'", name);
    int64_t a = 1, b = 1;
    for (int i = 0; i < e->n_dims; i++) a *= e->shape[i];
    for (int i = 0; i < n_dims; i++) b *= dims[i];
    if (n_dims < 1 || n_dims > 4 || a != b)
        return sd_errorf(w->ctx, SD_ERR_INVALID, "reshape: tensor '%s' has %lld elements, target %lld", name, (long long)a,
                         (long long)b);
    e->n_dims = n_dims;
    memcpy(e->shape, dims, (size_t)n_dims * sizeof *dims);
    void *data = e->t.data;
    sd_tensor_set_shape(&e->t, SD_F32, n_dims, dims);
    e->t.data = data;
    return SD_OK;
}

int sd_weights_index(const struct sd_weights *w, const char *name) {
    const struct w_entry *e = w && name ? lookup(w, name) : NULL;
    return e ? e->pos : -1;
}

int sd_weights_slice_of(const struct sd_weights *w, int i, int64_t *row) {
    if (!w || i < 0 || i >= w->n || w->e[i]->kind != W_SLICE) return -1;
    if (row) *row = w->e[i]->slice_row;
    return w->e[i]->slice_of->pos;
}

int sd_weights_set_data(struct sd_weights *w, int i, float *data) {
    if (!w || i < 0 || i >= w->n || !data)
        return sd_errorf(w ? w->ctx : NULL, SD_ERR_INVALID, "weights: set_data on a bad index %d", i);
    struct w_entry *e = w->e[i];
    if (e->kind == W_SLICE || !e->loaded)
        return sd_errorf(w->ctx, SD_ERR_INVALID, "weights: '%s' is a slice or not loaded: its data cannot be replaced",
                         e->name);
    e->t.data = data;
    size_t row = e->shape[0] > 0 ? (size_t)(sd_tensor_nelements(&e->t) / e->shape[0]) : 0;
    for (int k = 0; k < w->n; k++)
        if (w->e[k]->kind == W_SLICE && w->e[k]->slice_of == e) w->e[k]->t.data = data + (size_t)w->e[k]->slice_row * row;
    return SD_OK;
}

void sd_weights_set_deferred(struct sd_weights *w, int on) {
    if (w) w->deferred = on != 0;
}

/* A tensor flagged SD_TF_DEFERRED is the `t` of a W_FILE entry. */
static struct w_entry *deferred_entry(const struct sd_tensor *t) {
    return t && (t->flags & SD_TF_DEFERRED) ? (struct w_entry *)(uintptr_t)t : NULL;
}

int sd_weight_materialize(struct sd_ctx *ctx, struct sd_tensor *t) {
    struct w_entry *e = deferred_entry(t);
    if (!e || atomic_load_explicit(&e->ready, memory_order_acquire)) return SD_OK;
    pthread_mutex_lock(&e->w->lock);
    int rc = e->loaded ? entry_materialise(ctx, e)
                       : sd_errorf(ctx, SD_ERR_INVALID, "weights: '%s' is not loaded: nothing to materialise", e->name);
    pthread_mutex_unlock(&e->w->lock);
    return rc;
}

int sd_weight_resident(const struct sd_tensor *t) {
    const struct w_entry *e = deferred_entry(t);
    if (!t || !t->data) return 0; /* not loaded */
    return !e || !e->dst || t->data != e->dst || atomic_load_explicit(&e->ready, memory_order_acquire);
}

int sd_weight_read_rows(struct sd_ctx *ctx, const struct sd_tensor *t, int64_t row0, int64_t n_rows, float *dst) {
    struct w_entry *e = deferred_entry(t);
    if (!t || !t->data) return sd_errorf(ctx, SD_ERR_INVALID, "weights: read of a tensor without data");
    const int64_t rows = sd_tensor_dim(t, 0), row = rows > 0 ? sd_tensor_nelements(t) / rows : 0;
    if (row0 < 0 || n_rows < 0 || row0 + n_rows > rows)
        return sd_errorf(ctx, SD_ERR_INVALID, "weights: rows [%lld, %lld) of '%s' with %lld rows", (long long)row0,
                         (long long)(row0 + n_rows), t->name, (long long)rows);
    const float *at = (const float *)t->data + row0 * row;
    const size_t nb = (size_t)(n_rows * row) * sizeof(float);
    if (!e || atomic_load_explicit(&e->ready, memory_order_acquire) || (e->dst && t->data != e->dst)) {
        memcpy(dst, at, nb); /* resident (or a caller's replacement: sd_weights_set_data) */
        return SD_OK;
    }
    if (e->dst) return entry_convert_range(ctx, e, dst, row0 * row, n_rows * row);
    memcpy(dst, at, nb); /* zero copy: read the mapping, then let its pages go */
    if (e->file->mapped) drop_pages(e->w, at, nb);
    return SD_OK;
}

int sd_weight_read_f32(struct sd_ctx *ctx, const struct sd_tensor *t, float *dst) {
    return sd_weight_read_rows(ctx, t, 0, t ? sd_tensor_dim(t, 0) : 0, dst);
}

int sd_weight_file_hash(const struct sd_tensor *t, uint64_t *h) {
    struct w_entry *e = deferred_entry(t);
    if (!e || e->kind != W_FILE || !e->loaded || !t->data) return 0;
    /* Still the file's values: not pointed elsewhere by sd_weights_set_data. */
    if (t->data != (e->dst ? (const void *)e->dst : e->src->data)) return 0;
    uint64_t v = atomic_load_explicit(&e->file_hash, memory_order_relaxed);
    if (!v) {
        const struct sd_st_tensor *s = e->src;
        const size_t nbytes = s->nbytes;
        uint64_t seed = sd_hash_u64(0x5d7e1ull ^ (uint64_t)s->type);
        for (int i = 0; i < e->n_dims; i++) seed = sd_hash_u64(seed ^ (uint64_t)e->shape[i]);
        v = sd_hash_bulk(s->data, nbytes, seed) | 1; /* never 0 (= not computed) */
        /* Let the pages go unless they are the tensor's bytes read in place. */
        if (e->file->mapped && (e->dst || !atomic_load_explicit(&e->ready, memory_order_acquire)))
            drop_pages(e->w, s->data, nbytes);
        atomic_store_explicit(&e->file_hash, v, memory_order_relaxed);
    }
    *h = v;
    return 1;
}
