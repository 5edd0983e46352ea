// Dispatcher.DispatchServer+Queue: which MessageQueue the server uses (queue.url: empty
// for the in-process queue, redis:// for Redis Streams shared by several dispatchers) and
// the reconciler that keeps the queue honest to the database.
//
// The database is the system of record: a job is pending there before anything is
// published, so the queue may lose messages (Redis flushed, restarted without its append
// file, a publish that failed while Redis was down) and nothing is lost for good. The
// reconciler compares the pending jobs with what the queue holds (waiting or in flight)
// at start and, with Redis, every queue.reconcile_interval_seconds, and publishes the
// missing ones again. A job published twice is harmless: the scheduler drops a duplicate it holds and
// a job no longer pending.
import Glibc
import Jobs
import Logging
import MessageQueue
import Redis
import RedisQueue
import ServerConfig
import Threads

extension DispatchServer {
    static func openQueue(_ settings: ServerSettings.Queue, clock: any ServiceClock, logger: Logger) async throws -> (any MessageQueue, RedisClient?) {
        guard !settings.url.isEmpty else { return (InProcessMessageQueue(clock: clock), nil) }
        let endpoint = try RedisEndpoint(url: settings.url)
        let client = try await RedisClient.connect(RedisConfiguration(endpoint: endpoint))
        logger.notice("job queue: Redis Streams at \(endpoint), keys \(settings.keyPrefix):q:*")
        return (RedisStreamsQueue(client: client, keyPrefix: settings.keyPrefix, clock: clock), client)
    }

    /// Publishes every pending job the queue does not hold; returns how many.
    @discardableResult
    public func reconcileQueue() async throws -> Int {
        let pending = try await jobs.store.pendingByTenant(limitPerTenant: Int(Int32.max))
        guard !pending.isEmpty else { return 0 }
        let queued = Set(try await queue.queuedBodies(topic: Scheduler.topic, limit: max(10_000, pending.count * 2)))
        var published = 0
        for job in pending where !queued.contains(job.id.text) {
            try await queue.publish(topic: Scheduler.topic, body: job.id.text)
            published += 1
        }
        if published > 0 {
            logger.notice("reconciler: published \(published) pending job(s) the queue did not hold")
            scheduler.wake()
        }
        return published
    }

    /// Runs the reconciler every queue.reconcile_interval_seconds until cancelled, when the
    /// queue can lose messages (Redis). The in-process queue cannot: its start-up pass is
    /// enough, and a periodic one would only read every pending job again for nothing.
    func runReconciler() async {
        guard redis != nil else { return }
        while !Task.isCancelled {
            let interval = Duration.seconds(settings.current.queue.reconcileIntervalSeconds)
            do { try await clock.sleep(until: clock.now + interval) } catch { return }
            do { try await reconcileQueue() } catch { logger.error("reconciler: \(error)") }
            // Consumers of stopped dispatchers (each start names a new one), once idle an hour.
            if let q = queue as? RedisStreamsQueue {
                do {
                    let gone = try await q.pruneConsumers(topic: Scheduler.topic, idle: .seconds(3_600))
                    if !gone.isEmpty { logger.notice("queue: removed \(gone.count) idle consumer(s) of stopped dispatchers: \(gone.joined(separator: ", "))") }
                } catch {
                    logger.warning("queue: consumers not pruned: \(error)")
                }
            }
        }
    }

    /// Why the queue cannot be used now, or nil (readiness).
    func queueProblem() async -> String? {
        guard let redis else { return nil }
        do {
            try await redis.send(["PING"])
            return nil
        } catch {
            return "\(error)"
        }
    }
}
