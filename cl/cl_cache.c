/* cl_cache.c - the on-disk cache of OpenCL program binaries.
 *
 * Key: a 128-bit hash (two independent 64-bit FNV-1a/mix streams) over the
 * sources, the build options, the device name, driver version, platform
 * version and SD_CL_CACHE_FORMAT, each length-prefixed. A file
 * `<32 hex>.clbin` holds:
 *   "SDRTCLB\0" | u32 format | u32 0 | 32-byte hex key | u64 size | u64 hash(payload) | payload
 * Written to a unique tmp file in the same directory and renamed into place,
 * so a reader sees a whole file or none. Anything unexpected (short file,
 * other magic/format/key, wrong size or payload hash) rejects the entry and
 * the caller compiles from source and overwrites it. The cache never makes a
 * build fail: every error here means "not cached".
 *
 * Directory: opts.cl_cache_dir + "/cl"; no cache without one. (The sdrt
 * command passes $SDRT_CACHE_DIR, else $XDG_CACHE_HOME/sdrt, else
 * $HOME/.cache/sdrt; SDRT_CL_CACHE=0 passes none.)
 */
#include "fs_util.h"
#include "cl_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hashmap.h"

#define SD_CL_CACHE_FORMAT 1u
static const char magic[8] = {'S', 'D', 'R', 'T', 'C', 'L', 'B', 0};

struct hash2 { uint64_t a, b; };

/* a: FNV-1a (hashmap.h); b: a multiply-xorshift stream, independent of it. */
static void hash_bytes(struct hash2 *h, const void *p, size_t n) {
    const unsigned char *s = p;
    h->a = sd_fnv1a(p, n, h->a);
    for (size_t i = 0; i < n; i++) {
        h->b = (h->b + s[i] + 1) * 0x9E3779B97F4A7C15ull;
        h->b ^= h->b >> 29;
    }
}

static void hash_field(struct hash2 *h, const void *p, size_t n) {
    uint64_t len = n;
    hash_bytes(h, &len, sizeof len);
    hash_bytes(h, p, n);
}

static void hash_str(struct hash2 *h, const char *s) { hash_field(h, s ? s : "", s ? strlen(s) : 0); }

static uint64_t payload_hash(const unsigned char *p, size_t n) {
    struct hash2 h = {SD_FNV1A_SEED, 0x84222325cbf29ce4ull};
    hash_bytes(&h, p, n);
    return h.a ^ (h.b * 31);
}

void sd_cl_cache_key(const char *const *srcs, int n_srcs, const char *opts, const struct sd_cl_device_info *info,
                     char hex[33]) {
    struct hash2 h = {SD_FNV1A_SEED, 0x6a09e667f3bcc909ull};
    uint32_t fmt = SD_CL_CACHE_FORMAT;
    hash_field(&h, &fmt, sizeof fmt);
    for (int i = 0; i < n_srcs; i++) hash_str(&h, srcs[i]);
    hash_str(&h, opts);
    hash_str(&h, info->name);
    hash_str(&h, info->driver_version);
    hash_str(&h, info->platform_version);
    hash_str(&h, info->cl_version);
    snprintf(hex, 33, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);
}

bool sd_cl_cache_dir_make(const char *root, char *out, size_t n) {
    if (n) out[0] = 0;
    if (!root || !*root || n == 0) return false;
    snprintf(out, n, "%s/cl", root);
    if (sd_mkdir_p(out) == 0) return true;
    out[0] = 0;
    return false;
}

int sd_cl_file_read(struct sd_ctx *ctx, const char *path, unsigned char **bin, size_t *n) {
    *bin = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errorf(ctx, SD_ERR_IO, "open(%s): %s", path, strerror(errno));
    unsigned char *buf = NULL;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
    buf = malloc(sz > 0 ? (size_t)sz : 1);
    if (!buf) {
        fclose(f);
        return sd_errorf(ctx, SD_ERR_NOMEM, "read(%s): out of memory", path);
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) goto fail;
    fclose(f);
    *bin = buf;
    *n = (size_t)sz;
    return SD_OK;
fail:
    free(buf);
    fclose(f);
    return sd_errorf(ctx, SD_ERR_IO, "read(%s): %s", path, strerror(errno));
}

int sd_cl_file_write(struct sd_ctx *ctx, const char *path, const unsigned char *bin, size_t n) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return sd_errorf(ctx, SD_ERR_IO, "open(%s): %s", tmp, strerror(errno));
    bool ok = fwrite(bin, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sd_errorf(ctx, SD_ERR_IO, "write(%s): %s", path, strerror(e));
    }
    return SD_OK;
}

struct header {
    char magic[8];
    uint32_t format, zero;
    char key[32];
    uint64_t size, hash;
};

bool sd_cl_cache_load(const char *dir, const char *hex, unsigned char **bin, size_t *n, bool *rejected) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.clbin", dir, hex);
    *rejected = false;
    if (access(path, R_OK) != 0) return false;
    unsigned char *buf = NULL;
    size_t sz = 0;
    if (sd_cl_file_read(NULL, path, &buf, &sz) != SD_OK) {
        *rejected = true;
        return false;
    }
    struct header h;
    if (sz < sizeof h) goto reject;
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, magic, 8) || h.format != SD_CL_CACHE_FORMAT || h.zero || memcmp(h.key, hex, 32) ||
        h.size != sz - sizeof h || h.size == 0 || h.hash != payload_hash(buf + sizeof h, (size_t)h.size))
        goto reject;
    memmove(buf, buf + sizeof h, (size_t)h.size);
    *bin = buf;
    *n = (size_t)h.size;
    return true;
reject:
    free(buf);
    *rejected = true;
    return false;
}

void sd_cl_cache_store(const char *dir, const char *hex, const unsigned char *bin, size_t n) {
    struct header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, magic, 8);
    h.format = SD_CL_CACHE_FORMAT;
    memcpy(h.key, hex, 32);
    h.size = n;
    h.hash = payload_hash(bin, n);
    unsigned char *buf = malloc(sizeof h + n);
    if (!buf) return;
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, bin, n);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.clbin", dir, hex);
    (void)sd_cl_file_write(NULL, path, buf, sizeof h + n);
    free(buf);
}
