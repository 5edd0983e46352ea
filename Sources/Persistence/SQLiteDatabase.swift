// Persistence: the SQLite database every embedded-default service keeps its tables in,
// through GRDB (Debian's libsqlite3). One file, WAL journal, `synchronous=FULL` (a commit
// is on disk before it is acknowledged), foreign keys on, one writer and a pool of readers,
// cached statements. One process owns the file: an exclusive flock on `<path>.lock` is held
// while the object lives (a second `spool serve` on the same data directory is refused at
// start), so a store may trust what it cached from its own commits. Every call runs on the
// blocking pool, so no SQLite call ever blocks a ring thread. Services own their own tables
// and register their own migrations (named "service.step"); this module knows no domain type.
import GRDB
import ProcFS
import Synchronization
import Lifecycle
import Threads
#if canImport(Glibc)
import Glibc
#endif

/// A failure of the database itself (open, migrate, a statement). Services catch the
/// SQLite errors they expect (a unique key, say) inside their transaction bodies.
public struct PersistenceError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let kind: Kind
    public init(_ message: String, kind: Kind = .failed) {
        self.message = message
        self.kind = kind
    }
    public var description: String { "database: \(message)" }

    /// What a caller can make of it: the disk is full (SQLITE_FULL: deleting frees room);
    /// the database takes no writes or cannot be reached for now (I/O errors, read-only,
    /// cannot open, busy or locked past the timeout: sending again may work); or it failed.
    public enum Kind: Sendable { case full, unavailable, failed }

    /// SQLite's errors of the database itself, given their kind; anything else (a
    /// constraint a service expects, its own errors) as it is.
    static func classified(_ error: any Error) -> any Error {
        guard let e = error as? DatabaseError else { return error }
        switch e.resultCode {
        case .SQLITE_FULL:
            return PersistenceError("\(e)", kind: .full)
        case .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_PERM:
            return PersistenceError("\(e)", kind: .unavailable)
        default:
            return error
        }
    }
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
    /// Writes waiting for the next group commit, and whether a drainer is at work.
    private let queue = Mutex<(items: [PendingWrite], draining: Bool)>(([], false))
    /// Called after every read and every group commit with (kind, seconds): the metrics hook.
    let observer: (@Sendable (_ kind: String, _ seconds: Double) -> Void)?
    /// The opened file's device and inode: a file removed or replaced under a running
    /// server leaves the connections on the old inode, whose writes no restart would see.
    let identity: FileIdentity?

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
        // A new database is the owner's alone (0600, as admin.key and the uploads are):
        // SQLite gives its -wal and -shm files the database file's mode. An empty file is
        // an empty database. An existing file keeps the mode it has.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd >= 0 { Glibc.close(fd) }
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw PersistenceError("cannot open \(path): \(error)")
        }
        lock = held
        self.path = path
        self.blocking = blocking
        self.observer = observer
        identity = FileIdentity.of(path)
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
            do { return try pool.read(body) } catch { throw PersistenceError.classified(error) }
        }
    }

    /// Runs `body` atomically in a write transaction; it is committed (and on disk) when
    /// this returns, and a throw undoes everything `body` did.
    ///
    /// Group commit: writes that arrive while a commit is under way wait for it, then go
    /// together in the next transaction, each inside its own savepoint (so one that throws
    /// rolls back alone), under one COMMIT: one fsync for the whole group instead of one
    /// per write. Every caller hears of its result only after that commit; if the commit
    /// itself fails, every write of the group fails with it. Hooks a body registers with
    /// `afterNextTransaction` run after the group's commit (or rollback), so a body must
    /// register them last, once nothing of it can throw any more.
    public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let outcome = WriteOutcome<T>()
            enqueue(PendingWrite(
                attempt: { db in
                    do {
                        var value: T?
                        try db.inSavepoint {
                            value = try body(db)
                            return .commit
                        }
                        outcome.result = .success(value!)
                        return nil
                    } catch {
                        let e = PersistenceError.classified(error)
                        outcome.result = .failure(e)
                        return (e as? PersistenceError).map(\.kind)
                    }
                },
                deliver: { commitFailure in
                    if let commitFailure { continuation.resume(throwing: commitFailure) } else { continuation.resume(with: outcome.result!) }
                }))
        }
    }

    /// Most writes one group commit carries.
    static let groupMax = 128

    private func enqueue(_ write: PendingWrite) {
        let start = queue.withLock { q -> Bool in
            q.items.append(write)
            if q.draining { return false }
            q.draining = true
            return true
        }
        guard start else { return }
        do {
            try blocking.submit { [self] in drain() }
        } catch {
            let stranded = queue.withLock { q -> [PendingWrite] in
                defer { q.items = []; q.draining = false }
                return q.items
            }
            for w in stranded { w.deliver(PersistenceError("the blocking pool is not running")) }
        }
    }

    /// On a blocking-pool thread, one at a time: commits groups until none is waiting.
    private func drain() {
        while true {
            let group = queue.withLock { q -> [PendingWrite] in
                if q.items.isEmpty { q.draining = false; return [] }
                let g = Array(q.items.prefix(Self.groupMax))
                q.items.removeFirst(g.count)
                return g
            }
            if group.isEmpty { return }
            let start = SystemClock.nanoseconds()
            var failure: PersistenceError?
            // The kind of what failed inside: a full disk makes SQLite abort the whole
            // transaction, and the commit then only says "aborted" (SQLITE_ABORT).
            var inside: PersistenceError.Kind?
            do {
                try pool.write { db in
                    for w in group {
                        // Some errors (a full disk, say) make SQLite roll the whole
                        // transaction back; nothing more may run outside of it.
                        guard db.isInsideTransaction else { throw PersistenceError("SQLite rolled the transaction back", kind: .unavailable) }
                        if let k = w.attempt(db), inside == nil || k == .full { inside = k }
                    }
                }
            } catch {
                let outer = (PersistenceError.classified(error) as? PersistenceError)?.kind ?? .failed
                let kind: PersistenceError.Kind = inside == .full ? .full : outer == .failed ? inside ?? .failed : outer
                failure = PersistenceError("commit failed: \(error)", kind: kind)
            }
            observer?("write", Double(SystemClock.nanoseconds() - start) / 1e9)
            for w in group { w.deliver(failure) }
        }
    }

    /// Lets go of the file before this object ends: the writes already queued commit, every
    /// connection closes, then the lock is released, so this process may open the path again
    /// (a restart inside one test process; a real restart is a new process, whose lock the
    /// kernel released). Reads and writes after this throw.
    public func close() async throws(PersistenceError) {
        let pool = self.pool
        do {
            try await write { _ in }  // a barrier: every write queued before it has committed
            try await blocking.run { () throws -> Void in try pool.close() }
        } catch {
            throw PersistenceError("cannot close \(path): \(error)")
        }
        lock.release()
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    public func integrityCheck() async throws -> String {
        try await read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer" }
    }

    /// The readiness probe: the file at `path` is still the one opened (not removed or
    /// replaced), and a trivial query answers.
    public func isReachable() async -> Bool {
        if let opened = identity {
            guard let now = FileIdentity.of(path), now.device == opened.device, now.inode == opened.inode else { return false }
        }
        return (try? await read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }
}

/// One caller's write waiting for a group commit: `attempt` runs it (in its savepoint) on
/// the writer, `deliver` resumes the caller once the group's outcome is known.
private struct PendingWrite: Sendable {
    /// Runs the write inside the group's transaction; returns the kind of a failure of
    /// the database itself (SQLITE_FULL, an I/O error), which may abort the whole group.
    let attempt: @Sendable (Database) -> PersistenceError.Kind?
    let deliver: @Sendable (PersistenceError?) -> Void
}

/// Where `attempt` leaves a write's result for `deliver`; written and read on the one
/// drainer thread, in that order.
private final class WriteOutcome<T: Sendable>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
