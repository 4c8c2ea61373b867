/* rng.h - random numbers for sampling: a bit-compatible copy of PyTorch's CPU
 * generator (torch.Generator("cpu").manual_seed(s) followed by torch.randn).
 *
 * Contract: sd_rng_randn(r, out, n) writes what
 *     torch.randn(shape, generator=g, dtype=torch.float32)
 * returns for any shape with n elements, and leaves r in the state g is in
 * afterwards, so a sequence of calls reproduces a sequence of torch.randn
 * calls on one generator (diffusers' randn_tensor on a CPU generator).
 * Values equal torch's x86-64 AVX2/AVX-512 kernels bit for bit (checked
 * against torch 2.5.1); torch on CPUs without AVX2 (or other architectures)
 * differs by about an ulp for tensors of >= 16 elements (sd-reference §5.11).
 * No allocation; the struct may live on the stack.
 */
#ifndef SDRT_RNG_H
#define SDRT_RNG_H

#include <stdbool.h>
#include <stdint.h>

#define SD_RNG_MT_N 624

struct sd_rng {
    uint32_t mt[SD_RNG_MT_N]; /* MT19937 state */
    int mti;                  /* next state index; SD_RNG_MT_N = regenerate */
    bool has_next_normal;     /* torch caches the second Box-Muller value of its */
    double next_normal;       /* double-precision path (tensors of < 16 floats) */
};

/* Seeds like manual_seed(seed): MT19937 init_genrand with the low 32 bits,
 * and the cached normal cleared. */
void sd_rng_seed(struct sd_rng *r, uint64_t seed);

/* Next raw 32-bit MT19937 output. */
uint32_t sd_rng_u32(struct sd_rng *r);

/* One torch.randn call producing n float32 values (n >= 0). */
void sd_rng_randn(struct sd_rng *r, float *out, int64_t n);

#endif
