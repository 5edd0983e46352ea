// Jobs.JobService+Sweeps: the periodic work, driven by the injected clock. Pending jobs
// past their expiry time fail with reason `expired` (no automatic retry); retrying jobs
// whose backoff is over become pending; Idempotency-Key records past the retention are
// purged. `runSweeps` repeats `sweepOnce` every jobs.expiry_interval_ms until cancelled.
import Events
import SpoolModel
import Threads

public struct SweepReport: Sendable, Equatable {
    public var expired = 0
    public var retried = 0
    public var purgedKeys = 0
    public init() {}
}

extension JobService {
    static let sweepBatch = 256

    /// One pass at `now` (the clock's calendar time when nil).
    @discardableResult
    public func sweepOnce(now: Int64? = nil) async throws -> SweepReport {
        let now = now ?? clock.unixMilliseconds
        let s = settings()
        var report = SweepReport()
        while true {
            let ids = try await store.idsDueForExpiry(now: now, limit: Self.sweepBatch)
            let changed = try await store.updateMany(ids) { job in
                guard job.state == .pending, job.expiresAt <= now, let next = try? job.state.move(to: .failed) else { return false }
                job.state = next
                job.reason = "expired"
                job.updatedAt = max(now, job.updatedAt + 1)
                return true
            }
            for job in changed { await publish(job, .jobFinished) }
            report.expired += changed.count
            if ids.count < Self.sweepBatch || changed.isEmpty { break }
        }
        while true {
            let ids = try await store.idsDueForRetry(now: now, limit: Self.sweepBatch)
            let changed = try await store.updateMany(ids) { job in
                guard job.state == .retrying, let due = job.nextAttemptAt, due <= now,
                      let next = try? job.state.move(to: .pending) else { return false }
                job.state = next
                job.nextAttemptAt = nil
                job.expiresAt = now + job.ttlSeconds * 1000
                job.updatedAt = max(now, job.updatedAt + 1)
                return true
            }
            for job in changed { await publish(job, .jobStateChanged) }
            if !changed.isEmpty { await hooks.onPending(changed) }
            report.retried += changed.count
            if ids.count < Self.sweepBatch || changed.isEmpty { break }
        }
        report.purgedKeys = try await store.purgeIdempotencyKeys(createdBefore: now - s.idempotencyRetentionSeconds * 1000)
        return report
    }

    /// Sweeps every jobs.expiry_interval_ms (read each round) on the service's clock until
    /// the task is cancelled. A failed pass is reported to `onError` and tried again next round.
    public func runSweeps(onError: @escaping @Sendable (any Error) -> Void = { _ in }) async {
        while !Task.isCancelled {
            let interval = max(10, settings().expiryIntervalMilliseconds)
            do { try await clock.sleep(until: clock.now + .milliseconds(interval)) } catch { return }
            do { try await sweepOnce() } catch { onError(error) }
        }
    }
}
