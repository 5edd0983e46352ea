// RingError: the one error type of the Ring layer. Operating errors (peer reset, timeout,
// cancellation, disk full, refused connection, no free operation slot) are thrown as
// RingError; programmer errors (EFAULT, EBADF on our own descriptors) trap, because they
// mean our bookkeeping is wrong.
//
// The set of codes grows (a new errno worth naming, a new resource that can run out), so
// `Code` is a struct over a private enum: callers compare (`error.code == .timedOut`)
// instead of switching, and adding a code breaks nobody's exhaustive switch.
#if canImport(Glibc)
import Glibc
#endif

public struct RingError: Error, CustomStringConvertible, Sendable, Hashable {
    /// What went wrong, compared with `==`. Its description is the code's name
    /// ("timedOut", "system(errno: 11)").
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable {
            case timedOut, cancelled, connectionReset, brokenPipe, connectionRefused, closed
            case noSpace, notFound, exists, permissionDenied
            case backendUnavailable, invalidArgument, slotsExhausted
            case system(Int32)
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        public static let timedOut = Code(.timedOut)
        public static let cancelled = Code(.cancelled)
        public static let connectionReset = Code(.connectionReset)
        public static let brokenPipe = Code(.brokenPipe)
        public static let connectionRefused = Code(.connectionRefused)
        public static let closed = Code(.closed)
        public static let noSpace = Code(.noSpace)
        public static let notFound = Code(.notFound)
        public static let exists = Code(.exists)
        public static let permissionDenied = Code(.permissionDenied)
        /// The requested I/O backend cannot run here (the error's `reason` says why).
        public static let backendUnavailable = Code(.backendUnavailable)
        /// A value the operation cannot use (the error's `reason` says which and why).
        public static let invalidArgument = Code(.invalidArgument)
        /// Every operation slot of the loop (`EventLoop.Configuration.slotsMax`) is in use;
        /// the operation was never started.
        public static let slotsExhausted = Code(.slotsExhausted)
        /// Any other errno.
        public static func system(errno: Int32) -> Code { Code(.system(errno)) }

        /// The errno of a `system(errno:)` code; nil for the named codes.
        public var errno: Int32? {
            if case .system(let e) = value { return e }
            return nil
        }

        public var description: String {
            switch value {
            case .timedOut: return "timedOut"
            case .cancelled: return "cancelled"
            case .connectionReset: return "connectionReset"
            case .brokenPipe: return "brokenPipe"
            case .connectionRefused: return "connectionRefused"
            case .closed: return "closed"
            case .noSpace: return "noSpace"
            case .notFound: return "notFound"
            case .exists: return "exists"
            case .permissionDenied: return "permissionDenied"
            case .backendUnavailable: return "backendUnavailable"
            case .invalidArgument: return "invalidArgument"
            case .slotsExhausted: return "slotsExhausted"
            case .system(let e): return "system(errno: \(e))"
            }
        }

        /// The text after "operation: " in an error's description.
        fileprivate func text(reason: String) -> String {
            switch value {
            case .timedOut: return "timed out"
            case .cancelled: return "cancelled"
            case .connectionReset: return "connection reset by peer"
            case .brokenPipe: return "peer closed the connection"
            case .connectionRefused: return "connection refused"
            case .closed: return "socket is closed"
            case .noSpace: return "no space left on device"
            case .notFound: return "no such file or directory"
            case .exists: return "file exists"
            case .permissionDenied: return "permission denied"
            case .backendUnavailable, .invalidArgument: return reason
            case .slotsExhausted:
                return "no free operation slot (every one of the loop's slotsMax slots is in use)"
            case .system(let e): return unsafe "\(String(cString: strerror(e))) (errno \(e))"
            }
        }
    }

    public let code: Code
    /// What was being done ("recv", "open /tmp/x").
    public let operation: String
    /// Why, for the codes whose description is their reason (`invalidArgument`,
    /// `backendUnavailable`); empty otherwise.
    public let reason: String

    public init(_ code: Code, operation: String, reason: String = "") {
        self.code = code
        self.operation = operation
        self.reason = reason
    }

    /// Maps a negative CQE result (or a negated errno) to an error; `OpResult.slotsExhausted`
    /// negated is `.slotsExhausted`.
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
        case -OpResult.slotsExhausted: code = .slotsExhausted
        default: code = .system(errno: e)
        }
        self.init(code, operation: operation)
    }

    public var errnoValue: Int32? { code.errno }

    public var description: String { "\(operation): \(code.text(reason: reason))" }
}

extension OpResult {
    /// The `res` of an operation that was never started because every operation slot of
    /// the loop was in use. Outside the kernel's errno range (1...4095), so it is never
    /// mistaken for a real EAGAIN; `RingError(errno: -res, ...)` makes it `.slotsExhausted`.
    public static let slotsExhausted: Int32 = -0x1_0000

    /// The operation never started: no operation slot was free.
    public var isSlotsExhausted: Bool { res == OpResult.slotsExhausted }
}

/// Traps on errors that can only come from a bug in Spool's own fd or buffer bookkeeping.
@inline(__always)
func checkProgrammerError(_ res: Int32, _ op: StaticString) {
    if res == -EFAULT || res == -EBADF {
        preconditionFailure("\(op) returned errno \(-res): bug in Spool's fd/buffer bookkeeping")
    }
}
