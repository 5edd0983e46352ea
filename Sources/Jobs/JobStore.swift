// Jobs.JobStore: where jobs and idempotency keys are kept. The protocol is shaped around
// the service's atomic steps (create-or-replay, read-check-write of one job, sweeps) so a
// PostgreSQL store can implement each as one transaction (SELECT ... FOR UPDATE) the way
// the SQLite one does with its single writer. The rules (transitions, hooks, backoff) stay
// in the service, passed in as closures that run inside the transaction.
import JSON
import SpoolModel

/// An Idempotency-Key as presented with a request.
public struct IdempotencyClaim: Sendable, Equatable {
    public var tenant: String
    public var key: String
    /// Hex SHA-256 of what identifies the request (the body, for POST /jobs).
    public var requestHash: String
    public init(tenant: String, key: String, requestHash: String) {
        self.tenant = tenant; self.key = key; self.requestHash = requestHash
    }

    /// The live record found under this key: its answer to replay when the request is the
    /// same; `idempotencyKeyReused` when the key came with a different request.
    func replay(of stored: StoredResponse) throws -> StoredResponse {
        guard stored.requestHash == requestHash else {
            throw ModelError(.idempotencyKeyReused, "this Idempotency-Key was used with a different request",
                             details: [("Idempotency-Key", "used before with a different request")])
        }
        return stored
    }
}

/// The first answer given under a key.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var body: [UInt8]
    public var jobID: String
    public var requestHash: String
}

public enum IdempotentOutcome: Sendable {
    /// The change was made (and committed); `body` is what `render` made of the job ([] without render).
    case done(Job, body: [UInt8])
    /// The key was used before for this same request: its first answer.
    case replayed(StoredResponse)
}

public struct JobQuery: Sendable, Equatable {
    public var tenant: String?
    public var state: JobState?
    /// Keyset: ids greater than this.
    public var after: JobID?
    public var offset: Int
    public var limit: Int
    /// Descending ids (then `after` means ids smaller than it).
    public var newestFirst: Bool
    /// A sharded store's cursor (from the previous page's `positions`): each shard resumes
    /// after its own position; `after` is then not used. Other stores refuse it.
    public var positions: ShardPositions?
    public init(tenant: String? = nil, state: JobState? = nil, after: JobID? = nil, offset: Int = 0, limit: Int = 20, newestFirst: Bool = false,
                positions: ShardPositions? = nil) {
        self.tenant = tenant; self.state = state; self.after = after; self.offset = offset; self.limit = limit
        self.newestFirst = newestFirst; self.positions = positions
    }
}

public struct JobPage: Sendable {
    /// At most `limit` jobs, by id.
    public var jobs: [Job]
    /// Jobs matching the filters (ignoring the cursor and offset).
    public var totalCount: Int
    /// True when more jobs follow the last one returned.
    public var hasMore: Bool
    /// A sharded store's place after this page (the next page's `JobQuery.positions`); nil
    /// from a store on one database, where the last job's id is the place.
    public var positions: ShardPositions?
    public init(jobs: [Job], totalCount: Int, hasMore: Bool, positions: ShardPositions? = nil) {
        self.jobs = jobs; self.totalCount = totalCount; self.hasMore = hasMore; self.positions = positions
    }
}

/// A pending job as the scheduler reads it (cheap to load: no result, no metadata).
public struct PendingJob: Sendable, Equatable {
    public var id: JobID
    public var tenant: String
    public var inputFileID: FileID
    public var requiredCapabilities: [String]
    /// The outputs column as stored (decoded only when the scheduler needs them).
    public var outputsText: String
    /// The job's priority (a sharded store merges the shards' lists by it).
    public var priority: Int
    public init(id: JobID, tenant: String, inputFileID: FileID, requiredCapabilities: [String], outputsText: String, priority: Int = 0) {
        self.id = id; self.tenant = tenant; self.inputFileID = inputFileID
        self.requiredCapabilities = requiredCapabilities; self.outputsText = outputsText; self.priority = priority
    }

