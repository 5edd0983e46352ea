// Dispatcher.DispatchServer+Database: where the services keep their state. Without
// database.url, SQLite in the data directory (one dispatcher owns it); with a postgres://
// URL, PostgreSQL through a connection pool, shared by every dispatcher given that URL.
// With database.job_shards, the jobs (and their Idempotency-Keys) are spread over those
// PostgreSQL databases by a ShardRouter, a pool each; everything else stays in database.url.
// With database.replicas, each pool on database.url's server gets replica pools that the
// reads of GET requests use (Postgres.Replicas; the request side is ReadRouting.swift).
// The job store is the one part with an implementation per database; every other service
// runs its own queries on either through Relational.
import Jobs
import Persistence
import Postgres
import Relational
import ServerConfig
import Web
import SpoolModel

public enum DispatchDatabase: Sendable {
    case sqlite(SQLiteDatabase)
    /// The main pool; `jobShards` when jobs are spread over other databases.
    case postgresql(PostgresPool, jobShards: JobShards?)

    /// The job shards' pools and the router that places jobs on them.
    public struct JobShards: Sendable {
        public let pools: [PostgresPool]
        public let router: ShardRouter
    }

    static func open(_ settings: ServerSettings.Database, dataDirectory: String, metrics: ServerMetrics) async throws -> DispatchDatabase {
        if settings.url.isEmpty {
            return .sqlite(try SQLiteDatabase(path: dataDirectory + "/spool.sqlite",
                                              observer: { kind, seconds in metrics.recordDatabase(kind: kind, seconds: seconds) }))
        }
        let pool = try await openPool(settings.url, key: "database.url", settings)
        // The pool's figures, read fresh for each scrape.
        metrics.onScrape { m in
            let c = pool.counts
            m.setDatabasePool(open: c.open, idle: c.idle, waiting: c.waiting, acquired: c.acquired, waited: c.waited,
                              max: settings.maxConnections)
        }
        let urls = settings.jobShardURLs
        guard !urls.isEmpty else {
            try await attachReplicas(settings, main: pool, others: [], metrics: metrics)
            return .postgresql(pool, jobShards: nil)
        }
        let router: ShardRouter
        do {
            router = try ShardRouter(shardCount: urls.count, layouts: settings.jobShardLayouts.isEmpty ? []
                                     : ShardRouter.parseLayouts(settings.jobShardLayouts))
        } catch {
            await pool.close()
            throw PersistenceError("database.job_shard_layouts: \(error)")
        }
        var pools: [PostgresPool] = []
        for (i, url) in urls.enumerated() {
            do {
                // The main database listed as a shard shares its pool.
                pools.append(url == settings.url ? pool : try await openPool(url, key: "database.job_shards[\(i)]", settings))
            } catch {
                for p in pools where p !== pool { await p.close() }
                await pool.close()
                throw error
            }
        }
        let opened = pools
        metrics.onScrape { m in
            for (i, p) in opened.enumerated() { m.setJobShardPool(shard: i, open: p.counts.open, idle: p.counts.idle) }
        }
        try await attachReplicas(settings, main: pool, others: opened.filter { $0 !== pool }, metrics: metrics)
        return .postgresql(pool, jobShards: JobShards(pools: opened, router: router))
    }

    /// Replica pools for the main database and for every other pool on the same server,
    /// a monitor per replica server polling it, and their figures on /metrics. A replica
    /// that is down at start is simply out of rotation until it answers.
    private static func attachReplicas(_ settings: ServerSettings.Database, main: PostgresPool, others: [PostgresPool],
                                       metrics: ServerMetrics) async throws {
        let addresses = settings.replicaAddresses
        guard !addresses.isEmpty else { return }
        guard let server = PostgresURL.server(of: main.configuration.url) else {
            throw PersistenceError("database.replicas needs database.url in the postgres://user[:password]@host:port/database form")
        }
        func replicaPool(_ primary: PostgresPool, on address: String) -> PostgresPool? {
            guard let url = PostgresURL.url(primary.configuration.url, onServer: address) else { return nil }
            var config = PostgresPoolConfiguration(url: url)
            config.maxConnections = settings.maxConnections
            config.minConnections = 1
            // A replica that stopped answering costs a read at most this long before the primary serves it.
            config.connectTimeoutSeconds = 2
            return PostgresPool.unopened(config)
        }
        var monitors: [ReplicaMonitor] = []
        var mainRoutes: [ReplicaRoute] = []
        var otherRoutes: [[ReplicaRoute]] = Array(repeating: [], count: others.count)
        for address in addresses {
            guard let probe = replicaPool(main, on: address) else { continue }
            let monitor = ReplicaMonitor(name: address, primary: main, probe: probe,
                                         maxLag: .milliseconds(settings.replicaMaxLagMilliseconds))
            monitors.append(monitor)
            mainRoutes.append(ReplicaRoute(monitor: monitor, pool: probe))
            for (i, other) in others.enumerated() where PostgresURL.server(of: other.configuration.url) == server {
                if let r = replicaPool(other, on: address) { otherRoutes[i].append(ReplicaRoute(monitor: monitor, pool: r)) }
            }
        }
        main.attachReplicas(mainRoutes)
        for (i, other) in others.enumerated() { other.attachReplicas(otherRoutes[i]) }
        // A first look before serving, so a healthy replica is in rotation from the start.
        for m in monitors {
            await m.poll()
            m.start()
        }
        let watched = monitors
        metrics.onScrape { m in
            for monitor in watched { m.setReplica(monitor.status) }
        }
    }

