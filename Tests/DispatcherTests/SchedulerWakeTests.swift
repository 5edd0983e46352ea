// The scheduler hears of a new job at once, whatever the order in which the job's event
// and its queue message arrive: an engine parked in a long poll gets the job without the
// scheduler's 1-second backstop (the clock here is manual, so the backstop never fires).
import Dispatcher
import Foundation
import MessageQueue
import XCTest

/// A queue whose publishes land 300 ms late (real time): the job's event, and the
/// scheduler round it wakes, come first.
final class LatePublishingQueue: MessageQueue {
    let inner: any MessageQueue
    init(_ inner: any MessageQueue) { self.inner = inner }
    func publish(topic: String, body: String) async throws -> String {
        try await Task.sleep(nanoseconds: 300_000_000)
        return try await inner.publish(topic: topic, body: body)
    }
    func receive(topic: String, consumer: String, max: Int, visibility: Duration, wait: Duration) async throws -> [QueueDelivery] {
        try await inner.receive(topic: topic, consumer: consumer, max: max, visibility: visibility, wait: wait)
    }
    func ack(_ delivery: QueueDelivery) async throws { try await inner.ack(delivery) }
    func nack(_ delivery: QueueDelivery, requeue: Bool, reason: String) async throws { try await inner.nack(delivery, requeue: requeue, reason: reason) }
    func extend(_ delivery: QueueDelivery, visibility: Duration) async throws { try await inner.extend(delivery, visibility: visibility) }
    func deadLetter(topic: String, body: String, reason: String) async throws { try await inner.deadLetter(topic: topic, body: body, reason: reason) }
    func deadLetters(topic: String, limit: Int) async throws -> [DeadLetter] { try await inner.deadLetters(topic: topic, limit: limit) }
    func depth(topic: String) async -> (waiting: Int, inFlight: Int) { await inner.depth(topic: topic) }
    func queuedBodies(topic: String, limit: Int) async throws -> [String] { try await inner.queuedBodies(topic: topic, limit: limit) }
}

final class SchedulerWakeTests: XCTestCase {
    func testAParkedEngineGetsAJobWhoseQueueMessageLandsAfterItsEvent() async throws {
        let h = try await AccessHarness.start(configure: { $0.engines.joinToken = EngineLeaseTests.join },
                                              wrapQueue: { LatePublishingQueue($0) })
        // The scheduler's loop and the event bus, as `spool serve` runs them.
        let background = Task { await h.dispatch.runBackground() }
        // Give the lease 20 s of real time; past that, end the long poll by moving the
        // clock (it then answers 204) and fail.
        let guardTask = Task {
            try await Task.sleep(nanoseconds: 20_000_000_000)
            h.clock.advance(by: .seconds(120))
        }
        var failure: (any Error)?
        do {
            let key = try await h.adminKey()
            let engine = try await h.registerEngine(name: "parked")
            // The long poll: with the manual clock its 30 s never pass by themselves.
            let parked = Task { try await h.call("POST", "/api/v1/engines/\(engine.0)/lease?wait=30", key: engine.1) }
            try await Task.sleep(nanoseconds: 300_000_000)
            let jobID = try await h.submitJob(key: key)
            let answer = try await parked.value
            XCTAssertEqual(answer.status, 200, "the parked engine was not handed the job without the scheduler's backstop: \(answer.text)")
            XCTAssertTrue(answer.text.contains(jobID), answer.text)
        } catch {
            failure = error
        }
        // Everything stops whether or not the test passed.
        guardTask.cancel()
        h.clock.advance(by: .seconds(120))   // a long poll still parked answers now
        background.cancel()
        _ = await background.value
        await h.stop()
        if let failure { throw failure }
    }
}
