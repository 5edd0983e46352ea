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

// ---- Replayed answers (ADR 0019, addendum 5) ----
// A keep-alive poller sends the same request bytes again and again, and while what the
// answer was made from stands, the answer is the same but for its Date and request id.
// The HTTP server keeps such a request and its framed answer in a `curing_replay` per
// connection and arms it while the connection's task waits for the next request. The
// reap (`curing_reap_replaying`) then answers a receive that carries exactly the kept
// request itself: the Date and request id renewed in place, a send of the kept answer
// prepared, the receive's buffer handed back to the buffer ring, and the completion
// never copied out to Swift. Anything else (another request, a guard that moved, a send
// of the connection's in flight, a receive that ends its multishot) goes to Swift as
// before. Every field is touched on the loop thread only.

/// How many distinct counters replays are folded into (one per route and server).
#define CURING_REPLAY_METRICS 16
/// The bit that marks a replay's user_data (a send of the reap's, or an event for Swift):
/// low 32 bits `CURING_REPLAY_UD_BIT | index`, high 32 bits the entry's generation
/// (below 2^31). Swift's own user_data keep the slot (below 2^30) in the low 32 bits.
#define CURING_REPLAY_UD_BIT 0x40000000u
#define CURING_REPLAY_INDEX_MASK 0x00FFFFFFu
/// In the flags of a replay send's completion copied out: every byte was sent.
#define CURING_REPLAY_SENT_WHOLE (1u << 15)

typedef struct curing_replay {
    // Set by Swift.
    uint64_t recv_ud;             // the multishot receive this entry may answer
    const uint64_t *guard[4];     // the answer stands while each non-NULL *guard[i] == expect[i]
    uint64_t expect[4];           //   (read with acquire ordering)
    uint64_t *request_ids;        // the server's request-id counter (NULL: no id is made)
    void *owner;                  // the connection (unretained; valid while the entry is open)
    int32_t date_at;              // offset of the Date's 29 bytes in `answer`
    int32_t rid_at;               // offset of the request id's 16 counter digits, or -1
    uint32_t metric;              // which of the CURING_REPLAY_METRICS counters it counts in
    uint8_t armed;                // the task waits and the kept answer may be sent
    uint8_t swift_sends;          // Swift has sends queued or in flight on the socket
    uint8_t notify;               // hand the next replay send's completion to Swift
    // Set by the reap.
    uint8_t sending;              // a replay's send is in flight (the answer is the kernel's)
    int64_t last_active;          // CLOCK_MONOTONIC ns of the last replay
    // Owned by replay.c.
    uint8_t in_use, released;
    uint32_t gen, next_free;
    int fd;
    uint8_t *request, *answer;
    uint32_t request_len, request_cap, answer_len, answer_cap;
    int64_t date_second;
} curing_replay;

typedef struct curing_replay_stat {
    uint64_t count;               // replays since Swift last folded them
    int64_t nanos;                // their time in the reap, summed
} curing_replay_stat;

/// Sets up `capacity` entries (at most 2^24), for receives whose user_data carry a slot
/// below `slots`, with the pool laid out as `buffer_size`-byte buffers from `pool_base`
/// (the provided buffer ring's buffer id is the pool index). 0 or -ENOMEM.
int curing_replays_setup(curing_ring *r, unsigned capacity, unsigned slots, void *pool_base, uint32_t buffer_size);
/// An entry for connection `fd`, or NULL (none set up, or all in use). `*index` and the
/// entry's `gen` name it in replay user_data.
curing_replay *curing_replay_open(curing_ring *r, int fd, void *owner, uint32_t *index);
/// The connection is gone: the entry is freed now, or when its send completes.
void curing_replay_release(curing_ring *r, curing_replay *e);
/// Keeps a request and its framed answer (copied). -EBUSY while a replay's send is in
/// flight (the answer is the kernel's), -ENOMEM; the entry is disarmed either way.
int curing_replay_keep(curing_replay *e, const void *request, uint32_t request_len,
                       const void *answer, uint32_t answer_len, int32_t date_at, int32_t rid_at);
/// Arms the entry for receive `recv_ud` (a slot below `slots`).
void curing_replay_arm(curing_ring *r, curing_replay *e, uint64_t recv_ud);
/// The entry a replay user_data names, or NULL when it was released or reused since.
curing_replay *curing_replay_lookup(curing_ring *r, uint64_t ud);
/// `curing_reap` with replays: copies out up to `max` completions for Swift and answers
/// the armed entries' receives itself. A replay send that failed, or one that completed
/// with `notify` set, is copied out with its user_data (CURING_REPLAY_UD_BIT set) and
/// CURING_REPLAY_SENT_WHOLE in its flags when it sent every byte.
/// `*replayed` gets how many receives it answered.
unsigned curing_reap_replaying(curing_ring *r, curing_cqe *out, unsigned max, unsigned *replayed);
/// The counters replays add to (CURING_REPLAY_METRICS of them); Swift zeroes what it folds.
curing_replay_stat *curing_replay_stats(curing_ring *r);

/// Installs a seccomp filter that makes io_uring_setup/enter/register fail with EPERM
/// (as Docker's default profile does) for this process and everything it execs.
/// Used by tests and `spool kernel-check --simulate-seccomp`. Returns 0 or -errno.
int curing_deny_io_uring_seccomp(void);

#ifdef __cplusplus
}
#endif
#endif
