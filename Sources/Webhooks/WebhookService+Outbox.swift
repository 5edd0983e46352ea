// Webhooks.WebhookService+Outbox: no finished job goes without its webhook. The delivery
// row is written when the JobFinished event arrives, after the job's commit, so a
// dispatcher that dies in between would lose it. The job row is therefore the outbox
// record: a sweep (at start, then every minute, on every dispatcher) reads the jobs that
// finished with a webhook URL since its mark, in (updated_at, id) order through an index,
// and records a delivery for each finish that has none. Recording is idempotent (the
// delivery id is made from the finish, see `deliveryID`), so the event path, the sweep and
// other dispatchers' sweeps can all try and one row results. The mark is kept in
// webhooks_outbox; each sweep starts `outboxOverlapMilliseconds` before the last one's
// end, so a job stamped earlier but committed later (or stamped by a dispatcher whose clock
// lags) is still seen.
import Jobs
import Relational

extension WebhookService {
    static let outboxSweepIntervalMilliseconds: Int64 = 60_000
    static let outboxOverlapMilliseconds: Int64 = 120_000
    /// Jobs finished more recently than this are left to the event path for now.
    static let outboxSettleMilliseconds: Int64 = 5_000
    /// A database with no mark yet (new, or from before the outbox) is swept this far back.
    static let outboxFirstLookBackMilliseconds: Int64 = 86_400_000
    static let outboxPage = 200

    /// One sweep; returns how many deliveries it recorded (finishes the event path missed).
    @discardableResult
    public func sweepOutbox() async throws -> Int {
        let now = clock.unixMilliseconds
        let through = now - Self.outboxSettleMilliseconds
        var position = try await database.reading { db in
            try db.one("SELECT updated_at, job_id FROM webhooks_outbox WHERE name = 'finished'").map {
                FinishedPosition(updatedAt: try $0.int64("updated_at"), id: try $0.string("job_id"))
            }
        } ?? FinishedPosition(updatedAt: now - Self.outboxFirstLookBackMilliseconds, id: "")
        var recorded = 0
        while true {
            let page = try await jobs.finishedWithWebhook(after: position, through: through, limit: Self.outboxPage)
            guard let last = page.last else { break }
            let covered = try await finishesWithDelivery(page)
            for job in page where !covered.contains(job.id.text) {
                if try await record(job)?.inserted == true { recorded += 1 }
            }
            position = FinishedPosition(updatedAt: last.updatedAt, id: last.id.text)
            if page.count < Self.outboxPage { break }
        }
        if recorded > 0 { logger.warning("webhook outbox: recorded \(recorded) deliveries the event path had missed") }
        // Everything up to `through` was read; the next sweep starts an overlap before it.
        // The mark never moves back: another dispatcher may have swept further.
        _ = try await database.writing { db in
            try db.execute("""
                INSERT INTO webhooks_outbox (name, updated_at, job_id) VALUES ('finished', ?, '')
                ON CONFLICT (name) DO UPDATE SET updated_at = CASE WHEN excluded.updated_at > webhooks_outbox.updated_at
                THEN excluded.updated_at ELSE webhooks_outbox.updated_at END
                """, [through - Self.outboxOverlapMilliseconds])
        }
        return recorded
    }

    /// The ids of `jobs` that already have a delivery for this finish: the same event,
    /// recorded no earlier than the job entered its state. (Deliveries recorded before
    /// ids were made from the finish have random ids; this keeps them from being doubled.)
    func finishesWithDelivery(_ jobs: [Job]) async throws -> Set<String> {
        guard !jobs.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: jobs.count).joined(separator: ", ")
        let rows = try await database.reading { db in
            try db.query("SELECT job_id, event, created_at FROM webhooks_deliveries WHERE job_id IN (\(marks))", jobs.map { $0.id.text })
        }
        var finish: [String: (event: String, at: Int64)] = [:]
        for j in jobs { finish[j.id.text] = ("job." + j.state.rawValue, j.updatedAt) }
        var out: Set<String> = []
        for row in rows {
            let id = try row.string("job_id")
            guard let f = finish[id], try row.string("event") == f.event, try row.int64("created_at") >= f.at else { continue }
            out.insert(id)
        }
        return out
    }
}
