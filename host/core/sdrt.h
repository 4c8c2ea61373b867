/* sdrt.h - public status codes and the error context shared by every module.
 *
 * Contract: library functions never abort or exit. A function that can fail
 * returns an `int` status (SD_OK or SD_ERR_*) and, on failure, has written a
 * human-readable message naming what was wrong into ctx->msg (sd_errorf).
 * Functions returning pointers return NULL on failure with ctx set likewise.
 */
#ifndef SDRT_H
#define SDRT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SDRT_VERSION "0.1.0"

enum sd_status {
    SD_OK = 0,
    SD_ERR_INVALID,     /* bad argument or input (shape, size, syntax) */
    SD_ERR_IO,          /* file could not be read or written */
    SD_ERR_FORMAT,      /* a file is malformed (safetensors, PNG, JSON) */
    SD_ERR_NOMEM,       /* allocation failed */
    SD_ERR_UNSUPPORTED, /* valid input we do not handle (model family, op, dtype) */
    SD_ERR_BACKEND,     /* a backend or its library failed; the message starts with the
                         * origin and keeps the call and code ("opencl: clFinish() = -5
                         * CL_OUT_OF_RESOURCES", "oneDNN: dnnl_primitive_execute = 2 (...)") */
    SD_ERR_CANCELLED,   /* the caller asked to stop */
    SD_ERR_COUNT
};

/* What a diffusion model predicts (not recoverable from weights). */
enum sd_prediction { SD_PRED_EPSILON = 0, SD_PRED_V };

/* Error context: one per thread of control (a command, a server job). */
struct sd_ctx {
    int status;      /* last error status, SD_OK when none */
    char msg[2048];  /* last error message */
};

/* Records an error on ctx (printf-style) and returns `status` so callers can
 * write `return sd_errorf(ctx, SD_ERR_IO, "open(%s): %s", path, strerror(e));`.
 * ctx may be NULL (the message is dropped). */
int sd_errorf(struct sd_ctx *ctx, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the current message with more context ("loading unet: ..."). */
int sd_error_wrap(struct sd_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void sd_ctx_clear(struct sd_ctx *ctx);

const char *sd_status_name(int status);

/* Aligned allocation helpers (64-byte alignment; free with sd_free_aligned). */
void *sd_malloc_aligned(size_t size);
void sd_free_aligned(void *p);

/* Monotonic time in seconds. */
double sd_time_s(void);

#endif
