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
    /// The byte counts, by JSON name (after "cpus" and "load_1m").
    static var byteCounts: KeyValuePairs<String, WritableKeyPath<ResourceSample, Int64>> {
        ["memory_total_bytes": \.memoryTotalBytes, "memory_available_bytes": \.memoryAvailableBytes,
         "process_resident_bytes": \.processResidentBytes]
    }

    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("cpus", cpus)
        w.field("load_1m", loadAverage1m)
        for (key, count) in Self.byteCounts { w.field(key, self[keyPath: count]) }
        w.endObject()
    }

    public init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(Set(["cpus", "load_1m"] + Self.byteCounts.map(\.key)))
        self.init(cpus: try json.field("cpus"), loadAverage1m: try json.field("load_1m"),
                  memoryTotalBytes: 0, memoryAvailableBytes: 0, processResidentBytes: 0)
        for (key, count) in Self.byteCounts { self[keyPath: count] = try json.field(key) }
    }
}
