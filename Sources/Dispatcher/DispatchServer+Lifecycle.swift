// Dispatcher.DispatchServer+Lifecycle: what a running server does besides answering
// requests: the admin key at start, and the periodic sweeps (job expiry and retries,
// engines past their heartbeat, the queue's reconciler, a shared event bus's reader), each
// on the injected clock until cancelled.
import Access
import SpoolModel
import Ring
import ServerConfig
import Threads

extension DispatchServer {
    /// With authentication on: registers SPOOL_ADMIN_KEY, or generates an admin key into
    /// the data directory when none exists yet. Returns a generated key (to print once).
    public func prepareAdminKey(environment: [String: String]) async throws -> String? {
        if settings.current.insecureNoAuth { return nil }
        if let warning = adminKeyFileWarning(dataDirectory: dataDirectory) { logger.warning("\(warning)") }
        return try await access.ensureAdminKey(fromEnvironment: environment["SPOOL_ADMIN_KEY"], dataDirectory: dataDirectory)
    }

    /// Engines past their heartbeat timeout become offline and lose the jobs they held.
    @discardableResult
    public func sweepEngines() async throws -> [EngineID] {
        let gone = try await engines.sweep()
        for id in gone {
            logger.warning("engine \(id.text) missed its heartbeats: offline; its jobs go back to the queue")
            try await scheduler.reclaim(engine: id, listed: nil)
        }
        return gone
    }

    /// Runs the sweeps until the task is cancelled.
    public func runBackground() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                var passes = 0
                while !Task.isCancelled {
                    do { try await clock.sleep(until: clock.now + .seconds(2)) } catch { return }
                    do { try await sweepEngines() } catch { logger.error("engine sweep failed: \(error)") }
                    // Once a minute: engines offline past engines.offline_retention_seconds
                    // are forgotten, so the table does not grow with every engine ever seen.
                    passes += 1
                    if passes % 30 == 0 {
                        do {
                            let n = try await engines.forgetLongOffline()
                            if n > 0 { logger.notice("forgot \(n) engine(s) offline longer than engines.offline_retention_seconds") }
                        } catch {
                            logger.error("forgetting long-offline engines failed: \(error)")
                        }
                    }
                }
            }
            group.addTask { [self] in await events.run() }
            group.addTask { [self] in await scheduler.run(events: events) }
            group.addTask { [self] in await runReconciler() }
            group.addTask { [self] in
                // Webhook deliveries run on a loop of their own (the HTTP client lives there).
                let loop: EventLoop
                do { loop = try EventLoop.start(id: 900) } catch { logger.error("webhooks: no event loop: \(error)"); return }
                let task = loop.spawn { [self] in await webhooks.run(events: events) }
                await withTaskCancellationHandler { _ = await task.result } onCancel: { task.cancel() }
                loop.shutdown()
            }
            group.addTask { [self] in
                await jobs.runSweeps { [logger] error in logger.error("job sweep failed: \(error)") }
            }
            await group.waitForAll()
        }
    }
}
