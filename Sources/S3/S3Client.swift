// S3.S3Client: the S3 REST operations Spool uses, on Web.HTTPClient, signed with SigV4,
// path-style (`endpoint/bucket/key`, which every S3-compatible server takes). Each call is
// retried with exponential backoff and full jitter on what S3 says is worth retrying (5xx,
// 429, SlowDown, RequestTimeout) and on a connection that failed before an answer; a
// 403 or 404 comes back at once as an S3Error naming S3's code and message.
// Loop-confined like the HTTPClient it drives: S3Storage keeps one on its own loop.
import Crypto
import Ring
import SpoolModel
import Threads
import Web

/// Where the objects are, and who we are to the store.
public struct S3Endpoint: Sendable, Equatable {
    /// `http(s)://host[:port]`, without a path.
    public var url: String
    public var bucket: String
    public var region: String
    public var credentials: S3Credentials
    /// The Host field requests carry (and sign): the port only when not the scheme's default.
    public let hostHeader: String

    public init(url: String, bucket: String, region: String, credentials: S3Credentials) throws(S3Error) {
        var u = url
        while u.hasSuffix("/") { u.removeLast() }
        let https = u.hasPrefix("https://")
        guard https || u.hasPrefix("http://") else { throw S3Error(0, "InvalidEndpoint", "\"\(url)\" must start with http:// or https://") }
        let authority = u.dropFirst(https ? 8 : 7)
        guard !authority.isEmpty, !authority.contains("/"), !authority.contains("@"), !authority.contains("?") else {
            throw S3Error(0, "InvalidEndpoint", "\"\(url)\" must be a scheme and host[:port] only")
        }
        guard S3Endpoint.isValidBucket(bucket) else {
            throw S3Error(0, "InvalidBucketName", "\"\(bucket)\" must be 3 to 63 lower-case letters, digits, '.' and '-'")
        }
        self.url = u
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        let defaultPort = https ? ":443" : ":80"
        hostHeader = authority.hasSuffix(defaultPort) ? String(authority.dropLast(defaultPort.count)) : String(authority)
    }

    static func isValidBucket(_ name: String) -> Bool {
        let u = name.utf8
        return u.count >= 3 && u.count <= 63 && u.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D }
    }

    /// The encoded path of `key` in the bucket (the bucket itself when nil).
    func path(_ key: String?) -> String {
        guard let key else { return "/" + bucket }
        return "/" + bucket + "/" + SigV4Signer.uriEncode(key, keepSlash: true)
    }
}

