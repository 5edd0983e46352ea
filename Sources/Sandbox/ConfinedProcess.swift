// Sandbox.ConfinedProcess: a child process started under confinement (see Confinement):
// rlimits, its own process group, SIGKILL when the spawning thread's process dies, only the
// descriptors it is given, the seccomp filter, and either bubblewrap's namespaces with only
// the named paths bound in, or (direct) a Landlock ruleset of those paths.
//
// PR_SET_PDEATHSIG fires when the *thread* that forked exits, so spawn from a thread that
// outlives the child (the runner's own thread per job does).
import CSandbox
import Glibc
import ProcFS
import Threads

public struct SandboxLimits: Sendable, Equatable {
    /// RLIMIT_CPU: SIGXCPU at this many CPU seconds, SIGKILL a second later.
    public var cpuSeconds: Int64 = 4 * 3600
    /// RLIMIT_AS.
    public var addressSpaceBytes: Int64 = 4 << 30
    /// Resident memory, page cache it dirties included, in the worker's memory cgroup
    /// (where one can be made: MemoryCgroups); the kernel kills the worker past it.
    public var memoryBytes: Int64 = 4 << 30
    /// RLIMIT_FSIZE: the largest file the child may write.
    public var fileSizeBytes: Int64 = 64 << 30
    /// RLIMIT_NOFILE.
    public var openFiles: Int64 = 256
    /// RLIMIT_NPROC (counted per user; the seccomp filter already refuses new processes).
    public var processes: Int64 = 4096
    /// Wall-clock deadline, enforced by whoever waits for the child (SIGKILL past it).
    public var wallSeconds: Double = 6 * 3600
    public init() {}
}

public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    public var description: String {
        switch self {
        case .exited(let rc): return "exit status \(rc)"
        case .signaled(let s): return "killed by \(signalName(s))"
        }
    }
}

public func signalName(_ s: Int32) -> String {
    let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT", SIGKILL: "SIGKILL", SIGBUS: "SIGBUS", SIGILL: "SIGILL",
                                  SIGFPE: "SIGFPE", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS", SIGTERM: "SIGTERM",
                                  SIGTRAP: "SIGTRAP", SIGPIPE: "SIGPIPE", SIGINT: "SIGINT"]
    return names[s] ?? "signal \(s)"
}

public struct SandboxError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// Paths the child sees. Inside bubblewrap each host path appears at its `inside` path;
/// a direct child sees host paths (Landlock limits it to these).
public struct SandboxView: Sendable {
    public var readOnly: [(host: String, inside: String)] = []
    public var readWrite: [(host: String, inside: String)] = []
    public var workingDirectory = "/"
    public init() {}
}

public final class ConfinedProcess: @unchecked Sendable {
    public let pid: pid_t
    /// bubblewrap answers a payload killed by signal N with exit status 128 + N.
    let viaBubblewrap: Bool
    private var reaped: ExitStatus?

    init(pid: pid_t, viaBubblewrap: Bool) { self.pid = pid; self.viaBubblewrap = viaBubblewrap }

    /// Starts `executable arguments` confined. `fds[i]` becomes descriptor i in the child
    /// (0, 1, 2 at least); nothing else is inherited. The environment is exactly `environment`.
    public static func spawn(executable: String, arguments: [String], environment: [String], fds: [Int32],
                             view: SandboxView, limits: SandboxLimits, confinement: ConfinementReport,
                             cpus: [Int32] = [], allowProcesses: Bool = false, cgroup: JobCgroup? = nil) throws(SandboxError) -> ConfinedProcess {
        let cgroupFD = cgroup?.procsFD ?? -1
        switch confinement.kind {
        case .bubblewrap:
            // The filter travels to bwrap on a memfd, installed right before the payload's exec.
            let filter = try filterDescriptor(allowProcesses: allowProcesses)
            defer { close(filter) }
            let slot = Int32(fds.count)
            let argv = [confinement.bubblewrap ?? "bwrap"]
                + BubblewrapCommand.arguments(executable: executable, view: view, seccompFD: slot)
                + ["--", executable] + arguments
            return try spawnRaw(argv[0], argv, environment: environment, fds: fds + [filter], limits: limits,
                                seccomp: false, landlock: -1, cpus: cpus, viaBubblewrap: true, allowProcesses: allowProcesses,
                                cgroupProcsFD: cgroupFD)
        case .direct:
            var landlock: Int32 = -1
            if confinement.landlockABI != nil {
                landlock = try landlockRuleset(executable: executable, view: view)
            }
            defer { if landlock >= 0 { close(landlock) } }
            return try spawnRaw(executable, [executable] + arguments, environment: environment, fds: fds, limits: limits,
                                seccomp: true, landlock: landlock, cpus: cpus, viaBubblewrap: false, allowProcesses: allowProcesses,
                                cgroupProcsFD: cgroupFD)
        }
    }

