// SpoolAPI: the dispatch server's HTTP API (/api/v1), as routes any Web Router can take.
// `spool serve` (and later the dispatcher) builds its Router and calls `install`; every
// body is a typed value written by the JSON module's writer, never assembled as text.
//
//   GET /api/v1/health    {"status":"ok","uptime_seconds":N}
//   GET /api/v1/version   {"version":"0.1.0","api":"v1"}
import JSON
import SpoolModel
import Web

public enum SpoolAPI {
    /// The API version in every path.
    public static let version = "v1"

    /// Adds the API's routes under `/api/v1` to `router`; uptime counts from `started`.
    public static func install(on router: inout RouteBuilder, started: ContinuousClock.Instant = .now) {
        router.group("/api/" + version) { v1 in
            v1.get("health") { _ in
                .json(200, encoding: HealthStatus(status: "ok", uptimeSeconds: (ContinuousClock.now - started).components.seconds))
            }
            v1.get("version") { _ in
                .json(200, encoding: VersionInfo(version: SpoolVersion.string, api: version))
            }
        }
    }
}

/// The health check's body.
public struct HealthStatus: Sendable, Equatable, JSONEncodable {
    public var status: String
    public var uptimeSeconds: Int64

    public init(status: String, uptimeSeconds: Int64) { self.status = status; self.uptimeSeconds = uptimeSeconds }

    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("status", status)
        w.field("uptime_seconds", uptimeSeconds)
        w.endObject()
    }
}

/// What `GET /api/v1/version` and `spool version --json` print: the version, and the API
/// version or the kernel release when known (members that are nil are left out).
public struct VersionInfo: Sendable, Equatable, JSONEncodable {
    public var version: String
    public var api: String?
    public var kernel: String?

    public init(version: String, api: String? = nil, kernel: String? = nil) {
        self.version = version; self.api = api; self.kernel = kernel
    }

    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("version", version)
        if let api { w.field("api", api) }
        if let kernel { w.field("kernel", kernel) }
        w.endObject()
    }
}
