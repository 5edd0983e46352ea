// cepoll.c: GNU-only calls and flags (accept4, statx, O_DIRECT) behind plain signatures for Swift.
#define _GNU_SOURCE
#include "CEpoll.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

_Static_assert(sizeof(struct statx) == CEPOLL_STATX_SIZE, "struct statx is 256 bytes");

int cepoll_o_direct(void) { return O_DIRECT; }

int cepoll_accept4_nonblock(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); }

int cepoll_statx(int dirfd, const char *path, int flags, unsigned mask, void *buf) {
    return statx(dirfd, path, flags, mask, (struct statx *)buf) == 0 ? 0 : -errno;
}

void cepoll_statx_identity(const void *buf, uint32_t *mtime_nsec, uint64_t *inode) {
    const struct statx *sx = (const struct statx *)buf;
    *mtime_nsec = sx->stx_mtime.tv_nsec;
    *inode = sx->stx_ino;
}

void cepoll_statx_fields(const void *buf, uint64_t *size, uint32_t *mode, int64_t *mtime_sec) {
    const struct statx *s = buf;
    *size = s->stx_size;
    *mode = s->stx_mode;
    *mtime_sec = s->stx_mtime.tv_sec;
}

#include <malloc.h>
int cepoll_malloc_trim(void) { return malloc_trim(0); }
