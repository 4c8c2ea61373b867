/* test_cli.c - `sdrt txt2img | img2img | inpaint` as a user runs it.
 *
 * Runs the sdrt binary (fork/exec; $SDRT_BIN, else <dir of argv[0]>/../sdrt,
 * so build/tests/test_cli runs build/sdrt and build/asan/tests/test_cli runs
 * build/asan/sdrt) from the repository root, with stdout and stderr captured.
 *
 * Bad input: every case must exit with status 2 (usage or input error),
 * print one "sdrt: ..." line on stderr naming the problem, and leave no
 * output file (nor any temporary file) behind.
 * Success: txt2img on tests/models/tiny-sd1 writes a PNG whose pixels are
 * diffusers' image (tests/golden/pipeline.safetensors case t2i_euler_a)
 * within one 8-bit level, with the A1111 "parameters" text; --json prints
 * one valid JSON object per line (load, clip, every step, vae_decode, image,
 * done). img2img with --batch 2 writes out-0.png and out-1.png and reports
 * the vae_encode phase. With --json a bad input is also one error event on
 * stdout.
 * Options (getopt_long): "--steps=4" and "--steps 4" both work; an
 * abbreviation, a flag with a value, an option of another command, a bad
 * SDRT_* variable are usage errors. --device N runs on OpenCL device N
 * (PoCL here: diffusers' image rounded to 8 bits).
 * A batch that fails midway (--n-iter 2, the second image cannot be
 * written) exits 1, removes the image it had written, and says so.
 * `sdrt bench --json` prints one JSON object on stdout (the tables on
 * stderr): every timed run and its median per phase, per op and per backend.
 */
#include "json.h"
#include "png_io.h"
#include "safetensors.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MODEL "tests/models/tiny-sd1"
#define MODEL_INPAINT "tests/models/tiny-sd1-inpaint"

static char sdrt_bin[PATH_MAX];
static char tmp_dir[] = "/tmp/sdrt-test-cli-XXXXXX";

