/* test_png.c - PNG writing/reading round trips, every colour type read back
 * against values computed here (test PNGs are written with libpng directly),
 * the parameters text chunk (tEXt vs iTXt), and each error case. */
#include <png.h>
#include <sys/stat.h>
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
    rc = sd_png_read(&ctx, p, &back, &bw, &bh);
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
    int rc = sd_png_read(&ctx, tpath("g8.png"), &img, &iw, &ih);
    CHECK(rc == SD_OK && iw == 3 && ih == 2 && all_close(img, want, 18, 1e-6f), "gray 8-bit -> R=G=B");
    free(img);
    /* gray + alpha: alpha dropped */
    uint8_t ga[12] = {0, 0, 51, 255, 102, 10, 153, 0, 204, 128, 255, 255};
    write_raw(tpath("ga.png"), w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("ga.png"), &img, &iw, &ih);
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
    rc = sd_png_read(&ctx, tpath("rgba.png"), &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "RGBA 8-bit: alpha dropped (even alpha 0 keeps its colour)");
    free(img);
    /* interlaced RGB */
    uint8_t rgb[18];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) rgb[i * 3 + c] = rgba[i * 4 + c];
    write_raw(tpath("adam7.png"), w, h, PNG_COLOR_TYPE_RGB, 8, rgb, PNG_INTERLACE_ADAM7, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("adam7.png"), &img, &iw, &ih);
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
    rc = sd_png_read(&ctx, tpath("rgb16.png"), &img, &iw, &ih);
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
    rc = sd_png_read(&ctx, tpath("pal.png"), &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "palette + tRNS -> palette colours");
    free(img);
    /* 1-bit gray: 0 -> -1, 1 -> +1 */
    uint8_t g1[2] = {0xA0, 0x40}; /* row 0: 1 0 1, row 1: 0 1 0 */
    const float b1[6] = {1, -1, 1, -1, 1, -1};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < n; i++) want[c * n + i] = b1[i];
    write_raw(tpath("g1.png"), w, h, PNG_COLOR_TYPE_GRAY, 1, g1, PNG_INTERLACE_NONE, NULL, 0, NULL, 0);
    rc = sd_png_read(&ctx, tpath("g1.png"), &img, &iw, &ih);
    CHECK(rc == SD_OK && all_close(img, want, 18, 1e-6f), "1-bit gray expands to 0/255");
    free(img);

    /* masks */
    float *m = NULL;
    rc = sd_png_read_mask(&ctx, tpath("g8.png"), &m, &iw, &ih);
    float mw[6];
    for (int i = 0; i < n; i++) mw[i] = g8[i] / 255.0f;
    CHECK(rc == SD_OK && iw == 3 && ih == 2 && all_close(m, mw, 6, 1e-6f), "gray mask -> [0,1], white = 1");
    free(m);
    rc = sd_png_read_mask(&ctx, tpath("rgba.png"), &m, &iw, &ih);
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
    int rc = sd_png_read(&ctx, tpath("missing.png"), &img, &w, &h);
    CHECK(rc == SD_ERR_IO && strstr(ctx.msg, "missing.png") && strstr(ctx.msg, "No such file"),
          "missing file: %s", ctx.msg);
    FILE *f = fopen(tpath("text.png"), "w");
    fputs("this is not an image, just text\n", f);
    fclose(f);
    rc = sd_png_read(&ctx, tpath("text.png"), &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "not a PNG"), "not a PNG: %s", ctx.msg);
    f = fopen(tpath("short.png"), "w");
    fputs("\x89PN", f);
    fclose(f);
    rc = sd_png_read(&ctx, tpath("short.png"), &img, &w, &h);
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
    rc = sd_png_read(&ctx, tpath("trunc.png"), &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "truncated or corrupt") && img == NULL, "truncated PNG: %s", ctx.msg);
    /* flipped byte inside IDAT data: CRC error */
    raw[n / 2] ^= 0x55;
    f = fopen(tpath("crc.png"), "wb");
    fwrite(raw, 1, n, f);
    fclose(f);
    free(raw);
    rc = sd_png_read(&ctx, tpath("crc.png"), &img, &w, &h);
    CHECK(rc == SD_ERR_FORMAT && strstr(ctx.msg, "corrupt"), "corrupt IDAT: %s", ctx.msg);
    rc = sd_png_read_mask(&ctx, tpath("trunc.png"), &img, &w, &h);
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
    cleanup();
    return test_summary();
}
