/* test_weight_cache.c - the CPU backend's disk cache of prepared weights
 * (cpu/cpu_wcache.h, opts.weight_cache_dir) on the tiny SD1 model (f16
 * single file, 64x64, 1 step), in f32 (1-4) and, where oneDNN has AVX-512,
 * bf16 and f32 with Winograd forced (1: the same packs, other layouts):
 *
 * 1. Off / cold / warm: a runtime without the cache, one with an empty
 *    cache directory (writes every prepared weight) and a new runtime with a
 *    freshly loaded model (as a second process: a new index, the packs
 *    mapped) give the same image byte for byte; the warm one reorders none
 *    of the cached weights (every one a hit, nothing written).
 *    With opts.low_memory, two images in one runtime map every weight again
 *    for each image and hold no copy after it.
 * 2. Corruption: one flipped byte in an entry's payload is detected (that
 *    entry rejected and rebuilt, its pack removed and written again with
 *    the rebuilt entry, the rest still hits); a truncated pack and a junk
 *    file with a pack's name are rejected and removed; the images stay
 *    byte-identical and the next runtime hits everything, rejecting nothing.
 * 3. A patched weight (data replaced as the LoRA merge does, with
 *    sd_weights_set_data) never reads the unpatched entry: the image equals
 *    the uncached patched image and differs from the unpatched one; nothing
 *    is written for it; restoring the original hits the entry again.
 * 4. Two processes (this binary run twice as children at once) filling one
 *    empty cache leave a valid cache: the next runtime maps every weight,
 *    rejects nothing, and no temporary file is left.
 * 5. The size limit (sd_wcache_set_max), on packs of one 256 KiB entry:
 *    writing a pack that would pass the limit removes the least recently
 *    used packs first (a pack a later cache mapped an entry of counts as
 *    used then, so an older-written one goes instead); a pack larger than
 *    the limit is not written; a writer's temporary file over an hour old is
 *    removed, a fresh one kept.
 */
#include "cpu_dnnl.h"
#include "cpu_wcache.h"
#include "model_load.h"
#include "pipeline.h"
#include "test.h"
#include "tokenizer.h"
#include "weights.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MODEL "tests/models/tiny-sd1-f16.safetensors"
#define MODEL_CONFIG "tests/models/tiny-sd1"
#define NPIX (3 * 64 * 64)

extern char **environ;

struct run {
    struct sd_wcache_stats st;
    long reorders;
    int ok, wino; /* wino: convolutions that run oneDNN's Winograd */
    int dropped;  /* images after which the backend held no copy, mapped or not */
};

static struct sd_tokenizer *tok;
static int conv_policy = SD_CONV_POLICY_AUTO; /* opts.conv of every runtime gen makes */
static int low_memory;                        /* opts.low_memory of those runtimes; then two images */

/* One 64x64 image through a new runtime (cache root `dir`, NULL = off) with
 * model m, or a model loaded for the run when m is NULL. */
static struct run gen(const char *dir, int precision, struct sd_model *m, float *img) {
    struct run r = {0};
    struct sd_ctx ctx = {0};
    struct sd_runtime_opts o;
    sd_runtime_opts_init(&o);
    o.threads = 2;
    o.precision = precision;
    o.weight_cache_dir = dir;
    o.conv = conv_policy;
    o.low_memory = low_memory;
    struct sd_runtime *rt = sd_runtime_new(&ctx, &o);
    struct sd_embed_cache *cache = sd_embed_cache_new(1u << 20);
    struct sd_model *own = NULL;
    if (!m && sd_model_load(&ctx, MODEL, MODEL_CONFIG, &own) == SD_OK) m = own;
    struct sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = "a lighthouse";
    g.width = g.height = 64;
    g.sampler.steps = 1;
    g.seed = 11;
    struct sd_pipeline p = {.ctx = &ctx, .rt = rt, .tok = tok, .cache = cache, .model = m};
    struct sd_cpu *cpu = rt ? sd_cpu_of(sd_runtime_backend(rt, 0)) : NULL;
    int done = 0;
    for (int i = 0; i < (low_memory ? 2 : 1) && cpu && cache && m; i++) {
        float *again = i ? malloc(NPIX * sizeof(float)) : img;
        if (i) { /* a new embedding cache: the second image runs CLIP again too */
            sd_embed_cache_free(cache);
            p.cache = cache = sd_embed_cache_new(1u << 20);
        }
        int ok = again && sd_generate(&p, &g, again) == SD_OK && (!i || memcmp(img, again, NPIX * sizeof(float)) == 0);
        r.dropped += cpu->dnnl->n_weights == 0 && cpu->dnnl->weight_mapped_bytes == 0 && cpu->dnnl->weight_bytes == 0;
        if (i) free(again);
        if (!ok) break;
        done++;
    }
    if (done == (low_memory ? 2 : 1)) {
        r.st = sd_wcache_stats(cpu->dnnl->wcache);
        r.reorders = cpu->dnnl->weight_reorders;
        r.ok = (dir != NULL) == (cpu->dnnl->wcache != NULL);
        for (size_t i = 0; i < cpu->dnnl->n_prims; i++) r.wino += cpu->dnnl->prims[i]->algo == SD_CONV_WINO;
    } else {
        printf("  generate: %s\n", ctx.msg);
    }
    if (rt && m) sd_runtime_release_model(rt, m);
    sd_model_free(own);
    sd_embed_cache_free(cache);
    sd_runtime_free(rt);
    return r;
}

