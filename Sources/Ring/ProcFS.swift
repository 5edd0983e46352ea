// ProcFS: the one reader of /proc (and other small kernel files) in Spool. The kernel
// check reads sysctls and seccomp state through it; the engine's resource monitor reads
// load, memory and this process's resident size; tests read RSS and status figures.
#if canImport(Glibc)
import Glibc
#endif

public enum ProcFS {
    /// The whole text of a small kernel file, or nil when it cannot be opened.
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The value of a `Name:  value ...` line (as in /proc/self/status, /proc/meminfo):
    /// its first field after the colon, as an integer.
    public static func field(_ name: String, in text: String) -> Int64? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int64(line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// A `/proc/self/status` figure in KiB (VmRSS, VmPin...).
    public static func selfStatusKiB(_ name: String) -> Int64? {
        read("/proc/self/status").flatMap { field(name, in: $0) }
    }

    /// This process's resident set size in bytes (from /proc/self/statm).
    public static var residentBytes: Int64 {
        let pages = (read("/proc/self/statm")?.split(separator: " ").dropFirst().first).flatMap { Int64($0) } ?? 0
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }
}
