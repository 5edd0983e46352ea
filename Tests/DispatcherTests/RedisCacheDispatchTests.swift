// Two dispatchers on one PostgreSQL and one Redis (queue.url), with the Redis record cache:
// - a job read by id is a miss once and a hit after, on either dispatcher; a change made on
//   one is seen at once on the other (the publish replaced the cached entry); a tenant
//   still cannot read another tenant's cached job; an engine's details are cached and a
//   heartbeat invalidates them;
// - concurrent readers on both dispatchers while a job moves through 60 changes: no read
//   that began after a change was acknowledged ever shows an older state;
// - with cache.ttl_seconds = 0 there is no cache.
@testable import Dispatcher
import Foundation
import JSON
import Jobs
import RedisEvents
import ServerConfig
import SpoolModel
import SpoolTestSupport
import Synchronization
import XCTest

final class RedisCacheDispatchTests: XCTestCase {
    var redis: RedisServer!
    override func setUpWithError() throws { redis = try RedisServer.start() }
    override func tearDown() { redis?.stop() }
    override class func tearDown() { PostgresServer.stopShared(by: self) }

    func pair(ttl: Int64 = 30) async throws -> (AccessHarness, AccessHarness) {
        let url = try PostgresServer.shared(by: Self.self).createDatabase("cache")
        let dir = NSTemporaryDirectory() + "spool-cache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let prefix = "c\(UInt32.random(in: 0...UInt32.max))", queue = redis.url
        let configure: (inout ServerSettings) -> Void = { s in
            s.engines.joinToken = EngineLeaseTests.join
            s.database.url = url
            s.database.maxConnections = 4
            s.queue.url = queue
            s.queue.keyPrefix = prefix
            s.cache.ttlSeconds = ttl
        }
        return (try await AccessHarness.start(dataDirectory: dir, configure: configure),
                try await AccessHarness.start(dataDirectory: dir, configure: configure))
    }

    func stop(_ hs: AccessHarness...) async {
        for h in hs {
            await h.dispatch.database.close()
            await h.stop()
            await h.dispatch.redis?.shutdown()
        }
    }

    func testReadsHitAfterTheFirstAndAChangeOnOneDispatcherIsSeenOnTheOther() async throws {
        let (a, b) = try await pair()
        let admin = try await a.adminKey()
        let id = try await a.submitJob(key: admin)
        let cache = try XCTUnwrap(b.dispatch.recordCache)
        for _ in 0..<5 {
            let r = try await b.call("GET", "/api/v1/jobs/\(id)", key: admin)
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(try json(r.text)["state"]?.string(), "pending")
            XCTAssertNotNil(r.headers.first { $0.name == "ETag" })
        }
        XCTAssertEqual(cache.figures.misses, 1)
        XCTAssertEqual(cache.figures.fills, 1)
        XCTAssertEqual(cache.figures.hits, 4)
        let cancelled = try await a.call("POST", "/api/v1/jobs/\(id)/cancel", key: admin)
        XCTAssertEqual(cancelled.status, 200, cancelled.text)
        let after = try await b.call("GET", "/api/v1/jobs/\(id)", key: admin)
        XCTAssertEqual(try json(after.text)["state"]?.string(), "cancelled", "the other dispatcher's cache still held the old state")

        // A tenant's key reads its own job from the cache, and not another tenant's.
        let made = try await a.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"other"}"#)
        let other = try json(made.text)["secret"]!.string()
        let hitsBefore = cache.figures.hits
        let refused = try await b.call("GET", "/api/v1/jobs/\(id)", key: other)
        XCTAssertEqual(refused.status, 404, refused.text)
        XCTAssertGreaterThan(cache.figures.hits, hitsBefore, "answered (404) from the cached entry")

        // Engines: cached details, and a heartbeat replaces them.
        let engine = try await a.registerEngine(name: "cached-engine")
        let first = try await b.call("GET", "/api/v1/engines/\(engine.0)", key: admin)
        XCTAssertEqual(first.status, 200, first.text)
        XCTAssertEqual(try json(first.text)["load"]?.double(), 0)
        let beat = try await a.call("POST", "/api/v1/engines/\(engine.0)/heartbeat", key: engine.1, body: #"{"load":0.75}"#)
        XCTAssertTrue((200..<300).contains(beat.status), beat.text)
        let second = try await b.call("GET", "/api/v1/engines/\(engine.0)", key: admin)
        XCTAssertEqual(try json(second.text)["load"]?.double(), 0.75, second.text)
        let scrape = try await b.call("GET", "/metrics")
        XCTAssertTrue(scrape.text.contains(#"spool_cache_lookups{result="hit"}"#), scrape.text)
        await stop(a, b)
    }

    func testConcurrentReadersNeverSeeAStateOlderThanAnAcknowledgedChange() async throws {
        let (a, b) = try await pair()
        let admin = try await a.adminKey()
        let id = try await a.submitJob(key: admin)
        let jobID = try XCTUnwrap(JobID(id))
        let engine = try XCTUnwrap(EngineID("eng_01J00000000000000000000000"))
        _ = try await a.dispatch.jobs.transition(jobID, to: .assigned, engineID: engine)
        _ = try await a.dispatch.jobs.transition(jobID, to: .transcoding, leaseEpoch: 1, progress: 0)
        let acknowledged = Acknowledged()
        let stop = Acknowledged()
        let readers = Task {
            try await withThrowingTaskGroup(of: [String].self) { group in
                for r in 0..<8 {
                    let h = r % 2 == 0 ? a : b
                    group.addTask {
                        var problems: [String] = []
                        var n = 0
                        while stop.value.withLock({ $0 }) == 0 && n < 2_000 {
                            let floor = acknowledged.value.withLock { $0 }
                            let res = try await h.call("GET", "/api/v1/jobs/\(id)", key: admin)
                            let progress = try json(res.text)["progress"]?.double() ?? -1
                            if progress < floor { problems.append("read began after \(floor) was acknowledged but saw \(progress)") }
                            n += 1
                        }
                        return problems
                    }
                }
                var all: [String] = []
                for try await p in group { all += p }
                return all
            }
        }
        for i in 1...60 {
            let writer = i % 2 == 0 ? a : b
            _ = try await writer.dispatch.jobs.transition(jobID, to: .transcoding, leaseEpoch: 1, progress: Double(i))
            acknowledged.value.withLock { $0 = Double(i) }
            try await Task.sleep(for: .milliseconds(5))
        }
        stop.value.withLock { $0 = 1 }
        let problems = try await readers.value
        XCTAssertEqual(problems.count, 0, "\(problems.prefix(5))")
        let hits = a.dispatch.recordCache!.figures.hits + b.dispatch.recordCache!.figures.hits
        let refused = a.dispatch.recordCache!.figures.refusedFills + b.dispatch.recordCache!.figures.refusedFills
        XCTAssertGreaterThan(hits, 0, "the readers never hit the cache: the test did not exercise it")
        print("cache under 60 changes and 8 readers: hits \(hits), refused fills \(refused)")
        await self.stop(a, b)
    }

    func testNoCacheWithAZeroLifetime() async throws {
        let (a, b) = try await pair(ttl: 0)
        XCTAssertNil(a.dispatch.recordCache)
        let admin = try await a.adminKey()
        let id = try await a.submitJob(key: admin)
        let r = try await b.call("GET", "/api/v1/jobs/\(id)", key: admin)
        XCTAssertEqual(r.status, 200, r.text)
        await stop(a, b)
    }
}

final class Acknowledged: Sendable {
    let value = Mutex<Double>(0)
}
