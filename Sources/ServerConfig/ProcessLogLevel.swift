// ServerConfig.ProcessLogLevel: `log_level` for the whole process, changed by a reload.
// `spool` installs `LevelledLogHandler` as the logging system's factory at start; every
// logger it makes reads its threshold from one atomic, so a level set from the
// configuration (at start, or by a reload: Reloader, on SIGHUP or a file change) applies
// at once to every logger already made, not only to later ones. A logger whose own level was set
// (a test quieting one) keeps that level.
import Logging
import Synchronization

public enum ProcessLogLevel {
    private static let level = Atomic<UInt8>(index(of: .info))

    /// The level every `LevelledLogHandler` without a level of its own logs at.
    public static var current: Logger.Level { Logger.Level.allCases[Int(level.load(ordering: .relaxed))] }

    public static func set(_ l: Logger.Level) { level.store(index(of: l), ordering: .relaxed) }

    /// Sets the level from its configuration name (`SettingsSchema.logLevels`); false
    /// (and nothing changed) for a name that is not one.
    @discardableResult
    public static func set(named name: String) -> Bool {
        guard let l = Logger.Level(rawValue: name) else { return false }
        set(l)
        return true
    }

    private static func index(of l: Logger.Level) -> UInt8 { UInt8(Logger.Level.allCases.firstIndex(of: l)!) }
}

/// Standard error, as swift-log's default handler writes it, at `ProcessLogLevel.current`.
public struct LevelledLogHandler: LogHandler {
    private var inner: StreamLogHandler
    private var ownLevel: Logger.Level?

    public init(label: String) { inner = StreamLogHandler.standardError(label: label) }

    public var logLevel: Logger.Level {
        get { ownLevel ?? ProcessLogLevel.current }
        set { ownLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) { inner.log(event: event) }
}
