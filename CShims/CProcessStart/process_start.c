// See CProcessStart.h. The constructor runs before main and before the Swift runtime or
// libdispatch start a thread.
#define _GNU_SOURCE
#include "CProcessStart.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static const int handled_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE };
enum { HANDLED_COUNT = sizeof(handled_signals) / sizeof(handled_signals[0]) };

static int started;
static int reopened;
static int caught_pipe[2] = { -1, -1 };   // [0] read (blocking), [1] write (non-blocking)
static struct sigaction original_actions[HANDLED_COUNT];

// Async-signal-safe: one write of one byte, errno preserved. A full pipe (64 KiB of
// unread signals) drops the byte; the first ones already say everything.
static void on_stop_signal(int sig) {
    int saved = errno;
    uint8_t b = (uint8_t)sig;
    (void)!write(caught_pipe[1], &b, 1);
    errno = saved;
}

__attribute__((constructor(101)))
static void spool_process_start(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            // open returns the lowest free descriptor: this one, since the lower ones are open.
            int n = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (n >= 0 && n != fd) { dup2(n, fd); close(n); }
            else if (n == fd) { fcntl(fd, F_SETFD, 0); }
            reopened |= 1 << fd;
        }
    }
    if (pipe2(caught_pipe, O_CLOEXEC) != 0) return;   // no pipe: dispositions stay as they were
    fcntl(caught_pipe[1], F_SETFL, fcntl(caught_pipe[1], F_GETFL) | O_NONBLOCK);
    struct sigaction act = { 0 };
    sigemptyset(&act.sa_mask);
    for (int i = 0; i < HANDLED_COUNT; i++) {
        int sig = handled_signals[i];
        act.sa_handler = sig == SIGPIPE ? SIG_IGN : on_stop_signal;
        act.sa_flags = sig == SIGPIPE ? 0 : SA_RESTART;
        sigaction(sig, &act, &original_actions[i]);
    }
    started = 1;
}

int spool_process_started(void) { return started; }
int spool_process_reopened_std(void) { return reopened; }

void spool_process_restore(void) {
    if (!started) return;
    for (int i = 0; i < HANDLED_COUNT; i++) sigaction(handled_signals[i], &original_actions[i], NULL);
    // What was caught meanwhile now acts as it would have (default: ends the process).
    struct pollfd p = { .fd = caught_pipe[0], .events = POLLIN };
    uint8_t b;
    while (poll(&p, 1, 0) == 1 && read(caught_pipe[0], &b, 1) == 1) raise(b);
}

int spool_signal_wait(void) {
    for (;;) {
        uint8_t b;
        ssize_t n = read(caught_pipe[0], &b, 1);
        if (n == 1) return b;
        if (n < 0 && errno == EINTR) continue;
        // The pipe cannot close while the process lives; anything else is a bug here.
        struct pollfd p = { .fd = caught_pipe[0], .events = POLLIN };
        poll(&p, 1, 1000);
    }
}

void spool_signal_die(int sig) {
    struct sigaction dfl = { 0 };
    sigemptyset(&dfl.sa_mask);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
    _exit(128 + sig);   // only if the default action did not end the process
}

int spool_set_affinity(int tid, const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) { errno = EINVAL; return -1; }
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity((pid_t)tid, sizeof set, &set);
}
