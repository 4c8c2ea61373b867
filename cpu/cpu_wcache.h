/* cpu_wcache.h - the CPU backend's disk cache of prepared weights
 * (cpu_wcache.c): the exact bytes oneDNN wants for a weight (a bf16 or f32
 * blocked reorder, a Winograd transform), written once and mapped read-only
 * by later processes instead of being made again on their first step.
 *
 * Key (struct sd_wkey, 128 bits): the format version, oneDNN's version, the
 * ISA oneDNN dispatches to, the weight's content (sd_weight_file_hash: its
 * file bytes, dtype and shape) and the source and target memory
 * descriptors. Only weights whose values are their file's bytes get a key:
 * a LoRA-patched weight (its data replaced) has none and is never read from
 * or written to the cache.
 *
 * Files: opts.weight_cache_dir + "/weights/<32 hex>.sdw", one pack per
 * compute that prepared new weights (in practice one per model component,
 * precision and shape set: CLIP, UNet, VAE), named by the hash of the keys
 * it holds:
 *   header  "SDRTWPK\0" | u32 format | u32 n | u64 file size | u64 index hash
 *   index   n x {key a, key b, offset, size, payload hash, target md (canonical)}
 *   payloads, each at a 4096-byte aligned offset.
 * Written to a unique temporary file in the same directory and renamed into
 * place, so a reader sees a whole pack or none (two processes writing the
 * same pack: the last rename wins, both files are whole). A pack that is
 * short, has no magic, the wrong size or a bad index hash is rejected and
 * removed (a warning); a pack of another format version is left alone. An
 * entry's payload hash is checked on its first use in the process; a
 * mismatch rejects the entry (a warning), which is then prepared again, and
 * removes its pack, whose entries this process uses are written again with
 * the rebuilt one (so the next pack holds them all). The cache never makes
 * a run fail: every error here means "not cached".
 *
 * Packs are mapped MAP_SHARED, PROT_READ: processes share one copy of the
 * pages (the page cache). An entry dropped by the backend (low memory,
 * weights released) has its pages dropped from the resident set.
 *
 * Size: the packs in the directory are kept within a limit
 * (sd_wcache_set_max; default SD_WCACHE_MAX_DEFAULT). Before a pack is
 * written, the least recently used packs are removed until it fits: a
 * pack's mtime is its LRU stamp, set when it is written and when a process
 * first maps an entry of it. A pack larger than the limit is not written,
 * nor one that would leave less than min(1 GiB, 5%) of its disk free.
 * Temporary files of writers that died over an hour ago are removed.
 */
#ifndef SDRT_CPU_WCACHE_H
#define SDRT_CPU_WCACHE_H

#include <dnnl.h>
#include <stddef.h>
#include <stdint.h>

#include "sdrt.h"

#define SD_WCACHE_FORMAT 1u
#define SD_WCACHE_MAX_DEFAULT (32ull << 30) /* 32 GiB */

struct sd_wcache;
struct sd_wkey { uint64_t a, b; };

/* Counters (tests, logging). */
struct sd_wcache_stats {
    long hits;          /* entries served from a pack */
    long rejected;      /* entries or packs found corrupt (never used) */
    long stored;        /* entries written */
    long packs_written;
    long packs_read;    /* packs whose index was accepted */
    long evicted;       /* packs removed to stay within the size limit */
};

/* A cache in root/weights (created), or NULL when root is NULL or "" (off)
 * or the directory cannot be made (a warning on log). log is copied. */
struct sd_wcache *sd_wcache_new(const char *root, const struct sd_log *log);
/* The most bytes of packs the directory keeps (0: SD_WCACHE_MAX_DEFAULT).
 * NULL-safe. */
void sd_wcache_set_max(struct sd_wcache *c, uint64_t max_bytes);
/* Unmaps every pack; frees the queue. NULL-safe. */
void sd_wcache_free(struct sd_wcache *c);

/* The key of the copy in want_md of a weight whose content key is `content`
 * and whose plain layout is user_md. Returns 0 (no key: not cacheable) for a
 * descriptor kind the cache does not store. */
int sd_wcache_key(struct sd_wkey *k, uint64_t content, const dnnl_memory_desc_t *user_md,
                  const dnnl_memory_desc_t *want_md);
/* The mapped bytes (dnnl_memory_desc_get_size(want_md) of them) of a
 * verified entry for k in want_md, or NULL. */
const void *sd_wcache_find(struct sd_wcache *c, const struct sd_wkey *k, const dnnl_memory_desc_t *want_md);
/* Drops the pages of a found entry from the resident set (they stay in the
 * page cache; the mapping stays valid and re-reads them on use). */
void sd_wcache_release(struct sd_wcache *c, const void *p, size_t n);
/* Queues n bytes at data (the copy for k in want_md) for the next flush;
 * data must stay valid until then or until sd_wcache_unput(data). */
void sd_wcache_put(struct sd_wcache *c, const struct sd_wkey *k, const dnnl_memory_desc_t *want_md,
                   const void *data, size_t n);
void sd_wcache_unput(struct sd_wcache *c, const void *data);
/* Writes the queued entries as one pack (atomically) and empties the queue.
 * Failures are logged (once) and disable writing for this cache. */
void sd_wcache_flush(struct sd_wcache *c);
struct sd_wcache_stats sd_wcache_stats(const struct sd_wcache *c);
/* The directory packs go to ("" when c is NULL). */
const char *sd_wcache_dir(const struct sd_wcache *c);

#endif
