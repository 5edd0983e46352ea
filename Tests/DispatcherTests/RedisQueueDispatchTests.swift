// The dispatcher with its job queue on Redis Streams (queue.url), against a real
// redis-server: a submitted job is published to the stream and leased through it; after
// FLUSHALL the reconciler publishes the pending job again and it is leased; another
// dispatcher's event bus follows a job's events through Redis; readiness
// reports the queue, and a dispatcher whose Redis is down is not ready; a URL nothing
// answers fails the start with the reason.
import Dispatcher
import Foundation
import Events
import MessageQueue
import Redis
import RedisEvents
import ServerConfig
import SpoolTestSupport
import XCTest

final class RedisQueueDispatchTests: XCTestCase {
    var redis: RedisServer!
    override func setUpWithError() throws { redis = try RedisServer.start() }
    override func tearDown() { redis?.stop() }

    func start() async throws -> AccessHarness {
        let url = redis.url
        return try await AccessHarness.start { s in
            s.engines.joinToken = EngineLeaseTests.join
            s.queue.url = url
            s.queue.keyPrefix = "t\(UInt32.random(in: 0...UInt32.max))"
        }
    }

    func stop(_ h: AccessHarness) async {
        await h.stop()
        await h.dispatch.redis?.shutdown()
    }

    func testJobsTravelThroughRedisAndSurviveFlushAll() async throws {
        let h = try await start()
        let key = try await h.adminKey()
        let engine = try await h.registerEngine(name: "e1")
        let first = try await h.submitJob(key: key)
        let queued = try await h.dispatch.queue.queuedBodies(topic: "jobs", limit: 10)
        XCTAssertEqual(queued, [first], "published to the stream after its commit")
        let l1 = try await h.leaseJob(engine)
        XCTAssertEqual(l1.status, 200, l1.text)
        XCTAssertTrue(l1.text.contains(first))
        let afterLease = try await h.dispatch.queue.queuedBodies(topic: "jobs", limit: 10)
        XCTAssertEqual(afterLease, [], "acked once leased")

        // Redis loses everything: the pending job is still pending in the database.
        let second = try await h.submitJob(key: key)
        try await h.dispatch.redis!.send(["FLUSHALL"])
        let republished = try await h.dispatch.reconcileQueue()
        XCTAssertEqual(republished, 1)
        let again = try await h.dispatch.queue.queuedBodies(topic: "jobs", limit: 10)
        XCTAssertEqual(again, [second])
        let none = try await h.dispatch.reconcileQueue()
        XCTAssertEqual(none, 0, "nothing missing now")
        let l2 = try await h.leaseJob(engine)
        XCTAssertEqual(l2.status, 200, l2.text)
        XCTAssertTrue(l2.text.contains(second))
        await stop(h)
    }

    /// With Redis, the dispatcher's events go through it: another dispatcher's bus (its own
    /// client and reader, as a second process has) follows a job this one schedules, from
    /// the replay of JobCreated to the live JobAssigned of its lease.
    func testAnotherDispatcherFollowsTheJobsEvents() async throws {
        let h = try await start()
        XCTAssertTrue(h.dispatch.events is RedisEventBus)
        let key = try await h.adminKey()
        let engine = try await h.registerEngine(name: "e1")
        let job = try await h.submitJob(key: key)
        let other = RedisEventBus(client: try await RedisClient.connect(RedisConfiguration(endpoint: try RedisEndpoint(url: redis.url))),
                                  keyPrefix: h.dispatch.settings.current.queue.keyPrefix)
        let reader = Task { await other.run() }
        let sub = await other.subscribe(subject: job, after: nil)
        let lease = try await h.leaseJob(engine)
        XCTAssertEqual(lease.status, 200, lease.text)
        let seen = Task {
            var types: [EventType] = []
            for await e in sub.events {
                types.append(e.type)
                if e.type == .jobAssigned { break }
            }
            return types
        }
        let timeout = Task { try? await Task.sleep(for: .seconds(10)); seen.cancel() }
        let types = await seen.value
        timeout.cancel()
        XCTAssertEqual(types.first, .jobCreated, "\(types)")
        XCTAssertEqual(types.last, .jobAssigned, "\(types)")
        reader.cancel()
        await other.client.shutdown()
        await stop(h)
    }

    func testReadinessReportsTheQueue() async throws {
        let h = try await start()
        let ok = try await h.call("GET", "/api/v1/ready")
        XCTAssertEqual(ok.status, 200, ok.text)
        XCTAssertTrue(ok.text.contains(#""queue":"ok""#), ok.text)
        redis.halt()
        let down = try await h.call("GET", "/api/v1/ready")
        XCTAssertEqual(down.status, 503, down.text)
        XCTAssertTrue(down.text.contains("redis connection"), down.text)
        await stop(h)
    }

    func testUnreachableRedisFailsTheStartWithTheReason() async throws {
        let url = redis.url
        redis.halt()
        do {
            let h = try await AccessHarness.start { $0.queue.url = url }
            await h.stop()
            XCTFail("started without its queue")
        } catch {
            XCTAssertTrue("\(error)".contains("cannot connect to Redis"), "\(error)")
        }
    }
}
