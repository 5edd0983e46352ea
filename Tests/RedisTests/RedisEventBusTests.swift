// The event bus over Redis Streams, as two dispatchers see it: two buses (each with its own
// client and reader) on one real redis-server. A subscriber on one follows a subject the
// other publishes: the replay after its Last-Event-ID, then live events, in id order,
// never repeated, ids increasing across both publishers; the replay window; subscribeAll
// hears only its own process's events; a subscription made before the reader began misses
// nothing; with Redis stopped a publish still reaches the local subscribers, and once Redis
// is back the reader resumes. The record cache's invalidation by publishes, and the
// invalidations owed while Redis was down.
import Events
import Foundation
import Redis
@testable import RedisEvents
import SpoolTestSupport
import Threads
import XCTest

final class RedisEventBusTests: XCTestCase {
    var server: RedisServer!
    var clients: [RedisClient] = []
    var readers: [Task<Void, Never>] = []

    override func setUpWithError() throws { server = try RedisServer.start() }
    override func tearDown() async throws {
        for r in readers { r.cancel() }
        readers = []
        for c in clients { await c.shutdown() }
        clients = []
        server?.stop()
    }

    /// A bus with its reader running, as a dispatcher has.
    func bus(window: Int = 100) async throws -> RedisEventBus {
        var config = RedisConfiguration(endpoint: try RedisEndpoint(url: server.url))
        config.commandTimeout = .seconds(2)
        let c = try await RedisClient.connect(config)
        clients.append(c)
        let b = RedisEventBus(client: c, keyPrefix: "test", replayWindow: { window })
        readers.append(Task { await b.run() })
        return b
    }

    /// Reads a stream into a list for its whole life (cancelling the reading task would
    /// end the stream), so a test can wait for the first N events, or see what came by a
    /// deadline.
    final class Collector: @unchecked Sendable {
        let lock = NSLock()
        var events: [Event] = []
        var task: Task<Void, Never>?

        init(_ stream: AsyncStream<Event>) {
            task = Task { [self] in
                for await e in stream { add(e) }
            }
        }

        func add(_ e: Event) { lock.withLock { events.append(e) } }
        var snapshot: [Event] { lock.withLock { events } }

        /// The first `n` events, or all that came before `timeout` passed.
        func first(_ n: Int, timeout: Duration = .seconds(5)) async -> [Event] {
            let deadline = ContinuousClock.now + timeout
            while snapshot.count < n && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
            return Array(snapshot.prefix(n))
        }

        deinit { task?.cancel() }
    }

