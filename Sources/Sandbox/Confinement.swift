// Sandbox.Confinement: what this machine can confine a child with, probed once: bubblewrap
// (new user, network, PID, IPC, UTS, cgroup and mount namespaces) when the `bwrap` binary is
// here and works; otherwise a direct child under Landlock (when the kernel has it) for its
// file access. Both get the same rlimits and seccomp filter. `spool kernel-check` and the
// engine's capabilities report the result and, for what is missing, why.
import CSandbox
import Glibc
import ProcFS

public enum ConfinementKind: String, Sendable {
    /// bubblewrap namespaces + rlimits + seccomp.
    case bubblewrap
    /// A direct child: rlimits + seccomp (+ Landlock when the kernel has it).
    case direct
}

public struct ConfinementReport: Sendable, CustomStringConvertible {
    public var kind: ConfinementKind
    /// The working bwrap, or nil.
    public var bubblewrap: String?
    /// Why bubblewrap is not used (nil when it is).
    public var bubblewrapReason: String?
    /// The kernel's Landlock ABI version, or nil.
    public var landlockABI: Int?
    public var landlockReason: String?
    /// Where each worker gets a memory cgroup of its own (MemoryCgroups), or nil.
    public var memoryCgroups: MemoryCgroups?
    /// Why workers get no memory cgroup (nil when they do).
    public var cgroupReason: String?
    /// A per-job memory cgroup limit (cgroup v2, or v1 where the memory controller is there).
    public var cgroupMemory: Bool { memoryCgroups != nil }

    /// One line for logs and kernel-check.
    public var description: String {
        var parts: [String] = []
        switch kind {
        case .bubblewrap: parts.append("bubblewrap (\(bubblewrap ?? "bwrap")): network, PID, IPC, mount and user namespaces")
        case .direct: parts.append("NOT namespaced: \(bubblewrapReason ?? "bubblewrap unavailable")")
        }
        parts.append("seccomp filter, rlimits")
        if let abi = landlockABI { parts.append("Landlock ABI \(abi)\(kind == .direct ? " (file access)" : " (available)")") }
        else { parts.append("no Landlock (\(landlockReason ?? "unavailable"))") }
        if let m = memoryCgroups { parts.append("a memory cgroup per job (cgroup \(m.version.rawValue), under \(m.parent))") }
        else { parts.append("no memory cgroup per job (\(cgroupReason ?? "unavailable"))") }
        return parts.joined(separator: "; ")
    }

    /// Probes the machine: `bwrap` found on PATH (or at `bubblewrapPath`) and able to start
    /// a process in fresh namespaces; the Landlock ABI; where a memory cgroup per
    /// worker can be made (MemoryCgroups). `allowBubblewrap: false` forces the direct child (configuration, tests).
    public static func probe(bubblewrapPath: String? = nil, allowBubblewrap: Bool = true) -> ConfinementReport {
        let abi = spool_landlock_abi()
        var report = ConfinementReport(kind: .direct, bubblewrap: nil, bubblewrapReason: nil,
                                       landlockABI: abi > 0 ? Int(abi) : nil,
                                       landlockReason: abi > 0 ? nil : (abi == -ENOSYS ? "the kernel has no Landlock" : "Landlock is disabled (\(errnoText(-abi)))"),
                                       memoryCgroups: nil, cgroupReason: nil)
        switch MemoryCgroups.probe() {
        case .success(let m): report.memoryCgroups = m
        case .failure(let why): report.cgroupReason = why.reason
        }
        guard allowBubblewrap else {
            report.bubblewrapReason = "bubblewrap disabled by configuration"
            return report
        }
        guard let bwrap = bubblewrapPath ?? findOnPath("bwrap") else {
            report.bubblewrapReason = "bwrap not found (Debian package bubblewrap)"
            return report
        }
        // A real start: namespaces can be refused (no user namespaces, a container's seccomp).
        let args = [bwrap] + BubblewrapCommand.systemBinds() + ["--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--", "/bin/true"]
        switch runQuiet(bwrap, args) {
        case .some(0):
            report.kind = .bubblewrap
            report.bubblewrap = bwrap
        case .some(let rc):
            report.bubblewrapReason = "bwrap cannot create namespaces here (exit \(rc): user namespaces disabled or filtered)"
        case .none:
            report.bubblewrapReason = "bwrap could not be started"
        }
        return report
    }
}

func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

func findOnPath(_ name: String) -> String? { locateProgram(name) }

/// Where the program `name` is: the first executable of that name in a PATH directory, then
/// in `extra` (nginx lives in /usr/sbin, which a user's PATH often lacks).
public func locateProgram(_ name: String, extra: [String] = []) -> String? {
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":").map(String.init) + extra where !dir.isEmpty {
        let candidate = dir + "/" + name
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// Runs a command with its output on /dev/null and returns its exit status (nil: not started).
func runQuiet(_ path: String, _ argv: [String]) -> Int32? {
    let null = open("/dev/null", O_RDWR | O_CLOEXEC)
    guard null >= 0 else { return nil }
    defer { close(null) }
    guard let child = try? ConfinedProcess.spawnPlain(path, argv, environment: ["PATH=/usr/bin:/bin"], fds: [null, null, null]) else { return nil }
    switch child.wait() {
    case .exited(let rc): return rc
    case .signaled(let s): return 128 + s
    }
}

