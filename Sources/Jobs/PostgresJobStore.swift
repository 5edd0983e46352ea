// Jobs.PostgresJobStore: the JobStore on PostgreSQL, for several dispatchers sharing one
// database. Same tables and columns as SQLiteJobStore (`jobs_jobs`, `jobs_idempotency`),
// in PostgreSQL's types, with ids and tenants in the "C" collation so keyset pages order
// the way SQLite's do. Differences that matter:
// - No record cache: other dispatchers change jobs too.
// - A read-modify-write takes the row with SELECT ... FOR UPDATE, so two dispatchers
//   changing one job serialize (the second sees the first's result); `updateMany` locks
//   its rows in id order (no deadlock between two sweeps).
// - Two dispatchers inserting under one new Idempotency-Key at once: the second's key
//   insert meets the primary key (23505), its transaction rolls back whole (its job with
//   it), and it runs again, now finding the first's answer to replay.
import Postgres
import SpoolModel

public final class PostgresJobStore: JobStore {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public static let migrations: [PostgresMigration] = [
        PostgresMigration("jobs.1", """
            CREATE TABLE jobs_jobs (
                id TEXT COLLATE "C" PRIMARY KEY,
                tenant TEXT COLLATE "C" NOT NULL,
                state TEXT COLLATE "C" NOT NULL,
                priority INTEGER NOT NULL,
                input_file_id TEXT NOT NULL,
                outputs TEXT NOT NULL,
                required_capabilities TEXT NOT NULL,
                webhook_url TEXT,
                ttl_seconds BIGINT NOT NULL,
                metadata TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                attempts INTEGER NOT NULL,
                max_attempts INTEGER NOT NULL,
                reason TEXT,
                progress DOUBLE PRECISION NOT NULL,
                lease_epoch BIGINT NOT NULL,
                engine_id TEXT,
                next_attempt_at BIGINT,
                result TEXT,
                quality BOOLEAN NOT NULL DEFAULT false,
                limits TEXT NOT NULL DEFAULT '{}'
            );
            CREATE INDEX jobs_jobs_tenant_state ON jobs_jobs (tenant, state, id);
            CREATE INDEX jobs_jobs_state ON jobs_jobs (state, id);
            CREATE INDEX jobs_jobs_expiry ON jobs_jobs (expires_at) WHERE state = 'pending';
            CREATE INDEX jobs_jobs_retry ON jobs_jobs (next_attempt_at) WHERE state = 'retrying';
            CREATE INDEX jobs_jobs_pending ON jobs_jobs (tenant, priority DESC, id) WHERE state = 'pending';
            CREATE INDEX jobs_jobs_engine ON jobs_jobs (engine_id) WHERE engine_id IS NOT NULL;
            CREATE TABLE jobs_idempotency (
                tenant TEXT COLLATE "C" NOT NULL,
                key TEXT COLLATE "C" NOT NULL,
                request_hash TEXT NOT NULL,
                status INTEGER NOT NULL,
                body TEXT NOT NULL,
                job_id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant, key)
            );
            CREATE INDEX jobs_idempotency_created ON jobs_idempotency (created_at);
            """),
        // The webhook outbox's sweep: finished jobs with a webhook, by time.
        PostgresMigration("jobs.2", """
            CREATE INDEX jobs_jobs_finished_webhook ON jobs_jobs (updated_at, id)
            WHERE webhook_url IS NOT NULL AND state IN ('completed', 'failed');
            """),
    ]

    public func migrate() async throws { try await pool.migrate(Self.migrations) }

