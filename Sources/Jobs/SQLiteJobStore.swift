// Jobs.SQLiteJobStore: the JobStore on the shared SQLite database. Tables `jobs_jobs` and
// `jobs_idempotency` (migrations "jobs.1"...). Indexes: (tenant, state, id) and (state, id)
// for listing, partial indexes for the expiry and retry sweeps, key creation time for the
// purge. Every statement is parameterized; every write is one immediate transaction on the
// single writer, committed (synchronous=FULL) before the call returns. Committed records
// also go to a JobCache, so `get` of a recently touched job does not reach the database.
import GRDB
import Persistence
import SpoolModel

public final class SQLiteJobStore: JobStore {
    let db: SQLiteDatabase
    let cache: JobCache

    /// `cacheCapacity`: how many job records `get` may answer from memory (0: none).
    public init(database: SQLiteDatabase, cacheCapacity: Int = 16_384) {
        db = database
        cache = JobCache(capacity: cacheCapacity)
    }

    /// Entries, hits and misses of the record cache (for metrics and tests).
    public var cacheCounts: (entries: Int, hits: UInt64, misses: UInt64) { cache.counts }

    /// Inside a write transaction, as the write's last step (nothing after it may throw, as
    /// the hook belongs to the whole group commit): once it commits, the cache holds `jobs`;
    /// if it rolls back, nothing of theirs is kept.
    private static func publish(_ db: Database, _ jobs: [Job], to cache: JobCache) {
        guard !jobs.isEmpty else { return }
        db.afterNextTransaction(onCommit: { _ in cache.committed(jobs) },
                                onRollback: { _ in cache.forget(jobs.map(\.id)) })
    }

    public static let migrations: [Migration] = [
        Migration("jobs.1") { db in
            try db.execute(sql: """
                CREATE TABLE jobs_jobs (
                    id TEXT PRIMARY KEY NOT NULL,
                    tenant TEXT NOT NULL,
                    state TEXT NOT NULL,
                    priority INTEGER NOT NULL,
                    input_file_id TEXT NOT NULL,
                    outputs TEXT NOT NULL,
                    required_capabilities TEXT NOT NULL,
                    webhook_url TEXT,
                    ttl_seconds INTEGER NOT NULL,
                    metadata TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    attempts INTEGER NOT NULL,
                    max_attempts INTEGER NOT NULL,
                    reason TEXT,
                    progress REAL NOT NULL,
                    lease_epoch INTEGER NOT NULL,
                    engine_id TEXT,
                    next_attempt_at INTEGER,
                    result TEXT
                ) WITHOUT ROWID;
                CREATE INDEX jobs_jobs_tenant_state ON jobs_jobs(tenant, state, id);
                CREATE INDEX jobs_jobs_state ON jobs_jobs(state, id);
                CREATE INDEX jobs_jobs_expiry ON jobs_jobs(expires_at) WHERE state = 'pending';
                CREATE INDEX jobs_jobs_retry ON jobs_jobs(next_attempt_at) WHERE state = 'retrying';
                CREATE TABLE jobs_idempotency (
                    tenant TEXT NOT NULL,
                    key TEXT NOT NULL,
                    request_hash TEXT NOT NULL,
                    status INTEGER NOT NULL,
                    body TEXT NOT NULL,
                    job_id TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (tenant, key)
                ) WITHOUT ROWID;
                CREATE INDEX jobs_idempotency_created ON jobs_idempotency(created_at);
                """)
        },
        Migration("jobs.2") { db in
            // Whether the engine measures PSNR/SSIM; the scheduler's reads: pending jobs by
            // tenant in priority order, and the jobs an engine holds.
            try db.execute(sql: """
                ALTER TABLE jobs_jobs ADD COLUMN quality INTEGER NOT NULL DEFAULT 0;
                CREATE INDEX jobs_jobs_pending ON jobs_jobs(tenant, priority DESC, id) WHERE state = 'pending';
                CREATE INDEX jobs_jobs_engine ON jobs_jobs(engine_id) WHERE engine_id IS NOT NULL;
                """)
        },
        Migration("jobs.3") { db in
            // Per-job limits on the sandboxed transcode (TranscodeLimits as JSON).
            try db.execute(sql: "ALTER TABLE jobs_jobs ADD COLUMN limits TEXT NOT NULL DEFAULT '{}'")
        },
        Migration("jobs.4") { db in
            // The webhook outbox's sweep: finished jobs with a webhook, by time.
            try db.execute(sql: """
                CREATE INDEX jobs_jobs_finished_webhook ON jobs_jobs(updated_at, id)
                WHERE webhook_url IS NOT NULL AND state IN ('completed', 'failed')
                """)
        },
    ]

