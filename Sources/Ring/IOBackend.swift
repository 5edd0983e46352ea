// IOBackend: the completion-based interface both backends implement.
//
// The event loop speaks io_uring's language to both: it prepares operations tagged with a
// 64-bit `user_data`, and later reaps completions `(user_data, res, flags)`. The io_uring
// backend maps each call to one SQE. The epoll backend emulates the same semantics with
// readiness plus non-blocking syscalls (multishot accept/recv included, provided buffers
// taken from the pool), so everything above this file is backend-agnostic.
// The interface is `package`: the seeded simulator (Sources/Simulation) implements it too,
// so the real loop, server and client run on simulated sockets, files and time. Socket
// set-up (socket, bind, listen, options, addresses) and synchronous closes go through it
// as well, so no code above the backend touches a descriptor directly.
// Non-goals: exposing backend specifics above the loop.
internal import CURing
#if canImport(Glibc)
import Glibc
#endif

public enum IOBackendKind: String, Sendable, CustomStringConvertible {
    case uring
    case epoll
    /// The seeded simulator (tests only).
    case simulated
    public var description: String { rawValue }
}

/// A completion as the loop sees it (layout-compatible with `curing_cqe`).
package struct Completion: Equatable {
    package var user_data: UInt64
    package var res: Int32
    package var flags: UInt32
    package init(user_data: UInt64, res: Int32, flags: UInt32) {
        self.user_data = user_data
        self.res = res
        self.flags = flags
    }
}

package enum CQEFlag {
    package static let buffer = UInt32(CURING_CQE_F_BUFFER)
    package static let more = UInt32(CURING_CQE_F_MORE)
    package static let bufferShift = UInt32(CURING_CQE_BUFFER_SHIFT)
}

/// Reserved `user_data` values for completions the loop consumes itself.
package enum ReservedUserData {
    /// Linked timeouts and cancel requests: their completions carry nothing we need.
    package static let ignored: UInt64 = .max
    /// The cross-thread wakeup read on the eventfd.
    package static let wakeup: UInt64 = .max - 1
}