/* The packs of dir/weights: count, the largest, and temporary files left. */
static int packs(const char *dir, char *largest, size_t n, int *tmp_left) {
    char wd[512], path[1024];
    snprintf(wd, sizeof wd, "%s/weights", dir);
    DIR *d = opendir(wd);
    int count = 0;
    off_t best = -1;
    *tmp_left = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", wd, de->d_name);
        if (strstr(de->d_name, ".tmp.")) ++*tmp_left;
        if (!strstr(de->d_name, ".sdw") || strstr(de->d_name, ".tmp.") || stat(path, &sb) != 0) continue;
        count++;
        if (sb.st_size > best) best = sb.st_size, snprintf(largest, n, "%s", path);
    }
    if (d) closedir(d);
    return count;
}

static void rm_cache(const char *dir) {
    char wd[512], path[1024];
    snprintf(wd, sizeof wd, "%s/weights", dir);
    DIR *d = opendir(wd);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", wd, de->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(wd);
    rmdir(dir);
}

static int same(const float *a, const float *b) { return memcmp(a, b, NPIX * sizeof(float)) == 0; }

static void test_precision(int precision, int full) {
    const char *pn = conv_policy == SD_CONV_POLICY_WINO ? "f32 wino" : sd_precision_name(precision);
    char dir[] = "/tmp/sdrt-wcache-XXXXXX", big[1024] = "";
    if (!mkdtemp(dir)) {
        CHECK(0, "%s: mkdtemp", pn);
        return;
    }
    float *off = malloc(NPIX * sizeof(float)), *img = malloc(NPIX * sizeof(float));
    int tmp_left;

    /* 1. off, cold, warm */
    struct run r0 = gen(NULL, precision, NULL, off);
    struct run cold = gen(dir, precision, NULL, img);
    const long n = cold.st.stored;
    CHECK(r0.ok && cold.ok && n > 0 && cold.st.hits == 0 && cold.st.packs_written >= 1 && same(off, img),
          "%s cold: %ld prepared weights written in %ld packs (%d files), image = cache off byte for byte", pn, n,
          cold.st.packs_written, packs(dir, big, sizeof big, &tmp_left));
    struct run warm = gen(dir, precision, NULL, img);
    CHECK(warm.ok && warm.st.hits == n && warm.st.stored == 0 && warm.st.rejected == 0 &&
              warm.reorders == cold.reorders - n && same(off, img) && (conv_policy != SD_CONV_POLICY_WINO || warm.wino > 0),
          "%s warm (new runtime, model loaded again): %ld of %ld mapped, %ld reorders left (uncached small "
          "weights; cold %ld), nothing written, image = cache off byte for byte (%d Winograd convolutions)", pn,
          warm.st.hits, n, warm.reorders, cold.reorders, warm.wino);

    if (!full) goto done;

    /* low memory: the copies go after each phase and are mapped again */
    low_memory = 1;
    struct run lm = gen(dir, precision, NULL, img);
    low_memory = 0;
    CHECK(lm.ok && lm.st.hits == 2 * n && lm.st.stored == 0 && lm.dropped == 2 && same(off, img),
          "%s low memory: two images, %ld mappings (every weight per image), no copy held after each image (%d of "
          "2), nothing written; images = cache off", pn, lm.st.hits, lm.dropped);

    /* 2. a flipped payload byte: the pack's last byte is its last entry's */
    packs(dir, big, sizeof big, &tmp_left);
    int fd = open(big, O_RDWR);
    struct stat sb;
    unsigned char c = 0;
    int flipped = fd >= 0 && fstat(fd, &sb) == 0 && pread(fd, &c, 1, sb.st_size - 1) == 1 &&
                  (c ^= 0x10, pwrite(fd, &c, 1, sb.st_size - 1) == 1);
    if (fd >= 0) close(fd);
    int n_packs = packs(dir, big, sizeof big, &tmp_left);
    struct run flip = gen(dir, precision, NULL, img);
    CHECK(flipped && flip.ok && flip.st.rejected == 1 && flip.st.hits == n - 1 && flip.st.stored >= 1 && same(off, img),
          "%s flipped byte: %ld entry rejected (its pack removed), %ld mapped, %ld written again (the rebuilt entry "
          "and the pack's others); image unchanged", pn, flip.st.rejected, flip.st.hits, flip.st.stored);
    struct run after = gen(dir, precision, NULL, img);
    int n_after = packs(dir, big, sizeof big, &tmp_left);
    CHECK(after.ok && after.st.hits == n && after.st.stored == 0 && after.st.rejected == 0 && n_after == n_packs &&
              same(off, img),
          "%s after the rebuild: %ld of %ld mapped, nothing rejected or written, %d packs (as before)", pn,
          after.st.hits, n, n_after);

    /* truncated pack */
    packs(dir, big, sizeof big, &tmp_left);
    int cut = stat(big, &sb) == 0 && truncate(big, sb.st_size - 1000) == 0;
    struct run trunc = gen(dir, precision, NULL, img);
    CHECK(cut && trunc.ok && trunc.st.rejected == 1 && trunc.st.stored > 0 && trunc.st.hits + trunc.st.stored == n &&
              same(off, img),
          "%s truncated pack: ignored (%ld rejected), %ld rebuilt and written, %ld mapped; image unchanged", pn,
          trunc.st.rejected, trunc.st.stored, trunc.st.hits);

    /* junk with a pack's name */
    char junk[1024];
    snprintf(junk, sizeof junk, "%s/weights/0123456789abcdef0123456789abcdef.sdw", dir);
    FILE *f = fopen(junk, "wb");
    int wrote = f && fwrite("this is not a pack, it has no magic!", 1, 36, f) == 36;
    if (f) fclose(f);
    struct run j = gen(dir, precision, NULL, img);
    struct stat jb;
    CHECK(wrote && j.ok && j.st.hits == n && j.st.stored == 0 && j.st.rejected == 1 && same(off, img) &&
              stat(junk, &jb) != 0,
          "%s junk pack rejected and removed, %ld of %ld mapped, image unchanged", pn, j.st.hits, n);
    struct run clean = gen(dir, precision, NULL, img);
    CHECK(clean.ok && clean.st.hits == n && clean.st.rejected == 0 && clean.st.stored == 0,
          "%s then a clean cache: %ld of %ld mapped, nothing rejected or written", pn, clean.st.hits, n);

    /* 3. a patched weight: the largest deferred UNet matrix, scaled */
    struct sd_ctx ctx = {0};
    struct sd_model *m = NULL;
    if (sd_model_load(&ctx, MODEL, MODEL_CONFIG, &m) == SD_OK) {
        float *plain = malloc(NPIX * sizeof(float)), *patched = malloc(NPIX * sizeof(float));
        struct run base = gen(dir, precision, m, plain); /* loads the UNet's tensors */
        int best = -1;
        int64_t best_n = 0;
        for (int i = 0; i < sd_weights_count(m->un); i++) {
            struct sd_tensor *t = sd_weights_tensor(m->un, i);
            if ((t->flags & SD_TF_DEFERRED) && t->data && sd_weights_slice_of(m->un, i, NULL) < 0 &&
                sd_tensor_nelements(t) > best_n)
                best = i, best_n = sd_tensor_nelements(t);
        }
        struct sd_tensor *t = best >= 0 ? sd_weights_tensor(m->un, best) : NULL;
        float *orig = t ? t->data : NULL, *copy = t ? malloc((size_t)best_n * sizeof(float)) : NULL;
        int set = copy && sd_weight_read_f32(&ctx, t, copy) == SD_OK;
        for (int64_t i = 0; set && i < best_n; i++) copy[i] = copy[i] * 1.5f + 0.01f;
        set = set && sd_weights_set_data(m->un, best, copy) == SD_OK;
        struct run pc = gen(dir, precision, m, patched);
        struct run pu = gen(NULL, precision, m, img);
        CHECK(base.ok && set && pc.ok && pu.ok && same(patched, img) && !same(patched, plain) && pc.st.stored == 0 &&
                  pc.st.hits == n - 1 && base.st.hits == n,
              "%s patched weight '%s' (%lld values): not read from the cache (%ld of %ld mapped, %ld written), image "
              "= uncached patched image, != unpatched", pn, t ? t->name : "?", (long long)best_n, pc.st.hits, n,
              pc.st.stored);
        int back = set && sd_weights_set_data(m->un, best, orig) == SD_OK;
        struct run rb = gen(dir, precision, m, img);
        CHECK(back && rb.ok && rb.st.hits == n && same(img, off) && same(plain, off),
              "%s original restored: %ld of %ld mapped again, image = unpatched", pn, rb.st.hits, n);
        free(copy), free(plain), free(patched);
        sd_model_free(m);
    } else {
        CHECK(0, "%s: load %s: %s", pn, MODEL, ctx.msg);
    }

    /* 4. two processes filling one empty cache at once */
    rm_cache(dir);
    int made = mkdir(dir, 0755) == 0;
    pid_t pid[2] = {0, 0};
    char *argv[2][4];
    for (int i = 0; made && i < 2; i++) {
        argv[i][0] = "test_weight_cache", argv[i][1] = dir, argv[i][2] = (char *)pn, argv[i][3] = NULL;
        if (posix_spawn(&pid[i], "/proc/self/exe", NULL, NULL, argv[i], environ) != 0) pid[i] = 0;
    }
    int children_ok = 0;
    for (int i = 0; i < 2; i++) {
        int st = 0;
        if (pid[i] > 0 && waitpid(pid[i], &st, 0) == pid[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0) children_ok++;
    }
    struct run two = gen(dir, precision, NULL, img);
    int np = packs(dir, big, sizeof big, &tmp_left);
    CHECK(children_ok == 2 && two.ok && two.st.hits == n && two.st.rejected == 0 && two.st.stored == 0 && !tmp_left &&
              same(off, img),
          "%s two processes writing at once: %d packs, no temporary file left; then %ld of %ld mapped, none rejected, "
          "image unchanged", pn, np, two.st.hits, n);
done:
    rm_cache(dir);
    free(off), free(img);
}

/* Child of test 4: one image with the cache in argv[1] (precision argv[2]);
 * exit 0 when it ran and wrote or mapped every weight. */
/* ---- 5. the size limit ---- */

#define ENT_N (256 * 1024 / 4) /* f32 values of one entry */

static struct sd_wkey put_one(struct sd_wcache *c, uint64_t content, const float *data) {
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {ENT_N / 64, 64};
    dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_f32, dnnl_ab);
    struct sd_wkey k = {0};
    if (sd_wcache_key(&k, content, &md, &md)) sd_wcache_put(c, &k, &md, data, ENT_N * sizeof(float));
    return k;
}

