// A hostile transcode worker for SandboxTests, built at test time with cc (never part of
// the product). It speaks the worker protocol (request on stdin, JSON lines on stdout) and
// tries one thing named by argv[1]; what it reports:
//   {"failure":{"code":"refused","message":...}}  the sandbox refused the attempt
//   {"failure":{"code":"escaped","message":...}}  the attempt worked (the test fails)
// Acts that crash, hang or babble do just that.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char request[1 << 16];

static void line(const char *code, const char *act, int err) {
    printf("{\"failure\":{\"code\":\"%s\",\"message\":\"%s: %s\"}}\n", code, act, err ? strerror(err) : "done");
    fflush(stdout);
}

// The value of "output_directory" in the request.
static const char *output_directory(void) {
    static char out[4096];
    const char *key = "\"output_directory\":\"";
    char *p = strstr(request, key);
    if (!p) return NULL;
    p += strlen(key);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n < sizeof out - 1) { out[n] = p[n]; n++; }
    out[n] = 0;
    return out;
}

static int refuse_or_escape(const char *act, int ok, int err) {
    line(ok ? "escaped" : "refused", act, ok ? 0 : err);
    return 0;
}

int main(int argc, char **argv) {
    size_t used = 0;
    ssize_t n;
    // The request is one line (stdin stays open as the engine's control channel).
    while (used < sizeof request - 1 && (n = read(0, request + used, 1)) > 0 && request[used] != '\n') used += (size_t)n;
    request[used] = 0;
    const char *act = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";

    if (!strcmp(act, "ok")) {
        const char *out = output_directory();
        if (!out || mkdir(out, 0700) != 0) { line("io", "mkdir", errno); return 0; }
        char path[4200];
        snprintf(path, sizeof path, "%s/out.txt", out);
        FILE *f = fopen(path, "w");
        if (!f) { line("io", "fopen", errno); return 0; }
        fputs("made in the sandbox\n", f);
        fclose(f);
        printf("{\"progress\":{\"video_frames\":1,\"media_seconds\":0.5,\"total_seconds\":1,\"elapsed_seconds\":0.1,\"fps\":10,\"speed\":5}}\n");
        printf("{\"result\":{\"work\":42,\"quality_report\":null}}\n");
        return 0;
    }
    if (!strcmp(act, "tcp")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) return refuse_or_escape("socket(AF_INET)", 0, errno);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(arg)) };
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        int r = connect(s, (struct sockaddr *)&a, sizeof a);
        return refuse_or_escape("connect 127.0.0.1", r == 0, errno);
    }
    if (!strcmp(act, "udp6")) {
        int s = socket(AF_INET6, SOCK_DGRAM, 0);
        return refuse_or_escape("socket(AF_INET6)", s >= 0, errno);
    }
    if (!strcmp(act, "netlink")) {
        int s = socket(AF_NETLINK, SOCK_RAW, 0);
        return refuse_or_escape("socket(AF_NETLINK)", s >= 0, errno);
    }
    if (!strcmp(act, "read")) {
        int fd = open(arg, O_RDONLY);
        char c;
        int ok = fd >= 0 && read(fd, &c, 1) >= 0;
        return refuse_or_escape(arg, ok, errno);
    }
    if (!strcmp(act, "write")) {
        int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int ok = fd >= 0 && write(fd, "escaped\n", 8) == 8;
        return refuse_or_escape(arg, ok, errno);
    }
    if (!strcmp(act, "forkbomb")) {
        int made = 0, err = 0;
        for (int i = 0; i < 10000; i++) {
            pid_t p = fork();
            if (p == 0) { pause(); _exit(0); }
            if (p < 0) { err = errno; break; }
            made++;
        }
        if (made > 0) kill(0, SIGKILL);
        char what[64];
        snprintf(what, sizeof what, "fork (%d made)", made);
        return refuse_or_escape(what, made > 64, err);
    }
    if (!strcmp(act, "ptrace")) {
        long r = ptrace(PTRACE_ATTACH, (pid_t)atoi(arg), 0, 0);
        return refuse_or_escape("ptrace(PTRACE_ATTACH)", r == 0, errno);
    }
    if (!strcmp(act, "oom")) {
        size_t size = (size_t)10 << 30;
        char *p = malloc(size);
        if (!p) return refuse_or_escape("malloc(10 GiB)", 0, errno ? errno : ENOMEM);
        for (size_t i = 0; i < size; i += 4096) p[i] = 1;
        return refuse_or_escape("malloc(10 GiB) and touched", 1, 0);
    }
    if (!strcmp(act, "touch")) {
        // Resident memory, not just address space: arg MiB allocated and every page written.
        size_t size = (size_t)atol(arg) << 20;
        char *p = malloc(size);
        if (!p) return refuse_or_escape("malloc", 0, errno ? errno : ENOMEM);
        for (size_t i = 0; i < size; i += 4096) p[i] = 1;
        return refuse_or_escape("touched every page", 1, 0);
    }
    if (!strcmp(act, "segv-after-output")) {
        const char *out = output_directory();
        if (out && mkdir(out, 0700) == 0) {
            char path[4200];
            snprintf(path, sizeof path, "%s/partial.mp4", out);
            FILE *f = fopen(path, "w");
            if (f) { fputs("half a file", f); fclose(f); }
        }
        printf("{\"progress\":{\"video_frames\":1,\"media_seconds\":0.5,\"total_seconds\":1,\"elapsed_seconds\":0.1,\"fps\":10,\"speed\":5}}\n");
        fflush(stdout);
        volatile int *null = NULL;
        return *null;
    }
    if (!strcmp(act, "abort")) abort();
    if (!strcmp(act, "hang")) { for (;;) pause(); }
    if (!strcmp(act, "spin")) { for (volatile unsigned long i = 0;; i++) {} }
    if (!strcmp(act, "garbage")) {
        printf("{\"progress\":{\"video_frames\":1,\"media_seconds\":0.5,\"total_seconds\":1,\"elapsed_seconds\":0.1,\"fps\":10,\"speed\":5}}\n");
        printf("\x01\x02 this is not JSON \xff\n");
        fflush(stdout);
        for (;;) pause();
    }
    if (!strcmp(act, "silent-exit")) { fputs("something went wrong\n", stderr); return 3; }
    line("unknown_act", act, EINVAL);
    return 0;
}
