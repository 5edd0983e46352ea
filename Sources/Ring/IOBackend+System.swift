// The synchronous descriptor calls of the two real backends (io_uring and epoll): the
// kernel's own socket, bind, listen, setsockopt, getsockname/getpeername, shutdown, close
// and fstat. The simulator implements the same calls on its in-memory sockets and files.
import Threads
#if canImport(Glibc)
import Glibc
#endif

/// A backend whose descriptors are the kernel's and whose clock is CLOCK_MONOTONIC.
protocol SystemDescriptors: IOBackend {}

extension SystemDescriptors {
    var keepsOwnTime: Bool { false }
    var nowNanos: Int64 { SystemClock.nanoseconds() }

    func socket(family: Int32) -> Int32 {
        let s = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        return s >= 0 ? s : -errno
    }

    func bind(fd: Int32, address: UnsafeRawPointer, length: UInt32) -> Int32 {
        unsafe Glibc.bind(fd, address.assumingMemoryBound(to: sockaddr.self), length) == 0 ? 0 : -errno
    }

    func listen(fd: Int32, backlog: Int32) -> Int32 { Glibc.listen(fd, backlog) == 0 ? 0 : -errno }

    func setOption(fd: Int32, level: Int32, name: Int32, value: UnsafeRawPointer, length: UInt32) -> Int32 {
        unsafe setsockopt(fd, level, name, value, length) == 0 ? 0 : -errno
    }

    func address(fd: Int32, peer: Bool, into storage: UnsafeMutableRawPointer, length: inout UInt32) -> Int32 {
        let sa = unsafe storage.assumingMemoryBound(to: sockaddr.self)
        let rc = unsafe peer ? getpeername(fd, sa, &length) : getsockname(fd, sa, &length)
        return rc == 0 ? 0 : -errno
    }

    func shutdownNow(fd: Int32, how: Int32) -> Int32 { Glibc.shutdown(fd, how) == 0 ? 0 : -errno }

    func closeNow(fd: Int32) -> Int32 { Glibc.close(fd) == 0 ? 0 : -errno }

    func fileSize(fd: Int32) -> Int64 {
        var st = stat()
        return unsafe fstat(fd, &st) == 0 ? Int64(st.st_size) : -Int64(errno)
    }
}

extension IOBackend {
    /// Sets a socket option from a plain value (an Int32, a `linger`, a `timeval`);
    /// returns 0 or a negative errno.
    @discardableResult
    func setOption<T: BitwiseCopyable>(fd: Int32, level: Int32, name: Int32, _ value: T) -> Int32 {
        unsafe withUnsafeBytes(of: value) { unsafe setOption(fd: fd, level: level, name: name, value: $0.baseAddress!, length: UInt32($0.count)) }
    }
}
