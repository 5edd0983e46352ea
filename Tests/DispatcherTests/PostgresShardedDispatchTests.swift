// The dispatcher with its jobs spread over two PostgreSQL databases (database.job_shards,
// K = 2; the main database, which keeps files, engines and keys, is one of them): every
// engine-lease test again (leases, fencing, the data path, capabilities, draining, fair
// shares, webhooks, dead letters), then the cross-shard list under load: 2,000 jobs
// submitted over HTTP by 16 clients while others page GET /api/v1/jobs by cursor; each pass
// sees each job at most once and every job acknowledged before it began, and a pass after
// the last submission sees all 2,000 exactly once.
@testable import Dispatcher
import Foundation
import JSON
import ServerConfig
import SpoolModel
import SpoolTestSupport
import Synchronization
import XCTest

final class PostgresShardedDispatchTests: EngineLeaseTests {
    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    override func start() async throws -> AccessHarness {
        let server = try PostgresServer.shared(by: Self.self)
        let main = try server.createDatabase("main"), other = try server.createDatabase("shard")
        return try await AccessHarness.start { s in
            s.engines.joinToken = Self.join
            s.database.url = main
            s.database.jobShards = main + "," + other
            s.database.maxConnections = 4
        }
    }

    override func testRegistrationNeedsTheJoinTokenOrAnAdminKey() async throws { try await super.testRegistrationNeedsTheJoinTokenOrAnAdminKey() }
    override func testLeaseDataPathAndCompletionWithFencing() async throws { try await super.testLeaseDataPathAndCompletionWithFencing() }
    override func testLostLeaseIsTakenBackAndTheOldEpochIsRefused() async throws { try await super.testLostLeaseIsTakenBackAndTheOldEpochIsRefused() }
    override func testRequiredCapabilitiesAllMatchOrTheJobWaitsAndExpires() async throws { try await super.testRequiredCapabilitiesAllMatchOrTheJobWaitsAndExpires() }
    override func testDrainingEngineGetsNoWorkAndRequeueCountsNoAttempt() async throws { try await super.testDrainingEngineGetsNoWorkAndRequeueCountsNoAttempt() }
    override func testTenantsShareEnginesByWeightWhileContended() async throws { try await super.testTenantsShareEnginesByWeightWhileContended() }
    override func testWebhookSecretAndDeliveryLogEndpoints() async throws { try await super.testWebhookSecretAndDeliveryLogEndpoints() }
    override func testAdminJoinTokensExpireAndRevoke() async throws { try await super.testAdminJoinTokensExpireAndRevoke() }
    override func testJobFailedForGoodIsADeadLetter() async throws { try await super.testJobFailedForGoodIsADeadLetter() }

    /// One listing pass by next_page_url from the first page: the ids in the order seen.
    func listAll(_ h: AccessHarness, key: String) async throws -> [String] {
        var seen: [String] = []
        var path: String? = "/api/v1/jobs?limit=100"
        var pages = 0
        while let p = path, pages < 200 {
            let r = try await h.call("GET", p, key: key)
            guard r.status == 200 else { throw XCTSkip("list failed: \(r.status) \(r.text)") }
            let doc = try json(r.text)
            let ids = try doc["data"]!.elements.map { try $0["id"]!.string() }
            // Within a page, id order. Across pages a job that committed late with an id
            // below another shard's position still comes (on a later page): its own shard's
            // position had not passed it.
            XCTAssertEqual(ids, ids.sorted(), "a page out of id order")
            seen += ids
            let next = doc["next_page_url"]
            path = next == nil || next!.isNull ? nil : try next!.string()
            pages += 1
        }
        return seen
    }

    func testCrossShardPagesSeeEveryJobOnceWhileTwoThousandAreSubmitted() async throws {
        let h = try await start()
        let admin = try await h.adminKey()
        let made = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#)
        let secret = try json(made.text)["secret"]!.string()
        let up = try await h.call("POST", "/api/v1/files", key: secret, body: "input bytes")
        let fileID = try json(up.text)["id"]!.string()

        let total = 2_000, clients = 16
        let tally = Tally()
        let submitted = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for c in 0..<clients {
                    group.addTask {
                        for i in stride(from: c, to: total, by: clients) {
                            let r = try await h.call("POST", "/api/v1/jobs", key: secret,
                                                     body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p","metadata":{"n":"\#(i)"}}"#,
                                                     headers: [("Idempotency-Key", "shard-test-\(i)")])
                            if r.status == 201 {
                                let id = try json(r.text)["id"]!.string()
                                tally.acknowledged.withLock { $0.append(id) }
                            } else {
                                tally.failures.withLock { $0.append("\(r.status) \(r.text)") }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        // Listing passes while the submissions run.
        var passes = 0
        while tally.acknowledged.withLock({ $0.count }) < total && tally.failures.withLock({ $0.isEmpty }) && passes < 40 {
            let before = Set(tally.acknowledged.withLock { $0 })
            let seen = try await listAll(h, key: secret)
            XCTAssertEqual(seen.count, Set(seen).count, "pass \(passes): a job was listed twice")
            let missed = before.subtracting(seen)
            XCTAssertTrue(missed.isEmpty, "pass \(passes): \(missed.count) jobs acknowledged before the pass were missed")
            passes += 1
        }
        try await submitted.value
        let failed = tally.failures.withLock { $0 }
        XCTAssertTrue(failed.isEmpty, "\(failed.count) submissions failed, the first: \(failed.prefix(3))")
        XCTAssertGreaterThan(passes, 0, "no pass ran during the submissions")
        let all = tally.acknowledged.withLock { $0 }
        XCTAssertEqual(all.count, total)
        let final = try await listAll(h, key: secret)
        XCTAssertEqual(final.count, total, "the pass after the last submission")
        XCTAssertEqual(Set(final), Set(all), "every job exactly once")
        // Both shards hold jobs; the total is theirs together.
        guard case .postgresql(_, let shards?) = h.dispatch.database else { return XCTFail("not sharded") }
        var perShard: [Int] = []
        for pool in shards.pools {
            perShard.append(try await pool.read { c in try c.query("SELECT count(*) AS n FROM jobs_jobs").rows[0].int("n") })
        }
        XCTAssertEqual(perShard.reduce(0, +), total)
        XCTAssertTrue(perShard.allSatisfy { $0 > total / 4 }, "uneven spread: \(perShard)")
        let count = try await h.call("GET", "/api/v1/jobs?limit=1", key: secret)
        XCTAssertEqual(try json(count.text)["total_count"]?.int(), total)
        print("cross-shard listing: \(passes) passes during \(total) submissions; per shard \(perShard)")
        await h.dispatch.database.close()
        await h.stop()
    }
}

/// What the submitting clients saw, shared with the listing passes.
final class Tally: Sendable {
    let acknowledged = Mutex<[String]>([])
    let failures = Mutex<[String]>([])
}
