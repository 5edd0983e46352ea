// KernelReport: what `spool kernel-check` and kernel-check.sh print: kernel version,
// kernel.io_uring_disabled, the process's seccomp mode, a real io_uring_setup probe, the
// opcodes Spool uses with their minimum kernels, setup flags, RLIMIT_MEMLOCK, and which
// backend Spool would choose. Exit status: 0 fully usable, 77 usable with optional
// features missing, 1 unusable (the epoll fallback runs).
internal import CURing
import BufferPool
import ProcFS
#if canImport(Glibc)
import Glibc
#endif
internal import CEpoll

public struct KernelFacts: Sendable {
    public var release: String
    /// kernel.io_uring_disabled (0, 1, 2), or nil where the sysctl does not exist (< 6.6).
    public var ioUringDisabled: Int?
    /// 0 none, 1 strict, 2 filter (from /proc/self/status).
    public var seccompMode: Int
    public var memlockSoft: UInt64?
    public var memlockHard: UInt64?

    public static var release: String {
        var u = utsname()
        unsafe uname(&u)
        return unsafe withUnsafeBytes(of: &u.release) { raw in
            unsafe String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    public static func collect() -> KernelFacts {
        let disabled = ProcFile.read("/proc/sys/kernel/io_uring_disabled").flatMap { Int($0.trimmingWhitespace()) }
        var seccomp = 0
        // This thread's view: a seccomp filter may be installed per thread.
        if let status = ProcFile.read("/proc/thread-self/status") ?? ProcFile.read("/proc/self/status") {
            seccomp = ProcFile.field("Seccomp", in: status).map { Int($0) } ?? 0
        }
        var rl = rlimit()
        var soft: UInt64?, hard: UInt64?
        if unsafe getrlimit(__rlimit_resource_t(cepoll_rlimit_memlock()), &rl) == 0 {
            soft = rl.rlim_cur == rlim_t.max ? nil : UInt64(rl.rlim_cur)
            hard = rl.rlim_max == rlim_t.max ? nil : UInt64(rl.rlim_max)
        }
        return KernelFacts(release: release, ioUringDisabled: disabled, seccompMode: seccomp, memlockSoft: soft, memlockHard: hard)
    }
}

public struct KernelReport: Sendable {
    public struct Opcode: Sendable {
        public var name: String
        public var minimumKernel: String
        public var optional: Bool
        public var supported: Bool?
    }

    public struct Feature: Sendable {
        public var name: String
        public var minimumKernel: String
        public var supported: Bool
        public var note: String
    }

    public var facts: KernelFacts
    public var kernel: KernelVersion
    /// 0 when io_uring_setup succeeded, else its errno.
    public var setupErrno: Int32
    public var opcodes: [Opcode] = []
    public var features: [Feature] = []
    public var setupFlags: [String] = []
    public var chosenBackend: IOBackendKind
    public var reason: String
    public var problems: [String] = []

    public var exitCode: Int32 {
        if setupErrno != 0 { return 1 }
        if opcodes.contains(where: { !$0.optional && $0.supported == false }) { return 1 }
        if features.contains(where: { $0.name == "provided-buffer ring" && !$0.supported }) { return 1 }
        let missingOptional = opcodes.contains { $0.optional && $0.supported == false } || features.contains { !$0.supported }
        return missingOptional ? 77 : 0
    }

    var forcedEpoll = false

    public static func collect() -> KernelReport {
        let facts = KernelFacts.collect()
        let kernel = KernelVersion(release: facts.release) ?? KernelVersion(0, 0)
        var report = KernelReport(facts: facts, kernel: kernel, setupErrno: 0, chosenBackend: .uring, reason: "")

        // The backend's own check (URingProbe), run on a small ring.
        var got: UInt32 = 0
        var err: Int32 = 0
        var usable = false
        if let ring = unsafe curing_ring_create(8, URingProbe.wantedSetupFlags, &got, &err) {
            let probe = unsafe URingProbe(ring: ring)
            report.opcodes = probe.opcodes.map {
                Opcode(name: $0.name, minimumKernel: $0.minimumKernel, optional: $0.optional, supported: $0.supported)
            }
            for flag in URingProbe.setupFlagNames {
                let name = "\(flag.name) (\(flag.since))"
                if got & flag.bit != 0 {
                    report.setupFlags.append(name)
                } else {
                    report.features.append(Feature(name: "setup flag \(name)", minimumKernel: flag.since, supported: false, note: "10-30% slower without it"))
                }
            }
            let brc = unsafe URingProbe.providedBufferRing(ring, entries: 8)
            report.features.append(Feature(name: "provided-buffer ring", minimumKernel: "5.19", supported: brc == 0,
                                           note: brc == 0 ? "receives land in pool buffers chosen at arrival" : "required: without it the epoll backend runs"))
            if brc != 0 {
                report.problems.append("IORING_REGISTER_PBUF_RING failed (errno \(-brc)): Spool needs Linux 5.19+ for io_uring; epoll will run")
            }
            report.features.append(Feature(name: "multishot recv", minimumKernel: "6.0", supported: kernel >= KernelVersion(6, 0),
                                           note: "without it each receive re-arms a single-shot recv"))
            report.features.append(Feature(name: "multishot accept", minimumKernel: "5.19", supported: kernel >= KernelVersion(5, 19),
                                           note: "without it each accept is re-armed"))
            unsafe curing_ring_destroy(ring)
            for op in probe.opcodes where op.supported == false && !op.optional {
                report.problems.append("required opcode \(op.name) is missing: it needs Linux \(op.minimumKernel)+; upgrade the kernel (epoll will run meanwhile)")
            }
            // The same verdict the backend reaches at start-up.
            usable = probe.missingRequired == nil && brc == 0
        } else {
            report.setupErrno = err
            report.problems.append(BackendSelector.explain(URingBackend.SetupFailure(errno: err, step: "io_uring_setup")))
        }

        if let d = facts.ioUringDisabled, d != 0 {
            report.problems.append("sysctl kernel.io_uring_disabled=\(d): set it to 0 (sysctl -w kernel.io_uring_disabled=0) to let Spool use io_uring")
        }
        if let soft = facts.memlockSoft, soft < 64 * 1024 * 1024, kernel < KernelVersion(5, 12) {
            report.problems.append("RLIMIT_MEMLOCK is \(soft / 1024) KiB; kernels before 5.12 charge rings and fixed buffers to it: raise it (ulimit -l)")
        }

        let blocked = !usable
        let pref = (try? BackendSelector.preference(.automatic)) ?? .automatic
        if pref == .epoll {
            report.chosenBackend = .epoll
            report.forcedEpoll = true
            report.reason = "SPOOL_IO_BACKEND=epoll forces the fallback"
        } else if blocked {
            report.chosenBackend = .epoll
            report.reason = pref == .uring ? "SPOOL_IO_BACKEND=uring is set, so Spool will refuse to start" : "io_uring is not usable, so the epoll fallback runs"
        } else {
            report.chosenBackend = .uring
            report.reason = "io_uring works"
        }
        return report
    }

    public func render() -> String {
        var out: [String] = []
        out.append("Spool kernel check")
        out.append("  kernel:                  \(facts.release)")
        out.append("  kernel.io_uring_disabled: \(facts.ioUringDisabled.map(String.init) ?? "not present (kernel < 6.6: io_uring enabled)")")
        out.append("  seccomp mode:            \(["0": "0 (none)", "1": "1 (strict)", "2": "2 (filter)"]["\(facts.seccompMode)"] ?? "\(facts.seccompMode)")")
        let ml = facts.memlockSoft.map { "\($0 / 1024) KiB" } ?? "unlimited"
        out.append("  RLIMIT_MEMLOCK:          \(ml)\(kernel >= KernelVersion(5, 12) ? " (not charged for io_uring on 5.12+: memcg accounting)" : "")")
        out.append("  io_uring_setup probe:    \(setupErrno == 0 ? "ok" : unsafe "FAILED: \(String(cString: strerror(setupErrno))) (errno \(setupErrno))")")
        if !setupFlags.isEmpty { out.append("  setup flags in force:    \(setupFlags.joined(separator: ", "))") }
        if !opcodes.isEmpty {
            out.append("  opcodes Spool uses:")
            for op in opcodes {
                let state = op.supported.map { $0 ? "yes" : "MISSING" } ?? "unknown (probe unsupported)"
                out.append("    \(op.name.padding(16)) since \(op.minimumKernel.padding(5)) \(op.optional ? "optional" : "required")  \(state)")
            }
        }
        if !features.isEmpty {
            out.append("  features:")
            for f in features {
                out.append("    \(f.name.padding(34)) since \(f.minimumKernel.padding(5)) \(f.supported ? "yes" : "NO: \(f.note)")")
            }
        }
        out.append("  backend Spool would run: \(chosenBackend) (\(reason))")
        if problems.isEmpty {
            out.append("  result:                  \(exitCode == 0 ? "io_uring fully usable" : "io_uring usable; optional features missing")")
        } else {
            out.append("  problems and fixes:")
            for p in problems { out.append("    - \(p)") }
        }
        out.append("  exit status:             \(exitCode) (0 fully usable, 77 usable with optional features missing, 1 unusable: fallback runs)")
        return out.joined(separator: "\n")
    }

    /// Installs a seccomp filter that blocks io_uring in this process (tests and
    /// `spool kernel-check --simulate-seccomp`).
    public static func denyIOUringWithSeccomp() throws(RingError) {
        let rc = curing_deny_io_uring_seccomp()
        if rc != 0 { throw RingError(errno: -rc, operation: "install seccomp filter") }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }

    func padding(_ width: Int) -> String {
        count >= width ? String(self) : String(self) + String(repeating: " ", count: width - count)
    }
}
