/* cpu_wcache.c - the disk cache of prepared weights (contract and file
 * format in cpu_wcache.h). */
#include "cpu_wcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_util.h"

#include "hashmap.h"

#define MD_N 96 /* int64 values of a canonical memory descriptor (md_canon) */
#define ALIGN 4096

static const char magic[8] = {'S', 'D', 'R', 'T', 'W', 'P', 'K', 0};

struct pack_hdr {
    char magic[8];
    uint32_t format, n;
    uint64_t file_size, index_hash;
};

struct pack_ent {
    uint64_t ka, kb, off, size, hash;
    int64_t md[MD_N];
};

struct pack {
    char *path;
    const unsigned char *base;
    size_t size;
    dev_t dev;
    ino_t ino;
    int removed;            /* found corrupt: its file was removed, its entries are written again */
    int touched;            /* its mtime set to now on its first hit (the LRU stamp) */
};

struct entry {              /* an entry of a mapped pack */
    const struct pack_ent *e;
    size_t pack;            /* position in packs */
    int state;              /* 0 unchecked, 1 payload verified, -1 corrupt */
    int queued;             /* put again (its pack was removed) */
};

struct pending {
    struct sd_wkey k;
    int64_t md[MD_N];
    const void *data;
    size_t n;
};

struct sd_wcache {
    char dir[1024];
    uint64_t max_bytes;     /* the most bytes of packs kept (sd_wcache_set_max) */
    struct sd_log log;
    int scanned, no_write;
    struct pack *packs;
    size_t n_packs;
    struct entry *ents;
    size_t n_ents;
    struct sd_hmap index;   /* key a -> position in ents */
    struct pending *q;
    size_t n_q, cap_q;
    struct sd_wcache_stats st;
};

/* ---- keys ---- */

/* A canonical form of md: every field that defines the layout, as int64
 * values in a fixed order, unused ones 0 (no struct padding hashed).
 * Returns 0 for a format kind not stored (only blocked and Winograd are). */
static int md_canon(const dnnl_memory_desc_t *md, int64_t out[MD_N]) {
    memset(out, 0, MD_N * sizeof *out);
    int64_t *o = out;
    const int nd = md->ndims;
    if (nd < 0 || nd > DNNL_MAX_NDIMS) return 0;
    *o++ = nd;
    *o++ = md->data_type;
    *o++ = md->offset0;
    *o++ = md->format_kind;
    for (int i = 0; i < nd; i++) *o++ = md->dims[i], *o++ = md->padded_dims[i], *o++ = md->padded_offsets[i];
    o = out + 4 + 3 * DNNL_MAX_NDIMS; /* 40 */
    if (md->format_kind == dnnl_blocked) {
        const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
        if (b->inner_nblks < 0 || b->inner_nblks > DNNL_MAX_NDIMS) return 0;
        for (int i = 0; i < nd; i++) *o++ = b->strides[i];
        *o++ = b->inner_nblks;
        for (int i = 0; i < b->inner_nblks; i++) *o++ = b->inner_blks[i], *o++ = b->inner_idxs[i];
    } else if (md->format_kind == dnnl_format_kind_wino) {
        const dnnl_wino_desc_t *w = &md->format_desc.wino_desc;
        uint32_t adj;
        memcpy(&adj, &w->adj_scale, sizeof adj);
        int64_t v[] = {w->wino_format, w->r, w->alpha, w->ic, w->oc, w->ic_block, w->oc_block, w->ic2_block,
                       w->oc2_block, adj, (int64_t)w->size};
        memcpy(o, v, sizeof v);
    } else {
        return 0;
    }
    o = out + 40 + 1 + 3 * DNNL_MAX_NDIMS; /* 77 */
    uint32_t sa;
    memcpy(&sa, &md->extra.scale_adjust, sizeof sa);
    *o++ = (int64_t)md->extra.flags;
    *o++ = md->extra.compensation_mask;
    *o++ = sa;
    *o++ = md->extra.asymm_compensation_mask;
    return 1;
}

_Static_assert(77 + 4 <= MD_N, "canonical descriptor fits");

struct hash2 { uint64_t a, b; };

static void h2(struct hash2 *h, const void *p, size_t n) {
    h->a = sd_fnv1a(&n, sizeof n, h->a);
    h->a = sd_fnv1a(p, n, h->a);
    h->b = sd_hash_bulk(p, n, h->b ^ n);
}

