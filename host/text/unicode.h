/* unicode.h - the little Unicode the tokenizer needs: UTF-8, character
 * classes, Python's str.lower(), and NFC.
 *
 * Contract: every answer equals what CPython's `unicodedata` / `str` methods
 * give on the Python that generated build/gen/unicode_tables.h (see
 * host/gen_unicode.py; SD_UC_UNIDATA_VERSION names the Unicode version).
 * Code points are uint32_t; nothing here allocates; all functions are pure
 * and thread-safe.
 */
#ifndef SDRT_UNICODE_H
#define SDRT_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Class bits of sd_unicode_class. */
enum {
    SD_UC_LETTER = 1,      /* general category L* */
    SD_UC_NUMBER = 2,      /* N* */
    SD_UC_OTHER = 4,       /* C*: Cc, Cf, Cs, Co and unassigned Cn */
    SD_UC_ZS = 8,          /* Zs (space separators) */
    SD_UC_SPACE = 16,      /* Python str.isspace() */
    SD_UC_CASED = 32,      /* Cased, as str.lower()'s final-sigma rule sees it */
    SD_UC_CASE_IGN = 64,   /* Case_Ignorable, likewise */
};

/* Class bits of cp (0 for cp > 0x10FFFF). */
unsigned sd_unicode_class(uint32_t cp);

/* Decodes s[0..len) into out (room for len code points) and returns the
 * count. Malformed UTF-8 (bad lead/continuation bytes, overlongs, surrogates,
 * > U+10FFFF, truncated sequences) yields one U+FFFD per maximal invalid
 * prefix, as Python's bytes.decode("utf-8", "replace") does. */
size_t sd_unicode_utf8_decode(const char *s, size_t len, uint32_t *out);

/* Writes cp as UTF-8 into out (room for 4 bytes); returns the byte count. */
int sd_unicode_utf8_encode(uint32_t cp, char *out);

/* Python's str.lower() of in[0..n) into out (room for 3*n code points: a code
 * point lowers to at most 3); returns the output count. Includes the
 * final-sigma rule for U+03A3 (context = the whole of in). */
size_t sd_unicode_lower(const uint32_t *in, size_t n, uint32_t *out);

/* unicodedata.normalize("NFC", in[0..n)) into out (room for 4*n code points,
 * the worst-case canonical expansion before recomposition); returns the
 * output count (<= 4*n; in practice <= n for most text). */
size_t sd_unicode_nfc(const uint32_t *in, size_t n, uint32_t *out);

/* The Unicode version the tables come from ("14.0.0"). */
const char *sd_unicode_version(void);

#endif
