/* test_png.c - PNG writing/reading round trips, every colour type read back
 * against values computed here (test PNGs are written with libpng directly),
 * the parameters text chunk (tEXt vs iTXt; zTXt and compressed iTXt written
 * by libpng), each error case, and the limits on untrusted input: a 96-byte
 * PNG whose chunk says 2 GB is refused at once without allocating, an image
 * above the caller's maximum side is refused before decoding, oversized
 * ancillary chunks and zlib bombs in text chunks are refused. */
#include <png.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>
#include <unistd.h>
#include <dirent.h>

#include "png_io.h"
#include "test.h"

static char dir[64];

static const char *tpath(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Writes a PNG with libpng directly: rows of `ch` samples of `bits`. */
static void write_raw(const char *path, int w, int h, int color, int bits, const uint8_t *data, int interlace,
                      const png_color *pal, int npal, const uint8_t *trns, int ntrns) {
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, bits, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    int ch = color == PNG_COLOR_TYPE_RGB ? 3 : color == PNG_COLOR_TYPE_RGBA ? 4 : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t rowbytes = ((size_t)w * ch * bits + 7) / 8;
    png_bytep *rows = malloc(sizeof *rows * h);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)data + y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *slurp(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    *n = file_size(path);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != (size_t)*n) *n = 0;
    fclose(f);
    return b;
}

static bool has_chunk(const char *path, const char *type) {
    long n;
    unsigned char *b = slurp(path, &n);
    bool found = false;
    for (long p = 8; p + 8 <= n;) {
        uint32_t len = (uint32_t)b[p] << 24 | b[p + 1] << 16 | b[p + 2] << 8 | b[p + 3];
        if (!memcmp(b + p + 4, type, 4)) found = true;
        p += 12 + (long)len;
    }
    free(b);
    return found;
}

static int count_tmp_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}


/* Bytes as a PNG chunk (length, type, data, CRC) appended at out; returns the size. */
static size_t put_chunk(uint8_t *out, const char *type, const void *data, uint32_t len, uint32_t say_len) {
    out[0] = (uint8_t)(say_len >> 24), out[1] = (uint8_t)(say_len >> 16), out[2] = (uint8_t)(say_len >> 8);
    out[3] = (uint8_t)say_len;
    memcpy(out + 4, type, 4);
    if (len && (const uint8_t *)data != out + 8) memcpy(out + 8, data, len);
    uint32_t crc = (uint32_t)crc32(0, out + 4, 4 + len);
    out[8 + len] = (uint8_t)(crc >> 24), out[9 + len] = (uint8_t)(crc >> 16), out[10 + len] = (uint8_t)(crc >> 8);
    out[11 + len] = (uint8_t)crc;
    return 12 + len;
}

