// Web.LaneShortcut: the fast lane (FastLane.swift) run in a request's receive completion.
// Between two requests of a keep-alive connection its task waits in `receive()`; the
// connection's receive shortcut (Ring.TCPConnection.receiveShortcut) looks at what
// arrives first, on the loop thread. When it is exactly one plain request whose route's
// fast handler answers, the answer is framed and queued for the socket right there, and
// the task is not resumed: no task switch, no executor round trip per poll (ADR 0019).
// Anything else (a partial head, pipelined requests, a body, a decline, a parse error,
// no pool buffer, a send queue already deep) is left to the task, which handles it as if
// the shortcut did not exist. On io_uring a kept answer is also handed to the
// connection's entry in the reap (Ring.ReplayTable), which then answers the repeats
// itself while its guards hold; what it leaves comes here as before.
import BufferPool
import HTTP1
import Ring
#if canImport(Glibc)
import Glibc
#endif

/// One connection's lane: the scratch both ways of answering use, and the shortcut.
final class LaneState {
    var lane = FastLaneScratch()
    /// The shortcut's own parser (the task's is in the middle of nothing while it waits,
    /// but it is the task's), reused so parsing allocates nothing.
    private var parser: RequestHeadParser
    private let server: HTTPServer
    private let registry: ConnectionRegistry

    init(server: HTTPServer, registry: ConnectionRegistry) {
        self.server = server
        self.registry = registry
        parser = RequestHeadParser(limits: server.configuration.limits)
    }

    /// The receive shortcut (Ring.TCPConnection.receiveShortcut): true when `piece` was
    /// one plain request and its answer is queued on `conn`.
    func answer(_ conn: TCPConnection, _ piece: borrowing PooledBuffer) -> Bool {
        piece.withUnsafeBytes { raw in answer(conn, raw) }
    }

    // The replay (ADR 0019, addendum): the last answer the shortcut made fresh, kept with
    // the request it answered when its handler allowed it (`FastReplay`). A poller asks the
    // same thing again and again on its connection, byte for byte; while the replay's check
    // finds what the answer was made from unchanged, that answer is the handler's answer
    // again (its parse, route, key and record are functions of those bytes and of what the
    // check covers), so it is sent again with a fresh Date and, when the server made the
    // request id, a fresh one, without parsing, routing or running the handler.
    private var replayRequest: [UInt8] = []
    private var replayAnswer: [UInt8] = []
    private var replayDateAt = 0
    /// The second the kept answer's Date names (-1: not known, rewrite it).
    private var replayDateSecond: Int64 = -1
    private var replayRequestIDAt = -1
    private var replay: FastReplay?
    /// Requests and answers larger than these are not kept for a replay (an idle
    /// connection keeps at most this much beside its lane scratch, ADR 0004).
    static let replayRequestMax = 2048
    static let replayAnswerMax = 16 * 1024

    /// True when `raw` was one plain request and its answer is queued on `conn`.
    private func answer(_ conn: TCPConnection, _ raw: UnsafeRawBufferPointer) -> Bool {
        guard !registry.draining, conn.queuedSendCount < HTTPServer.queuedResponsesMax else { return false }
        // Everything that could stop the answer from being queued is settled before the
        // handler runs (it counts and times the request in the metrics; a decline after
        // it would count the request twice when the task answers it again).
        let pool = conn.pool
        guard let buffer = pool.tryAcquire() else { return false }
        if let r = replay {
            if replayRequest.count == raw.count, replayRequest.withUnsafeBytes({ unsafe memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0 }) {
                if renewReplay(), r.check(r, { conn.loop.nanosSinceMark() }) {
                    guard send(replayAnswer, in: buffer, on: conn, replayed: true) else { return false }
                    // The reap may answer the next one itself (it waits for this send).
                    if reapKept { conn.armReplay() }
                    return true
                }
                // What the answer was made from changed: make it afresh below.
                dropReplay()
            }
        }
        parser.reset()
        guard let parsed = try? parser.parse(raw) else { return false }
        var head = parsed
        defer { parser.recycle(&head) }
        guard head.headLength == raw.count, head.keepAlive else { return false }
        guard server.router.answerFast(head, raw: raw, lane: &lane) else { return false }
        // A fast handler's invalid header (a bug) is answered 500 by the task's path, and
        // an answer larger than a pool buffer is sent by it too: both count twice.
        guard lane.response.invalidField == nil else { return false }
        HTTPServer.frame(&lane, date: registry.date)
        guard lane.out.count <= pool.bufferSizeBytes, send(lane.out, in: buffer, on: conn, replayed: false) else { return false }
        keepForReplay(raw, conn)
        lane.shedLargeArrays()
        return true
    }

