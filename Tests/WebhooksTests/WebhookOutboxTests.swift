// The webhook outbox: a job that finished while nobody handled its JobFinished event (the
// dispatcher died between the job's commit and the delivery row) still gets its webhook,
// found by the sweep; and however many paths try (the event, this sweep, another
// dispatcher's sweep), one finish gets one delivery, including finishes recorded before
// delivery ids were made from the finish.
import Events
import Foundation
import Jobs
import Relational
import Threads
import Webhooks
import XCTest

extension DeliveryTests {
    /// A JobService on the same database with a clock 30 s behind (past the sweep's
    /// settling time), whose events reach `bus`: nil is a bus nobody listens to.
    func jobService(heard: Bool) -> JobService {
        let past = ManualClock(unixMilliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 30_000)
        return JobService(store: SQLiteJobStore(database: db), events: heard ? bus : InProcessEventBus(replayWindow: { 10 }),
                          clock: past, settings: { JobSettings() })
    }

    func testAFinishWhoseEventWasLostIsDeliveredByTheOutboxSweep() async throws {
        let receiver = try await Receiver(statuses: [200])
        let job = try await finishedJob(url: receiver.url, via: jobService(heard: false))
        try await Task.sleep(for: .milliseconds(300))
        let before = try await webhooks.deliveries(jobID: job.id.text)
        XCTAssertTrue(before.isEmpty, "the event was not heard, so nothing should be recorded yet")
        let swept = try await webhooks.sweepOutbox()
        XCTAssertEqual(swept, 1)
        let d = try await waitForFinalState(job)
        XCTAssertEqual(d.state, .delivered)
        XCTAssertEqual(d.event, "job.failed")
        XCTAssertEqual(receiver.received.count, 1)
        // Sweeping again (here, or as another dispatcher would) records nothing more.
        let again = try await webhooks.sweepOutbox()
        XCTAssertEqual(again, 0)
        let all = try await webhooks.deliveries(jobID: job.id.text)
        XCTAssertEqual(all.count, 1)
    }

    func testTheEventPathAndTheSweepRecordOneDeliveryPerFinish() async throws {
        let receiver = try await Receiver(statuses: [200])
        let job = try await finishedJob(url: receiver.url, via: jobService(heard: true))
        _ = try await waitForFinalState(job)
        let swept = try await webhooks.sweepOutbox()
        XCTAssertEqual(swept, 0, "the event path had recorded it")
        // Recording the same finish again returns the first row.
        let first = try await webhooks.deliveries(jobID: job.id.text)
        let again = try await webhooks.enqueue(job)
        XCTAssertEqual(again?.id, first.first?.id)
        let all = try await webhooks.deliveries(jobID: job.id.text)
        XCTAssertEqual(all.count, 1)
        XCTAssertEqual(receiver.received.count, 1)
    }

    func testADeliveryRecordedWithAnOlderRandomIDIsNotDoubled() async throws {
        let receiver = try await Receiver(statuses: [200])
        let job = try await finishedJob(url: receiver.url, via: jobService(heard: false))
        // A row as the version before the outbox wrote it: a random id, after the finish.
        let at = job.updatedAt + 10
        _ = try await db.writing { db in
            try db.execute("""
                INSERT INTO webhooks_deliveries (id, job_id, tenant, url, event, payload, state, attempts, next_attempt_at, created_at, updated_at)
                VALUES ('msg_0123456789abcdef0123456789abcdef', ?, 'acme', ?, 'job.failed', '{}', 'delivered', 1, NULL, ?, ?)
                """, [job.id.text, receiver.url, at, at])
        }
        let swept = try await webhooks.sweepOutbox()
        XCTAssertEqual(swept, 0)
        let all = try await webhooks.deliveries(jobID: job.id.text)
        XCTAssertEqual(all.map(\.id), ["msg_0123456789abcdef0123456789abcdef"])
    }
}