static size_t put_ihdr(uint8_t *out, uint32_t w, uint32_t h, int bits, int color) {
    uint8_t d[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                     (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                     (uint8_t)bits, (uint8_t)color, 0, 0, 0};
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    return 8 + put_chunk(out + 8, "IHDR", d, 13, 13);
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static long peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Untrusted input: sizes in headers are not believed. */
static void test_limits(void) {
    struct sd_ctx ctx = {0};
    uint8_t b[200];
    float *img = NULL;
    int w, h;
    /* 96 bytes: signature, IHDR 8x8 RGB, then a text (or sPLT, ICC, IDAT)
     * chunk whose length field says 2^31 - 16 bytes. libpng 1.6.39 alone
     * allocated and zeroed 2 GiB for tEXt/zTXt/iTXt/sPLT here (2-5 s). */
    static const char *types[] = {"tEXt", "zTXt", "iTXt", "sPLT", "iCCP", "IDAT"};
    for (int k = 0; k < 6; k++) {
        memset(b, 0, sizeof b);
        size_t n = put_ihdr(b, 8, 8, 8, 2);
        n += put_chunk(b + n, types[k], "parameters\0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 43, 0x7FFFFFF0u);
        n = 96;
        write_bytes(tpath("huge_len.png"), b, n);
        long rss0 = peak_rss_kb();
        double t0 = now_s();
        int rc = sd_png_read(&ctx, tpath("huge_len.png"), 4096, &img, &w, &h);
        double t1 = now_s();
        char msg[256];
        snprintf(msg, sizeof msg, "%s", ctx.msg);
        char *txt = NULL;
        int rc2 = sd_png_read_text(&ctx, tpath("huge_len.png"), "parameters", &txt);
        double t2 = now_s();
        long grown = peak_rss_kb() - rss0;
        CHECK(rc == SD_ERR_FORMAT && rc2 == SD_ERR_FORMAT && img == NULL && txt == NULL &&
                  strstr(msg, "says 2147483632 bytes but the file has") && t1 - t0 < 0.05 && t2 - t1 < 0.05 &&
                  grown < 4096,
              "96-byte PNG with a 2 GB %s length: image and text readers refuse it in %.2g + %.2g ms, peak RSS +%ld KiB: %s",
              types[k], (t1 - t0) * 1e3, (t2 - t1) * 1e3, grown, msg);
    }
    /* The same from memory. */
    int rc = sd_png_read_mem(&ctx, "upload", b, 96, 4096, &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "'upload'") && strstr(ctx.msg, "file has"),
          "from memory too: %s", ctx.msg);

    /* A header saying 100000 x 100000 (tiny file): refused from the header. */
    size_t n = put_ihdr(b, 100000, 100000, 16, 6);
    n += put_chunk(b + n, "IDAT", "\x78\x9c\x03\x00\x00\x00\x00\x01", 8, 8);
    n += put_chunk(b + n, "IEND", NULL, 0, 0);
    write_bytes(tpath("huge_dims.png"), b, n);
    long rss0 = peak_rss_kb();
    double t0 = now_s();
    rc = sd_png_read(&ctx, tpath("huge_dims.png"), 4096, &img, &w, &h);
    double t1 = now_s();
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "100000x100000, larger than the 4096x4096") && img == NULL && t1 - t0 < 0.05 && peak_rss_kb() - rss0 < 4096,
          "%zu-byte PNG saying 100000x100000 16-bit RGBA refused in %.2g ms: %s", n, (t1 - t0) * 1e3, ctx.msg);

    /* A real image one pixel over the caller's maximum: refused before decoding. */
    uint8_t *rgb = calloc(65 * 8 * 3, 1);
    write_raw(tpath("wide.png"), 65, 8, PNG_COLOR_TYPE_RGB, 8, rgb, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    write_raw(tpath("tall.png"), 8, 65, PNG_COLOR_TYPE_RGB, 8, rgb, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("wide.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_INVALID && img == NULL && strstr(ctx.msg, "65x8, larger than the 64x64 allowed"),
          "65x8 PNG with maximum side 64 refused: %s", ctx.msg);
    rc = sd_png_read_mask(&ctx, tpath("tall.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_INVALID && img == NULL && strstr(ctx.msg, "8x65, larger than the 64x64 allowed"),
          "8x65 mask with maximum side 64 refused: %s", ctx.msg);
    rc = sd_png_read(&ctx, tpath("wide.png"), 65, &img, &w, &h);
    CHECK(rc == SD_OK && w == 65 && h == 8, "the same 65x8 PNG with maximum side 65 reads");
    free(img), img = NULL;
    rc = sd_png_read(&ctx, tpath("wide.png"), 0, &img, &w, &h);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "maximum side 0"), "maximum side 0 is a caller error: %s", ctx.msg);
    free(rgb);

    /* An ancillary chunk really 9 MiB long: over the 8 MiB cap. */
    size_t big = 9u << 20;
    uint8_t *f = calloc(big + 200, 1);
    n = put_ihdr(f, 1, 1, 8, 0);
    memcpy(f + n + 8, "parameters", 10);
    n += put_chunk(f + n, "tEXt", f + n + 8, (uint32_t)big, (uint32_t)big);
    n += put_chunk(f + n, "IDAT", "\x78\x9c\x63\x60\x00\x00\x00\x02\x00\x01", 10, 10);
    n += put_chunk(f + n, "IEND", NULL, 0, 0);
    rc = sd_png_read_mem(&ctx, "big-text", f, n, 64, &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "tEXt' of 9437184 bytes is larger than the 8388608 allowed"),
          "9 MiB tEXt chunk refused: %s", ctx.msg);
    /* zlib bomb: a zTXt of ~10 KiB inflating to 10 MiB: text reader refuses it. */
    uLong raw = 10u << 20, zcap = compressBound(raw);
    uint8_t *zeros = calloc(raw, 1), *z = malloc(zcap + 16);
    memcpy(z, "parameters\0\0", 12);
    uLongf zlen = zcap;
    compress(z + 12, &zlen, zeros, raw);
    n = put_ihdr(f, 1, 1, 8, 0);
    n += put_chunk(f + n, "zTXt", z, (uint32_t)zlen + 12, (uint32_t)zlen + 12);
    n += put_chunk(f + n, "IDAT", "\x78\x9c\x63\x60\x00\x00\x00\x02\x00\x01", 10, 10);
    n += put_chunk(f + n, "IEND", NULL, 0, 0);
    char *txt = NULL;
    rc = sd_png_read_text_mem(&ctx, "bomb", f, n, "parameters", &txt);
    CHECK(rc == SD_ERR_FORMAT && txt == NULL && strstr(ctx.msg, "malformed zTXt"),
          "%lu-byte zTXt inflating to 10 MiB refused by the text reader: %s", (unsigned long)zlen, ctx.msg);
    rc = sd_png_read_mem(&ctx, "bomb", f, n, 64, &img, &w, &h);
    CHECK(rc == SD_OK && w == 1 && h == 1, "the image reader ignores the bomb (libpng's chunk limit drops it)");
    free(img), img = NULL;
    free(zeros), free(z), free(f);
}

