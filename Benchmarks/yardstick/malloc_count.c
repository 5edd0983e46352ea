// malloc_count.c: an LD_PRELOAD interposer that counts heap allocations (malloc, calloc,
// realloc, memalign, aligned_alloc, posix_memalign) and hands each to glibc's own
// implementation (__libc_*), so every block is still glibc's and glibc's free releases it;
// free is not interposed. A harness reads the running total through dlsym(RTLD_DEFAULT,
// "spool_malloc_calls"). Used by run.sh with JSONBench: allocations per parse must not grow
// with the document (stage 2 allocates per parse, never per value).
// Build: cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

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
