// Web.HTTPClient: HTTP/1.1 client on the Spool runtime, for engine traffic, webhooks and
// S3. One client per event loop, used from tasks on that loop. It keeps a pool of
// keep-alive connections per origin (bounded; callers over the bound wait in FIFO order),
// sends byte or chunked-streamed bodies, reads responses buffered (with a size cap) or
// streamed to a callback, and enforces connect, read (per receive) and total deadlines.
// Redirects are off by default; when on, 301/302/303 become GET and 307/308 replay the
// request if its body can be replayed. A reused connection that the server had already
// closed is retried once on a fresh one (only before any response byte, and only for
// replayable bodies). Parsing is strict (HTTP1.ResponseHeadParser, ChunkedDecoder).
// Non-goals: TLS (the gateway and S3 endpoints are reached over plain HTTP on loopback
// or a private network; TLS belongs to nginx), HTTP/2, cookies. Unsafe types: see Body.swift.
import HTTP1
import Ring

public struct HTTPClientConfiguration: Sendable {
    public var connectTimeout: Duration = .seconds(5)
    /// Longest wait for any single piece of the response (or for the socket to take a piece of the request).
    public var readTimeout: Duration = .seconds(30)
    /// Longest a whole request may take, redirects included.
    public var totalTimeout: Duration = .seconds(120)
    public var maxConnectionsPerOrigin = 8
    /// Idle connections kept per origin; older ones are closed.
    public var maxIdlePerOrigin = 8
    /// An idle connection unused for this long is not reused.
    public var idleTimeout: Duration = .seconds(30)
    public var followRedirects = false
    public var maxRedirects = 5
    /// Buffered responses larger than this fail with `bodyTooLarge`.
    public var responseBodyMax = 64 << 20
    public var userAgent = "spool"
    public init() {}
}

public struct HTTPClientError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case invalidURL, invalidRequest, connectFailed, timedOut, connectionClosed, malformedResponse, bodyTooLarge, tooManyRedirects
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { "\(kind): \(message)" }
}

/// What to send as the request body.
public enum ClientBody: Sendable {
    case none
    case bytes([UInt8])
    /// Sent with chunked transfer coding as `producer` writes it (not replayable).
    case stream(@Sendable (ClientBodyWriter) async throws -> Void)

    var replayable: Bool { if case .stream = self { return false } else { return true } }
}

public struct ClientRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: ClientBody
    /// This request's total deadline (the client's `totalTimeout` when nil).
    public var timeout: Duration?

    public init(method: String = "GET", url: String, headers: [(name: String, value: String)] = [], body: ClientBody = .none, timeout: Duration? = nil) {
        self.method = method.uppercased()
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

public struct ClientResponseHead: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public func header(_ name: String) -> String? { headers.value(of: name) }
}

public struct ClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public func header(_ name: String) -> String? { headers.value(of: name) }
}

/// Writes a streamed request body (each write is one chunk).
/// - warning: Loop-confined (not `Sendable`): use it only inside the producer.
public final class ClientBodyWriter {
    let conn: TCPConnection
    let timeout: () -> Duration
    public private(set) var bytesWritten = 0
    init(conn: TCPConnection, timeout: @escaping () -> Duration) {
        self.conn = conn
        self.timeout = timeout
    }
    public func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        ChunkedEncoding.chunk(bytes, into: &out)
        try await conn.send(out, timeout: timeout())
        bytesWritten += bytes.count
    }
}

struct Origin: Hashable {
    var host: String
    var port: UInt16
}

struct ParsedURL {
    var origin: Origin
    var target: String

    init(_ url: String) throws(HTTPClientError) {
        guard url.hasPrefix("http://") else {
            throw HTTPClientError(.invalidURL, "\"\(url)\": only http:// URLs are supported (TLS is the gateway's job)")
        }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var target = String(rest[slash...])
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        guard !authority.isEmpty, !authority.contains("@") else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad host") }
        var host = String(authority), port: UInt16 = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad IPv6 host") }
            host = String(authority[...close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = UInt16(after.dropFirst()) else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad port") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = UInt16(authority[authority.index(after: colon)...]) else { throw HTTPClientError(.invalidURL, "\"\(url)\": bad port") }
            port = p
        }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPClientError(.invalidURL, "\"\(url)\": the path must be percent-encoded")
        }
        origin = Origin(host: host, port: port)
        self.target = target
    }

    var hostHeader: String { origin.port == 80 ? origin.host : "\(origin.host):\(origin.port)" }
}

