// The reap's replay of a connection's kept answer (ReplayTable.swift; ADR 0019, addendum 5).
//
// The HTTP server keeps a poll's request and answer here and arms the entry when its task
// waits for the next request; the reap then answers that exact request again without
// Swift. This file holds what keeps that in step with the connection:
//  - any receive completion the reap leaves to Swift, a wake of the waiting task and a
//    close disarm it (TCPConnection.swift);
//  - Swift's queued sends wait behind a replay's send in flight and ask to be told when it
//    ends (`notify`); the reap does not replay while Swift has anything queued
//    (`swift_sends`); awaited sends, shutdown and close flush first (`needsFlush`);
//  - an idle timeout counts from the last replay (`replayDeadlineLeft`).
internal import CURing
import Threads

extension TCPConnection {
    /// Keeps `request` and the answer in `keep` for the reap to replay, disarmed (`armReplay`
    /// arms it). False when this loop has no replay table, the answer depends on more
    /// guards than an entry holds, the metric counters are all taken, or a replay's send
    /// is still in flight; the connection then replays nothing until the next keep.
    public func keepReplay(request: UnsafeRawBufferPointer, _ keep: ReplayKeep) -> Bool {
        guard let table = loop.replayTable, !closed, keep.guards.count <= 4,
              let metric = table.metricIndex(for: keep.metricKey, fold: keep.fold) else {
            disarmReplay()
            return false
        }
        if unsafe replayEntry == nil {
            unsafe replayEntry = table.openEntry(fd: fd, owner: Unmanaged.passUnretained(self).toOpaque())
        }
        guard let e = unsafe replayEntry else { return false }
        let rc = unsafe keep.answer.withUnsafeBytes { a in
            unsafe curing_replay_keep(e, request.baseAddress, UInt32(request.count), a.baseAddress, UInt32(a.count),
                                      Int32(keep.dateAt), Int32(keep.requestIDAt))
        }
        guard rc == 0 else { return false }
        var words = keep.guards.map(\.word)
        func slot(_ k: Int) -> (UnsafePointer<UInt64>?, UInt64) {
            k < keep.guards.count ? (unsafe UnsafePointer(keep.guards[k].word.address), keep.guards[k].value) : (nil, 0)
        }
        let (g0, v0) = unsafe slot(0), (g1, v1) = unsafe slot(1), (g2, v2) = unsafe slot(2), (g3, v3) = unsafe slot(3)
        unsafe e.pointee.guard = unsafe (g0, g1, g2, g3)
        unsafe e.pointee.expect = (v0, v1, v2, v3)
        if keep.requestIDAt >= 0, let ids = keep.requestIDs {
            words.append(ids)
            unsafe e.pointee.request_ids = ids.address
        } else {
            unsafe e.pointee.request_ids = nil
        }
        unsafe e.pointee.metric = metric
        // The entry points at these words from now on: hold them while it may.
        replayWords = words
        return true
    }

    /// Arms the kept replay: the reap may answer the next receive itself. For the task's
    /// receive shortcut, while the task waits in `receive()` with nothing received.
    public func armReplay() {
        guard let table = loop.replayTable, let e = unsafe replayEntry, let ud = recvUD, !closed, onData == nil else { return }
        unsafe table.arm(e, receive: ud)
    }

    /// Stops the reap from replaying (the kept answer stays for a later `armReplay`).
    public func disarmReplay() {
        if let e = unsafe replayEntry { unsafe e.pointee.armed = 0 }
    }

    /// Whether a replay's send is in flight: the socket's next bytes are its.
    var replaySending: Bool {
        guard let e = unsafe replayEntry else { return false }
        return unsafe e.pointee.sending != 0
    }

    /// Whether anything queued for the socket has not been sent yet (a queued send or a
    /// replay's): awaited sends, shutdown and close wait for it first.
    var needsFlush: Bool { !outbox.isEmpty || replaySending }

    /// Tells the reap whether Swift has sends queued or in flight (it replays only when not).
    func noteQueuedSends() {
        if let e = unsafe replayEntry { unsafe e.pointee.swift_sends = (queuedSendInFlight || !outbox.isEmpty) ? 1 : 0 }
    }

    /// Asks the reap to hand the completion of the replay's send in flight to Swift.
    func notifyAfterReplaySend() {
        if let e = unsafe replayEntry { unsafe e.pointee.notify = 1 }
    }

    /// Nanoseconds left of an idle wait that replays moved on: the last replay plus the
    /// shortcut's wait, when that is still ahead; nil otherwise.
    func replayDeadlineLeft() -> Int64? {
        guard let e = unsafe replayEntry, let wait = receiveShortcutWaitNanoseconds else { return nil }
        let last = unsafe e.pointee.last_active
        guard last != 0 else { return nil }
        let left = (last &+ wait) - loop.nowNanos
        return left > 0 ? left : nil
    }

    /// A replay's send ended and Swift was to hear of it: it failed (the stream is broken,
    /// as when a queued send fails), or a sender waits behind it.
    func replaySendFinished(_ res: Int32, whole: Bool) {
        if !whole {
            let failure = res == 0 ? RingError(.brokenPipe, operation: "send")
                : res > 0 ? RingError(.brokenPipe, operation: "send", reason: "short send of a replayed answer")
                : RingError(errno: -res, operation: "send")
            failQueuedSends(failure)
        } else if !queuedSendInFlight, !outbox.isEmpty {
            issueQueuedSend()
        }
        noteQueuedSends()
        if outbox.isEmpty { flushParker.wake(loop: loop) }
    }
}
