// ProcFS: the one reader of /proc and /sys in Spool, and the parsers for the files it
// reads. The kernel check reads sysctls and seccomp state through it, the engine's
// resource monitor (HostMetrics) load, memory and resident size, tests RSS and status
// figures; the sandbox lists cgroup directories and the engine its work directories with
// `directoryEntries`. Standard library and Glibc only, so the lowest modules can use it.
#if canImport(Glibc)
import Glibc
#endif

public enum ProcFile {
    /// The whole file as text (these files are small and have no size until read, so it
    /// reads to the end), or nil when it cannot be opened. `limit` bounds what is kept.
    public static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = unsafe buf.withUnsafeMutableBytes { unsafe Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out.prefix(limit), as: UTF8.self)
    }

    /// The names in directory `path` ("." and ".." left out), sorted; empty when it cannot
    /// be opened.
    public static func directoryEntries(_ path: String) -> [String] { listDirectory(path) ?? [] }

    /// The names in directory `path` ("." and ".." left out), sorted; nil when it cannot be
    /// opened (errno says why).
    public static func listDirectory(_ path: String) -> [String]? {
        guard let dir = unsafe opendir(path) else { return nil }
        defer { unsafe closedir(dir) }
        var out: [String] = []
        while let e = unsafe readdir(dir) {
            let name = unsafe withUnsafeBytes(of: e.pointee.d_name) { raw in
                unsafe String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    /// The first number after `Name:` on a `Name:  value ...` line (as in /proc/self/status
    /// and /proc/meminfo; spaces or tabs), or nil when there is no such line.
    public static func field(_ name: String, in text: String) -> Int64? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int64(line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// The 1-minute load from /proc/loadavg ("0.69 0.52 0.40 1/123 4567"); 0 if unreadable.
    public static func loadAverage1m(_ loadavg: String) -> Double {
        loadavg.split(separator: " ").first.flatMap { Double($0) } ?? 0
    }

    /// A "Key:   N kB" line of /proc/meminfo, in bytes; 0 when absent.
    public static func meminfoBytes(_ meminfo: String, _ key: String) -> Int64 {
        (field(key, in: meminfo) ?? 0) * 1024
    }

    /// Resident pages, the second field of /proc/PID/statm; 0 if unreadable.
    public static func residentPages(_ statm: String) -> Int64 {
        statm.split(separator: " ").dropFirst().first.flatMap { Int64($0) } ?? 0
    }

    /// This process's resident set size in bytes.
    public static var residentBytes: Int64 {
        residentPages(read("/proc/self/statm") ?? "") * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// A `/proc/self/status` figure in KiB (VmRSS, VmPin...).
    public static func selfStatusKiB(_ name: String) -> Int64? {
        read("/proc/self/status").flatMap { field(name, in: $0) }
    }
}
