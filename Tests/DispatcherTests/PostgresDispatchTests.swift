// The dispatcher on PostgreSQL (database.url), against a real server the test starts:
// every engine-lease test again (registration, leases with fencing, the data path,
// capabilities, draining, fair shares, webhooks, join tokens, dead letters), each on a
// database of its own; then what only a shared database gives: two dispatchers on one
// database and one data directory serve one API (a key made on one works on the other, a
// file uploaded to one downloads from the other, a list cursor from one pages on the
// other, a key revoked on one stops working on the other once its cache entry lapses),
// and /metrics shows the connection pool. Then the scheduler's fence: a dispatcher whose
// scheduler stalled with a job in hand cannot assign it after another leased it.
@testable import Dispatcher
import Foundation
import JSON
import ServerConfig
import SpoolModel
import SpoolTestSupport
import XCTest

final class PostgresDispatchTests: EngineLeaseTests {
    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    func databaseURL() throws -> String {
        return try PostgresServer.shared(by: Self.self).createDatabase("dispatch")
    }

    override func start() async throws -> AccessHarness {
        let url = try databaseURL()
        return try await AccessHarness.start { s in
            s.engines.joinToken = Self.join
            s.database.url = url
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

    func testTwoDispatchersOnOneDatabaseServeOneAPI() async throws {
        let url = try databaseURL()
        let dir = NSTemporaryDirectory() + "spool-dispatch-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let configure: (inout ServerSettings) -> Void = { s in
            s.engines.joinToken = Self.join
            s.database.url = url
            s.database.maxConnections = 4
        }
        let a = try await AccessHarness.start(dataDirectory: dir, configure: configure)
        let b = try await AccessHarness.start(dataDirectory: dir, configure: configure)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/spool.sqlite"), "no SQLite file with database.url")
        let admin = try await a.adminKey()
        let noSecond = try await b.dispatch.prepareAdminKey(environment: [:])
        XCTAssertNil(noSecond, "the second dispatcher finds the first one's admin key in the database")

        // A tenant key made on A authenticates on B.
        let made = try await a.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#)
        XCTAssertEqual(made.status, 201, made.text)
        let secret = try json(made.text)["secret"]!.string(), keyID = try json(made.text)["id"]!.string()
        let onB = try await b.call("GET", "/api/v1/files", key: secret)
        XCTAssertEqual(onB.status, 200, onB.text)

        // Uploaded to A, listed and downloaded on B.
        let up = try await a.call("POST", "/api/v1/files", key: secret, body: "bytes kept once for both")
        XCTAssertEqual(up.status, 201, up.text)
        let fileID = try json(up.text)["id"]!.string()
        let down = try await b.call("GET", "/api/v1/files/\(fileID)", key: secret)
        XCTAssertEqual(down.status, 200, down.text)
        XCTAssertEqual(down.text, "bytes kept once for both")

        // Three jobs submitted on A; B pages them with A's cursor.
        var jobs: [String] = []
        for i in 0..<3 {
            let j = try await a.call("POST", "/api/v1/jobs", key: secret, body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"}"#,
                                     headers: [("Idempotency-Key", "pg-\(i)")])
            XCTAssertEqual(j.status, 201, j.text)
            jobs.append(try json(j.text)["id"]!.string())
        }
        // The same Idempotency-Key on B replays A's answer.
        let replay = try await b.call("POST", "/api/v1/jobs", key: secret, body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"}"#,
                                      headers: [("Idempotency-Key", "pg-0")])
        XCTAssertEqual(replay.status, 201, replay.text)
        XCTAssertEqual(try json(replay.text)["id"]?.string(), jobs[0])
        let first = try await a.call("GET", "/api/v1/jobs?limit=2", key: secret)
        XCTAssertEqual(first.status, 200, first.text)
        let next = try XCTUnwrap(try json(first.text)["next_page_url"]?.string(), first.text)
        XCTAssertTrue(next.contains("cursor="), next)
        let rest = try await b.call("GET", next, key: secret)
        XCTAssertEqual(rest.status, 200, rest.text)
        let firstIDs = try json(first.text)["data"]!.elements.map { try $0["id"]!.string() }
        let restIDs = try json(rest.text)["data"]!.elements.map { try $0["id"]!.string() }
        XCTAssertEqual(Set(firstIDs + restIDs), Set(jobs), "A's cursor continues on B: \(firstIDs) then \(restIDs)")

        // Revoked on A: B's cached success lapses within its lifetime (2 s), then 401.
        let revoked = try await a.call("DELETE", "/api/v1/keys/\(keyID)", key: admin)
        XCTAssertEqual(revoked.status, 204, revoked.text)
        let goneOnA = try await a.call("GET", "/api/v1/files", key: secret)
        XCTAssertEqual(goneOnA.status, 401, "at once where it was revoked")
        b.clock.advance(by: .seconds(3))
        let goneOnB = try await b.call("GET", "/api/v1/files", key: secret)
        XCTAssertEqual(goneOnB.status, 401, goneOnB.text)

        // The pool's figures are on /metrics.
        let scrape = try await a.call("GET", "/metrics")
        XCTAssertTrue(scrape.text.contains(#"spool_db_pool_connections{state="max"} 4"#), scrape.text)
        XCTAssertTrue(scrape.text.contains("spool_db_pool_acquired"), scrape.text)
        await a.dispatch.database.close()
        await b.dispatch.database.close()
        await a.stop()
        await b.stop()
    }

    /// Two dispatchers on one database and one Redis. A takes a job into its scheduler's
    /// hand and stalls there (its loop does not run, so nothing is extended) past the
    /// queue's visibility; B claims the delivery and leases the job to its engine (epoch 1);
    /// the lease is lost and the job is pending again, its new message taken by B. A wakes
    /// and serves its own engine from its stale hand: the assignment, conditional on the
    /// epoch A read (0), is refused and counted; the job is untouched, and B leases it next.
    func testAStalledSchedulerIsFencedOffByTheLeaseEpoch() async throws {
        let redis = try RedisServer.start()
        defer { redis.stop() }
        let url = try databaseURL(), prefix = "fence\(UInt32.random(in: 0...UInt32.max))"
        let configure: (inout ServerSettings) -> Void = { s in
            s.engines.joinToken = Self.join
            s.database.url = url
            s.queue.url = redis.url
            s.queue.keyPrefix = prefix
            s.queue.visibilitySeconds = 5
        }
        let a = try await AccessHarness.start(configure: configure)
        let b = try await AccessHarness.start(configure: configure)
        let admin = try await a.adminKey()
        let e1 = try await a.registerEngine(name: "e1"), e2 = try await b.registerEngine(name: "e2")
        let job = try await a.submitJob(key: admin)
        try await a.dispatch.scheduler.collect()
        try await Task.sleep(for: .seconds(6))
        let toB = try await b.leaseJob(e2)
        XCTAssertEqual(toB.status, 200, toB.text)
        XCTAssertTrue(toB.text.contains(job), "B claimed the stalled delivery: \(toB.text)")
        let id = try XCTUnwrap(JobID(job))
        _ = try await b.dispatch.jobs.transition(id, to: .pending, reason: "lease_lost", leaseEpoch: 1)
        try await b.dispatch.scheduler.collect()

        let toA = try await a.leaseJob(e1)
        XCTAssertFalse(toA.text.contains(job), "the stale scheduler assigned the job: \(toA.text)")
        XCTAssertEqual(a.dispatch.scheduler.fencedCount, 1)
        let after = try await a.dispatch.jobs.get(id)
        XCTAssertEqual(after?.state, .pending)
        XCTAssertEqual(after?.leaseEpoch, 1)
        let again = try await b.leaseJob(e2)
        XCTAssertTrue(again.text.contains(job), again.text)
        let leased = try await b.dispatch.jobs.get(id)
        XCTAssertEqual(leased?.leaseEpoch, 2)
        XCTAssertEqual(leased?.engineID?.text, e2.0)
        for h in [a, b] {
            await h.dispatch.redis?.shutdown()
            await h.dispatch.database.close()
            await h.stop()
        }
    }

    /// While the database is down, a key that is not cached cannot be checked: 503 with
    /// Retry-After (a client retries), never the 401 that would call a good key bad; a
    /// request past authentication gets 503 as well. Back up: the same key works.
    func testAnUnreachableDatabaseIs503NotA401() async throws {
        let h = try await start()
        let admin = try await h.adminKey()
        let made = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#)
        let secret = try json(made.text)["secret"]!.string()
        // A second tenant uploads before the outage, so its key is cached through it.
        let other = try json(try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"beta"}"#).text)["secret"]!.string()
        let up = try await h.call("POST", "/api/v1/files", key: other, body: "input bytes")
        XCTAssertEqual(up.status, 201, up.text)
        let fileID = try json(up.text)["id"]!.string()
        try PostgresServer.shared(by: Self.self).halt()
        let unchecked = try await h.call("GET", "/api/v1/jobs", key: secret)
        XCTAssertEqual(unchecked.status, 503, unchecked.text)
        XCTAssertEqual(try json(unchecked.text)["error"]?["code"]?.string(), "unavailable")
        XCTAssertEqual(unchecked.headers.first { $0.name.lowercased() == "retry-after" }?.value, "1")
        let cached = try await h.call("GET", "/api/v1/jobs", key: admin)
        XCTAssertEqual(cached.status, 503, "the admin key was cached; the list itself needs the database: \(cached.text)")
        // A submission whose input cannot be looked up is 503 (send it again), never the 422
        // "no file" that tells a client its job can never be made.
        let body = #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"}"#
        let during = try await h.call("POST", "/api/v1/jobs", key: other, body: body, headers: [("Idempotency-Key", "outage-1")])
        XCTAssertEqual(during.status, 503, during.text)
        try PostgresServer.shared(by: Self.self).restart()
        let back = try await h.call("GET", "/api/v1/jobs", key: secret)
        XCTAssertEqual(back.status, 200, back.text)
        let after = try await h.call("POST", "/api/v1/jobs", key: other, body: body, headers: [("Idempotency-Key", "outage-1")])
        XCTAssertEqual(after.status, 201, after.text)
        await h.dispatch.database.close()
        await h.stop()
    }

    /// A database.url nothing answers fails the start with the reason, password hidden.
    func testUnreachableDatabaseFailsTheStartWithTheReason() async throws {
        do {
            let h = try await AccessHarness.start { $0.database.url = "postgres://spool:hush@127.0.0.1:9/none?connect_timeout=2" }
            await h.stop()
            XCTFail("started without its database")
        } catch {
            XCTAssertTrue("\(error)".contains("cannot connect to the PostgreSQL database.url postgres://spool:***@127.0.0.1:9"), "\(error)")
            XCTAssertFalse("\(error)".contains("hush"), "\(error)")
        }
    }
}