    private static func openPool(_ url: String, key: String, _ settings: ServerSettings.Database) async throws -> PostgresPool {
        var config = PostgresPoolConfiguration(url: url)
        config.maxConnections = settings.maxConnections
        config.minConnections = min(2, settings.maxConnections)
        do {
            return try await PostgresPool.open(config)
        } catch {
            throw PersistenceError("cannot connect to the PostgreSQL \(key) \(SettingSpec.withoutPassword(url)): \(error)")
        }
    }

    /// What the services other than jobs run their queries on.
    public var relational: any RelationalDatabase {
        switch self {
        case .sqlite(let db): db
        case .postgresql(let pool, _): pool
        }
    }

    func jobStore() -> any JobStore {
        switch self {
        case .sqlite(let db): SQLiteJobStore(database: db)
        case .postgresql(let pool, nil): PostgresJobStore(pool: pool)
        case .postgresql(_, let shards?): ShardedJobStore(shards: shards.pools.map { PostgresJobStore(pool: $0) }, router: shards.router)
        }
    }

    /// Reads of some requests may go to replicas (database.replicas).
    public var hasReplicas: Bool {
        if case .postgresql(let pool, _) = self { return !pool.replicas.isEmpty }
        return false
    }

    /// Other dispatchers may write the same tables (and so the same file storage).
    public var isShared: Bool {
        if case .postgresql = self { return true }
        return false
    }

    /// Commits what is queued and lets go of the database (the SQLite file's lock, the
    /// pool's connections).
    public func close() async {
        switch self {
        case .sqlite(let db): try? await db.close()
        case .postgresql(let pool, let shards):
            // The main pool may be a shard too: each pool's replicas once.
            for p in [pool] + (shards?.pools ?? []).filter({ $0 !== pool }) {
                for r in p.replicas {
                    r.monitor.stop()
                    await r.pool.close()
                }
            }
            for p in shards?.pools ?? [] where p !== pool { await p.close() }
            await pool.close()
        }
    }
}

/// Secrets every dispatcher on one database must share (the list cursors' signing key), in
/// the database itself: the first dispatcher's value wins, and all read that one.
enum SharedSecrets {
    static let migrations = [
        SQLMigration("dispatch.1", sqlite: """
            CREATE TABLE dispatch_secrets (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
            """, postgresql: """
            CREATE TABLE dispatch_secrets (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
            """),
    ]

    /// The secret `name`, made from `proposed` if the database has none yet.
    static func load(_ name: String, from database: any RelationalDatabase, proposed: [UInt8]) async throws -> [UInt8] {
        try await database.migrate(migrations)
        let text = try await database.writing { db in
            try db.execute("INSERT INTO dispatch_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                           [name, Hex.encode(proposed)])
            return try db.one("SELECT value FROM dispatch_secrets WHERE name = ?", [name])?.string("value")
        }
        guard let text, let bytes = Hex.decode(text), bytes.count == proposed.count else {
            throw PersistenceError("the stored secret \(name) is damaged; delete its row in dispatch_secrets to make a new one")
        }
        return bytes
    }
}

/// SQLite's own failures: a full disk is 507 (deleting files makes room, and a delete
/// takes little), a database that takes no writes for now 503; the rest stays a 500.
extension PersistenceError: APIErrorConvertible {
    public var apiError: APIError {
        switch kind {
        case .full:
            APIError(status: 507, code: "insufficient_storage", message: "the database's disk is full; delete files to make room")
        case .unavailable:
            APIError(status: 503, code: "unavailable", message: "the database cannot take this change right now; try again")
        case .failed:
            APIError(status: 500, code: "internal", message: "internal error")
        }
    }
}

/// A database that cannot be reached (a restart, a cut connection, a pool with no
/// connection to give) is 503: the request may succeed if sent again (a submission with
/// its Idempotency-Key). What the server refused is a 500: the request will not succeed.
extension PostgresError: APIErrorConvertible {
    public var apiError: APIError {
        switch kind {
        case .connection, .pool:
            APIError(status: 503, code: "unavailable", message: "the database is unreachable right now; try again")
        case .server where isRetryable:
            APIError(status: 503, code: "unavailable", message: "the database could not complete the change; try again")
        case .server, .decoding:
            APIError(status: 500, code: "internal", message: "the database refused the request")
        }
    }
}
