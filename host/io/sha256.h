/* sha256.h - SHA-256 (FIPS 180-4), for A1111's LoRA hashes. */
#ifndef SDRT_SHA256_H
#define SDRT_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sd_sha256 {
    uint32_t h[8];
    uint64_t len;        /* bytes hashed so far */
    unsigned char buf[64];
    size_t n;            /* bytes in buf */
};

void sd_sha256_init(struct sd_sha256 *s);
void sd_sha256_update(struct sd_sha256 *s, const void *data, size_t n);
void sd_sha256_final(struct sd_sha256 *s, unsigned char out[32]);
/* Lowercase hex digest of data[0..n) into hex[65]. */
void sd_sha256_hex(const void *data, size_t n, char hex[65]);

#endif
