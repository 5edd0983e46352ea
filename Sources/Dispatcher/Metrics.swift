// Dispatcher.ServerMetrics: the server's Prometheus metrics (X7), served at GET /metrics
// (root, no credentials) in the text exposition format. Each DispatchServer owns one
// PrometheusCollectorRegistry and a swift-metrics factory over it (never the process-wide
// MetricsSystem, so several servers in one test process do not share or clash).
//
//   spool_http_requests_total{method,route,status}          counter
//   spool_http_request_duration_seconds{method,route,status} histogram (until the head is ready)
//   spool_db_query_duration_seconds{kind}                   histogram (read / write)
//   spool_upload_bytes_total, spool_download_bytes_total    counters (the file routes and the
//                                                            engines' input and output routes report)
//   spool_jobs{state}, spool_queue_depth                    gauges, refreshed before each scrape
//   spool_db_pool_connections{state=open|idle|max}, spool_db_pool_waiting,
//   spool_db_pool_acquired, spool_db_pool_waited            PostgreSQL pool gauges (the last two
//                                                            count since start), refreshed per scrape
//
// `route` is the matched pattern ("/api/v1/jobs/:id"), never the raw path (a 405 has the
// pattern its path matched), and `unmatched` for 404 and for requests refused before
// routing (a malformed head: 400, 414, 431...),
// so a client cannot grow the label set; unknown methods, and those of a head that could not
// be read, are `other`.
import Metrics
import Postgres
import RedisEvents
import Prometheus
import Synchronization
import Threads
import Web