    func testASubscriberOnOneDispatcherFollowsWhatAnotherPublishes() async throws {
        let a = try await bus(), b = try await bus()
        var published: [Event] = []
        for i in 0..<3 { published.append(await a.publish(subject: "job_1", type: .progressUpdated, payload: #"{"progress":\#(i)}"#)) }
        published.append(await b.publish(subject: "job_1", type: .jobAssigned, payload: #"{"engine_id":"e"}"#))
        XCTAssertEqual(published.map(\.id), published.map(\.id).sorted(), "ids increase across both publishers")
        XCTAssertEqual(Set(published.map(\.id)).count, 4)

        // Replay of everything, then live events from both.
        let sub = await b.subscribe(subject: "job_1", after: nil)
        XCTAssertEqual(sub.replayedThrough, published.last!.id)
        let followed = Collector(sub.events)
        let replayed = await followed.first(4)
        XCTAssertEqual(replayed, published)
        let live1 = await a.publish(subject: "job_1", type: .jobFinished, payload: #"{"state":"completed"}"#)
        _ = await a.publish(subject: "job_2", type: .jobCreated, payload: "{}")  // another subject: not for this subscriber
        let live2 = await b.publish(subject: "job_1", type: .jobStateChanged, payload: "{}")
        let live = await followed.first(6).dropFirst(4)
        XCTAssertEqual(Array(live), [live1, live2])

        // Last-Event-ID: only what came after it.
        let resumed = await a.subscribe(subject: "job_1", after: published[1].id)
        let rest = await Collector(resumed.events).first(4)
        XCTAssertEqual(rest.map(\.id), [published[2].id, published[3].id, live1.id, live2.id])
        XCTAssertEqual(rest[3].type, .jobStateChanged)
        XCTAssertEqual(rest[0].payload, #"{"progress":2}"#)
    }

    /// Events published while a subscriber's replay is being read are neither lost nor
    /// repeated: 200 events from the other dispatcher race a subscription.
    func testNothingIsLostOrRepeatedBetweenReplayAndLiveEvents() async throws {
        let a = try await bus(window: 1_000), b = try await bus(window: 1_000)
        let publisher = Task {
            var ids: [UInt64] = []
            for i in 0..<200 { ids.append(await a.publish(subject: "job_r", type: .progressUpdated, payload: #"{"i":\#(i)}"#).id) }
            return ids
        }
        try await Task.sleep(for: .milliseconds(5))
        let sub = await b.subscribe(subject: "job_r", after: nil)
        let ids = await publisher.value
        let got = await Collector(sub.events).first(200, timeout: .seconds(10))
        XCTAssertEqual(got.map(\.id), ids)
    }

    func testOnlyTheReplayWindowIsKept() async throws {
        let a = try await bus(window: 5)
        var last: [UInt64] = []
        for i in 0..<12 { last.append(await a.publish(subject: "job_w", type: .progressUpdated, payload: #"{"i":\#(i)}"#).id) }
        let sub = await a.subscribe(subject: "job_w", after: nil)
        let got = await Collector(sub.events).first(5)
        XCTAssertEqual(got.map(\.id), Array(last.suffix(5)))
        XCTAssertEqual(sub.replayedThrough, last.last)
        // A subject with no events: nothing replayed, and 0 as its newest id.
        let empty = await a.subscribe(subject: "job_none", after: nil)
        XCTAssertEqual(empty.replayedThrough, 0)
        let none = await Collector(empty.events).first(1, timeout: .milliseconds(300))
        XCTAssertEqual(none, [])
    }

    /// subscribeAll is this process's events only: a webhook is enqueued once, by the
    /// dispatcher that finished the job.
    func testSubscribeAllHearsOnlyThisProcess() async throws {
        let a = try await bus(), b = try await bus()
        let all = Collector(await b.subscribeAll())
        _ = await a.publish(subject: "job_x", type: .jobFinished, payload: "{}")
        let mine = await b.publish(subject: "job_y", type: .jobFinished, payload: "{}")
        let got = await all.first(2, timeout: .milliseconds(800))
        XCTAssertEqual(got, [mine])
    }

    func testWithRedisDownPublishesReachLocalSubscribersAndTheReaderResumes() async throws {
        let a = try await bus(), b = try await bus()
        let before = await a.publish(subject: "job_d", type: .jobCreated, payload: "{}")
        let sub = Collector(await a.subscribe(subject: "job_d", after: nil).events)
        let first = await sub.first(1)
        XCTAssertEqual(first, [before])
        server.halt()
        let local = await a.publish(subject: "job_d", type: .progressUpdated, payload: #"{"progress":0.5}"#)
        XCTAssertGreaterThan(local.id, before.id)
        let got = await sub.first(2)
        XCTAssertEqual(got, [before, local], "a publish while Redis is down still reaches this process's subscribers")
        try server.restart()
        // Once Redis is back, the other dispatcher's events arrive again through the reader.
        var after: Event?
        for _ in 0..<20 where after == nil {
            let e = await b.publish(subject: "job_d", type: .jobFinished, payload: "{}")
            let seen = await sub.first(3, timeout: .milliseconds(500))
            if e.id > local.id, seen.count == 3 { after = seen[2] }
        }
        XCTAssertNotNil(after, "the reader did not resume after Redis came back")
        XCTAssertEqual(after?.type, .jobFinished)
    }

    /// The record cache beside the bus: a publish replaces a cached entry with its
    /// generation marker; a fill that saw an older generation is refused; with Redis down
    /// at a publish, the invalidation is owed (this process's cache reads bypass Redis)
    /// and the reader pays it once Redis is back (an entry kept over the restart is gone).
    func testPublishesInvalidateTheRecordCacheAndOwedInvalidationsArePaid() async throws {
        server.stop()
        server = try RedisServer.start(appendOnly: true)
        let a = try await bus()
        let cache = RedisRecordCache(bus: a, ttl: .seconds(60))
        guard case .miss(let g0) = await cache.lookup("job_c") else { return XCTFail("a hit on an empty cache") }
        XCTAssertEqual(g0, "")
        await cache.fill("job_c", Array("v1".utf8), generation: g0)
        let hit = await cache.lookup("job_c")
        XCTAssertEqual(hit, .hit(Array("v1".utf8)))
        // A reader looks (sees the marker of change 1)...
        await a.publish(subject: "job_c", type: .jobStateChanged, payload: "{}")
        guard case .miss(let g1) = await cache.lookup("job_c") else { return XCTFail("the publish left the entry") }
        XCTAssertTrue(g1?.hasPrefix("g:") == true, "\(String(describing: g1))")
        // ...change 2 commits and publishes before the reader fills what it read (change 1's state).
        await a.publish(subject: "job_c", type: .jobStateChanged, payload: "{}")
        await cache.fill("job_c", Array("v-stale".utf8), generation: g1)
        XCTAssertEqual(cache.figures.refusedFills, 1)
        guard case .miss(let g2) = await cache.lookup("job_c") else { return XCTFail("the stale fill was stored") }
        await cache.fill("job_c", Array("v3".utf8), generation: g2)
        let v3 = await cache.lookup("job_c")
        XCTAssertEqual(v3, .hit(Array("v3".utf8)))
        try await a.client.send(["BGREWRITEAOF"])
        try await Task.sleep(for: .milliseconds(300))

        // Redis goes away; a change is published meanwhile: owed, and the cache is bypassed.
        server.halt()
        await a.publish(subject: "job_c", type: .jobFinished, payload: "{}")
        XCTAssertTrue(a.owesInvalidations)
        let bypassed = await cache.lookup("job_c")
        XCTAssertEqual(bypassed, .miss(generation: nil))
        try server.restart()
        // The reader pays what is owed once Redis answers; the entry kept by the AOF is gone.
        let deadline = ContinuousClock.now + .seconds(10)
        while a.owesInvalidations && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertFalse(a.owesInvalidations, "the owed invalidation was not paid")
        guard case .miss(let g4) = await cache.lookup("job_c") else { return XCTFail("the entry from before the outage is still served") }
        XCTAssertTrue(g4?.hasPrefix("g:local-") == true, "\(String(describing: g4))")
    }

    /// A subscription made before the reader has begun (a dispatcher starting) still gets
    /// the events published between its replay and the reader's first read.
    func testASubscriptionBeforeTheReaderBeganMissesNothing() async throws {
        let a = try await bus()
        var config = RedisConfiguration(endpoint: try RedisEndpoint(url: server.url))
        config.commandTimeout = .seconds(2)
        let c = try await RedisClient.connect(config)
        clients.append(c)
        let late = RedisEventBus(client: c, keyPrefix: "test")
        _ = await a.publish(subject: "job_s", type: .jobCreated, payload: "{}")
        let sub = Collector(await late.subscribe(subject: "job_s", after: nil).events)
        let meanwhile = await a.publish(subject: "job_s", type: .jobAssigned, payload: "{}")
        for i in 0..<5 { _ = await a.publish(subject: "job_other", type: .progressUpdated, payload: #"{"i":\#(i)}"#) }
        readers.append(Task { await late.run() })
        let got = await sub.first(2)
        XCTAssertEqual(got.map(\.type), [.jobCreated, .jobAssigned])
        XCTAssertEqual(got.last, meanwhile)
    }

    func testIdsMapToStreamIdsAndBack() {
        XCTAssertEqual(RedisEventBus.eventID("1700000000000-0"), 1_700_000_000_000 << 20)
        XCTAssertEqual(RedisEventBus.eventID("1700000000000-5"), 1_700_000_000_000 << 20 | 5)
        XCTAssertEqual(RedisEventBus.streamID(1_700_000_000_000 << 20 | 5), "1700000000000-5")
        for bad in ["", "1", "a-1", "1-", "-1", "1-1048576", "1-2-3"] { XCTAssertNil(RedisEventBus.eventID(bad), bad) }
        XCTAssertLessThanOrEqual(RedisEventBus.eventID("8796093022207-1048575")!, UInt64(Int64.max))
    }
}
