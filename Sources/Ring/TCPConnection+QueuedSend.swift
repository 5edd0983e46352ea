// Queued sends: bytes handed to the kernel without the sender waiting for them.
//
// A server answering a small request does not need to wait until the socket took its
// response before it reads the next request: `sendQueued` puts a pool buffer in the
// connection's outbox and returns; the loop sends the outbox in order, one operation at a
// time, from completion callbacks (no task is resumed for them). The sender waits only
// when it must: `flushSends()` before closing or before a send that waits (every awaited
// send and `shutdown` flush first, so bytes never overtake each other and a FIN follows
// the bytes queued before it). The first failure is kept: the next `sendQueued` or
// `flushSends` throws it, the rest of the outbox is dropped, and the socket is shut down
// both ways (the connection is broken; a receive waiting on it ends).
// Each buffer's deadline covers its whole send; the first attempt does not wait for socket
// space, so a response that fits (the common case) arms no timer and reads no clock: a
// buffer sent at once starts its deadline when the socket first has no room for it (after
// microseconds of attempts that did not wait), one queued behind others when it is queued.
// Non-goals: a bound on the outbox (the caller checks `queuedSendCount`).
import BufferPool
#if canImport(Glibc)
import Glibc
#endif

struct QueuedSend {
    var parts: PooledBuffer.Parts
    /// The send's time limit in nanoseconds (nil: none).
    var timeoutNs: Int64?
    /// Monotonic deadline for the whole buffer: nil until set (see above), or when no limit.
    var deadline: Int64?
}

extension TCPConnection {
    /// Queues the valid bytes of `buffer` after every send queued before it and returns at
    /// once; the loop sends them. Throws (and returns the buffer to the pool) when an
    /// earlier queued send failed or the connection is closed.
    public func sendQueued(_ buffer: consuming PooledBuffer, timeout: Duration? = nil) throws(RingError) {
        try sendQueued(buffer, timeoutNanoseconds: timeout?.nanoseconds)
    }

    /// The same with the time limit in nanoseconds (nil: none), for a caller that sends
    /// with one limit again and again and converts it once (a `Duration`'s conversion is
    /// 128-bit arithmetic).
    public func sendQueued(_ buffer: consuming PooledBuffer, timeoutNanoseconds timeoutNs: Int64?) throws(RingError) {
        loop.assertInLoop()
        let parts = pool.disassemble(buffer)
        if let failure = closed ? RingError(.closed, operation: "send") : queuedSendFailure {
            _ = pool.reassemble(parts)
            throw failure
        }
        if parts.count == 0 {
            _ = pool.reassemble(parts)
            return
        }
        let behind = queuedSendInFlight || !outbox.isEmpty || replaySending
        outbox.append(QueuedSend(parts: parts, timeoutNs: timeoutNs, deadline: behind ? timeoutNs.map { loop.nowNanos &+ $0 } : nil))
        if !queuedSendInFlight { issueQueuedSend() }
        noteQueuedSends()
    }

    /// Buffers queued and not yet wholly sent (a replay's send in flight counts as one).
    public var queuedSendCount: Int { outbox.count + (replaySending ? 1 : 0) }

    /// Waits until every queued byte is sent; throws the first queued send's failure.
    nonisolated(nonsending) public func flushSends() async throws(RingError) {
        while needsFlush {
            if replaySending { notifyAfterReplaySend() }
            _ = await flushParker.wait(loop: loop, cancellable: false)
        }
        if let failure = queuedSendFailure { throw failure }
    }

    /// Starts the next attempt for the outbox's first buffer.
    func issueQueuedSend() {
        guard let head = outbox.first else { return }
        // The reap's replay owns the socket's next bytes until its send ends (it tells us).
        if replaySending { return notifyAfterReplaySend() }
        if closed { return failQueuedSends(RingError(.closed, operation: "send")) }
        let base = unsafe pool.address(of: head.parts.index) + outboxSent
        let count = head.parts.count - outboxSent
        var waitNs: Int64?
        if outboxMayWait, let deadline = head.deadline {
            let left = deadline - loop.nowNanos
            guard left > 0 else { return failQueuedSends(RingError(.timedOut, operation: "send")) }
            waitNs = left
        }
        guard let (slot, ud) = loop.allocSlot() else {
            return failQueuedSends(RingError(.slotsExhausted, operation: "send"))
        }
        loop.setHandler(slot, .queuedSend(self))
        let rc: Int32
        if !outboxMayWait {
            rc = unsafe loop.backend.sendNow(fd: fd, from: base, count: count, ud)
        } else {
            rc = unsafe loop.backend.send(fd: fd, from: base, count: count, ud,
                                          timeout: waitNs == nil ? nil : loop.timeoutScratch(slot), timeoutNs: waitNs ?? -1)
        }
        if rc < 0 {
            loop.freeSlot(slot)
            return failQueuedSends(RingError(errno: -rc, operation: "send"))
        }
        queuedSendInFlight = true
        opsInFlight += 1
    }

    /// The loop delivers each queued send's completion here.
    func queuedSendCompleted(_ res: Int32) {
        queuedSendInFlight = false
        operationEnded()
        if res > 0 {
            outboxSent += Int(res)
            outboxMayWait = false
            if let head = outbox.first, outboxSent >= head.parts.count {
                _ = outbox.popFirst()
                _ = pool.reassemble(head.parts)
                outboxSent = 0
            }
            issueQueuedSend()
        } else if res == -EAGAIN || res == -EWOULDBLOCK {
            // The socket is full: wait for space now, under the buffer's deadline.
            outboxMayWait = true
            let now = loop.nowNanos
            outbox.updateFirst { q in
                if q.deadline == nil, let t = q.timeoutNs { q.deadline = now &+ t }
            }
            issueQueuedSend()
        } else {
            let failure = res == 0 ? RingError(.brokenPipe, operation: "send")
                : res == -ECANCELED ? RingError(.timedOut, operation: "send")
                : RingError(errno: -res, operation: "send")
            failQueuedSends(failure)
        }
        noteQueuedSends()
        if outbox.isEmpty { flushParker.wake(loop: loop) }
    }

    func failQueuedSends(_ failure: RingError) {
        disarmReplay()
        if queuedSendFailure == nil {
            queuedSendFailure = failure
            // Part of a message may have gone out: the stream is unusable. Shut it down
            // both ways so a receive waiting on this connection ends now too, instead of
            // at its own timeout.
            if !closed { _ = loop.backend.shutdownNow(fd: fd, how: Int32(SHUT_RDWR)) }
        }
        while let q = outbox.popFirst() { _ = pool.reassemble(q.parts) }
        outboxSent = 0
        outboxMayWait = false
        noteQueuedSends()
        flushParker.wake(loop: loop)
    }
}
