// Web.HTTPServer: HTTP/1.1 on the Spool runtime. One SO_REUSEPORT listener per event loop;
// each connection is a task on its loop that parses heads with HTTP1 (strictly), reads
// Content-Length or chunked bodies within the route's limit, answers pipelined requests in
// order, and enforces a whole-head deadline (slowloris: 408 and close; a new connection's
// first byte too) and an idle keep-alive timeout. HEAD is answered for every GET route
// (same headers, no body). Every failure leaves as the standard error body (see APIError).
// Routes choose buffered bodies (with a limit, 413 before reading) or streamed ones
// (RequestBody), both under BodyTimeLimits; a refusal never waits for the body. Responses
// are bytes, chunked streams (SSE) or file ranges. One connection cap holds across loops,
// and each loop gives memory back after a burst (EventLoop.trimMemory).
// Non-goals here: TLS (nginx terminates it), HTTP/2.
import BufferPool
import HTTP1
import Logging
import Ring
import Synchronization
import Threads

public struct HTTPServerConfiguration: Sendable {
    public var listen: SocketAddress
    public var loops: Int = 1
    public var limits = HTTPLimits()
    /// The whole request head must arrive within this time from its first byte; a new
    /// connection must send its first request within it too (then it is closed quietly).
    public var headTimeout: Duration = .seconds(10)
    /// A keep-alive connection idle between requests is closed after this.
    public var idleTimeout: Duration = .seconds(60)
    /// Default body limit for buffering routes that do not set one.
    public var bodyBytesMax: UInt64 = 1 << 20
    /// When set, read for each request that has a body instead of `bodyBytesMax`: a limit
    /// a configuration reload changes (`http.json_body_max_bytes`).
    public var bodyBytesMaxNow: (@Sendable () -> UInt64)?
    /// Told of every request refused before the router saw it (400, 408, 413, 414, 431,
    /// 505...): the method and route pattern when they were known, and the status. The
    /// router's middleware (metrics) never sees these.
    public var refused: (@Sendable (_ method: String?, _ route: String?, _ status: Int) -> Void)?
    /// How long a client may take to send a request body (routes can override).
    public var bodyTimeLimits = BodyTimeLimits()
    /// Longest wait for the next piece of a request body (`bodyTimeLimits.pieceTimeout`).
    public var bodyTimeout: Duration {
        get { bodyTimeLimits.pieceTimeout }
        set { bodyTimeLimits.pieceTimeout = newValue }
    }
    /// Longest wait for a client to take a piece of the response.
    public var sendTimeout: Duration = .seconds(30)
    /// Connections the server serves at once, all loops together (SO_REUSEPORT spreads
    /// new connections unevenly, so a per-loop cap would refuse early on one loop); more
    /// are closed as they arrive.
    public var connectionsMax = 10_000
    public var loop = EventLoop.Configuration()
    /// After a burst: when a loop's connections are this far below their high-water mark
    /// and stopped falling, the loop gives memory back (stale deadlines, free pool pages,
    /// free heap pages; see `EventLoop.trimMemory`). Checked every `memoryTrimInterval`.
    public var memoryTrimConnectionDrop = 256
    public var memoryTrimInterval: Duration = .seconds(2)

    public init(listen: SocketAddress) { self.listen = listen }
}

public final class HTTPServer: Sendable {
    public let configuration: HTTPServerConfiguration
    public let router: Router
    private let state = ServerState()
    /// Connections being served, all loops together.
    private let connections = Atomic<Int>(0)
    let logger: Logger

    public init(configuration: HTTPServerConfiguration, router: Router, logger: Logger = Logger(label: "spool.http")) {
        self.configuration = configuration
        self.router = router
        self.logger = logger
        sendTimeoutNanoseconds = configuration.sendTimeout.nanosecondsClamped
    }

    /// `configuration.sendTimeout` in nanoseconds, converted once for the queued answers.
    let sendTimeoutNanoseconds: Int64