    /// A trusted helper program Spool itself runs (openssl, nginx), unconfined: `argv[0]` is
    /// its name, `fds[i]` becomes descriptor i and nothing else is inherited, signals at their
    /// defaults, in its own process group, killed if this process dies. Never for media or
    /// plugins: those go through `spawn`.
    public static func spawnHelper(path: String, argv: [String], environment: [String], fds: [Int32]) throws(SandboxError) -> ConfinedProcess {
        try spawnPlain(path, argv, environment: environment, fds: fds)
    }

    /// `spawnHelper` for a helper that runs as long as Spool does (nginx behind `spool
    /// gateway`): spawned, and then waited for, on an OS thread of its own, because
    /// PR_SET_PDEATHSIG fires when the *thread* that spawned the child ends, and a thread of
    /// Swift's pool may end at any time. (An nginx killed that way left its workers holding
    /// the ports.) Returns the child and its exit status to come.
    public static func spawnLongLivedHelper(path: String, argv: [String], environment: [String],
                                            fds: [Int32]) async throws -> (ConfinedProcess, Task<ExitStatus, Never>) {
        let (statuses, report) = AsyncStream.makeStream(of: ExitStatus.self)
        let child: ConfinedProcess = try await withCheckedThrowingContinuation { started in
            let ok = OSThread.spawn {
                let c: ConfinedProcess
                do {
                    c = try spawnHelper(path: path, argv: argv, environment: environment, fds: fds)
                } catch {
                    started.resume(throwing: error)
                    report.finish()
                    return
                }
                started.resume(returning: c)
                report.yield(c.wait())
                report.finish()
            }
            if !ok { started.resume(throwing: SandboxError("no thread to run \(path) on")) }
        }
        let exited = Task<ExitStatus, Never> {
            for await s in statuses { return s }
            return .exited(-1)
        }
        return (child, exited)
    }

    /// An unconfined child (for probes): descriptors as given, its own process group.
    static func spawnPlain(_ path: String, _ argv: [String], environment: [String], fds: [Int32]) throws(SandboxError) -> ConfinedProcess {
        var limits = SandboxLimits()
        limits.cpuSeconds = 0; limits.addressSpaceBytes = 0; limits.fileSizeBytes = 0; limits.openFiles = 0; limits.processes = 0
        return try spawnRaw(path, argv, environment: environment, fds: fds, limits: limits, seccomp: false, landlock: -1,
                            cpus: [], viaBubblewrap: false)
    }

