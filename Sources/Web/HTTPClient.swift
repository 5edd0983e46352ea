// Web.HTTPClient: HTTP/1.1 client on the Spool runtime, for engine traffic, webhooks and
// S3. One client per event loop, used from tasks on that loop. It keeps a pool of
// keep-alive connections per origin (ClientConnectionPool: bounded; callers over the bound
// wait in FIFO order), sends byte or chunked-streamed bodies, reads responses buffered
// (with a size cap) or streamed to a callback, and enforces connect, read (per receive)
// and total deadlines (HTTPClient+Exchange). Redirects are off by default; when on,
// 301/302/303 become GET and 307/308 replay the request if its body can be replayed. A
// reused connection that the server had already closed is retried once on a fresh one
// (only before any response byte, and only for replayable bodies). Request heads are
// serialized by HTTP1 with the same field rules as responses; parsing is strict
// (HTTP1.ResponseHeadParser, ChunkedDecoder). Every failure is an HTTPClientError.
// https:// URLs run over TLS (ClientTransport: OpenSSL through module TLS, verified
// against the system's trust store or `tlsContext`'s). Non-goals: HTTP/2, cookies.
import HTTP1
import Ring
import Threads
import TLS

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
    /// Resolves a host name to addresses (default: SocketAddress.resolve, getaddrinfo on
    /// the blocking pool). Tests inject names here; nothing else changes.
    public var resolve: (@Sendable (String, UInt16) async throws(RingError) -> [SocketAddress])?
    /// Checked for every resolved address before it is dialed: nil admits it, a reason
    /// refuses it (the request fails with `refusedAddress` when none is admitted). The
    /// addresses checked are the ones dialed, so a name cannot re-resolve in between.
    public var admit: (@Sendable (SocketAddress) -> String?)?
    /// Whom https:// servers must be certified by: nil is the system's trust store.
    public var tlsContext: TLSContext?
    public init() {}
}

/// - warning: Loop-confined (not `Sendable`): use it on one event loop (other tasks there: `LoopBound`).
public final class HTTPClient {
    public let configuration: HTTPClientConfiguration
    let loop: EventLoop
    private let pool: ClientConnectionPool

    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration(), loop: EventLoop? = nil) {
        guard let l = loop ?? EventLoop.current else { preconditionFailure("HTTPClient must be created on an event loop") }
        self.configuration = configuration
        self.loop = l
        pool = ClientConnectionPool(configuration: configuration, loop: l)
    }

    /// Closes the idle connections (in-flight requests finish normally).
    public func shutdown() async { await pool.closeIdle() }

    public var idleConnectionCount: Int { pool.idleConnectionCount }
    /// Connections opened over the client's life (tests check reuse with it).
    public var connectionsOpened: Int { pool.connectionsOpened }

    /// Sends `request` and returns the response with its whole body.
    public func execute(_ request: ClientRequest) async throws(HTTPClientError) -> ClientResponse {
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

    public func get(_ url: String, headers: [(name: String, value: String)] = []) async throws(HTTPClientError) -> ClientResponse {
        try await execute(ClientRequest(method: "GET", url: url, headers: headers))
    }

    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    /// Sends `request` and streams the response body to `onBody` as it arrives (the
    /// pointer is valid only during the call). Returns the response head. `onBody` is the
    /// caller's code and may throw anything: an HTTPClientError ends the request as is,
    /// anything else as `callbackFailed` with the thrown error as its `cause`.
    public func execute(_ request: ClientRequest, onBody: (UnsafeRawBufferPointer) throws -> Void) async throws(HTTPClientError) -> ClientResponseHead {
        try await withoutActuallyEscaping(onBody) { (consumer) async throws(HTTPClientError) -> ClientResponseHead in
            try await execute(request, sink: .immediate(consumer))
        }
    }

    /// Sends `request` and hands the response body to `onBody` piece by piece, with the
    /// response head, awaiting each call before reading on: a consumer slower than the
    /// network holds the connection's reads back (TCP flow control pushes back on the
    /// server) instead of buffering. Each piece is a copy the consumer owns.
    public func execute(_ request: ClientRequest,
                        awaiting onBody: (ClientResponseHead, [UInt8]) async throws -> Void) async throws(HTTPClientError) -> ClientResponseHead {
        try await withoutActuallyEscaping(onBody) { (consumer) async throws(HTTPClientError) -> ClientResponseHead in
            try await execute(request, sink: .awaited(consumer))
        }
    }

    private func execute(_ request: ClientRequest, sink: BodySink) async throws(HTTPClientError) -> ClientResponseHead {
        let deadline = loop.now + (request.timeout ?? configuration.totalTimeout)
        var req = request
        var redirects = 0
        while true {
            let url = try ParsedURL(req.url)
            let (head, location) = try await attempt(req, url: url, deadline: deadline, sink: sink)
            guard configuration.followRedirects, Self.redirectStatuses.contains(head.status), let location else {
                return head
            }
            redirects += 1
            guard redirects <= configuration.maxRedirects else {
                throw HTTPClientError(.tooManyRedirects, "more than \(configuration.maxRedirects) redirects")
            }
            req.url = location.hasPrefix("/") ? "\(url.origin.scheme)://\(url.hostHeader)\(location)" : location
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

    /// What is left of `deadline`, at most `cap`; a `timedOut` error once it has passed.
    static func remaining(_ deadline: MonotonicInstant, _ cap: Duration, now: MonotonicInstant) throws(HTTPClientError) -> Duration {
        let left = deadline - now
        guard left > .zero else { throw HTTPClientError(.timedOut, "the request did not finish before its deadline") }
        return min(left, cap)
    }

    static let idempotentMethods: Set<String> = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]

    /// One request on one connection; retried once on a fresh connection when a reused
    /// one turns out to be closed before any response byte.
    private func attempt(_ req: ClientRequest, url: ParsedURL, deadline: MonotonicInstant,
                         sink: BodySink) async throws(HTTPClientError) -> (ClientResponseHead, String?) {
        // Validated before a connection is taken: an invalid request sends nothing.
        let head = try requestHead(req, url: url)
        var tries = 0
        while true {
            tries += 1
            let (conn, reused) = try await pool.checkout(url.origin, deadline: deadline)
            do {
                let result = try await exchange(req, head: head, on: conn, deadline: deadline, sink: sink)
                await pool.checkin(url.origin, conn, keep: result.keepAlive)
                return (result.head, result.location)
            } catch {
                await pool.checkin(url.origin, conn, keep: false)
                switch error {
                case .stale:
                    // Only idempotent requests are sent again: a POST may have been processed
                    // before the connection died.
                    if reused && tries == 1 && req.body.replayable && Self.idempotentMethods.contains(req.method) { continue }
                    throw HTTPClientError(.connectionClosed, "the server closed the connection before responding")
                case .failed(let e):
                    throw e
                }
            }
        }
    }
}
