// The MessageQueue contract, written once and run against every implementation: the
// in-process queue on a manual clock and the Redis Streams queue on a real server and
// real time. Timing-dependent assertions check the elapsed time first where the clock is
// real, so a slow machine skips an assertion instead of failing it.
import MessageQueue
import Threads
import XCTest

struct QueueHarness {
    let queue: any MessageQueue
    /// The time unit the test scales by (visibility timeouts are a few units).
    let unit: Duration
    let advance: (Duration) async throws -> Void
    let now: () -> Duration
}

enum QueueContract {
    static func fifoUntilAcked(_ h: QueueHarness) async throws {
        let q = h.queue
        for i in 0..<5 { try await q.publish(topic: "t", body: "m\(i)") }
        let first = try await q.receive(topic: "t", consumer: "c", max: 3, visibility: h.unit * 100, wait: .zero)
        XCTAssertEqual(first.map(\.message.body), ["m0", "m1", "m2"])
        XCTAssertEqual(first.map(\.message.deliveryCount), [1, 1, 1])
        let rest = try await q.receive(topic: "t", consumer: "c", max: 10, visibility: h.unit * 100, wait: .zero)
        XCTAssertEqual(rest.map(\.message.body), ["m3", "m4"], "in-flight messages are not handed out again")
        let awaited1 = try await q.queuedBodies(topic: "t", limit: 10).sorted()
        XCTAssertEqual(awaited1, ["m0", "m1", "m2", "m3", "m4"])
        let depth = await q.depth(topic: "t")
        XCTAssertEqual(depth.inFlight, 5)
        for d in first + rest { try await q.ack(d) }
        let after = await q.depth(topic: "t")
        XCTAssertEqual(after.waiting, 0)
        XCTAssertEqual(after.inFlight, 0)
        let awaited2 = try await q.queuedBodies(topic: "t", limit: 10)
        XCTAssertEqual(awaited2, [])
        let none = try await q.receive(topic: "t", consumer: "c", max: 10, visibility: h.unit, wait: .zero)
        XCTAssertTrue(none.isEmpty, "acked messages never come back")
    }

    static func redeliveryStaleReceiptsAndDeath(_ h: QueueHarness) async throws {
        let q = h.queue
        try await q.publish(topic: "t", body: "job")
        let d1 = try await q.receive(topic: "t", consumer: "a", max: 1, visibility: h.unit, wait: .zero)[0]
        try await h.advance(h.unit * 1.5)
        let d2 = try await q.receive(topic: "t", consumer: "b", max: 1, visibility: h.unit, wait: .zero)[0]
        XCTAssertEqual(d2.message.id, d1.message.id)
        XCTAssertEqual(d2.message.deliveryCount, 2)
        do { try await q.ack(d1); XCTFail("a stale receipt must be refused") } catch is QueueError {}
        do { try await q.extend(d1, visibility: h.unit); XCTFail("a stale receipt must be refused") } catch is QueueError {}
        do { try await q.nack(d1, requeue: true, reason: ""); XCTFail("a stale receipt must be refused") } catch is QueueError {}
        try await h.advance(h.unit * 1.5)
        let d3 = try await q.receive(topic: "t", consumer: "c", max: 1, visibility: h.unit, wait: .zero)[0]
        XCTAssertEqual(d3.message.deliveryCount, 3)
        try await h.advance(h.unit * 1.5)
        let gone = try await q.receive(topic: "t", consumer: "c", max: 1, visibility: h.unit, wait: .zero)
        XCTAssertTrue(gone.isEmpty, "after 3 deliveries without an ack it is dead")
        let dead = try await q.deadLetters(topic: "t", limit: 10)
        XCTAssertEqual(dead.map(\.message.body), ["job"])
        XCTAssertEqual(dead.first?.reason, "delivered 3 times without an ack")
        XCTAssertEqual(dead.first?.message.id, d1.message.id)
    }