    static func spawnRaw(_ path: String, _ argv: [String], environment: [String], fds: [Int32], limits: SandboxLimits,
                         seccomp: Bool, landlock: Int32, cpus: [Int32], viaBubblewrap: Bool,
                         allowProcesses: Bool = false, cgroupProcsFD: Int32 = -1) throws(SandboxError) -> ConfinedProcess {
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var pid: pid_t = 0
        let rc: Int32 = path.withCString { cPath in
            fds.withUnsafeBufferPointer { fdBuffer in
                cpus.withUnsafeBufferPointer { cpuBuffer in
                    cArgs.withUnsafeMutableBufferPointer { argBuffer in
                        cEnv.withUnsafeMutableBufferPointer { envBuffer in
                            var s = spool_spawn()
                            s.path = cPath
                            s.argv = UnsafePointer(argBuffer.baseAddress)
                            s.envp = UnsafePointer(envBuffer.baseAddress)
                            s.fds = fdBuffer.baseAddress
                            s.nfds = Int32(fds.count)
                            s.limits = spool_limits(cpu_seconds: limits.cpuSeconds, address_space: limits.addressSpaceBytes,
                                                    file_size: limits.fileSizeBytes, open_files: limits.openFiles,
                                                    processes: limits.processes)
                            s.install_seccomp = seccomp ? 1 : 0
                            s.allow_processes = allowProcesses ? 1 : 0
                            s.landlock_fd = landlock
                            s.drop_capabilities = seccomp ? 1 : 0  // a direct child (bwrap drops its own)
                            s.cpus = cpuBuffer.baseAddress
                            s.ncpus = Int32(cpus.count)
                            s.cgroup_procs_fd = cgroupProcsFD
                            return spool_spawn_confined(&s, &pid)
                        }
                    }
                }
            }
        }
        guard rc == 0 else { throw SandboxError("cannot start \(path): \(errnoText(-rc))") }
        return ConfinedProcess(pid: pid, viaBubblewrap: viaBubblewrap)
    }

    /// Makes this process non-dumpable: its /proc entries (environ, fd, maps, mem) then need
    /// CAP_SYS_PTRACE, which no confined child has, even one of the same user. (No core
    /// dumps of this process either.) Engines whose children are not namespaced call it.
    public static func protectThisProcess() {
        spool_set_dumpable(0)
    }

    /// Sends `sig` to the child's process group (everything it started).
    public func signal(_ sig: Int32) {
        if reaped == nil { kill(-pid, sig) }
    }

    /// The exit status if the child has ended (reaps it), else nil.
    public func poll() -> ExitStatus? {
        if let r = reaped { return r }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return nil }
        return record(status)
    }

    /// Blocks until the child ends.
    public func wait() -> ExitStatus {
        if let r = reaped { return r }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .exited(-1) }
        }
        return record(status)
    }

    private func record(_ status: Int32) -> ExitStatus {
        let result: ExitStatus
        if status & 0x7f == 0 {
            let code = (status >> 8) & 0xff
            result = viaBubblewrap && code > 128 && code < 128 + 65 ? .signaled(code - 128) : .exited(code)
        } else {
            result = .signaled(status & 0x7f)
        }
        reaped = result
        return result
    }

    static func filterDescriptor(allowProcesses: Bool) throws(SandboxError) -> Int32 {
        let fd = spool_sandbox_filter_fd(allowProcesses ? 1 : 0)
        guard fd >= 0 else { throw SandboxError("the seccomp filter's memfd: \(errnoText(-fd))") }
        return fd
    }

    /// The direct child's file access: read and execute beneath the system directories, the
    /// directories of the libraries this process has mapped (the worker is this binary), the
    /// executable and the read-only paths; everything beneath the read-write paths.
    static func landlockRuleset(executable: String, view: SandboxView) throws(SandboxError) -> Int32 {
        // /proc is readable: Swift reads /proc/self/cmdline, and libdispatch's pool monitor
        // reads /proc/<tid>/stat of its threads (a top-level entry per thread, so a rule on
        // the child's own /proc/<pid> is not enough: it crashed the worker). Landlock still
        // refuses ptrace-attach access (mem) to other processes, and `protectThisProcess`
        // makes the engine non-dumpable, which closes its environ and the rest to a child
        // without capabilities.
        var read = ["/usr", "/etc/ld.so.cache", "/dev/urandom", "/proc", executable] + mappedLibraryDirectories()
        for d in ["/lib", "/lib64", "/bin"] where isRealDirectory(d) { read.append(d) }
        read += view.readOnly.map(\.host)
        let write = ["/dev/null"] + view.readWrite.map(\.host)
        let uniqueRead = Array(Set(read)).sorted()
        var failed: Int32 = -1
        let fd = withCStrings(uniqueRead) { r in
            withCStrings(write) { w in
                spool_landlock_ruleset(r.baseAddress, Int32(uniqueRead.count), w.baseAddress, Int32(write.count), &failed)
            }
        }
        guard fd >= 0 else {
            let all = uniqueRead + write
            let which = failed >= 0 && Int(failed) < all.count ? " (\(all[Int(failed)]))" : ""
            throw SandboxError("Landlock ruleset\(which): \(errnoText(-fd))")
        }
        return fd
    }
}