/// - warning: Loop-confined (not `Sendable`): use it on one event loop (other tasks there: `LoopBound`).
public final class HTTPClient {
    public let configuration: HTTPClientConfiguration
    let loop: EventLoop

    private struct Idle {
        let conn: TCPConnection
        let since: ContinuousClock.Instant
    }
    /// A request waiting for a connection slot. Resumed with true when a finishing request
    /// hands its slot over, with false when its deadline passes first.
    private final class Waiter {
        var continuation: UnsafeContinuation<Bool, Never>?
        /// Resumes the waiter with false at its deadline; cancelled when a slot comes first,
        /// so no timer outlives its wait.
        var timer: Task<Void, any Error>?
    }
    private final class OriginPool {
        var idle: [Idle] = []
        /// Requests holding a slot (at most maxConnectionsPerOrigin).
        var active = 0
        var waiters: [Waiter] = []
    }
    private var pools: [Origin: OriginPool] = [:]
    /// Connections opened over the client's life (tests check reuse with it).
    public private(set) var connectionsOpened = 0

    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration(), loop: EventLoop? = nil) {
        guard let l = loop ?? EventLoop.current else { preconditionFailure("HTTPClient must be created on an event loop") }
        self.configuration = configuration
        self.loop = l
    }

    /// Closes the idle connections (in-flight requests finish normally).
    public func shutdown() async {
        for p in pools.values {
            for i in p.idle { await i.conn.close() }
            p.idle.removeAll()
        }
    }

    public var idleConnectionCount: Int { pools.values.reduce(0) { $0 + $1.idle.count } }

    /// Sends `request` and returns the response with its whole body.
    public func execute(_ request: ClientRequest) async throws -> ClientResponse {
        var body: [UInt8] = []
        let cap = configuration.responseBodyMax
        let head = try await execute(request) { bytes in
            guard body.count + bytes.count <= cap else {
                throw HTTPClientError(.bodyTooLarge, "the response body is larger than \(cap) bytes")
            }
            body.append(contentsOf: bytes)
        }
        return ClientResponse(status: head.status, headers: head.headers, body: body)
    }

    public func get(_ url: String, headers: [(name: String, value: String)] = []) async throws -> ClientResponse {
        try await execute(ClientRequest(method: "GET", url: url, headers: headers))
    }

    /// Sends `request` and streams the response body to `onBody` as it arrives (the
    /// pointer is valid only during the call). Returns the response head.
    public func execute(_ request: ClientRequest, onBody: (UnsafeRawBufferPointer) throws -> Void) async throws -> ClientResponseHead {
        let deadline = ContinuousClock.now + (request.timeout ?? configuration.totalTimeout)
        var req = request
        var redirects = 0
        while true {
            let url = try ParsedURL(req.url)
            let (head, location) = try await attempt(req, url: url, deadline: deadline, onBody: onBody)
            guard configuration.followRedirects, [301, 302, 303, 307, 308].contains(head.status), let location else {
                return head
            }
            redirects += 1
            guard redirects <= configuration.maxRedirects else {
                throw HTTPClientError(.tooManyRedirects, "more than \(configuration.maxRedirects) redirects")
            }
            req.url = location.hasPrefix("/") ? "http://\(url.hostHeader)\(location)" : location
            // Credentials stay with the origin they were meant for.
            if (try? ParsedURL(req.url))?.origin != url.origin {
                req.headers.removeAll { ["authorization", "proxy-authorization", "cookie"].contains($0.name.lowercased()) }
            }
            if head.status == 303 || ((head.status == 301 || head.status == 302) && req.method == "POST") {
                req.method = "GET"
                req.body = .none
            } else if !req.body.replayable {
                return head
            }
        }
    }

    private func remaining(_ deadline: ContinuousClock.Instant, _ cap: Duration) throws(HTTPClientError) -> Duration {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { throw HTTPClientError(.timedOut, "the request did not finish before its deadline") }
        return min(left, cap)
    }

    /// One request on one connection; retried once on a fresh connection when a reused
    /// one turns out to be closed before any response byte.
    private func attempt(_ req: ClientRequest, url: ParsedURL, deadline: ContinuousClock.Instant,
                         onBody: (UnsafeRawBufferPointer) throws -> Void) async throws -> (ClientResponseHead, String?) {
        var tries = 0
        while true {
            tries += 1
            let (conn, reused) = try await checkout(url.origin, deadline: deadline)
            do {
                let result = try await exchange(req, url: url, on: conn, deadline: deadline, onBody: onBody)
                await checkin(url.origin, conn, keep: result.keepAlive)
                return (result.head, result.location)
            } catch let e as StaleConnection {
                _ = e
                await checkin(url.origin, conn, keep: false)
                // Only idempotent requests are sent again: a POST may have been processed
                // before the connection died.
                if reused && tries == 1 && req.body.replayable && Self.idempotentMethods.contains(req.method) { continue }
                throw HTTPClientError(.connectionClosed, "the server closed the connection before responding")
            } catch {
                await checkin(url.origin, conn, keep: false)
                if let r = error as? RingError {
                    if r.code == .timedOut { throw HTTPClientError(.timedOut, "no response data within \(configuration.readTimeout)") }
                    throw HTTPClientError(.connectionClosed, "\(r)")
                }
                throw error
            }
        }
    }

    private struct StaleConnection: Error {}
    static let idempotentMethods: Set<String> = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]

    private struct Exchange {
        var head: ClientResponseHead
        var location: String?
        var keepAlive: Bool
    }

    private func exchange(_ req: ClientRequest, url: ParsedURL, on conn: TCPConnection, deadline: ContinuousClock.Instant,
                          onBody: (UnsafeRawBufferPointer) throws -> Void) async throws -> Exchange {
        do {
            try await sendRequest(req, url: url, on: conn, deadline: deadline)
        } catch let e as RingError where e.code == .brokenPipe || e.code == .connectionReset {
            throw StaleConnection()
        }
        return try await receiveResponse(req, on: conn, deadline: deadline, onBody: onBody)
    }

    private func sendRequest(_ req: ClientRequest, url: ParsedURL, on conn: TCPConnection, deadline: ContinuousClock.Instant) async throws {
        let readTimeout = configuration.readTimeout
        var head: [(name: String, value: String)] = [("Host", url.hostHeader)]
        if !req.headers.contains(where: { $0.name.lowercased() == "user-agent" }) { head.append(("User-Agent", configuration.userAgent)) }
        head += req.headers.filter { !["host", "content-length", "transfer-encoding", "connection"].contains($0.name.lowercased()) }
        switch req.body {
        case .none: if ["POST", "PUT", "PATCH"].contains(req.method) { head.append(("Content-Length", "0")) }
        case .bytes(let b): head.append(("Content-Length", String(b.count)))
        case .stream: head.append(("Transfer-Encoding", "chunked"))
        }
        guard !req.method.isEmpty, req.method.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || $0 == 0x2D }) else {
            throw HTTPClientError(.invalidRequest, "\(req.method.debugDescription) is not a method")
        }
        var out: [UInt8] = Array("\(req.method) \(url.target) HTTP/1.1\r\n".utf8)
        for (n, v) in head {
            guard !n.utf8.contains(where: { $0 <= 0x20 || $0 == 0x3A || $0 >= 0x7F }),
                  !v.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw HTTPClientError(.invalidRequest, "header \"\(n)\" is not a valid field")
            }
            out += Array("\(n): \(v)\r\n".utf8)
        }
        out += [0x0D, 0x0A]
        if case .bytes(let b) = req.body, b.count <= 64 * 1024 { out += b }
        try await conn.send(out, timeout: try remaining(deadline, readTimeout))
        switch req.body {
        case .bytes(let b) where b.count > 64 * 1024:
            try await conn.send(b, timeout: try remaining(deadline, readTimeout))
        case .stream(let producer):
            let writer = ClientBodyWriter(conn: conn) { [configuration] in
                max(.milliseconds(1), min(deadline - ContinuousClock.now, configuration.readTimeout))
            }
            try await producer(writer)
            try await conn.send(ChunkedEncoding.lastChunk, timeout: try remaining(deadline, readTimeout))
        default: break
        }
    }

    private func receiveResponse(_ req: ClientRequest, on conn: TCPConnection, deadline: ContinuousClock.Instant,
                                 onBody: (UnsafeRawBufferPointer) throws -> Void) async throws -> Exchange {
        let readTimeout = configuration.readTimeout
        // Response head (skipping 1xx interim responses).
        var buffer: [UInt8] = []
        var parser = ResponseHeadParser()
        var sawBytes = false
        while true {
            var parsed: ParsedResponseHead? = nil
            if !buffer.isEmpty {
                do {
                    parsed = try buffer.withUnsafeBytes { raw throws(HTTPParseError) in try parser.parse(raw, requestMethod: req.method) }
                } catch let e as HTTPParseError {
                    throw HTTPClientError(.malformedResponse, e.reason)
                }
            }
            if let p = parsed {
                parser.reset()
                let fields = buffer.withUnsafeBytes { raw in
                    p.fields.map { (String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0.name]), as: UTF8.self),
                                    String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0.value]), as: UTF8.self)) }
                }
                buffer.removeFirst(p.headLength)
                if p.status == 101 { throw HTTPClientError(.malformedResponse, "protocol switches (101) are not supported") }
                if p.status < 200 { continue }   // 100 Continue and friends
                let responseHead = ClientResponseHead(status: p.status, headers: fields)
                let location = responseHead.header("Location")
                // A redirect that will be followed: its body is not the caller's.
                let keep: Bool
                if configuration.followRedirects && location != nil && [301, 302, 303, 307, 308].contains(p.status) {
                    keep = try await readBody(p.framing, conn: conn, buffer: &buffer, deadline: deadline, onBody: { _ in })
                } else {
                    keep = try await readBody(p.framing, conn: conn, buffer: &buffer, deadline: deadline, onBody: onBody)
                }
                return Exchange(head: responseHead, location: location, keepAlive: keep && p.keepAlive && buffer.isEmpty)
            }
            do {
                guard let chunk = try await conn.receive(timeout: try remaining(deadline, readTimeout)) else {
                    if !sawBytes { throw StaleConnection() }
                    throw HTTPClientError(.malformedResponse, "the connection closed inside the response head")
                }
                sawBytes = true
                chunk.withUnsafeBytes { buffer.append(contentsOf: $0) }
            } catch let e as RingError where !sawBytes && (e.code == .connectionReset || e.code == .closed) {
                throw StaleConnection()
            }
        }
    }

    /// Reads the body per `framing`, starting with what is already in `buffer`. Returns
    /// whether the connection can be reused.
    private func readBody(_ framing: ResponseFraming, conn: TCPConnection, buffer: inout [UInt8], deadline: ContinuousClock.Instant,
                          onBody: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        let readTimeout = configuration.readTimeout
        switch framing {
        case .none:
            return true
        case .contentLength(let n):
            var left = n
            let first = Int(min(UInt64(buffer.count), left))
            if first > 0 { try buffer.withUnsafeBytes { try onBody(UnsafeRawBufferPointer(rebasing: $0[..<first])) } }
            buffer.removeFirst(first)
            left -= UInt64(first)
            while left > 0 {
                guard let chunk = try await conn.receive(timeout: try remaining(deadline, readTimeout)) else {
                    throw HTTPClientError(.connectionClosed, "the response body ended \(left) bytes early")
                }
                try chunk.withUnsafeBytes { raw in
                    let take = Int(min(UInt64(raw.count), left))
                    try onBody(UnsafeRawBufferPointer(rebasing: raw[..<take]))
                    left -= UInt64(take)
                    if take < raw.count { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[take...])) }
                }
            }
            return true
        case .chunked:
            var decoder = ChunkedDecoder()
            var events: [ChunkedDecoder.Event] = []
            func feed(_ raw: UnsafeRawBufferPointer) throws -> Int {
                events.removeAll(keepingCapacity: true)
                let used: Int
                do { used = try decoder.decode(raw, into: &events) } catch { throw HTTPClientError(.malformedResponse, "chunked body: \(error.reason)") }
                for case .data(let r) in events { try onBody(UnsafeRawBufferPointer(rebasing: raw[r])) }
                return used
            }
            if !buffer.isEmpty {
                let used = try buffer.withUnsafeBytes { try feed($0) }
                buffer.removeFirst(used)
            }
            while !decoder.isComplete {
                guard let chunk = try await conn.receive(timeout: try remaining(deadline, readTimeout)) else {
                    throw HTTPClientError(.connectionClosed, "the chunked response body ended early")
                }
                try chunk.withUnsafeBytes { raw in
                    let used = try feed(raw)
                    if used < raw.count { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[used...])) }
                }
            }
            return true
        case .untilClose:
            if !buffer.isEmpty { try buffer.withUnsafeBytes { try onBody($0) } }
            buffer.removeAll()
            while let chunk = try await conn.receive(timeout: try remaining(deadline, readTimeout)) {
                try chunk.withUnsafeBytes { try onBody($0) }
            }
            return false
        }
    }

    // MARK: Pool

    private func checkout(_ origin: Origin, deadline: ContinuousClock.Instant) async throws -> (TCPConnection, Bool) {
        let pool = pools[origin] ?? { let p = OriginPool(); pools[origin] = p; return p }()
        // First a slot: a free one, or one handed over (in FIFO order) by a finishing request.
        if pool.active < configuration.maxConnectionsPerOrigin {
            pool.active += 1
        } else {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw HTTPClientError(.timedOut, "the request did not finish before its deadline") }
            let w = Waiter()
            let loop = self.loop
            let refs = LoopBound((w, pool), loop: loop)
            w.timer = loop.spawn {
                do { try await loop.sleep(for: left) } catch { return }   // cancelled: handed a slot
                let (w, pool) = refs.value
                guard let c = w.continuation else { return }
                w.continuation = nil
                pool.waiters.removeAll { $0 === w }
                c.resume(returning: false)
            }
            let handedOver = await withUnsafeContinuation { (c: UnsafeContinuation<Bool, Never>) in
                w.continuation = c
                pool.waiters.append(w)
            }
            guard handedOver else {
                throw HTTPClientError(.timedOut, "no connection to \(origin.host):\(origin.port) became free before the request's deadline")
            }
        }
        // Then a connection: an idle one still fresh, or a new one.
        while let idle = pool.idle.popLast() {
            if ContinuousClock.now - idle.since < configuration.idleTimeout { return (idle.conn, true) }
            await idle.conn.close()
        }
        do {
            let addresses: [SocketAddress]
            do {
                addresses = try await SocketAddress.resolve(origin.host, port: origin.port)
            } catch {
                throw HTTPClientError(.connectFailed, "\(error)")
            }
            var lastError: RingError?
            for a in addresses {
                do {
                    let conn = try await TCPConnection.connect(to: a, timeout: try remaining(deadline, configuration.connectTimeout))
                    connectionsOpened += 1
                    return (conn, false)
                } catch let e as RingError {
                    lastError = e
                }
            }
            if lastError?.code == .timedOut { throw HTTPClientError(.timedOut, "connecting to \(origin.host):\(origin.port) took longer than \(configuration.connectTimeout)") }
            throw HTTPClientError(.connectFailed, "cannot connect to \(origin.host):\(origin.port): \(lastError.map { "\($0)" } ?? "no address")")
        } catch {
            release(pool)
            throw error
        }
    }

    /// Returns a connection after a request: kept idle for reuse, or closed.
    private func checkin(_ origin: Origin, _ conn: TCPConnection, keep: Bool) async {
        guard let pool = pools[origin] else { await conn.close(); return }
        release(pool)
        guard keep else { await conn.close(); return }
        pool.idle.append(Idle(conn: conn, since: .now))
        if pool.idle.count > configuration.maxIdlePerOrigin { await pool.idle.removeFirst().conn.close() }
    }

    /// Gives up a slot: straight to the first waiter still waiting, else back to the pool.
    private func release(_ pool: OriginPool) {
        while !pool.waiters.isEmpty {
            let w = pool.waiters.removeFirst()
            if let c = w.continuation {
                w.continuation = nil
                w.timer?.cancel()
                w.timer = nil
                c.resume(returning: true)   // the slot moves to the waiter: `active` is unchanged
                return
            }
        }
        pool.active -= 1
    }
}
