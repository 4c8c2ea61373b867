/* replay.c - runs a fuzz target's LLVMFuzzerTestOneInput on every file of
 * its corpus directories without libFuzzer, so `make check` (normal and
 * ASan/UBSan builds, via tests/run.sh) replays the seed corpus and every
 * past crash input of tests/fuzz/<target>/ and a regression fails the build.
 * Built as build/tests/test_fuzz_<target> with FUZZ_TARGET="<target>";
 * arguments name other directories or files to replay instead.
 * Prints "ok fuzz <target> corpus <dir>: N inputs" per directory; a
 * contract violation traps (the last "  input" line names the file).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1); /* exactly n bytes: ASan sees overreads */
    size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if ((long)got != n) { free(buf); return 1; }
    printf("  input %s\n", path);
    fflush(stdout);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int replay(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) { printf("FAIL fuzz %s: no corpus %s\n", FUZZ_TARGET, path); return 1; }
    if (!S_ISDIR(st.st_mode)) {
        int bad = replay_file(path);
        printf("%s fuzz %s input %s\n", bad ? "FAIL" : "ok", FUZZ_TARGET, path);
        return bad;
    }
    DIR *d = opendir(path);
    char **names = NULL;
    int n = 0, bad = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        names = realloc(names, sizeof *names * (size_t)(n + 1));
        names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
        sprintf(names[n++], "%s/%s", path, e->d_name);
    }
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp);
    for (int i = 0; i < n; i++) bad += replay_file(names[i]), free(names[i]);
    free(names);
    if (n == 0 || bad) printf("FAIL fuzz %s corpus %s: %d inputs, %d unreadable\n", FUZZ_TARGET, path, n, bad);
    else printf("ok fuzz %s corpus %s: %d inputs replayed without a contract violation or sanitizer report\n",
                FUZZ_TARGET, path, n);
    return n == 0 || bad;
}

int main(int argc, char **argv) {
    int bad = 0;
    if (argc > 1)
        for (int i = 1; i < argc; i++) bad |= replay(argv[i]);
    else
        bad = replay("tests/fuzz/" FUZZ_TARGET);
    return bad;
}
