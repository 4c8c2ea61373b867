/* cli_opts.h - the sdrt commands' option tables, parsed with getopt_long.
 *
 * A command describes its options in one table of struct cli_opt (name,
 * short letter, value kind, the field of the command's options struct that
 * receives it, the --help line); cli_parse reads argv with getopt_long
 * ("--steps 20", "--steps=20", "-o out.png", "-qo out.png") and cli_usage
 * prints the table. Adding an option is one table entry (plus the field).
 *
 * Long names must be given in full (no GNU abbreviations: "--step" is an
 * unknown option, so a later "--step-size" cannot change what a script
 * means). Errors are one "sdrt: ..." line on stderr and exit status 2:
 * unknown option, missing value, a value that is not a number or out of
 * range, a flag given a value, an option of another command.
 */
#ifndef SDRT_CLI_OPTS_H
#define SDRT_CLI_OPTS_H

#include <stddef.h>
#include <stdio.h>

enum cli_kind {
    CLI_FLAG,  /* no value: sets the int field to 1 */
    CLI_STR,   /* const char * field = the value */
    CLI_INT,   /* int field, decimal, range-checked */
    CLI_LLONG, /* long long field */
    CLI_FLOAT, /* float field */
    CLI_FN,    /* fn(opts, value) parses the value itself */
};

struct cli_opt {
    const char *name;  /* long name without "--"; a NULL name ends the table */
    int short_name;    /* 'o' for -o, or 0 */
    enum cli_kind kind;
    size_t off;        /* offsetof(the options struct, field) */
    const char *meta;  /* the value in --help ("N", "PATH"); NULL for flags */
    const char *help;  /* --help text ("\n" continues on an indented line);
                        * NULL: an alias, hidden from --help */
    /* CLI_FN: stores value into opts; returns 0, or 2 after printing
     * "sdrt: --name ..." on stderr. */
    int (*fn)(void *opts, const char *value);
    unsigned modes;    /* the modes (bits) it belongs to; 0 = every mode */
};

/* offsetof for table entries: CLI_OFF(struct opts, steps). */
#define CLI_OFF(type, field) offsetof(type, field)

/* Parses argv[1..argc) into opts by table t, for the command `cmd` in mode
 * bit `mode` (0 = any). Arguments that are not options go to pos[0..*n_pos)
 * (at most max_pos; more is a usage error). -h/--help prints usage(mode,
 * stdout) and returns 1. Returns 0 on success, 2 on a usage error. */
int cli_parse(const char *cmd, const struct cli_opt *t, unsigned mode, int argc, char **argv, void *opts,
              void (*usage)(unsigned mode, FILE *f), const char **pos, int max_pos, int *n_pos);

/* Prints the options of mode (0 = all) as "  --name META   help" lines. */
void cli_usage(FILE *f, const struct cli_opt *t, unsigned mode);

#endif