public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// A swift-metrics factory bound to this server's registry, for other code that wants
    /// its own counters on /metrics: `Metrics.Counter(label: "...", factory: metrics.factory)`.
    public let factory: PrometheusMetricsFactory
    private let scrapeHooks = Mutex<[@Sendable (ServerMetrics) async -> Void]>([])
    private let uploads: Metrics.Counter
    private let downloads: Metrics.Counter
    /// The request counter and timer of each (method, route, status) seen: made once, then
    /// only incremented (making them goes through the registry's locked look-up).
    private let requestHandles = Mutex<[RequestKey: RequestRecorder]>([:])

    private struct RequestKey: Hashable {
        let method: String
        let route: String
        let status: Int
    }

    static let httpDuration = "spool_http_request_duration_seconds"
    /// The HTTP duration histogram's buckets, in seconds. Kept as a histogram of `Double`
    /// seconds made on the registry, not a swift-metrics Timer: a Timer's histogram holds
    /// `Duration`s, and recording one compares 128-bit values against every bucket and adds
    /// a 128-bit sum (about a tenth of a replayed job poll's user time, ADR 0019 addendum 3).
    /// The exposition is the same text (`le="0.0005"` ... `le="10.0"`).
    static let httpDurationBuckets: [Double] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]
    static let databaseDuration = "spool_db_query_duration_seconds"
    static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Self.databaseDuration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100), .milliseconds(500), .seconds(2),
        ]
        self.registry = registry
        self.factory = factory
        uploads = Metrics.Counter(label: "spool_upload_bytes_total", factory: factory)
        downloads = Metrics.Counter(label: "spool_download_bytes_total", factory: factory)
        // Present from the first scrape, before any job exists.
        setQueueDepth(0)
    }

    /// One answered request.
    public func recordRequest(method: String, route: String?, status: Int, duration: Duration) {
        requestRecorder(method: method, route: route, status: status).record(duration)
    }

    /// The count and the timer one kind of answer goes to, looked up once: a caller that
    /// answers the same kind again and again (the fast lane) keeps it and skips the look-up.
    public func requestRecorder(method: String, route: String?, status: Int) -> RequestRecorder {
        let m = Self.knownMethods.contains(method) ? method : "other"
        let key = RequestKey(method: m, route: route ?? "unmatched", status: status)
        let registry = self.registry
        return requestHandles.withLock { handles in
            if let h = handles[key] { return h }
            let h = RequestRecorder(
                counter: registry.makeCounter(name: "spool_http_requests_total",
                                              labels: [("method", m), ("route", key.route), ("status", String(status))]),
                histogram: registry.makeValueHistogram(name: Self.httpDuration, labels: [("method", m), ("route", key.route), ("status", String(status))],
                                                       buckets: Self.httpDurationBuckets))
            handles[key] = h
            return h
        }
    }

    /// One database transaction (SQLiteDatabase's observer): kind is "read" or "write".
    public func recordDatabase(kind: String, seconds: Double) {
        Metrics.Timer(label: Self.databaseDuration, dimensions: [("kind", kind)], factory: factory)
            .recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    /// For HTTPServerConfiguration.refused: a request the server refused before routing
    /// (malformed, too large, too slow) is counted like any other, with its route when it
    /// had one ("unmatched" otherwise) and no duration worth timing.
    public var refusalRecorder: @Sendable (_ method: String?, _ route: String?, _ status: Int) -> Void {
        { [self] method, route, status in recordRequest(method: method ?? "other", route: route, status: status, duration: .zero) }
    }

    public func recordUpload(bytes: Int) { if bytes > 0 { uploads.increment(by: Int64(bytes)) } }
    public func recordDownload(bytes: Int) { if bytes > 0 { downloads.increment(by: Int64(bytes)) } }

    /// spool_jobs{state}.
    public func setJobs(state: String, count: Int) {
        Metrics.Gauge(label: "spool_jobs", dimensions: [("state", state)], factory: factory).record(Int64(count))
    }

    /// spool_queue_depth: jobs waiting for an engine.
    public func setQueueDepth(_ depth: Int) {
        Metrics.Gauge(label: "spool_queue_depth", factory: factory).record(Int64(depth))
    }

    /// The PostgreSQL connection pool: connections open, idle and allowed, callers waiting
    /// for one now, and connections handed out (and how many after a wait) since start.
    public func setDatabasePool(open: Int, idle: Int, waiting: Int, acquired: UInt64, waited: UInt64, max: Int) {
        for (state, n) in [("open", open), ("idle", idle), ("max", max)] {
            Metrics.Gauge(label: "spool_db_pool_connections", dimensions: [("state", state)], factory: factory).record(Int64(n))
        }
        Metrics.Gauge(label: "spool_db_pool_waiting", factory: factory).record(Int64(waiting))
        Metrics.Gauge(label: "spool_db_pool_acquired", factory: factory).record(Int64(clamping: acquired))
        Metrics.Gauge(label: "spool_db_pool_waited", factory: factory).record(Int64(clamping: waited))
    }

    /// The Redis record cache's hits, misses, fills and bypasses so far.
    public func setRecordCache(_ c: RedisRecordCache.Counts) {
        for (what, n) in [("hit", c.hits), ("miss", c.misses), ("fill", c.fills), ("refused_fill", c.refusedFills), ("bypass", c.bypassed)] {
            Metrics.Gauge(label: "spool_cache_lookups", dimensions: [("result", what)], factory: factory).record(Int64(clamping: n))
        }
    }

    /// One read replica: in rotation or not, its lag, the reads it served and those it failed.
    public func setReplica(_ r: ReplicaStatus) {
        let d = [("replica", r.name)]
        Metrics.Gauge(label: "spool_db_replica_in_rotation", dimensions: d, factory: factory).record(r.inRotation ? 1 : 0)
        Metrics.Gauge(label: "spool_db_replica_lag_seconds", dimensions: d, factory: factory).record(Double(r.lagMilliseconds) / 1000)
        Metrics.Gauge(label: "spool_db_replica_lag_bytes", dimensions: d, factory: factory).record(Int64(clamping: r.lagBytes))
        Metrics.Gauge(label: "spool_db_replica_reads", dimensions: d, factory: factory).record(Int64(clamping: r.reads))
        Metrics.Gauge(label: "spool_db_replica_fallbacks", dimensions: d, factory: factory).record(Int64(clamping: r.fallbacks))
    }

    /// One job shard's connection pool (database.job_shards).
    public func setJobShardPool(shard: Int, open: Int, idle: Int) {
        for (state, n) in [("open", open), ("idle", idle)] {
            Metrics.Gauge(label: "spool_db_job_shard_connections", dimensions: [("shard", String(shard)), ("state", state)],
                          factory: factory).record(Int64(n))
        }
    }

    /// Runs `body` before every scrape (to refresh gauges from the services), in the order added.
    public func onScrape(_ body: @escaping @Sendable (ServerMetrics) async -> Void) {
        scrapeHooks.withLock { $0.append(body) }
    }

    /// The exposition text after the scrape hooks ran, with a `# HELP` line for each of
    /// Spool's metrics.
    public func scrape() async -> [UInt8] {
        for hook in scrapeHooks.withLock({ $0 }) { await hook(self) }
        return Self.withHelp(registry.emitToBuffer())
    }

    /// What each metric counts, for its `# HELP` line. The swift-metrics factory the gauges
    /// go through cannot carry help text, so it is added to the exposition here, before
    /// each family's `# TYPE` line.
    static let help: [String: String] = [
        "spool_http_requests_total": "HTTP requests answered, by method, matched route pattern and status.",
        httpDuration: "Time from a request's head to its answer being ready, in seconds, by method, route and status.",
        databaseDuration: "Database transaction time in seconds, by kind (read or write).",
        "spool_upload_bytes_total": "Bytes received in file uploads and engine output uploads.",
        "spool_download_bytes_total": "Bytes sent in file downloads and engine input downloads.",
        "spool_jobs": "Jobs by state, refreshed at each scrape.",
        "spool_queue_depth": "Jobs waiting for an engine.",
        "spool_db_pool_connections": "PostgreSQL pool connections by state (open, idle, max).",
        "spool_db_pool_waiting": "Callers waiting for a PostgreSQL connection now.",
        "spool_db_pool_acquired": "PostgreSQL connections handed out since start.",
        "spool_db_pool_waited": "PostgreSQL connections handed out after a wait, since start.",
        "spool_cache_lookups": "Redis record cache lookups since start, by result.",
        "spool_db_replica_in_rotation": "1 while a read replica takes reads, else 0.",
        "spool_db_replica_lag_seconds": "A read replica's replay lag in seconds.",
        "spool_db_replica_lag_bytes": "A read replica's replay lag in WAL bytes.",
        "spool_db_replica_reads": "Reads a replica served since start.",
        "spool_db_replica_fallbacks": "Reads meant for a replica that went to the primary, since start.",
        "spool_db_job_shard_connections": "Job shard pool connections by shard and state.",
    ]

    static func withHelp(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 2048)
        var previousWasHelp = false
        for line in text.split(separator: 0x0A, omittingEmptySubsequences: false) {
            if line.starts(with: "# TYPE ".utf8), !previousWasHelp {
                let name = line.dropFirst(7).prefix { $0 != 0x20 }
                if let h = help[String(decoding: name, as: UTF8.self)] {
                    out.append(contentsOf: "# HELP ".utf8)
                    out.append(contentsOf: name)
                    out.append(0x20)
                    out.append(contentsOf: h.utf8)
                    out.append(0x0A)
                }
            }
            previousWasHelp = line.starts(with: "# HELP ".utf8)
            out.append(contentsOf: line)
            out.append(0x0A)
        }
        // Each piece got a newline, one more than joined them.
        out.removeLast()
        return out
    }

    /// Root middleware: counts and times every request by its route pattern.
    func middleware(clock: any MonotonicClock) -> Middleware {
        return { [self] request, next in
            let started = clock.now
            var response = await next(request)
            // The server turns a 200 into 304 or 412 for conditional requests after every
            // middleware: count the status the client gets (a 304 poll was counted as 200).
            Conditional.apply(request, &response)
            recordRequest(method: request.method, route: request.route, status: response.status, duration: clock.now - started)
            return response
        }
    }
}

