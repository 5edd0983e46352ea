// Persistence: the SQLite database every embedded-default service keeps its tables in,
// through GRDB (Debian's libsqlite3). One file, WAL journal, `synchronous=FULL` (a commit
// is on disk before it is acknowledged), foreign keys on, one writer and a pool of readers,
// cached statements. One process owns the file: an exclusive flock on `<path>.lock` is held
// while the object lives (a second `spool serve` on the same data directory is refused at
// start), so a store may trust what it cached from its own commits. Every call runs on the
// blocking pool, so no SQLite call ever blocks a ring thread. Services own their own tables
// and register their own migrations (named "service.step"); this module knows no domain type.
import GRDB
import Lifecycle
import Threads

/// A failure of the database itself (open, migrate, a statement). Services catch the
/// SQLite errors they expect (a unique key, say) inside their transaction bodies.
public struct PersistenceError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "database: \(message)" }
}

/// One schema step of one service. Names are unique across services ("jobs.1", "files.1").
public struct Migration: Sendable {
    public let name: String
    public let apply: @Sendable (Database) throws -> Void
    public init(_ name: String, _ apply: @escaping @Sendable (Database) throws -> Void) {
        self.name = name
        self.apply = apply
    }
}

public final class SQLiteDatabase: Sendable {
    public let path: String
    let pool: DatabasePool
    /// `path + ".lock"`, held with an exclusive flock for this object's life: one process
    /// owns the file, which is what lets stores cache what they wrote (see SQLiteJobStore).
    let lock: ExclusiveLock
    let blocking: BlockingPool
    /// Called after every read and write with (kind, seconds): the metrics hook.
    let observer: (@Sendable (_ kind: String, _ seconds: Double) -> Void)?

    /// Opens (creating) the database at `path`. `readers` bounds concurrent readers.
    public init(path: String, readers: Int = 4, blocking: BlockingPool = .shared,
                observer: (@Sendable (_ kind: String, _ seconds: Double) -> Void)? = nil) throws(PersistenceError) {
        let held: ExclusiveLock
        do {
            held = try ExclusiveLock(path: path + ".lock")
        } catch .held {
            throw PersistenceError("\(path) is in use by another process (\(path).lock is held): one spool serve per data directory")
        } catch {
            throw PersistenceError("\(error)")
        }
        var config = Configuration()
        config.foreignKeysEnabled = true
        config.maximumReaderCount = max(1, readers)
        // Wait for the writer lock instead of failing at once (another process on the same
        // file, or a checkpoint); one writer connection serialises this process's writes.
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw PersistenceError("cannot open \(path): \(error)")
        }
        lock = held
        self.path = path
        self.blocking = blocking
        self.observer = observer
    }

    /// Applies the migrations not yet applied, in order, each in its own transaction.
    public func migrate(_ migrations: [Migration]) async throws(PersistenceError) {
        var migrator = DatabaseMigrator()
        for m in migrations { migrator.registerMigration(m.name, migrate: m.apply) }
        let pool = self.pool, ready = migrator
        do {
            try await blocking.run { () throws -> Void in try ready.migrate(pool) }
        } catch {
            throw PersistenceError("migration failed: \(error)")
        }
    }

    /// Runs `body` in a read transaction on a reader connection (a consistent snapshot).
    public func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let pool = self.pool, observer = self.observer
        return try await blocking.run { () throws -> T in
            let start = SystemClock.nanoseconds()
            defer { observer?("read", Double(SystemClock.nanoseconds() - start) / 1e9) }
            return try pool.read(body)
        }
    }

    /// Runs `body` in an immediate write transaction; it is committed (and on disk) when
    /// this returns. A throw rolls everything back.
    public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let pool = self.pool, observer = self.observer
        return try await blocking.run { () throws -> T in
            let start = SystemClock.nanoseconds()
            defer { observer?("write", Double(SystemClock.nanoseconds() - start) / 1e9) }
            return try pool.write(body)
        }
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    public func integrityCheck() async throws -> String {
        try await read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer" }
    }

    /// True when a trivial query answers (the readiness probe).
    public func isReachable() async -> Bool {
        (try? await read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }
}