    /// Whether the connection's reap entry holds the kept replay (Ring.ReplayTable): then
    /// each answer the shortcut sends arms it, and the reap replays the next poll itself.
    private var reapKept = false
    /// The fold the reap's replays of the last recorder are counted through (made once per
    /// recorder, not per keep).
    private var reapFold: (recorder: ObjectIdentifier, fold: (Int, Int64) -> Void)?

    /// Hands the kept replay to the connection's reap entry when its handler allowed that
    /// (`FastReplay.reapGuards`), and arms it.
    private func keepForReap(_ r: FastReplay, _ raw: UnsafeRawBufferPointer, _ conn: TCPConnection) {
        reapKept = false
        guard let guards = r.reapGuards, let recorder = r.recorder else { return }
        let key = ObjectIdentifier(recorder)
        if reapFold?.recorder != key {
            // Weak: the loop's table keeps the fold for the loop's life, and the server
            // may own the loop.
            reapFold = (key, { [weak server] count, nanoseconds in
                recorder.record(count, nanoseconds)
                server?.shortcutAnswers.add(count, ordering: .relaxed)
                server?.replayedAnswers.add(count, ordering: .relaxed)
            })
        }
        let keep = ReplayKeep(answer: replayAnswer, dateAt: replayDateAt, requestIDAt: replayRequestIDAt,
                              requestIDs: replayRequestIDAt >= 0 ? RequestIDs.counter : nil, guards: guards,
                              metricKey: key, fold: reapFold!.fold)
        reapKept = conn.keepReplay(request: raw, keep)
        if reapKept { conn.armReplay() }
    }

    /// Queues an answer and counts it. Counted first: the epoll backend sends inside
    /// `queue`, so a client may read the answer before anything done after it; whoever has
    /// read it also sees it counted. False (and uncounted) when the connection has failed:
    /// the task meets the same failure with the bytes.
    private func send(_ bytes: [UInt8], in buffer: consuming PooledBuffer, on conn: TCPConnection, replayed: Bool) -> Bool {
        server.shortcutAnswers.add(1, ordering: .relaxed)
        if replayed { server.replayedAnswers.add(1, ordering: .relaxed) }
        do {
            try server.queue(bytes, in: buffer, on: conn)
            return true
        } catch {
            server.shortcutAnswers.subtract(1, ordering: .relaxed)
            if replayed { server.replayedAnswers.subtract(1, ordering: .relaxed) }
            return false
        }
    }

    /// After a fresh answer: keeps it for a replay when its handler allowed one, else
    /// forgets the last one.
    private func keepForReplay(_ raw: UnsafeRawBufferPointer, _ conn: TCPConnection) {
        guard let r = lane.response.replay, raw.count <= Self.replayRequestMax, lane.out.count <= Self.replayAnswerMax,
              lane.dateAt >= 0 else {
            dropReplay()
            return
        }
        lane.response.replay = nil
        replayRequest.removeAll(keepingCapacity: true)
        unsafe replayRequest.append(contentsOf: raw)
        replayAnswer.removeAll(keepingCapacity: true)
        replayAnswer.append(contentsOf: lane.out)
        replayDateAt = lane.dateAt
        replayDateSecond = -1
        replayRequestIDAt = lane.requestIDAt
        replay = r
        keepForReap(r, raw, conn)
    }

    private func dropReplay() {
        replay = nil
        reapKept = false
        if replayAnswer.capacity > Self.replayAnswerMax { replayAnswer = [] }
    }

    /// The kept answer with this second's Date and, where the server made the request id,
    /// the next one. False if the Date is not the 29 bytes an IMF-fixdate is (never).
    private func renewReplay() -> Bool {
        let second = registry.dateSecondNow
        if second != replayDateSecond {
            var date = registry.date
            let at = replayDateAt
            // One access to the array for all 29 bytes (not one checked store per byte).
            let ok = date.withUTF8 { d in
                replayAnswer.withUnsafeMutableBytes { out in
                    guard d.count == 29, at >= 0, at + 29 <= out.count else { return false }
                    unsafe UnsafeMutableRawBufferPointer(rebasing: out[at..<(at + 29)]).copyMemory(from: UnsafeRawBufferPointer(d))
                    return true
                }
            }
            guard ok else { return false }
            // `date` may name a later second than `second` (the clock ticked between the
            // two reads): then the next answer sees a different second and rewrites again.
            replayDateSecond = second
        }
        if replayRequestIDAt >= 0 { RequestIDs.renew(&replayAnswer, at: replayRequestIDAt) }
        return true
    }
}
