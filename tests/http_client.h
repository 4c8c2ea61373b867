/* http_client.h - the server tests' harness: start `sdrt serve` with its
 * port read from its log (start_server_args), stop it with SIGTERM
 * (stop_server), and an HTTP/1.1 client: one request per connection to
 * 127.0.0.1:port, the response read to EOF and de-chunked. Included by
 * tests/test_server*.c after test.h. */
#ifndef SDRT_TEST_HTTP_CLIENT_H
#define SDRT_TEST_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int port; /* the server under test */
static pid_t server_pid;

struct resp {
    int status;
    char *head, *body;
    size_t len;
};

static void resp_free(struct resp *r) { free(r->head); free(r->body); memset(r, 0, sizeof *r); }

/* One request on a fresh connection (Connection: close); reads to EOF. */
static int http(const char *method, const char *path, const char *auth, const char *extra, const void *body, size_t blen,
                struct resp *r) {
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    char hdr[1024];
    int n = snprintf(hdr, sizeof hdr, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", method, path,
                     auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "", extra ? extra : "", blen);
    if (write(fd, hdr, (size_t)n) != n) { close(fd); return -1; }
    for (size_t off = 0; off < blen;) {
        ssize_t k = write(fd, (const char *)body + off, blen - off);
        if (k <= 0) break;
        off += (size_t)k;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (ssize_t k; (k = read(fd, buf + len, cap - len - 1)) > 0;) {
        len += (size_t)k;
        if (cap - len < 4096) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[len] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) { free(buf); return -1; }
    *sep = 0;
    r->head = strdup(buf);
    char *b = sep + 4;
    size_t blen2 = len - (size_t)(b - buf);
    if (strcasestr(r->head, "Transfer-Encoding: chunked")) { /* de-chunk */
        char *o = malloc(blen2 + 1), *p = b;
        size_t ol = 0;
        for (;;) {
            unsigned long cl = strtoul(p, &p, 16);
            p = strstr(p, "\r\n");
            if (!p || cl == 0) break;
            p += 2;
            memcpy(o + ol, p, cl);
            ol += cl;
            p += cl + 2;
        }
        o[ol] = 0;
        r->body = o, r->len = ol;
    } else {
        r->body = malloc(blen2 + 1);
        memcpy(r->body, b, blen2);
        r->body[blen2] = 0;
        r->len = blen2;
    }
    free(buf);
    return 0;
}


static int start_server_args(const char *const *argv) {
    int pfd[2];
    if (pipe(pfd)) return -1;
    server_pid = fork();
    if (server_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the server never outlives a crashed test */
        dup2(pfd[1], 2);
        close(pfd[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[512];
    port = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "serving on http://127.0.0.1:");
        if (p) { port = atoi(p + 28); break; }
    }
    /* Keep draining the server's log so it never blocks on a full pipe. */
    if (fork() == 0) {
        while (fgets(line, sizeof line, f)) {}
        _exit(0);
    }
    fclose(f);
    return port > 0 ? 0 : -1;
}

static void stop_server(void) {
    kill(server_pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 200; i++) {
        if (waitpid(server_pid, &st, WNOHANG) == server_pid) {
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server: stops on SIGTERM with status 0");
            return;
        }
        usleep(50000);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, &st, 0);
    test_fail("server: did not stop within 10 s of SIGTERM");
}

/* Whether the server process has exited (it is then a zombie until reaped). */
static inline int server_dead(void) {
    char path[64], state = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    int ok = fscanf(f, "%*d %*s %c", &state) == 1;
    fclose(f);
    return !ok || state == 'Z';
}

#endif
