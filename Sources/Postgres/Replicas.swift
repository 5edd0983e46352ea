// Postgres.Replicas: reads on streaming replicas, without a client ever missing its own
// write (docs/adr/0013-read-replicas.md).
// - A `ReadSession` (task-local, set per request by the dispatcher) says whether the reads
//   of this request may go to a replica and from which WAL position on the replica must
//   have replayed (the caller's last write). Writes in the request record the primary's
//   WAL position after their commit, for the caller's next reads.
// - A `ReplicaMonitor` per replica server polls it and the primary (every
//   `interval`): its replay position, its lag in bytes and in time (how long ago the
//   primary was at the position the replica has replayed to), and whether it answers. A
//   replica that does not answer, or lags more than `maxLag`, is out of rotation until a
//   poll finds it back within the bound.
// - `PostgresPool.read` sends a read to a replica pool when the session allows it and a
//   replica in rotation has replayed past the session's position; otherwise, or when the
//   replica fails the read, to the primary (the read runs again there: it changes nothing).
import Synchronization
import Threads

/// A WAL position ("16/B374D848": the high and low 32 bits in hex).
public struct WALPosition: Sendable, Comparable, Hashable, CustomStringConvertible {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }

    public init?(text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
              let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return nil }
        value = hi << 32 | lo
    }

    public var text: String { String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true) }
    public var description: String { text }
    public static func < (a: WALPosition, b: WALPosition) -> Bool { a.value < b.value }
}

/// What one request allows its reads, and what its writes committed.
public final class ReadSession: Sendable {
    /// Reads may go to a replica (a GET the dispatcher lets replicas serve).
    public let replicaAllowed: Bool
    /// A replica must have replayed at least this far (the caller's last write).
    public let notBefore: WALPosition?
    private let wrote = Mutex<WALPosition?>(nil)

    public init(replicaAllowed: Bool, notBefore: WALPosition?) {
        self.replicaAllowed = replicaAllowed
        self.notBefore = notBefore
    }

    /// The primary's WAL position after the last commit made in this request.
    public var written: WALPosition? { wrote.withLock { $0 } }

    func recordWrite(_ p: WALPosition) { wrote.withLock { $0 = max($0 ?? p, p) } }
}

public enum ReadRouting {
    /// The current request's session (nil outside a request: every read on the primary).
    @TaskLocal public static var session: ReadSession?
}

/// One replica server's health, as its monitor last saw it.
public struct ReplicaStatus: Sendable, Equatable {
    public var name: String
    public var inRotation: Bool
    public var answering: Bool
    public var replayed: WALPosition?
    public var lagBytes: UInt64
    public var lagMilliseconds: Int64
    /// Reads served, and reads that failed on it and ran on the primary instead.
    public var reads: UInt64
    public var fallbacks: UInt64
}

public final class ReplicaMonitor: Sendable {
    public let name: String
    let primary: PostgresPool
    /// A pool on the replica used for the polls (the main database's).
    let probe: PostgresPool
    let maxLagMilliseconds: Int64
    let interval: Duration

    private struct State {
        var answering = false
        var replayed: WALPosition?
        var primaryAt: WALPosition?
        /// Recent primary positions and when they were seen, oldest first.
        var samples: [(position: WALPosition, at: Int64)] = []
        var lagBytes: UInt64 = 0
        var lagMilliseconds: Int64 = 0
        var reads: UInt64 = 0
        var fallbacks: UInt64 = 0
        var task: Task<Void, Never>?
    }
    private let state = Mutex(State())

    public init(name: String, primary: PostgresPool, probe: PostgresPool, maxLag: Duration, interval: Duration = .milliseconds(200)) {
        self.name = name
        self.primary = primary
        self.probe = probe
        maxLagMilliseconds = max(1, maxLag.nanosecondsClamped / 1_000_000)
        self.interval = interval
    }

    public var status: ReplicaStatus {
        state.withLock { s in
            ReplicaStatus(name: name, inRotation: Self.inRotation(s, max: maxLagMilliseconds), answering: s.answering, replayed: s.replayed,
                          lagBytes: s.lagBytes, lagMilliseconds: s.lagMilliseconds, reads: s.reads, fallbacks: s.fallbacks)
        }
    }

