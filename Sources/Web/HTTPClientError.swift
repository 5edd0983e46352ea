// Web.HTTPClientError: the one error HTTPClient throws. A socket failure (RingError), a
// response that does not parse (HTTPParseError) or a caller's callback that threw is
// wrapped, with the original as `cause`, so callers catch one type and still see why.
import HTTP1
import Ring

public struct HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, compared with `==` (`error.kind == .timedOut`). Kinds will be added,
    /// so this is a struct over a private enum, not an enum to switch over. Its description
    /// is the kind's name ("timedOut").
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case invalidURL, invalidRequest, connectFailed, timedOut, connectionClosed, malformedResponse
            case bodyTooLarge, tooManyRedirects, callbackFailed, refusedAddress, tlsFailed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        public static let invalidURL = Kind(.invalidURL)
        /// The request cannot be sent as given (a method, target or header field that is
        /// not valid HTTP); nothing was sent.
        public static let invalidRequest = Kind(.invalidRequest)
        public static let connectFailed = Kind(.connectFailed)
        public static let timedOut = Kind(.timedOut)
        public static let connectionClosed = Kind(.connectionClosed)
        public static let malformedResponse = Kind(.malformedResponse)
        public static let bodyTooLarge = Kind(.bodyTooLarge)
        public static let tooManyRedirects = Kind(.tooManyRedirects)
        /// The caller's response-body consumer or request-body producer threw (`cause`).
        public static let callbackFailed = Kind(.callbackFailed)
        /// Every address the host resolved to was refused by the configuration's `admit`
        /// policy; nothing was dialed.
        public static let refusedAddress = Kind(.refusedAddress)
        /// The TLS handshake failed: the server's certificate did not verify (untrusted,
        /// expired, or not for this host), or the server speaks no acceptable TLS.
        public static let tlsFailed = Kind(.tlsFailed)

        public var description: String { value.rawValue }
    }

    public var kind: Kind
    public var message: String
    /// What this error wraps, if anything: a RingError, an HTTPParseError, or whatever a
    /// caller's callback threw.
    public var cause: (any Error)?

    public init(_ kind: Kind, _ message: String, cause: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.cause = cause
    }

    /// The socket failure behind this error, if it was one.
    public var ringError: RingError? { cause as? RingError }
    /// The parse failure behind a `malformedResponse`, if it was one.
    public var parseError: HTTPParseError? { cause as? HTTPParseError }

    public var description: String { "\(kind): \(message)" }

    public static func == (a: HTTPClientError, b: HTTPClientError) -> Bool {
        a.kind == b.kind && a.message == b.message && a.ringError == b.ringError && a.parseError == b.parseError
    }
}
