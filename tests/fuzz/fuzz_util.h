/* fuzz_util.h - helpers shared by the libFuzzer targets tests/fuzz/fuzz_*.c.
 *
 * FUZZ_REQUIRE(cond): the contract a target checks on every input; a
 * violation traps, which both libFuzzer and the replay binaries
 * (tests/fuzz/replay.c) report as a failure. fuzz_tmpdir() is one private
 * directory per process for targets whose parser reads files. */
#ifndef SDRT_FUZZ_UTIL_H
#define SDRT_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdrt.h"

#define FUZZ_REQUIRE(cond) \
    do {                   \
        if (!(cond)) {     \
            fprintf(stderr, "fuzz contract violated at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            __builtin_trap(); \
        }                  \
    } while (0)

/* A failed call must leave a status and a message. */
#define FUZZ_REPORTED(ctx) FUZZ_REQUIRE((ctx)->status != SD_OK && (ctx)->msg[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a NUL-terminated string (malloc'd). */
static char *fuzz_str(const uint8_t *data, size_t size) __attribute__((unused));
static char *fuzz_str(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

static char fuzz_dir[64];
static char fuzz_paths[16][256]; /* files and folders made, removed at exit (last first) */
static int fuzz_n_paths;

static void fuzz_cleanup(void) {
    while (fuzz_n_paths > 0) remove(fuzz_paths[--fuzz_n_paths]);
    if (fuzz_dir[0]) rmdir(fuzz_dir);
}

static void fuzz_track(const char *path) {
    for (int i = 0; i < fuzz_n_paths; i++)
        if (!strcmp(fuzz_paths[i], path)) return;
    if (fuzz_n_paths < 16) snprintf(fuzz_paths[fuzz_n_paths++], sizeof fuzz_paths[0], "%s", path);
}

static const char *fuzz_tmpdir(void) __attribute__((unused));
static const char *fuzz_tmpdir(void) {
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/sdrt-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir)) __builtin_trap();
        atexit(fuzz_cleanup);
    }
    return fuzz_dir;
}

/* Writes n bytes to dir/name (name may contain one level of subfolder). */
static void fuzz_write(const char *name, const void *data, size_t n) __attribute__((unused));
static void fuzz_write(const char *name, const void *data, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fuzz_tmpdir(), name);
    char *slash = strrchr(path, '/');
    if (slash > path + strlen(fuzz_tmpdir())) {
        *slash = 0;
        mkdir(path, 0700);
        fuzz_track(path);
        *slash = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f) __builtin_trap();
    fuzz_track(path);
    if (n && fwrite(data, 1, n, f) != n) __builtin_trap();
    fclose(f);
}

#endif
