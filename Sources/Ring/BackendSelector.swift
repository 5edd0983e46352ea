// BackendSelector: decides between io_uring and epoll, once per loop, and says why once
// per process.
//
// SPOOL_IO_BACKEND=uring forces io_uring and fails clearly when it cannot run;
// SPOOL_IO_BACKEND=epoll forces the fallback; unset (or "auto") tries io_uring and falls
// back to epoll when io_uring_setup fails (ENOSYS: no io_uring; EPERM: seccomp or
// kernel.io_uring_disabled) or a required opcode or the provided-buffer ring is missing.
import BufferPool
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct KernelVersion: Comparable, Sendable, CustomStringConvertible {
    public var major: Int, minor: Int, patch: Int
    public init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses the leading "X.Y.Z" of a release string such as "6.18.44-fc-v657".
    public init?(release: String) {
        let head = release.prefix { $0.isNumber || $0 == "." }
        let parts = head.split(separator: ".").compactMap { Int($0) }
        guard parts.count >= 2 else { return nil }
        self.init(parts[0], parts[1], parts.count > 2 ? parts[2] : 0)
    }

    public static var running: KernelVersion {
        KernelVersion(release: KernelFacts.release) ?? KernelVersion(0, 0)
    }

    public static func < (a: KernelVersion, b: KernelVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }
}

enum BackendSelector {
    private static let announced = Atomic<Bool>(false)

    struct Choice {
        let backend: any IOBackend
        let reason: String
    }

    static func preference(_ configured: EventLoop.BackendPreference) throws(RingError) -> EventLoop.BackendPreference {
        guard configured == .automatic else { return configured }
        guard let raw = unsafe getenv("SPOOL_IO_BACKEND").map({ unsafe String(cString: $0) }), !raw.isEmpty else { return .automatic }
        switch raw.lowercased() {
        case "auto", "automatic": return .automatic
        case "uring", "io_uring", "iouring": return .uring
        case "epoll": return .epoll
        default:
            throw RingError(.invalidArgument, operation: "choose I/O backend", reason: "SPOOL_IO_BACKEND=\(raw) is not one of uring, epoll, auto")
        }
    }

    /// Explains an io_uring setup failure in terms a user can act on.
    static func explain(_ failure: URingBackend.SetupFailure) -> String {
        switch failure.errno {
        case ENOSYS:
            return "\(failure.step) failed with ENOSYS: this kernel has no io_uring (needs Linux 5.19+ built with CONFIG_IO_URING)"
        case EPERM:
            let facts = KernelFacts.collect()
            if facts.ioUringDisabled == 2 { return "\(failure.step) failed with EPERM: sysctl kernel.io_uring_disabled=2 forbids io_uring (set it to 0)" }
            if facts.ioUringDisabled == 1 { return "\(failure.step) failed with EPERM: sysctl kernel.io_uring_disabled=1 limits io_uring to the io_uring_group (add the user or set it to 0)" }
            if facts.seccompMode != 0 { return "\(failure.step) failed with EPERM: a seccomp filter blocks io_uring (Docker's default profile does; run with a profile that allows io_uring_setup/enter/register)" }
            return "\(failure.step) failed with EPERM: io_uring is not permitted here (seccomp, LSM or sysctl)"
        case ENOMEM:
            return "\(failure.step) failed with ENOMEM: raise RLIMIT_MEMLOCK (ulimit -l) or lower the ring size"
        default:
            return unsafe "\(failure.step) failed: \(String(cString: strerror(failure.errno))) (errno \(failure.errno))"
        }
    }

    static func make(configuration: EventLoop.Configuration, pool: BufferPool, logger: Logger) throws(RingError) -> Choice {
        let pref = try preference(configuration.backend)
        let choice: Choice
        switch pref {
        case .epoll:
            choice = Choice(backend: try EpollBackend(pool: pool), reason: "forced by SPOOL_IO_BACKEND=epoll")
        case .uring, .automatic:
            do {
                let b = try URingBackend(entries: configuration.ringEntries, pool: pool, kernel: .running, recvBuffersMax: configuration.recvBuffersMax,
                                         slots: configuration.slotsMax)
                choice = Choice(backend: b, reason: pref == .uring ? "forced by SPOOL_IO_BACKEND=uring" : "io_uring probe succeeded")
            } catch {
                let why = explain(error)
                if pref == .uring {
                    throw RingError(.backendUnavailable, operation: "start io_uring backend", reason: "SPOOL_IO_BACKEND=uring but io_uring cannot run: \(why)")
                }
                choice = Choice(backend: try EpollBackend(pool: pool), reason: "falling back to epoll: \(why)")
            }
        }
        if !announced.exchange(true, ordering: .relaxed) {
            logger.notice("I/O backend: \(choice.backend.kind) (\(choice.reason)); \(choice.backend.summary)")
        }
        return choice
    }
}
