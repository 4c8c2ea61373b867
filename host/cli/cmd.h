/* cmd.h - the `sdrt` subcommands (host/cmd_*.c). Each takes argc/argv with
 * argv[0] = the subcommand name and returns the process exit status. */
#ifndef SDRT_CMD_H
#define SDRT_CMD_H

#include "sdrt.h"

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

#endif
