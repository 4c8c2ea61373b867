/* redis_worker_harness.h - `sdrt worker` processes for the Redis tests:
 * started with a log file, waited for ("ready"), killed or stopped; the
 * wire requests a front-end would submit; reference PNGs from `sdrt
 * txt2img` with the same settings. Include after redis_harness.h. */
#ifndef SDRT_REDIS_WORKER_HARNESS_H
#define SDRT_REDIS_WORKER_HARNESS_H

#include <limits.h>

#include "req_wire.h"
#include "rq.h"

static char rw_sdrt[PATH_MAX];    /* the sdrt binary next to the tests' folder */

static inline void rw_init(const char *argv0) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) exe[n] = 0;
    else snprintf(exe, sizeof exe, "%s", argv0);
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(rw_sdrt, sizeof rw_sdrt, "%s/../sdrt", exe);
}

struct rw_proc {
    pid_t pid;
    char log[200];
    char name[64];
};

/* Starts `sdrt worker --redis URL --name NAME ARGS...` (extra: NULL-ended;
 * url NULL: no --redis, the environment's SDRT_REDIS_URL),
 * stderr into a log in dir; waits up to 60 s for its "ready" line. */
static inline int rw_start(struct rw_proc *p, const char *dir, const char *url, const char *name, const char *const *extra) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log, sizeof p->log, "%s/%s.log", dir, name);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a crashed test leaves no worker behind */
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int devnull = open("/dev/null", O_RDWR);
        if (fd >= 0) dup2(fd, 2);
        if (devnull >= 0) dup2(devnull, 1), dup2(devnull, 0);
        const char *argv[48];
        int a = 0;
        argv[a++] = rw_sdrt;
        argv[a++] = "worker";
        if (url) { /* else the worker reads SDRT_REDIS_URL */
            argv[a++] = "--redis";
            argv[a++] = url;
        }
        argv[a++] = "--name";
        argv[a++] = name;
        for (int i = 0; extra && extra[i] && a < 46; i++) argv[a++] = extra[i];
        argv[a] = NULL;
        execv(rw_sdrt, (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
    char want[128];
    snprintf(want, sizeof want, "worker %s ready", name);
    for (int i = 0; i < 1200; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            p->pid = 0;
            return -1;
        }
        FILE *f = fopen(p->log, "r");
        char line[1024];
        int ready = 0;
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, want)) ready = 1;
        if (f) fclose(f);
        if (ready) return 0;
        redis_sleep_ms(50);
    }
    return -1;
}

/* Sends sig and waits up to timeout_s for the exit: the exit status, 128+signal, or -1 (still running: killed). */
static inline int rw_signal_wait(struct rw_proc *p, int sig, int timeout_s) {
    if (p->pid <= 0) return -1;
    kill(p->pid, sig);
    for (int i = 0; i < timeout_s * 20; i++) {
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        redis_sleep_ms(50);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    return -1;
}

/* Whether the worker's log has a line containing s. */
static inline int rw_log_has(const struct rw_proc *p, const char *s) {
    FILE *f = fopen(p->log, "r");
    char line[2048];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, s)) found = 1;
    if (f) fclose(f);
    return found;
}

/* Prints the last n lines of the worker's log (a failure's context). */
static inline void rw_log_tail(const struct rw_proc *p, int n) {
    FILE *f = fopen(p->log, "r");
    char lines[64][512];
    int k = 0;
    while (f && fgets(lines[k % 64], sizeof lines[0], f)) k++;
    if (f) fclose(f);
    for (int i = k > n ? k - n : 0; i < k; i++) printf("  %s: %s", p->name, lines[i % 64]);
}

/* The settings of the tests' jobs: `sdrt txt2img -p PROMPT -n 'blurry'
 * --steps STEPS -W SIDE -H SIDE --sampler 'Euler a' --cfg-scale 7.5 --seed SEED`. */
struct rw_job {
    const char *prompt;
    int side, steps, n_iter;
    long long seed;
};

/* The wire request a front-end submits for j (as the server resolves it). */
static inline char *rw_wire(const struct rw_job *j, const char *model) {
    struct gen_req r;
    memset(&r, 0, sizeof r);
    r.mode = MODE_TXT2IMG;
    r.prompt = (char *)j->prompt;
    r.negative = (char *)"blurry";
    r.width = r.height = j->side;
    r.batch = 1, r.n_iter = j->n_iter > 0 ? j->n_iter : 1;
    r.cfg = 7.5f, r.strength = 0.75f;
    sd_sampler_params_init(&r.sampler);
    struct sd_ctx ctx = {0};
    sd_sampler_parse_name(&ctx, "Euler a", &r.sampler);
    r.sampler.steps = j->steps;
    r.seed = j->seed;
    r.inpaint_fill = 1;
    r.model = -1;
    json_t *o = NULL;
    if (req_wire_encode(&r, model, ORIGIN_NATIVE, &o)) return NULL;
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

static inline char *rw_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = b && len > 0 ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    return b;
}

/* `sdrt txt2img` for seeds seed0 .. seed0+n-1 with j's other settings
 * (--n-iter n: one run) into dir/ref-K.png; 0 on success. */
static inline int rw_reference(const struct rw_job *j, int n, const char *dir) {
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd,
             "%s txt2img --model tests/models/tiny-sd1 -p '%s' -n 'blurry' --steps %d -W %d -H %d --sampler 'Euler a' "
             "--cfg-scale 7.5 --seed %lld --n-iter %d --threads 1 -q -o %s/ref-%%d.png",
             rw_sdrt, j->prompt, j->steps, j->side, j->side, j->seed, n, dir);
    return system(cmd);
}

#endif
