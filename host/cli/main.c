/* main.c - the `sdrt` command: subcommand dispatch.
 *
 * Each subcommand lives in host/cmd_<name>.c and returns a process exit
 * status (0 ok, 1 runtime error, 2 usage error). Errors print as
 * "sdrt: <message>" on stderr.
 */
#include "cmd.h"

#include <stdio.h>
#include <string.h>

static const struct sd_cmd cmds[] = {
    {"info", "show a model's family, dtype, tensor and parameter counts", sd_cmd_info},
    {"txt2img", "generate images from a prompt", sd_cmd_txt2img},
    {"img2img", "generate from a prompt and an init image", sd_cmd_img2img},
    {"inpaint", "repaint the masked part of an image", sd_cmd_inpaint},
    {"serve", "HTTP server: A1111 and OpenAI APIs, async jobs with SSE (docs/server.md)", sd_cmd_serve},
    {"worker", "runs jobs from Redis Streams (sdrt serve --redis; docs/scale-out.md)", sd_cmd_worker},
    {"devices", "list OpenCL devices and the CPU backend", sd_cmd_devices},
    {"bench", "time CLIP, a UNet CFG step and a VAE decode per backend", sd_cmd_bench},
};

static void usage(FILE *f) {
    fprintf(f, "usage: sdrt <command> [options]   (sdrt <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "  %-10s %s\n", "version", "print the version");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("sdrt %s\n", SDRT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sdrt: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
