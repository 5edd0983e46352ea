// curing.c: the liburing side of the CURing shim. See include/CURing.h for the contract.
// liburing is included here only; Swift sees the prefixed functions and nothing else.
#ifndef _GNU_SOURCE
#error "CURing needs _GNU_SOURCE (set in Package.swift cSettings)"
#endif
#include "CURing.h"
#include "curing_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

_Static_assert(sizeof(struct __kernel_timespec) == 16, "timeout storage is 16 bytes");

curing_ring *curing_ring_create(unsigned entries, unsigned wanted, unsigned *got, int *err) {
    curing_ring *r = calloc(1, sizeof *r);
    if (!r) { *err = ENOMEM; return NULL; }
    // Try the fastest combination first and drop flags the kernel refuses, newest first.
    unsigned tries[5];
    int n = 0;
    unsigned cur = wanted;
    tries[n++] = cur;
    const unsigned order[4] = {CURING_SETUP_DEFER_TASKRUN, CURING_SETUP_SINGLE_ISSUER,
                               CURING_SETUP_COOP_TASKRUN, CURING_SETUP_SUBMIT_ALL};
    for (int i = 0; i < 4; i++) {
        if (cur & order[i]) { cur &= ~order[i]; tries[n++] = cur; }
    }
    int last = 0;
    for (int i = 0; i < n; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        unsigned f = tries[i];
        if (f & CURING_SETUP_COOP_TASKRUN) p.flags |= IORING_SETUP_COOP_TASKRUN;
        if (f & CURING_SETUP_SINGLE_ISSUER) p.flags |= IORING_SETUP_SINGLE_ISSUER;
        if (f & CURING_SETUP_DEFER_TASKRUN) p.flags |= IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
        if (f & CURING_SETUP_SUBMIT_ALL) p.flags |= IORING_SETUP_SUBMIT_ALL;
        // A CQ twice the SQ (the default) plus CQSIZE headroom for multishot bursts.
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        int rc = io_uring_queue_init_params(entries, &r->ring, &p);
        if (rc == 0) {
            if (got) *got = f;
            r->br_group = -1;
            // Register the ring's own descriptor with this thread (the loop's, which alone
            // enters the ring): each io_uring_enter then names it by index and the kernel
            // skips looking it up and reference-counting it. liburing uses the index once
            // this succeeds; where it fails (before 5.18, or filtered) the plain fd is used.
            r->ring_fd_registered = io_uring_register_ring_fd(&r->ring) == 1;
            return r;
        }
        last = -rc;
        // Only an unknown flag (EINVAL) is worth another try; EPERM/ENOSYS/ENOMEM are final.
        if (last != EINVAL) break;
    }
    free(r);
    *err = last;
    return NULL;
}

void curing_ring_destroy(curing_ring *r) {
    if (!r) return;
    if (r->br) {
        io_uring_unregister_buf_ring(&r->ring, r->br_group);
        munmap(r->br, r->br_bytes);
    }
    // The registration holds the ring open until it is dropped (or the registering thread
    // ends). Only ours: an unregister by index with none made could drop another ring's.
    if (r->ring_fd_registered) (void)io_uring_unregister_ring_fd(&r->ring);
    io_uring_queue_exit(&r->ring);
    curing_replays_destroy(r);
    free(r);
}

unsigned curing_sq_space_left(const curing_ring *r) { return io_uring_sq_space_left((struct io_uring *)&r->ring); }

