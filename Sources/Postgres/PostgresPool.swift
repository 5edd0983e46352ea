// Postgres.PostgresPool: the connections one dispatcher keeps to PostgreSQL. At least `min`
// open (opened at start), at most `max`; callers beyond that wait in order, up to
// `acquireTimeout`. A connection idle longer than `idleTimeout` is closed while more than
// `min` remain; one idle longer than `healthCheckAfter` is checked with `SELECT 1` before it
// is handed out, and a broken one is replaced. Once any connection is found dead (the server
// restarted and cut them all), every connection that went idle before that is checked too,
// so a restart costs a request no error however many idle connections it left dead. Every
// session sets `statement_timeout`.
// Work runs on the blocking pool: `read` in autocommit, `transaction` between BEGIN and
// COMMIT (ROLLBACK when the body throws), run again from the start on a serialization
// failure or a deadlock (up to 3 times). Migrations are named steps recorded in
// `schema_migrations`, applied under an advisory lock so dispatchers starting together
// apply each once.
import Synchronization
import Threads

public struct PostgresPoolConfiguration: Sendable {
    /// libpq connection string or URL (`postgres://user:password@host:port/database`).
    public var url: String
    public var minConnections = 1
    public var maxConnections = 8
    public var idleTimeout: Duration = .seconds(60)
    public var healthCheckAfter: Duration = .seconds(10)
    public var acquireTimeout: Duration = .seconds(10)
    public var statementTimeout: Duration = .seconds(30)
    public var connectTimeoutSeconds = 5

    public init(url: String) { self.url = url }

    /// The connection string libpq is given: the URL plus the session settings.
    var conninfo: String {
        let separator = url.contains("?") ? "&" : "?"
        let ms = max(1, statementTimeout.nanosecondsClamped / 1_000_000)
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return url + separator + "connect_timeout=\(connectTimeoutSeconds)&options=-c%20statement_timeout%3D\(ms)"
        }
        return url + " connect_timeout=\(connectTimeoutSeconds) options='-c statement_timeout=\(ms)'"
    }
}

/// A named schema step of one service ("jobs.1"), applied once, in order.
public struct PostgresMigration: Sendable {
    public let name: String
    public let sql: String
    public init(_ name: String, _ sql: String) {
        self.name = name
        self.sql = sql
    }
}