/* zTXt and compressed iTXt (written by libpng) read back through the reader's own text parser. */
static void test_text_kinds(void) {
    struct sd_ctx ctx = {0};
    static const struct { int comp; const char *text, *name; } k[] = {
        {PNG_TEXT_COMPRESSION_zTXt, "caf\xe9 zTXt Latin-1", "zTXt"},
        {PNG_ITXT_COMPRESSION_zTXt, "\xe7\x8c\xab compressed iTXt", "compressed iTXt"},
    };
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(tpath("text.png"), "wb");
        png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
        png_infop info = png_create_info_struct(png);
        png_init_io(png, f);
        png_set_IHDR(png, info, 1, 1, 8, PNG_COLOR_TYPE_GRAY, 0, 0, 0);
        png_text t[2];
        memset(t, 0, sizeof t);
        t[0].key = (png_charp) "Software", t[0].text = (png_charp) "x", t[0].compression = PNG_TEXT_COMPRESSION_NONE;
        t[1].key = (png_charp) "parameters", t[1].text = (png_charp)k[i].text, t[1].compression = k[i].comp;
        png_set_text(png, info, t, 2);
        png_write_info(png, info);
        uint8_t row[1] = {7};
        png_write_row(png, row);
        png_write_end(png, info);
        png_destroy_write_struct(&png, &info);
        fclose(f);
        char *txt = NULL;
        int rc = sd_png_read_text(&ctx, tpath("text.png"), "parameters", &txt);
        const char *want = i == 0 ? "caf\xc3\xa9 zTXt Latin-1" : k[i].text;
        CHECK(rc == SD_OK && txt && !strcmp(txt, want), "%s parameters read back as UTF-8 (%s)", k[i].name, ctx.msg);
        free(txt);
    }
}