int sd_wcache_key(struct sd_wkey *k, uint64_t content, const dnnl_memory_desc_t *user_md,
                  const dnnl_memory_desc_t *want_md) {
    int64_t u[MD_N], w[MD_N];
    if (!md_canon(user_md, u) || !md_canon(want_md, w)) return 0;
    const dnnl_version_t *v = dnnl_version();
    struct hash2 h = {SD_FNV1A_SEED, 0x243f6a8885a308d3ull};
    const uint32_t fmt = SD_WCACHE_FORMAT;
    const int64_t ver[4] = {v->major, v->minor, v->patch, (int64_t)dnnl_get_effective_cpu_isa()};
    h2(&h, &fmt, sizeof fmt);
    h2(&h, ver, sizeof ver);
    h2(&h, v->hash ? v->hash : "", v->hash ? strlen(v->hash) : 0);
    h2(&h, &content, sizeof content);
    h2(&h, u, sizeof u);
    h2(&h, w, sizeof w);
    k->a = h.a, k->b = h.b;
    return 1;
}

/* ---- open / scan ---- */

struct sd_wcache *sd_wcache_new(const char *root, const struct sd_log *log) {
    if (!root || !*root) return NULL;
    struct sd_wcache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (log) c->log = *log;
    c->max_bytes = SD_WCACHE_MAX_DEFAULT;
    snprintf(c->dir, sizeof c->dir, "%s/weights", root);
    if (sd_mkdir_p(c->dir) != 0) {
        sd_logf(&c->log, SD_LOG_WARN, "cpu: weight cache %s: %s (prepared weights are not cached)", c->dir,
                strerror(errno));
        free(c);
        return NULL;
    }
    return c;
}

static uint64_t index_hash(const struct pack_hdr *h, const struct pack_ent *e, size_t n) {
    struct pack_hdr z = *h;
    z.index_hash = 0;
    return sd_hash_bulk(e, n * sizeof *e, sd_hash_bulk(&z, sizeof z, 0x5344525457504bull));
}

/* Removes the pack file at path if it still is the file (dev, ino) that
 * was read: a pack another process renamed into place since is left alone
 * (the worst a race can do is remove a good pack: a cache miss later). */
static void pack_remove(const char *path, dev_t dev, ino_t ino) {
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_dev == dev && sb.st_ino == ino) unlink(path);
}

static void reject(struct sd_wcache *c, const char *path, const char *why) {
    c->st.rejected++;
    sd_logf(&c->log, SD_LOG_WARN, "cpu: weight cache: %s %s: removed, the weights are prepared again", path, why);
}

static void put_canon(struct sd_wcache *c, const struct sd_wkey *k, const int64_t md[MD_N], const void *data,
                      size_t n);

/* Maps pack `path` and indexes its entries; a pack that fails a check is
 * ignored (logged). */
static void pack_open(struct sd_wcache *c, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat sb = {0};
    void *m = MAP_FAILED;
    if (fstat(fd, &sb) == 0 && sb.st_size >= (off_t)sizeof(struct pack_hdr))
        m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        reject(c, path, "is shorter than its header");
        pack_remove(path, sb.st_dev, sb.st_ino);
        return;
    }
    const size_t size = (size_t)sb.st_size;
    struct pack_hdr h;
    memcpy(&h, m, sizeof h);
    const struct pack_ent *e = (const struct pack_ent *)((const char *)m + sizeof h);
    const char *why = NULL;
    if (!memcmp(h.magic, magic, 8) && h.format != SD_WCACHE_FORMAT) { /* another sdrt's format: not ours to judge */
        munmap(m, (size_t)sb.st_size);
        return;
    }
    if (memcmp(h.magic, magic, 8)) why = "is not a pack (magic)";
    else if (h.file_size != size) why = "has the wrong size (truncated?)";
    else if (h.n == 0 || (size - sizeof h) / sizeof *e < h.n) why = "has a short index";
    else if (index_hash(&h, e, h.n) != h.index_hash) why = "has a corrupt index";
    for (uint32_t i = 0; !why && i < h.n; i++)
        if (e[i].off % ALIGN || e[i].off > size || e[i].size > size - e[i].off) why = "has an entry out of bounds";
    struct pack *np = why ? NULL : realloc(c->packs, (c->n_packs + 1) * sizeof *np);
    struct entry *ne = np ? realloc(c->ents, (c->n_ents + h.n) * sizeof *ne) : NULL;
    if (np) c->packs = np;
    if (ne) c->ents = ne;
    char *pcopy = ne ? strdup(path) : NULL;
    if (!pcopy) {
        if (why) {
            reject(c, path, why);
            pack_remove(path, sb.st_dev, sb.st_ino);
        }
        munmap(m, size);
        return;
    }
    struct pack *p = &c->packs[c->n_packs++];
    *p = (struct pack){pcopy, m, size, sb.st_dev, sb.st_ino, 0, 0};
    c->st.packs_read++;
    for (uint32_t i = 0; i < h.n; i++) {
        if (sd_hmap_put(&c->index, e[i].ka, (uint32_t)c->n_ents) != SD_OK) break;
        c->ents[c->n_ents++] = (struct entry){&e[i], c->n_packs - 1, 0, 0};
    }
}