    /// Connections being served now, all loops together.
    public var connectionCount: Int { connections.load(ordering: .relaxed) }
    /// Fast-lane answers the connection's task made (the receive shortcut counts its own).
    let taskFastAnswers = Atomic<Int>(0)
    /// Requests answered on the fast lane (FastLane.swift) since start: by the task or by
    /// the receive shortcut (one count per answer on the shortcut's path, not two).
    public var fastAnswerCount: Int { taskFastAnswers.load(ordering: .relaxed) + shortcutAnswers.load(ordering: .relaxed) }
    let shortcutAnswers = Atomic<Int>(0)
    /// Of those, the ones answered in their receive completion (no task resumed).
    public var shortcutAnswerCount: Int { shortcutAnswers.load(ordering: .relaxed) }
    let replayedAnswers = Atomic<Int>(0)
    /// Of those, answers replayed for a byte-identical request (LaneShortcut.swift).
    public var replayedAnswerCount: Int { replayedAnswers.load(ordering: .relaxed) }
    /// The I/O backend the server's loops run (nil before `start`).
    public var backendKind: IOBackendKind? { state.loops.first?.backendKind }
    /// Of those, the ones the io_uring reap answered by itself (Ring.ReplayTable).
    public var reapReplayCount: Int { state.loops.reduce(0) { $0 + $1.reapReplays } }
    private let memoryTrims = Atomic<Int>(0)
    /// How many times a loop gave memory back after a burst.
    public var memoryTrimCount: Int { memoryTrims.load(ordering: .relaxed) }

    /// The address actually bound (port 0 resolved); valid after `start`.
    public var localAddress: SocketAddress? { state.address }

    /// Whether `stop` shuts the loops down (they were started by `start()`).
    private let ownsLoops = Atomic<Bool>(true)

    /// Starts `configuration.loops` loops and their listeners. Returns once every listener is bound.
    public func start() async throws(RingError) {
        var loops: [EventLoop] = []
        for i in 0..<configuration.loops {
            loops.append(try EventLoop.start(id: i, configuration: configuration.loop, logger: logger))
        }
        try await listen(on: loops)
    }

    /// Serves on loops the caller runs (one listener each; `configuration.loops` and
    /// `configuration.loop` are not used). `stop` leaves these loops running. May be called
    /// from a task on one of them (the simulator runs server and clients on one loop).
    public func start(on loops: [EventLoop]) async throws(RingError) {
        ownsLoops.store(false, ordering: .relaxed)
        try await listen(on: loops)
    }

