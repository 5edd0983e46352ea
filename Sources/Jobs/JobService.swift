// Jobs.JobService: what the API and (later) the engines do to jobs. Every change is one
// store transaction, committed before the call returns; its event is published after the
// commit. The rules live here: the transition table (SpoolModel.JobState), the hooks on
// entering a state (entering `failed` counts the attempt and, while attempts remain, moves
// on to `retrying` with exponential backoff), lease epochs, Idempotency-Key replays.
// Sweeps (JobService+Sweeps.swift) expire pending jobs, make due retries pending again
// and purge old keys.
import Events
import JSON
import Synchronization
import SpoolModel
import Threads

/// What the owner of a JobService wants to hear after commits (see `JobService.hooks`).
public struct JobHooks: Sendable {
    public var onPending: @Sendable ([Job]) async -> Void
    public var onDead: @Sendable (Job) async -> Void
    public init(onPending: @escaping @Sendable ([Job]) async -> Void = { _ in }, onDead: @escaping @Sendable (Job) async -> Void = { _ in }) {
        self.onPending = onPending; self.onDead = onDead
    }
}

public final class JobService: Sendable {
    public let store: any JobStore
    public let events: any EventBus
    let clock: any ServiceClock
    let settings: @Sendable () -> JobSettings
    /// The millisecond part of the last id made: ids strictly increase in commit order (they
    /// are made inside the write transaction), so keyset pages never skip a job inserted
    /// while a client pages. Under a burst of more than one job per millisecond the id's
    /// time runs slightly ahead of the clock.
    private let lastIDMilliseconds = Mutex<UInt64>(0)

    /// Told, after the commit, of every job that became pending (created, retry due, lease
    /// lost, given back): the dispatcher publishes it on the job queue. Jobs that finished
    /// for good (failed with no attempt left) go to `onDead`.
    let hooks: JobHooks

    public init(store: any JobStore, events: any EventBus, clock: any ServiceClock, settings: @escaping @Sendable () -> JobSettings,
                hooks: JobHooks = JobHooks()) {
        self.store = store
        self.events = events
        self.clock = clock
        self.settings = settings
        self.hooks = hooks
    }

    /// Applies the store's migrations and continues ids after the newest stored one.
    public func migrate() async throws {
        try await store.migrate()
        if let newest = try await store.list(JobQuery(limit: 1, newestFirst: true)).jobs.first {
            lastIDMilliseconds.withLock { $0 = max($0, newest.id.milliseconds) }
        }
    }

    func makeID(now: Int64) -> JobID {
        let ms = lastIDMilliseconds.withLock { last -> UInt64 in
            last = max(UInt64(max(now, 0)), last + 1)
            return last
        }
        var rng = SystemRandomNumberGenerator()
        return JobID.generate(milliseconds: ms, using: &rng)
    }

    // MARK: Submit

    /// Creates a job, or replays the first answer given under `idempotencyKey`. In one write
    /// transaction: a live key with the same `requestHash` replays its stored (status, body);
    /// with another hash it is `idempotencyKeyReused` (422); otherwise the job and the key,
    /// holding `render(job)` as the 201's body, are stored. JobCreated is published after the commit.
    public func submit(tenant: String, spec: JobSpec, idempotencyKey: String?, requestHash: String,
                       render: @escaping @Sendable (Job) -> [UInt8]) async throws -> IdempotentOutcome {
        let s = settings()
        let now = clock.unixMilliseconds
        let claim = idempotencyKey.map { IdempotencyClaim(tenant: tenant, key: $0, requestHash: requestHash) }
        let ttl = spec.ttlSeconds ?? s.defaultTTLSeconds
        let outcome = try await store.insert(claim: claim, status: 201, now: now, retentionMilliseconds: s.idempotencyRetentionSeconds * 1000,
                                             make: { [self] in
            var job = Job(id: makeID(now: now), tenant: tenant, priority: spec.priority, inputFileID: spec.inputFileID, outputs: spec.outputs,
                requiredCapabilities: spec.requiredCapabilities, webhookURL: spec.webhookURL, ttlSeconds: ttl, metadata: spec.metadata,
                measureQuality: spec.measureQuality,
                createdAt: now, updatedAt: now, expiresAt: now + ttl * 1000, attempts: 0, maxAttempts: spec.maxAttempts ?? s.maxAttempts,
                state: .pending, reason: nil, progress: 0, leaseEpoch: 0, engineID: nil, nextAttemptAt: nil, result: nil)
            job.limits = spec.limits
            return job
        }, render: render)
        if case .done(let job, _) = outcome {
            await publish(job, .jobCreated)
            await hooks.onPending([job])
        }
        return outcome
    }

