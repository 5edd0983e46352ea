// Sending a range of a file on a TCP connection (downloads). On io_uring with SPLICE the
// bytes never enter user space: a splice moves the file's page-cache pages into a pipe
// by reference, a second moves them from the pipe into the socket, and TCP sends those
// pages (the copy the reader makes is the only one). Otherwise, and for small ranges,
// the range is read into pool buffers and sent with vectored sends.
// io_uring runs each splice on one of its kernel worker threads, which blocks there
// while the socket is full; the loop bounds how many run at once
// (`EventLoop.Configuration.splicedSendsMax`) and copies past that, so slow readers
// cannot pile up threads. A linked timeout does not interrupt such a splice (measured on
// 6.18: the splice waited on past its timeout), so the deadline is the socket's own
// SO_SNDTIMEO, set for the transfer and cleared after it; an ASYNC_CANCEL (task
// cancellation) and close()'s shutdown do interrupt it.
import BufferPool
#if canImport(Glibc)
import Glibc
#endif

extension TCPConnection {
    /// Ranges shorter than this are copied: the pipe's two system calls and the two
    /// worker-thread hand-offs cost more than copying a few pool buffers.
    public static let spliceMinimum: UInt64 = 256 * 1024

    /// Pipe capacity asked for (the default maximum an unprivileged process may set).
    static let splicePipeCapacity = 1 << 20

    /// Sends bytes `range` of `file` (after anything queued before it). The send fails
    /// with `.timedOut` once the peer has taken nothing for `timeout` (by splice, after
    /// between one and two timeouts: a wait cut short by the deadline first returns what
    /// it moved). A file that turns out shorter than the range fails with `.closed`
    /// ("file shrank while being sent"): the caller promised the peer that many bytes and
    /// must end the connection.
    nonisolated(nonsending) public func send(file: File, range: Range<UInt64>, timeout: Duration? = nil) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "send file") }
        if range.isEmpty { return }
        if needsFlush { try await flushSends() }
        let loop = self.loop
        if range.count >= Self.spliceMinimum, loop.backend.supportsSplice, loop.splicedSends < loop.configuration.splicedSendsMax {
            loop.splicedSends += 1
            defer { loop.splicedSends -= 1 }
            if try await splice(file: file, range: range, timeout: timeout) {
                loop.splicedSendsDone += 1
                return
            }
        }
        try await copy(file: file, range: range, timeout: timeout)
    }

    /// The splice path. Returns false, having sent nothing, when splice cannot be used
    /// here (no pipe, or a file system without splice support); the caller copies.
    nonisolated(nonsending) private func splice(file: File, range: Range<UInt64>, timeout: Duration?) async throws(RingError) -> Bool {
        let loop = self.loop
        let pipe = loop.backend.makePipe(capacity: Self.splicePipeCapacity)
        guard pipe.capacity > 0 else { return false }
        defer {
            _ = loop.backend.closeNow(fd: pipe.read)
            _ = loop.backend.closeNow(fd: pipe.write)
        }
        opsInFlight += 1
        defer { operationEnded() }
        if timeout != nil { setSendTimeout(timeout) }
        defer { if timeout != nil { setSendTimeout(nil) } }
        var at = range.lowerBound
        while at < range.upperBound {
            let want = Int(min(UInt64(pipe.capacity), range.upperBound - at))
            let offset = Int64(at)
            // File to pipe: the pipe is empty, so this waits only for the disk.
            let r = await loop.perform(cancellable: false) { ud, _ in
                loop.backend.splice(from: file.fd, offset: offset, to: pipe.write, count: want, ud)
            }
            if r.res < 0 && at == range.lowerBound && (r.res == -EINVAL || r.res == -EOPNOTSUPP) { return false }
            if r.res < 0 { throw RingError(errno: -r.res, operation: "splice from \(file.path)") }
            if r.res == 0 { throw RingError(.closed, operation: "file shrank while being sent") }
            at += UInt64(r.res)
            // Pipe to socket, until the pipe is empty.
            var inPipe = Int(r.res)
            while inPipe > 0 {
                if closed { throw RingError(.closed, operation: "splice to socket") }
                let n = inPipe
                let s = await loop.perform(cancellable: followsTaskCancellation) { ud, _ in
                    loop.backend.splice(from: pipe.read, offset: -1, to: fd, count: n, ud)
                }
                if s.res <= 0 {
                    if s.res == 0 { throw RingError(.brokenPipe, operation: "splice to socket") }
                    if s.res == -EAGAIN && timeout != nil { throw RingError(.timedOut, operation: "splice to socket") }
                    throw RingError(errno: -s.res, operation: "splice to socket")
                }
                inPipe -= Int(s.res)
            }
        }
        return true
    }

    /// SO_SNDTIMEO: how long a blocking send (a splice on a worker thread) waits for
    /// socket space; nil waits without limit. The loop's own sends never block, so they
    /// do not see it.
    private func setSendTimeout(_ timeout: Duration?) {
        let ns = timeout.map { max(1_000, $0.nanoseconds) } ?? 0
        loop.backend.setOption(fd: fd, level: SOL_SOCKET, name: SO_SNDTIMEO, timeval(tv_sec: Int(ns / 1_000_000_000), tv_usec: Int(ns % 1_000_000_000 / 1_000)))
    }

    /// The copy path: up to `vectorMax` pool buffers filled by one scattered read, then one
    /// vectored send (a read and a sendmsg per 128 KiB rather than per 16 KiB buffer).
    nonisolated(nonsending) private func copy(file: File, range: Range<UInt64>, timeout: Duration?) async throws(RingError) {
        let bufferSize = pool.bufferSizeBytes
        var at = range.lowerBound
        while at < range.upperBound {
            let want = Int(min(UInt64(Self.vectorMax * bufferSize), range.upperBound - at))
            var batch = PooledBufferList()
            while batch.count * bufferSize < want { batch.append(await loop.pool.acquire()) }
            let n = try await file.read(into: &batch, at: at, limit: want)
            guard n == want else { throw RingError(.closed, operation: "file shrank while being sent") }
            at += UInt64(n)
            try await send(batch, timeout: timeout)
        }
    }
}