static void test_postprocess(void) {
    /* x -> rint(clamp(x/2 + 0.5, 0, 1) * 255), half to even (numpy round) */
    const float x[8] = {-1.0f, 1.0f, 0.0f, -3.0f, 2.0f, NAN, 0.5f, -0.25f};
    const uint8_t ref[8] = {0, 255, 128, 0, 255, 0, 191, 96}; /* 127.5->128, 191.25->191, 95.625->96 */
    float chw[24];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 8; i++) chw[c * 8 + i] = x[i];
    uint8_t rgb[24];
    sd_image_to_rgb8(chw, 8, 1, rgb);
    int bad = 0;
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 3; c++) bad += rgb[i * 3 + c] != ref[i];
    CHECK(!bad, "postprocess: -1->0, 1->255, 0->128 (127.5 half-even), clamps, NaN->0, interleaves planes");
}

static void test_round_trip(void) {
    struct sd_ctx ctx = {0};
    const int w = 13, h = 7;
    float img[3 * 13 * 7];
    fill_random(img, 3 * w * h, 11);
    const char *p = tpath("rt.png");
    const char *params = "a photo of a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1";
    int rc = sd_png_write(&ctx, p, img, w, h, params);
    CHECK(rc == SD_OK, "write %dx%d PNG with parameters (%s)", w, h, ctx.msg);
    float *back = NULL;
    int bw = 0, bh = 0;
    rc = sd_png_read(&ctx, p, 64, &back, &bw, &bh);
    double mx = 0;
    int bad = rc != SD_OK || bw != w || bh != h;
    for (int i = 0; !bad && i < 3 * w * h; i++) {
        /* independent: quantise in double, round half to even */
        double v = fmin(fmax((double)img[i] / 2 + 0.5, 0), 1) * 255;
        double q = nearbyint(v) / 255.0 * 2 - 1;
        mx = fmax(mx, fabs(back[i] - q));
        if (fabs(back[i] - q) > 1e-6) bad++;
    }
    CHECK(!bad, "read back = 8-bit quantised input, planar [-1,1] (max diff %.2g)", mx);
    free(back);
    char *txt = NULL;
    rc = sd_png_read_text(&ctx, p, "parameters", &txt);
    CHECK(rc == SD_OK && txt && !strcmp(txt, params) && has_chunk(p, "tEXt") && !has_chunk(p, "iTXt"),
          "ASCII parameters stored as tEXt and read back");
    free(txt);
    CHECK(count_tmp_files() == 0 && (file_size(p) > 0), "no temporary file left behind");
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644, "written file has mode 0644 (%o)", st.st_mode & 0777);

    const char *latin = "caf\xc3\xa9 \xc3\xbc\xc3\x9f, (Stra\xc3\x9f" "e:1.2)";
    p = tpath("latin1.png");
    rc = sd_png_write(&ctx, p, img, w, h, latin);
    txt = NULL;
    rc |= sd_png_read_text(&ctx, p, "parameters", &txt);
    long n;
    unsigned char *raw = slurp(p, &n);
    bool latin_bytes = false;
    for (long i = 0; i + 7 <= n; i++) latin_bytes |= !memcmp(raw + i, "caf\xe9 \xfc\xdf", 7);
    free(raw);
    CHECK(rc == SD_OK && txt && !strcmp(txt, latin) && has_chunk(p, "tEXt") && latin_bytes,
          "Latin-1 parameters stored as tEXt in Latin-1 bytes, read back as UTF-8");
    free(txt);

    const char *cjk = "\xe7\x8c\xab, masterpiece \xf0\x9f\x98\x80";
    p = tpath("utf8.png");
    rc = sd_png_write(&ctx, p, img, w, h, cjk);
    txt = NULL;
    rc |= sd_png_read_text(&ctx, p, "parameters", &txt);
    CHECK(rc == SD_OK && txt && !strcmp(txt, cjk) && has_chunk(p, "iTXt") && !has_chunk(p, "tEXt"),
          "non-Latin-1 parameters stored as iTXt (UTF-8) and read back");
    free(txt);
    rc = sd_png_read_text(&ctx, p, "Software", &txt);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "no 'Software' text chunk"), "missing text key: %s", ctx.msg);
    rc = sd_png_write(&ctx, tpath("bad.png"), img, w, h, "bad \xff utf8");
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "UTF-8") && file_size(tpath("bad.png")) < 0 && count_tmp_files() == 0,
          "invalid UTF-8 parameters rejected without leaving a file: %s", ctx.msg);
    rc = sd_png_write(&ctx, tpath("none.png"), img, w, h, NULL);
    CHECK(rc == SD_OK && !has_chunk(tpath("none.png"), "tEXt") && !has_chunk(tpath("none.png"), "iTXt"),
          "NULL parameters: no text chunk");
}

