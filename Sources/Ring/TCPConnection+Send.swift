// Sending on a TCP connection: pool buffers, buffer lists (vectored), and copies of
// bytes. Short sends continue; a deadline covers the whole send, not each piece. Each
// send here waits for the bytes queued before it (TCPConnection+QueuedSend.swift). No
// send waits for a pool buffer: when the pool is empty the bytes go from a heap copy,
// so a loop whose buffers are all held by senders cannot deadlock on itself.
import BufferPool
import Threads
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

extension TCPConnection {
    // MARK: Send

    /// Sends every valid byte of `buffer` (short sends are continued), then returns the
    /// buffer to the pool. Waits while the peer is not reading (socket backpressure).
    nonisolated(nonsending) public func send(_ buffer: consuming PooledBuffer, timeout: Duration? = nil) async throws(RingError) {
        let parts = pool.disassemble(buffer)
        defer { _ = pool.reassemble(parts) }
        unsafe try await sendAll(pool.address(of: parts.index), count: parts.count, timeoutNs: timeout?.nanoseconds)
    }

    /// Most buffers one vectored send carries (the iovecs live in the operation's scratch).
    public static let vectorMax = 8

    /// Sends the valid bytes of every buffer in `list`, in order, with one sendmsg per
    /// attempt over up to `vectorMax` buffers; short sends continue where they stopped.
    nonisolated(nonsending) public func send(_ list: consuming PooledBufferList, timeout: Duration? = nil) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "sendmsg") }
        if needsFlush { try await flushSends() }
        opsInFlight += 1
        defer { operationEnded() }
        let tns = timeout?.nanoseconds
        var cursor = BufferListCursor()
        while !cursor.isDone(list) {
            let from = cursor
            let r = await loop.perform(cancellable: followsTaskCancellation) { ud, slot in
                // msghdr at scratch+0, iovecs at scratch+64 (8 x 16 bytes).
                let scratch = unsafe loop.scratch(slot)
                let iov = unsafe (scratch + 64).bindMemory(to: iovec.self, capacity: Self.vectorMax)
                let n = unsafe from.vectors(list, into: iov, max: Self.vectorMax)
                let msg = unsafe scratch.bindMemory(to: msghdr.self, capacity: 1)
                unsafe msg.initialize(to: msghdr())
                unsafe msg.pointee.msg_iov = iov
                unsafe msg.pointee.msg_iovlen = n
                return unsafe loop.backend.sendmsg(fd: fd, message: scratch, ud,
                                            timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
            }
            if r.res <= 0 {
                throw r.res == 0 ? RingError(.brokenPipe, operation: "sendmsg") : timeoutAware(r.res, "sendmsg", hadTimeout: tns != nil)
            }
            cursor.advance(by: Int(r.res), in: list)
        }
    }

    /// Sends `bytes` (copied into pool buffers). The concrete overload spares callers in
    /// other modules the unspecialized generic path.
    nonisolated(nonsending) public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws(RingError) {
        if needsFlush { try await flushSends() }
        var at = 0
        while at < bytes.count {
            guard var b = pool.tryAcquire() else {
                // The pool is empty: send the rest from a heap copy rather than wait. Waiting
                // could deadlock a loop whose buffers are held by connections that are
                // themselves waiting to send.
                let n = bytes.count - at
                let heap = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 16)
                defer { unsafe heap.deallocate() }
                unsafe bytes.withUnsafeBytes { unsafe heap.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
                unsafe try await sendAll(heap, count: n, timeoutNs: timeout?.nanoseconds)
                return
            }
            let n = min(b.capacity, bytes.count - at)
            unsafe b.withUnsafeMutableBytes { dst in
                unsafe bytes.withUnsafeBytes { src in unsafe dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[at..<(at + n)])) }
            }
            b.count = n
            at += n
            try await send(b, timeout: timeout)
        }
    }

    /// Sends a copy of `bytes` through pool buffers; the same rule as the `[UInt8]`
    /// overload: when the pool is empty the rest goes from a heap copy, never a wait.
    public func send(_ bytes: some Collection<UInt8>, timeout: Duration? = nil) async throws(RingError) {
        if needsFlush { try await flushSends() }
        var rest = bytes[...]
        while !rest.isEmpty {
            guard var b = pool.tryAcquire() else {
                try await send(Array(rest), timeout: timeout)
                return
            }
            let n = min(b.capacity, rest.count)
            let chunk = rest.prefix(n)
            unsafe b.withUnsafeMutableBytes { dst in
                let copied: Void? = chunk.withContiguousStorageIfAvailable { src in
                    unsafe dst.copyMemory(from: UnsafeRawBufferPointer(src))
                }
                if copied == nil { _ = unsafe dst.initializeMemory(as: UInt8.self, from: chunk) }
            }
            b.count = n
            rest = rest.dropFirst(n)
            try await send(b, timeout: timeout)
        }
    }

    nonisolated(nonsending) private func sendAll(_ base: UnsafeMutableRawPointer, count: Int, timeoutNs: Int64?) async throws(RingError) {
        if closed { throw RingError(.closed, operation: "send") }
        if needsFlush { try await flushSends() }
        opsInFlight += 1
        defer { operationEnded() }
        var sent = 0
        if timeoutNs != nil {
            // Optimistic first attempt without a timer: a response that fits in the socket
            // buffer (the common case) never arms and cancels a linked timeout.
            let r = await loop.perform(cancellable: false) { ud, _ in unsafe loop.backend.sendNow(fd: fd, from: base, count: count, ud) }
            if r.res > 0 {
                sent = Int(r.res)
            } else if r.res != -EAGAIN && r.res != -EWOULDBLOCK {
                throw r.res == 0 ? RingError(.brokenPipe, operation: "send") : RingError(errno: -r.res, operation: "send")
            }
        }
        // The deadline covers the whole send: a reader taking a few bytes at a time must not
        // restart it with every partial send.
        let deadline = timeoutNs.map { loop.nowNanos &+ $0 }
        while sent < count {
            var leftNs: Int64? = nil
            if let deadline {
                let left = deadline - loop.nowNanos
                guard left > 0 else { throw RingError(.timedOut, operation: "send") }
                leftNs = max(1, left)
            }
            let tns = leftNs
            let r = await loop.perform(cancellable: followsTaskCancellation) { ud, slot in
                unsafe loop.backend.send(fd: fd, from: base + sent, count: count - sent, ud,
                                  timeout: tns == nil ? nil : loop.timeoutScratch(slot), timeoutNs: tns ?? -1)
            }
            if r.res <= 0 {
                throw r.res == 0 ? RingError(.brokenPipe, operation: "send") : timeoutAware(r.res, "send", hadTimeout: timeoutNs != nil)
            }
            sent += Int(r.res)
        }
    }
}
