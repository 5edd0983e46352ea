// JobsTests.JobServiceTests: the service over a real SQLite file with a manual clock (and,
// through PostgresJobServiceTests, over PostgreSQL):
// transition hooks and lease epochs, retry backoff, idempotent submission (replay bytes,
// a reused key, 50 concurrent duplicates, retention), keyset pagination while inserting,
// expiry, and events published after the commit.
import Events
import Foundation
@testable import Jobs
import Persistence
import SpoolModel
import Threads
import XCTest

class JobServiceTests: XCTestCase {
    var dir: String!
    var clock: ManualClock!
    var bus: InProcessEventBus!
    var service: JobService!
    var db: SQLiteDatabase?
    var settings = JobSettings()

    override func setUp() async throws {
        dir = NSTemporaryDirectory() + "spool-jobs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try await open()
    }

    /// The store under test, opened again on each call (a restart): SQLite here;
    /// PostgresJobServiceTests runs every test on PostgreSQL.
    func makeStore() async throws -> any JobStore {
        // The old database lets go of its file (and lock) first. Dropping the last
        // reference is not enough: a blocking-pool thread may still hold a finished closure
        // that captured the store for a moment after its caller resumed.
        try await db?.close()
        let db = try SQLiteDatabase(path: dir + "/spool.sqlite")
        self.db = db
        return SQLiteJobStore(database: db)
    }