    public func migrate() async throws { try await db.migrate(Self.migrations) }

    public func insert(claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                       make: @escaping @Sendable () -> Job, render: @escaping @Sendable (Job) -> [UInt8]) async throws -> IdempotentOutcome {
        let cache = self.cache
        return try await db.write { db in
            if let claim, let stored = try Self.claimed(db, claim, now: now, retention: retentionMilliseconds) { return .replayed(stored) }
            let job = make()
            try Self.insertRow(db, job)
            let body = render(job)
            if let claim { try Self.record(db, claim, status: status, body: body, jobID: job.id, now: now) }
            Self.publish(db, [job], to: cache)
            return .done(job, body: body)
        }
    }

    public func lookup(tenant: String, key: String, now: Int64, retentionMilliseconds: Int64) async throws -> StoredResponse? {
        try await db.read { db in try Self.stored(db, tenant: tenant, key: key, now: now, retention: retentionMilliseconds) }
    }

    public func get(_ id: JobID) async throws -> Job? {
        if let hit = cache.get(id) { return hit }
        let generation = cache.generation
        let job = try await db.read { db in try Self.fetch(db, id) }
        if let job { cache.fill(job, readAt: generation) }
        return job
    }

    public func representation(_ id: JobID) async throws -> (job: Job, json: [UInt8])? {
        if let e = cache.entry(id) {
            if let json = e.json { return (e.job, json) }
            let json = e.job.jsonBytes
            cache.attach(json, to: id, sequence: e.sequence)
            return (e.job, json)
        }
        guard let job = try await get(id) else { return nil }
        return (job, job.jsonBytes)
    }

    /// From the cache only, and only once a read rendered the entry's JSON (a later commit
    /// replaces the entry, JSON and all, so what is here is the committed record).
    public func cachedRendering(bits: UInt128) -> JobRendering? { cache.rendering(bits: bits) }
    public var keepsRenderings: Bool { true }

