/* redis_harness.h - the tests' own redis-server: started in a temp dir on a
 * unix socket (TCP on a free loopback port too when asked), AOF on with
 * appendfsync always, stopped (bounded in time) and restarted on the same
 * data; the dir is removed at the end. */
#ifndef SDRT_REDIS_HARNESS_H
#define SDRT_REDIS_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct redis_srv {
    char dir[128], sock[160], url[256];
    int port;                     /* 0: unix socket only */
    const char *password;         /* requirepass, or NULL */
    pid_t pid;
};

static inline void redis_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

/* A free loopback TCP port (bound then released). */
static inline int redis_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts redis-server on r (dir created on first start): 0 once it answers PING, -1 after 15 s. */
static inline int redis_launch(struct redis_srv *r) {
    char port[16], log[200];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a crashed test leaves no server behind */
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        const char *argv[32];
        int a = 0;
        argv[a++] = "redis-server";
        argv[a++] = "--port";
        argv[a++] = port;
        argv[a++] = "--bind";
        argv[a++] = "127.0.0.1";
        argv[a++] = "--unixsocket";
        argv[a++] = r->sock;
        argv[a++] = "--unixsocketperm";
        argv[a++] = "700";
        argv[a++] = "--dir";
        argv[a++] = r->dir;
        argv[a++] = "--appendonly";
        argv[a++] = "yes";
        argv[a++] = "--appendfsync";
        argv[a++] = "always";
        argv[a++] = "--save";
        argv[a++] = "";
        argv[a++] = "--logfile";
        argv[a++] = log;
        argv[a++] = "--daemonize";
        argv[a++] = "no";
        if (r->password) {
            argv[a++] = "--requirepass";
            argv[a++] = r->password;
        }
        argv[a] = NULL;
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 300; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            r->pid = 0;
            return -1;
        }
        struct timeval tv = {1, 0};
        redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
        if (c && !c->err) {
            redisReply *rep = r->password ? redisCommand(c, "AUTH %s", r->password) : NULL;
            if (rep) freeReplyObject(rep);
            rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");
            if (rep) freeReplyObject(rep);
            redisFree(c);
            if (ok) return 0;
        } else if (c) {
            redisFree(c);
        }
        redis_sleep_ms(50);
    }
    return -1;
}

/* tcp: also listen on a free loopback port. */
static inline int redis_start(struct redis_srv *r, int tcp, const char *password) {
    memset(r, 0, sizeof *r);
    r->password = password;
    snprintf(r->dir, sizeof r->dir, "/tmp/sdrt-redis-XXXXXX");
    if (!mkdtemp(r->dir)) return -1;
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    r->port = tcp ? redis_free_port() : 0;
    if (r->port < 0) return -1;
    snprintf(r->url, sizeof r->url, "unix://%s%s%s", r->sock, password ? "?password=" : "", password ? password : "");
    return redis_launch(r);
}

/* Stops the server: SIGKILL (crash) or SIGTERM (clean), waiting at most 10 s. */
static inline void redis_halt(struct redis_srv *r, int sig) {
    if (r->pid <= 0) return;
    kill(r->pid, sig);
    for (int i = 0; i < 200; i++) {
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
        redis_sleep_ms(50);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

/* Kills the server (SIGKILL) and starts it again on the same data. */
static inline int redis_restart(struct redis_srv *r) {
    redis_halt(r, SIGKILL);
    return redis_launch(r);
}

static inline void redis_stop(struct redis_srv *r) {
    redis_halt(r, SIGTERM);
    if (r->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd)) {}
        r->dir[0] = 0;
    }
}

/* A raw hiredis connection to r (for checks behind the library's back). */
static inline redisContext *redis_raw(const struct redis_srv *r) {
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
    if (c && !c->err && r->password) {
        redisReply *rep = redisCommand(c, "AUTH %s", r->password);
        if (rep) freeReplyObject(rep);
    }
    return c;
}

#endif