    /// Runs `body` in a transaction; once more when a concurrent insert of the same key won
    /// (the second run replays its answer).
    private func keyed<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        do {
            return try await pool.transaction(body)
        } catch let e as PostgresError where e.isUniqueViolation {
            return try await pool.transaction(body)
        }
    }

    public func insert(claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                       make: @escaping @Sendable () -> Job, render: @escaping @Sendable (Job) -> [UInt8]) async throws -> IdempotentOutcome {
        try await keyed { c in
            if let claim, let stored = try Self.claimed(c, claim, now: now, retention: retentionMilliseconds) { return .replayed(stored) }
            let job = make()
            try c.query(Self.insertSQL, Self.columns(job))
            let body = render(job)
            if let claim { try Self.record(c, claim, status: status, body: body, jobID: job.id, now: now) }
            return .done(job, body: body)
        }
    }

    public func lookup(tenant: String, key: String, now: Int64, retentionMilliseconds: Int64) async throws -> StoredResponse? {
        try await pool.read { c in try Self.stored(c, tenant: tenant, key: key, now: now, retention: retentionMilliseconds) }
    }

    public func get(_ id: JobID) async throws -> Job? {
        try await pool.read { c in try Self.fetch(c, id, lock: false) }
    }

    private static func fetch(_ c: PostgresConnection, _ id: JobID, lock: Bool) throws -> Job? {
        let rows = try c.query("SELECT * FROM jobs_jobs WHERE id = $1" + (lock ? " FOR UPDATE" : ""), [id.text])
        return rows.isEmpty ? nil : try job(rows[0])
    }

    public func list(_ q: JobQuery) async throws -> JobPage {
        guard q.positions == nil else { throw ModelError(.badRequest, "the cursor was made while jobs were sharded; list again without it") }
        return try await pool.read { c in
            var filter: [String] = []
            var args: [(any PostgresBindable)?] = []
            if let t = q.tenant { args.append(t); filter.append("tenant = $\(args.count)") }
            if let s = q.state { args.append(s.rawValue); filter.append("state = $\(args.count)") }
            let whereFilters = filter.isEmpty ? "" : " WHERE " + filter.joined(separator: " AND ")
            let total = try c.query("SELECT count(*) AS n FROM jobs_jobs" + whereFilters, args).rows[0].int("n")
            var pageFilter = filter
            var pageArgs = args
            if let a = q.after { pageArgs.append(a.text); pageFilter.append(q.newestFirst ? "id < $\(pageArgs.count)" : "id > $\(pageArgs.count)") }
            let wherePage = pageFilter.isEmpty ? "" : " WHERE " + pageFilter.joined(separator: " AND ")
            pageArgs.append(q.limit + 1)
            pageArgs.append(q.offset)
            let sql = "SELECT * FROM jobs_jobs" + wherePage + (q.newestFirst ? " ORDER BY id DESC" : " ORDER BY id")
                + " LIMIT $\(pageArgs.count - 1) OFFSET $\(pageArgs.count)"
            let jobs = try c.query(sql, pageArgs).rows.compactMap { try Self.job($0) }
            return JobPage(jobs: Array(jobs.prefix(q.limit)), totalCount: total, hasMore: jobs.count > q.limit)
        }
    }

    public func update(_ id: JobID, claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                       render: (@Sendable (Job) -> [UInt8])?, _ change: @escaping @Sendable (inout Job) throws -> Void) async throws -> IdempotentOutcome {
        try await keyed { c in
            if let claim, let stored = try Self.claimed(c, claim, now: now, retention: retentionMilliseconds) { return .replayed(stored) }
            guard var job = try Self.fetch(c, id, lock: true) else { throw ModelError(.notFound, "no job \(id.text)") }
            try change(&job)
            try Self.updateRow(c, job)
            let body = render?(job) ?? []
            if let claim { try Self.record(c, claim, status: status, body: body, jobID: job.id, now: now) }
            return .done(job, body: body)
        }
    }

    public func updateMany(_ ids: [JobID], _ change: @escaping @Sendable (inout Job) -> Bool) async throws -> [Job] {
        let ordered = ids.sorted { $0.text < $1.text }
        return try await pool.transaction { c in
            var changed: [Job] = []
            for id in ordered {
                guard var job = try Self.fetch(c, id, lock: true), change(&job) else { continue }
                try Self.updateRow(c, job)
                changed.append(job)
            }
            return changed
        }
    }

    public func idsDueForExpiry(now: Int64, limit: Int) async throws -> [JobID] {
        try await pool.read { c in
            try c.query("SELECT id FROM jobs_jobs WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2", [now, limit])
                .rows.compactMap { JobID(try $0.string("id")) }
        }
    }

    public func idsDueForRetry(now: Int64, limit: Int) async throws -> [JobID] {
        try await pool.read { c in
            try c.query("SELECT id FROM jobs_jobs WHERE state = 'retrying' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2", [now, limit])
                .rows.compactMap { JobID(try $0.string("id")) }
        }
    }

    public func purgeIdempotencyKeys(createdBefore before: Int64) async throws -> Int {
        try await pool.read { c in try c.query("DELETE FROM jobs_idempotency WHERE created_at < $1", [before]).affected }
    }

    public func pendingByTenant(limitPerTenant: Int) async throws -> [PendingJob] {
        try await pool.read { c in
            try c.query("""
                SELECT id, tenant, input_file_id, required_capabilities, outputs, priority FROM (
                    SELECT id, tenant, input_file_id, required_capabilities, outputs, priority,
                           ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY priority DESC, id) AS rank
                    FROM jobs_jobs WHERE state = 'pending') AS ranked
                WHERE rank <= $1 ORDER BY tenant, rank
                """, [limitPerTenant]).rows.compactMap { row in
                guard let id = JobID(try row.string("id")), let input = FileID(try row.string("input_file_id")) else { return nil }
                let caps = try row.string("required_capabilities")
                return PendingJob(id: id, tenant: try row.string("tenant"), inputFileID: input,
                                  requiredCapabilities: caps == "[]" ? [] : stringArray(caps), outputsText: try row.string("outputs"),
                                  priority: try row.int("priority"))
            }
        }
    }

    public func leasedJobs(engine: EngineID) async throws -> [Job] {
        try await pool.read { c in
            try c.query("SELECT * FROM jobs_jobs WHERE engine_id = $1 AND state IN ('assigned', 'transcoding', 'completing') ORDER BY id",
                        [engine.text]).rows.compactMap { try Self.job($0) }
        }
    }

    public func finishedWithWebhook(after: FinishedPosition, through: Int64, limit: Int) async throws -> [Job] {
        try await pool.read { c in
            try c.query("""
                SELECT * FROM jobs_jobs WHERE webhook_url IS NOT NULL AND state IN ('completed', 'failed')
                AND (updated_at, id) > ($1, $2) AND updated_at <= $3 ORDER BY updated_at, id LIMIT $4
                """, [after.updatedAt, after.id, through, limit]).rows.compactMap { try Self.job($0) }
        }
    }

    public func countsByState() async throws -> [JobState: Int] {
        try await pool.read { c in
            var out: [JobState: Int] = [:]
            for row in try c.query("SELECT state, count(*) AS n FROM jobs_jobs GROUP BY state").rows {
                if let s = JobState(rawValue: try row.string("state")) { out[s] = try row.int("n") }
            }
            return out
        }
    }

    // MARK: Rows

    private static func claimed(_ c: PostgresConnection, _ claim: IdempotencyClaim, now: Int64, retention: Int64) throws -> StoredResponse? {
        guard let stored = try stored(c, tenant: claim.tenant, key: claim.key, now: now, retention: retention) else {
            // An expired record the sweep has not purged yet: the key is free again. Only an
            // expired one: a live record another dispatcher committed since our read must
            // stay, so our key insert meets it (23505) and this runs again to replay it.
            try c.query("DELETE FROM jobs_idempotency WHERE tenant = $1 AND key = $2 AND created_at <= $3",
                        [claim.tenant, claim.key, now - retention])
            return nil
        }
        return try claim.replay(of: stored)
    }

    private static func stored(_ c: PostgresConnection, tenant: String, key: String, now: Int64, retention: Int64) throws -> StoredResponse? {
        let rows = try c.query("SELECT * FROM jobs_idempotency WHERE tenant = $1 AND key = $2 AND created_at > $3", [tenant, key, now - retention])
        guard !rows.isEmpty else { return nil }
        let row = rows[0]
        return StoredResponse(status: try row.int("status"), body: Array(try row.string("body").utf8), jobID: try row.string("job_id"),
                              requestHash: try row.string("request_hash"))
    }

    private static func record(_ c: PostgresConnection, _ claim: IdempotencyClaim, status: Int, body: [UInt8], jobID: JobID, now: Int64) throws {
        try c.query("""
            INSERT INTO jobs_idempotency (tenant, key, request_hash, status, body, job_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
            """, [claim.tenant, claim.key, claim.requestHash, status, String(decoding: body, as: UTF8.self), jobID.text, now])
    }

    static let columnList = ["id", "tenant", "state", "priority", "input_file_id", "outputs", "required_capabilities", "webhook_url",
                             "ttl_seconds", "metadata", "created_at", "updated_at", "expires_at", "attempts", "max_attempts", "reason",
                             "progress", "lease_epoch", "engine_id", "next_attempt_at", "result", "quality", "limits"]
    static let columnNames = columnList.joined(separator: ", ")

    static func placeholders(_ n: Int, from first: Int = 1) -> String {
        (first..<(first + n)).map { "$\($0)" }.joined(separator: ", ")
    }

    private static func columns(_ j: Job) -> [(any PostgresBindable)?] {
        [j.id.text, j.tenant, j.state.rawValue, j.priority, j.inputFileID.text, j.outputs.storedText, j.requiredCapabilities.jsonText,
         j.webhookURL, j.ttlSeconds, metadataText(j.metadata), j.createdAt, j.updatedAt, j.expiresAt, j.attempts,
         j.maxAttempts, j.reason, j.progress, j.leaseEpoch, j.engineID?.text, j.nextAttemptAt, j.result?.jsonText, j.measureQuality, j.limits.jsonText]
    }

    /// Every column but the id ($1) set from $2 on, in `columnList` order; built once.
    static let updateSQL = "UPDATE jobs_jobs SET "
        + columnList.dropFirst().enumerated().map { "\($0.element) = $\($0.offset + 2)" }.joined(separator: ", ") + " WHERE id = $1"
    static let insertSQL = "INSERT INTO jobs_jobs (\(columnNames)) VALUES (\(placeholders(columnList.count)))"

    private static func updateRow(_ c: PostgresConnection, _ j: Job) throws {
        try c.query(updateSQL, columns(j))
    }

    /// A row as a job; nil for a row this version cannot read (never written by it).
    static func job(_ row: PostgresRow) throws -> Job? {
        guard let id = JobID(try row.string("id")), let state = JobState(rawValue: try row.string("state")),
              let input = FileID(try row.string("input_file_id")), let outputs = JobOutputs.decodeStored(try row.string("outputs")) else { return nil }
        var job = Job(id: id, tenant: try row.string("tenant"), priority: try row.int("priority"), inputFileID: input, outputs: outputs,
                      requiredCapabilities: stringArray(try row.string("required_capabilities")), webhookURL: try row.optionalString("webhook_url"),
                      ttlSeconds: try row.int64("ttl_seconds"), metadata: stringMap(try row.string("metadata")),
                      measureQuality: try row.bool("quality"), createdAt: try row.int64("created_at"),
                      updatedAt: try row.int64("updated_at"), expiresAt: try row.int64("expires_at"), attempts: try row.int("attempts"),
                      maxAttempts: try row.int("max_attempts"), state: state, reason: try row.optionalString("reason"),
                      progress: try row.double("progress"), leaseEpoch: try row.int64("lease_epoch"),
                      engineID: try row.optionalString("engine_id").flatMap(EngineID.init),
                      nextAttemptAt: try row.optionalInt64("next_attempt_at"),
                      result: try row.optionalString("result").flatMap(JobResult.decodeStored))
        job.limits = TranscodeLimits.decodeStored(try row.string("limits"))
        return job
    }
}
