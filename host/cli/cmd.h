/* cmd.h - the `sdrt` subcommands (host/cli/cmd_*.c) and what they share.
 * Each command takes argc/argv with argv[0] = the subcommand name and
 * returns the process exit status (0 ok, 1 runtime error, 2 usage error). */
#ifndef SDRT_CMD_H
#define SDRT_CMD_H

#include <stdio.h>

#include "runtime.h"

struct sd_cmd {
    const char *name, *help;
    int (*run)(int argc, char **argv);
};

int sd_cmd_info(int argc, char **argv);
int sd_cmd_bench(int argc, char **argv);
int sd_cmd_devices(int argc, char **argv);
int sd_cmd_txt2img(int argc, char **argv);
int sd_cmd_img2img(int argc, char **argv);
int sd_cmd_inpaint(int argc, char **argv);
int sd_cmd_serve(int argc, char **argv);
int sd_cmd_worker(int argc, char **argv);
/* cmd_serve.c: --devices cpu,opencl:N,... into s (shared with `sdrt worker`). */
struct sd_server_opts;
int parse_devices(struct sd_ctx *ctx, struct sd_server_opts *s, const char *list);

/* cli_env.c: the one place that reads the environment. Fills o (after
 * sd_runtime_opts_init) from the SDRT_* variables of docs/running.md and
 * sets the log to cli_log with `log` as its user. Returns SD_OK, or
 * SD_ERR_INVALID with "VAR=value: want ..." on ctx. */
struct cli_log { int json; };
int cli_runtime_opts(struct sd_ctx *ctx, struct sd_runtime_opts *o, struct cli_log *log);
/* Resolves an OpenCL device given as the flat index `sdrt devices` lists
 * ("1") or as PLATFORM:DEVICE ("0:1") into *index; `what` names it in the
 * error ("--device"). Returns SD_OK or SD_ERR_INVALID with ctx set. */
int cli_device_index(struct sd_ctx *ctx, const char *what, const char *s, int *index);
/* The CLIP BPE vocabulary when no --vocab is given: $SDRT_VOCAB, else
 * vocab/bpe_simple_vocab_16e6.txt.gz beside the executable, else build/vocab/
 * (returns env or buf). */
const char *cli_default_vocab(char *buf, size_t size);
/* --precision S into o->precision (S NULL: unchanged); SD_ERR_INVALID on an unknown name. */
int cli_precision(struct sd_ctx *ctx, struct sd_runtime_opts *o, const char *s);
/* --weight-cache DIR|off: the prepared-weight cache root (NULL s: keep the
 * default from the environment). Returns 0. */
int cli_weight_cache(struct sd_runtime_opts *o, const char *s);
/* A size: BYTES, or N with a unit K, M, G (KiB, MiB, GiB; KB, MB, GB read as
 * the same powers of 1024), > 0. Returns 0 with *out set, or -1. */
int cli_size_parse(const char *v, unsigned long long *out);
/* --weight-cache-max SIZE into o->weight_cache_max (NULL s: unchanged);
 * SD_ERR_INVALID with ctx set on a bad size. */
int cli_weight_cache_max(struct sd_ctx *ctx, struct sd_runtime_opts *o, const char *s);

/* cli_log.c: the library's log callback: stderr ("sdrt: warning: ..."), or
 * with json set one {"event": "log", ...} line on stdout. */
void cli_log(void *user, int level, const char *msg);
/* Writes s as a JSON string literal. */
void cli_json_str(FILE *f, const char *s);

#endif
