// Sandbox.MemoryCgroups: a memory cgroup per sandboxed worker, so a transcode's resident
// memory and the page cache it dirties are capped and counted as its own (RLIMIT_AS caps
// only address space). Made where this process may make them:
//  - cgroup v2: under this process's cgroup when its cgroup.subtree_control enables the
//    memory controller, else under the parent when that one does (systemd `Delegate=yes`
//    with the engine in a leaf of its own); never by moving processes about;
//  - cgroup v1: under this process's cgroup of the memory hierarchy, when it can make
//    directories there (root, or a delegated hierarchy).
// The worker joins its cgroup in the child before it execs (CSandbox's cgroup_procs_fd), so
// everything it starts is born inside. Limits: memory.max (v2) or memory.limit_in_bytes
// (v1), swap held to the same (memory.swap.max 0; memory.memsw.limit_in_bytes where swap
// accounting is on). An out-of-memory kill shows in memory.events (v2) or
// memory.oom_control (v1) as oom_kill.
import Glibc
import ProcFS

public struct MemoryCgroups: Sendable, Equatable {
    public enum Version: String, Sendable { case v1, v2 }
    public let version: Version
    /// The directory job cgroups are made in.
    public let parent: String

    public init(version: Version, parent: String) {
        self.version = version
        self.parent = parent
    }

    /// Where this process may make memory cgroups, or why it may not. `procCgroup` and
    /// `mountInfo` are /proc/self/cgroup and /proc/self/mountinfo (tests pass their own).
    public static func probe(procCgroup: String? = ProcFile.read("/proc/self/cgroup"),
                             mountInfo: String? = ProcFile.read("/proc/self/mountinfo")) -> Result<MemoryCgroups, MemoryCgroupsUnavailable> {
        guard let procCgroup, let mountInfo else { return .failure(.init("/proc/self/cgroup or /proc/self/mountinfo is unreadable")) }
        let mounts = CgroupMounts(mountInfo)
        var reasons: [String] = []
        // cgroup v2 first: where the memory controller is on the unified hierarchy.
        if let v2 = mounts.v2, let own = ownPath(procCgroup, hierarchy: { $0.id == "0" && $0.controllers.isEmpty }) {
            let dir = v2.directory(for: own)
            if controllers(dir + "/cgroup.controllers").contains("memory") {
                for candidate in [dir, parentDirectory(dir, within: v2.mountPoint)].compactMap({ $0 }) {
                    if controllers(candidate + "/cgroup.subtree_control").contains("memory"), canMakeDirectory(in: candidate) {
                        return .success(MemoryCgroups(version: .v2, parent: candidate))
                    }
                }
                reasons.append("cgroup v2: neither \(dir) nor its parent enables the memory controller for children this process may make (delegate one: systemd Delegate=yes, with the engine in a child cgroup)")
            } else {
                reasons.append("cgroup v2: no memory controller at \(dir)")
            }
        }
        if let v1 = mounts.v1Memory, let own = ownPath(procCgroup, hierarchy: { $0.controllers.contains("memory") }) {
            let dir = v1.directory(for: own)
            if canMakeDirectory(in: dir) { return .success(MemoryCgroups(version: .v1, parent: dir)) }
            reasons.append("cgroup v1: cannot make a cgroup in \(dir) (\(errnoText(errno)))")
        }
        if reasons.isEmpty { reasons.append("no cgroup hierarchy with the memory controller is mounted") }
        return .failure(.init(reasons.joined(separator: "; ")))
    }

    /// Makes the cgroup `name` (which must not exist) with a memory limit of `limitBytes`.
    public func make(name: String, limitBytes: Int64) throws(SandboxError) -> JobCgroup {
        let path = parent + "/" + name
        if mkdir(path, 0o755) != 0 { throw SandboxError("cannot make the cgroup \(path): \(errnoText(errno))") }
        let group = JobCgroup(version: version, path: path)
        do {
            try group.setLimit(bytes: limitBytes)
            try group.openProcs()
        } catch {
            group.remove()
            throw error
        }
        return group
    }

    /// Removes the empty job cgroups named `prefix<pid>-…` whose process is gone (left by
    /// an engine that was killed; an engine still running keeps its own).
    public func removeStale(prefix: String) {
        for name in ProcFile.directoryEntries(parent) {
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count).prefix(while: { $0 != "-" })) else { continue }
            if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH { _ = rmdir(parent + "/" + name) }
        }
    }

    static func controllers(_ file: String) -> [Substring] {
        (ProcFile.read(file) ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
    }

    /// This process's path in the hierarchy whose /proc/self/cgroup line matches.
    static func ownPath(_ procCgroup: String, hierarchy matches: ((id: Substring, controllers: [Substring])) -> Bool) -> String? {
        for line in procCgroup.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let controllers = parts[1].split(separator: ",").filter { !$0.hasPrefix("name=") }
            if matches((parts[0], controllers)) { return String(parts[2]) }
        }
        return nil
    }

    static func parentDirectory(_ dir: String, within mountPoint: String) -> String? {
        guard dir != mountPoint, let slash = dir.lastIndex(of: "/") else { return nil }
        let up = String(dir[..<slash])
        return up.count >= mountPoint.count ? up : nil
    }

    /// Whether a directory can be made (and removed) in `dir`: the one sure test of delegation.
    static func canMakeDirectory(in dir: String) -> Bool {
        let probe = dir + "/spool-probe-\(getpid())"
        guard mkdir(probe, 0o755) == 0 || errno == EEXIST else { return false }
        _ = rmdir(probe)
        return true
    }
}