    /// What the job makes (nil for a row this version cannot read).
    public var outputs: JobOutputs? { JobOutputs.decodeStored(outputsText) }
}

public protocol JobStore: Sendable {
    func migrate() async throws

    /// One transaction: when `claim`'s key is on record and younger than `retentionMilliseconds`,
    /// the same hash replays its answer and another hash throws `idempotencyKeyReused`;
    /// otherwise `make()` builds the job (inside the transaction: ids are made in commit
    /// order), which is stored with the key and `render(job)` as the answer.
    func insert(claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                make: @escaping @Sendable () -> Job, render: @escaping @Sendable (Job) -> [UInt8]) async throws -> IdempotentOutcome

    /// The live answer recorded for (tenant, key), if any.
    func lookup(tenant: String, key: String, now: Int64, retentionMilliseconds: Int64) async throws -> StoredResponse?

    func get(_ id: JobID) async throws -> Job?
    /// The job and its JSON (`Job.jsonBytes`); a store may keep the JSON of unchanged jobs.
    func representation(_ id: JobID) async throws -> (job: Job, json: [UInt8])?
    /// The job's JSON (with its tenant and validators) when this process holds it in memory
    /// and it is current, found by the id's bits (`JobID.bits`); nil otherwise (ask
    /// `representation`). Never touches the database.
    func cachedRendering(bits: UInt128) -> JobRendering?
    /// Whether `cachedRendering` can ever answer (false: it is always nil, so a caller
    /// that only asks it has nothing to gain from asking).
    var keepsRenderings: Bool { get }

    func list(_ query: JobQuery) async throws -> JobPage

    /// One transaction: reads the job (404 when absent), applies `change` (which may throw
    /// to refuse), writes it; with a claim, as `insert` does for keys.
    func update(_ id: JobID, claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                render: (@Sendable (Job) -> [UInt8])?, _ change: @escaping @Sendable (inout Job) throws -> Void) async throws -> IdempotentOutcome

    /// One transaction over several jobs: `change` returns false to leave a job as it is.
    /// Returns the jobs changed.
    func updateMany(_ ids: [JobID], _ change: @escaping @Sendable (inout Job) -> Bool) async throws -> [Job]

    /// Pending jobs whose expiry time has passed.
    func idsDueForExpiry(now: Int64, limit: Int) async throws -> [JobID]
    /// Retrying jobs whose next attempt is due.
    func idsDueForRetry(now: Int64, limit: Int) async throws -> [JobID]
    /// Deletes key records created before `before`; returns how many.
    func purgeIdempotencyKeys(createdBefore before: Int64) async throws -> Int
    func countsByState() async throws -> [JobState: Int]

    /// The scheduler's view: for each tenant with pending jobs, its first `limitPerTenant`
    /// in the order it wants them run (priority high to low, then oldest first), with only
    /// what scheduling reads.
    func pendingByTenant(limitPerTenant: Int) async throws -> [PendingJob]
    /// Jobs `engine` holds (assigned, transcoding or completing).
    func leasedJobs(engine: EngineID) async throws -> [Job]
    /// Jobs that ended for good (completed, or failed) and have a webhook URL, in
    /// (updated_at, id) order after `after` and updated no later than `through`, at most
    /// `limit`: the webhook outbox's sweep (a finished job is its own outbox record).
    func finishedWithWebhook(after: FinishedPosition, through: Int64, limit: Int) async throws -> [Job]
}

/// A place in the (updated_at, id) order of finished jobs.
public struct FinishedPosition: Sendable, Equatable {
    public var updatedAt: Int64
    public var id: String
    public init(updatedAt: Int64, id: String) {
        self.updatedAt = updatedAt
        self.id = id
    }
}

extension JobStore {
    public func representation(_ id: JobID) async throws -> (job: Job, json: [UInt8])? {
        guard let job = try await get(id) else { return nil }
        return (job, job.jsonBytes)
    }

    /// A store without a cache of its own (or one another process also writes) has nothing current in memory.
    public func cachedRendering(bits: UInt128) -> JobRendering? { nil }
    public var keepsRenderings: Bool { false }
}
