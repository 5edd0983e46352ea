// Web.HTTPServer: HTTP/1.1 on the Spool runtime. One SO_REUSEPORT listener per event loop;
// each connection is a task on its loop that parses heads with HTTP1 (strictly), reads
// Content-Length or chunked bodies within the route's limit, answers pipelined requests in
// order, and enforces a whole-head deadline (slowloris: 408 and close) and an idle
// keep-alive timeout. HEAD is answered for every GET route (same headers, no body).
// Every failure leaves as the standard error body (see APIError).
// Routes choose buffered bodies (with a limit, 413 before reading) or streamed ones
// (RequestBody); responses are bytes, chunked streams (SSE) or file ranges.
// Non-goals here: TLS (nginx terminates it), HTTP/2.
import BufferPool
import HTTP1
import Logging
import Ring
import Synchronization

public struct HTTPServerConfiguration: Sendable {
    public var listen: SocketAddress
    public var loops: Int = 1
    public var limits = HTTPLimits()
    /// The whole request head must arrive within this time from its first byte.
    public var headTimeout: Duration = .seconds(10)
    /// An idle keep-alive connection is closed after this.
    public var idleTimeout: Duration = .seconds(60)
    /// Default body limit for buffering routes that do not set one.
    public var bodyBytesMax: UInt64 = 1 << 20
    /// Longest wait for the next piece of a request body.
    public var bodyTimeout: Duration = .seconds(30)
    /// Longest wait for a client to take a piece of the response.
    public var sendTimeout: Duration = .seconds(30)
    /// Connections one loop serves at once; more are closed as they arrive.
    public var connectionsMaxPerLoop = 10_000
    public var loop = EventLoop.Configuration()

    public init(listen: SocketAddress) { self.listen = listen }
}

public final class HTTPServer: Sendable {
    public let configuration: HTTPServerConfiguration
    public let router: Router
    private let state = ServerState()
    private let logger: Logger

    public init(configuration: HTTPServerConfiguration, router: Router, logger: Logger = Logger(label: "spool.http")) {
        self.configuration = configuration
        self.router = router
        self.logger = logger
    }

    /// The address actually bound (port 0 resolved); valid after `start`.
    public var localAddress: SocketAddress? { state.address }

