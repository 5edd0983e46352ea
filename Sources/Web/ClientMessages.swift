// Web.ClientMessages: what HTTPClient takes and gives: a request (method, URL, fields, a
// body as bytes or as a chunked stream from a producer) and a response (status, fields,
// the body buffered or only the head when the body was streamed to the caller).
import HTTP1
import Ring

/// What to send as the request body.
public enum ClientBody: Sendable {
    case none
    case bytes([UInt8])
    /// Sent with chunked transfer coding as `producer` writes it (not replayable). What the
    /// producer throws ends the request: a RingError from the writer as the socket failure
    /// it is, an HTTPClientError as is, anything else as `callbackFailed` wrapping it.
    case stream(@Sendable (ClientBodyWriter) async throws -> Void)

    var replayable: Bool { if case .stream = self { return false } else { return true } }
}

public struct ClientRequest: Sendable {
    public var method: String
    public var url: String
    /// Sent in order after Host (and User-Agent unless given here). Names must be tokens and
    /// values free of control characters, or the request fails with `invalidRequest`
    /// before anything is sent; Host, Content-Length, Transfer-Encoding and Connection are
    /// the client's own and dropped.
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
    let conn: any ClientTransport
    let timeout: () -> Duration
    public private(set) var bytesWritten = 0
    init(conn: any ClientTransport, timeout: @escaping () -> Duration) {
        self.conn = conn
        self.timeout = timeout
    }
    public func write(_ bytes: [UInt8]) async throws(RingError) {
        guard !bytes.isEmpty else { return }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        ChunkedEncoding.chunk(bytes, into: &out)
        try await conn.send(out, timeout: timeout())
        bytesWritten += bytes.count
    }
}
