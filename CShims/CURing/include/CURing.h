// CURing: the only door from Spool to liburing (Debian liburing-dev 2.3).
//
// Goals: expose exactly the io_uring operations Spool uses as prefixed C functions with
// plain integer/pointer arguments, so Swift never imports <liburing.h>. Importing it
// clashes with Glibc's fd_set and with swift-system's own io_uring definitions (see
// PLATFORM-NOTES.md), so the ring itself is an opaque struct and liburing is included
// only in curing.c.
// Non-goals: a general liburing binding. Add a function here when Ring needs an opcode.
#ifndef CURING_H
#define CURING_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An io_uring instance plus Spool's provided-buffer ring (one buffer group per ring).
typedef struct curing_ring curing_ring;

/// One completion, copied out of the CQ so the ring can be advanced before handlers run.
typedef struct curing_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} curing_cqe;

// Setup flags Spool asks for, in the order it drops them when the kernel refuses.
#define CURING_SETUP_COOP_TASKRUN   (1u << 0)
#define CURING_SETUP_SINGLE_ISSUER  (1u << 1)
#define CURING_SETUP_DEFER_TASKRUN  (1u << 2)
#define CURING_SETUP_SUBMIT_ALL     (1u << 3)

// CQE flags, re-exported because the kernel header's macros are not imported by Swift.
#define CURING_CQE_F_BUFFER  (1u << 0)
#define CURING_CQE_F_MORE    (1u << 1)
#define CURING_CQE_BUFFER_SHIFT 16

// The opcodes Spool uses, numbered by Spool (stable) and mapped to the kernel's in curing.c.
typedef enum curing_opcode {
    CURING_OP_NOP = 0,
    CURING_OP_ACCEPT,
    CURING_OP_RECV,
    CURING_OP_SEND,
    CURING_OP_SENDMSG,
    CURING_OP_CONNECT,
    CURING_OP_SHUTDOWN,
    CURING_OP_CLOSE,
    CURING_OP_OPENAT,
    CURING_OP_READ,
    CURING_OP_WRITE,
    CURING_OP_READ_FIXED,
    CURING_OP_WRITE_FIXED,
    CURING_OP_FSYNC,
    CURING_OP_RENAMEAT,
    CURING_OP_UNLINKAT,
    CURING_OP_STATX,
    CURING_OP_TIMEOUT,
    CURING_OP_LINK_TIMEOUT,
    CURING_OP_ASYNC_CANCEL,
    CURING_OP_SPLICE,
    CURING_OP_COUNT_
} curing_opcode;

/// Creates a ring with `entries` SQEs. `wanted` is a mask of CURING_SETUP_* flags;
/// flags the kernel refuses are dropped one by one (DEFER_TASKRUN, SINGLE_ISSUER,
/// COOP_TASKRUN, SUBMIT_ALL). On success *got holds the flags in force; on failure NULL
/// is returned and *err holds the positive errno of io_uring_setup.
curing_ring *curing_ring_create(unsigned entries, unsigned wanted, unsigned *got, int *err);
void curing_ring_destroy(curing_ring *ring);
unsigned curing_sq_space_left(const curing_ring *ring);

/// Probes the kernel's opcode table. `supported` gets CURING_OP_COUNT_ bytes (1 = supported).
/// Returns 0, or a negative errno if the probe itself is unsupported.
int curing_probe(curing_ring *ring, uint8_t *supported);
/// Name of a Spool opcode, and the kernel version that introduced it ("5.6").
const char *curing_opcode_name(int op);
const char *curing_opcode_min_kernel(int op);
/// 1 for opcodes Spool can live without (it uses a slower path), 0 for required ones.
int curing_opcode_optional(int op);

/// Submits queued SQEs. `wait_nr` > 0 waits for that many completions, for at most
/// `timeout_ns` (negative: no limit). Returns submitted count, or a negative errno.
/// EINTR and ETIME are reported as 0 (callers treat them as "nothing yet").
int curing_submit_and_wait(curing_ring *ring, unsigned wait_nr, int64_t timeout_ns);
/// Copies up to `max` completions to `out` and advances the CQ once. Returns the count.
unsigned curing_reap(curing_ring *ring, curing_cqe *out, unsigned max);

/// Every prep function returns 0, or -EBUSY when the SQ is full even after a submit.
/// `sqe_flags` takes the CURING_SQE_* bits below.
#define CURING_SQE_IO_LINK        (1u << 0)
#define CURING_SQE_BUFFER_SELECT  (1u << 1)
#define CURING_SQE_ASYNC          (1u << 2)
#define CURING_SQE_CQE_SKIP       (1u << 3)

