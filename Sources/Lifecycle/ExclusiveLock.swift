// Lifecycle.ExclusiveLock: one process at a time for a resource on disk (a data directory's
// database). An exclusive, non-blocking flock on a lock file, held for the object's life
// and released by the kernel when the process dies however it dies, so a crash never
// leaves a stale lock behind.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

public final class ExclusiveLock: Sendable {
    public enum Failure: Error, Sendable, CustomStringConvertible, Equatable {
        /// Another open description (another process, or another lock in this one) holds it.
        case held(path: String)
        case system(path: String, errno: Int32, what: String)

        public var description: String {
            switch self {
            case .held(let path): return "\(path) is held by another process"
            case .system(let path, let e, let what): return "cannot \(what) \(path): errno \(e)"
            }
        }
    }

    public let path: String
    /// The lock file's descriptor; -1 once released.
    private let descriptor: Mutex<Int32>

    /// Creates `path` (0600) if missing and takes the lock, or throws `.held` at once.
    public init(path: String) throws(Failure) {
        let fd = unsafe open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .system(path: path, errno: errno, what: "open") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { throw .held(path: path) }
            throw .system(path: path, errno: e, what: "lock")
        }
        self.path = path
        descriptor = Mutex(fd)
    }

    /// Lets go of the lock before this object ends (an owner closing its resource for a
    /// reopen in the same process). Idempotent.
    public func release() {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    deinit { release() }
}