static const struct { int kernel_op; const char *name; const char *since; int optional; } op_table[CURING_OP_COUNT_] = {
    [CURING_OP_NOP] = {IORING_OP_NOP, "NOP", "5.1", 0},
    [CURING_OP_ACCEPT] = {IORING_OP_ACCEPT, "ACCEPT", "5.5", 0},
    [CURING_OP_RECV] = {IORING_OP_RECV, "RECV", "5.6", 0},
    [CURING_OP_SEND] = {IORING_OP_SEND, "SEND", "5.6", 0},
    [CURING_OP_SENDMSG] = {IORING_OP_SENDMSG, "SENDMSG", "5.3", 0},
    [CURING_OP_CONNECT] = {IORING_OP_CONNECT, "CONNECT", "5.5", 0},
    [CURING_OP_SHUTDOWN] = {IORING_OP_SHUTDOWN, "SHUTDOWN", "5.11", 0},
    [CURING_OP_CLOSE] = {IORING_OP_CLOSE, "CLOSE", "5.6", 0},
    [CURING_OP_OPENAT] = {IORING_OP_OPENAT, "OPENAT", "5.6", 0},
    [CURING_OP_READ] = {IORING_OP_READ, "READ", "5.6", 0},
    [CURING_OP_WRITE] = {IORING_OP_WRITE, "WRITE", "5.6", 0},
    [CURING_OP_READ_FIXED] = {IORING_OP_READ_FIXED, "READ_FIXED", "5.1", 1},
    [CURING_OP_WRITE_FIXED] = {IORING_OP_WRITE_FIXED, "WRITE_FIXED", "5.1", 1},
    [CURING_OP_FSYNC] = {IORING_OP_FSYNC, "FSYNC", "5.1", 0},
    [CURING_OP_RENAMEAT] = {IORING_OP_RENAMEAT, "RENAMEAT", "5.11", 0},
    [CURING_OP_UNLINKAT] = {IORING_OP_UNLINKAT, "UNLINKAT", "5.11", 0},
    [CURING_OP_STATX] = {IORING_OP_STATX, "STATX", "5.6", 0},
    [CURING_OP_TIMEOUT] = {IORING_OP_TIMEOUT, "TIMEOUT", "5.4", 0},
    [CURING_OP_LINK_TIMEOUT] = {IORING_OP_LINK_TIMEOUT, "LINK_TIMEOUT", "5.5", 0},
    [CURING_OP_ASYNC_CANCEL] = {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL", "5.5", 0},
    [CURING_OP_SPLICE] = {IORING_OP_SPLICE, "SPLICE", "5.7", 1},
};

const char *curing_opcode_name(int op) { return (op >= 0 && op < CURING_OP_COUNT_) ? op_table[op].name : "?"; }
const char *curing_opcode_min_kernel(int op) { return (op >= 0 && op < CURING_OP_COUNT_) ? op_table[op].since : "?"; }
int curing_opcode_optional(int op) { return (op >= 0 && op < CURING_OP_COUNT_) ? op_table[op].optional : 0; }

int curing_probe(curing_ring *r, uint8_t *supported) {
    struct io_uring_probe *p = io_uring_get_probe_ring(&r->ring);
    if (!p) return -EOPNOTSUPP;
    for (int i = 0; i < CURING_OP_COUNT_; i++) supported[i] = io_uring_opcode_supported(p, op_table[i].kernel_op) ? 1 : 0;
    io_uring_free_probe(p);
    return 0;
}

int curing_submit_and_wait(curing_ring *r, unsigned wait_nr, int64_t timeout_ns) {
    int rc;
    if (wait_nr == 0) {
        // With DEFER_TASKRUN completions only run inside io_uring_enter(GETEVENTS), so a
        // plain submit is not enough to make progress: ask for events without waiting.
        rc = io_uring_submit_and_get_events(&r->ring);
    } else if (timeout_ns < 0) {
        rc = io_uring_submit_and_wait(&r->ring, wait_nr);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000LL, .tv_nsec = timeout_ns % 1000000000LL};
        struct io_uring_cqe *cqe = NULL;
        rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, wait_nr, &ts, NULL);
    }
    if (rc == -EINTR || rc == -ETIME || rc == -EAGAIN || rc == -EBUSY) return 0;
    return rc;
}