public final class PostgresPool: Sendable {
    public let configuration: PostgresPoolConfiguration
    let blocking: BlockingPool

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<PostgresConnection, any Error>
    }

    private struct State {
        var idle: [PostgresConnection] = []
        var open = 0
        var waiters: [Waiter] = []
        var nextWaiter: UInt64 = 1
        var closed = false
        var acquired: UInt64 = 0
        var waited: UInt64 = 0
        /// Connections idle since before this moment (ms) are checked before use: one of
        /// them was found dead then, so the others may be too.
        var suspectBefore: Int64 = .min
    }

    private let state = Mutex(State())
    /// Replicas of this database that reads may use (see Replicas.swift); empty: none.
    private let replicaRoutes = Mutex<[ReplicaRoute]>([])

    /// Lets reads of requests that allow it go to these replicas of this database.
    public func attachReplicas(_ routes: [ReplicaRoute]) { replicaRoutes.withLock { $0 = routes } }

    public var replicas: [ReplicaRoute] { replicaRoutes.withLock { $0 } }

    /// A replica in rotation that has replayed `notBefore`, starting from a random one so
    /// reads spread (no array made per read).
    private func pickReplica(notBefore: WALPosition?) -> ReplicaRoute? {
        replicaRoutes.withLock { routes in
            guard !routes.isEmpty else { return nil }
            let start = routes.count == 1 ? 0 : Int.random(in: 0..<routes.count)
            for k in 0..<routes.count where routes[(start + k) % routes.count].monitor.serves(notBefore: notBefore) {
                return routes[(start + k) % routes.count]
            }
            return nil
        }
    }

    /// Opens the pool and its first `minConnections` (a URL nothing answers fails here).
    public static func open(_ configuration: PostgresPoolConfiguration, blocking: BlockingPool = .shared) async throws(PostgresError) -> PostgresPool {
        let pool = PostgresPool(configuration: configuration, blocking: blocking)
        var first: [PostgresConnection] = []
        for _ in 0..<max(1, configuration.minConnections) { first.append(try await pool.connect()) }
        pool.state.withLock { s in
            s.open = first.count
            s.idle = first
        }
        return pool
    }

    /// A pool that opens its connections when first used (a replica that may be down when
    /// the dispatcher starts).
    public static func unopened(_ configuration: PostgresPoolConfiguration, blocking: BlockingPool = .shared) -> PostgresPool {
        PostgresPool(configuration: configuration, blocking: blocking)
    }

    init(configuration: PostgresPoolConfiguration, blocking: BlockingPool) {
        self.configuration = configuration
        self.blocking = blocking
    }

    private func connect() async throws(PostgresError) -> PostgresConnection {
        let conninfo = configuration.conninfo
        do {
            let c = try await blocking.run { () throws(PostgresError) -> PostgresConnection in try PostgresConnection.connect(conninfo) }
            c.idleSince = SystemClock.shared.unixMilliseconds
            return c
        } catch let e as PostgresError {
            throw e
        } catch {
            throw PostgresError(.connection, "\(error)")
        }
    }

    /// (open, idle, waiting, acquired in total, acquisitions that had to wait): for /metrics.
    public var counts: (open: Int, idle: Int, waiting: Int, acquired: UInt64, waited: UInt64) {
        state.withLock { ($0.open, $0.idle.count, $0.waiters.count, $0.acquired, $0.waited) }
    }

    // MARK: Acquire and release

    private enum Take {
        case ready(PostgresConnection)
        case openNew
        case wait
        case closed
    }

    func acquire() async throws(PostgresError) -> PostgresConnection {
        let now = SystemClock.shared.unixMilliseconds
        let idleLimit = configuration.idleTimeout.nanosecondsClamped / 1_000_000
        let (take, expired, suspectBefore) = state.withLock { s -> (Take, [PostgresConnection], Int64) in
            if s.closed { return (.closed, [], s.suspectBefore) }
            // Idle past the timeout, beyond the minimum: closed (outside the lock).
            var expired: [PostgresConnection] = []
            while s.idle.count > 0, s.open > configuration.minConnections, now - s.idle[0].idleSince > idleLimit {
                expired.append(s.idle.removeFirst())
                s.open -= 1
            }
            s.acquired += 1
            if let c = s.idle.popLast() { return (.ready(c), expired, s.suspectBefore) }
            if s.open < configuration.maxConnections {
                s.open += 1
                return (.openNew, expired, s.suspectBefore)
            }
            s.waited += 1
            return (.wait, expired, s.suspectBefore)
        }
        if !expired.isEmpty { _ = try? await blocking.run { withExtendedLifetime(expired) {} } }
        switch take {
        case .closed:
            throw PostgresError(.pool, "the pool is closed")
        case .ready(let c):
            return try await checked(c, now: now, suspectBefore: suspectBefore)
        case .openNew:
            do {
                return try await connect()
            } catch {
                state.withLock { $0.open -= 1 }
                throw error
            }
        case .wait:
            return try await waitForConnection()
        }
    }

    /// A connection idle for long, or since before another was found dead, is checked
    /// before use; a broken one is replaced.
    private func checked(_ c: PostgresConnection, now: Int64, suspectBefore: Int64) async throws(PostgresError) -> PostgresConnection {
        let stale = now - c.idleSince > configuration.healthCheckAfter.nanosecondsClamped / 1_000_000 || c.idleSince <= suspectBefore
        if c.isOpen && !stale { return c }
        let healthy = c.isOpen ? ((try? await blocking.run { () throws -> Bool in try c.query("SELECT 1").count == 1 }) ?? false) : false
        if healthy { return c }
        do {
            return try await connect()
        } catch {
            state.withLock { $0.open -= 1 }
            throw error
        }
    }

    private func waitForConnection() async throws(PostgresError) -> PostgresConnection {
        let timeout = configuration.acquireTimeout
        let id = state.withLock { s -> UInt64 in defer { s.nextWaiter += 1 }; return s.nextWaiter }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            guard let self else { return }
            let w = self.state.withLock { s -> Waiter? in
                guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: i)
            }
            w?.continuation.resume(throwing: PostgresError(.pool, "no connection within \(timeout) (all \(self.configuration.maxConnections) in use)"))
        }
        defer { timer.cancel() }
        do {
            return try await withCheckedThrowingContinuation { (k: CheckedContinuation<PostgresConnection, any Error>) in
                state.withLock { $0.waiters.append(Waiter(id: id, continuation: k)) }
            }
        } catch let e as PostgresError {
            throw e
        } catch {
            throw PostgresError(.pool, "\(error)")
        }
    }

    /// Back to the pool: to the first waiter, or idle. A broken connection is dropped (and a
    /// waiter gets a new one).
    func release(_ c: PostgresConnection) {
        c.idleSince = SystemClock.shared.unixMilliseconds
        let broken = !c.isOpen
        let handOff = state.withLock { s -> (Waiter?, Bool) in
            if broken || s.closed {
                s.open -= 1
                if !s.closed, !s.waiters.isEmpty, s.open < configuration.maxConnections {
                    s.open += 1
                    return (s.waiters.removeFirst(), true)
                }
                return (nil, false)
            }
            if !s.waiters.isEmpty { return (s.waiters.removeFirst(), false) }
            s.idle.append(c)
            return (nil, false)
        }
        guard let waiter = handOff.0 else { return }
        if handOff.1 {
            Task {
                do { waiter.continuation.resume(returning: try await connect()) } catch {
                    state.withLock { $0.open -= 1 }
                    waiter.continuation.resume(throwing: error)
                }
            }
        } else {
            waiter.continuation.resume(returning: c)
        }
    }

    /// Closes every idle connection and refuses new work; connections in use close when
    /// they come back.
    public func close() async {
        let (idle, waiters) = state.withLock { s -> ([PostgresConnection], [Waiter]) in
            s.closed = true
            s.open -= s.idle.count
            defer { s.idle = []; s.waiters = [] }
            return (s.idle, s.waiters)
        }
        for w in waiters { w.continuation.resume(throwing: PostgresError(.pool, "the pool is closed")) }
        _ = try? await blocking.run { withExtendedLifetime(idle) {} }
    }

    // MARK: Work

    /// Runs `body` with a connection in autocommit mode (each statement its own transaction).
    /// Reads change nothing, so one that meets a dead connection (the server restarted, an
    /// idle connection was cut) runs once more on a new one.
    /// With replicas attached and a request session that allows it (ReadRouting), the read
    /// goes to a replica in rotation that has replayed the session's last write (one of them
    /// at random); one that fails it is taken out of rotation and the read runs here instead.
    public func read<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        if let session = ReadRouting.session, session.replicaAllowed,
           let route = pickReplica(notBefore: session.notBefore) {
            do {
                let value = try await route.pool.read(body)
                route.monitor.countRead()
                return value
            } catch {
                route.monitor.failed()
            }
        }
        var attempt = 0
        while true {
            attempt += 1
            let c = try await acquire()
            defer { release(c) }
            do {
                return try await blocking.run { () throws -> T in try body(c) }
            } catch let e as PostgresError where e.kind == .connection {
                foundDead()
                if attempt < 2 { continue }
                throw e
            }
        }
    }

    /// Runs `body` in one transaction (READ COMMITTED; take row locks with FOR UPDATE where
    /// it reads what it then writes). Committed when this returns; rolled back when `body`
    /// throws. Run again from the start, up to 3 times, on a serialization failure or a
    /// deadlock, or when the connection was dead before BEGIN went through, so `body` must
    /// not have effects outside the database. A connection lost after BEGIN is thrown: the
    /// commit's fate is unknown, and only the caller can tell whether to try again.
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        // Only a request session that can read from replicas needs the commit's position.
        let session = replicaRoutes.withLock({ $0.isEmpty }) ? nil : ReadRouting.session
        var attempt = 0
        while true {
            attempt += 1
            let c = try await acquire()
            defer { release(c) }
            do {
                return try await blocking.run { () throws -> T in
                    do { try c.execute("BEGIN") } catch let e as PostgresError where e.kind == .connection {
                        throw BeginFailed(error: e)
                    }
                    do {
                        let value = try body(c)
                        try c.execute("COMMIT")
                        // Where the primary's WAL stands after this commit: the caller's
                        // later reads wait for a replica to pass it (read-your-writes).
                        if let session, let text = try? c.query("SELECT pg_current_wal_lsn()::text AS p").rows.first?.string("p"),
                           let p = WALPosition(text: text) {
                            session.recordWrite(p)
                        }
                        return value
                    } catch {
                        if c.isOpen { try? c.execute("ROLLBACK") }
                        throw error
                    }
                }
            } catch let e as PostgresError where e.isRetryable && attempt < 3 {
                continue
            } catch let e as BeginFailed {
                foundDead()
                if attempt < 3 { continue }
                throw e.error
            } catch let e as PostgresError where e.kind == .connection {
                foundDead()
                throw e
            }
        }
    }

    /// A connection was found dead: the ones idle since before now are checked before use.
    private func foundDead() {
        let now = SystemClock.shared.unixMilliseconds
        state.withLock { $0.suspectBefore = max($0.suspectBefore, now) }
    }

    /// BEGIN met a dead connection: nothing was done, so the transaction may run again.
    private struct BeginFailed: Error { let error: PostgresError }

    /// Applies the migrations not yet applied, in order, each in its own transaction, under
    /// an advisory lock (dispatchers starting together wait for one another).
    public func migrate(_ migrations: [PostgresMigration]) async throws {
        try await transaction { c in
            try c.query("SELECT pg_advisory_xact_lock(7301)")
            try c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            let done = Set(try c.query("SELECT name FROM schema_migrations").rows.map { try $0.string("name") })
            for m in migrations where !done.contains(m.name) {
                try c.execute(m.sql)
                try c.query("INSERT INTO schema_migrations (name) VALUES ($1)", [m.name])
            }
        }
    }

    /// True when `SELECT 1` answers (readiness).
    public func isReachable() async -> Bool {
        (try? await read { c in try c.query("SELECT 1").count }) == 1
    }
}
