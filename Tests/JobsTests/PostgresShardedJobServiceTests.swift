// JobsTests.PostgresShardedJobServiceTests: every JobServiceTests test again with the jobs
// spread over two PostgreSQL databases (ShardedJobStore, K = 2, a real server the test
// starts), then what sharding adds: each job is on the shard its id hashes to and only
// there; a key used first on one shard is found from the other (replayed, or 422 for
// another request); a list pages by per-shard positions while jobs are inserted on both
// shards, seeing each job once; sweeps and counts cover both shards.
import Events
import Foundation
@testable import Jobs
import Postgres
import SpoolModel
import SpoolTestSupport
import XCTest

final class PostgresShardedJobServiceTests: JobServiceTests {
    var urls: [String] = []
    var pools: [PostgresPool] = []
    var shardStores: [PostgresJobStore] = []

    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    override func makeStore() async throws -> any JobStore {
        if urls.isEmpty {
            let server = try PostgresServer.shared(by: Self.self)
            urls = [try server.createDatabase("shard0"), try server.createDatabase("shard1")]
        }
        shardStores = []
        for url in urls {
            var config = PostgresPoolConfiguration(url: url)
            config.maxConnections = 8
            let p = try await PostgresPool.open(config)
            pools.append(p)
            shardStores.append(PostgresJobStore(pool: p))
        }
        return ShardedJobStore(shards: shardStores, router: ShardRouter(shardCount: 2))
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

    /// Each job is on its hashed shard and only there; both shards hold some.
    func testEachJobIsOnTheShardItsIdHashesToAndNowhereElse() async throws {
        var made: [JobID] = []
        for i in 0..<40 { made.append(try await submit(tenant: i % 2 == 0 ? "acme" : "other").id) }
        let router = ShardRouter(shardCount: 2)
        var perShard = [0, 0]
        for id in made {
            let home = router.shard(of: id)
            perShard[home] += 1
            let there = try await shardStores[home].get(id)
            let elsewhere = try await shardStores[1 - home].get(id)
            XCTAssertNotNil(there, "\(id) is not on shard \(home)")
            XCTAssertNil(elsewhere, "\(id) is on shard \(1 - home) too")
        }
        XCTAssertGreaterThan(perShard[0], 5)
        XCTAssertGreaterThan(perShard[1], 5)
        let counts = try await service.countsByState()
        XCTAssertEqual(counts[.pending], 40)
        let pending = try await service.store.pendingByTenant(limitPerTenant: 100)
        XCTAssertEqual(Set(pending.map(\.id)), Set(made))
        XCTAssertEqual(pending.filter { $0.tenant == "acme" }.map(\.id), made.enumerated().filter { $0.offset % 2 == 0 }.map(\.element),
                       "a tenant's pending jobs merge back into one oldest-first list")
    }

    /// A key recorded with a retry on the job's shard is found by a submission whose key
    /// hashes to the other shard: 422 for the other request, never a second use.
    func testAKeyUsedOnOneShardIsSeenFromTheOther() async throws {
        let router = ShardRouter(shardCount: 2)
        let job = try await submit()
        // A key whose home differs from the job's shard.
        var key = "k0"
        var n = 0
        while router.shard(tenant: "acme", key: key, at: UInt64(clock.unixMilliseconds)) == router.shard(of: job.id) { n += 1; key = "k\(n)" }
        let claim = IdempotencyClaim(tenant: "acme", key: key, requestHash: "retry-hash")
        _ = try await service.store.update(job.id, claim: claim, status: 200, now: clock.unixMilliseconds, retentionMilliseconds: 86_400_000,
                                           render: { _ in Array("retried".utf8) }) { _ in }
        let found = try await service.replay(tenant: "acme", idempotencyKey: key, requestHash: "retry-hash")
        XCTAssertEqual(found.map { String(decoding: $0.body, as: UTF8.self) }, "retried")
        do {
            _ = try await service.submit(tenant: "acme", spec: spec(), idempotencyKey: key, requestHash: "another", render: { $0.jsonBytes })
            XCTFail("a key used on the other shard was used again")
        } catch let e as ModelError {
            XCTAssertEqual(e.code, .idempotencyKeyReused)
        }
    }

    /// Per-shard positions: jobs inserted on both shards between pages are seen once each,
    /// and no job that existed before the listing began is missed.
    func testShardPositionsPageOnceThroughJobsInsertedOnBothShards() async throws {
        var before: [JobID] = []
        for _ in 0..<30 { before.append(try await submit().id) }
        var seen: [JobID] = []
        var positions: ShardPositions?
        var inserted: [JobID] = []
        var pages = 0
        repeat {
            let page = try await service.list(JobQuery(limit: 7, positions: positions))
            XCTAssertNotNil(page.positions)
            XCTAssertEqual(page.jobs.map(\.id), page.jobs.map(\.id).sorted(), "a page is in id order")
            seen += page.jobs.map(\.id)
            positions = page.hasMore ? page.positions : nil
            // Others insert between pages (only while pages follow, so every one is due to be seen).
            for _ in 0..<4 where positions != nil && inserted.count < 20 { inserted.append(try await submit(tenant: "other").id) }
            pages += 1
        } while positions != nil && pages < 50
        XCTAssertEqual(seen.count, Set(seen).count, "a job was listed twice")
        XCTAssertTrue(Set(before).isSubset(of: Set(seen)), "a job that was there all along was missed")
        XCTAssertEqual(Set(seen), Set(before + inserted), "every job inserted while paging comes after the cursor")
        XCTAssertEqual(inserted.count, 20)
        let offset = try await service.list(JobQuery(offset: 45, limit: 10))
        XCTAssertEqual(offset.jobs.map(\.id), Array((before + inserted).sorted()[45...]))
        XCTAssertEqual(offset.totalCount, 50)
        XCTAssertFalse(offset.hasMore)
        do {
            _ = try await service.list(JobQuery(offset: ShardedJobStore.maxOffset + 1, limit: 10))
            XCTFail("an offset past the bound was served")
        } catch let e as ModelError {
            XCTAssertEqual(e.code, .validationFailed)
        }
    }
}