    static func extendKeepsInFlight(_ h: QueueHarness) async throws {
        let q = h.queue
        try await q.publish(topic: "t", body: "long")
        let d = try await q.receive(topic: "t", consumer: "a", max: 1, visibility: h.unit * 2, wait: .zero)[0]
        try await h.advance(h.unit * 1.2)
        try await q.extend(d, visibility: h.unit * 2)
        let extendedAt = h.now()
        try await h.advance(h.unit * 1.2)
        let early = try await q.receive(topic: "t", consumer: "b", max: 1, visibility: h.unit * 2, wait: .zero)
        if h.now() - extendedAt < h.unit * 2 {
            XCTAssertTrue(early.isEmpty, "extended: still in flight")
        }
        try await h.advance(h.unit * 1.5)
        let again = try await q.receive(topic: "t", consumer: "b", max: 1, visibility: h.unit * 2, wait: .zero)
        XCTAssertEqual(again.map(\.message.body), early.isEmpty ? ["long"] : [])
        // The extended delivery still holds until it was redelivered; the new one acks.
        if let d2 = (early + again).first {
            do { try await q.ack(d); XCTFail("stale after the redelivery") } catch is QueueError {}
            try await q.ack(d2)
        }
    }

    static func nackRequeuesOrBuries(_ h: QueueHarness) async throws {
        let q = h.queue
        try await q.publish(topic: "t", body: "a")
        try await q.publish(topic: "t", body: "b")
        let both = try await q.receive(topic: "t", consumer: "c", max: 2, visibility: h.unit * 100, wait: .zero)
        try await q.nack(both[0], requeue: true, reason: "engine busy")
        try await q.nack(both[1], requeue: false, reason: "unreadable input")
        let again = try await q.receive(topic: "t", consumer: "c", max: 5, visibility: h.unit * 100, wait: .zero)
        XCTAssertEqual(again.map(\.message.body), ["a"])
        XCTAssertEqual(again.first?.message.deliveryCount, 2, "a requeued message keeps its delivery count")
        try await q.ack(again[0])
        try await q.deadLetter(topic: "t", body: "c", reason: "failed after 3 attempt(s)")
        let dead = try await q.deadLetters(topic: "t", limit: 10)
        XCTAssertEqual(dead.map(\.message.body), ["b", "c"])
        XCTAssertEqual(dead.map(\.reason), ["unreadable input", "failed after 3 attempt(s)"])
        let awaited3 = try await q.deadLetters(topic: "t", limit: 1).map(\.message.body)
        XCTAssertEqual(awaited3, ["c"], "the newest, last")
        let awaited4 = try await q.deadLetters(topic: "other", limit: 10)
        XCTAssertEqual(awaited4, [])
    }

    static func longPollEndsOnPublish(_ h: QueueHarness) async throws {
        let q = h.queue
        let start = h.now()
        let unit = h.unit
        let waiter = Task { try await q.receive(topic: "lp", consumer: "c", max: 1, visibility: unit * 100, wait: unit * 40) }
        try await Task.sleep(for: .milliseconds(100))
        try await q.publish(topic: "lp", body: "wake")
        let got = try await waiter.value
        XCTAssertEqual(got.map(\.message.body), ["wake"])
        XCTAssertLessThan(h.now() - start, h.unit * 40, "a publish ends the wait")
        // Nothing published: the wait ends empty at its deadline.
        let empty = try await q.receive(topic: "lp", consumer: "c", max: 1, visibility: h.unit, wait: .milliseconds(150))
        XCTAssertTrue(empty.isEmpty)
    }
}

final class InProcessQueueContractTests: XCTestCase {
    func harness() -> QueueHarness {
        let clock = ManualClock()
        return QueueHarness(queue: InProcessMessageQueue(clock: clock, maxDeliveries: 3), unit: .seconds(1),
                            advance: { clock.advance(by: $0) }, now: { Duration.nanoseconds(clock.now.nanoseconds) })
    }
    func testFIFOUntilAcked() async throws { try await QueueContract.fifoUntilAcked(harness()) }
    func testRedeliveryStaleReceiptsAndDeath() async throws { try await QueueContract.redeliveryStaleReceiptsAndDeath(harness()) }
    func testExtendKeepsInFlight() async throws { try await QueueContract.extendKeepsInFlight(harness()) }
    func testNackRequeuesOrBuries() async throws { try await QueueContract.nackRequeuesOrBuries(harness()) }
}
