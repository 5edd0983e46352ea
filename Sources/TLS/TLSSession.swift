// TLS: client-side TLS as a pure state machine over OpenSSL (CTLS), for the HTTP client.
// A TLSSession never touches a socket: the caller feeds it the bytes the peer sent and
// sends the bytes it produces, so the event loop keeps all I/O (and its deadlines). Peers
// are verified (chain against the context's trust store, and the host name or IP address
// against the certificate); TLS 1.2 is the oldest accepted.
import CTLS

/// Why TLS failed: an untrusted or misnamed certificate, a protocol error, or a setup error.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The trust settings sessions are made from. Made once, shared by every session.
public final class TLSContext: @unchecked Sendable {
    // SSL_CTX is safe to share between threads once set up; it is never changed after init.
    private let ctx: OpaquePointer

    /// Trusts the certificates in `caFile` (PEM) when given, else the system's trust store.
    public init(caFile: String? = nil) throws(TLSError) {
        var err = [CChar](repeating: 0, count: 256)
        let made = unsafe err.withUnsafeMutableBufferPointer { buf in
            unsafe spool_tls_ctx_new(caFile, buf.baseAddress, buf.count)
        }
        guard let made else {
            throw TLSError("TLS setup\(caFile.map { " with \($0)" } ?? ""): " + Self.text(err))
        }
        ctx = made
    }

    deinit { unsafe spool_tls_ctx_free(ctx) }

    /// A session for a connection to `host` (a name, or an IP address literal without brackets).
    public func session(host: String) throws(TLSError) -> TLSSession {
        var err = [CChar](repeating: 0, count: 256)
        let isIP = Self.isIPLiteral(host)
        let made = unsafe err.withUnsafeMutableBufferPointer { buf in
            unsafe spool_tls_new(ctx, host, isIP ? 1 : 0, buf.baseAddress, buf.count)
        }
        guard let made else { throw TLSError("TLS session for \(host): " + Self.text(err)) }
        return TLSSession(made, context: self)
    }

    static func isIPLiteral(_ host: String) -> Bool {
        if host.contains(":") { return true }   // IPv6 (names have no colons)
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCII) && UInt8(p) != nil }
    }

    static func text(_ err: [CChar]) -> String {
        String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One TLS client session. Drive the handshake with `handshake()`, `output()` and
/// `feed(_:)`; then `write(_:)` plaintext (its records wait in `output()`) and `read(into:)`
/// what the fed records decrypt to.
///
/// - warning: Not thread-safe: use it from one task at a time (the HTTP client's loop).
public final class TLSSession {
    private let session: OpaquePointer
    private let context: TLSContext   // keeps the SSL_CTX alive

    public enum Step: Equatable { case done, needsInput }
    public enum Read: Equatable {
        /// This many plaintext bytes were written.
        case bytes(Int)
        /// More input is needed.
        case needsInput
        /// The peer ended the session cleanly (close_notify).
        case closed
    }

    init(_ session: OpaquePointer, context: TLSContext) {
        unsafe self.session = session
        self.context = context
    }

    deinit { unsafe spool_tls_free(session) }

    private var lastError: TLSError { unsafe TLSError(String(cString: spool_tls_error(session))) }

    /// One handshake step; send `output()` after each.
    public func handshake() throws(TLSError) -> Step {
        switch unsafe spool_tls_handshake(session) {
        case Int32(SPOOL_TLS_OK): return .done
        case Int32(SPOOL_TLS_WANT_READ): return .needsInput
        default: throw lastError
        }
    }

    /// Takes bytes the peer sent.
    public func feed(_ bytes: UnsafeRawBufferPointer) throws(TLSError) {
        guard bytes.count > 0 else { return }
        guard unsafe spool_tls_feed(session, bytes.baseAddress, bytes.count) == Int32(SPOOL_TLS_OK) else { throw lastError }
    }

    /// Whether there are bytes to send.
    public var hasOutput: Bool { unsafe spool_tls_pending_output(session) > 0 }

    /// The bytes to send to the peer (empty when there are none).
    public func output() -> [UInt8] {
        let n = unsafe spool_tls_pending_output(session)
        guard n > 0 else { return [] }
        return unsafe [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            count = unsafe spool_tls_take_output(session, buf.baseAddress, n)
        }
    }

    /// Encrypts `bytes`; the records are then in `output()`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(TLSError) {
        guard bytes.count > 0 else { return }
        guard unsafe spool_tls_write(session, bytes.baseAddress, bytes.count) == Int32(SPOOL_TLS_OK) else { throw lastError }
    }

    /// Decrypts what was fed into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(TLSError) -> Read {
        let n = unsafe spool_tls_read(session, buffer.baseAddress, buffer.count)
        if n > 0 { return .bytes(n) }
        switch n {
        case SPOOL_TLS_WANT_READ: return .needsInput
        case SPOOL_TLS_CLOSED: return .closed
        default: throw lastError
        }
    }

    /// Queues close_notify in `output()`.
    public func shutdown() { unsafe spool_tls_shutdown(session) }

    /// The negotiated protocol, such as "TLSv1.3".
    public var version: String { unsafe String(cString: spool_tls_version(session)) }
}
