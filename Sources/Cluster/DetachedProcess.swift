// Cluster.DetachedProcess: the parts of a cluster run as processes of their own session,
// so they outlive the `spool cluster up` that started them and a terminal's hang-up: stdin
// on /dev/null, stdout and stderr appended to the part's log, an empty signal mask and
// default handlers (this process blocks its stop signals; a child that inherited that
// would ignore the SIGTERM that stops it), the environment given and nothing else.
// `down` finds them again by pid (cluster.json) and stops them with a signal.
import Glibc

public struct ClusterError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum DetachedProcess {
    /// Starts `path` with `argv` (argv[0] its name) in a new session; returns its pid.
    public static func start(_ path: String, _ argv: [String], environment: [String], log: String) throws(ClusterError) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        // POSIX_SPAWN_SETSID (glibc 2.26): the child leads a session of its own.
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | 0x80))
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var pid: pid_t = 0
        let rc = cArgs.withUnsafeBufferPointer { a in
            cEnv.withUnsafeBufferPointer { e in
                posix_spawn(&pid, path, &actions, &attr, a.baseAddress!, e.baseAddress!)
            }
        }
        guard rc == 0 else { throw ClusterError("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Whether `pid` still runs. A child of this process that ended is reaped here; a
    /// zombie another parent has not reaped yet (state Z in /proc) has ended too.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return false }
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        // /proc/PID/stat: "pid (comm) S ..."; comm may hold spaces and parentheses.
        if let stat = ClusterFiles.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") {
            let rest = stat[stat.index(after: close)...].drop(while: { $0 == " " })
            if rest.first == "Z" { return false }
        }
        return true
    }

    /// Sends `signal` and waits up to `grace` for the process to end; then SIGKILL. True
    /// when it ended within the grace.
    @discardableResult
    public static func stop(_ pid: Int32, signal: Int32 = SIGTERM, grace: Duration) -> Bool {
        guard isAlive(pid) else { return true }
        kill(pid, signal)
        if waitGone(pid, within: grace) { return true }
        kill(pid, SIGKILL)
        _ = waitGone(pid, within: .seconds(5))
        return false
    }

    /// Polls every 50 ms until `pid` is gone or `within` passed.
    public static func waitGone(_ pid: Int32, within: Duration) -> Bool {
        let steps = max(1, Int(within.components.seconds * 20 + within.components.attoseconds / 50_000_000_000_000_000))
        for _ in 0..<steps {
            if !isAlive(pid) { return true }
            usleep(50_000)
        }
        return !isAlive(pid)
    }

    /// This executable's path (to start `spool serve`, `spool engine`, `spool gateway`).
    public static func currentExecutable() throws(ClusterError) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBufferPointer { readlink("/proc/self/exe", $0.baseAddress!, 4095) }
        guard n > 0 else { throw ClusterError("cannot read /proc/self/exe: errno \(errno)") }
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The first executable `name` on PATH or in `extra` directories.
    public static func locate(_ name: String, extra: [String] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":").map(String.init) + extra {
            let p = dir + "/" + name
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    /// Runs `argv` to completion (not detached); its exit status and output.
    public static func run(_ path: String, _ argv: [String], environment: [String], log: String) throws(ClusterError) -> Int32 {
        let pid = try start(path, argv, environment: environment, log: log)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