    private func listen(on loops: [EventLoop]) async throws(RingError) {
        var address = configuration.listen
        for (i, loop) in loops.enumerated() {
            let bound = address
            let made: Result<(LoopBound<TCPListener>, LoopBound<ConnectionRegistry>, SocketAddress), RingError>
            do {
                made = try await loop.run {
                    Result { () throws(RingError) in
                        // The first loop's listener claims the port for this server alone;
                        // the others join it (TCPListener.init, `exclusive`).
                        let l = try TCPListener(address: bound, exclusive: i == 0)
                        // Replayed answers time themselves from the pass's mark.
                        loop.marksPasses = true
                        return (LoopBound(l, loop: loop), LoopBound(ConnectionRegistry(), loop: loop), l.localAddress)
                    }
                }
            } catch {
                // The body never throws (its failure is the Result), so this is unreachable;
                // `run` is declared throwing because tasks are.
                made = .failure(RingError(.invalidArgument, operation: "listen \(bound)", reason: "\(error)"))
            }
            let (listener, registry, actual) = try made.get()
            address = actual        // the other loops share the port chosen by the first
            let server = self
            let trimmer = loop.spawn {
                // Ends when stop() cancels it (the sleep throws).
                while true {
                    try await loop.sleep(for: server.configuration.memoryTrimInterval)
                    if registry.value.shouldTrim(drop: server.configuration.memoryTrimConnectionDrop) {
                        loop.trimMemory()
                        server.memoryTrims.add(1, ordering: .relaxed)
                    }
                }
            }
            state.add(loop: loop, listener: listener, registry: registry, trimmer: trimmer, address: actual)
            loop.spawn {
                let l = listener.value
                // Failed accepts since the last warning, and when it was: one line per
                // episode and then at most one every 10 s (an fd limit hit under load
                // logged 40 lines a second).
                var failedAccepts = 0
                var warnedAt: MonotonicInstant?
                while true {
                    let conn: TCPConnection
                    do {
                        conn = try await l.accept()
                    } catch let e as RingError where e.code == .closed || e.code == .cancelled {
                        return
                    } catch {
                        // EMFILE, ENFILE, ENOMEM...: the listener must keep accepting once
                        // the pressure passes, so back off briefly and try again.
                        failedAccepts += 1
                        if warnedAt.map({ loop.now - $0 >= .seconds(10) }) ?? true {
                            server.logger.warning("accept failed; retrying every 50 ms", metadata: [
                                "error": "\(error)", "failed_since_last_warning": "\(failedAccepts)"])
                            failedAccepts = 0
                            warnedAt = loop.now
                        }
                        try? await loop.sleep(for: .milliseconds(50))
                        continue
                    }
                    if warnedAt != nil {
                        server.logger.notice("accepting again", metadata: ["failed_since_last_warning": "\(failedAccepts)"])
                        failedAccepts = 0
                        warnedAt = nil
                    }
                    // Past the server's cap, new connections are closed at once (RST): the
                    // fds and pools stay for the connections already served.
                    if server.connections.add(1, ordering: .relaxed).newValue > server.configuration.connectionsMax {
                        server.connections.subtract(1, ordering: .relaxed)
                        conn.setResetOnClose()
                        await conn.close()
                        continue
                    }
                    let c = LoopBound(conn, loop: loop)
                    loop.spawn {
                        await server.serve(c.value, loop: loop, registry: registry.value)
                        server.connections.subtract(1, ordering: .relaxed)
                    }
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting, close idle keep-alive connections, let requests
    /// in flight finish (their responses carry `Connection: close`), and after `grace`
    /// close whatever is left; then stop the loops. Every loop stops accepting before any
    /// waits for its requests: one loop's slow upload must not leave another's listener
    /// taking new connections for the whole grace.
    public func stop(grace: Duration = .seconds(5)) async {
        let all = state.takeAll()
        for (loop, listener, registry, trimmer) in all {
            trimmer.cancel()
            _ = await trimmer.result
            _ = try? await loop.run {
                await listener.value.close()
                for c in registry.value.drain() { await c.close() }
            }
        }
        let deadline = ContinuousClock.now + grace
        for (loop, _, registry, _) in all {
            let left = max(.zero, deadline - ContinuousClock.now)
            _ = try? await loop.run {
                await registry.value.waitUntilEmpty(loop: loop, grace: left)
                for c in registry.value.inOrder { await c.conn.close() }
            }
            if ownsLoops.load(ordering: .relaxed) { loop.shutdown() }
        }
    }

    // MARK: Connection

    nonisolated(nonsending) func serve(_ conn: TCPConnection, loop: EventLoop, registry: ConnectionRegistry) async {
        conn.followsTaskCancellation = false
        let input = ConnectionInput(conn: conn)
        registry.add(input)
        defer { registry.remove(input) }
        let peer = conn.remoteAddress?.description
        var parser = RequestHeadParser(limits: configuration.limits)
        var headStarted: MonotonicInstant?
        let accepted = loop.now
        var answered = false   // until the first answer, the wait for a head is the head deadline
        // The lane's scratch and, between requests of a keep-alive connection, the receive
        // shortcut that answers a plain request in its completion (LaneState).
        let laneState = router.hasFastRoutes ? LaneState(server: self, registry: registry) : nil
        // The shortcut as a closure, made once per connection (one made per wait would
        // allocate its context every time). It holds the lane strongly and the lane does
        // not hold it, so nothing is checked per call (an unowned capture is).
        let shortcutHandler: ((TCPConnection, borrowing PooledBuffer) -> Bool)? = laneState.map { lane in
            { conn, piece in lane.answer(conn, piece) }
        }
        connection: while true {
            // Answer every complete request already buffered (pipelining), in order.
            while !input.isEmpty {
                input.idle = false
                if headStarted == nil { headStarted = loop.now }
                let parsed: RequestHead?
                do {
                    parsed = try input.withPending { raw in try parser.parse(raw) }
                } catch let error as HTTPParseError {
                    await respondAndClose(conn, date: registry.date, APIError(error))
                    return
                } catch {
                    await respondAndClose(conn, date: registry.date, APIError(status: 400, code: "bad_request", message: "malformed request"))
                    return
                }
                guard var head = parsed else { break }
                parser.reset()
                headStarted = nil
                // The synchronous lane (FastLane.swift): a plain GET whose route can answer
                // from memory is answered here, with no Request built and no suspension.
                if let laneState, head.keepAlive, !registry.draining,
                   input.withPending({ raw in router.answerFast(head, raw: raw, lane: &laneState.lane) }) {
                    input.consume(head.headLength)
                    parser.recycle(&head)
                    taskFastAnswers.add(1, ordering: .relaxed)
                    do {
                        if let field = laneState.lane.response.invalidField {
                            logger.error("fast handler produced an invalid header; answering 500", metadata: ["field": "\(field)"])
                            var r = APIError(status: 500, code: "internal", message: "internal error").response
                            r.headers.append(("Date", registry.date))
                            try await send(r, to: Request(method: "GET", target: "/"), http10: false, on: conn)
                        } else {
                            Self.frame(&laneState.lane, date: registry.date)
                            try await sendSmall(laneState.lane.out, on: conn)
                        }
                        laneState.lane.shedLargeArrays()
                    } catch {
                        break connection
                    }
                    answered = true
                    continue
                }
                // The target in normalized origin form (absolute form and dot segments
                // resolved) before routing or any middleware sees it.
                let made = input.withPending { raw in Result { () throws(APIError) in try Request(head: head, in: raw) } }
                guard case .success(var request) = made else {
                    if case .failure(let error) = made { await respondAndClose(conn, date: registry.date, error) }
                    return
                }
                input.consume(head.headLength)
                request.remoteAddress = peer

                // The route decides how the body is taken; a declared length over its
                // limit is refused before any of the body is read. A request without a
                // route (404, 405) is answered at once: its body is never waited for.
                let (route, params, allowed) = router.resolve(method: request.method, path: request.path)
                let mode = route?.body ?? .buffered(max: nil)
                let limit: UInt64
                switch mode {
                case .buffered(let max): limit = max ?? (head.framing == .none ? 0 : configuration.bodyBytesMaxNow?() ?? configuration.bodyBytesMax)
                case .streaming(let max): limit = max
                }
                if route != nil, case .contentLength(let n) = head.framing, n > limit {
                    await respondAndClose(conn, date: registry.date, .payloadTooLarge(n, limit), method: request.method, route: route?.pattern)
                    return
                }
                let body = head.framing == .none ? RequestBody()
                    : RequestBody(input: input, framing: head.framing, expectsContinue: head.expectsContinue,
                                  limit: limit, time: route?.timeLimits ?? configuration.bodyTimeLimits)
                if head.framing != .none { request.stream = LoopBound(body, loop: loop) }

                // Buffering routes read the body inside the router, after the middleware.
                var response = await router.respond(to: request, route: route, params: params, allowed: allowed)
                Conditional.apply(request, &response)
                var closing = !head.keepAlive || registry.draining
                // A body left unread: after a success, drop a small rest to keep the
                // connection; after a refusal (or a large rest), answer now and close
                // without waiting for it. A body whose reading failed part-way has no
                // known end: always close.
                if body.isPoisoned {
                    closing = true
                } else if !body.isComplete {
                    if response.status < 400, let declared = body.declaredLength, declared - body.bytesRead <= Self.drainMax {
                        do { try await body.discard() } catch { closing = true }
                    } else {
                        closing = true
                    }
                }
                if let problem = Self.invalidHeader(response.headers) {
                    logger.error("handler produced an invalid header; answering 500", metadata: ["path": "\(request.path)", "problem": "\(problem)"])
                    response = APIError(status: 500, code: "internal", message: "internal error").response
                }
                if closing {
                    response.headers.append(("Connection", "close"))
                } else if head.version == .http1_0 {
                    response.headers.append(("Connection", "keep-alive"))
                }
                response.headers.append(("Date", registry.date))
                do {
                    try await send(response, to: request, http10: head.version == .http1_0, on: conn, input: input)
                } catch {
                    break connection
                }
                answered = true
                // A stop that began while the answer was going out (an event stream it ended)
                // closes the connection after it, as it would have said Connection: close.
                if closing || registry.draining {
                    if !body.isComplete || body.isPoisoned { await lingerAndClose(conn); return }
                    break connection
                }
            }
            input.idle = input.isEmpty
            // Wait for more bytes: the rest of the head deadline (from the first byte of a
            // head, or from the accept until a first answer), or the keep-alive idle timeout.
            let timeout: Duration
            if let started = headStarted, !input.isEmpty {
                timeout = max(.zero, configuration.headTimeout - (loop.now - started))
            } else if !answered {
                timeout = max(.zero, configuration.headTimeout - (loop.now - accepted))
            } else {
                timeout = configuration.idleTimeout
            }
            do {
                // Between requests, a plain one is answered in its receive completion.
                let shortcut = answered && input.isEmpty && !registry.draining ? shortcutHandler : nil
                if let shortcut {
                    conn.receiveShortcut = shortcut
                    conn.receiveShortcutWaitNanoseconds = timeout.nanosecondsClamped
                }
                defer { if shortcut != nil { conn.receiveShortcut = nil } }
                guard let chunk = try await conn.receive(timeout: timeout) else { break connection }
                chunk.withUnsafeBytes { input.append($0) }
            } catch {
                // receive throws RingError only: a timeout answers 408 when a head had
                // begun; any other failure (reset, close) just ends the connection.
                if error.code == .timedOut && !input.isEmpty {
                    await respondAndClose(conn, date: registry.date, APIError(status: 408, code: "request_timeout", message: "the request head did not arrive in time"))
                    return
                }
                break connection
            }
        }
        // Answers still queued for the socket go out first (the peer may only have finished
        // sending); after a failure this returns at once.
        try? await conn.flushSends()
        await conn.close()
    }
}

extension APIError {
    init(_ e: HTTPParseError) {
        self.init(status: e.status, code: APIError.code(for: e.status), message: e.reason)
    }
}