func isRealDirectory(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafeBufferPointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { for c in copies { free(c) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
    return pointers.withUnsafeBufferPointer(body)
}

/// Directories of the Swift runtime's shared objects this process has mapped, outside
/// /usr: the worker is this same binary and needs them. (Only the runtime's: a plugin the
/// engine dlopened is mapped too, and its directory is none of a worker's business.)
/// Read once: the mappings of a running process's runtime do not change (every spawn used
/// to read /proc/self/maps again).
func mappedLibraryDirectories() -> [String] { runtimeLibraryDirectories }

let runtimeLibraryDirectories: [String] = {
    guard let maps = ProcFile.read("/proc/self/maps", limit: 16 << 20) else { return [] }
    let runtime = ["libswift", "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime"]
    var dirs = Set<String>()
    for line in maps.split(separator: "\n") {
        guard let slash = line.firstIndex(of: "/") else { continue }
        let path = String(line[slash...])
        guard path.contains(".so"), !path.hasPrefix("/usr/"), let end = path.lastIndex(of: "/") else { continue }
        let file = path[path.index(after: end)...]
        guard runtime.contains(where: { file.hasPrefix($0) }) else { continue }
        dirs.insert(String(path[..<end]))
    }
    return dirs.sorted()
}()

/// bubblewrap's command line for a worker: every namespace unshared, all capabilities
/// dropped, read-only system directories, a fresh /proc (of the new PID namespace: none of
/// the engine's), a minimal /dev, only the view's paths bound in, and the rest read-only.
enum BubblewrapCommand {
    /// /usr read-only, and /lib, /lib64, /bin, /sbin as the host has them (symlinks into
    /// /usr on merged-usr systems like Debian 12). Worked out once, not per spawn.
    static func systemBinds() -> [String] { systemBindArguments }

    static let systemBindArguments: [String] = {
        var args = ["--ro-bind", "/usr", "/usr"]
        for d in ["/lib", "/lib64", "/bin", "/sbin"] {
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink(d, &buffer, buffer.count - 1)
            if n > 0 {
                args += ["--symlink", String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self), d]
            } else if isRealDirectory(d) {
                args += ["--ro-bind", d, d]
            }
        }
        if access("/etc/ld.so.cache", R_OK) == 0 { args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"] }
        // Debian's alternatives: libraries under /usr that are symlinks through here (libblas).
        if isRealDirectory("/etc/alternatives") { args += ["--ro-bind", "/etc/alternatives", "/etc/alternatives"] }
        return args
    }()

    static func arguments(executable: String, view: SandboxView, seccompFD: Int32) -> [String] {
        var args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        args += systemBinds()
        // Mounts apply in order: the fresh /proc and /dev first. No /tmp: the root (bwrap's
        // own tmpfs) is remounted read-only at the end, so the staging directory is the
        // only place the child can write (a writable tmpfs would also be memory no rlimit
        // counts).
        args += ["--proc", "/proc", "--dev", "/dev"]
        for dir in mappedLibraryDirectories() { args += ["--ro-bind", dir, dir] }
        args += ["--ro-bind", executable, executable]
        for (host, inside) in view.readOnly { args += ["--ro-bind", host, inside] }
        for (host, inside) in view.readWrite { args += ["--bind", host, inside] }
        args += ["--remount-ro", "/", "--chdir", view.workingDirectory, "--seccomp", String(seccompFD)]
        return args
    }
}

/// A close-on-exec pipe (read end, write end), or nil with errno set.
public func makePipe() -> (read: Int32, write: Int32)? {
    var fds: [Int32] = [-1, -1]
    let rc = fds.withUnsafeMutableBufferPointer { spool_pipe_cloexec($0.baseAddress) }
    guard rc == 0 else { errno = -rc; return nil }
    return (fds[0], fds[1])
}