    private static func fetch(_ db: Database, _ id: JobID) throws -> Job? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM jobs_jobs WHERE id = ?"), arguments: [id.text]).flatMap(Self.job)
    }

    public func list(_ q: JobQuery) async throws -> JobPage {
        guard q.positions == nil else { throw ModelError(.badRequest, "the cursor was made while jobs were sharded; list again without it") }
        return try await db.read { db in
            var filter: [String] = []
            var args: [(any DatabaseValueConvertible)?] = []
            if let t = q.tenant { filter.append("tenant = ?"); args.append(t) }
            if let s = q.state { filter.append("state = ?"); args.append(s.rawValue) }
            let whereFilters = filter.isEmpty ? "" : " WHERE " + filter.joined(separator: " AND ")
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs_jobs" + whereFilters, arguments: StatementArguments(args)) ?? 0
            var pageFilter = filter
            var pageArgs = args
            if let a = q.after { pageFilter.append(q.newestFirst ? "id < ?" : "id > ?"); pageArgs.append(a.text) }
            let wherePage = pageFilter.isEmpty ? "" : " WHERE " + pageFilter.joined(separator: " AND ")
            pageArgs.append(q.limit + 1)
            pageArgs.append(q.offset)
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM jobs_jobs" + wherePage + (q.newestFirst ? " ORDER BY id DESC" : " ORDER BY id") + " LIMIT ? OFFSET ?",
                                        arguments: StatementArguments(pageArgs))
            let jobs = rows.compactMap(Self.job)
            return JobPage(jobs: Array(jobs.prefix(q.limit)), totalCount: total, hasMore: jobs.count > q.limit)
        }
    }

    public func update(_ id: JobID, claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                       render: (@Sendable (Job) -> [UInt8])?, _ change: @escaping @Sendable (inout Job) throws -> Void) async throws -> IdempotentOutcome {
        let cache = self.cache
        return try await db.write { db in
            if let claim, let stored = try Self.claimed(db, claim, now: now, retention: retentionMilliseconds) { return .replayed(stored) }
            guard var job = try Self.fetch(db, id) else {
                throw ModelError(.notFound, "no job \(id.text)")
            }
            try change(&job)
            try Self.updateRow(db, job)
            let body = render?(job) ?? []
            if let claim { try Self.record(db, claim, status: status, body: body, jobID: job.id, now: now) }
            Self.publish(db, [job], to: cache)
            return .done(job, body: body)
        }
    }

    public func updateMany(_ ids: [JobID], _ change: @escaping @Sendable (inout Job) -> Bool) async throws -> [Job] {
        let cache = self.cache
        return try await db.write { db in
            var changed: [Job] = []
            for id in ids {
                guard var job = try Self.fetch(db, id), change(&job) else { continue }
                try Self.updateRow(db, job)
                changed.append(job)
            }
            Self.publish(db, changed, to: cache)
            return changed
        }
    }

    // The sweeps run every second whatever the backlog. Without ANALYZE statistics SQLite
    // picked jobs_jobs_state (every pending job, then a sort) over the partial index: 57 ms
    // a sweep at 100k pending jobs, against 0.07 ms through the index (an outside probe's
    // EXPLAIN QUERY PLAN). INDEXED BY holds the plan to the partial index.
    static let expirySQL = "SELECT id FROM jobs_jobs INDEXED BY jobs_jobs_expiry WHERE state = 'pending' AND expires_at <= ? ORDER BY expires_at LIMIT ?"
    static let retrySQL = "SELECT id FROM jobs_jobs INDEXED BY jobs_jobs_retry WHERE state = 'retrying' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?"

    public func idsDueForExpiry(now: Int64, limit: Int) async throws -> [JobID] {
        try await db.read { db in
            try String.fetchAll(db, sql: Self.expirySQL, arguments: [now, limit]).compactMap(JobID.init)
        }
    }

    public func idsDueForRetry(now: Int64, limit: Int) async throws -> [JobID] {
        try await db.read { db in
            try String.fetchAll(db, sql: Self.retrySQL, arguments: [now, limit]).compactMap(JobID.init)
        }
    }

    /// The query plan of a sweep's query, one line per step (tests hold it to its index).
    func queryPlan(_ sql: String) async throws -> [String] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: [0, 1]).map { $0["detail"] as String? ?? "" }
        }
    }

    public func purgeIdempotencyKeys(createdBefore before: Int64) async throws -> Int {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM jobs_idempotency WHERE created_at < ?", arguments: [before])
            return db.changesCount
        }
    }

    public func pendingByTenant(limitPerTenant: Int) async throws -> [PendingJob] {
        try await db.read { db in
            let cursor = try Row.fetchCursor(db.cachedStatement(sql: """
                SELECT id, tenant, input_file_id, required_capabilities, outputs, priority FROM (
                    SELECT id, tenant, input_file_id, required_capabilities, outputs, priority,
                           ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY priority DESC, id) AS rank
                    FROM jobs_jobs WHERE state = 'pending')
                WHERE rank <= ? ORDER BY tenant, rank
                """), arguments: [limitPerTenant])
            var out: [PendingJob] = []
            while let row = try cursor.next() {
                guard let id = JobID(row[0] as String), let input = FileID(row[2] as String) else { continue }
                let caps: String = row[3]
                out.append(PendingJob(id: id, tenant: row[1], inputFileID: input,
                                      requiredCapabilities: caps == "[]" ? [] : stringArray(caps), outputsText: row[4], priority: row[5]))
            }
            return out
        }
    }

    public func leasedJobs(engine: EngineID) async throws -> [Job] {
        try await db.read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM jobs_jobs WHERE engine_id = ? AND state IN ('assigned', 'transcoding', 'completing') ORDER BY id
                """), arguments: [engine.text]).compactMap(Self.job)
        }
    }

    public func finishedWithWebhook(after: FinishedPosition, through: Int64, limit: Int) async throws -> [Job] {
        try await db.read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM jobs_jobs WHERE webhook_url IS NOT NULL AND state IN ('completed', 'failed')
                AND (updated_at, id) > (?, ?) AND updated_at <= ? ORDER BY updated_at, id LIMIT ?
                """), arguments: [after.updatedAt, after.id, through, limit]).compactMap(Self.job)
        }
    }

    public func countsByState() async throws -> [JobState: Int] {
        try await db.read { db in
            var out: [JobState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM jobs_jobs GROUP BY state") {
                if let s = JobState(rawValue: row["state"]) { out[s] = row["n"] }
            }
            return out
        }
    }

    // MARK: Rows

    /// The live record for `claim`'s key: its answer when the hash matches; a throw when it does not.
    private static func claimed(_ db: Database, _ claim: IdempotencyClaim, now: Int64, retention: Int64) throws -> StoredResponse? {
        guard let stored = try stored(db, tenant: claim.tenant, key: claim.key, now: now, retention: retention) else {
            // An expired record the sweep has not purged yet: the key is free again (only an
            // expired one: the same rule as PostgresJobStore, where another writer's live
            // record could have committed since the read).
            try db.execute(sql: "DELETE FROM jobs_idempotency WHERE tenant = ? AND key = ? AND created_at <= ?",
                           arguments: [claim.tenant, claim.key, now - retention])
            return nil
        }
        return try claim.replay(of: stored)
    }

    private static func stored(_ db: Database, tenant: String, key: String, now: Int64, retention: Int64) throws -> StoredResponse? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM jobs_idempotency WHERE tenant = ? AND key = ? AND created_at > ?"),
                                         arguments: [tenant, key, now - retention]) else { return nil }
        let body: String = row["body"]
        return StoredResponse(status: row["status"], body: Array(body.utf8), jobID: row["job_id"], requestHash: row["request_hash"])
    }

    private static func record(_ db: Database, _ claim: IdempotencyClaim, status: Int, body: [UInt8], jobID: JobID, now: Int64) throws {
        try db.cachedStatement(sql: """
            INSERT INTO jobs_idempotency (tenant, key, request_hash, status, body, job_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [claim.tenant, claim.key, claim.requestHash, status, String(decoding: body, as: UTF8.self), jobID.text, now])
    }

    private static func columns(_ j: Job) -> [(any DatabaseValueConvertible)?] {
        [j.id.text, j.tenant, j.state.rawValue, j.priority, j.inputFileID.text, j.outputs.storedText, j.requiredCapabilities.jsonText,
         j.webhookURL, j.ttlSeconds, metadataText(j.metadata), j.createdAt, j.updatedAt, j.expiresAt, j.attempts,
         j.maxAttempts, j.reason, j.progress, j.leaseEpoch, j.engineID?.text, j.nextAttemptAt, j.result?.jsonText, j.measureQuality, j.limits.jsonText]
    }

    static let columnNames = "id, tenant, state, priority, input_file_id, outputs, required_capabilities, webhook_url, ttl_seconds, "
        + "metadata, created_at, updated_at, expires_at, attempts, max_attempts, reason, progress, lease_epoch, engine_id, "
        + "next_attempt_at, result, quality, limits"

    private static func insertRow(_ db: Database, _ j: Job) throws {
        try db.cachedStatement(sql: "INSERT INTO jobs_jobs (\(columnNames)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .execute(arguments: StatementArguments(columns(j)))
    }

    private static func updateRow(_ db: Database, _ j: Job) throws {
        var args = Array(columns(j).dropFirst())
        args.append(j.id.text)
        try db.cachedStatement(sql: """
            UPDATE jobs_jobs SET tenant = ?, state = ?, priority = ?, input_file_id = ?, outputs = ?, required_capabilities = ?,
            webhook_url = ?, ttl_seconds = ?, metadata = ?, created_at = ?, updated_at = ?, expires_at = ?, attempts = ?,
            max_attempts = ?, reason = ?, progress = ?, lease_epoch = ?, engine_id = ?, next_attempt_at = ?, result = ?, quality = ?, limits = ? WHERE id = ?
            """).execute(arguments: StatementArguments(args))
    }

    /// A row as a job; nil for a row this version cannot read (never written by it).
    static func job(_ row: Row) -> Job? {
        guard let id = JobID(row["id"]), let state = JobState(rawValue: row["state"]), let input = FileID(row["input_file_id"]),
              let outputs = JobOutputs.decodeStored(row["outputs"]) else { return nil }
        let resultText: String? = row["result"]
        let engineText: String? = row["engine_id"]
        var job = Job(id: id, tenant: row["tenant"], priority: row["priority"], inputFileID: input, outputs: outputs,
                   requiredCapabilities: stringArray(row["required_capabilities"]), webhookURL: row["webhook_url"],
                   ttlSeconds: row["ttl_seconds"], metadata: stringMap(row["metadata"]), measureQuality: row["quality"], createdAt: row["created_at"],
                   updatedAt: row["updated_at"], expiresAt: row["expires_at"], attempts: row["attempts"],
                   maxAttempts: row["max_attempts"], state: state, reason: row["reason"], progress: row["progress"],
                   leaseEpoch: row["lease_epoch"], engineID: engineText.flatMap(EngineID.init), nextAttemptAt: row["next_attempt_at"],
                   result: resultText.flatMap(JobResult.decodeStored))
        job.limits = TranscodeLimits.decodeStored(row["limits"])
        return job
    }
}
