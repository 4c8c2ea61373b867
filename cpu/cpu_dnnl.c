/* cpu_dnnl.c - the CPU backend's oneDNN engine, stream, primitive cache and
 * weights cache (contracts in cpu_dnnl.h).
 *
 * All of it is per backend (per runtime): two runtimes in two threads share
 * no engine, stream, cache or counter. Weight copies follow the weights'
 * lifecycle (backend.h): weights_released and weights_changed drop the
 * copies whose source bytes lie in the weights named, and no others.
 *
 * Both caches keep malloc'd entries in an array, indexed by an sd_hmap
 * (hashmap.h) from each entry's hash to its position, so an entry's address
 * is stable while cached (ops keep pointers into it during a call). Nothing
 * is evicted: a model has a few dozen distinct GEMM-class shapes and its
 * weights are cached once each, so the caches are bounded by the model
 * (sd_cpu_dnnl_free releases everything).
 *
 * The runtime option conv (enum sd_conv_policy: auto|lowmem|direct|nchw|gemm|
 * wino) picks the conv2d policy or forces one algorithm (at init; see op_conv2d.c). `lowmem` avoids the
 * reordered weight copies (Winograd's are 1.8-4x the weights).
 */
#include "cpu_dnnl.h"
#include "cpu_wcache.h"
#include "weights.h"

#include <dnnl_debug.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct sd_dnnl_weight {
    uint64_t hash;           /* of (src, src_bytes): the cache's index */
    const float *src;
    size_t src_bytes;
    dnnl_memory_desc_t user_md, want_md;
    dnnl_memory_t mem;       /* on buf, or wrapping src */
    void *buf;               /* the copy (sd_cpu_alloc), NULL when mem wraps src or a cache entry */
    size_t bytes;            /* of that buffer (0 when it wraps src) */
    const void *mapped;      /* the copy mapped from the disk cache (cpu_wcache.h), or NULL */
    size_t mapped_bytes;
    uint64_t fingerprint;    /* of src's bytes at reorder time (soft guard; not for deferred weights) */
    int deferred;            /* src is a deferred weight (weights.h): its bytes are not read in place */
    sd_dnnl_weight_prep_fn *prep; /* our own preparation instead of a oneDNN reorder, or NULL */
};

static const char *conv_algo_names[SD_CONV_ALGO_COUNT] = {"auto", "lowmem", "direct", "nchw", "gemm", "wino"};

const char *sd_conv_algo_name(int algo) {
    return algo >= 0 && algo < SD_CONV_ALGO_COUNT ? conv_algo_names[algo] : "?";
}

int sd_dnnl_check(struct sd_cpu *cpu, dnnl_status_t s, const char *fn) {
    if (s == dnnl_success) return SD_OK;
    return sd_errorf(cpu->ctx, SD_ERR_BACKEND, "oneDNN: %s = %d (%s)", fn, (int)s, dnnl_status2str(s));
}

/* Cheap fingerprint: 64 floats sampled evenly over the weight. */
static uint64_t weight_fingerprint(const float *src, size_t bytes) {
    size_t n = bytes / sizeof(float);
    uint64_t h = SD_FNV1A_SEED;
    if (!n) return h;
    for (size_t i = 0; i < 64; i++) {
        size_t j = (size_t)((double)i * (double)(n - 1) / 63.0);
        h = sd_fnv1a(&src[j], sizeof(float), h);
    }
    return h;
}

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
    uint64_t h = sd_fnv1a(key, sizeof *key, SD_FNV1A_SEED);
    *created = 0;
    struct sd_hmap_iter it;
    for (uint32_t v = sd_hmap_find(&d->prim_index, h, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&d->prim_index, &it))
        if (memcmp(&d->prims[v]->key, key, sizeof *key) == 0) {
            d->prim_hits++;
            d->last = d->prims[v];
            return d->prims[v];
        }
    if (d->n_prims == d->cap_prims) {
        size_t cap = d->cap_prims ? 2 * d->cap_prims : 64;
        struct sd_dnnl_prim **p = realloc(d->prims, cap * sizeof *p);
        if (!p) goto nomem;
        d->prims = p, d->cap_prims = cap;
    }
    struct sd_dnnl_prim *e = calloc(1, sizeof *e);
    if (!e || sd_hmap_put(&d->prim_index, h, (uint32_t)d->n_prims) != SD_OK) {
        free(e);
        goto nomem;
    }
    e->key = *key;
    e->hash = h;
    d->prims[d->n_prims++] = e;
    d->prims_created++;
    d->last = e;
    *created = 1;
    return e;