/* "<32 hex>.sdw": a pack's file name. */
static int is_pack_name(const char *name) { return strlen(name) == 36 && !strcmp(name + 32, ".sdw"); }

static void scan(struct sd_wcache *c) {
    c->scanned = 1;
    DIR *d = opendir(c->dir);
    if (!d) return;
    char path[1400];
    for (struct dirent *de; (de = readdir(d));) {
        if (!is_pack_name(de->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", c->dir, de->d_name);
        pack_open(c, path);
    }
    closedir(d);
}

/* ---- lookup ---- */

const void *sd_wcache_find(struct sd_wcache *c, const struct sd_wkey *k, const dnnl_memory_desc_t *want_md) {
    if (!c) return NULL;
    if (!c->scanned) scan(c);
    int64_t md[MD_N];
    if (!md_canon(want_md, md)) return NULL;
    const size_t want = dnnl_memory_desc_get_size(want_md);
    struct sd_hmap_iter it;
    for (uint32_t v = sd_hmap_find(&c->index, k->a, &it); v != SD_HMAP_NONE; v = sd_hmap_next(&c->index, &it)) {
        struct entry *en = &c->ents[v];
        const struct pack_ent *e = en->e;
        if (en->state < 0 || e->ka != k->a || e->kb != k->b || e->size != want || memcmp(e->md, md, sizeof md))
            continue;
        struct pack *p = &c->packs[en->pack];
        const unsigned char *bytes = p->base + e->off;
        if (en->state == 0) {
            /* Read ahead (a pack not in the page cache), then check every byte. */
            madvise((void *)((uintptr_t)bytes & ~(uintptr_t)(ALIGN - 1)), (size_t)e->size, MADV_WILLNEED);
            if (sd_hash_bulk(bytes, (size_t)e->size, e->ka) != e->hash) {
                en->state = -1;
                char why[96];
                snprintf(why, sizeof why, "entry %016llx has a corrupt payload", (unsigned long long)e->ka);
                reject(c, p->path, why);
                if (!p->removed) {
                    /* The file goes; the entries of it this process has used
                     * (and uses from now on) are written again with the
                     * rebuilt one, so the next pack holds them all. */
                    p->removed = 1;
                    pack_remove(p->path, p->dev, p->ino);
                    for (size_t i = 0; i < c->n_ents; i++) {
                        struct entry *o = &c->ents[i];
                        if (o->pack != en->pack || o->state != 1 || o->queued) continue;
                        o->queued = 1;
                        put_canon(c, &(struct sd_wkey){o->e->ka, o->e->kb}, o->e->md, p->base + o->e->off,
                                  (size_t)o->e->size);
                    }
                }
                continue;
            }
            en->state = 1;
        }
        if (p->removed && !en->queued) {
            en->queued = 1;
            put_canon(c, k, e->md, bytes, (size_t)e->size);
        }
        if (!p->touched) { /* used: the pack is the most recently used (a read-only cache stays as it is) */
            p->touched = 1;
            utimensat(AT_FDCWD, p->path, NULL, 0);
        }
        c->st.hits++;
        return bytes;
    }
    return NULL;
}

void sd_wcache_release(struct sd_wcache *c, const void *p, size_t n) {
    (void)c;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(ALIGN - 1);
    if (p && n) madvise((void *)a, (uintptr_t)p + n - a, MADV_DONTNEED);
}

/* ---- writing ---- */

void sd_wcache_put(struct sd_wcache *c, const struct sd_wkey *k, const dnnl_memory_desc_t *want_md,
                   const void *data, size_t n) {
    int64_t md[MD_N];
    if (c && md_canon(want_md, md)) put_canon(c, k, md, data, n);
}

static void put_canon(struct sd_wcache *c, const struct sd_wkey *k, const int64_t md[MD_N], const void *data,
                      size_t n) {
    if (c->no_write || !data || !n) return;
    struct pending pe = {.k = *k, .data = data, .n = n};
    memcpy(pe.md, md, sizeof pe.md);
    if (c->n_q == c->cap_q) {
        size_t cap = c->cap_q ? 2 * c->cap_q : 64;
        struct pending *q = realloc(c->q, cap * sizeof *q);
        if (!q) return; /* not cached */
        c->q = q, c->cap_q = cap;
    }
    c->q[c->n_q++] = pe;
}

void sd_wcache_unput(struct sd_wcache *c, const void *data) {
    if (!c || !data) return;
    size_t kept = 0;
    for (size_t i = 0; i < c->n_q; i++)
        if (c->q[i].data != data) c->q[kept++] = c->q[i];
    c->n_q = kept;
}

static int write_all(int fd, const void *p, size_t n, off_t off) {
    const char *b = p;
    while (n) {
        ssize_t w = pwrite(fd, b, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w, n -= (size_t)w, off += w;
    }
    return 0;
}

/* ---- size limit ---- */

struct pack_file { char name[40]; uint64_t bytes; struct timespec mtime; };

static int older(const void *a, const void *b) {
    const struct timespec *x = &((const struct pack_file *)a)->mtime, *y = &((const struct pack_file *)b)->mtime;
    return x->tv_sec != y->tv_sec ? (x->tv_sec < y->tv_sec ? -1 : 1)
                                  : (x->tv_nsec != y->tv_nsec ? (x->tv_nsec < y->tv_nsec ? -1 : 1) : 0);
}

/* Removes the least recently used packs (oldest mtime first: a pack's mtime
 * is set when written and when a process first maps an entry of it) until
 * the packs total at most `budget` bytes, and temporary files of writers
 * that died more than an hour ago. Other processes' mappings of a removed
 * pack stay valid (the file goes when the last one is unmapped). */
static void evict(struct sd_wcache *c, uint64_t budget) {
    DIR *d = opendir(c->dir);
    if (!d) return;
    struct pack_file *f = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    const time_t now = time(NULL);
    char path[1400];
    for (struct dirent *de; (de = readdir(d));) {
        const int pack = is_pack_name(de->d_name);
        const int tmp = strlen(de->d_name) > 41 && !strncmp(de->d_name + 32, ".sdw.tmp.", 9);
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", c->dir, de->d_name);
        if ((!pack && !tmp) || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (tmp) {
            if (now - sb.st_mtime > 3600) unlink(path);
            continue;
        }
        if (n == cap) {
            struct pack_file *g = realloc(f, (cap = cap ? 2 * cap : 64) * sizeof *g);
            if (!g) break;
            f = g;
        }
        snprintf(f[n].name, sizeof f[n].name, "%s", de->d_name);
        f[n].bytes = (uint64_t)sb.st_size, f[n].mtime = sb.st_mtim;
        total += f[n++].bytes;
    }
    closedir(d);
    if (total > budget) {
        qsort(f, n, sizeof *f, older);
        size_t removed = 0;
        uint64_t freed = 0;
        for (size_t i = 0; i < n && total > budget; i++) {
            snprintf(path, sizeof path, "%s/%s", c->dir, f[i].name);
            if (unlink(path) != 0) continue;
            total -= f[i].bytes, freed += f[i].bytes, removed++;
        }
        c->st.evicted += (long)removed;
        sd_logf(&c->log, SD_LOG_INFO,
                "cpu: weight cache %s: removed %zu least recently used packs (%.2f GiB) to stay within %.2f GiB", c->dir,
                removed, (double)freed / 1073741824.0, (double)c->max_bytes / 1073741824.0);
    }
    free(f);
}

void sd_wcache_set_max(struct sd_wcache *c, uint64_t max_bytes) {
    if (c) c->max_bytes = max_bytes ? max_bytes : SD_WCACHE_MAX_DEFAULT;
}

void sd_wcache_flush(struct sd_wcache *c) {
    if (!c || !c->n_q) return;
    const size_t n = c->n_q;
    struct pack_hdr h = {.format = SD_WCACHE_FORMAT, .n = (uint32_t)n};
    memcpy(h.magic, magic, 8);
    struct pack_ent *e = calloc(n, sizeof *e);
    if (!e) {
        c->n_q = 0;
        return;
    }
    struct hash2 name = {SD_FNV1A_SEED, 0x13198a2e03707344ull};
    size_t off = (sizeof h + n * sizeof *e + ALIGN - 1) & ~(size_t)(ALIGN - 1), bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const struct pending *q = &c->q[i];
        e[i].ka = q->k.a, e[i].kb = q->k.b;
        e[i].off = off;
        e[i].size = q->n;
        e[i].hash = sd_hash_bulk(q->data, q->n, q->k.a);
        memcpy(e[i].md, q->md, sizeof q->md);
        off = (off + q->n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
        bytes += q->n;
        h2(&name, &q->k, sizeof q->k);
    }
    h.file_size = e[n - 1].off + e[n - 1].size;
    h.index_hash = index_hash(&h, e, n);
    /* Room: older packs go to keep the total within max_bytes; a pack
     * larger than that, or one the disk has no room for (keeping 1 GiB, or
     * 5% of a smaller disk, free), is not written. */
    struct statvfs fs;
    const uint64_t need = h.file_size;
    if (need > c->max_bytes) {
        sd_logf(&c->log, SD_LOG_INFO, "cpu: weight cache: %zu prepared weights (%.2f GiB) exceed its limit of %.2f GiB: "
                "not cached", n, (double)need / 1073741824.0, (double)c->max_bytes / 1073741824.0);
        free(e);
        c->n_q = 0;
        return;
    }
    evict(c, c->max_bytes - need);
    if (statvfs(c->dir, &fs) == 0) {
        const uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize, size = (uint64_t)fs.f_blocks * fs.f_frsize;
        const uint64_t reserve = size / 20 < (1ull << 30) ? size / 20 : 1ull << 30;
        if (avail < need + reserve) {
            sd_logf(&c->log, SD_LOG_WARN, "cpu: weight cache %s: %.2f GiB free on its disk, %.2f GiB wanted (and %.2f "
                    "GiB kept free): not cached", c->dir, (double)avail / 1073741824.0, (double)need / 1073741824.0,
                    (double)reserve / 1073741824.0);
            free(e);
            c->n_q = 0;
            return;
        }
    }
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/%016llx%016llx.sdw", c->dir, (unsigned long long)name.a,
             (unsigned long long)name.b);
    static atomic_uint seq;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int ok = fd >= 0 && write_all(fd, &h, sizeof h, 0) == 0 && write_all(fd, e, n * sizeof *e, sizeof h) == 0;
    for (size_t i = 0; ok && i < n; i++) ok = write_all(fd, c->q[i].data, c->q[i].n, (off_t)e[i].off) == 0;
    if (fd >= 0) ok = close(fd) == 0 && ok;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        int err = errno;
        if (fd >= 0) unlink(tmp);
        c->no_write = 1;
        sd_logf(&c->log, SD_LOG_WARN, "cpu: weight cache: cannot write %s: %s (no more writes in this runtime)", path,
                strerror(err));
    } else {
        c->st.stored += (long)n;
        c->st.packs_written++;
        sd_logf(&c->log, SD_LOG_DEBUG, "cpu: weight cache: wrote %zu prepared weights (%.1f MiB) to %s", n,
                (double)bytes / 1048576.0, path);
    }
    free(e);
    c->n_q = 0;
}

struct sd_wcache_stats sd_wcache_stats(const struct sd_wcache *c) {
    struct sd_wcache_stats z = {0};
    return c ? c->st : z;
}

const char *sd_wcache_dir(const struct sd_wcache *c) { return c ? c->dir : ""; }

void sd_wcache_free(struct sd_wcache *c) {
    if (!c) return;
    if (c->st.hits || c->st.stored || c->st.rejected)
        sd_logf(&c->log, SD_LOG_DEBUG, "cpu: weight cache %s: %ld prepared weights mapped, %ld written, %ld rejected",
                c->dir, c->st.hits, c->st.stored, c->st.rejected);
    for (size_t i = 0; i < c->n_packs; i++) {
        munmap((void *)c->packs[i].base, c->packs[i].size);
        free(c->packs[i].path);
    }
    free(c->packs);
    free(c->ents);
    free(c->q);
    sd_hmap_free(&c->index);
    free(c);
}
