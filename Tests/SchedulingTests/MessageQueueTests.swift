// The in-process MessageQueue's at-least-once contract: FIFO delivery, in flight until
// acked, redelivery after the visibility timeout with a higher delivery count (and the old
// receipt refused), nack to requeue or to the dead letters, dead letters after too many
// deliveries, extending visibility, long-poll waits ended by a publish.
import MessageQueue
import Threads
import XCTest

final class MessageQueueTests: XCTestCase {
    func testDeliveredOnceUntilAckedInOrder() async throws {
        let clock = ManualClock()
        let q = InProcessMessageQueue(clock: clock)
        for i in 0..<5 { try await q.publish(topic: "t", body: "m\(i)") }
        let first = try await q.receive(topic: "t", consumer: "c", max: 3, visibility: .seconds(10), wait: .zero)
        XCTAssertEqual(first.map(\.message.body), ["m0", "m1", "m2"])
        XCTAssertEqual(first.map(\.message.deliveryCount), [1, 1, 1])
        let rest = try await q.receive(topic: "t", consumer: "c", max: 10, visibility: .seconds(10), wait: .zero)
        XCTAssertEqual(rest.map(\.message.body), ["m3", "m4"], "in-flight messages are not handed out again")
        let none = try await q.receive(topic: "t", consumer: "c", max: 10, visibility: .seconds(10), wait: .zero)
        XCTAssertTrue(none.isEmpty)
        for d in first + rest { try await q.ack(d) }
        let depth = await q.depth(topic: "t")
        XCTAssertEqual(depth.waiting, 0)
        XCTAssertEqual(depth.inFlight, 0)
        clock.advance(by: .seconds(60))
        let after = try await q.receive(topic: "t", consumer: "c", max: 10, visibility: .seconds(10), wait: .zero)
        XCTAssertTrue(after.isEmpty, "acked messages never come back")
    }

    func testRedeliveryAfterVisibilityAndStaleReceipts() async throws {
        let clock = ManualClock()
        let q = InProcessMessageQueue(clock: clock, maxDeliveries: 3)
        try await q.publish(topic: "t", body: "job")
        let d1 = try await q.receive(topic: "t", consumer: "a", max: 1, visibility: .seconds(10), wait: .zero)[0]
        clock.advance(by: .seconds(5))
        try await q.extend(d1, visibility: .seconds(10))
        clock.advance(by: .seconds(9))
        let early = try await q.receive(topic: "t", consumer: "b", max: 1, visibility: .seconds(10), wait: .zero)
        XCTAssertTrue(early.isEmpty, "extended: still in flight")
        clock.advance(by: .seconds(2))
        let d2 = try await q.receive(topic: "t", consumer: "b", max: 1, visibility: .seconds(10), wait: .zero)[0]
        XCTAssertEqual(d2.message.id, d1.message.id)
        XCTAssertEqual(d2.message.deliveryCount, 2)
        do { try await q.ack(d1); XCTFail("a stale receipt must be refused") } catch is QueueError {}
        do { try await q.extend(d1, visibility: .seconds(1)); XCTFail("a stale receipt must be refused") } catch is QueueError {}
        clock.advance(by: .seconds(11))
        let d3 = try await q.receive(topic: "t", consumer: "c", max: 1, visibility: .seconds(10), wait: .zero)[0]
        XCTAssertEqual(d3.message.deliveryCount, 3)
        clock.advance(by: .seconds(11))
        let gone = try await q.receive(topic: "t", consumer: "c", max: 1, visibility: .seconds(10), wait: .zero)
        XCTAssertTrue(gone.isEmpty, "after 3 deliveries without an ack it is dead")
        let dead = try await q.deadLetters(topic: "t", limit: 10)
        XCTAssertEqual(dead.map(\.message.body), ["job"])
        XCTAssertEqual(dead.first?.reason, "delivered 3 times without an ack")
    }

    func testNackRequeuesOrBuries() async throws {
        let clock = ManualClock()
        let q = InProcessMessageQueue(clock: clock)
        try await q.publish(topic: "t", body: "a")
        try await q.publish(topic: "t", body: "b")
        let ds = try await q.receive(topic: "t", consumer: "c", max: 2, visibility: .seconds(10), wait: .zero)
        try await q.nack(ds[0], requeue: true, reason: "later")
        try await q.nack(ds[1], requeue: false, reason: "cannot be done")
        let again = try await q.receive(topic: "t", consumer: "c", max: 5, visibility: .seconds(10), wait: .zero)
        XCTAssertEqual(again.map(\.message.body), ["a"])
        XCTAssertEqual(again.first?.message.deliveryCount, 2)
        try await q.deadLetter(topic: "t", body: "c", reason: "failed for good")
        let dead = try await q.deadLetters(topic: "t", limit: 10)
        XCTAssertEqual(dead.map(\.message.body), ["b", "c"])
        XCTAssertEqual(dead.map(\.reason), ["cannot be done", "failed for good"])
        let newest = try await q.deadLetters(topic: "t", limit: 1)
        XCTAssertEqual(newest.map(\.message.body), ["c"])
    }

    func testReceiveWaitsForAPublish() async throws {
        let q = InProcessMessageQueue(clock: SystemClock.shared)
        let started = SystemClock.shared.now
        async let got = q.receive(topic: "t", consumer: "c", max: 1, visibility: .seconds(10), wait: .seconds(5))
        try await Task.sleep(for: .milliseconds(50))
        try await q.publish(topic: "t", body: "late")
        let ds = try await got
        XCTAssertEqual(ds.map(\.message.body), ["late"])
        XCTAssertLessThan(SystemClock.shared.now - started, .seconds(5), "the publish ended the wait")
        let empty = try await q.receive(topic: "t", consumer: "c", max: 1, visibility: .seconds(10), wait: .milliseconds(50))
        XCTAssertTrue(empty.isEmpty)
    }
}