nomem:
    sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN primitive cache: out of memory");
    return NULL;
}

void sd_dnnl_prim_drop(struct sd_cpu *cpu, struct sd_dnnl_prim *e) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    if (!e) return;
    struct sd_hmap_iter it;
    for (uint32_t v = sd_hmap_find(&d->prim_index, e->hash, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&d->prim_index, &it))
        if (d->prims[v] == e) {
            sd_hmap_remove(&d->prim_index, &it);
            uint32_t last = (uint32_t)--d->n_prims; /* the last entry moves into e's place */
            if (v != last) {
                d->prims[v] = d->prims[last];
                sd_hmap_replace(&d->prim_index, d->prims[v]->hash, last, v);
            }
            if (d->last == e) d->last = NULL;
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
    if (w->mapped) sd_wcache_release(d->wcache, w->mapped, w->mapped_bytes);
    d->weight_mapped_bytes -= w->mapped_bytes;
    w->mapped = NULL;
    w->mapped_bytes = 0;
    if (w->buf) sd_wcache_unput(d->wcache, w->buf);
    sd_cpu_free(w->buf);
    w->buf = NULL;
    d->weight_bytes -= w->bytes;
    w->bytes = 0;
}

static void weight_destroy(struct sd_cpu_dnnl *d, struct sd_dnnl_weight *w) {
    if (!w) return;
    weight_release(d, w);
    free(w);
}

/* The staging buffer a deferred weight's f32 values are read into for its
 * reorder (grown on demand, released by sd_cpu_dnnl_staging_release). */
static float *staging(struct sd_cpu *cpu, size_t n) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    if (n > d->staging_size) {
        sd_cpu_free(d->staging);
        d->staging_size = 0;
        if (!(d->staging = sd_cpu_alloc(n))) {
            sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN weights cache: cannot stage %.1f MiB", (double)n / 1048576.0);
            return NULL;
        }
        d->staging_size = n;
    }
    return d->staging;
}

void sd_cpu_dnnl_staging_release(struct sd_cpu *cpu) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (!d) return;
    sd_cpu_free(d->staging);
    d->staging = NULL;
    d->staging_size = 0;
}

/* Fills w->mem with t's bytes (w->src) in w->want_md: a reorder, or a
 * wrapper of src (then src is read in place, so a deferred weight is
 * materialised). A reorder of a deferred weight reads its values through
 * the staging buffer, so the plain f32 copy is never made resident. */
static int weight_fill(struct sd_cpu *cpu, struct sd_dnnl_weight *w, struct sd_tensor *t,
                       const dnnl_memory_desc_t *user_md) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    dnnl_memory_t user = NULL;
    dnnl_primitive_t r = NULL;
    int rc = SD_OK;
    weight_release(d, w);
    if (dnnl_memory_desc_equal(user_md, &w->want_md)) {
        SD_TRY(sd_weight_materialize(cpu->ctx, t));
        SD_DNNL_TRY(cpu, dnnl_memory_create(&w->mem, user_md, d->engine, (void *)w->src));
    } else {
        /* The disk cache first: a deferred weight with its file's values. */
        struct sd_wkey key;
        uint64_t content;
        const int keyed = d->wcache && w->deferred && sd_weight_file_hash(t, &content) &&
                          sd_wcache_key(&key, content, user_md, &w->want_md);
        const void *hit = keyed ? sd_wcache_find(d->wcache, &key, &w->want_md) : NULL;
        if (hit) {
            SD_DNNL_TRY(cpu, dnnl_memory_create(&w->mem, &w->want_md, d->engine, (void *)hit));
            w->mapped = hit;
            w->mapped_bytes = dnnl_memory_desc_get_size(&w->want_md);
            d->weight_mapped_bytes += w->mapped_bytes;
            d->weight_cache_hits++;
            return SD_OK;
        }
        const void *from = w->src;
        if (w->deferred) {
            float *buf = staging(cpu, w->src_bytes);
            if (!buf) {
                rc = cpu->ctx && cpu->ctx->status ? cpu->ctx->status : SD_ERR_NOMEM;
                goto fail;
            }
            SD_TRY(sd_weight_read_f32(cpu->ctx, t, buf));
            from = buf;
        }
        w->bytes = dnnl_memory_desc_get_size(&w->want_md);
        if (!(w->buf = sd_cpu_alloc(w->bytes))) {
            w->bytes = 0;
            rc = sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN weights cache: cannot allocate %.1f MiB",
                           (double)dnnl_memory_desc_get_size(&w->want_md) / 1048576.0);
            goto fail;
        }
        d->weight_bytes += w->bytes;
        SD_DNNL_TRY(cpu, dnnl_memory_create(&w->mem, &w->want_md, d->engine, w->buf));
        if (w->prep) {
            w->prep(from, user_md, w->buf);
        } else {
            SD_DNNL_TRY(cpu, dnnl_memory_create(&user, user_md, d->engine, (void *)from));
            SD_TRY(sd_dnnl_reorder_new(cpu, user_md, &w->want_md, &r));
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, w->mem}};
            SD_TRY(sd_dnnl_exec(cpu, r, 2, args, 1));
            dnnl_primitive_destroy(r);
            dnnl_memory_destroy(user);
            r = NULL, user = NULL;
        }
        d->weight_reorders++;
        if (keyed) sd_wcache_put(d->wcache, &key, &w->want_md, w->buf, w->bytes);
    }
    if (!w->deferred) w->fingerprint = weight_fingerprint(w->src, w->src_bytes);
    return SD_OK;