extension DispatchServer {
    /// GET /metrics, and the middleware that feeds it (installed at the root).
    func installMetrics(on r: inout RouteBuilder) {
        r.use(metrics.middleware(clock: clock))
        r.get("metrics") { [metrics] _ in
            Response(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: await metrics.scrape())
        }
    }
}

/// spool_http_requests_total and the duration histogram for one method, route and status.
public struct RequestRecorder: Sendable {
    let counter: Prometheus.Counter
    let histogram: Prometheus.ValueHistogram

    public func record(_ duration: Duration) {
        record(nanoseconds: duration.nanosecondsClamped)
    }

    /// The same for a duration already in nanoseconds (no 128-bit `Duration` arithmetic,
    /// for the fast lane's every answer).
    public func record(nanoseconds: Int64) {
        counter.increment()
        histogram.record(Double(max(0, nanoseconds)) / 1e9)
    }

    /// `count` requests that took `totalNanoseconds` together (the replays one reap
    /// answered, ADR 0019 addendum 5): each is recorded with their mean.
    public func record(count: Int, totalNanoseconds: Int64) {
        guard count > 0 else { return }
        counter.increment(by: Int64(count))
        let each = Double(max(0, totalNanoseconds)) / Double(count) / 1e9
        for _ in 0..<count { histogram.record(each) }
    }
}