    /// The answer stored under (tenant, key) when `requestHash` matches; nil when the key is
    /// unused or expired; `idempotencyKeyReused` when it was used for another request. A
    /// read-only fast path: `submit` decides again inside its transaction.
    public func replay(tenant: String, idempotencyKey: String, requestHash: String) async throws -> StoredResponse? {
        let s = settings()
        guard let stored = try await store.lookup(tenant: tenant, key: idempotencyKey, now: clock.unixMilliseconds,
                                                  retentionMilliseconds: s.idempotencyRetentionSeconds * 1000) else { return nil }
        guard stored.requestHash == requestHash else {
            throw ModelError(.idempotencyKeyReused, "this Idempotency-Key was used with a different request",
                             details: [("Idempotency-Key", "used before with a different request")])
        }
        return stored
    }

    // MARK: Reads

    public func get(_ id: JobID) async throws -> Job? { try await store.get(id) }

    /// The job and its JSON when `tenant` may see it (nil: any tenant); 404 otherwise.
    public func representation(_ id: JobID, visibleTo tenant: String?) async throws -> (job: Job, json: [UInt8]) {
        guard let r = try await store.representation(id), tenant.map({ $0 == r.job.tenant }) ?? true else {
            throw ModelError(.notFound, "no job \(id.text)")
        }
        return r
    }

    /// Whether `cachedRendering(bits:visibleTo:)` can ever answer (the store keeps them).
    public var keepsRenderings: Bool { store.keepsRenderings }

    /// The job's JSON from memory only (`JobStore.cachedRendering`): nil when the store
    /// holds no current rendering, or when `tenant` may not see the job (the caller then
    /// asks `representation`, which says 404). By the id's bits (`JobID.bits(of:)`), so a
    /// caller holding the id as bytes makes no String.
    public func cachedRendering(bits: UInt128, visibleTo tenant: String?) -> JobRendering? {
        guard let r = store.cachedRendering(bits: bits), tenant.map({ $0 == r.tenant }) ?? true else { return nil }
        return r
    }

    /// The job when `tenant` may see it (nil: any tenant); 404 otherwise.
    public func get(_ id: JobID, visibleTo tenant: String?) async throws -> Job {
        guard let job = try await store.get(id), tenant.map({ $0 == job.tenant }) ?? true else {
            throw ModelError(.notFound, "no job \(id.text)")
        }
        return job
    }

    /// A page of jobs by id, with the count of all jobs matching the filters.
    public func list(_ query: JobQuery) async throws -> JobPage { try await store.list(query) }

    public func countsByState() async throws -> [JobState: Int] { try await store.countsByState() }
    /// Jobs finished for good with a webhook URL, for the webhook outbox (JobStore.finishedWithWebhook).
    public func finishedWithWebhook(after: FinishedPosition, through: Int64, limit: Int) async throws -> [Job] {
        try await store.finishedWithWebhook(after: after, through: through, limit: limit)
    }

    // MARK: Changes

    /// Cancels a job (409 `invalid_transition` when it is completed, failed or cancelled).
    public func cancel(_ id: JobID, reason: String = "cancelled") async throws -> Job {
        try await transition(id, to: .cancelled, reason: reason)
    }

    /// A failed job back to pending (failed → retrying → pending) with a fresh TTL. With a
    /// claim, idempotent as `submit` is: the first answer (`render(job)`, status 200) replays.
    public func retry(_ id: JobID, claim: IdempotencyClaim? = nil, render: (@Sendable (Job) -> [UInt8])? = nil) async throws -> IdempotentOutcome {
        let now = clock.unixMilliseconds
        let s = settings()
        let outcome = try await store.update(id, claim: claim, status: 200, now: now, retentionMilliseconds: s.idempotencyRetentionSeconds * 1000,
                                             render: render) { job in
            _ = try job.state.move(to: .retrying)
            job.state = try JobState.retrying.move(to: .pending)
            job.reason = nil
            job.progress = 0
            job.engineID = nil
            job.nextAttemptAt = nil
            job.expiresAt = now + job.ttlSeconds * 1000
            job.updatedAt = max(now, job.updatedAt + 1)
        }
        if case .done(let job, _) = outcome {
            await publish(job, .jobStateChanged)
            await hooks.onPending([job])
        }
        return outcome
    }