fail:
    if (r) dnnl_primitive_destroy(r);
    if (user) dnnl_memory_destroy(user);
    weight_release(d, w);
    return rc;
}

int sd_dnnl_weights_get(struct sd_cpu *cpu, struct sd_tensor *t, const dnnl_memory_desc_t *user_md,
                        const dnnl_memory_desc_t *want_md, dnnl_memory_t *out) {
    return sd_dnnl_weights_get_prep(cpu, t, user_md, want_md, NULL, out);
}

int sd_dnnl_weights_get_prep(struct sd_cpu *cpu, struct sd_tensor *t, const dnnl_memory_desc_t *user_md,
                             const dnnl_memory_desc_t *want_md, sd_dnnl_weight_prep_fn *prep, dnnl_memory_t *out) {
    struct sd_cpu_dnnl *d = cpu->dnnl;
    const float *src = t->data;
    const int deferred = (t->flags & SD_TF_DEFERRED) != 0;
    size_t bytes = dnnl_memory_desc_get_size(user_md);
    uint64_t h = sd_fnv1a(&src, sizeof src, SD_FNV1A_SEED);
    h = sd_fnv1a(&bytes, sizeof bytes, h);
    struct sd_hmap_iter it;
    for (uint32_t v = sd_hmap_find(&d->w_index, h, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&d->w_index, &it)) {
        struct sd_dnnl_weight *w = d->weights[v];
        if (w->src != src || w->src_bytes != bytes || w->prep != prep || !dnnl_memory_desc_equal(&w->want_md, want_md) ||
            !dnnl_memory_desc_equal(&w->user_md, user_md))
            continue;
        if (!w->mem || (!w->deferred && w->fingerprint != weight_fingerprint(src, bytes))) {
            /* The bytes changed under us (contract broken): redo it. */
            int rc = weight_fill(cpu, w, t, user_md);
            if (rc != SD_OK) return rc;
        } else {
            d->weight_hits++;
        }
        *out = w->mem;
        return SD_OK;
    }
    if (d->n_weights == d->cap_weights) {
        size_t cap = d->cap_weights ? 2 * d->cap_weights : 64;
        struct sd_dnnl_weight **p = realloc(d->weights, cap * sizeof *p);
        if (!p) return sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN weights cache: out of memory");
        d->weights = p, d->cap_weights = cap;
    }
    struct sd_dnnl_weight *w = calloc(1, sizeof *w);
    if (!w) return sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN weights cache: out of memory");
    w->hash = h;
    w->src = src;
    w->src_bytes = bytes;
    w->user_md = *user_md;
    w->want_md = *want_md;
    w->deferred = deferred;
    w->prep = prep;
    int rc = weight_fill(cpu, w, t, user_md);
    if (rc == SD_OK && sd_hmap_put(&d->w_index, h, (uint32_t)d->n_weights) != SD_OK)
        rc = sd_errorf(cpu->ctx, SD_ERR_NOMEM, "oneDNN weights cache: out of memory");
    if (rc != SD_OK) {
        weight_destroy(d, w);
        return rc;
    }
    d->weights[d->n_weights++] = w;
    *out = w->mem;
    return SD_OK;
}