static const void *find_one(struct sd_wcache *c, const struct sd_wkey *k) {
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {ENT_N / 64, 64};
    dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_f32, dnnl_ab);
    return sd_wcache_find(c, k, &md);
}

/* The pack names in dir/weights into names (in directory order); returns the count. */
static int pack_names(const char *dir, char names[][64], int max) {
    char wd[512];
    snprintf(wd, sizeof wd, "%s/weights", dir);
    DIR *d = opendir(wd);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d)) && n < max;)
        if (strlen(de->d_name) == 36 && strstr(de->d_name, ".sdw")) snprintf(names[n++], 64, "%s", de->d_name);
    if (d) closedir(d);
    return n;
}

static int has_name(char names[][64], int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return 1;
    return 0;
}

/* The one name in b[0..nb) that is not in a[0..na) ("" if none). */
static const char *new_name(char a[][64], int na, char b[][64], int nb) {
    for (int i = 0; i < nb; i++)
        if (!has_name(a, na, b[i])) return b[i];
    return "";
}

static void set_age(const char *dir, const char *name, int seconds_ago) {
    char path[1024];
    snprintf(path, sizeof path, "%s/weights/%s", dir, name);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= seconds_ago;
    t[1] = t[0];
    utimensat(AT_FDCWD, path, t, 0);
}

