/* cmd_devices.c - `sdrt devices`: every OpenCL device of every platform
 * (type, memory, compute units, fp16, OpenCL version, driver), plus the CPU
 * backend, as a table or --json. */
#include "cli_opts.h"
#include "cmd.h"

#include "cl.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

struct devices_opts { int json; };

static const struct cli_opt options[] = {
    {"json", 0, CLI_FLAG, CLI_OFF(struct devices_opts, json), NULL, "one JSON object on stdout", NULL, 0},
    {NULL, 0, 0, 0, NULL, NULL, NULL, 0},
};

static void usage(unsigned mode, FILE *f) {
    (void)mode;
    fprintf(f, "usage: sdrt devices [--json]\n"
               "  lists the OpenCL devices and the CPU backend; --device N (or SDRT_CL_DEVICE=N) picks\n"
               "  OpenCL device N of this list\n");
    cli_usage(f, options, 0);
}

int sd_cmd_devices(int argc, char **argv) {
    struct devices_opts d = {0};
    int rc = cli_parse("devices", options, 0, argc, argv, &d, usage, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    int json = d.json;
    struct sd_ctx ctx = {0};
    struct sd_cl_device_info dev[32];
    int n = 0;
    if (sd_cl_list_devices(&ctx, dev, 32, &n)) {
        fprintf(stderr, "sdrt: %s\n", ctx.msg);
        return 1;
    }
    if (n > 32) n = 32;
    if (json) {
        printf("{\"cpu\": {\"threads\": %d}, \"opencl\": [", omp_get_num_procs());
        for (int i = 0; i < n; i++)
            printf("%s{\"device\": %d, \"index\": \"%d:%d\", \"name\": \"%s\", \"type\": \"%s\", \"global_mem\": %llu, \"compute_units\": %u, "
                   "\"fp16\": %s, \"version\": \"%s\", \"driver\": \"%s\", \"platform\": \"%s\", \"compiler\": %s}",
                   i ? ", " : "", i, dev[i].platform, dev[i].device, dev[i].name, dev[i].type,
                   (unsigned long long)dev[i].global_mem, dev[i].compute_units, dev[i].fp16 ? "true" : "false",
                   dev[i].cl_version, dev[i].driver_version, dev[i].platform_name, dev[i].has_compiler ? "true" : "false");
        printf("]}\n");
        return 0;
    }
    printf("cpu      oneDNN + OpenMP, %d threads\n", omp_get_num_procs());
    if (n == 0) printf("opencl   no platform or device found (is an ICD installed? e.g. pocl-opencl-icd)\n");
    for (int i = 0; i < n; i++)
        printf("opencl %d (%d:%d)  %-40s %-5s %7.0f MiB  %3u CUs  fp16 %-3s  %s  driver %s  (%s)%s\n", i, dev[i].platform,
               dev[i].device, dev[i].name, dev[i].type, dev[i].global_mem / 1048576.0, dev[i].compute_units,
               dev[i].fp16 ? "yes" : "no", dev[i].cl_version, dev[i].driver_version, dev[i].platform_name,
               dev[i].has_compiler ? "" : "  [no online compiler: needs SDRT_CL_PRECOMPILED=DIR]");
    return 0;
}