    private static func inRotation(_ s: State, max: Int64) -> Bool { s.answering && s.replayed != nil && s.lagMilliseconds <= max }

    /// Whether a read that needs `notBefore` may go here now.
    func serves(notBefore: WALPosition?) -> Bool {
        state.withLock { s in
            guard Self.inRotation(s, max: maxLagMilliseconds), let r = s.replayed else { return false }
            return notBefore.map { r >= $0 } ?? true
        }
    }

    func countRead() { state.withLock { $0.reads &+= 1 } }

    /// A read failed here: out of rotation until a poll finds the replica answering.
    func failed() {
        state.withLock { s in
            s.answering = false
            s.fallbacks &+= 1
        }
    }

    /// Starts polling (once).
    public func start() {
        state.withLock { s in
            guard s.task == nil else { return }
            s.task = Task { [weak self] in
                while !Task.isCancelled {
                    guard let self else { return }
                    await self.poll()
                    try? await Task.sleep(for: self.interval)
                }
            }
        }
    }

    public func stop() {
        state.withLock { s in
            s.task?.cancel()
            s.task = nil
        }
    }

    /// One look at the primary and the replica.
    public func poll() async {
        let now = SystemClock.shared.unixMilliseconds
        let primaryAt = try? await primary.read { c in
            try c.query("SELECT pg_current_wal_lsn()::text AS p").rows.first.flatMap { WALPosition(text: try $0.string("p")) }
        }
        let replayed: WALPosition?? = try? await probe.read { c in
            // NULL on a server that is not a standby (a promoted or misconfigured one).
            let row = try c.query("SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS r").rows.first
            guard let row, try row.bool("standby"), let text = try row.optionalString("r") else { return nil }
            return WALPosition(text: text)
        }
        state.withLock { s in
            if let p = primaryAt ?? nil {
                s.primaryAt = p
                if s.samples.last?.position != p { s.samples.append((p, now)) }
                // A bounded window (what the replica has replayed is dropped below).
                if s.samples.count > 4_096 { s.samples.removeFirst(s.samples.count - 4_096) }
            }
            guard let r = replayed ?? nil else {
                s.answering = false
                return
            }
            s.answering = true
            s.replayed = r
            let head = s.primaryAt ?? r
            s.lagBytes = head > r ? head.value - r.value : 0
            // Lag in time: since the primary was first seen past what the replica replayed.
            if let first = s.samples.first(where: { $0.position > r }) {
                s.lagMilliseconds = max(0, now - first.at)
            } else {
                s.lagMilliseconds = 0
            }
            s.samples.removeAll { $0.position <= r }
        }
    }
}

/// A replica pool of one database and the monitor of its server.
public struct ReplicaRoute: Sendable {
    public let monitor: ReplicaMonitor
    public let pool: PostgresPool
    public init(monitor: ReplicaMonitor, pool: PostgresPool) {
        self.monitor = monitor
        self.pool = pool
    }
}

/// The server part of a postgres:// URL, and the same URL on another server.
public enum PostgresURL {
    /// "host:port" of `url` (port 5432 when absent); nil for a URL not of this shape.
    public static func server(of url: String) -> String? {
        guard let (start, end) = authority(url) else { return nil }
        let hostPort = url[start..<end]
        return hostPort.contains(":") ? String(hostPort) : hostPort + ":5432"
    }

    /// `url` with its host and port replaced by `server` ("host:port").
    public static func url(_ url: String, onServer server: String) -> String? {
        guard let (start, end) = authority(url) else { return nil }
        return String(url[..<start]) + server + String(url[end...])
    }

    /// The range of host[:port]: after "://" and any "user[:password]@", before "/", "?" or the end.
    private static func authority(_ url: String) -> (String.Index, String.Index)? {
        var afterScheme: String.Index?
        var i = url.startIndex
        while i < url.endIndex {
            if url[i...].hasPrefix("://") { afterScheme = url.index(i, offsetBy: 3); break }
            i = url.index(after: i)
        }
        guard let from = afterScheme else { return nil }
        let end = url[from...].firstIndex(where: { $0 == "/" || $0 == "?" }) ?? url.endIndex
        let start = url[from..<end].lastIndex(of: "@").map { url.index(after: $0) } ?? from
        return start < end ? (start, end) : nil
    }
}
