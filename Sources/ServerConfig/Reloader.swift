// ServerConfig.Reloader: a running server's configuration after start. On SIGHUP (a
// request on the stream Lifecycle gives) and when the file changes (its identity polled
// every 2 s on the injected clock) it loads and validates everything again, then applies
// only the reloadable keys to LiveSettings. A changed key that needs a restart is kept out
// and logged; an invalid configuration changes nothing and is logged with its problems.
import Logging
import ProcFS
import Synchronization
import Threads

public enum ReloadOutcome: Sendable, Equatable {
    /// The file did not change (poll) .
    case unchanged
    /// Validated: `changed` are the reloadable keys now in effect with new values;
    /// `needsRestart` the other keys whose new values wait for a restart.
    case applied(changed: [String], needsRestart: [String])
    /// Invalid: the old settings stay.
    case rejected(ConfigError)
}

public final class Reloader: Sendable {
    public let loader: ConfigLoader
    public let live: LiveSettings
    public let pollInterval: Duration
    private let clock: any MonotonicClock
    private let logger: Logger
    /// The file's identity at the last load (nil: no file, or it was missing).
    private let lastSeen: Mutex<FileIdentity?>

    public init(loader: ConfigLoader, live: LiveSettings, clock: any MonotonicClock,
                pollInterval: Duration = .seconds(2), logger: Logger = Logger(label: "spool.config")) {
        self.loader = loader
        self.live = live
        self.clock = clock
        self.pollInterval = pollInterval
        self.logger = logger
        self.lastSeen = Mutex(loader.filePath.flatMap(FileIdentity.of))
    }

    /// The poll: reloads when the file's inode, size or mtime changed since the last look.
    @discardableResult
    public func check() -> ReloadOutcome {
        guard let path = loader.filePath else { return .unchanged }
        let now = FileIdentity.of(path)
        let changed = lastSeen.withLock { seen in
            defer { seen = now }
            return seen != now
        }
        guard changed else { return .unchanged }
        if now == nil {
            logger.warning("configuration file \(path) is gone; keeping the current settings")
            return .unchanged
        }
        return reload(reason: "\(path) changed")
    }

    /// Loads, validates and applies the reloadable keys (SIGHUP, or a changed file).
    @discardableResult
    public func reload(reason: String = "SIGHUP") -> ReloadOutcome {
        if let path = loader.filePath { lastSeen.withLock { $0 = FileIdentity.of(path) } }
        let fresh: ServerSettings
        do { fresh = try loader.load() } catch {
            logger.error("configuration reload (\(reason)) rejected; the current settings stay: \(error)")
            return .rejected(error)
        }
        let current = live.current
        var next = current
        var changed: [String] = [], needsRestart: [String] = []
        for spec in SettingsSchema.all where spec.get(fresh) != spec.get(current) {
            if spec.reloadable {
                spec.set(&next, spec.get(fresh))
                changed.append(spec.key)
            } else {
                needsRestart.append(spec.key)
            }
        }
        // The merged settings (new safe keys, old restart-only keys) must hold together too.
        let crossProblems = SettingsSchema.crossKeyProblems(next)
        if !crossProblems.isEmpty {
            let error = ConfigError(crossProblems)
            logger.error("configuration reload (\(reason)) rejected; the current settings stay: \(error)")
            return .rejected(error)
        }
        if !changed.isEmpty { live.replace(next) }
        for key in needsRestart {
            let spec = SettingsSchema.spec(key)!
            logger.warning("configuration reload (\(reason)): \(key) changed from \(spec.shown(spec.get(current))) to \(spec.shown(spec.get(fresh))): needs a restart; the running value stays")
        }
        logger.info("configuration reloaded (\(reason)): \(changed.isEmpty ? "no reloadable key changed" : "now in effect: " + changed.joined(separator: ", "))")
        if changed.contains("log_level") { ProcessLogLevel.set(named: next.logLevel) }
        return .applied(changed: changed, needsRestart: needsRestart)
    }

    /// Runs until cancelled: a reload for each request (SIGHUP), a check every poll interval.
    public func run(requests: AsyncStream<Void>) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                for await _ in requests { reload() }
            }
            group.addTask { [self] in
                while !Task.isCancelled {
                    do { try await clock.sleep(until: clock.now + pollInterval) } catch { return }
                    check()
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