void sd_cpu_dnnl_cache_flush(struct sd_cpu *cpu) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (d) sd_wcache_flush(d->wcache);
}

void sd_cpu_dnnl_weights_forget(struct sd_cpu *cpu) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (!d) return;
    for (size_t i = 0; i < d->n_weights; i++) weight_destroy(d, d->weights[i]);
    d->n_weights = 0;
    sd_hmap_clear(&d->w_index);
}

void sd_cpu_dnnl_weights_drop(struct sd_cpu *cpu, struct sd_tensor *const *w, int n) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (!d || n <= 0) return;
    struct sd_weight_set set;
    if (sd_weight_set_init(&set, w, n) != SD_OK) { /* no memory for the set: drop them all */
        sd_cpu_dnnl_weights_forget(cpu);
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < d->n_weights; i++) {
        struct sd_dnnl_weight *e = d->weights[i];
        if (sd_weight_set_hits(&set, e->src, e->src_bytes)) weight_destroy(d, e);
        else d->weights[kept++] = e;
    }
    if (kept != d->n_weights) { /* compact, then index the positions again (cannot fail: it held more) */
        d->n_weights = kept;
        sd_hmap_clear(&d->w_index);
        for (size_t i = 0; i < kept; i++) (void)sd_hmap_put(&d->w_index, d->weights[i]->hash, (uint32_t)i);
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

int sd_dnnl_has_bf16(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx;
}

const char *sd_dnnl_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

int sd_cpu_precision_bf16(int precision) {
    const int avx512 = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
    return (precision == SD_PRECISION_BF16 && avx512) || (precision == SD_PRECISION_AUTO && sd_dnnl_has_bf16());
}

const char *sd_cpu_isa(void) { return sd_dnnl_isa_name(); }

int sd_cpu_dnnl_init(struct sd_cpu *cpu, int conv_policy, int precision, const struct sd_log *log,
                     const char *weight_cache_dir) {
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
    if (precision < 0 || precision >= SD_PRECISION_COUNT) {
        rc = sd_errorf(cpu->ctx, SD_ERR_INVALID, "cpu backend: precision %d unknown (f32, auto, bf16, f16)", precision);
        goto fail;
    }
    /* bf16 kernels: native with avx512_bf16/AMX; oneDNN emulates them on
     * other AVX-512 CPUs (bf16 asked for explicitly) and has none below. */
    d->bf16 = sd_cpu_precision_bf16(precision);
    if (precision == SD_PRECISION_AUTO)
        sd_logf(log, SD_LOG_DEBUG, "cpu: precision auto -> %s (oneDNN ISA %s)", d->bf16 ? "bf16" : "f32",
                sd_dnnl_isa_name());
    else if (precision == SD_PRECISION_F16)
        sd_logf(log, SD_LOG_DEBUG, "cpu: precision f16 is for OpenCL devices: the cpu computes in f32");
    else if (precision == SD_PRECISION_BF16 && !d->bf16)
        sd_logf(log, SD_LOG_WARN, "cpu: precision bf16 needs AVX-512 (oneDNN ISA %s): computing in f32",
                sd_dnnl_isa_name());
    else if (d->bf16 && !sd_dnnl_has_bf16())
        sd_logf(log, SD_LOG_WARN, "cpu: precision bf16 on a CPU without bf16 instructions (oneDNN ISA %s): "
                "oneDNN emulates it, slower than f32", sd_dnnl_isa_name());
    if (log) d->log = *log;
    d->wcache = sd_wcache_new(weight_cache_dir, log);
    return SD_OK;
fail:
    sd_cpu_dnnl_free(cpu);
    return rc;
}

void sd_cpu_dnnl_free(struct sd_cpu *cpu) {
    struct sd_cpu_dnnl *d = cpu ? cpu->dnnl : NULL;
    if (!d) return;
    for (size_t i = 0; i < d->n_prims; i++) prim_destroy(d->prims[i]);
    free(d->prims);
    sd_hmap_free(&d->prim_index);
    sd_cpu_dnnl_weights_forget(cpu);
    sd_cpu_dnnl_staging_release(cpu);
    sd_wcache_free(d->wcache); /* after the weights: their copies may live in its mappings */
    free(d->weights);
    sd_hmap_free(&d->w_index);
    if (d->stream) dnnl_stream_destroy(d->stream);
    if (d->engine) dnnl_engine_destroy(d->engine);
    free(d);
    cpu->dnnl = NULL;
}