static bool all_close(const float *a, const float *b, int n, float tol) {
    for (int i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > tol) {
            printf("  [%d] got %.6f want %.6f\n", i, a[i], b[i]);
            return false;
        }
    return true;
}

static void test_formats(void) {
    struct sd_ctx ctx = {0};
    const int w = 3, h = 2, n = w * h;
    float *img = NULL, want[18];
    int iw, ih;
    /* gray 8 */
    uint8_t g8[6] = {0, 51, 102, 153, 204, 255};
    write_raw(tpath("g8.png"), w, h, PNG_COLOR_TYPE_GRAY, 8, g8, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < n; i++) want[c * n + i] = g8[i] / 255.0f * 2 - 1;
    int rc = sd_png_read(&ctx, tpath("g8.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && iw == 3 && ih == 2 && all_close(img, want, 18, 1e-6f), "gray 8-bit -> R=G=B");
    free(img);
    /* gray + alpha: alpha dropped */
    uint8_t ga[12] = {0, 0, 51, 255, 102, 10, 153, 0, 204, 128, 255, 255};
    write_raw(tpath("ga.png"), w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("ga.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "gray+alpha: alpha dropped, not composited");
    free(img);
    /* RGBA */
    uint8_t rgba[24];
    for (int i = 0; i < n; i++) {
        rgba[i * 4] = (uint8_t)(i * 40), rgba[i * 4 + 1] = (uint8_t)(250 - i * 30), rgba[i * 4 + 2] = (uint8_t)(i * 7);
        rgba[i * 4 + 3] = (uint8_t)(i * 50);
        for (int c = 0; c < 3; c++) want[c * n + i] = rgba[i * 4 + c] / 255.0f * 2 - 1;
    }
    write_raw(tpath("rgba.png"), w, h, PNG_COLOR_TYPE_RGBA, 8, rgba, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("rgba.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "RGBA 8-bit: alpha dropped (even alpha 0 keeps its colour)");
    free(img);
    /* interlaced RGB */
    uint8_t rgb[18];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) rgb[i * 3 + c] = rgba[i * 4 + c];
    write_raw(tpath("adam7.png"), w, h, PNG_COLOR_TYPE_RGB, 8, rgb, PNG_INTERLACE_ADAM7, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("adam7.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "interlaced (Adam7) RGB");
    free(img);
    /* 16-bit RGB keeps full precision */
    uint8_t r16[36];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            unsigned v = (unsigned)(i * 10007 + c * 3001 + 1) & 0xFFFF;
            r16[(i * 3 + c) * 2] = (uint8_t)(v >> 8), r16[(i * 3 + c) * 2 + 1] = (uint8_t)v;
            want[c * n + i] = (float)(v / 65535.0 * 2 - 1);
        }
    write_raw(tpath("rgb16.png"), w, h, PNG_COLOR_TYPE_RGB, 16, r16, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("rgb16.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 2e-7f), "16-bit RGB read as v/65535 (no 8-bit reduction)");
    free(img);
    /* palette with tRNS */
    png_color pal[3] = {{255, 0, 0}, {0, 128, 255}, {10, 20, 30}};
    uint8_t trns[3] = {0, 255, 128};
    uint8_t idx[6] = {0, 1, 2, 2, 1, 0};
    for (int i = 0; i < n; i++) {
        want[i] = pal[idx[i]].red / 255.0f * 2 - 1;
        want[n + i] = pal[idx[i]].green / 255.0f * 2 - 1;
        want[2 * n + i] = pal[idx[i]].blue / 255.0f * 2 - 1;
    }
    write_raw(tpath("pal.png"), w, h, PNG_COLOR_TYPE_PALETTE, 8, idx, PNG_INTERLACE_NONE, pal, 3, trns, 3);
    rc = sd_png_read(&ctx, tpath("pal.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "palette + tRNS -> palette colours");
    free(img);
    /* 1-bit gray: 0 -> -1, 1 -> +1 */
    uint8_t g1[2] = {0xA0, 0x40}; /* row 0: 1 0 1, row 1: 0 1 0 */
    const float b1[6] = {1, -1, 1, -1, 1, -1};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < n; i++) want[c * n + i] = b1[i];
    write_raw(tpath("g1.png"), w, h, PNG_COLOR_TYPE_GRAY, 1, g1, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("g1.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "1-bit gray expands to 0/255");
    free(img);

    /* 16-bit gray + alpha, interlaced: alpha dropped, full precision */
    uint8_t ga16[24];
    for (int i = 0; i < n; i++) {
        unsigned v = (unsigned)(i * 12345 + 77) & 0xFFFF, a = (unsigned)(i * 999);
        ga16[i * 4] = (uint8_t)(v >> 8), ga16[i * 4 + 1] = (uint8_t)v, ga16[i * 4 + 2] = (uint8_t)(a >> 8);
        ga16[i * 4 + 3] = (uint8_t)a;
        for (int c = 0; c < 3; c++) want[c * n + i] = (float)(v / 65535.0 * 2 - 1);
    }
    write_raw(tpath("ga16.png"), w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 16, ga16, PNG_INTERLACE_ADAM7, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("ga16.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 2e-7f), "16-bit gray+alpha interlaced -> R=G=B = v/65535");
    free(img);
    /* 4-bit palette, interlaced, no tRNS */
    uint8_t p4[4] = {0x01, 0x20, 0x12, 0x00}; /* rows of 3 nibbles padded: 0 1 2 | 1 2 0 */
    const int pi4[6] = {0, 1, 2, 1, 2, 0};
    for (int i = 0; i < n; i++) {
        want[i] = pal[pi4[i]].red / 255.0f * 2 - 1;
        want[n + i] = pal[pi4[i]].green / 255.0f * 2 - 1;
        want[2 * n + i] = pal[pi4[i]].blue / 255.0f * 2 - 1;
    }
    write_raw(tpath("pal4.png"), w, h, PNG_COLOR_TYPE_PALETTE, 4, p4, PNG_INTERLACE_ADAM7, pal, 3, NULL, 0);
    rc = sd_png_read(&ctx, tpath("pal4.png"), 64, &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "4-bit palette, interlaced -> palette colours");
    free(img);
    /* memory reader = file reader */
    long nb;
    unsigned char *bytes = slurp(tpath("pal4.png"), &nb);
    float *img2 = NULL;
    rc = sd_png_read_mem(&ctx, "pal4", bytes, (size_t)nb, 64, &img2, &iw, &ih);
    CHECK(rc == SD_OK && iw == 3 && ih == 2 && all_close(img2, want, 18, 0), "sd_png_read_mem reads the same pixels");
    free(img2), free(bytes);

    /* masks */
    float *m = NULL;
    rc = sd_png_read_mask(&ctx, tpath("g8.png"), 64, &m, &iw, &ih);
    float mw[6];
    for (int i = 0; i < n; i++) mw[i] = g8[i] / 255.0f;
    CHECK(rc == SD_OK && iw == 3 && ih == 2 && all_close(m, mw, 6, 1e-6f), "gray mask -> [0,1], white = 1");
    free(m);
    rc = sd_png_read_mask(&ctx, tpath("rgba.png"), 64, &m, &iw, &ih);
    for (int i = 0; i < n; i++) {
        /* PIL convert("L"), ITU-R 601-2: L = R*299/1000 + G*587/1000 + B*114/1000 */
        double l = (rgba[i * 4] * 299 + rgba[i * 4 + 1] * 587 + rgba[i * 4 + 2] * 114) / 1000.0;
        mw[i] = (float)(floor(l + 0.5) / 255.0);
    }
    CHECK(rc == SD_OK && all_close(m, mw, 6, 1.0f / 255 + 1e-6f), "RGBA mask -> luma (alpha ignored)");
    free(m);
}

static void test_errors(void) {
    struct sd_ctx ctx = {0};
    float *img = NULL;
    int w, h;
    int rc = sd_png_read(&ctx, tpath("missing.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_IO && strstr(ctx.msg, "missing.png") && strstr(ctx.msg, "No such file"),
          "missing file: %s", ctx.msg);
    FILE *f = fopen(tpath("text.png"), "w");
    fputs("this is not an image, just text\n", f);
    fclose(f);
    rc = sd_png_read(&ctx, tpath("text.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "not a PNG"), "not a PNG: %s", ctx.msg);
    f = fopen(tpath("short.png"), "w");
    fputs("\x89PN", f);
    fclose(f);
    rc = sd_png_read(&ctx, tpath("short.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "not a PNG"), "3-byte file: %s", ctx.msg);
    /* truncated: a valid 64x64 noisy PNG cut in half */
    float big[3 * 64 * 64];
    fill_random(big, 3 * 64 * 64, 3);
    sd_png_write(&ctx, tpath("full.png"), big, 64, 64, "x");
    long n;
    unsigned char *raw = slurp(tpath("full.png"), &n);
    f = fopen(tpath("trunc.png"), "wb");
    fwrite(raw, 1, n / 2, f);
    fclose(f);
    rc = sd_png_read(&ctx, tpath("trunc.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "truncated or corrupt") && img == NULL, "truncated PNG: %s", ctx.msg);
    /* flipped byte inside IDAT data: CRC error */
    raw[n / 2] ^= 0x55;
    f = fopen(tpath("crc.png"), "wb");
    fwrite(raw, 1, n, f);
    fclose(f);
    free(raw);
    rc = sd_png_read(&ctx, tpath("crc.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "corrupt"), "corrupt IDAT: %s", ctx.msg);
    rc = sd_png_read_mask(&ctx, tpath("trunc.png"), 64, &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT, "truncated mask PNG reported");

    float small[12] = {0};
    rc = sd_png_write(&ctx, "/nonexistent-dir-sdrt/out.png", small, 2, 2, NULL);
    CHECK(rc == SD_ERR_IO && strstr(ctx.msg, "nonexistent-dir-sdrt/out.png") && strstr(ctx.msg, "directory"),
          "unwritable output directory: %s", ctx.msg);
    mkdir(tpath("adir.png"), 0755);
    rc = sd_png_write(&ctx, tpath("adir.png"), small, 2, 2, NULL);
    CHECK(rc == SD_ERR_IO && strstr(ctx.msg, "rename") && count_tmp_files() == 0,
          "target is a directory: error, temp file removed: %s", ctx.msg);
    rmdir(tpath("adir.png"));
    /* an existing file is kept intact when a write fails before the rename */
    sd_png_write(&ctx, tpath("keep.png"), small, 2, 2, NULL);
    long before = file_size(tpath("keep.png"));
    rc = sd_png_write(&ctx, tpath("keep.png"), small, 2, 2, "\xc3");
    CHECK(rc == SD_ERR_INVALID && file_size(tpath("keep.png")) == before, "failed write leaves the old file intact");
    rc = sd_png_write(&ctx, tpath("zero.png"), small, 0, 2, NULL);
    CHECK(rc == SD_ERR_INVALID && strstr(ctx.msg, "size"), "zero width rejected: %s", ctx.msg);
}

static void cleanup(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') unlink(tpath(e->d_name));
    if (d) closedir(d);
    rmdir(dir);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sdrt_test_png_XXXXXX");
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    test_postprocess();
    test_round_trip();
    test_formats();
    test_errors();
    test_limits();
    test_text_kinds();
    cleanup();
    return test_summary();
}
