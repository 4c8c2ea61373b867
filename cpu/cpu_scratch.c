/* cpu_scratch.c - the CPU backend's scratch buffer (see sd_cpu_scratch in cpu.h).
 * Kept apart from cpu_backend.c so single ops can be linked and tested alone. */
#include "cpu.h"

void *sd_cpu_scratch(struct sd_cpu *cpu, size_t n) {
    if (n > cpu->scratch_size) {
        void *p = sd_malloc_aligned(n);
        if (!p) {
            sd_errorf(cpu->ctx, SD_ERR_NOMEM, "cpu: cannot allocate %.1f MiB of scratch", (double)n / 1048576.0);
            return NULL;
        }
        sd_free_aligned(cpu->scratch);
        cpu->scratch = p;
        cpu->scratch_size = n;
    }
    return cpu->scratch;
}
