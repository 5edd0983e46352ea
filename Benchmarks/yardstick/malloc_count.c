// malloc_count.c: an LD_PRELOAD interposer that counts heap allocations (malloc, calloc,
// realloc, memalign, aligned_alloc, posix_memalign) and hands each to glibc's own
// implementation (__libc_*), so every block is still glibc's and glibc's free releases it;
// free is not interposed. A harness in the process reads the running total through
// dlsym(RTLD_DEFAULT, "spool_malloc_calls"); one outside it (another process) sets
// SPOOL_MALLOC_COUNT_DIR: whenever DIR/request appears, a reporting thread writes the total
// into DIR/count (through a rename, so a reader never sees half a number) and removes the
// request; the reporter allocates nothing itself.
// Used by run.sh with JSONBench (allocations per parse must not grow with the document:
// stage 2 allocates per parse, never per value) and by alloc_per_request.sh with `spool
// serve` (none per fast-lane request).
// Build: cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static uint64_t calls;

static inline void count(void) { __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED); }

uint64_t spool_malloc_calls(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }

void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(); return __libc_realloc(p, n); }
void *memalign(size_t alignment, size_t n) { count(); return __libc_memalign(alignment, n); }
void *aligned_alloc(size_t alignment, size_t n) { count(); return __libc_memalign(alignment, n); }

int posix_memalign(void **out, size_t alignment, size_t n) {
    count();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

static char request_path[4096], count_path[4096], temp_path[4096];

static void *reporter(void *unused) {
    (void)unused;
    struct timespec pause = {0, 10 * 1000 * 1000};
    for (;;) {
        nanosleep(&pause, NULL);
        if (access(request_path, F_OK) != 0) continue;
        char text[32];
        int n = snprintf(text, sizeof text, "%llu\n", (unsigned long long)spool_malloc_calls());
        int fd = open(temp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) continue;
        ssize_t w = write(fd, text, (size_t)n);
        close(fd);
        if (w == n) rename(temp_path, count_path);
        unlink(request_path);
    }
    return NULL;
}

__attribute__((constructor)) static void start_reporter(void) {
    const char *dir = getenv("SPOOL_MALLOC_COUNT_DIR");
    if (dir == NULL || strlen(dir) > 4000) return;
    snprintf(request_path, sizeof request_path, "%s/request", dir);
    snprintf(count_path, sizeof count_path, "%s/count", dir);
    snprintf(temp_path, sizeof temp_path, "%s/count.tmp", dir);
    pthread_t t;
    if (pthread_create(&t, NULL, reporter, NULL) == 0) pthread_detach(t);
}
