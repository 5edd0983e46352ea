// JobsTests.PostgresJobServiceTests: every JobServiceTests test again with the service on
// PostgresJobStore (a real PostgreSQL the test starts; make test requires it), each test on
// a database of its own and a "restart" being a new pool on it. Then what only a shared
// database has: two dispatchers (two pools) submitting under one new Idempotency-Key at
// once create one job, and two changing one job at once serialize on its row lock.
import Events
import Foundation
@testable import Jobs
import Postgres
import SpoolModel
import SpoolTestSupport
import Threads
import XCTest

final class PostgresJobServiceTests: JobServiceTests {
    var url: String?
    var pools: [PostgresPool] = []

    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    override func makeStore() async throws -> any JobStore {
        if url == nil { url = try PostgresServer.shared(by: Self.self).createDatabase("jobs") }
        return PostgresJobStore(pool: try await pool())
    }

    func pool() async throws -> PostgresPool {
        var config = PostgresPoolConfiguration(url: url!)
        config.maxConnections = 8
        let p = try await PostgresPool.open(config)
        pools.append(p)
        return p
    }

    override func tearDown() async throws {
        for p in pools { await p.close() }
        pools = []
        try await super.tearDown()
    }

    override func testTransitionHooksLeaseEpochsAndTheTable() async throws { try await super.testTransitionHooksLeaseEpochsAndTheTable() }
    override func testFailureRetriesWithBackoffUntilAttemptsRunOut() async throws { try await super.testFailureRetriesWithBackoffUntilAttemptsRunOut() }
    override func testReplayReturnsTheSameBytesAndAReusedKeyIs422() async throws { try await super.testReplayReturnsTheSameBytesAndAReusedKeyIs422() }
    override func testFiftyConcurrentDuplicatesCreateOneJob() async throws { try await super.testFiftyConcurrentDuplicatesCreateOneJob() }
    override func testKeysExpireAfterTheRetentionAndArePurged() async throws { try await super.testKeysExpireAfterTheRetentionAndArePurged() }
    override func testKeysetPagesStayStableWhileJobsAreInserted() async throws { try await super.testKeysetPagesStayStableWhileJobsAreInserted() }
    override func testPendingJobsExpireAtTheirTTLAndNotBefore() async throws { try await super.testPendingJobsExpireAtTheirTTLAndNotBefore() }
    override func testRunSweepsExpiresOnTheInjectedClock() async throws { try await super.testRunSweepsExpiresOnTheInjectedClock() }
    override func testEventsFollowCommittedChanges() async throws { try await super.testEventsFollowCommittedChanges() }
    override func testTranscodeLimitsAreStoredWithTheJob() async throws { try await super.testTranscodeLimitsAreStoredWithTheJob() }
    override func testFinishedJobsWithAWebhookAreListedInOrder() async throws { try await super.testFinishedJobsWithAWebhookAreListedInOrder() }

    /// Two dispatchers, one new key, 20 submissions each at once: one job, every other
    /// answer a replay of its bytes.
    func testTwoDispatchersRacingOnOneKeyCreateOneJob() async throws {
        let a = service!
        let b = JobService(store: PostgresJobStore(pool: try await pool()), events: InProcessEventBus(), clock: clock, settings: { JobSettings() })
        let spec = self.spec()
        let outcomes = try await withThrowingTaskGroup(of: IdempotentOutcome.self) { group in
            for i in 0..<40 {
                let s = i % 2 == 0 ? a : b
                group.addTask { try await s.submit(tenant: "acme", spec: spec, idempotencyKey: "raced", requestHash: "h", render: { $0.jsonBytes }) }
            }
            var all: [IdempotentOutcome] = []
            for try await o in group { all.append(o) }
            return all
        }
        let (created, replayed) = Self.tally(outcomes)
        XCTAssertEqual(created.count, 1)
        XCTAssertEqual(replayed.count, 39)
        XCTAssertTrue(replayed.allSatisfy { $0 == created[0] })
        let total = try await a.list(JobQuery()).totalCount
        XCTAssertEqual(total, 1, "the losers' jobs were rolled back with their keys")
    }

    /// Two dispatchers moving one job's progress at once: every change lands on the row the
    /// other left (FOR UPDATE), so the update times strictly increase and none is lost.
    func testTwoDispatchersChangingOneJobSerialize() async throws {
        let a = service!
        let b = JobService(store: PostgresJobStore(pool: try await pool()), events: InProcessEventBus(), clock: clock, settings: { JobSettings() })
        let job = try await submit()
        let engine = EngineID("eng_01J00000000000000000000000")!
        _ = try await a.transition(job.id, to: .assigned, engineID: engine)
        _ = try await a.transition(job.id, to: .transcoding, leaseEpoch: 1, progress: 0)
        let stamps = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 1...30 {
                let s = i % 2 == 0 ? a : b
                group.addTask { try await s.transition(job.id, to: .transcoding, leaseEpoch: 1, progress: Double(i)).updatedAt }
            }
            var all: [Int64] = []
            for try await t in group { all.append(t) }
            return all
        }
        XCTAssertEqual(Set(stamps).count, 30, "two changes saw the same row version")
        let last = try await a.get(job.id)
        XCTAssertEqual(last?.updatedAt, stamps.max())
    }
}