    /// Moves a job along the transition table (409 `invalid_transition` otherwise; 409
    /// `stale_lease` when `leaseEpoch` is older than the job's, for a move to `assigned` when
    /// it is not exactly the job's (the scheduler's fence: the epoch it read the job pending
    /// at), or, with `holder`, when the
    /// job is not leased to that engine under exactly that epoch: an engine's reports). A move to `transcoding` of a
    /// job already transcoding with `progress` is a progress report. Entering `assigned`
    /// starts a new lease epoch for `engineID`; entering `failed` counts the attempt and moves
    /// on to `retrying` (backoff doubling from retry_backoff_seconds, with jitter) while attempts remain
    /// and the reason is not `expired`; `completed` stores `result`.
    @discardableResult
    public func transition(_ id: JobID, to target: JobState, reason: String? = nil, leaseEpoch: Int64? = nil,
                           progress: Double? = nil, engineID: EngineID? = nil, result: JobResult? = nil,
                           detail: ProgressDetail? = nil, holder: EngineID? = nil) async throws -> Job {
        let now = clock.unixMilliseconds
        let s = settings()
        if let p = progress, !(p.isFinite && p >= 0 && p <= 100) { throw ModelError.invalidField("progress", "must be a number from 0 to 100") }
        let before = StateBox()
        let outcome = try await store.update(id, claim: nil, status: 200, now: now, retentionMilliseconds: 0, render: nil) { job in
            before.set(job.state, job.progress)
            if let holder {
                // Fencing, inside the transaction: only the engine holding the lease, under its epoch.
                guard job.engineID == holder, job.leaseEpoch == leaseEpoch, job.state.isLeased else {
                    throw ModelError(.staleLease, "job \(job.id.text) is not held by engine \(holder.text) under lease epoch \(leaseEpoch.map(String.init) ?? "?") (now: \(job.state.rawValue), epoch \(job.leaseEpoch))",
                                     details: [("lease_epoch", String(job.leaseEpoch))])
                }
            }
            try JobService.apply(&job, to: target, reason: reason, leaseEpoch: leaseEpoch, progress: progress, engineID: engineID,
                                 result: result, now: now, settings: s)
        }
        guard case .done(let job, _) = outcome else { preconditionFailure("an update without a claim never replays") }
        let (oldState, _) = before.get()
        let type: EventType
        switch job.state {
        case _ where oldState == job.state && job.state == .transcoding: type = .progressUpdated
        case .assigned: type = .jobAssigned
        case .transcoding: type = .transcodingStarted
        case .completed, .cancelled, .failed: type = .jobFinished
        default: type = .jobStateChanged
        }
        await publish(job, type, detail: detail)
        if job.state == .pending && oldState != .pending { await hooks.onPending([job]) }
        if job.state == .failed && job.reason != "expired" { await hooks.onDead(job) }
        return job
    }

    /// An engine's completion: through transcoding and completing to completed, each step
    /// fenced by the engine and its lease epoch.
    public func complete(_ id: JobID, engine: EngineID, leaseEpoch: Int64, result: JobResult) async throws -> Job {
        var current = try await get(id, visibleTo: nil)
        if current.state == .assigned {
            current = try await transition(id, to: .transcoding, leaseEpoch: leaseEpoch, progress: 100, holder: engine)
        }
        if current.state == .transcoding {
            current = try await transition(id, to: .completing, leaseEpoch: leaseEpoch, progress: 100, holder: engine)
        }
        return try await transition(id, to: .completed, leaseEpoch: leaseEpoch, result: result, holder: engine)
    }

