/* cpu_dnnl.c - the CPU backend's oneDNN engine, stream, primitive cache and
 * weights cache (contracts in cpu_dnnl.h).
 *
 * All of it is per backend (per runtime): two runtimes in two threads share
 * no engine, stream, cache or counter. Weight copies follow the weights'
 * lifecycle (backend.h): weights_released and weights_changed drop the
 * copies whose source bytes lie in the weights named, and no others.
 *
 * Both caches are chained hash tables of malloc'd entries, so an entry's
 * address is stable while cached (ops keep pointers into it during a call).
 * They grow by doubling the bucket count at load factor 1. Nothing is ever
 * evicted: a model has a few dozen distinct GEMM-class shapes and its
 * weights are cached once each, so the caches are bounded by the model
 * (sd_cpu_dnnl_free releases everything).
 *
 * The runtime option conv (enum sd_conv_policy: auto|lowmem|direct|nchw|gemm|
 * wino) picks the conv2d policy or forces one algorithm (at init; see op_conv2d.c). `lowmem` avoids the
 * reordered weight copies (Winograd's are 1.8-4x the weights).
 */
#include "cpu_dnnl.h"

#include <dnnl_debug.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct sd_dnnl_weight {
    struct sd_dnnl_weight *next;
    uint64_t hash;
    const float *src;
    size_t src_bytes;
    dnnl_memory_desc_t user_md, want_md;
    dnnl_memory_t mem;       /* owns its buffer unless it wraps src */
    size_t bytes;            /* of that buffer (0 when it wraps src) */
    uint64_t fingerprint;    /* of src's bytes at reorder time (soft guard) */
};

static const char *conv_algo_names[SD_CONV_ALGO_COUNT] = {"auto", "lowmem", "direct", "nchw", "gemm", "wino"};

const char *sd_conv_algo_name(int algo) {
    return algo >= 0 && algo < SD_CONV_ALGO_COUNT ? conv_algo_names[algo] : "?";
}

int sd_dnnl_check(struct sd_cpu *cpu, dnnl_status_t s, const char *fn) {
    if (s == dnnl_success) return SD_OK;
    return sd_errorf(cpu->ctx, SD_ERR_BACKEND, "oneDNN: %s = %d (%s)", fn, (int)s, dnnl_status2str(s));
}

static uint64_t fnv1a(const void *p, size_t n, uint64_t h) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Cheap fingerprint: 64 floats sampled evenly over the weight. */
static uint64_t weight_fingerprint(const float *src, size_t bytes) {
    size_t n = bytes / sizeof(float);
    uint64_t h = 0xcbf29ce484222325ull;
    if (!n) return h;
    for (size_t i = 0; i < 64; i++) {
        size_t j = (size_t)((double)i * (double)(n - 1) / 63.0);
        h = fnv1a(&src[j], sizeof(float), h);
    }
    return h;
}

/* ---- generic chained table growth ---- */

#define REHASH(type, buckets, nb, count)                                           \
    do {                                                                           \
        if ((count) < (nb)) break;                                                 \
        size_t nnb_ = (nb) ? (nb) * 2 : 64;                                        \
        type **nbk_ = calloc(nnb_, sizeof *nbk_);                                  \
        if (!nbk_) break; /* keep the old table: just longer chains */             \
        for (size_t i_ = 0; i_ < (nb); i_++)                                       \
            for (type *e_ = (buckets)[i_], *n_; e_; e_ = n_) {                     \
                n_ = e_->next;                                                     \
                e_->next = nbk_[e_->hash % nnb_];                                  \
                nbk_[e_->hash % nnb_] = e_;                                        \
            }                                                                      \
        free(buckets);                                                             \
        (buckets) = nbk_;                                                          \
        (nb) = nnb_;                                                               \
    } while (0)

/* ---- primitive cache ---- */

static void prim_destroy(struct sd_dnnl_prim *e) {
    if (!e) return;
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->pre) dnnl_primitive_destroy(e->pre);
    if (e->post) dnnl_primitive_destroy(e->post);
    for (int i = 0; i < SD_DNNL_MAX_MEM; i++)
        if (e->mem[i]) dnnl_memory_destroy(e->mem[i]);
    free(e);
}

