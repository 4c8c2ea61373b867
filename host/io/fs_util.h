/* fs_util.h - small file-system helpers shared by the on-disk caches
 * (cl/cl_cache.c: OpenCL program binaries; cpu/cpu_wcache.c: prepared weights). */
#ifndef SDRT_FS_UTIL_H
#define SDRT_FS_UTIL_H

/* mkdir -p: creates path and its missing parents (mode 0755). Returns 0 when
 * the directory exists afterwards, -1 with errno set otherwise. */
int sd_mkdir_p(const char *path);

#endif
