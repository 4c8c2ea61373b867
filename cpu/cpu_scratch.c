/* cpu_scratch.c - the CPU backend's scratch buffer (see sd_cpu_scratch in cpu.h)
 * and its big-buffer allocator. Kept apart from cpu_backend.c so single ops
 * can be linked and tested alone. */
#include "cpu.h"

#include <stdlib.h>
#include <sys/mman.h>

#define BIG_BYTES ((size_t)4 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

void *sd_cpu_alloc(size_t n) {
    if (n < BIG_BYTES) return sd_malloc_aligned(n);
    void *p = NULL;
    n = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    if (posix_memalign(&p, HUGE_PAGE, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE); /* advice only: without transparent huge pages it changes nothing */
#endif
    return p;
}

void sd_cpu_free(void *p) { free(p); }

void *sd_cpu_scratch(struct sd_cpu *cpu, size_t n) {
    if (n > cpu->scratch_size) {
        void *p = sd_cpu_alloc(n);
        if (!p) {
            sd_errorf(cpu->ctx, SD_ERR_NOMEM, "cpu: cannot allocate %.1f MiB of scratch", (double)n / 1048576.0);
            return NULL;
        }
        sd_cpu_free(cpu->scratch);
        cpu->scratch = p;
        cpu->scratch_size = n;
    }
    return cpu->scratch;
}
