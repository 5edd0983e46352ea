// Jobs.ShardedJobStore: one JobStore over K stores (K PostgreSQL databases), each job on
// the shard its id hashes to (ShardRouter). What each call does:
// - A new job: the store picks the shard first (the Idempotency-Key's home shard, or a
//   random one without a key) and, inside that shard's transaction, makes ids until one
//   hashes there (K tries on average). The job and its key commit in one transaction on one
//   database, as on an unsharded store.
// - One job (get, update): its own shard. A key given with a change is checked on the other
//   shards first, then recorded with the change on the job's shard.
// - Lists: every shard's first page after its own position (ShardPositions), merged by id;
//   the page's positions say where each shard stands. Totals are summed.
// - Sweeps and the scheduler's reads: every shard's answer, merged in the order asked.
// - `updateMany`: one transaction per shard (a change across shards is not atomic; each
//   job's change is, which is what its callers need: each job is changed on its own merits).
// Two first uses of one key for different requests on different shards at the same moment
// can both succeed; the same request twice cannot (both go to the key's home shard). See
// docs/adr/0012-sharded-job-tables.md.
import SpoolModel

public final class ShardedJobStore: JobStore {
    public let shards: [any JobStore]
    public let router: ShardRouter

    public init(shards: [any JobStore], router: ShardRouter) {
        precondition(shards.count == router.shardCount, "one store per shard")
        self.shards = shards
        self.router = router
    }

    /// The largest `offset` a list takes (each shard is read from its start up to it).
    public static let maxOffset = 10_000

    public func migrate() async throws {
        for s in shards { try await s.migrate() }
    }

    // MARK: One job

    public func insert(claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                       make: @escaping @Sendable () -> Job, render: @escaping @Sendable (Job) -> [UInt8]) async throws -> IdempotentOutcome {
        let at = UInt64(max(now, 0))
        let target: Int
        if let claim {
            target = router.shard(tenant: claim.tenant, key: claim.key, at: at)
            if let stored = try await storedElsewhere(claim, except: target, now: now, retention: retentionMilliseconds) {
                return .replayed(try claim.replay(of: stored))
            }
        } else {
            target = Int.random(in: 0..<router.count(at: at))
        }
        let router = self.router
        // Layout counts never shrink, so each try lands on `target` with odds of at least 1/K.
        let tries = 64 * router.shardCount
        return try await shards[target].insert(claim: claim, status: status, now: now, retentionMilliseconds: retentionMilliseconds, make: {
            var job = make()
            var n = 1
            while router.shard(of: job.id) != target && n < tries {
                job = make()
                n += 1
            }
            return job
        }, render: render)
    }

    public func lookup(tenant: String, key: String, now: Int64, retentionMilliseconds: Int64) async throws -> StoredResponse? {
        let home = router.shard(tenant: tenant, key: key, at: UInt64(max(now, 0)))
        if let r = try await shards[home].lookup(tenant: tenant, key: key, now: now, retentionMilliseconds: retentionMilliseconds) { return r }
        for i in shards.indices where i != home {
            if let r = try await shards[i].lookup(tenant: tenant, key: key, now: now, retentionMilliseconds: retentionMilliseconds) { return r }
        }
        return nil
    }

    /// The live record of `claim`'s key on a shard other than `except`.
    private func storedElsewhere(_ claim: IdempotencyClaim, except: Int, now: Int64, retention: Int64) async throws -> StoredResponse? {
        for i in shards.indices where i != except {
            if let r = try await shards[i].lookup(tenant: claim.tenant, key: claim.key, now: now, retentionMilliseconds: retention) { return r }
        }
        return nil
    }

    public func get(_ id: JobID) async throws -> Job? {
        try await shards[router.shard(of: id)].get(id)
    }

    public func representation(_ id: JobID) async throws -> (job: Job, json: [UInt8])? {
        try await shards[router.shard(of: id)].representation(id)
    }

    public func update(_ id: JobID, claim: IdempotencyClaim?, status: Int, now: Int64, retentionMilliseconds: Int64,
                       render: (@Sendable (Job) -> [UInt8])?, _ change: @escaping @Sendable (inout Job) throws -> Void) async throws -> IdempotentOutcome {
        let home = router.shard(of: id)
        if let claim, let stored = try await storedElsewhere(claim, except: home, now: now, retention: retentionMilliseconds) {
            return .replayed(try claim.replay(of: stored))
        }
        return try await shards[home].update(id, claim: claim, status: status, now: now, retentionMilliseconds: retentionMilliseconds,
                                             render: render, change)
    }

