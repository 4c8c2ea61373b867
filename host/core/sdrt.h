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

/* Logging. The library never writes to stdout or stderr: warnings (an op
 * moved to the CPU, a program that failed to build) and debug output go to
 * the caller's callback, and only messages with level <= log->level are
 * delivered. msg is one message without a trailing newline (debug dumps
 * span several lines); it is valid during the call only. */
enum sd_log_level { SD_LOG_ERROR = 0, SD_LOG_WARN, SD_LOG_INFO, SD_LOG_DEBUG };
typedef void (*sd_log_fn)(void *user, int level, const char *msg);
struct sd_log {
    sd_log_fn fn;   /* NULL: messages are dropped */
    void *user;     /* passed to fn */
    int level;      /* the most verbose level delivered */
};
void sd_logf(const struct sd_log *log, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Whether a message at level would be delivered (to skip building one). */
bool sd_log_on(const struct sd_log *log, int level);
const char *sd_log_level_name(int level); /* "error", "warn", "info", "debug" */
int sd_log_level_parse(const char *s);    /* one of those names, or -1 */

const char *sd_status_name(int status);

/* Aligned allocation helpers (64-byte alignment; free with sd_free_aligned). */
void *sd_malloc_aligned(size_t size);
void sd_free_aligned(void *p);

/* Monotonic time in seconds. */
double sd_time_s(void);

#endif
