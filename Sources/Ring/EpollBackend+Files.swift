// EpollBackend, file operations: readiness cannot express them (a disk read never reports
// "would block"), so they run on the process's BlockingPool, as io_uring runs them on its
// io-wq workers, and their results come back through the loop's remote queue like any
// other completion. The caller keeps paths and buffers alive until the completion (File
// holds its C strings across the await; an operation's slot holds its buffer).
import Synchronization
import Threads
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

/// Blocking-pool jobs of one backend not yet completed (shutdown waits for them: they
/// write into buffers the loop owns).
final class Offloaded: Sendable {
    let count = Atomic<Int>(0)
}

/// The raw pointers a pool job uses, alive until its completion, which the job delivers last.
/// (@unchecked Sendable: the loop hands them to one pool thread and does not touch the
/// memory again until that job's completion comes back to it.)
@unsafe private struct JobArgs: @unchecked Sendable {
    var pointer: UnsafeMutableRawPointer?
    var path: UnsafePointer<CChar>?
    var path2: UnsafePointer<CChar>?
}

extension EpollBackend {
    /// On the loop thread: a pool job's result joins the completions of this iteration.
    func completeOffloaded(_ ud: UInt64, _ res: Int32) { complete(ud, res) }

    /// Runs `syscall` on the blocking pool and completes `ud` with its result. Without a
    /// loop to post to (or with the pool's queue full) it runs here, synchronously.
    private func offload(_ ud: UInt64, _ args: JobArgs, _ syscall: @escaping @Sendable (JobArgs) -> Int32) -> Int32 {
        if let post = postCompletion {
            let counter = offloaded
            counter.count.add(1, ordering: .relaxed)
            do {
                try BlockingPool.shared.submit {
                    unsafe post(ud, syscall(args))
                    counter.count.subtract(1, ordering: .releasing)
                }
                return 0
            } catch {
                counter.count.subtract(1, ordering: .relaxed)
            }
        }
        unsafe complete(ud, syscall(args))
        return 0
    }

    func openat(path: UnsafePointer<CChar>, flags: Int32, mode: UInt32, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(path: path)) { a in
            let fd = unsafe Glibc.openat(AT_FDCWD, a.path!, flags | O_CLOEXEC, mode)
            return fd >= 0 ? fd : -errno
        }
    }

    func read(fd: Int32, into: UnsafeMutableRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(pointer: into)) { a in
            var n: Int
            repeat { n = unsafe pread(fd, a.pointer!, count, off_t(offset)) } while n < 0 && errno == EINTR
            return n >= 0 ? Int32(n) : -errno
        }
    }

    func write(fd: Int32, from: UnsafeRawPointer, count: Int, offset: UInt64, bufferIndex: Int32, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(pointer: UnsafeMutableRawPointer(mutating: from))) { a in
            var n: Int
            repeat { n = unsafe pwrite(fd, a.pointer!, count, off_t(offset)) } while n < 0 && errno == EINTR
            return n >= 0 ? Int32(n) : -errno
        }
    }

    func readv(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(pointer: UnsafeMutableRawPointer(mutating: vectors))) { a in
            var n: Int
            repeat {
                n = unsafe preadv(fd, a.pointer!.assumingMemoryBound(to: iovec.self), Int32(count), off_t(offset))
            } while n < 0 && errno == EINTR
            return n >= 0 ? Int32(n) : -errno
        }
    }

    func writev(fd: Int32, vectors: UnsafeRawPointer, count: Int, offset: UInt64, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(pointer: UnsafeMutableRawPointer(mutating: vectors))) { a in
            var n: Int
            repeat {
                n = unsafe pwritev(fd, a.pointer!.assumingMemoryBound(to: iovec.self), Int32(count), off_t(offset))
            } while n < 0 && errno == EINTR
            return n >= 0 ? Int32(n) : -errno
        }
    }

    func fsync(fd: Int32, dataOnly: Bool, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs()) { _ in (dataOnly ? fdatasync(fd) : Glibc.fsync(fd)) == 0 ? 0 : -errno }
    }

    func rename(from: UnsafePointer<CChar>, to: UnsafePointer<CChar>, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(path: from, path2: to)) { a in unsafe Glibc.rename(a.path!, a.path2!) == 0 ? 0 : -errno }
    }

    func unlink(path: UnsafePointer<CChar>, directory: Bool, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(path: path)) { a in unsafe unlinkat(AT_FDCWD, a.path!, directory ? AT_REMOVEDIR : 0) == 0 ? 0 : -errno }
    }

    func statx(path: UnsafePointer<CChar>, into: UnsafeMutableRawPointer, _ ud: UInt64) -> Int32 {
        unsafe offload(ud, JobArgs(pointer: into, path: path)) { a in unsafe cepoll_statx(AT_FDCWD, a.path!, 0, 0x7ff, a.pointer!) }
    }
}