struct sd_dnnl_prim *sd_dnnl_prim_get(struct sd_cpu *cpu, const struct sd_dnnl_key *key, int *created) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    uint64_t h = fnv1a(key, sizeof *key, 0xcbf29ce484222325ull);
    *created = 0;
    if (d->n_prim_buckets) {
        for (struct sd_dnnl_prim *e = d->prim_buckets[h % d->n_prim_buckets]; e; e = e->next)
            if (e->hash == h && memcmp(&e->key, key, sizeof *key) == 0) {
                d->prim_hits++;
                d->last = e;
                return e;
            }
    }
    REHASH(struct sd_dnnl_prim, d->prim_buckets, d->n_prim_buckets, d->n_prims);
    struct sd_dnnl_prim *e = calloc(1, sizeof *e);
    if (!e || !d->n_prim_buckets) {
        free(e);
        sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN primitive cache: out of memory");
        return NULL;
    }
    e->key = *key;
    e->hash = h;
    e->next = d->prim_buckets[h % d->n_prim_buckets];
    d->prim_buckets[h % d->n_prim_buckets] = e;
    d->n_prims++;
    d->prims_created++;
    d->last = e;
    *created = 1;
    return e;
}

void sd_dnnl_prim_drop(struct sd_cpu *cpu, struct sd_dnnl_prim *e) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    if (!e || !d->n_prim_buckets) return;
    for (struct sd_dnnl_prim **pp = &d->prim_buckets[e->hash % d->n_prim_buckets]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            if (d->last == e) d->last = NULL;
            d->n_prims--;
            prim_destroy(e);
            return;
        }
}

/* ---- small helpers ---- */

int sd_dnnl_mem_new(struct sd_cpu *cpu, const dnnl_memory_desc_t *md, dnnl_memory_t *out) {
    return sd_dnnl_check(cpu, dnnl_memory_create(out, md, cpu->dnnl->engine, DNNL_MEMORY_NONE), "dnnl_memory_create");
}

int sd_dnnl_bind(struct sd_cpu *cpu, dnnl_memory_t m, void *p) {
    return sd_dnnl_check(cpu, dnnl_memory_set_data_handle_v2(m, p, cpu->dnnl->stream),
                         "dnnl_memory_set_data_handle_v2");
}

int sd_dnnl_prim_from_pd(struct sd_cpu *cpu, dnnl_primitive_desc_t pd, dnnl_primitive_t *out, char *impl,
                         size_t impl_n) {
    const char *name = NULL;
    if (impl && impl_n) {
        impl[0] = 0;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name)
            snprintf(impl, impl_n, "%s", name);
    }
    dnnl_status_t s = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    return sd_dnnl_check(cpu, s, "dnnl_primitive_create");
}

int sd_dnnl_reorder_new(struct sd_cpu *cpu, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                        dnnl_primitive_t *out) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    dnnl_primitive_desc_t pd = NULL;
    int rc = sd_dnnl_check(cpu, dnnl_reorder_primitive_desc_create(&pd, from, d->engine, to, d->engine, NULL),
                           "dnnl_reorder_primitive_desc_create");
    if (rc != SD_OK) return rc;
    return sd_dnnl_prim_from_pd(cpu, pd, out, NULL, 0);
}

int sd_dnnl_exec(struct sd_cpu *cpu, dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args, int wait) {
    int rc = sd_dnnl_check(cpu, dnnl_primitive_execute(p, cpu->dnnl->stream, nargs, args), "dnnl_primitive_execute");
    if (rc == SD_OK && wait) rc = sd_dnnl_check(cpu, dnnl_stream_wait(cpu->dnnl->stream), "dnnl_stream_wait");
    return rc;
}

/* ---- weights cache ---- */