/// What S3 answered when it refused, or why no answer came (status 0).
public struct S3Error: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    /// S3's error code ("AccessDenied", "NoSuchKey", ...) or ours ("ConnectionFailed").
    public var code: String
    public var message: String
    public init(_ status: Int, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
    public var description: String {
        status == 0 ? "\(code): \(message)" : "S3 answered \(status) \(code): \(message)"
    }
    /// Worth another attempt: the store is busy or broken for now, or the connection was.
    var retryable: Bool {
        status == 0 ? code == "ConnectionFailed" : (status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout")
    }
}

/// One request to the store.
struct S3Request {
    var method: String
    var key: String?
    var query: [(String, String)] = []
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    /// The body's SHA-256 in hex, when the caller already has it.
    var payloadHash: String?
}

final class S3Client {
    let endpoint: S3Endpoint
    let signer: SigV4Signer
    let http: HTTPClient
    let loop: EventLoop
    let maxAttempts: Int
    let now: @Sendable () -> Int64
    /// Backoff before retry n (1-based) is random in 0...min(base·2^(n-1), 5 s) ("full
    /// jitter"), so a store that restarts gets a few seconds and a fleet of clients does
    /// not come back in step.
    let retryBase: Duration

    init(endpoint: S3Endpoint, http: HTTPClient, loop: EventLoop, maxAttempts: Int, retryBase: Duration, now: @escaping @Sendable () -> Int64) {
        self.endpoint = endpoint
        self.signer = SigV4Signer(credentials: endpoint.credentials, region: endpoint.region)
        self.http = http
        self.loop = loop
        self.maxAttempts = max(1, maxAttempts)
        self.retryBase = retryBase
        self.now = now
    }

    /// Sends `request` (retried while retryable) and returns a 2xx response; anything else
    /// is an S3Error. `accept` names statuses that are answers, not errors (404 for a HEAD).
    func send(_ request: S3Request, accept: Set<Int> = []) async throws(S3Error) -> ClientResponse {
        let hash = request.payloadHash ?? Hex.encode(SHA256.hash(data: request.body))
        var attempt = 0
        while true {
            attempt += 1
            let error: S3Error
            do {
                let response = try await once(request, payloadHash: hash)
                if (200..<300).contains(response.status) || accept.contains(response.status) { return response }
                error = Self.error(status: response.status, body: response.body)
            } catch let e {
                error = e
            }
            guard error.retryable, attempt < maxAttempts else { throw error }
            try await backoff(attempt)
        }
    }

    /// One try: a transport failure is an S3Error of status 0 (ConnectionFailed when the
    /// request may be sent again).
    private func once(_ request: S3Request, payloadHash: String) async throws(S3Error) -> ClientResponse {
        let req = signed(request, payloadHash: payloadHash)
        do {
            return try await http.execute(req)
        } catch {
            switch error.kind {
            case .connectFailed, .connectionClosed, .timedOut:
                throw S3Error(0, "ConnectionFailed", "\(endpoint.url): \(error)")
            default:
                throw S3Error(0, "RequestFailed", "\(endpoint.url): \(error)")
            }
        }
    }

    /// Sends `request` once and hands a 2xx body to `onBody` piece by piece (no retry: the
    /// bytes may be half delivered). Anything else is an S3Error. Answers the status.
    func stream(_ request: S3Request, onBody: @escaping ([UInt8]) -> Void) async throws(S3Error) -> Int {
        let req = signed(request, payloadHash: SigV4Signer.emptyPayloadHash)
        var refusal: [UInt8] = []
        let head: ClientResponseHead
        do {
            head = try await http.execute(req) { head, piece in
                if (200..<300).contains(head.status) { onBody(piece) } else if refusal.count < 4096 { refusal += piece }
            }
        } catch {
            throw S3Error(0, error.kind == .connectFailed || error.kind == .connectionClosed || error.kind == .timedOut ? "ConnectionFailed" : "RequestFailed",
                          "\(endpoint.url): \(error)")
        }
        guard (200..<300).contains(head.status) else { throw Self.error(status: head.status, body: refusal) }
        return head.status
    }

    /// `request` as the HTTP client sends it: the URL (path-style, the query encoded as
    /// signed) and its fields with the SigV4 ones added.
    func signed(_ request: S3Request, payloadHash: String) -> ClientRequest {
        let path = endpoint.path(request.key)
        let auth = signer.sign(method: request.method, host: endpoint.hostHeader, path: path, query: request.query,
                               headers: request.headers, payloadHash: payloadHash, unixSeconds: now())
        var target = endpoint.url + path
        if !request.query.isEmpty { target += "?" + SigV4Signer.canonicalQuery(request.query) }
        return ClientRequest(method: request.method, url: target, headers: request.headers + auth,
                             body: request.body.isEmpty ? .none : .bytes(request.body))
    }

    func backoff(_ attempt: Int) async throws(S3Error) {
        let cap = min(retryBase * (1 << min(attempt - 1, 16)), .seconds(5))
        let wait = Duration.nanoseconds(Int64.random(in: 0...max(1, cap.nanosecondsClamped)))
        do { try await loop.sleep(for: wait) } catch { throw S3Error(0, "Cancelled", "cancelled while waiting to retry") }
    }

    /// S3's `<Error><Code>…</Code><Message>…</Message></Error>`, or the status alone.
    static func error(status: Int, body: [UInt8]) -> S3Error {
        let text = String(decoding: body.prefix(4096), as: UTF8.self)
        let code = S3XML.first("Code", in: text) ?? (status == 404 ? "NotFound" : status == 403 ? "AccessDenied" : "HTTP\(status)")
        let message = S3XML.first("Message", in: text) ?? "no message"
        return S3Error(status, code, message)
    }

    // MARK: Presigned URLs

    /// A URL for `method` on `key` alone, valid for `seconds`.
    func presignedURL(method: String, key: String, seconds: Int) -> String {
        let path = endpoint.path(key)
        return endpoint.url + path + "?" + signer.presign(method: method, host: endpoint.hostHeader, path: path,
                                                          expires: seconds, unixSeconds: now())
    }
}