struct result {
    int status;          /* exit status, or -1 if it did not exit normally */
    char *out, *err;     /* captured stdout / stderr, NUL-terminated */
};

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return calloc(1, 1);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t k; (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (cap - n - 1 == 0) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Runs sdrt with args (NULL-terminated, without argv[0]). */
static struct result run(const char *const *args) {
    struct result r = {-1, NULL, NULL};
    char out_path[PATH_MAX], err_path[PATH_MAX];
    snprintf(out_path, sizeof out_path, "%s.stdout", tmp_dir);
    snprintf(err_path, sizeof err_path, "%s.stderr", tmp_dir);
    const char *argv[64] = {sdrt_bin};
    int n = 1;
    while (args[n - 1] && n < 63) argv[n] = args[n - 1], n++;
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(126);
        dup2(fo, 1), dup2(fe, 2);
        close(fo), close(fe);
        execv(sdrt_bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) r.status = WEXITSTATUS(st);
    r.out = read_file(out_path);
    r.err = read_file(err_path);
    unlink(out_path), unlink(err_path);
    return r;
}

static void result_free(struct result *r) {
    free(r->out);
    free(r->err);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries in the temporary directory (inputs the test made). */
static int dir_entries(void) {
    DIR *d = opendir(tmp_dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static void path_in(char *buf, size_t size, const char *name) { snprintf(buf, size, "%s/%s", tmp_dir, name); }

/* One bad-input case: exit status 2, stderr is "sdrt: <message>" containing
 * every string in `want` (NULL-terminated), and no new file appears. */
static void bad_input(const char *name, const char *const *args, const char *const *want, const char *output) {
    int before = dir_entries();
    struct result r = run(args);
    int ok = r.status == 2 && !strncmp(r.err, "sdrt: ", 6) && strchr(r.err, '\n') == r.err + strlen(r.err) - 1;
    for (int i = 0; want[i]; i++) ok &= strstr(r.err, want[i]) != NULL;
    int left = exists(output) || dir_entries() != before;
    if (ok && !left) test_ok("cli %s: exit 2, %.*s", name, (int)strcspn(r.err, "\n"), r.err);
    else test_fail("cli %s: exit %d (want 2), stderr '%.300s'%s", name, r.status, r.err,
                   left ? ", and a file was left behind" : "");
    result_free(&r);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_bad_inputs(void) {
    char out[PATH_MAX], init[PATH_MAX], init60[PATH_MAX], mask48[PATH_MAX], notpng[PATH_MAX], file[PATH_MAX],
        under_file[PATH_MAX], no_dir[PATH_MAX], no_model[PATH_MAX], no_init[PATH_MAX];
    path_in(out, sizeof out, "out.png");
    path_in(init, sizeof init, "init.png");
    path_in(init60, sizeof init60, "init60.png");
    path_in(mask48, sizeof mask48, "mask48.png");
    path_in(notpng, sizeof notpng, "notpng.png");
    path_in(file, sizeof file, "afile");
    path_in(under_file, sizeof under_file, "afile/out.png");
    path_in(no_dir, sizeof no_dir, "nodir/out.png");
    path_in(no_model, sizeof no_model, "no-such-model.safetensors");
    path_in(no_init, sizeof no_init, "no-such-image.png");

    /* inputs: a 64x64 RGB image, a 60x60 one, a 64x48 mask, a text file */
    struct sd_ctx ctx = {0};
    uint8_t *rgb = malloc(64 * 64 * 3);
    for (int i = 0; i < 64 * 64 * 3; i++) rgb[i] = (uint8_t)(i * 37 + (i >> 7) * 11);
    int rc = sd_png_write_rgb8(&ctx, init, rgb, 64, 64, NULL) || sd_png_write_rgb8(&ctx, init60, rgb, 60, 60, NULL) ||
             sd_png_write_rgb8(&ctx, mask48, rgb, 64, 48, NULL);
    free(rgb);
    FILE *f = fopen(notpng, "w");
    if (f) fputs("this is not a PNG file\n", f), fclose(f);
    f = fopen(file, "w");
    if (f) fputs("a regular file\n", f), fclose(f);
    if (rc || !exists(notpng) || !exists(file)) { test_fail("cli: cannot make the input files: %s", ctx.msg); return; }

#define T2I "txt2img", "--model", MODEL, "--prompt", "a cat", "--width", "64", "--height", "64", "--steps", "2", "-q"
#define I2I "img2img", "--model", MODEL, "--prompt", "a cat", "--steps", "2", "-q"
    bad_input("unknown sampler", ARGS(T2I, "--sampler", "Euler b", "-o", out),
              ARGS("unknown sampler 'Euler b'", "valid names", "Euler a", "DPM++ 2M Karras", "LCM"), out);
    bad_input("karras on a sampler without it", ARGS(T2I, "--sampler", "DDIM Karras", "-o", out), ARGS("Karras", "DDIM"), out);
    bad_input("width not a multiple of 8", ARGS(T2I, "--width", "60", "-o", out), ARGS("multiples of 8", "60x64"), out);
    bad_input("height not a multiple of 8", ARGS(T2I, "--height", "36", "-o", out), ARGS("multiples of 8", "64x36"), out);
    bad_input("zero width", ARGS(T2I, "--width", "0", "-o", out), ARGS("multiples of 8"), out);
    bad_input("strength 0", ARGS(I2I, "--init-image", init, "--strength", "0", "-o", out), ARGS("strength", "(0, 1]"), out);
    bad_input("strength 1.5", ARGS(I2I, "--init-image", init, "--strength", "1.5", "-o", out), ARGS("strength", "1.5"), out);
    bad_input("strength -0.5", ARGS(I2I, "--init-image", init, "--strength", "-0.5", "-o", out), ARGS("strength"), out);
    bad_input("strength nan", ARGS(I2I, "--init-image", init, "--strength", "nan", "-o", out), ARGS("strength"), out);
    bad_input("steps 0", ARGS(T2I, "--steps", "0", "-o", out), ARGS("steps", "got 0"), out);
    bad_input("steps -3", ARGS(T2I, "--steps", "-3", "-o", out), ARGS("steps", "got -3"), out);
    bad_input("steps beyond int", ARGS(T2I, "--steps", "4294967297", "-o", out), ARGS("--steps", "4294967297"), out);
    bad_input("steps abc", ARGS(T2I, "--steps", "abc", "-o", out), ARGS("--steps expects a number", "'abc'"), out);
    bad_input("cfg 1e9", ARGS(T2I, "--cfg-scale", "1e9", "-o", out), ARGS("cfg scale"), out);
    bad_input("clip skip -3", ARGS(T2I, "--clip-skip", "-3", "-o", out), ARGS("clip skip", "-3"), out);
    bad_input("clip skip beyond the layers", ARGS(T2I, "--clip-skip", "5", "-o", out), ARGS("clip skip 5", "3 layers"), out);
    bad_input("option without value", ARGS(T2I, "-o", out, "--steps"), ARGS("--steps needs a value"), out);
    bad_input("unknown option", ARGS(T2I, "-o", out, "--stepz", "3"), ARGS("unknown option --stepz"), out);
    bad_input("unknown option with =", ARGS(T2I, "-o", out, "--stepz=3"), ARGS("unknown option --stepz", "--help"), out);
    bad_input("abbreviated option", ARGS(T2I, "-o", out, "--step", "3"), ARGS("unknown option --step "), out);
    bad_input("unknown short option", ARGS(T2I, "-o", out, "-x"), ARGS("unknown option -x"), out);
    bad_input("value for a flag", ARGS(T2I, "-o", out, "--json=1"), ARGS("--json takes no value"), out);
    bad_input("empty value with =", ARGS(T2I, "-o", out, "--steps="), ARGS("--steps expects a number", "''"), out);
    bad_input("option of another command", ARGS(T2I, "-o", out, "--mask", mask48), ARGS("--mask is not an option of txt2img"),
              out);
    bad_input("unexpected argument", ARGS(T2I, "-o", out, "stray"), ARGS("unexpected argument 'stray'"), out);
    bad_input("--device without opencl", ARGS(T2I, "-o", out, "--device", "0"), ARGS("--device 0", "--backend opencl"), out);
    bad_input("--device out of range", ARGS(T2I, "-o", out, "--backend", "opencl", "--device", "99"),
              ARGS("--device 99", "no such OpenCL device"), out);
    bad_input("--device not a number", ARGS(T2I, "-o", out, "--backend", "opencl", "--device", "gpu"),
              ARGS("--device gpu", "device number"), out);
    bad_input("bad --precision", ARGS(T2I, "-o", out, "--precision", "fp8"), ARGS("--precision fp8", "auto, f32, bf16 or f16"), out);
    setenv("SDRT_CONV_ALGO", "fastest", 1);
    bad_input("bad SDRT_CONV_ALGO", ARGS(T2I, "-o", out), ARGS("SDRT_CONV_ALGO=fastest", "lowmem"), out);
    unsetenv("SDRT_CONV_ALGO");
    setenv("SDRT_CL_DEVICE", "7:7", 1);
    bad_input("bad SDRT_CL_DEVICE", ARGS(T2I, "-o", out), ARGS("SDRT_CL_DEVICE 7:7", "no such OpenCL device"), out);
    unsetenv("SDRT_CL_DEVICE");
    bad_input("missing --prompt", ARGS("txt2img", "--model", MODEL, "-o", out), ARGS("--prompt is required"), out);
    bad_input("missing --model", ARGS("txt2img", "--prompt", "x", "-o", out), ARGS("--model is required"), out);
    bad_input("missing model", ARGS("txt2img", "--model", no_model, "--prompt", "a cat", "-o", out),
              ARGS("model", no_model, "no such file"), out);
    bad_input("model is not a safetensors file", ARGS("txt2img", "--model", notpng, "--prompt", "a cat", "-o", out),
              ARGS(notpng), out);
    bad_input("output directory missing", ARGS(T2I, "-o", no_dir), ARGS("output directory", "does not exist"), no_dir);
    bad_input("output directory is a file", ARGS(T2I, "-o", under_file), ARGS("output directory", "not a directory"),
              under_file);
    bad_input("output under /etc/hostname", ARGS(T2I, "-o", "/etc/hostname/out.png"), ARGS("output directory /etc/hostname"),
              "/etc/hostname/out.png");
    bad_input("output is a directory", ARGS(T2I, "-o", tmp_dir), ARGS("output", tmp_dir, "is a directory"), out);
    bad_input("preview directory missing", ARGS(T2I, "-o", out, "--preview-every", "1", "--preview-dir", no_dir),
              ARGS("preview directory", "does not exist"), out);
    bad_input("--vae taesd without --taesd", ARGS(T2I, "-o", out, "--vae", "taesd"), ARGS("--vae taesd needs --taesd"), out);
    bad_input("--vae other", ARGS(T2I, "-o", out, "--vae", "tiny"), ARGS("--vae is full or taesd", "tiny"), out);
    bad_input("--taesd not a taesd", ARGS(T2I, "-o", out, "--taesd", notpng, "--vae", "taesd"), ARGS(notpng), out);
    bad_input("--memory-budget unit", ARGS(T2I, "-o", out, "--memory-budget", "4TB"), ARGS("--memory-budget", "4TB"), out);
    bad_input("--weight-cache-max", ARGS(T2I, "-o", out, "--weight-cache-max", "lots"),
              ARGS("--weight-cache-max=lots", "a size"), out);
    bad_input("--vae-tile not a multiple of 32", ARGS(T2I, "-o", out, "--vae-tile", "48"),
              ARGS("--vae-tile 48", "multiple of 32"), out);
    {
        struct result r = run(ARGS(T2I, "-o", out, "--json", "--width", "160", "--memory-budget", "1MiB", "--taesd",
                                   "tests/models/tiny-taesd", "--preview", "taesd", "--preview-every", "2",
                                   "--preview-dir", tmp_dir));
        CHECK(r.status == 0 && strstr(r.out, "\"phase\": \"vae_decode\"") && strstr(r.out, "\"tiled\": true") &&
                  strstr(r.out, "preview-002.png"),
              "cli --memory-budget 1MiB at 160x64: the VAE decode ran in tiles; --preview taesd wrote its preview");
        char pv[PATH_MAX];
        path_in(pv, sizeof pv, "preview-002.png");
        unlink(pv), unlink(out);
        result_free(&r);
        r = run(ARGS(T2I, "-o", out, "--json", "--taesd", "tests/models/tiny-taesd-raw/taesd_decoder.safetensors", "--vae",
                     "taesd"));
        CHECK(r.status == 0 && exists(out) && !strstr(r.out, "tiled"), "cli --vae taesd (original layout) wrote %s", out);
        unlink(out);
        result_free(&r);
        r = run(ARGS(T2I, "-o", out, "--precision", "f16"));
        CHECK(r.status == 0 && exists(out) && strstr(r.err, "precision f16 is for OpenCL devices"),
              "cli --precision f16 on the cpu alone: runs in f32 and says so");
        unlink(out);
        result_free(&r);
    }
    bad_input("img2img without --init-image", ARGS(I2I, "-o", out), ARGS("--init-image is required"), out);
    bad_input("unreadable init image", ARGS(I2I, "--init-image", no_init, "-o", out), ARGS("init image", no_init), out);
    bad_input("init image is a directory", ARGS(I2I, "--init-image", tmp_dir, "-o", out), ARGS("init image", "directory"), out);
    bad_input("non-PNG init image", ARGS(I2I, "--init-image", notpng, "-o", out), ARGS("init image", "not a PNG"), out);
    bad_input("init image not a multiple of 8", ARGS(I2I, "--init-image", init60, "-o", out),
              ARGS("init image", "60x60", "multiples of 8"), out);
    bad_input("init image vs --width", ARGS(I2I, "--init-image", init, "--width", "128", "-o", out),
              ARGS("init image", "64x64", "ask for 128x64"), out);
    bad_input("inpaint without --mask", ARGS("inpaint", "--model", MODEL_INPAINT, "--prompt", "x", "--init-image", init, "-o", out),
              ARGS("--mask is required"), out);
    bad_input("mask size mismatch",
              ARGS("inpaint", "--model", MODEL_INPAINT, "--prompt", "x", "--init-image", init, "--mask", mask48, "-o", out),
              ARGS("mask", "64x48", "64x64"), out);
    bad_input("non-PNG mask",
              ARGS("inpaint", "--model", MODEL_INPAINT, "--prompt", "x", "--init-image", init, "--mask", notpng, "-o", out),
              ARGS("mask", "not a PNG"), out);
    bad_input("inpainting model without a mask", ARGS("img2img", "--model", MODEL_INPAINT, "--prompt", "x", "--steps", "2",
                                                      "-q", "--init-image", init, "-o", out),
              ARGS("inpainting model"), out);
#undef T2I
#undef I2I
}

/* Splits r.out into lines and parses each as JSON; returns the number of
 * lines, all parsed into docs[] (NULL for a line that failed). */
static int json_lines(const char *text, struct sd_json **docs, int max, int *bad) {
    struct sd_ctx ctx = {0};
    int n = 0;
    *bad = 0;
    for (const char *p = text; *p && n < max;) {
        size_t len = strcspn(p, "\n");
        if (sd_json_parse(&ctx, p, len, &docs[n]) || sd_json_type(docs[n]) != SD_JSON_OBJ) {
            printf("  not a JSON object: '%.*s' (%s)\n", (int)len, p, ctx.msg);
            (*bad)++;
        }
        n++;
        p += len + (p[len] == '\n');
    }
    return n;
}

static const char *ev_str(const struct sd_json *d, const char *key) { return sd_json_str(sd_json_get(d, key)); }

/* Max |png - 255 ref| in 8-bit levels against diffusers' t2i_euler_a image
 * (64x48); INFINITY when the PNG or the golden is missing or of another size. */
static double png_vs_golden(const char *path, int *w, int *h) {
    struct sd_ctx ctx = {0};
    float *img = NULL;
    struct sd_st_file *gf = NULL;
    double worst = INFINITY;
    *w = *h = 0;
    if (sd_png_read(&ctx, path, 4096, &img, w, h) == SD_OK && *w == 64 && *h == 48 &&
        sd_st_open(&ctx, "tests/golden/pipeline.safetensors", &gf) == SD_OK) {
        const struct sd_st_tensor *t = sd_st_find(gf, "t2i_euler_a.image");
        if (t && t->nbytes == sizeof(float) * 3 * 64 * 48) {
            worst = 0;
            for (int i = 0; i < 3 * 64 * 48; i++) {
                float ref;
                memcpy(&ref, (const char *)t->data + sizeof(float) * i, sizeof ref);
                double d = fabs((img[i] + 1.0) / 2.0 * 255.0 - ref * 255.0);
                worst = fmax(worst, d);
            }
        }
    }
    free(img);
    sd_st_close(gf);
    return worst;
}

#define T2I_GOLDEN "txt2img", "--model", MODEL, "--prompt", "a watercolor painting of a lighthouse at dawn, soft light", \
                   "--width", "64", "--height=48", "--steps=4", "--sampler", "Euler a", "--cfg-scale", "7.5", "--seed=12"

/* The CLI's txt2img is diffusers' t2i_euler_a golden to within one 8-bit
 * level, with the A1111 parameters text and a JSON event stream. Options
 * are given both as "--name value" and "--name=value". */
static void test_txt2img(void) {
    char out[PATH_MAX];
    path_in(out, sizeof out, "t2i.png");
    struct result r = run(ARGS(T2I_GOLDEN, "--threads", "2", "--json", "-o", out));
    CHECK(r.status == 0 && exists(out) && r.err[0] == 0, "cli txt2img: exit 0, wrote the PNG, nothing on stderr (%d, '%.200s')",
          r.status, r.err);

    /* pixels vs diffusers */
    struct sd_ctx ctx = {0};
    int w = 0, h = 0;
    double worst = png_vs_golden(out, &w, &h);
    CHECK(worst <= 0.5 + 2e-3, "cli txt2img: PNG %dx%d is diffusers' image rounded to 8 bits (max |png - 255 ref| %.4f levels)", w, h,
          worst);

    /* parameters chunk */
    char *params = NULL;
    int prc = sd_png_read_text(&ctx, out, "parameters", &params);
    const char *want = "a watercolor painting of a lighthouse at dawn, soft light\nSteps: 4, Sampler: Euler a, CFG scale: 7.5, "
                       "Seed: 12, Size: 64x48, Model: tiny-sd1";
    CHECK(prc == SD_OK && params && !strncmp(params, want, strlen(want)), "cli txt2img: A1111 parameters chunk ('%.160s')",
          params ? params : ctx.msg);
    free(params);

    /* JSON events: load, clip, step 1..4, vae_decode, image, done */
    struct sd_json *docs[64] = {0};
    int bad, n = json_lines(r.out, docs, 64, &bad), steps = 0, order_ok = 1, stage = 0;
    for (int i = 0; i < n; i++) {
        const char *ev = ev_str(docs[i], "event"), *ph = ev_str(docs[i], "phase");
        if (!ev) { order_ok = 0; continue; }
        int st = !strcmp(ev, "phase") && ph && !strcmp(ph, "load") ? 0
                 : !strcmp(ev, "phase") && ph && !strcmp(ph, "clip") ? 1
                 : !strcmp(ev, "step") ? 2
                 : !strcmp(ev, "phase") && ph && !strcmp(ph, "vae_decode") ? 3
                 : !strcmp(ev, "image") ? 4
                 : !strcmp(ev, "done") ? 5 : -1;
        if (st < stage || st < 0) order_ok = 0;
        stage = st;
        if (st == 2) {
            steps++;
            order_ok &= sd_json_int(sd_json_get(docs[i], "step"), -1) == steps &&
                        sd_json_int(sd_json_get(docs[i], "steps"), -1) == 4 && sd_json_get(docs[i], "seconds");
        }
        if (st == 4) {
            const char *p = ev_str(docs[i], "path");
            order_ok &= p && !strcmp(p, out) && sd_json_int(sd_json_get(docs[i], "seed"), -1) == 12 &&
                        sd_json_int(sd_json_get(docs[i], "width"), -1) == 64;
        }
    }
    CHECK(!bad && n == 9 && steps == 4 && stage == 5 && order_ok,
          "cli --json: %d lines, each one JSON object: load, clip, 4 steps, vae_decode, image, done", n);
    for (int i = 0; i < n; i++) sd_json_free(docs[i]);
    result_free(&r);
}

/* img2img, batch 2: two files, a vae_encode phase, the strength in the
 * parameters; repeated with --n-iter 2 the second run's clip is cached. */
static void test_img2img(void) {
    char init[PATH_MAX], pattern[PATH_MAX], out0[PATH_MAX], out1[PATH_MAX];
    path_in(init, sizeof init, "init.png");
    path_in(pattern, sizeof pattern, "i2i.png");
    path_in(out0, sizeof out0, "i2i-0.png");
    path_in(out1, sizeof out1, "i2i-1.png");
    struct result r = run(ARGS("img2img", "--model", MODEL, "--prompt", "a cat", "--init-image", init, "--strength", "0.5",
                               "--steps", "4", "--batch", "2", "--seed", "5", "--json", "-o", pattern));
    struct sd_json *docs[64] = {0};
    int bad, n = json_lines(r.out, docs, 64, &bad), encode = 0, images = 0, steps = 0;
    for (int i = 0; i < n; i++) {
        const char *ev = ev_str(docs[i], "event"), *ph = ev_str(docs[i], "phase");
        encode += ev && ph && !strcmp(ev, "phase") && !strcmp(ph, "vae_encode");
        images += ev && !strcmp(ev, "image");
        steps += ev && !strcmp(ev, "step");
        sd_json_free(docs[i]);
    }
    struct sd_ctx ctx = {0};
    char *params = NULL;
    sd_png_read_text(&ctx, out1, "parameters", &params);
    CHECK(r.status == 0 && !bad && encode == 1 && images == 2 && steps == 2 && exists(out0) && exists(out1) && !exists(pattern) &&
              params && strstr(params, "Denoising strength: 0.5"),
          "cli img2img --batch 2: exit %d, files -0/-1, vae_encode phase, %d steps (4 x strength 0.5), %d images", r.status, steps,
          images);
    free(params);
    result_free(&r);
}

/* --inpainting-fill: with the 9-channel model at strength 0.6 (the init
 * latent is used), latent-nothing and fill give other images than original;
 * an unknown mode is a usage error naming the choices. */
static int files_same(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    for (int ca = 0, cb = 0; same && ca != EOF;) {
        ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_inpainting_fill(void) {
    char init[PATH_MAX], out[3][PATH_MAX];
    const char *modes[3] = {"original", "latent-nothing", "fill"};
    path_in(init, sizeof init, "init.png");
    int st[3];
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "fill-%d.png", k);
        path_in(out[k], sizeof out[k], name);
        struct result r = run(ARGS("inpaint", "--model", MODEL_INPAINT, "--prompt", "a cat", "--init-image", init, "--mask", init,
                                   "--strength", "0.6", "--steps", "2", "--seed", "5", "-q", "--inpainting-fill", modes[k],
                                   "-o", out[k]));
        st[k] = r.status;
        result_free(&r);
    }
    CHECK(!st[0] && !st[1] && !st[2] && exists(out[0]) && exists(out[1]) && exists(out[2]) && !files_same(out[0], out[1]) &&
              !files_same(out[0], out[2]) && !files_same(out[1], out[2]),
          "cli inpaint --inpainting-fill original / latent-nothing / fill: three different images (exit %d %d %d)", st[0], st[1],
          st[2]);
    for (int k = 0; k < 3; k++) unlink(out[k]);
    struct result r = run(ARGS("inpaint", "--model", MODEL_INPAINT, "--prompt", "x", "--init-image", init, "--mask", init,
                               "--inpainting-fill", "blur", "-o", out[0]));
    CHECK(r.status == 2 && strstr(r.err, "--inpainting-fill") && strstr(r.err, "latent-noise") && !exists(out[0]),
          "cli --inpainting-fill blur: exit %d, names the modes", r.status);
    result_free(&r);
}

/* --backend opencl --device 0: the same image from OpenCL device 0 (PoCL):
 * diffusers' image rounded to 8 bits (measured 0.4999 levels, as on the
 * CPU); nothing on stderr. */
static void test_device(void) {
    char out[PATH_MAX];
    path_in(out, sizeof out, "t2i-cl.png");
    setenv("SDRT_CACHE_DIR", "/tmp/sdrt-test-cache", 0);
    struct result r = run(ARGS(T2I_GOLDEN, "--backend", "opencl", "--device", "0", "-q", "-o", out));
    int w = 0, h = 0;
    double worst = png_vs_golden(out, &w, &h);
    CHECK(r.status == 0 && r.err[0] == 0 && worst <= 0.5 + 5e-3,
          "cli --backend opencl --device 0: exit %d, diffusers' image rounded to 8 bits (max |png - 255 ref| %.4f levels)%s%.200s",
          r.status, worst, r.err[0] ? ", stderr: " : "", r.err);
    unlink(out);
    result_free(&r);
}

/* A batch that fails midway: --n-iter 2 writes out-0.png, then out-1.png
 * cannot be written (a directory of that name is in the way). Exit 1, one
 * "sdrt: ..." line naming the write error and the removed image, and
 * out-0.png is gone again. */
static void test_batch_failure(void) {
    char pattern[PATH_MAX], out0[PATH_MAX], out1[PATH_MAX], inside[PATH_MAX];
    path_in(pattern, sizeof pattern, "run-%d.png");
    path_in(out0, sizeof out0, "run-0.png");
    path_in(out1, sizeof out1, "run-1.png");
    snprintf(inside, sizeof inside, "%s/keep", out1);
    mkdir(out1, 0755);
    FILE *f = fopen(inside, "w");
    if (f) fputs("not empty\n", f), fclose(f);
    int before = dir_entries();
    struct result r = run(ARGS("txt2img", "--model", MODEL, "--prompt", "a cat", "--width", "64", "--height", "64", "--steps",
                               "2", "--n-iter", "2", "--seed", "3", "-q", "-o", pattern));
    int one_line = r.err[0] && strchr(r.err, '\n') == r.err + strlen(r.err) - 1;
    CHECK(r.status == 1 && one_line && !strncmp(r.err, "sdrt: ", 6) && strstr(r.err, out1) &&
              strstr(r.err, "removed the 1 image this run had written") && strstr(r.err, out0) && !exists(out0) &&
              dir_entries() == before,
          "cli --n-iter 2 failing at the second image: exit %d, first image removed, stderr '%.300s'", r.status, r.err);
    result_free(&r);
    unlink(inside);
    rmdir(out1);
}

/* --json and bad input: exit 2, and stdout is one error event naming it. */
static void test_json_error(void) {
    char out[PATH_MAX];
    path_in(out, sizeof out, "json-err.png");
    struct result r = run(ARGS("txt2img", "--model", MODEL, "--prompt", "x", "--width", "65", "--json", "-o", out));
    struct sd_json *docs[4] = {0};
    int bad, n = json_lines(r.out, docs, 4, &bad);
    const char *ev = n == 1 ? ev_str(docs[0], "event") : NULL, *msg = n == 1 ? ev_str(docs[0], "message") : NULL;
    CHECK(r.status == 2 && !bad && n == 1 && ev && !strcmp(ev, "error") && msg && strstr(msg, "multiples of 8") &&
              !exists(out),
          "cli --json bad input: exit 2 and one {\"event\": \"error\"} line ('%.80s')", msg ? msg : r.out);
    for (int i = 0; i < n; i++) sd_json_free(docs[i]);
    result_free(&r);
}

/* Removes the temporary directory (only files the test and sdrt made). */
/* LoRA: --lora PATH:W and a prompt tag found by ss_output_name in
 * --lora-dir; the lora JSON event and A1111's Lora hashes in the PNG; a
 * missing NAME is a usage error. */
static void test_lora(void) {
    char out[PATH_MAX];
    path_in(out, sizeof out, "lora.png");
    struct result r = run(ARGS("txt2img", "-m", "tests/models/tiny-sd1", "-p", "a photo of a cat <lora:kohya_alias:0.8>",
                               "--lora-dir", "tests/lora", "--lora", "tests/lora/sd1_locon.safetensors:0.5", "-W", "64",
                               "-H", "64", "--steps", "2", "--seed", "5", "--json", "-o", out));
    struct sd_json *docs[32] = {0};
    int bad, n = json_lines(r.out, docs, 32, &bad), seen = 0;
    for (int i = 0; i < n; i++) {
        const char *ev = ev_str(docs[i], "event");
        if (ev && !strcmp(ev, "lora"))
            seen = sd_json_int(sd_json_get(docs[i], "loras"), -1) == 2 &&
                   sd_json_int(sd_json_get(docs[i], "matched"), -1) == 210 + 86 &&
                   sd_json_int(sd_json_get(docs[i], "unmatched"), -1) == 0;
        sd_json_free(docs[i]);
    }
    struct sd_ctx ctx = {0};
    char *params = NULL;
    int prc = r.status == 0 ? sd_png_read_text(&ctx, out, "parameters", &params) : -1;
    CHECK(r.status == 0 && seen && prc == SD_OK && params &&
          strstr(params, "Lora hashes: \"sd1_locon: ") && strstr(params, "kohya_alias: 8f0a7d2284ff\""),
          "cli --lora and <lora:alias:W>: a lora event with 296 matched modules, PNG parameters '%.200s'",
          params ? strstr(params, "Lora") ? strstr(params, "Lora") : params : r.err);
    free(params);
    result_free(&r);
    path_in(out, sizeof out, "lora-missing.png");
    bad_input("missing LoRA name", ARGS("txt2img", "-m", "tests/models/tiny-sd1", "-p", "cat <lora:nope:1>", "--lora-dir",
                                        "tests/lora", "-W", "64", "-H", "64", "--steps", "1", "-q", "-o", out),
              ARGS("nope", "tests/lora"), out);
}

static void cleanup(void) {
    DIR *d = opendir(tmp_dir);
    char p[PATH_MAX];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmp_dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(tmp_dir);
}

/* `sdrt bench --json --profile --runs 3`: one JSON object on stdout whose
 * medians are the middle of its own runs, the per-op table summed over the
 * runtime's backends equals its by_backend entries, the human tables on stderr. */
static void test_bench_json(void) {
    struct result r = run(ARGS("bench", "--model", MODEL, "--width", "64", "--height", "64", "--runs", "3", "--profile",
                               "--threads", "2", "--json"));
    struct sd_ctx ctx = {0};
    struct sd_json *d = NULL;
    int parsed = r.status == 0 && sd_json_parse(&ctx, r.out, strlen(r.out), &d) == SD_OK;
    const struct sd_json *b = sd_json_at(sd_json_get(d, "backends"), 0);
    int phases_ok = parsed && sd_json_len(sd_json_get(d, "backends")) == 1 && !strcmp(sd_json_str(sd_json_get(b, "name")), "cpu");
    static const char *const names[3] = {"clip", "unet", "vae_decode"};
    for (int p = 0; p < 3 && phases_ok; p++) {
        const struct sd_json *ph = sd_json_get(sd_json_get(b, "phases"), names[p]), *runs = sd_json_get(ph, "runs_s");
        double v[3], med = sd_json_num(sd_json_get(ph, "median_s"), -1);
        phases_ok &= sd_json_len(runs) == 3;
        for (int k = 0; k < 3 && phases_ok; k++) v[k] = sd_json_num(sd_json_at(runs, (size_t)k), -1), phases_ok &= v[k] > 0;
        int below = 0, above = 0;
        for (int k = 0; k < 3 && phases_ok; k++) below += v[k] < med, above += v[k] > med;
        phases_ok &= below <= 1 && above <= 1 && med > 0;
    }
    const struct sd_json *ops = sd_json_get(b, "ops"), *be = sd_json_at(sd_json_get(b, "by_backend"), 0);
    long conv = -1, conv_be = -1;
    double total = 0;
    for (size_t i = 0; i < sd_json_len(ops); i++) {
        const struct sd_json *o = sd_json_at(ops, i);
        total += sd_json_num(sd_json_get(o, "seconds"), 0);
        if (!strcmp(sd_json_str(sd_json_get(o, "op")), "conv2d")) conv = (long)sd_json_int(sd_json_get(o, "calls"), -1);
    }
    for (size_t i = 0; i < sd_json_len(sd_json_get(be, "ops")); i++) {
        const struct sd_json *o = sd_json_at(sd_json_get(be, "ops"), i);
        if (!strcmp(sd_json_str(sd_json_get(o, "op")), "conv2d")) conv_be = (long)sd_json_int(sd_json_get(o, "calls"), -1);
    }
    const char *prec = sd_json_str(sd_json_get(d, "cpu_compute"));
    const struct sd_json *clc = sd_json_get(b, "opencl_compute");
    CHECK(phases_ok && conv > 0 && conv == conv_be && total > 0 && prec && !strcmp(prec, "f32") && clc &&
              sd_json_type(clc) == SD_JSON_NULL &&
              sd_json_int(sd_json_get(d, "threads"), 0) == 2 && strstr(r.err, "vae_decode"),
          "cli bench --json: one object, 3 runs + median per phase, %ld conv2d calls (by backend %ld), %.3f s of ops, "
          "compute %s, tables on stderr",
          conv, conv_be, total, prec ? prec : "?");
    sd_json_free(d);
    result_free(&r);
}

int main(int argc, char **argv) {
    (void)argc;
    const char *env = getenv("SDRT_BIN");
    if (env && *env) {
        snprintf(sdrt_bin, sizeof sdrt_bin, "%s", env);
    } else {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", argv[0]);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        snprintf(sdrt_bin, sizeof sdrt_bin, "%s/../sdrt", dir);
    }
    if (access(sdrt_bin, X_OK) != 0) {
        test_fail("cli: %s is not an executable (build it, or set SDRT_BIN)", sdrt_bin);
        return test_summary();
    }
    /* sdrt on the tiny model runs many tiny parallel regions; let idle
     * OpenMP threads sleep instead of spinning (see test_pipeline.c). */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    /* The parity checks below compare with diffusers' f32 images: the
     * command's default --precision auto would pick bf16 on a CPU with
     * bf16 instructions (tests/test_bf16.c covers that mode). */
    setenv("SDRT_PRECISION", "f32", 1);
    if (!mkdtemp(tmp_dir)) {
        test_fail("cli: mkdtemp: %s", strerror(errno));
        return test_summary();
    }
    test_bad_inputs();
    test_txt2img();
    test_img2img();
    test_inpainting_fill();
    test_device();
    test_batch_failure();
    test_json_error();
    test_lora();
    test_bench_json();
    cleanup();
    return test_summary();
}
