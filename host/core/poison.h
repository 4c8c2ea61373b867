/* poison.h - filling memory nobody has written yet with a recognisable NaN.
 *
 * Builds with -DSDRT_POISON (the ASan/UBSan build, `make SAN=1`) fill the
 * activation arena before every graph run and the pipeline's image buffer
 * before the VAE decode with SD_POISON_BITS, a signalling NaN: a kernel that
 * reads memory no earlier op wrote then produces NaN (the samplers refuse
 * NaN model outputs, the tests compare against goldens), and output left
 * unwritten is found by its exact bit pattern. AddressSanitizer cannot see
 * such reads (the memory is allocated, just never written) and
 * MemorySanitizer would need an instrumented oneDNN and OpenMP.
 */
#ifndef SDRT_POISON_H
#define SDRT_POISON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SD_POISON_BITS 0x7fa5a5a5u /* exponent all ones, quiet bit clear: sNaN */

static inline void sd_poison_f32(void *p, size_t n_floats) {
    uint32_t *u = p;
    for (size_t i = 0; i < n_floats; i++) u[i] = SD_POISON_BITS;
}

/* Number of floats that still hold the poison pattern. */
static inline size_t sd_poison_count(const void *p, size_t n_floats) {
    const uint32_t *u = p;
    size_t k = 0;
    for (size_t i = 0; i < n_floats; i++) k += u[i] == SD_POISON_BITS;
    return k;
}

#endif