    /// Starts the loops and their listeners. Returns once every listener is bound.
    public func start() async throws {
        var address = configuration.listen
        for i in 0..<configuration.loops {
            let loop = try EventLoop.start(id: i, configuration: configuration.loop, logger: logger)
            let bound = address
            let (listener, registry, actual) = try await loop.run { () -> (LoopRef<TCPListener>, LoopRef<ConnectionRegistry>, SocketAddress) in
                let l = try TCPListener(address: bound)
                return (LoopRef(l), LoopRef(ConnectionRegistry()), l.localAddress)
            }
            address = actual        // the other loops share the port chosen by the first
            state.add(loop: loop, listener: listener, registry: registry, address: actual)
            let server = self
            loop.spawn {
                let l = listener.value
                while true {
                    let conn: TCPConnection
                    do {
                        conn = try await l.accept()
                    } catch let e as RingError where e.code == .closed || e.code == .cancelled {
                        return
                    } catch {
                        // EMFILE, ENFILE, ENOMEM...: the listener must keep accepting once
                        // the pressure passes, so back off briefly and try again.
                        server.logger.warning("accept failed; retrying", metadata: ["error": "\(error)"])
                        try? await loop.sleep(for: .milliseconds(50))
                        continue
                    }
                    // Past the per-loop cap, new connections are closed at once (RST): the
                    // loop's fds and pool stay for the connections it already serves.
                    if registry.value.connections.count >= server.configuration.connectionsMaxPerLoop {
                        conn.setResetOnClose()
                        await conn.close()
                        continue
                    }
                    let c = LoopRef(conn)
                    loop.spawn { await server.serve(c.value, loop: loop, registry: registry.value) }
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting, close idle keep-alive connections, let requests
    /// in flight finish (their responses carry `Connection: close`), and after `grace`
    /// close whatever is left; then stop the loops.
    public func stop(grace: Duration = .seconds(5)) async {
        for (loop, listener, registry) in state.takeAll() {
            _ = try? await loop.run {
                await listener.value.close()
                for c in registry.value.drain() { await c.close() }
                let deadline = ContinuousClock.now + grace
                while !registry.value.connections.isEmpty && ContinuousClock.now < deadline {
                    try? await loop.sleep(for: .milliseconds(10))
                }
                for c in registry.value.connections.values { await c.conn.close() }
            }
            loop.shutdown()
        }
    }

    // MARK: Connection

    func serve(_ conn: TCPConnection, loop: EventLoop, registry: ConnectionRegistry) async {
        conn.followsTaskCancellation = false
        let input = ConnectionInput(conn: conn)
        registry.add(input)
        defer { registry.remove(input) }
        let peer = conn.remoteAddress?.description
        var parser = RequestHeadParser(limits: configuration.limits)
        var headStarted: ContinuousClock.Instant?
        connection: while true {
            // Answer every complete request already buffered (pipelining), in order.
            while !input.isEmpty {
                input.idle = false
                if headStarted == nil { headStarted = .now }
                let parsed: RequestHead?
                do {
                    parsed = try input.withPending { raw in try parser.parse(raw) }
                } catch let error as HTTPParseError {
                    await respondAndClose(conn, APIError(error))
                    return
                } catch {
                    await respondAndClose(conn, APIError(status: 400, code: "bad_request", message: "malformed request"))
                    return
                }
                guard let head = parsed else { break }
                parser.reset()
                headStarted = nil
                var request = input.withPending { raw in
                    Request(method: head.string(head.method, in: raw), target: head.string(head.target, in: raw),
                            headers: head.fields.map { (head.string($0.name, in: raw), head.string($0.value, in: raw)) })
                }
                input.consume(head.headLength)
                request.remoteAddress = peer

                // The route decides how the body is taken; a declared length over its
                // limit is refused before any of the body is read.
                let (route, params, allowed) = router.resolve(method: request.method, path: request.path)
                let mode = route?.body ?? .buffered(max: nil)
                let limit: UInt64
                switch mode {
                case .buffered(let max): limit = max ?? configuration.bodyBytesMax
                case .streaming(let max): limit = max
                }
                if case .contentLength(let n) = head.framing, n > limit {
                    await respondAndClose(conn, .payloadTooLarge(n, limit))
                    return
                }
                let body = head.framing == .none ? RequestBody.empty
                    : RequestBody(input: input, framing: head.framing, expectsContinue: head.expectsContinue,
                                  limit: limit, timeout: configuration.bodyTimeout)
                request.bodyStream = body
                if route != nil, case .buffered = mode {
                    do {
                        request.body = try await body.collect(upTo: Int(clamping: limit))
                    } catch {
                        await respondAndClose(conn, error as? APIError ?? APIError(status: 400, code: "bad_request", message: "malformed body"))
                        return
                    }
                }

                var response = await router.respond(to: request, route: route, params: params, allowed: allowed)
                Conditional.apply(request, &response)
                var closing = !head.keepAlive || registry.draining
                // A body the handler left unread: drop a small rest, otherwise close. A body
                // whose reading failed part-way has no known end: always close.
                if body.isPoisoned {
                    closing = true
                } else if !body.isComplete {
                    if let declared = body.declaredLength, declared - body.bytesRead <= Self.drainMax {
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
                    try await send(response, to: request, http10: head.version == .http1_0, on: conn)
                } catch {
                    break connection
                }
                if closing {
                    if !body.isComplete || body.isPoisoned { await lingerAndClose(conn); return }
                    break connection
                }
            }
            input.idle = input.isEmpty
            // Wait for more bytes: the rest of the head's deadline, or the idle timeout.
            let timeout: Duration
            if let started = headStarted, !input.isEmpty {
                timeout = max(.zero, configuration.headTimeout - (ContinuousClock.now - started))
            } else {
                timeout = configuration.idleTimeout
            }
            do {
                guard let chunk = try await conn.receive(timeout: timeout) else { break connection }
                chunk.withUnsafeBytes { input.append($0) }
            } catch let e as RingError where e.code == .timedOut {
                if !input.isEmpty {
                    await respondAndClose(conn, APIError(status: 408, code: "request_timeout", message: "the request head did not arrive in time"))
                    return
                }
                break connection
            } catch {
                break connection
            }
        }
        await conn.close()
    }

    /// Unread body bytes the server drops itself to keep a connection alive.
    static let drainMax: UInt64 = 64 * 1024

    /// A header the serializer must not write (a handler echoing a decoded CR/LF or NUL
    /// from a path, say): reported so the request gets a 500 instead of a crash.
    static func invalidHeader(_ headers: [(name: String, value: String)]) -> String? {
        for (n, v) in headers where !ResponseHead.isValidField(name: n, value: v) {
            return "invalid header field \(n.debugDescription)"
        }
        return nil
    }

    private func send(_ response: Response, to request: Request, http10: Bool, on conn: TCPConnection) async throws {
        let isHead = request.method == "HEAD"
        // Framing is the server's: whatever a handler set (a proxied response's headers,
        // say) would contradict what is actually sent.
        var headers = response.headers
        headers.removeAll { $0.name.equalsIgnoringCase("Content-Length") || $0.name.equalsIgnoringCase("Transfer-Encoding") }
        // 1xx, 204 and 304 carry no content and no Content-Length (RFC 9110 §8.6).
        let contentless = response.status < 200 || response.status == 204 || response.status == 304
        switch response.stream {
        case nil:
            if !contentless { headers.append(("Content-Length", String(response.body.count))) }
            var out: [UInt8] = []
            out.reserveCapacity(256 + response.body.count)
            ResponseHead(status: response.status, headers: headers).serialize(into: &out)
            if !isHead && !contentless { out.append(contentsOf: response.body) }
            try await conn.send(out, timeout: configuration.sendTimeout)

        case .chunked(let producer):
            // HTTP/1.0 has no chunked coding: the body runs to the end of the connection.
            if contentless {
                // 1xx/204/304 carry no content: neither a transfer coding nor a producer.
            } else if http10 {
                headers.removeAll(named: "Connection")
                headers.append(("Connection", "close"))
            } else {
                headers.append(("Transfer-Encoding", "chunked"))
            }
            var out: [UInt8] = []
            ResponseHead(status: response.status, headers: headers).serialize(into: &out)
            try await conn.send(out, timeout: configuration.sendTimeout)
            guard !isHead && !contentless else { return }
            let writer = ResponseWriter(conn: conn, timeout: configuration.sendTimeout, chunked: !http10)
            do {
                try await producer(writer)
            } catch {
                // The status is already sent: the only honest signal left is to end the
                // connection without the last chunk, so the client sees a truncated body.
                logger.warning("streaming response failed", metadata: ["path": "\(request.path)", "error": "\(error)"])
                throw error
            }
            if http10 { throw RingError(.closed, operation: "end of HTTP/1.0 stream") }
            try await conn.send(ChunkedEncoding.lastChunk, timeout: configuration.sendTimeout)

        case .file(let path, let range):
            let file = try await File.open(path, .read)
            do {
                let size = UInt64(max(0, file.size))
                let r = range ?? 0..<size
                if !contentless { headers.append(("Content-Length", String(r.count))) }
                var out: [UInt8] = []
                ResponseHead(status: response.status, headers: headers).serialize(into: &out)
                try await conn.send(out, timeout: configuration.sendTimeout)
                if !isHead && !contentless {
                    var at = r.lowerBound
                    while at < r.upperBound {
                        var buffer = await conn.loop.pool.acquire()
                        buffer.count = 0
                        let want = Int(min(UInt64(buffer.capacity), r.upperBound - at))
                        let done = await file.read(into: buffer, at: at)
                        let n = try done.result.get()
                        var b = done.takeBuffer()
                        guard n > 0 else { throw RingError(.closed, operation: "file shrank while being sent") }
                        b.count = min(n, want)
                        at += UInt64(b.count)
                        try await conn.send(b, timeout: configuration.sendTimeout)
                    }
                }
            } catch {
                try? await file.close()
                throw error
            }
            try? await file.close()
        }
    }

    private func respondAndClose(_ conn: TCPConnection, _ error: APIError) async {
        var r = error.response
        r.headers.append(("Connection", "close"))
        try? await send(r, to: Request(method: "GET", target: "/"), http10: false, on: conn)
        await lingerAndClose(conn)
    }

    /// Lingering close: closing with unread input would send RST, and the peer could
    /// lose our response. Drain (bounded in time and bytes) until it closes too.
    private func lingerAndClose(_ conn: TCPConnection) async {
        try? await conn.shutdown(.write)
        var drained = 0
        let deadline = ContinuousClock.now + .seconds(3)
        while drained < 1 << 20, ContinuousClock.now < deadline,
              let b = try? await conn.receive(timeout: min(.milliseconds(500), deadline - ContinuousClock.now)) {
            drained += b.count
        }
        await conn.close()
    }
}

extension APIError {
    init(_ e: HTTPParseError) {
        self.init(status: e.status, code: APIError.code(for: e.status), message: e.reason)
    }
}

/// The connections one loop is serving, for graceful shutdown. Loop-confined.
final class ConnectionRegistry {
    private(set) var connections: [ObjectIdentifier: ConnectionInput] = [:]
    private(set) var draining = false
    private var dateSecond: Int64 = -1
    private var dateText = ""

    /// The HTTP `Date` value for now, formatted once per second per loop.
    var date: String {
        let now = wallClockSeconds()
        if now != dateSecond {
            dateSecond = now
            dateText = HTTPDate.format(now)
        }
        return dateText
    }

    func add(_ c: ConnectionInput) { connections[ObjectIdentifier(c)] = c }
    func remove(_ c: ConnectionInput) { connections[ObjectIdentifier(c)] = nil }

    /// Stop taking requests: returns the idle connections (to close now).
    func drain() -> [TCPConnection] {
        draining = true
        return connections.values.filter(\.idle).map(\.conn)
    }
}

/// A loop-confined object carried into a task on the same loop.
struct LoopRef<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

final class ServerState: Sendable {
    private struct Inner: @unchecked Sendable {   // listeners are only used on their loops
        var loops: [(EventLoop, LoopRef<TCPListener>, LoopRef<ConnectionRegistry>)] = []
        var bound: SocketAddress?
    }
    private let inner = Mutex(Inner())

    func add(loop: EventLoop, listener: LoopRef<TCPListener>, registry: LoopRef<ConnectionRegistry>, address: SocketAddress) {
        inner.withLock { $0.loops.append((loop, listener, registry)); $0.bound = address }
    }

    var address: SocketAddress? { inner.withLock { $0.bound } }

    func takeAll() -> [(EventLoop, LoopRef<TCPListener>, LoopRef<ConnectionRegistry>)] {
        inner.withLock { i in
            defer { i.loops = [] }
            return i.loops
        }
    }
}
