/* base64.c - RFC 4648 base64 for images in JSON bodies (srv.h). Decoding
 * accepts padding or none and skips whitespace (clients wrap lines);
 * anything else is an error. */
#include "srv.h"

#include <stdlib.h>

static const char enc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *b64_encode(const uint8_t *d, size_t n, size_t *out_len) {
    size_t m = (n + 2) / 3 * 4;
    char *o = malloc(m + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        o[k++] = enc[v >> 18 & 63];
        o[k++] = enc[v >> 12 & 63];
        o[k++] = i + 1 < n ? enc[v >> 6 & 63] : '=';
        o[k++] = i + 2 < n ? enc[v & 63] : '=';
    }
    o[k] = 0;
    if (out_len) *out_len = k;
    return o;
}

static int val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

uint8_t *b64_decode(const char *s, size_t n, size_t *out_len) {
    uint8_t *o = malloc(n / 4 * 3 + 3);
    if (!o) return NULL;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') { pad++; continue; }
        int v = val(c);
        if (v < 0 || pad) { free(o); return NULL; } /* a digit after padding */
        acc = acc << 6 | (uint32_t)v;
        bits += 6, digits++;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    /* A lone digit (6 bits) is not a byte; padding makes whole quads. */
    if (digits % 4 == 1 || pad > 2 || (pad && (digits + pad) % 4)) { free(o); return NULL; }
    *out_len = k;
    return o;
}