    public func updateMany(_ ids: [JobID], _ change: @escaping @Sendable (inout Job) -> Bool) async throws -> [Job] {
        var byShard: [Int: [JobID]] = [:]
        for id in ids { byShard[router.shard(of: id), default: []].append(id) }
        var changed: [Job] = []
        for (shard, group) in byShard.sorted(by: { $0.key < $1.key }) {
            changed += try await shards[shard].updateMany(group, change)
        }
        return changed
    }

    // MARK: Lists

    public func list(_ q: JobQuery) async throws -> JobPage {
        var start: [JobID?]
        if let p = q.positions {
            guard p.ids.count <= shards.count else {
                throw ModelError(.badRequest, "the cursor names \(p.ids.count) shards; there are \(shards.count)")
            }
            // A shard added since the cursor was made starts from its beginning.
            start = p.ids + Array(repeating: nil, count: shards.count - p.ids.count)
        } else {
            start = Array(repeating: q.after, count: shards.count)
        }
        guard q.offset <= Self.maxOffset else {
            throw ModelError(.validationFailed, "offset past \(Self.maxOffset) is not served by a sharded job store; page with the cursor",
                             details: [("offset", "at most \(Self.maxOffset) here; use cursor")])
        }
        let perShard = q.offset + q.limit
        let from = start
        let pages = try await eachShard { i, store in
            try await store.list(JobQuery(tenant: q.tenant, state: q.state, after: from[i], offset: 0, limit: perShard, newestFirst: q.newestFirst))
        }
        var merged: [(shard: Int, job: Job)] = []
        for (i, page) in pages.enumerated() { merged += page.jobs.map { (i, $0) } }
        merged.sort { q.newestFirst ? $0.job.id > $1.job.id : $0.job.id < $1.job.id }
        let window = merged.dropFirst(q.offset).prefix(q.limit)
        // Each shard's place moves to the last job it gave to the client (skipped ones too).
        for (shard, job) in merged.prefix(q.offset + q.limit) { start[shard] = job.id }
        let more = merged.count > q.offset + q.limit || pages.contains(where: \.hasMore)
        return JobPage(jobs: window.map(\.job), totalCount: pages.reduce(0) { $0 + $1.totalCount }, hasMore: more,
                       positions: ShardPositions(ids: start))
    }

    public func idsDueForExpiry(now: Int64, limit: Int) async throws -> [JobID] {
        // Each shard's earliest first; the sweep takes `limit` of them and comes back for more.
        Array(try await eachShard { _, s in try await s.idsDueForExpiry(now: now, limit: limit) }.joined().prefix(limit))
    }

    public func idsDueForRetry(now: Int64, limit: Int) async throws -> [JobID] {
        Array(try await eachShard { _, s in try await s.idsDueForRetry(now: now, limit: limit) }.joined().prefix(limit))
    }

    public func purgeIdempotencyKeys(createdBefore before: Int64) async throws -> Int {
        try await eachShard { _, s in try await s.purgeIdempotencyKeys(createdBefore: before) }.reduce(0, +)
    }

    public func countsByState() async throws -> [JobState: Int] {
        var out: [JobState: Int] = [:]
        for counts in try await eachShard({ _, s in try await s.countsByState() }) {
            out.merge(counts, uniquingKeysWith: +)
        }
        return out
    }

    public func pendingByTenant(limitPerTenant: Int) async throws -> [PendingJob] {
        let all = try await eachShard { _, s in try await s.pendingByTenant(limitPerTenant: limitPerTenant) }.joined()
        var byTenant: [String: [PendingJob]] = [:]
        for p in all { byTenant[p.tenant, default: []].append(p) }
        var out: [PendingJob] = []
        for tenant in byTenant.keys.sorted() {
            let ranked = byTenant[tenant]!.sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.id < $1.id }
            out += ranked.prefix(limitPerTenant)
        }
        return out
    }

    public func leasedJobs(engine: EngineID) async throws -> [Job] {
        try await eachShard { _, s in try await s.leasedJobs(engine: engine) }.joined().sorted { $0.id < $1.id }
    }

    public func finishedWithWebhook(after: FinishedPosition, through: Int64, limit: Int) async throws -> [Job] {
        let all = try await eachShard { _, s in try await s.finishedWithWebhook(after: after, through: through, limit: limit) }.joined()
        return Array(all.sorted { ($0.updatedAt, $0.id.text) < ($1.updatedAt, $1.id.text) }.prefix(limit))
    }

    /// `body` on every shard at once; the answers in shard order.
    private func eachShard<T: Sendable>(_ body: @escaping @Sendable (Int, any JobStore) async throws -> T) async throws -> [T] {
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            for (i, s) in shards.enumerated() { group.addTask { (i, try await body(i, s)) } }
            var out = [T?](repeating: nil, count: shards.count)
            for try await (i, r) in group { out[i] = r }
            return out.map { $0! }
        }
    }
}
