/* log.c - delivering messages to the caller's log callback (see sdrt.h). */
#include "sdrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sd_log_on(const struct sd_log *log, int level) { return log && log->fn && level <= log->level; }

void sd_logf(const struct sd_log *log, int level, const char *fmt, ...) {
    if (!sd_log_on(log, level)) return;
    char small[512];
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    char *msg = small, *big = NULL;
    if (n >= (int)sizeof small && (big = malloc((size_t)n + 1))) {
        vsnprintf(big, (size_t)n + 1, fmt, ap2);
        msg = big;
    }
    va_end(ap2);
    if (n < 0) snprintf(small, sizeof small, "(unformattable log message: %s)", fmt);
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == '\n') msg[--len] = 0;
    log->fn(log->user, level, msg);
    free(big);
}

const char *sd_log_level_name(int level) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    return level >= 0 && level <= SD_LOG_DEBUG ? names[level] : "?";
}

int sd_log_level_parse(const char *s) {
    for (int l = 0; s && l <= SD_LOG_DEBUG; l++)
        if (!strcmp(s, sd_log_level_name(l))) return l;
    return -1;
}
