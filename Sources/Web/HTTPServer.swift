// Web.HTTPServer: HTTP/1.1 on the Spool runtime. One SO_REUSEPORT listener per event loop;
// each connection is a task on its loop that parses heads with HTTP1 (strictly), reads
// Content-Length or chunked bodies within the route's limit, answers pipelined requests in
// order, and enforces a whole-head deadline (slowloris: 408 and close) and an idle
// keep-alive timeout. HEAD is answered for every GET route (same headers, no body).
// Every failure leaves as the standard error body (see APIError).
// Non-goals here: streaming bodies to handlers, TLS (nginx terminates it).
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
    /// Default body limit for routes that do not set one.
    public var bodyBytesMax: UInt64 = 1 << 20
    public var loop = EventLoop.Configuration()

    public init(listen: SocketAddress) { self.listen = listen }
}

public struct Request: Sendable {
    public var method: String
    public var target: String
    public var path: Substring { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var pathParameters: [String: String] = [:]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

public struct Response: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int = 200, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: Int = 200, _ text: String) -> Response {
        Response(status: status, headers: [("Content-Type", "application/json")], body: Array(text.utf8))
    }
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
                    do { conn = try await l.accept() } catch { return }
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
                for (c, _) in registry.value.connections.values { await c.close() }
            }
            loop.shutdown()
        }
    }

    // MARK: Connection

    func serve(_ conn: TCPConnection, loop: EventLoop, registry: ConnectionRegistry) async {
        conn.followsTaskCancellation = false
        registry.add(conn)
        defer { registry.remove(conn) }
        var buffer: [UInt8] = []
        var parser = RequestHeadParser(limits: configuration.limits)
        var headStarted: ContinuousClock.Instant?
        connection: while true {
            // Answer every complete request already buffered (pipelining), in order.
            while !buffer.isEmpty {
                registry.setIdle(conn, false)
                if headStarted == nil { headStarted = .now }
                let parsed: RequestHead?
                do {
                    parsed = try buffer.withUnsafeBytes { raw throws(HTTPParseError) in try parser.parse(raw) }
                } catch let error as HTTPParseError {
                    await respondAndClose(conn, APIError(error))
                    return
                } catch {
                    await respondAndClose(conn, APIError(status: 400, code: "bad_request", message: "malformed request"))
                    return
                }
                guard let head = parsed else { break }
                parser.reset()
                // Read the body (limits checked before reading it).
                let body: [UInt8]
                switch await readBody(head, conn: conn, buffer: &buffer) {
                case .success(let b): body = b
                case .failure(let e):
                    await respondAndClose(conn, e)
                    return
                }
                headStarted = nil
                let request = buffer.withUnsafeBytes { raw in
                    Request(method: head.string(head.method, in: raw), target: head.string(head.target, in: raw),
                            headers: head.fields.map { (head.string($0.name, in: raw), head.string($0.value, in: raw)) }, body: body)
                }
                buffer.removeFirst(head.headLength)   // readBody already removed the body bytes
                var response = await router.respond(to: request)
                Conditional.apply(request, &response)
                let closing = !head.keepAlive || registry.draining
                if closing { response.headers.append(("Connection", "close")) }
                do {
                    try await send(response, head: request.method == "HEAD", on: conn)
                } catch {
                    break connection
                }
                if closing { break connection }
            }
            registry.setIdle(conn, buffer.isEmpty)
            // Wait for more bytes: the rest of the head's deadline, or the idle timeout.
            let timeout: Duration
            if let started = headStarted, !buffer.isEmpty {
                timeout = max(.zero, configuration.headTimeout - (ContinuousClock.now - started))
            } else {
                timeout = configuration.idleTimeout
            }
            do {
                guard let chunk = try await conn.receive(timeout: timeout) else { break connection }
                chunk.withUnsafeBytes { buffer.append(contentsOf: $0) }
            } catch let e as RingError where e.code == .timedOut {
                if !buffer.isEmpty {
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

    /// Reads the body that follows `head` in `buffer` (receiving more as needed) and
    /// removes the consumed body bytes from the buffer, leaving the head in place.
    private func readBody(_ head: RequestHead, conn: TCPConnection, buffer: inout [UInt8]) async -> Result<[UInt8], APIError> {
        let max = configuration.bodyBytesMax
        switch head.framing {
        case .none:
            return .success([])
        case .contentLength(let n):
            guard n <= max else {
                return .failure(APIError(status: 413, code: "payload_too_large", message: "request body of \(n) bytes exceeds the limit of \(max) bytes"))
            }
            if head.expectsContinue && buffer.count < head.headLength + Int(n) {
                try? await conn.send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
            }
            while buffer.count < head.headLength + Int(n) {
                guard let chunk = try? await conn.receive(timeout: configuration.headTimeout) else {
                    return .failure(APIError(status: 400, code: "bad_request", message: "the request body ended early"))
                }
                chunk.withUnsafeBytes { buffer.append(contentsOf: $0) }
            }
            let body = Array(buffer[head.headLength..<(head.headLength + Int(n))])
            buffer.removeSubrange(head.headLength..<(head.headLength + Int(n)))
            return .success(body)
        case .chunked:
            if head.expectsContinue { try? await conn.send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
            var decoder = ChunkedDecoder(bodyBytesMax: max)
            var body: [UInt8] = []
            var at = head.headLength
            while true {
                var events: [ChunkedDecoder.Event] = []
                let used: Int
                do {
                    used = try buffer[at...].withUnsafeBytes { raw throws(HTTPParseError) in try decoder.decode(raw, into: &events) }
                } catch let error as HTTPParseError {
                    return .failure(APIError(error))
                } catch {
                    return .failure(APIError(status: 400, code: "bad_request", message: "malformed chunked body"))
                }
                for e in events {
                    if case .data(let r) = e { body.append(contentsOf: buffer[(at + r.lowerBound)..<(at + r.upperBound)]) }
                }
                at += used
                if decoder.isComplete { break }
                guard let chunk = try? await conn.receive(timeout: configuration.headTimeout) else {
                    return .failure(APIError(status: 400, code: "bad_request", message: "the chunked body ended early"))
                }
                chunk.withUnsafeBytes { buffer.append(contentsOf: $0) }
            }
            buffer.removeSubrange(head.headLength..<at)
            return .success(body)
        }
    }

    private func send(_ response: Response, head isHead: Bool, on conn: TCPConnection) async throws {
        var headers = response.headers
        // 1xx, 204 and 304 carry no content and no Content-Length (RFC 9110 §8.6).
        let contentless = response.status < 200 || response.status == 204 || response.status == 304
        if !contentless { headers.append(("Content-Length", String(response.body.count))) }
        var out: [UInt8] = []
        ResponseHead(status: response.status, headers: headers).serialize(into: &out)
        if !isHead { out.append(contentsOf: response.body) }
        try await conn.send(out)
    }

    private func respondAndClose(_ conn: TCPConnection, _ error: APIError) async {
        var r = error.response
        r.headers.append(("Connection", "close"))
        try? await send(r, head: false, on: conn)
        try? await conn.shutdown(.write)
        // Lingering close: closing with unread input would send RST, and the peer could
        // lose our error response. Drain (bounded in time and bytes) until it closes too.
        var drained = 0
        while drained < 1 << 20, let b = try? await conn.receive(timeout: .milliseconds(500)) { drained += b.count }
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
    private(set) var connections: [ObjectIdentifier: (conn: TCPConnection, idle: Bool)] = [:]
    private(set) var draining = false

    func add(_ c: TCPConnection) { connections[ObjectIdentifier(c)] = (c, true) }
    func remove(_ c: TCPConnection) { connections[ObjectIdentifier(c)] = nil }
    func setIdle(_ c: TCPConnection, _ idle: Bool) { connections[ObjectIdentifier(c)]?.idle = idle }

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