unsigned curing_reap(curing_ring *r, curing_cqe *out, unsigned max) {
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        if (n == max) break;
        out[n].user_data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
    }
    if (n) io_uring_cq_advance(&r->ring, n);
    return n;
}

// Returns an SQE, submitting once to make room when the SQ is full.
struct io_uring_sqe *curing_get_sqe(curing_ring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

static void apply_flags(struct io_uring_sqe *sqe, unsigned f) {
    if (f & CURING_SQE_IO_LINK) sqe->flags |= IOSQE_IO_LINK;
    if (f & CURING_SQE_BUFFER_SELECT) sqe->flags |= IOSQE_BUFFER_SELECT;
    if (f & CURING_SQE_ASYNC) sqe->flags |= IOSQE_ASYNC;
    if (f & CURING_SQE_CQE_SKIP) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

#define GET_SQE_OR_BUSY(sqe) struct io_uring_sqe *sqe = curing_get_sqe(r); if (!sqe) return -EBUSY

int curing_prep_nop(curing_ring *r, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_accept(curing_ring *r, int fd, int multishot, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    if (multishot) io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    else io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_recv_select(curing_ring *r, int fd, int multishot, uint64_t ud) {
    if (r->br_group < 0) return -EINVAL;
    GET_SQE_OR_BUSY(sqe);
    if (multishot) io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    else io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (uint16_t)r->br_group;
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_recv(curing_ring *r, int fd, void *buf, size_t len, int flags, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_recv(sqe, fd, buf, len, flags);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_send(curing_ring *r, int fd, const void *buf, size_t len, int flags, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_send(sqe, fd, buf, len, flags | MSG_NOSIGNAL);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_send_now(curing_ring *r, int fd, const void *buf, size_t len, uint64_t ud) {
    return curing_prep_send(r, fd, buf, len, MSG_DONTWAIT, ud, 0);
}

int curing_prep_sendmsg(curing_ring *r, int fd, const void *msg, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_sendmsg(sqe, fd, (const struct msghdr *)msg, MSG_NOSIGNAL);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_connect(curing_ring *r, int fd, const void *addr, uint32_t addrlen, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)addr, addrlen);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_shutdown(curing_ring *r, int fd, int how, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_shutdown(sqe, fd, how);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_close(curing_ring *r, int fd, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_openat(curing_ring *r, int dfd, const char *path, int flags, uint32_t mode, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_openat(sqe, dfd, path, flags | O_CLOEXEC, mode);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_read(curing_ring *r, int fd, void *buf, uint32_t len, uint64_t off, int buf_index, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    if (buf_index >= 0) io_uring_prep_read_fixed(sqe, fd, buf, len, off, buf_index);
    else io_uring_prep_read(sqe, fd, buf, len, off);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_write(curing_ring *r, int fd, const void *buf, uint32_t len, uint64_t off, int buf_index, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    if (buf_index >= 0) io_uring_prep_write_fixed(sqe, fd, buf, len, off, buf_index);
    else io_uring_prep_write(sqe, fd, buf, len, off);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_readv(curing_ring *r, int fd, const void *iov, unsigned nr, uint64_t off, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_readv(sqe, fd, (const struct iovec *)iov, nr, off);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_writev(curing_ring *r, int fd, const void *iov, unsigned nr, uint64_t off, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_writev(sqe, fd, (const struct iovec *)iov, nr, off);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_fsync(curing_ring *r, int fd, int datasync, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_renameat(curing_ring *r, int olddfd, const char *oldpath, int newdfd, const char *newpath, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_renameat(sqe, olddfd, oldpath, newdfd, newpath, 0);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_unlinkat(curing_ring *r, int dfd, const char *path, int flags, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_unlinkat(sqe, dfd, path, flags);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_statx(curing_ring *r, int dfd, const char *path, int flags, unsigned mask, void *statxbuf, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_statx(sqe, dfd, path, flags, mask, (struct statx *)statxbuf);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

static void fill_ts(void *ts, int64_t ns) {
    struct __kernel_timespec *t = ts;
    if (ns < 0) ns = 0;
    t->tv_sec = ns / 1000000000LL;
    t->tv_nsec = ns % 1000000000LL;
}

int curing_prep_timeout(curing_ring *r, void *ts, int64_t ns, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    fill_ts(ts, ns);
    io_uring_prep_timeout(sqe, ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_link_timeout(curing_ring *r, void *ts, int64_t ns, uint64_t ud) {
    // The linked pair must not be split by an SQ-full submit in between: the caller checks
    // curing_sq_space_left() >= 2 before preparing the linked op.
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    fill_ts(ts, ns);
    io_uring_prep_link_timeout(sqe, ts, 0);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_cancel(curing_ring *r, uint64_t target_ud, uint64_t ud) {
    GET_SQE_OR_BUSY(sqe);
    io_uring_prep_cancel64(sqe, target_ud, 0);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_prep_splice(curing_ring *r, int fd_in, int64_t off_in, int fd_out, uint32_t len, uint64_t ud, unsigned f) {
    GET_SQE_OR_BUSY(sqe);
    // The output end never has an offset (a pipe or a socket); SPLICE_F_MOVE is a hint
    // the kernel ignores today, so no flag is passed.
    io_uring_prep_splice(sqe, fd_in, off_in, fd_out, -1, len, 0);
    apply_flags(sqe, f);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int curing_pipe(int fds[2], int want) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
    int got = fcntl(fds[1], F_SETPIPE_SZ, want);
    if (got < 0) got = fcntl(fds[1], F_GETPIPE_SZ);
    if (got <= 0) {
        int e = got < 0 ? errno : EINVAL;
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    return got;
}

int curing_register_buffers_sparse(curing_ring *r, unsigned count) {
    return io_uring_register_buffers_sparse(&r->ring, count);
}

int curing_register_buffers_update(curing_ring *r, unsigned first, void *base, size_t buffer_size, unsigned count) {
    struct iovec *iov = calloc(count, sizeof *iov);
    if (!iov) return -ENOMEM;
    for (unsigned i = 0; i < count; i++) {
        iov[i].iov_base = (char *)base + (size_t)i * buffer_size;
        iov[i].iov_len = buffer_size;
    }
    int rc = io_uring_register_buffers_update_tag(&r->ring, first, iov, NULL, count);
    free(iov);
    return rc;
}

int curing_buf_ring_setup(curing_ring *r, unsigned entries, int bgid) {
    if (r->br) return -EEXIST;
    if (entries == 0 || entries > 32768 || (entries & (entries - 1))) return -EINVAL;
    size_t bytes = (size_t)entries * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)mem;
    reg.ring_entries = entries;
    reg.bgid = (uint16_t)bgid;
    int rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (rc < 0) { munmap(mem, bytes); return rc; }
    r->br = mem;
    r->br_bytes = bytes;
    r->br_entries = entries;
    r->br_group = bgid;
    r->br_pending = 0;
    io_uring_buf_ring_init(r->br);
    return 0;
}

void curing_buf_ring_add(curing_ring *r, void *addr, uint32_t len, uint16_t bid) {
    io_uring_buf_ring_add(r->br, addr, len, bid, io_uring_buf_ring_mask(r->br_entries), r->br_pending);
    r->br_pending++;
}

void curing_buf_ring_publish(curing_ring *r) {
    if (r->br_pending) {
        io_uring_buf_ring_advance(r->br, r->br_pending);
        r->br_pending = 0;
    }
}

int curing_deny_io_uring_seccomp(void) {
#if defined(__x86_64__)
    const uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const uint32_t arch = AUDIT_ARCH_AARCH64;
#else
    return -ENOTSUP;
#endif
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof filter / sizeof filter[0]), .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    // TSYNC: every thread of the process gets the filter, not only the caller (Swift's
    // async main runs commands on a pool thread).
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) return -errno;
    return 0;
}