int curing_prep_nop(curing_ring *r, uint64_t ud);
int curing_prep_accept(curing_ring *r, int fd, int multishot, uint64_t ud);
/// Provided-buffer receive from the ring's buffer group (multishot when asked).
int curing_prep_recv_select(curing_ring *r, int fd, int multishot, uint64_t ud);
/// Receive into caller memory. The memory must stay valid until the completion.
int curing_prep_recv(curing_ring *r, int fd, void *buf, size_t len, int flags, uint64_t ud, unsigned sqe_flags);
int curing_prep_send(curing_ring *r, int fd, const void *buf, size_t len, int flags, uint64_t ud, unsigned sqe_flags);
/// `msg` points at a `struct msghdr` (and its iovecs) that live until the completion.
/* One attempt with MSG_DONTWAIT: -EAGAIN when the socket has no room (no poll is armed). */
int curing_prep_send_now(curing_ring *r, int fd, const void *buf, size_t len, uint64_t ud);
int curing_prep_sendmsg(curing_ring *r, int fd, const void *msg, uint64_t ud, unsigned sqe_flags);
int curing_prep_connect(curing_ring *r, int fd, const void *addr, uint32_t addrlen, uint64_t ud, unsigned sqe_flags);
int curing_prep_shutdown(curing_ring *r, int fd, int how, uint64_t ud);
int curing_prep_close(curing_ring *r, int fd, uint64_t ud);
int curing_prep_openat(curing_ring *r, int dfd, const char *path, int flags, uint32_t mode, uint64_t ud);
int curing_prep_read(curing_ring *r, int fd, void *buf, uint32_t len, uint64_t off, int buf_index, uint64_t ud, unsigned sqe_flags);
int curing_prep_write(curing_ring *r, int fd, const void *buf, uint32_t len, uint64_t off, int buf_index, uint64_t ud, unsigned sqe_flags);
/* A scattered read into `nr` struct iovec at `iov` (valid until the completion). */
int curing_prep_readv(curing_ring *r, int fd, const void *iov, unsigned nr, uint64_t off, uint64_t ud, unsigned sqe_flags);
/* A gathered write of `nr` struct iovec at `iov` (they must stay valid until the completion). */
int curing_prep_writev(curing_ring *r, int fd, const void *iov, unsigned nr, uint64_t off, uint64_t ud, unsigned sqe_flags);
int curing_prep_fsync(curing_ring *r, int fd, int datasync, uint64_t ud);
int curing_prep_renameat(curing_ring *r, int olddfd, const char *oldpath, int newdfd, const char *newpath, uint64_t ud);
int curing_prep_unlinkat(curing_ring *r, int dfd, const char *path, int flags, uint64_t ud);
/// `statxbuf` points at a `struct statx` (256 bytes) that lives until the completion.
int curing_prep_statx(curing_ring *r, int dfd, const char *path, int flags, unsigned mask, void *statxbuf, uint64_t ud);
/// `ts` points at 16 bytes of storage that lives until the SQE is submitted.
int curing_prep_timeout(curing_ring *r, void *ts, int64_t ns, uint64_t ud);
/// Must directly follow an SQE prepared with CURING_SQE_IO_LINK.
int curing_prep_link_timeout(curing_ring *r, void *ts, int64_t ns, uint64_t ud);
int curing_prep_cancel(curing_ring *r, uint64_t target_ud, uint64_t ud);
/// splice(2) from `fd_in` at `off_in` (-1: a pipe, no offset) to `fd_out` (a pipe or a
/// socket), at most `len` bytes. io_uring runs every splice on an io-wq worker thread.
int curing_prep_splice(curing_ring *r, int fd_in, int64_t off_in, int fd_out, uint32_t len, uint64_t ud, unsigned sqe_flags);
/// A close-on-exec pipe for splicing, its capacity raised toward `want` bytes
/// (F_SETPIPE_SZ; a refusal, such as the per-user pipe limit, keeps the default).
/// Returns the capacity in bytes, or a negative errno (then no descriptor is open).
int curing_pipe(int fds[2], int want);

/// Registers an empty table of `count` fixed buffers (IORING_RSRC_REGISTER_SPARSE, 5.19+):
/// nothing is pinned until `curing_register_buffers_update` fills slots.
int curing_register_buffers_sparse(curing_ring *r, unsigned count);
/// Fills fixed-buffer slots `first ..< first + count` with the equal buffers laid out back
/// to back from `base` (pinning their pages). Returns the number updated or -errno.
int curing_register_buffers_update(curing_ring *r, unsigned first, void *base, size_t buffer_size, unsigned count);

/// Sets up the provided-buffer ring (group `bgid`, `entries` a power of two <= 32768)
/// with mmap + IORING_REGISTER_PBUF_RING, since liburing 2.3 has no helper for it.
int curing_buf_ring_setup(curing_ring *r, unsigned entries, int bgid);
/// Hands a buffer to the kernel. Publishes after `curing_buf_ring_publish`.
void curing_buf_ring_add(curing_ring *r, void *addr, uint32_t len, uint16_t bid);
void curing_buf_ring_publish(curing_ring *r);

/// Installs a seccomp filter that makes io_uring_setup/enter/register fail with EPERM
/// (as Docker's default profile does) for this process and everything it execs.
/// Used by tests and `spool kernel-check --simulate-seccomp`. Returns 0 or -errno.
int curing_deny_io_uring_seccomp(void);

#ifdef __cplusplus
}
#endif
#endif
