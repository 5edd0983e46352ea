// Web.LaneShortcut: the fast lane (FastLane.swift) run in a request's receive completion.
// Between two requests of a keep-alive connection its task waits in `receive()`; the
// connection's receive shortcut (Ring.TCPConnection.receiveShortcut) looks at what
// arrives first, on the loop thread. When it is exactly one plain request whose route's
// fast handler answers, the answer is framed and queued for the socket right there, and
// the task is not resumed: no task switch, no executor round trip per poll (ADR 0019).
// Anything else (a partial head, pipelined requests, a body, a decline, a parse error,
// no pool buffer, a send queue already deep) is left to the task, which handles it as if
// the shortcut did not exist.
import BufferPool
import HTTP1
import Ring

/// One connection's lane: the scratch both ways of answering use, and the shortcut.
final class LaneState {
    var lane = FastLaneScratch()
    /// The shortcut's own parser (the task's is in the middle of nothing while it waits,
    /// but it is the task's), reused so parsing allocates nothing.
    private var parser: RequestHeadParser
    private let server: HTTPServer
    private let registry: ConnectionRegistry
    /// The shortcut as a closure, made once per connection (a closure made per wait would
    /// allocate its context every time).
    private(set) var handler: ((TCPConnection, borrowing PooledBuffer) -> Bool)!

    init(server: HTTPServer, registry: ConnectionRegistry) {
        self.server = server
        self.registry = registry
        parser = RequestHeadParser(limits: server.configuration.limits)
        handler = { [unowned self] conn, piece in piece.withUnsafeBytes { raw in self.answer(conn, raw) } }
    }

    /// True when `raw` was one plain request and its answer is queued on `conn`.
    private func answer(_ conn: TCPConnection, _ raw: UnsafeRawBufferPointer) -> Bool {
        guard !registry.draining, conn.queuedSendCount < HTTPServer.queuedResponsesMax else { return false }
        // Everything that could stop the answer from being queued is settled before the
        // handler runs (it counts and times the request in the metrics; a decline after
        // it would count the request twice when the task answers it again).
        guard let pool = conn.loop.pool, let buffer = pool.tryAcquire() else { return false }
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
        guard lane.out.count <= pool.bufferSizeBytes else { return false }
        do {
            try server.queue(lane.out, in: buffer, on: conn)
        } catch {
            // The connection has failed: the task meets the same failure with the bytes.
            return false
        }
        lane.shedLargeArrays()
        server.fastAnswers.add(1, ordering: .relaxed)
        server.shortcutAnswers.add(1, ordering: .relaxed)
        return true
    }
}