    static func apply(_ job: inout Job, to target: JobState, reason: String?, leaseEpoch: Int64?, progress: Double?,
                      engineID: EngineID?, result: JobResult?, now: Int64, settings s: JobSettings) throws(ModelError) {
        if let e = leaseEpoch, target == .assigned, e != job.leaseEpoch {
            // The assigner's fence: it read the job pending at epoch e; since then another
            // scheduler (a dispatcher that paused past its queue lease, say) leased it.
            throw ModelError(.staleLease, "job \(job.id.text) was read pending at lease epoch \(e) but is at epoch \(job.leaseEpoch) now: another scheduler leased it meanwhile",
                             details: [("lease_epoch", String(job.leaseEpoch))])
        }
        if let e = leaseEpoch, target != .assigned, e < job.leaseEpoch {
            throw ModelError(.staleLease, "lease epoch \(e) is older than the job's (\(job.leaseEpoch)): the job was leased again",
                             details: [("lease_epoch", "older than \(job.leaseEpoch)")])
        }
        job.updatedAt = max(now, job.updatedAt + 1)
        if target == .transcoding && job.state == .transcoding, let progress {
            job.progress = progress
            return
        }
        let from = job.state
        job.state = try from.move(to: target)
        switch target {
        case .assigned:
            job.leaseEpoch += 1
            job.engineID = engineID
            job.progress = 0
            job.reason = nil
        case .transcoding:
            job.progress = progress ?? 0
        case .completing:
            if let progress { job.progress = progress }
        case .completed:
            job.progress = 100
            job.result = result
            job.reason = nil
        case .pending:
            // A lost lease (from a leased state) or a due retry.
            job.engineID = nil
            job.progress = 0
            job.reason = reason
            if from == .retrying { job.nextAttemptAt = nil; job.expiresAt = now + job.ttlSeconds * 1000 }
        case .cancelled:
            job.reason = reason ?? "cancelled"
            job.nextAttemptAt = nil
        case .failed:
            job.attempts += 1
            job.reason = reason ?? "failed"
            job.engineID = nil
            if job.reason != "expired" && job.attempts < job.maxAttempts {
                job.state = try JobState.failed.move(to: .retrying)
                var rng = SystemRandomNumberGenerator()
                job.nextAttemptAt = now + s.retryWait(afterFailures: job.attempts, using: &rng)
            }
        case .retrying:
            break
        }
    }

    func publish(_ job: Job, _ type: EventType, detail: ProgressDetail? = nil) async {
        // Never below its update time's id: updated_at can run ahead of the clock (two
        // changes in one millisecond), and a stream that says a finished job's end from the
        // record alone uses that id (JobRoutes).
        await events.publish(subject: job.id.text, type: type, notBelow: Event.firstID(atUnixMilliseconds: job.updatedAt)) { w in
            Self.writeEventPayload(job, detail: detail, into: &w)
        }
    }

    /// The event payload: {"job_id","state","progress","reason","attempts","lease_epoch","engine_id","updated_at"}.
    /// With `detail` (progress reports), also "fps", "speed" and "eta_seconds". Public for an
    /// event stream that says a finished job's end when the bus no longer holds its event.
    public static func eventPayload(_ job: Job) -> String {
        var w = JSONWriter()
        writeEventPayload(job, detail: nil, into: &w)
        return w.text
    }

    static func writeEventPayload(_ job: Job, detail: ProgressDetail?, into w: inout JSONWriter<[UInt8]>) {
        w.beginObject()
        w.field("job_id", job.id.text)
        w.field("state", job.state.rawValue)
        w.field("progress", job.progress)
        w.key("reason"); job.reason.encode(to: &w)
        w.field("attempts", job.attempts)
        w.field("lease_epoch", job.leaseEpoch)
        w.key("engine_id"); job.engineID.map(\.text).encode(to: &w)
        w.key("next_attempt_at"); job.nextAttemptAt.map(RFC3339.format).encode(to: &w)
        w.field("updated_at", RFC3339.format(job.updatedAt))
        if let detail {
            w.field("fps", detail.fps)
            w.field("speed", detail.speed)
            w.key("eta_seconds"); if let eta = detail.etaSeconds { w.double(eta) } else { w.null() }
        }
        w.endObject()
    }
}

/// How fast an engine is going, as its progress report says (carried by the event, not stored).
public struct ProgressDetail: Sendable, Equatable {
    public var fps: Double
    public var speed: Double
    public var etaSeconds: Double?
    public init(fps: Double, speed: Double, etaSeconds: Double?) {
        self.fps = fps.isFinite ? max(0, fps) : 0
        self.speed = speed.isFinite ? max(0, speed) : 0
        self.etaSeconds = etaSeconds.flatMap { $0.isFinite && $0 >= 0 ? $0 : nil }
    }
}

/// The state a job had when a transaction read it (written inside the transaction, read
/// after it returned: never concurrently).
final class StateBox: Sendable {
    private let value = Mutex<(JobState, Double)>((.pending, 0))
    func set(_ s: JobState, _ p: Double) { value.withLock { $0 = (s, p) } }
    func get() -> (JobState, Double) { value.withLock { $0 } }
}