    func open() async throws {
        clock = ManualClock()
        bus = InProcessEventBus(replayWindow: { 100 })
        service = nil
        let store = try await makeStore()
        let s = settings
        service = JobService(store: store, events: bus, clock: clock, settings: { s })
        try await service.migrate()
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    static let file = FileID("file_01J00000000000000000000000")!

    func spec(ttl: Int64? = nil, maxAttempts: Int? = nil) -> JobSpec {
        var s = JobSpec(inputFileID: Self.file, outputs: .preset("h264-720p"))
        s.ttlSeconds = ttl
        s.maxAttempts = maxAttempts
        return s
    }

    @discardableResult
    func submit(_ key: String? = nil, tenant: String = "acme", hash: String = "h", spec: JobSpec? = nil) async throws -> Job {
        guard case .done(let job, _) = try await service.submit(tenant: tenant, spec: spec ?? self.spec(), idempotencyKey: key,
                                                                requestHash: hash, render: { $0.jsonBytes }) else {
            throw XCTSkip("replayed")
        }
        return job
    }

    /// The bodies of the outcomes that made a job and of those that replayed one.
    static func tally(_ outcomes: [IdempotentOutcome]) -> (created: [[UInt8]], replayed: [[UInt8]]) {
        var created: [[UInt8]] = [], replayed: [[UInt8]] = []
        for o in outcomes {
            switch o {
            case .done(_, let body): created.append(body)
            case .replayed(let s): replayed.append(s.body)
            }
        }
        return (created, replayed)
    }

    func assertModelError(_ code: ModelError.Code, _ body: () async throws -> Void, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await body()
            XCTFail("expected \(code)", file: file, line: line)
        } catch let e as ModelError {
            XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

    // MARK: Transitions

    func testTransitionHooksLeaseEpochsAndTheTable() async throws {
        let job = try await submit()
        XCTAssertEqual(job.state, .pending)
        XCTAssertEqual(job.attempts, 0)
        XCTAssertEqual(job.expiresAt, job.createdAt + 86_400_000)
        let engine = EngineID("eng_01J00000000000000000000000")!

        // Illegal moves are refused and change nothing.
        await assertModelError(.invalidTransition) { try await self.service.transition(job.id, to: .completed) }
        let v1 = try await service.get(job.id)?.state
        XCTAssertEqual(v1, .pending)

        let assigned = try await service.transition(job.id, to: .assigned, engineID: engine)
        XCTAssertEqual(assigned.leaseEpoch, 1)
        XCTAssertEqual(assigned.engineID, engine)
        XCTAssertGreaterThan(assigned.updatedAt, job.updatedAt, "every change moves the update time")
        let started = try await service.transition(job.id, to: .transcoding, leaseEpoch: 1, progress: 0)
        XCTAssertEqual(started.state, .transcoding)
        let progressed = try await service.transition(job.id, to: .transcoding, leaseEpoch: 1, progress: 42.5)
        XCTAssertEqual(progressed.progress, 42.5)
        await assertModelError(.validationFailed) { try await self.service.transition(job.id, to: .transcoding, leaseEpoch: 1, progress: 101) }

        // The lease is lost and the job leased again: the old engine's reports are stale.
        _ = try await service.transition(job.id, to: .pending, reason: "lease_lost", leaseEpoch: 1)
        // A scheduler that read the job pending before its first lease (epoch 0) and wakes
        // now (a dispatcher paused past its queue lease) is fenced off, though the job is
        // pending again; the one that read it at epoch 1 assigns it.
        await assertModelError(.staleLease) { try await self.service.transition(job.id, to: .assigned, leaseEpoch: 0, engineID: engine) }
        let stillPending = try await service.get(job.id)
        XCTAssertEqual(stillPending?.state, .pending)
        XCTAssertEqual(stillPending?.leaseEpoch, 1)
        _ = try await service.transition(job.id, to: .assigned, leaseEpoch: 1, engineID: engine)
        await assertModelError(.staleLease) { try await self.service.transition(job.id, to: .transcoding, leaseEpoch: 1) }
        _ = try await service.transition(job.id, to: .transcoding, leaseEpoch: 2)
        _ = try await service.transition(job.id, to: .completing, leaseEpoch: 2)
        let result = JobResult(outputs: [JobResultOutput(fileID: Self.file, url: "/api/v1/files/\(Self.file.text)")], qualityReport: #"{"vmaf":93.5}"#)
        let done = try await service.transition(job.id, to: .completed, leaseEpoch: 2, result: result)
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(done.progress, 100)
        let v2 = try await service.get(job.id)?.result
        XCTAssertEqual(v2, result, "the result is stored and read back")
        await assertModelError(.invalidTransition) { _ = try await self.service.cancel(job.id) }
    }

    /// Entering failed counts the attempt and retries with doubling backoff up to the cap,
    /// until the attempts run out; the sweep makes a due retry pending, not before.
    func testFailureRetriesWithBackoffUntilAttemptsRunOut() async throws {
        settings.retryBackoffSeconds = 5
        settings.retryBackoffMaxSeconds = 12
        settings.retryJitter = 0   // exact waits here; the jitter has its own test
        try await open()
        let job = try await submit(spec: spec(maxAttempts: 4))
        var expectedWaits: [Int64] = [5_000, 10_000, 12_000]
        for attempt in 1...4 {
            let now = clock.unixMilliseconds
            _ = try await service.transition(job.id, to: .assigned)
            let failed = try await service.transition(job.id, to: .failed, reason: "encoder crashed")
            XCTAssertEqual(failed.attempts, attempt)
            XCTAssertEqual(failed.reason, "encoder crashed")
            if attempt == 4 {
                XCTAssertEqual(failed.state, .failed, "no attempt left")
                XCTAssertNil(failed.nextAttemptAt)
                break
            }
            XCTAssertEqual(failed.state, .retrying)
            let wait = expectedWaits.removeFirst()
            XCTAssertEqual(failed.nextAttemptAt, now + wait)
            let v3 = try await service.sweepOnce(now: now + wait - 1).retried
            XCTAssertEqual(v3, 0, "not before the backoff is over")
            let v4 = try await service.get(job.id)?.state
            XCTAssertEqual(v4, .retrying)
            let v5 = try await service.sweepOnce(now: now + wait).retried
            XCTAssertEqual(v5, 1)
            let v6 = try await service.get(job.id)?.state
            XCTAssertEqual(v6, .pending)
        }
        // An explicit retry of the finally failed job makes it pending again.
        guard case .done(let again, _) = try await service.retry(job.id) else { return XCTFail() }
        XCTAssertEqual(again.state, .pending)
        await assertModelError(.invalidTransition) { _ = try await self.service.retry(job.id) }
    }

    // MARK: Idempotency

    func testReplayReturnsTheSameBytesAndAReusedKeyIs422() async throws {
        let first = try await service.submit(tenant: "acme", spec: spec(), idempotencyKey: "k1", requestHash: "aaa", render: { $0.jsonBytes })
        guard case .done(let job, let body) = first else { return XCTFail("first submit replayed") }
        XCTAssertEqual(body, job.jsonBytes)
        clock.advance(by: .seconds(10))   // a later answer would show another updated_at
        let second = try await service.submit(tenant: "acme", spec: spec(), idempotencyKey: "k1", requestHash: "aaa", render: { $0.jsonBytes })
        guard case .replayed(let stored) = second else { return XCTFail("second submit created a job") }
        XCTAssertEqual(stored.body, body)
        XCTAssertEqual(stored.status, 201)
        XCTAssertEqual(stored.jobID, job.id.text)
        await assertModelError(.idempotencyKeyReused) {
            _ = try await self.service.submit(tenant: "acme", spec: self.spec(), idempotencyKey: "k1", requestHash: "bbb", render: { $0.jsonBytes })
        }
        // Keys belong to a tenant: another tenant's same key is a new request.
        let other = try await service.submit(tenant: "globex", spec: spec(), idempotencyKey: "k1", requestHash: "bbb", render: { $0.jsonBytes })
        guard case .done = other else { return XCTFail("another tenant's key replayed") }
        let v7 = try await service.list(JobQuery()).totalCount
        XCTAssertEqual(v7, 2)
    }

    func testFiftyConcurrentDuplicatesCreateOneJob() async throws {
        let service = self.service!
        let spec = self.spec()
        let outcomes = try await withThrowingTaskGroup(of: IdempotentOutcome.self) { group in
            for _ in 0..<50 {
                group.addTask { try await service.submit(tenant: "acme", spec: spec, idempotencyKey: "same", requestHash: "h", render: { $0.jsonBytes }) }
            }
            var all: [IdempotentOutcome] = []
            for try await o in group { all.append(o) }
            return all
        }
        let (created, replayed) = Self.tally(outcomes)
        XCTAssertEqual(created.count, 1)
        XCTAssertEqual(replayed.count, 49)
        XCTAssertTrue(replayed.allSatisfy { $0 == created[0] }, "every duplicate answers the first response's bytes")
        let v8 = try await service.list(JobQuery()).totalCount
        XCTAssertEqual(v8, 1)
        let only = try await service.list(JobQuery()).jobs[0]
        XCTAssertEqual(bus.retained(subject: only.id.text).map(\.type), [.jobCreated])
    }

    func testKeysExpireAfterTheRetentionAndArePurged() async throws {
        settings.idempotencyRetentionSeconds = 60
        try await open()
        let start = clock.unixMilliseconds
        try await submit("k", hash: "one")
        let v9 = try await service.sweepOnce(now: start + 59_000).purgedKeys
        XCTAssertEqual(v9, 0)
        clock.advance(by: .seconds(61))
        // Past the retention the key is free, even before the sweep purged it.
        let again = try await service.submit(tenant: "acme", spec: spec(), idempotencyKey: "k", requestHash: "two", render: { $0.jsonBytes })
        guard case .done = again else { return XCTFail("an expired key replayed") }
        let v10 = try await service.sweepOnce(now: start + 61_000).purgedKeys
        XCTAssertEqual(v10, 0, "the renewed record is young")
        let v11 = try await service.sweepOnce(now: start + 200_000).purgedKeys
        XCTAssertEqual(v11, 1)
        let v12 = try await service.replay(tenant: "acme", idempotencyKey: "k", requestHash: "two")
        XCTAssertNil(v12)
    }

    // MARK: Listing

    func testKeysetPagesStayStableWhileJobsAreInserted() async throws {
        var originals: [JobID] = []
        for _ in 0..<25 { originals.append(try await submit().id) }
        XCTAssertEqual(originals, originals.sorted(), "ids sort in creation order")
        var seen: [JobID] = []
        var after: JobID?
        var inserted: [JobID] = []
        repeat {
            let page = try await service.list(JobQuery(after: after, limit: 10))
            seen += page.jobs.map(\.id)
            after = page.hasMore ? page.jobs.last?.id : nil
            // Others insert between pages (in the same millisecond too).
            for _ in 0..<3 where inserted.count < 9 { inserted.append(try await submit(tenant: "other").id) }
        } while after != nil
        XCTAssertEqual(seen, originals + inserted, "no job skipped or repeated; new ones come after")
        let offsetPage = try await service.list(JobQuery(tenant: "acme", offset: 20, limit: 10))
        XCTAssertEqual(offsetPage.jobs.map(\.id), Array(originals[20...]))
        XCTAssertEqual(offsetPage.totalCount, 25)
        XCTAssertFalse(offsetPage.hasMore)
        let cancelled = try await service.cancel(originals[3])
        let byState = try await service.list(JobQuery(state: .cancelled))
        XCTAssertEqual(byState.jobs.map(\.id), [cancelled.id])
        let v13 = try await service.countsByState()
        XCTAssertEqual(v13, [.pending: 33, .cancelled: 1])
    }

    // MARK: Expiry

    /// A job's events are never below the id its update time stands for, even when two
    /// changes in one millisecond put updated_at ahead of the clock: an event stream that
    /// says a finished job's end from the record alone gives it that id, and a client that
    /// saw the real JobFinished must not be sent another (an outside probe saw it twice).
    func testAJobsEventsAreNeverBelowItsUpdateTime() async throws {
        let job = try await submit()
        let cancelled = try await service.cancel(job.id)   // the same millisecond on the manual clock
        XCTAssertGreaterThan(cancelled.updatedAt, clock.unixMilliseconds, "updated_at ran ahead of the clock")
        let finished = try XCTUnwrap(bus.retained(subject: job.id.text).last)
        XCTAssertEqual(finished.type, .jobFinished)
        XCTAssertGreaterThanOrEqual(finished.id, Event.firstID(atUnixMilliseconds: cancelled.updatedAt))
    }

    /// The once-a-second sweeps read through their partial indexes, never every pending job
    /// and a sort: their cost does not grow with the backlog.
    func testTheSweepsUseTheirPartialIndexes() async throws {
        guard let store = try await makeStore() as? SQLiteJobStore else { return }   // the SQLite plan only
        let expiry = try await store.queryPlan(SQLiteJobStore.expirySQL).joined(separator: "; ")
        XCTAssertTrue(expiry.contains("jobs_jobs_expiry"), expiry)
        XCTAssertFalse(expiry.contains("TEMP B-TREE"), expiry)
        let retry = try await store.queryPlan(SQLiteJobStore.retrySQL).joined(separator: "; ")
        XCTAssertTrue(retry.contains("jobs_jobs_retry"), retry)
        XCTAssertFalse(retry.contains("TEMP B-TREE"), retry)
    }

    func testPendingJobsExpireAtTheirTTLAndNotBefore() async throws {
        let start = clock.unixMilliseconds
        var short: [JobID] = []
        for _ in 0..<5 { short.append(try await submit(spec: spec(ttl: 60)).id) }
        let long = try await submit(spec: spec(ttl: 3_600)).id
        let assigned = try await submit(spec: spec(ttl: 60)).id
        _ = try await service.transition(assigned, to: .assigned)
        let v14 = try await service.sweepOnce(now: start + 59_999).expired
        XCTAssertEqual(v14, 0)
        for id in short {
            let state = try await service.get(id)?.state
            XCTAssertEqual(state, .pending)
        }
        let v15 = try await service.sweepOnce(now: start + 60_000).expired
        XCTAssertEqual(v15, 5)
        for id in short {
            let job = try await service.get(id)!
            XCTAssertEqual(job.state, .failed, "an expired job does not retry")
            XCTAssertEqual(job.reason, "expired")
        }
        let v16 = try await service.get(long)?.state
        XCTAssertEqual(v16, .pending)
        let v17 = try await service.get(assigned)?.state
        XCTAssertEqual(v17, .assigned, "only pending jobs expire")
        let v18 = try await service.sweepOnce(now: start + 3_600_000).expired
        XCTAssertEqual(v18, 1)
    }

    /// The periodic sweep runs on the injected clock: nothing happens until the clock passes
    /// the TTL, then the job fails and its event is published.
    func testRunSweepsExpiresOnTheInjectedClock() async throws {
        settings.expiryIntervalMilliseconds = 1_000
        try await open()
        let job = try await submit(spec: spec(ttl: 10))
        let sub = await bus.subscribe(subject: job.id.text, after: bus.retained(subject: job.id.text).last?.id)
        let service = self.service!
        let sweeper = Task { await service.runSweeps() }
        defer { sweeper.cancel() }
        for _ in 0..<9 {
            while clock.sleeperCount == 0 { await Task.yield() }
            clock.advance(by: .seconds(1))
        }
        while clock.sleeperCount == 0 { await Task.yield() }
        let v19 = try await service.get(job.id)?.state
        XCTAssertEqual(v19, .pending, "9 s into a 10 s TTL")
        clock.advance(by: .seconds(1))
        var it = sub.events.makeAsyncIterator()
        let event = await it.next()
        XCTAssertEqual(event?.type, .jobFinished)
        XCTAssertTrue(event?.payload.contains(#""reason":"expired""#) ?? false, event?.payload ?? "")
        let v20 = try await service.get(job.id)?.state
        XCTAssertEqual(v20, .failed, "committed before the event")
    }

    // MARK: Events

    func testEventsFollowCommittedChanges() async throws {
        let job = try await submit()
        let sub = await bus.subscribe(subject: job.id.text, after: nil)
        XCTAssertEqual(sub.replayedThrough, bus.retained(subject: job.id.text).last?.id)
        let service = self.service!
        let consumer = Task { () -> [(EventType, JobState?)] in
            var out: [(EventType, JobState?)] = []
            for await e in sub.events {
                out.append((e.type, try? await service.get(job.id)?.state))
                if e.type == .jobFinished { break }
            }
            return out
        }
        _ = try await service.transition(job.id, to: .assigned)
        _ = try await service.transition(job.id, to: .transcoding, progress: 1)
        _ = try await service.transition(job.id, to: .transcoding, progress: 50)
        _ = try await service.cancel(job.id)
        let got = await consumer.value
        XCTAssertEqual(got.map(\.0), [.jobCreated, .jobAssigned, .transcodingStarted, .progressUpdated, .jobFinished])
        XCTAssertEqual(got.last?.1, .cancelled, "the state was committed when the event arrived")
    }

    func testTranscodeLimitsAreStoredWithTheJob() async throws {
        var s = spec()
        s.limits = TranscodeLimits(maxSeconds: 120, maxMemoryMiB: 1024)
        let job = try await submit(spec: s)
        XCTAssertEqual(job.limits, s.limits)
        try await open()  // a restart: read back from the database
        let again = try await service.get(job.id)
        XCTAssertEqual(again?.limits, s.limits)
        XCTAssertTrue(String(decoding: again!.jsonBytes, as: UTF8.self).contains(#""limits":{"max_seconds":120,"max_memory_mib":1024}"#))
    }

    /// The webhook outbox's read: finished jobs with a webhook URL, in (updated_at, id)
    /// order, paged from a position, up to a time; not pending, cancelled or URL-less ones.
    func testFinishedJobsWithAWebhookAreListedInOrder() async throws {
        var hooked = spec(maxAttempts: 1)
        hooked.webhookURL = "https://hooks.example/a"
        let engine = EngineID("eng_01ARZ3NDEKTSV4RRFFQ69G5FAV")!
        var finished: [Job] = []
        for i in 0..<5 {
            let job = try await submit(spec: hooked)
            clock.advance(by: .milliseconds(10))
            _ = try await service.transition(job.id, to: .assigned, engineID: engine)
            if i % 2 == 0 {
                _ = try await service.transition(job.id, to: .transcoding, leaseEpoch: 1, progress: 0)
                _ = try await service.transition(job.id, to: .completing, leaseEpoch: 1)
                finished.append(try await service.transition(job.id, to: .completed, leaseEpoch: 1))
            } else {
                finished.append(try await service.transition(job.id, to: .failed, reason: "bad input", leaseEpoch: 1))
            }
        }
        _ = try await submit(spec: hooked)                       // pending
        let cancelled = try await submit(spec: hooked)
        _ = try await service.transition(cancelled.id, to: .cancelled)
        let plain = try await submit(spec: spec(maxAttempts: 1))  // no webhook
        _ = try await service.transition(plain.id, to: .assigned, engineID: engine)
        _ = try await service.transition(plain.id, to: .failed, reason: "bad input", leaseEpoch: 1)

        // (A job's updated_at moves at least 1 ms per change, so it can run ahead of the manual clock.)
        let now = finished.last!.updatedAt
        let all = try await service.finishedWithWebhook(after: FinishedPosition(updatedAt: 0, id: ""), through: now, limit: 100)
        XCTAssertEqual(all.map(\.id), finished.map(\.id))
        XCTAssertEqual(all.map(\.state), [.completed, .failed, .completed, .failed, .completed])
        let first = try await service.finishedWithWebhook(after: FinishedPosition(updatedAt: 0, id: ""), through: now, limit: 2)
        let rest = try await service.finishedWithWebhook(after: FinishedPosition(updatedAt: first[1].updatedAt, id: first[1].id.text),
                                                         through: now, limit: 100)
        XCTAssertEqual((first + rest).map(\.id), finished.map(\.id))
        let early = try await service.finishedWithWebhook(after: FinishedPosition(updatedAt: 0, id: ""), through: finished[1].updatedAt, limit: 100)
        XCTAssertEqual(early.map(\.id), Array(finished.prefix(2)).map(\.id))
    }
}
