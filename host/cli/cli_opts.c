/* cli_opts.c - option tables parsed with getopt_long (cli_opts.h). */
#include "cli_opts.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 96
#define VAL_BASE 256 /* getopt_long's return value for table entry i: VAL_BASE + i */

static int has_value(const struct cli_opt *o) { return o->kind != CLI_FLAG; }

/* The long option's name as the user typed it ("--steps=3" -> "steps"). */
static size_t typed_name(const char *tok, const char **name) {
    *name = tok + 2;
    return strcspn(tok + 2, "=");
}

static int number(const struct cli_opt *o, const char *v, void *field) {
    char *end = NULL;
    errno = 0;
    if (o->kind == CLI_INT) {
        long x = strtol(v, &end, 10);
        if (!errno && (x > INT_MAX || x < INT_MIN)) errno = ERANGE;
        if (!errno && end != v && !*end) *(int *)field = (int)x;
    } else if (o->kind == CLI_LLONG) {
        long long x = strtoll(v, &end, 10);
        if (!errno && end != v && !*end) *(long long *)field = x;
    } else {
        float x = strtof(v, &end);
        if (!errno && end != v && !*end) *(float *)field = x;
    }
    if (end == v || *end) {
        fprintf(stderr, "sdrt: --%s expects a number, got '%s'\n", o->name, v);
        return 2;
    }
    if (errno) {
        fprintf(stderr, "sdrt: --%s %s is out of range\n", o->name, v);
        return 2;
    }
    return 0;
}

static int store(const struct cli_opt *o, const char *v, void *opts) {
    void *field = (char *)opts + o->off;
    switch (o->kind) {
    case CLI_FLAG: *(int *)field = 1; return 0;
    case CLI_STR: *(const char **)field = v; return 0;
    case CLI_FN: return o->fn(opts, v);
    default: return number(o, v, field);
    }
}

int cli_parse(const char *cmd, const struct cli_opt *t, unsigned mode, int argc, char **argv, void *opts,
              void (*usage)(unsigned mode, FILE *f), const char **pos, int max_pos, int *n_pos) {
    struct option lo[MAX_OPTS + 2];
    char shorts[2 * MAX_OPTS + 8] = ":h";
    int n = 0, ns = 2;
    for (; t[n].name && n < MAX_OPTS; n++) {
        lo[n] = (struct option){t[n].name, has_value(&t[n]) ? required_argument : no_argument, NULL, VAL_BASE + n};
        if (t[n].short_name) {
            shorts[ns++] = (char)t[n].short_name;
            if (has_value(&t[n])) shorts[ns++] = ':';
        }
    }
    shorts[ns] = 0;
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    if (n_pos) *n_pos = 0;
    opterr = 0;
    optind = 0; /* glibc: start over (a fresh scan of this argv) */
    for (int c, li; (c = getopt_long(argc, argv, shorts, lo, &li)) != -1;) {
        if (c == 'h') {
            if (usage) usage(mode, stdout);
            return 1;
        }
        if (c == ':') {
            if (optopt >= VAL_BASE) fprintf(stderr, "sdrt: --%s needs a value\n", t[optopt - VAL_BASE].name);
            else fprintf(stderr, "sdrt: -%c needs a value\n", optopt);
            return 2;
        }
        if (c == '?') {
            if (optopt >= VAL_BASE) fprintf(stderr, "sdrt: --%s takes no value\n", t[optopt - VAL_BASE].name);
            else if (optopt) fprintf(stderr, "sdrt: unknown option -%c (see sdrt %s --help)\n", optopt, cmd);
            else {
                const char *tok = argv[optind - 1], *name;
                size_t len = strncmp(tok, "--", 2) ? strlen(tok) : typed_name(tok, &name) + 2;
                fprintf(stderr, "sdrt: unknown option %.*s (see sdrt %s --help)\n", (int)len, tok, cmd);
            }
            return 2;
        }
        int i = -1;
        if (c >= VAL_BASE) {
            i = c - VAL_BASE;
            /* getopt_long accepts unique prefixes; we want the full name. */
            const char *tok = argv[has_value(&t[i]) && optarg == argv[optind - 1] ? optind - 2 : optind - 1], *name;
            size_t len = typed_name(tok, &name);
            if (len != strlen(t[i].name) || strncmp(name, t[i].name, len)) {
                fprintf(stderr, "sdrt: unknown option --%.*s (see sdrt %s --help)\n", (int)len, name, cmd);
                return 2;
            }
        } else {
            for (int k = 0; k < n && i < 0; k++)
                if (t[k].short_name == c) i = k;
            if (i < 0) return 2; /* not reached: getopt returns only letters of `shorts` */
        }
        if (t[i].modes && mode && !(t[i].modes & mode)) {
            fprintf(stderr, "sdrt: --%s is not an option of %s (see sdrt %s --help)\n", t[i].name, cmd, cmd);
            return 2;
        }
        int rc = store(&t[i], optarg, opts);
        if (rc) return rc;
    }
    for (int k = optind; k < argc; k++) {
        if (!pos || !n_pos || *n_pos >= max_pos) {
            fprintf(stderr, "sdrt: unexpected argument '%s' (see sdrt %s --help)\n", argv[k], cmd);
            return 2;
        }
        pos[(*n_pos)++] = argv[k];
    }
    return 0;
}

/* "  -o, --output PATH" or "      --config DIR"; returns its length. */
static int head_of(const struct cli_opt *o, char *head, size_t n) {
    int k = o->short_name ? snprintf(head, n, "  -%c, --%s", o->short_name, o->name) : snprintf(head, n, "      --%s", o->name);
    if (o->meta && k >= 0 && (size_t)k < n) k += snprintf(head + k, n - (size_t)k, " %s", o->meta);
    return k;
}

static int shown(const struct cli_opt *o, unsigned mode) { return o->help && !(o->modes && mode && !(o->modes & mode)); }

void cli_usage(FILE *f, const struct cli_opt *t, unsigned mode) {
    char head[96];
    int col = 12; /* "  -h, --help" */
    for (int i = 0; t[i].name; i++)
        if (shown(&t[i], mode)) {
            int k = head_of(&t[i], head, sizeof head);
            if (k > col) col = k;
        }
    col += 2;
    for (int i = 0; t[i].name; i++) {
        if (!shown(&t[i], mode)) continue;
        int k = head_of(&t[i], head, sizeof head);
        fprintf(f, "%s%*s", head, col - k, "");
        for (const char *h = t[i].help; *h;) {
            size_t len = strcspn(h, "\n");
            fprintf(f, "%.*s\n", (int)len, h);
            h += len;
            if (*h == '\n' && *++h) fprintf(f, "%*s", col, "");
        }
    }
    fprintf(f, "  -h, --help%*sthis help\n", col - 12, "");
}