static void weight_release(struct sd_cpu_dnnl *d, struct sd_dnnl_weight *w) {
    if (w->mem) dnnl_memory_destroy(w->mem);
    w->mem = NULL;
    d->weight_bytes -= w->bytes;
    w->bytes = 0;
}

static void weight_destroy(struct sd_cpu_dnnl *d, struct sd_dnnl_weight *w) {
    if (!w) return;
    weight_release(d, w);
    free(w);
}

/* Fills w->mem with src in w->want_md (a reorder, or a wrapper of src). */
static int weight_fill(struct sd_cpu *cpu, struct sd_dnnl_weight *w, const dnnl_memory_desc_t *user_md) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    dnnl_memory_t user = NULL;
    dnnl_primitive_t r = NULL;
    int rc = SD_OK;
    weight_release(d, w);
    if (dnnl_memory_desc_equal(user_md, &w->want_md)) {
        SD_DNNL_TRY(cpu, dnnl_memory_create(&w->mem, user_md, d->engine, (void *)w->src));
    } else {
        SD_DNNL_TRY(cpu, dnnl_memory_create(&w->mem, &w->want_md, d->engine, DNNL_MEMORY_ALLOCATE));
        w->bytes = dnnl_memory_desc_get_size(&w->want_md);
        d->weight_bytes += w->bytes;
        SD_DNNL_TRY(cpu, dnnl_memory_create(&user, user_md, d->engine, (void *)w->src));
        SD_TRY(sd_dnnl_reorder_new(cpu, user_md, &w->want_md, &r));
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, w->mem}};
        SD_TRY(sd_dnnl_exec(cpu, r, 2, args, 1));
        d->weight_reorders++;
        dnnl_primitive_destroy(r);
        dnnl_memory_destroy(user);
    }
    w->fingerprint = weight_fingerprint(w->src, w->src_bytes);
    return SD_OK;
fail:
    if (r) dnnl_primitive_destroy(r);
    if (user) dnnl_memory_destroy(user);
    weight_release(d, w);
    return rc;
}

int sd_dnnl_weights_get(struct sd_cpu *cpu, const float *src, const dnnl_memory_desc_t *user_md,
                        const dnnl_memory_desc_t *want_md, dnnl_memory_t *out) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    size_t bytes = dnnl_memory_desc_get_size(user_md);
    uint64_t h = fnv1a(&src, sizeof src, 0xcbf29ce484222325ull);
    h = fnv1a(&bytes, sizeof bytes, h);
    if (d->n_w_buckets) {
        for (struct sd_dnnl_weight *w = d->w_buckets[h % d->n_w_buckets]; w; w = w->next) {
            if (w->hash != h || w->src != src || w->src_bytes != bytes ||
                !dnnl_memory_desc_equal(&w->want_md, want_md) || !dnnl_memory_desc_equal(&w->user_md, user_md))
                continue;
            if (!w->mem || w->fingerprint != weight_fingerprint(src, bytes)) {
                /* The bytes changed under us (contract broken): redo it. */
                int rc = weight_fill(cpu, w, user_md);
                if (rc != SD_OK) return rc;
            } else {
                d->weight_hits++;
            }
            *out = w->mem;
            return SD_OK;
        }
    }
    REHASH(struct sd_dnnl_weight, d->w_buckets, d->n_w_buckets, d->n_weights);
    struct sd_dnnl_weight *w = calloc(1, sizeof *w);
    if (!w || !d->n_w_buckets) {
        free(w);
        return sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN weights cache: out of memory");
    }
    w->hash = h;
    w->src = src;
    w->src_bytes = bytes;
    w->user_md = *user_md;
    w->want_md = *want_md;
    int rc = weight_fill(cpu, w, user_md);
    if (rc != SD_OK) {
        weight_destroy(d, w);
        return rc;
    }
    w->next = d->w_buckets[h % d->n_w_buckets];
    d->w_buckets[h % d->n_w_buckets] = w;
    d->n_weights++;
    *out = w->mem;
    return SD_OK;
}