static void test_limit(void) {
    char dir[] = "/tmp/sdrt-wlimit-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "limit: mkdtemp");
        return;
    }
    float *data = malloc(ENT_N * sizeof(float));
    for (int i = 0; i < ENT_N; i++) data[i] = (float)i;
    const uint64_t pack_bytes = 4096 + ENT_N * sizeof(float), limit = 2 * pack_bytes + pack_bytes / 2;
    char n0[8][64], n1[8][64], n2[8][64], a[64], b[64];
    /* A then B, written by one cache (as one process would) */
    struct sd_wcache *c = sd_wcache_new(dir, NULL);
    sd_wcache_set_max(c, limit);
    struct sd_wkey ka = put_one(c, 1, data);
    sd_wcache_flush(c);
    int k0 = pack_names(dir, n0, 8);
    snprintf(a, sizeof a, "%s", k0 == 1 ? n0[0] : "");
    put_one(c, 2, data);
    sd_wcache_flush(c);
    int k1 = pack_names(dir, n1, 8);
    snprintf(b, sizeof b, "%s", new_name(n0, k0, n1, k1));
    sd_wcache_free(c);
    set_age(dir, a, 300); /* A written first ... */
    set_age(dir, b, 200);
    /* ... but used by a later cache (a second process): A is the recent one */
    c = sd_wcache_new(dir, NULL);
    sd_wcache_set_max(c, limit);
    const float *hit = find_one(c, &ka);
    put_one(c, 3, data);
    sd_wcache_flush(c);
    int k2 = pack_names(dir, n2, 8);
    struct sd_wcache_stats st = sd_wcache_stats(c);
    CHECK(k0 == 1 && k1 == 2 && hit && hit[ENT_N - 1] == (float)(ENT_N - 1) && k2 == 2 && has_name(n2, k2, a) &&
              !has_name(n2, k2, b) && *new_name(n1, k1, n2, k2) && st.evicted == 1,
          "limit %.0f KiB (2.5 packs): a third pack removes the least recently used one - B, written after A but "
          "not used since - and keeps A, which a later cache mapped (%d, %d, %d packs; %ld evicted)",
          (double)limit / 1024, k0, k1, k2, st.evicted);
    /* a pack over the limit is not written */
    sd_wcache_set_max(c, pack_bytes - 1);
    put_one(c, 4, data);
    sd_wcache_flush(c);
    st = sd_wcache_stats(c);
    CHECK(pack_names(dir, n0, 8) == 2 && st.stored == 1, "a pack larger than the limit is not written (%ld stored)",
          st.stored);
    /* temporary files of dead writers go, fresh ones stay */
    char stale_name[96], fresh_name[96], stale[1100], fresh[1100];
    snprintf(stale_name, sizeof stale_name, "%s.tmp.1.0", a);
    snprintf(fresh_name, sizeof fresh_name, "%s.tmp.2.0", a);
    snprintf(stale, sizeof stale, "%s/weights/%s", dir, stale_name);
    snprintf(fresh, sizeof fresh, "%s/weights/%s", dir, fresh_name);
    close(open(stale, O_WRONLY | O_CREAT, 0644));
    close(open(fresh, O_WRONLY | O_CREAT, 0644));
    set_age(dir, stale_name, 7200);
    sd_wcache_set_max(c, limit);
    put_one(c, 5, data);
    sd_wcache_flush(c);
    CHECK(access(stale, F_OK) != 0 && access(fresh, F_OK) == 0,
          "a temporary file 2 h old is removed, a fresh one (a writer at work) kept");
    unlink(fresh);
    sd_wcache_free(c);
    free(data);
    rm_cache(dir);
}