public struct MemoryCgroupsUnavailable: Error, Sendable, Equatable {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// The cgroup file systems of /proc/self/mountinfo: the unified one and the v1 memory one.
struct CgroupMounts {
    struct Mount {
        /// The hierarchy path mounted there ("/" unless this process sees part of it).
        var root: String
        var mountPoint: String
        /// The directory of hierarchy path `path`.
        func directory(for path: String) -> String {
            var rest = path
            if root != "/" {
                if rest == root { rest = "/" } else if rest.hasPrefix(root + "/") { rest = String(rest.dropFirst(root.count)) }
            }
            return rest == "/" ? mountPoint : mountPoint + rest
        }
    }
    var v2: Mount?
    var v1Memory: Mount?

    init(_ mountInfo: String) {
        for line in mountInfo.split(separator: "\n") {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash >= 5, dash + 1 < fields.count else { continue }
            let type = fields[dash + 1]
            let mount = Mount(root: unescape(fields[3]), mountPoint: unescape(fields[4]))
            if type == "cgroup2", v2 == nil {
                v2 = mount
            } else if type == "cgroup", v1Memory == nil, dash + 3 < fields.count,
                      fields[dash + 3].split(separator: ",").contains("memory") {
                v1Memory = mount
            }
        }
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    private func unescape(_ s: Substring) -> String {
        guard s.contains("\\") else { return String(s) }
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == 0x5C, it.count >= 3, let v = UInt8(String(decoding: it.prefix(3), as: UTF8.self), radix: 8) {
                out.append(v)
                it = it.dropFirst(3)
            } else {
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One worker's memory cgroup: its limit, the cgroup.procs the child joins through, its
/// out-of-memory kills, and its removal once the worker is gone.
public final class JobCgroup: @unchecked Sendable {
    public let version: MemoryCgroups.Version
    public let path: String
    /// cgroup.procs, open for writing (close-on-exec) until `remove`.
    public private(set) var procsFD: Int32 = -1

    init(version: MemoryCgroups.Version, path: String) {
        self.version = version
        self.path = path
    }

    deinit { if procsFD >= 0 { close(procsFD) } }

    public func setLimit(bytes: Int64) throws(SandboxError) {
        switch version {
        case .v2:
            try write(String(bytes), to: "memory.max")
            // No swap: a job over its memory is killed, not paged out (where swap is accounted).
            if access(path + "/memory.swap.max", F_OK) == 0 { try write("0", to: "memory.swap.max") }
        case .v1:
            // memsw (memory + swap) must stay >= memory: lower memory first when lowering.
            let memsw = access(path + "/memory.memsw.limit_in_bytes", F_OK) == 0
            if memsw {
                if (try? write(String(bytes), to: "memory.limit_in_bytes")) == nil {
                    try write(String(bytes), to: "memory.memsw.limit_in_bytes")
                    try write(String(bytes), to: "memory.limit_in_bytes")
                } else {
                    try write(String(bytes), to: "memory.memsw.limit_in_bytes")
                }
            } else {
                try write(String(bytes), to: "memory.limit_in_bytes")
            }
        }
    }

    /// The limit as the kernel keeps it (rounded to pages).
    public var limitBytes: Int64? {
        let file = version == .v2 ? "memory.max" : "memory.limit_in_bytes"
        return ProcFile.read(path + "/" + file).flatMap { Int64($0.controlValue) }
    }

    /// Out-of-memory kills inside this cgroup so far.
    public var oomKills: Int {
        let text = ProcFile.read(path + "/" + (version == .v2 ? "memory.events" : "memory.oom_control")) ?? ""
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: " ")
            if kv.count == 2, kv[0] == "oom_kill", let n = Int(kv[1]) { return n }
        }
        // Old v1 kernels have no oom_kill line: a hit of the limit with "under_oom" is the sign.
        if version == .v1, let failures = ProcFile.read(path + "/memory.failcnt").flatMap({ Int($0.controlValue) }),
           failures > 0, text.contains("under_oom 1") { return 1 }
        return 0
    }

    func openProcs() throws(SandboxError) {
        let fd = open(path + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError("cannot open \(path)/cgroup.procs: \(errnoText(errno))") }
        procsFD = fd
    }

    /// Removes the cgroup once its processes are gone (the kernel empties it a moment after
    /// the last one is reaped; retried for up to a second). False if it is still there.
    @discardableResult
    public func remove() -> Bool {
        if procsFD >= 0 { close(procsFD); procsFD = -1 }
        for _ in 0..<100 {
            if rmdir(path) == 0 || errno == ENOENT { return true }
            guard errno == EBUSY else { return false }
            usleep(10_000)
        }
        return false
    }

    private func write(_ value: String, to file: String) throws(SandboxError) {
        let fd = open(path + "/" + file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError("cannot open \(path)/\(file): \(errnoText(errno))") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw SandboxError("cannot write \(value) to \(path)/\(file): \(errnoText(errno))") }
    }
}

extension String {
    /// A one-value control file's text without its newline.
    fileprivate var controlValue: String { String(filter { $0 != "\n" && $0 != " " }) }
}
