/* error.c - the error context: status plus message (see sdrt.h). */
#include "sdrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sd_errorf(struct sd_ctx *ctx, int status, const char *fmt, ...) {
    if (!ctx) return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    ctx->status = status;
    return status;
}

int sd_error_wrap(struct sd_ctx *ctx, const char *fmt, ...) {
    if (!ctx) return SD_ERR_INVALID;
    char prefix[512], old[sizeof ctx->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, ctx->msg, sizeof old);
    snprintf(ctx->msg, sizeof ctx->msg, "%s: %s", prefix, old);
    return ctx->status ? ctx->status : SD_ERR_INVALID;
}

void sd_ctx_clear(struct sd_ctx *ctx) {
    if (!ctx) return;
    ctx->status = SD_OK;
    ctx->msg[0] = 0;
}

const char *sd_status_name(int status) {
    static const char *names[SD_ERR_COUNT] = {
        "ok", "invalid", "io", "format", "nomem", "unsupported",
        "backend", "cancelled",
    };
    return status >= 0 && status < SD_ERR_COUNT ? names[status] : "unknown";
}

void *sd_malloc_aligned(size_t size) {
    void *p = NULL;
    if (size == 0) size = 64;
    if (posix_memalign(&p, 64, (size + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

void sd_free_aligned(void *p) { free(p); }

double sd_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
