// RingError: the one error type of the Ring layer. Operating errors (peer reset, timeout,
// cancellation, disk full, refused connection) are thrown as RingError; programmer errors
// (EFAULT, EBADF on our own descriptors) trap, because they mean our bookkeeping is wrong.
#if canImport(Glibc)
import Glibc
#endif

public struct RingError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: Sendable, Equatable {
        case timedOut
        case cancelled
        case connectionReset
        case brokenPipe
        case connectionRefused
        case closed
        case noSpace
        case notFound
        case exists
        case permissionDenied
        case backendUnavailable(String)
        case invalidArgument(String)
        case system(errno: Int32)
    }

    public let code: Code
    /// What was being done ("recv", "open /tmp/x").
    public let operation: String

    public init(_ code: Code, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// Maps a negative CQE result (or a negated errno) to an error.
    public init(errno e: Int32, operation: String) {
        let code: Code
        switch e {
        case ETIME, ETIMEDOUT: code = .timedOut
        case ECANCELED: code = .cancelled
        case ECONNRESET: code = .connectionReset
        case EPIPE: code = .brokenPipe
        case ECONNREFUSED: code = .connectionRefused
        case ENOSPC, EDQUOT: code = .noSpace
        case ENOENT: code = .notFound
        case EEXIST: code = .exists
        case EACCES, EPERM: code = .permissionDenied
        default: code = .system(errno: e)
        }
        self.init(code, operation: operation)
    }

    public var errnoValue: Int32? {
        if case .system(let e) = code { return e }
        return nil
    }

    public var description: String {
        switch code {
        case .timedOut: return "\(operation): timed out"
        case .cancelled: return "\(operation): cancelled"
        case .connectionReset: return "\(operation): connection reset by peer"
        case .brokenPipe: return "\(operation): peer closed the connection"
        case .connectionRefused: return "\(operation): connection refused"
        case .closed: return "\(operation): socket is closed"
        case .noSpace: return "\(operation): no space left on device"
        case .notFound: return "\(operation): no such file or directory"
        case .exists: return "\(operation): file exists"
        case .permissionDenied: return "\(operation): permission denied"
        case .backendUnavailable(let why): return "\(operation): \(why)"
        case .invalidArgument(let why): return "\(operation): \(why)"
        case .system(let e): return unsafe "\(operation): \(String(cString: strerror(e))) (errno \(e))"
        }
    }
}

/// Traps on errors that can only come from a bug in Spool's own fd or buffer bookkeeping.
@inline(__always)
func checkProgrammerError(_ res: Int32, _ op: StaticString) {
    if res == -EFAULT || res == -EBADF {
        preconditionFailure("\(op) returned errno \(-res): bug in Spool's fd/buffer bookkeeping")
    }
}
