// TranscodeAPI.Resources: how an engine watches its machine (load, memory, its own
// resident size) to decide how many jobs it takes. HostMetrics reads these from /proc.
import JSON

public struct ResourceSample: Sendable, Equatable {
    public var cpus: Int
    public var loadAverage1m: Double
    public var memoryTotalBytes: Int64
    public var memoryAvailableBytes: Int64
    public var processResidentBytes: Int64

    public init(cpus: Int, loadAverage1m: Double, memoryTotalBytes: Int64, memoryAvailableBytes: Int64,
                processResidentBytes: Int64) {
        self.cpus = cpus; self.loadAverage1m = loadAverage1m; self.memoryTotalBytes = memoryTotalBytes
        self.memoryAvailableBytes = memoryAvailableBytes; self.processResidentBytes = processResidentBytes
    }
}

public protocol ResourceMonitorPlugin: Sendable {
    var name: String { get }
    func sample() -> ResourceSample
}

extension ResourceSample: JSONEncodable, JSONDecodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("cpus", cpus)
        w.field("load_1m", loadAverage1m)
        w.field("memory_total_bytes", memoryTotalBytes)
        w.field("memory_available_bytes", memoryAvailableBytes)
        w.field("process_resident_bytes", processResidentBytes)
        w.endObject()
    }

    public init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(["cpus", "load_1m", "memory_total_bytes", "memory_available_bytes", "process_resident_bytes"])
        self.init(cpus: try json.field("cpus"), loadAverage1m: try json.field("load_1m"),
                  memoryTotalBytes: try json.field("memory_total_bytes"),
                  memoryAvailableBytes: try json.field("memory_available_bytes"),
                  processResidentBytes: try json.field("process_resident_bytes"))
    }
}