package protocol IOBackend: AnyObject {
    var kind: IOBackendKind { get }
    /// The reap's replayed answers (io_uring only; ReplayTable.swift).
    var replayTable: ReplayTable? { get }
    /// True when the backend keeps its own time (`nowNanos`); the loop then reads its clock
    /// from the backend instead of CLOCK_MONOTONIC.
    var keepsOwnTime: Bool { get }
    /// The backend's clock in nanoseconds (real backends: CLOCK_MONOTONIC).
    var nowNanos: Int64 { get }
    /// Human-readable facts for the one startup log line (flags, features).
    var summary: String { get }
    /// True when `recvSelect(multishot: true)` keeps delivering until disarmed.
    var supportsMultishotRecv: Bool { get }
    /// True when pool buffers are registered as fixed buffers (READ_FIXED/WRITE_FIXED).
    var usesFixedBuffers: Bool { get }
    /// True when pool buffer `index` is registered (its pages pinned): it must keep its
    /// pages, so trimming skips it.
    func isFixedRegistered(bufferIndex: UInt32) -> Bool

    // Each prep returns 0, or a negative errno when the operation could not be queued.
    func nop(_ ud: UInt64) -> Int32
    func accept(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32
    /// Receive into a pool buffer chosen when data arrives (provided buffers).
    func recvSelect(fd: Int32, multishot: Bool, _ ud: UInt64) -> Int32
    func recv(fd: Int32, into: UnsafeMutableRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32
    func send(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32
    /// One send attempt that never waits for socket space: -EAGAIN when there is none.
    /// Lets a timed send skip arming its timer when the socket takes the bytes at once.
    func sendNow(fd: Int32, from: UnsafeRawPointer, count: Int, _ ud: UInt64) -> Int32
    /// `message` is a `struct msghdr` with its iovecs, alive until the completion.
    func sendmsg(fd: Int32, message: UnsafeRawPointer, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32
    func connect(fd: Int32, address: UnsafeRawPointer, length: UInt32, _ ud: UInt64, timeout: UnsafeMutableRawPointer?, timeoutNs: Int64) -> Int32
    func shutdown(fd: Int32, how: Int32, _ ud: UInt64) -> Int32
    func close(fd: Int32, _ ud: UInt64) -> Int32
    func openat(path: UnsafePointer<CChar>, flags: Int32, mode: UInt32, _ ud: UInt64) -> Int32
    func read(fd: Int32, into: UnsafeMutableRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32
    func write(fd: Int32, from: UnsafeRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32
    /// preadv into `count` iovecs at `vectors` (valid until the completion).
    func readv(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32
    /// pwritev of `count` iovecs at `vectors` (valid until the completion).
    func writev(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32
    func fsync(fd: Int32, dataOnly: Bool, _ ud: UInt64) -> Int32
    func rename(from: UnsafePointer<CChar>, to: UnsafePointer<CChar>, _ ud: UInt64) -> Int32
    func unlink(path: UnsafePointer<CChar>, directory: Bool, _ ud: UInt64) -> Int32
    func statx(path: UnsafePointer<CChar>, into: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32
    /// `storage` is 16 bytes owned by the operation's slot.
    func timeout(nanoseconds: Int64, storage: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32
    func cancel(_ target: UInt64) -> Int32

    /// Arms (or re-arms after its completion) a read of the loop's eventfd that completes
    /// with `ReservedUserData.wakeup`. `storage` is 8 bytes owned by the loop.
    func armWakeup(fd: Int32, storage: UnsafeMutableRawPointer) -> Int32

    /// A buffer the pool handed back: lend it to the kernel (returns true) or not.
    func offerBuffer(_ index: UInt32) -> Bool
    /// Buffers a provided-buffer receive could take right now (io_uring: in the ring;
    /// epoll: free in the pool).
    var receiveBuffersAvailable: Int { get }
    /// The fd is being closed by the loop: forget any per-fd state.
    func forget(fd: Int32)

    /// Submits queued work; waits for at least one completion when `wait` is true (for at
    /// most `timeoutNs`, negative: no limit); copies up to `max` completions to `out`.
    func submitAndReap(wait: Bool, timeoutNs: Int64, into out: UnsafeMutablePointer<Completion>, max: Int) -> Int

    func shutdownBackend()

    // Synchronous socket and descriptor calls (the kernel's at once: socket set-up, options,
    // addresses, closes that cannot wait for a slot). Each returns >= 0 or a negative errno.
    func socket(family: Int32) -> Int32
    func bind(fd: Int32, address: UnsafeRawPointer, length: UInt32) -> Int32
    func listen(fd: Int32, backlog: Int32) -> Int32
    func setOption(fd: Int32, level: Int32, name: Int32, value: UnsafeRawPointer, length: UInt32) -> Int32
    /// getsockname (or getpeername with `peer`) into `storage` (a sockaddr_storage);
    /// `length` is the storage size on entry and the address length on return.
    func address(fd: Int32, peer: Bool, into storage: UnsafeMutableRawPointer, length: inout UInt32) -> Int32
    func shutdownNow(fd: Int32, how: Int32) -> Int32
    func closeNow(fd: Int32) -> Int32
    /// The size of an open file (fstat), or a negative errno.
    func fileSize(fd: Int32) -> Int64

    // Zero-copy sends of file ranges: a file's page-cache pages go to a pipe and from the
    // pipe to a socket by reference (splice). A backend without it says so; callers then
    // copy through pool buffers.
    /// True when `makePipe` and `splice` work.
    var supportsSplice: Bool { get }
    /// A close-on-exec pipe whose capacity is raised toward `capacity` bytes: its read and
    /// write ends and the capacity it got, or a negative errno in `capacity`.
    func makePipe(capacity: Int) -> (read: Int32, write: Int32, capacity: Int)
    /// splice(2) of up to `count` bytes from `from` (at `offset`; -1 for a pipe) to `to`.
    /// No linked timeout: on Linux 6.18 one does not interrupt a splice that waits for
    /// socket space on a worker thread (an ASYNC_CANCEL does). Deadlines on the socket
    /// side are the socket's own (SO_SNDTIMEO).
    func splice(from: Int32, offset: Int64, to: Int32, count: Int, _ ud: UInt64) -> Int32
}

extension IOBackend {
    package var replayTable: ReplayTable? { nil }
    package var supportsSplice: Bool { false }
    package func makePipe(capacity: Int) -> (read: Int32, write: Int32, capacity: Int) { (-1, -1, Int(-EOPNOTSUPP)) }
    package func splice(from: Int32, offset: Int64, to: Int32, count: Int, _ ud: UInt64) -> Int32 { -EOPNOTSUPP }
}