void sd_cpu_dnnl_weights_forget(struct sd_cpu *cpu) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (!d) return;
    for (size_t i = 0; i < d->n_w_buckets; i++) {
        for (struct sd_dnnl_weight *w = d->w_buckets[i], *n; w; w = n) {
            n = w->next;
            weight_destroy(d, w);
        }
        d->w_buckets[i] = NULL;
    }
    d->n_weights = 0;
}

void sd_cpu_dnnl_weights_drop(struct sd_cpu *cpu, struct sd_tensor *const *w, int n) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (!d || n <= 0) return;
    struct sd_weight_set set;
    if (sd_weight_set_init(&set, w, n) != SD_OK) { /* no memory for the set: drop them all */
        sd_cpu_dnnl_weights_forget(cpu);
        return;
    }
    for (size_t i = 0; i < d->n_w_buckets; i++)
        for (struct sd_dnnl_weight **pp = &d->w_buckets[i]; *pp;) {
            struct sd_dnnl_weight *e = *pp;
            if (sd_weight_set_hits(&set, e->src, e->src_bytes)) {
                *pp = e->next;
                weight_destroy(d, e);
                d->n_weights--;
            } else {
                pp = &e->next;
            }
        }
    sd_weight_set_free(&set);
}

static void cpu_weights_drop(struct sd_backend *b, struct sd_tensor *const *w, int n) {
    sd_cpu_dnnl_weights_drop(sd_cpu_of(b), w, n);
}

/* Both lifecycle events drop exactly the copies of the weights named:
 * released ones are never asked for again, changed ones are reordered
 * again from their new bytes on their next use. */
void sd_cpu_weights_released(struct sd_backend *b, struct sd_tensor *const *w, int n) { cpu_weights_drop(b, w, n); }
void sd_cpu_weights_changed(struct sd_backend *b, struct sd_tensor *const *w, int n) { cpu_weights_drop(b, w, n); }

/* ---- init / free ---- */

void sd_cpu_dnnl_set_conv_algo(struct sd_cpu *cpu, enum sd_conv_algo algo) {
    if (cpu && cpu->dnnl && algo >= 0 && algo < SD_CONV_ALGO_COUNT) cpu->dnnl->conv_algo = algo;
}

_Static_assert((int)SD_CONV_ALGO_COUNT == (int)SD_CONV_POLICY_COUNT && (int)SD_CONV_LOWMEM == (int)SD_CONV_POLICY_LOWMEM &&
                   (int)SD_CONV_WINO == (int)SD_CONV_POLICY_WINO,
               "enum sd_conv_algo follows enum sd_conv_policy (runtime.h)");

int sd_cpu_dnnl_init(struct sd_cpu *cpu, int conv_policy) {
    struct sd_cpu_dnnl *d = calloc(1, sizeof *d);
    int rc = SD_OK;
    if (!d) return sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN: out of memory");
    cpu->dnnl = d;
    SD_DNNL_TRY(cpu, dnnl_engine_create(&d->engine, dnnl_cpu, 0));
    SD_DNNL_TRY(cpu, dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags));
    if (conv_policy < 0 || conv_policy >= SD_CONV_ALGO_COUNT) {
        rc = sd_errorf(cpu->ctx, SD_ERR_INVALID, "cpu backend: convolution policy %d unknown (auto, lowmem, direct, nchw, gemm, wino)",
                       conv_policy);
        goto fail;
    }
    d->conv_algo = conv_policy;
    return SD_OK;
fail:
    sd_cpu_dnnl_free(cpu);
    return rc;
}

void sd_cpu_dnnl_free(struct sd_cpu *cpu) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (!d) return;
    for (size_t i = 0; i < d->n_prim_buckets; i++)
        for (struct sd_dnnl_prim *e = d->prim_buckets[i], *n; e; e = n) {
            n = e->next;
            prim_destroy(e);
        }
    free(d->prim_buckets);
    sd_cpu_dnnl_weights_forget(cpu);
    free(d->w_buckets);
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->engine) dnnl_engine_destroy(d->engine);
    free(d);
    cpu->dnnl = NULL;
}
