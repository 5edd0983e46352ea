// CEpoll: the Linux headers the epoll fallback backend needs that Swift's Glibc module
// does not export (epoll, eventfd, resource limits, socket options), plus wrappers for
// the macros and GNU-only calls Swift cannot import.
#ifndef CEPOLL_H
#define CEPOLL_H
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

static inline int cepoll_rlimit_memlock(void) { return RLIMIT_MEMLOCK; }
static inline int cepoll_ip_bind_address_no_port(void) {
#ifdef IP_BIND_ADDRESS_NO_PORT
    return IP_BIND_ADDRESS_NO_PORT;
#else
    return 24;
#endif
}

/// malloc_trim(0): gives free heap pages of every malloc arena back to the kernel (glibc;
/// <malloc.h> is not in Swift's Glibc module). Returns 1 when memory was released.
int cepoll_malloc_trim(void);
/// accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK): a GNU extension Swift cannot see.
int cepoll_accept4_nonblock(int fd);
/// O_DIRECT (a GNU flag Swift's Glibc module leaves out).
int cepoll_o_direct(void);
/// Size of `struct statx` (the buffer io_uring's STATX fills).
enum { CEPOLL_STATX_SIZE = 256 };
/// statx(2) into a CEPOLL_STATX_SIZE buffer; 0 or -errno.
int cepoll_statx(int dirfd, const char *path, int flags, unsigned mask, void *buf);
/// Reads the fields Spool uses from a filled statx buffer.
void cepoll_statx_fields(const void *buf, uint64_t *size, uint32_t *mode, int64_t *mtime_sec);
/// The nanoseconds of the modification time and the inode number.
void cepoll_statx_identity(const void *buf, uint32_t *mtime_nsec, uint64_t *inode);
#endif
