// HostMetrics: the engine's view of its machine, read from /proc: load, memory and this
// process's resident size, as TranscodeAPI's ResourceSample. One reader (`ProcFile`) for
// every small /proc or /sys file. No libav, no runtime: an engine or a simulated one
// links it without Media.
import TranscodeAPI
#if canImport(Glibc)
import Glibc
#endif

/// Reads /proc: load, memory, this process's resident size.
public final class ProcResourceMonitor: ResourceMonitorPlugin {
    public let name = "proc"
    public init() {}

    public func sample() -> ResourceSample {
        let meminfo = ProcFile.read("/proc/meminfo") ?? ""
        return ResourceSample(cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
                       loadAverage1m: ProcFile.loadAverage1m(ProcFile.read("/proc/loadavg") ?? ""),
                       memoryTotalBytes: ProcFile.meminfoBytes(meminfo, "MemTotal"),
                       memoryAvailableBytes: ProcFile.meminfoBytes(meminfo, "MemAvailable"),
                       processResidentBytes: ProcFile.residentPages(ProcFile.read("/proc/self/statm") ?? "")
                           * Int64(sysconf(Int32(_SC_PAGESIZE))))
    }
}

/// Small /proc and /sys files, and the parsers for the ones HostMetrics reads.
public enum ProcFile {
    /// The whole file as text (these files are small and have no size until read, so it
    /// reads to the end), or nil when it cannot be opened. `limit` bounds what is kept.
    public static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out.prefix(limit), as: UTF8.self)
    }

    /// The 1-minute load from /proc/loadavg ("0.69 0.52 0.40 1/123 4567"); 0 if unreadable.
    public static func loadAverage1m(_ loadavg: String) -> Double {
        loadavg.split(separator: " ").first.flatMap { Double($0) } ?? 0
    }

    /// A "Key:   N kB" line of /proc/meminfo, in bytes; 0 when absent.
    public static func meminfoBytes(_ meminfo: String, _ key: String) -> Int64 {
        for line in meminfo.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, parts[0] == key + ":", let kb = Int64(parts[1]) else { continue }
            return kb * 1024
        }
        return 0
    }

    /// Resident pages, the second field of /proc/PID/statm; 0 if unreadable.
    public static func residentPages(_ statm: String) -> Int64 {
        statm.split(separator: " ").dropFirst().first.flatMap { Int64($0) } ?? 0
    }
}
