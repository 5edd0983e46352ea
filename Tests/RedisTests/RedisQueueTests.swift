// The Redis Streams queue: the MessageQueue contract on a real redis-server, then what
// only a shared queue has to survive: competing consumers on separate connections (each
// message handled once), FLUSHALL (the group is recreated, old receipts are refused), a
// restart with AOF (waiting and in-flight messages are still there), and idle consumers pruned.
import MessageQueue
import Redis
import RedisQueue
import SpoolTestSupport
import Threads
import XCTest

final class RedisQueueTests: XCTestCase {
    var server: RedisServer!
    var clients: [RedisClient] = []

    override func setUpWithError() throws { server = try RedisServer.start(appendOnly: name.contains("Restart")) }
    override func tearDown() async throws {
        for c in clients { await c.shutdown() }
        clients = []
        server?.stop()
    }

    func queue(maxDeliveries: Int = 3) async throws -> RedisStreamsQueue {
        let c = try await RedisClient.connect(RedisConfiguration(endpoint: try RedisEndpoint(url: server.url)))
        clients.append(c)
        return RedisStreamsQueue(client: c, keyPrefix: "test", maxDeliveries: maxDeliveries)
    }

    func harness() async throws -> QueueHarness {
        let start = ContinuousClock.now
        return QueueHarness(queue: try await queue(), unit: .milliseconds(400),
                            advance: { try await Task.sleep(for: $0) }, now: { ContinuousClock.now - start })
    }

    func testFIFOUntilAcked() async throws { try await QueueContract.fifoUntilAcked(try await harness()) }
    func testRedeliveryStaleReceiptsAndDeath() async throws { try await QueueContract.redeliveryStaleReceiptsAndDeath(try await harness()) }
    func testExtendKeepsInFlight() async throws { try await QueueContract.extendKeepsInFlight(try await harness()) }
    func testNackRequeuesOrBuries() async throws { try await QueueContract.nackRequeuesOrBuries(try await harness()) }
    func testLongPollEndsOnPublish() async throws { try await QueueContract.longPollEndsOnPublish(try await harness()) }

    func testCompetingConsumersHandleEachMessageOnce() async throws {
        let producer = try await queue()
        let consumers = [try await queue(), try await queue()]
        let total = 300
        for i in 0..<total { try await producer.publish(topic: "jobs", body: "job-\(i)") }
        let seen = try await withThrowingTaskGroup(of: [String].self) { g in
            for w in 0..<4 {
                g.addTask {
                    let q = consumers[w % 2]
                    var mine: [String] = []
                    while true {
                        let got = try await q.receive(topic: "jobs", consumer: "w\(w)", max: 7, visibility: .seconds(60), wait: .zero)
                        if got.isEmpty { break }
                        for d in got { try await q.ack(d); mine.append(d.message.body) }
                    }
                    return mine
                }
            }
            var all: [String] = []
            for try await m in g { all += m }
            return all
        }
        XCTAssertEqual(seen.count, total, "each message handled once")
        XCTAssertEqual(Set(seen).count, total)
        let depth = await producer.depth(topic: "jobs")
        XCTAssertEqual(depth.waiting + depth.inFlight, 0)
    }

    func testFlushAllLosesMessagesButNotTheQueue() async throws {
        let q = try await queue()
        try await q.publish(topic: "jobs", body: "before")
        let d = try await q.receive(topic: "jobs", consumer: "c", max: 1, visibility: .seconds(60), wait: .zero)[0]
        try await q.client.send(["FLUSHALL"])
        do { try await q.ack(d); XCTFail("the receipt went with the data") } catch is QueueError {}
        let awaited1 = try await q.queuedBodies(topic: "jobs", limit: 10)
        XCTAssertEqual(awaited1, [], "what the reconciler sees: nothing queued")
        try await q.publish(topic: "jobs", body: "after")
        let got = try await q.receive(topic: "jobs", consumer: "c", max: 5, visibility: .seconds(60), wait: .zero)
        XCTAssertEqual(got.map(\.message.body), ["after"])
        try await q.ack(got[0])
    }

    func testRestartWithAppendOnlyFileKeepsWaitingAndInFlight() async throws {
        let q = try await queue()
        for i in 0..<4 { try await q.publish(topic: "jobs", body: "m\(i)") }
        let flying = try await q.receive(topic: "jobs", consumer: "c", max: 2, visibility: .milliseconds(300), wait: .zero)
        XCTAssertEqual(flying.count, 2)
        try server.restart()
        try await Task.sleep(for: .milliseconds(400))
        var bodies: [String] = []
        for _ in 0..<3 {
            let got = try await q.receive(topic: "jobs", consumer: "d", max: 10, visibility: .milliseconds(300), wait: .zero)
            for d in got { try await q.ack(d); bodies.append(d.message.body) }
            if bodies.count == 4 { break }
        }
        XCTAssertEqual(bodies.sorted(), ["m0", "m1", "m2", "m3"], "the in-flight ones are redelivered, the waiting ones delivered")
    }

    func testUnreachableRedisIsAQueueError() async throws {
        let q = try await queue()
        server.halt()
        do {
            try await q.publish(topic: "jobs", body: "x")
            XCTFail("Redis is down")
        } catch let e as QueueError {
            XCTAssertTrue(e.description.contains("redis"), e.description)
        }
        let depth = await q.depth(topic: "jobs")
        XCTAssertEqual(depth.waiting, 0)
    }

    /// Consumers of stopped dispatchers are removed once idle, never one holding a message.
    func testIdleConsumersWithNothingPendingArePruned() async throws {
        let q = try await queue()
        try await q.publish(topic: "jobs", body: "a")
        try await q.publish(topic: "jobs", body: "b")
        let gone = try await q.receive(topic: "jobs", consumer: "scheduler-old-1", max: 1, visibility: .seconds(60), wait: .zero)
        try await q.ack(gone[0])
        let holding = try await q.receive(topic: "jobs", consumer: "scheduler-old-2", max: 1, visibility: .seconds(60), wait: .zero)
        XCTAssertEqual(holding.count, 1)
        try await Task.sleep(for: .milliseconds(50))
        let tooFresh = try await q.pruneConsumers(topic: "jobs", idle: .seconds(3_600))
        XCTAssertEqual(tooFresh, [], "an idle time not reached yet removes nothing")
        let removed = try await q.pruneConsumers(topic: "jobs", idle: .milliseconds(10))
        XCTAssertEqual(removed, ["scheduler-old-1"], "only the consumer holding nothing")
        try await q.ack(holding[0])  // the other's receipt still settles its message
        let names = try await q.client.send(["XINFO", "CONSUMERS", "test:q:jobs", "spool"]).array?.count
        XCTAssertEqual(names, 1)
    }
}
