// echo_load.c: the load generator for the echo benchmark, neutral to both servers.
// CONNS connections each send a MSG-byte message and wait for all of it to come back,
// over and over, for SECONDS. The first echo of every connection is compared byte for
// byte before timing starts. Prints: round_trips=N bytes=N seconds=S
// Usage: echo_load PORT CONNS MSG SECONDS
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct c { int fd; size_t sent, got; };

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: echo_load PORT CONNS MSG SECONDS\n"); return 2; }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    size_t msg = (size_t)atol(argv[3]);
    double secs = atof(argv[4]);
    char *out = malloc(msg), *in = malloc(msg);
    for (size_t i = 0; i < msg; i++) out[i] = (char)(i * 131 + 7);
    struct c *cs = calloc(n, sizeof *cs);
    int ep = epoll_create1(0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // Correctness first: one blocking echo per connection, compared byte for byte.
        if (send(fd, out, msg, 0) != (ssize_t)msg) { perror("send"); return 1; }
        size_t got = 0;
        while (got < msg) { ssize_t r = recv(fd, in + got, msg - got, 0); if (r <= 0) { perror("recv"); return 1; } got += r; }
        if (memcmp(in, out, msg)) { fprintf(stderr, "echo mismatch on connection %d\n", i); return 1; }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    long long trips = 0, bytes = 0;
    double t0 = now(), end = t0 + secs;
    struct epoll_event evs[256];
    while (now() < end) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < k; e++) {
            struct c *c = &cs[evs[e].data.u32];
            for (;;) {
                if (c->sent < msg) {
                    ssize_t r = send(c->fd, out + c->sent, msg - c->sent, MSG_NOSIGNAL);
                    if (r > 0) { c->sent += r; continue; }
                    if (r < 0 && errno != EAGAIN) { perror("send"); return 1; }
                }
                ssize_t r = recv(c->fd, in, msg, 0);
                if (r > 0) {
                    c->got += r; bytes += r;
                    if (c->got >= msg) { trips++; c->got -= msg; c->sent = 0; }
                    continue;
                }
                if (r == 0) { fprintf(stderr, "server closed\n"); return 1; }
                if (errno == EAGAIN) break;
                perror("recv"); return 1;
            }
        }
    }
    printf("round_trips=%lld bytes=%lld seconds=%.3f\n", trips, bytes, now() - t0);
    return 0;
}
