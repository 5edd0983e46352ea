// EngineRuntime.LocalQueue: the engine's own record of the jobs it holds (DATA/engine.sqlite,
// table engine_queue: the lease epoch, the spec as received, the order they came in, and
// how many times this engine started each). A lease is written here, committed, before the
// engine starts on it, and deleted once the server has its outcome. On start the engine
// reloads the rows and resumes them under their epochs: if the server still gives the
// lease to this engine (a restart within the heartbeat grace), the job goes on here
// instead of waiting to be taken back; if not, the first call answers 409 and the row
// goes. A job started too often here fails (it may be what brings the engine down).
// One engine per data directory: the database's lock refuses a second one.
import GRDB
import Persistence

struct LocalJob: Sendable, Equatable {
    var jobID: String
    var epoch: Int64
    var specText: String
    var starts: Int
}

final class LocalQueue: Sendable {
    let database: SQLiteDatabase
    /// Starts of one job on this engine before it is failed instead.
    static let maxStarts = 3

    static let migrations: [Migration] = [
        Migration("engine.1") { db in
            try db.execute(sql: """
                CREATE TABLE engine_queue (
                    position INTEGER PRIMARY KEY AUTOINCREMENT,
                    job_id TEXT NOT NULL UNIQUE,
                    lease_epoch INTEGER NOT NULL,
                    spec TEXT NOT NULL,
                    starts INTEGER NOT NULL,
                    received_at INTEGER NOT NULL
                );
                """)
        },
    ]

    static func open(path: String) async throws -> LocalQueue {
        let db = try SQLiteDatabase(path: path, readers: 1)
        try await db.migrate(migrations)
        return LocalQueue(database: db)
    }

    init(database: SQLiteDatabase) { self.database = database }

    /// Records a lease (a job received again under a newer epoch replaces the old row).
    func received(_ job: LocalJob, at now: Int64) async throws {
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO engine_queue (job_id, lease_epoch, spec, starts, received_at) VALUES (?, ?, ?, 0, ?)
                ON CONFLICT(job_id) DO UPDATE SET lease_epoch = excluded.lease_epoch, spec = excluded.spec, starts = 0,
                                                  received_at = excluded.received_at
                """, arguments: [job.jobID, job.epoch, job.specText, now])
        }
    }

    /// Counts a start; returns the starts so far.
    func started(_ jobID: String) async throws -> Int {
        try await database.write { db in
            try db.execute(sql: "UPDATE engine_queue SET starts = starts + 1 WHERE job_id = ?", arguments: [jobID])
            return try Int.fetchOne(db, sql: "SELECT starts FROM engine_queue WHERE job_id = ?", arguments: [jobID]) ?? 0
        }
    }

    func finished(_ jobID: String) async throws {
        try await database.write { db in try db.execute(sql: "DELETE FROM engine_queue WHERE job_id = ?", arguments: [jobID]) }
    }

    /// What the engine held when it stopped, in the order it came.
    func all() async throws -> [LocalJob] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM engine_queue ORDER BY position").map { r in
                LocalJob(jobID: r["job_id"], epoch: r["lease_epoch"], specText: r["spec"], starts: r["starts"])
            }
        }
    }
}
