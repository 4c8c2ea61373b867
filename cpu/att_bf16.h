/* att_bf16.h - bf16 tiles of the CPU flash attention (att_bf16.c; layouts
 * and contract there). Compiled where gcc/clang target x86-64 (the kernels
 * carry their own target attribute; sd_att_bf16_ok checks the CPU at run
 * time), absent elsewhere (SD_ATT_BF16 0). */
#ifndef SDRT_ATT_BF16_H
#define SDRT_ATT_BF16_H

#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define SD_ATT_BF16 1
/* This CPU runs avx512_bf16 and the head dims are even. */
int sd_att_bf16_ok(int64_t d, int64_t dv);
/* Qb [nq][d/2] pairs of q rows (row stride ldq) times scale. */
void sd_att_pack_q(const float *q, int64_t ldq, int64_t nq, int64_t d, float scale, uint32_t *Qb);
/* One head's K (Lk rows, stride ldk) into Kb [d/2][Lk] pairs and V (stride
 * ldv) into Vb [(Lk+1)/2][dv] pairs. */
void sd_att_pack_kv(const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t Lk, int64_t d, int64_t dv,
                    uint32_t *Kb, uint32_t *Vb);
/* S [nq][nk] = Qb . K[j0, j0+nk)^T, f32. */
void sd_att_qk(const uint32_t *Qb, int64_t nq, int64_t d, const uint32_t *Kb, int64_t Lk, int64_t j0, int64_t nk,
               float *S);
/* O [nq][dv] += P . V[j0, j0+nk) with P = S rounded to bf16 (S is
 * overwritten with the pairs); j0 even. */
void sd_att_pv(float *S, int64_t nq, int64_t nk, const uint32_t *Vb, int64_t dv, int64_t j0, float *O);
#else
#define SD_ATT_BF16 0
#endif

#endif
