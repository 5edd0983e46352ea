// Media.Logging: libav's av_log goes to swift-log instead of stderr. The C shim formats
// each line (av_log_format_line) and calls one registered @convention(c) function, which
// forwards to the Logger installed here. libav's log callback is process-wide, so this is
// the one piece of global state the module keeps; it is set once, before any libav work.
internal import CLibAV
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public enum LibAVLogging {
    private static let target = Mutex<Logger?>(nil)
    private static let installedOnce = Mutex<Bool>(false)

    /// Routes libav messages up to `maxLevel` (an AV_LOG_* value; default 24, which is
    /// AV_LOG_WARNING: CLibAV is an internal import, so its name cannot appear here) to
    /// `logger`. Calling it again replaces the logger.
    public static func install(logger: Logger = Logger(label: "spool.libav"), maxLevel: Int32 = 24) {
        assert(AV_LOG_WARNING == 24)
        target.withLock { $0 = logger }
        // SVT-AV1 logs to stderr itself (not through av_log): keep it to warnings unless the
        // user set SVT_LOG. Set here, once per process (setenv is not safe while other
        // threads read the environment, so never per job).
        unsafe setenv("SVT_LOG", "2", 0)
        unsafe clibav_set_log_callback({ level, line in
            guard let line = unsafe line else { return }
            let text = unsafe String(cString: line)
            LibAVLogging.forward(level: level, text)
        }, maxLevel)
        installedOnce.withLock { $0 = true }
    }

    /// Installs the default route the first time any Media entry point runs.
    static func ensureInstalled() {
        let done = installedOnce.withLock { $0 }
        if !done { install() }
    }

    /// While > 0, libav errors are logged at debug level: probing for hardware devices
    /// makes libav complain about every device that is absent, which is expected.
    private static let expectingFailures = Atomic<Int>(0)

    static func whileExpectingFailures<T>(_ body: () -> T) -> T {
        expectingFailures.add(1, ordering: .relaxed)
        defer { expectingFailures.subtract(1, ordering: .relaxed) }
        return body()
    }

    static func forward(level: Int32, _ text: String) {
        guard let logger = target.withLock({ $0 }) else { return }
        if expectingFailures.load(ordering: .relaxed) > 0 {
            logger.log(level: .debug, "\(text)")
            return
        }
        let l: Logger.Level
        switch level {
        case ...AV_LOG_ERROR: l = .error
        case ...AV_LOG_WARNING: l = .warning
        case ...AV_LOG_INFO: l = .info
        case ...AV_LOG_VERBOSE: l = .debug
        default: l = .trace
        }
        logger.log(level: l, "\(text)")
    }
}
