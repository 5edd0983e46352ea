// HostMetrics: the engine's view of its machine, read from /proc: load, memory and this
// process's resident size, as TranscodeAPI's ResourceSample, read through ProcFS (the
// one /proc reader). No libav, no runtime: an engine or a simulated one links it
// without Media.
import ProcFS
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