static int child(const char *dir, const char *precision) {
    float *img = malloc(NPIX * sizeof(float));
    struct run r = gen(dir, sd_precision_parse(precision), NULL, img);
    free(img);
    return r.ok && r.st.hits + r.st.stored > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    struct sd_ctx ctx = {0};
    tok = sd_tokenizer_load_bpe_gz(&ctx, vocab_path());
    if (!tok || sd_tokenizer_set_family(tok, SD_TOKENIZER_SD1)) {
        printf("FAIL tokenizer: %s\n", ctx.msg);
        return 1;
    }
    if (argc == 3) {
        int rc = child(argv[1], argv[2]);
        sd_tokenizer_free(tok);
        return rc;
    }
    test_limit();
    test_precision(SD_PRECISION_F32, 1);
    if (sd_cpu_precision_bf16(SD_PRECISION_BF16)) {
        test_precision(SD_PRECISION_BF16, 0);
        conv_policy = SD_CONV_POLICY_WINO; /* Winograd-transformed copies (AVX-512 only) */
        test_precision(SD_PRECISION_F32, 0);
    } else {
        printf("# bf16 and Winograd: oneDNN ISA %s has no AVX-512: f32 only on this CPU\n", sd_cpu_isa());
    }
    sd_tokenizer_free(tok);
    return test_summary();
}
