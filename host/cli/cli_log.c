/* cli_log.c - where the library's log messages go in the sdrt command. */
#include "cmd.h"

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

void cli_log(void *user, int level, const char *msg) {
    const struct cli_log *l = user;
    if (l && l->json) {
        printf("{\"event\": \"log\", \"level\": \"%s\", \"message\": ", sd_log_level_name(level));
        cli_json_str(stdout, msg);
        printf("}\n");
        fflush(stdout);
    } else if (level <= SD_LOG_WARN) {
        fprintf(stderr, "sdrt: %s: %s\n", level == SD_LOG_ERROR ? "error" : "warning", msg);
    } else {
        fprintf(stderr, "%s\n", msg);
    }
}
