// ServerConfig.LiveSettings: the settings a running server reads, replaced as a whole
// when a reload validates (readers see the old or the new value, never a mix).
import Synchronization

public final class LiveSettings: Sendable {
    private let value: Mutex<ServerSettings>
    public init(_ settings: ServerSettings) { value = Mutex(settings) }
    public var current: ServerSettings { value.withLock { $0 } }
    public func replace(_ settings: ServerSettings) { value.withLock { $0 = settings } }
}
