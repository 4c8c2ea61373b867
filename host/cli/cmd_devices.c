/* cmd_devices.c - `sdrt devices`: every OpenCL device of every platform
 * (type, memory, compute units, fp16, OpenCL version, driver), plus the CPU
 * backend, as a table or --json. */
#include "cmd.h"

#include "cl.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

int sd_cmd_devices(int argc, char **argv) {
    int json = argc > 1 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json) {
        printf("usage: sdrt devices [--json]\n  lists the OpenCL devices (SDRT_CL_DEVICE=P:D picks one) and the CPU backend\n");
        return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
    }
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
            printf("%s{\"index\": \"%d:%d\", \"name\": \"%s\", \"type\": \"%s\", \"global_mem\": %llu, \"compute_units\": %u, "
                   "\"fp16\": %s, \"version\": \"%s\", \"driver\": \"%s\", \"platform\": \"%s\", \"compiler\": %s}",
                   i ? ", " : "", dev[i].platform, dev[i].device, dev[i].name, dev[i].type,
                   (unsigned long long)dev[i].global_mem, dev[i].compute_units, dev[i].fp16 ? "true" : "false",
                   dev[i].cl_version, dev[i].driver_version, dev[i].platform_name, dev[i].has_compiler ? "true" : "false");
        printf("]}\n");
        return 0;
    }
    printf("cpu      oneDNN + OpenMP, %d threads\n", omp_get_num_procs());
    if (n == 0) printf("opencl   no platform or device found (is an ICD installed? e.g. pocl-opencl-icd)\n");
    for (int i = 0; i < n; i++)
        printf("opencl %d:%d  %-40s %-5s %7.0f MiB  %3u CUs  fp16 %-3s  %s  driver %s  (%s)%s\n", dev[i].platform,
               dev[i].device, dev[i].name, dev[i].type, dev[i].global_mem / 1048576.0, dev[i].compute_units,
               dev[i].fp16 ? "yes" : "no", dev[i].cl_version, dev[i].driver_version, dev[i].platform_name,
               dev[i].has_compiler ? "" : "  [no online compiler: needs SDRT_CL_PRECOMPILED]");
    return 0;
}
