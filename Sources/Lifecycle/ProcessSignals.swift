// Lifecycle: how a Spool process starts and stops. Before main, the CProcessStart
// constructor has opened descriptors 0–2, ignored SIGPIPE, and caught SIGTERM, SIGINT and
// SIGHUP into a pipe; this module decides, once per process, what becomes of them: a
// command that stops gracefully reads them on one dedicated thread (ShutdownSignal),
// every other command gets the dispositions it was started with back (restoreDefaults).
// No signal can arrive unhandled or be lost in between: until one of the two happens it
// waits in the pipe.
import CProcessStart
import Synchronization
import Threads
#if canImport(Glibc)
import Glibc
#endif

public enum ProcessSignals {
    /// True when the start-up constructor ran (it always does in a binary that links it).
    public static var settledAtStart: Bool { spool_process_started() == 1 }

    /// Descriptors among 0...2 that were closed at start and now point at /dev/null.
    public static var reopenedStandardDescriptors: [Int32] {
        let bits = spool_process_reopened_std()
        return (0..<3).filter { bits & (1 << $0) != 0 }
    }

    /// For commands that do not stop gracefully, and in a child before exec: the
    /// dispositions the process was started with (signals caught since start are raised
    /// again now, with their original action). Not to be mixed with `ShutdownSignal.install`.
    public static func restoreDefaults() {
        spool_process_restore()
    }

    /// "SIGTERM", "SIGINT", "SIGHUP", or "signal N".
    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(signal)"
        }
    }
}

/// The first SIGTERM, SIGINT or SIGHUP asks a long-running command to stop gracefully
/// (a server drains, a transcode cancels and removes its partial output; SIGHUP only until
/// the command asks for `reloadRequests()`, after which it means "reload"); a second one
/// ends the process at once by that signal. One instance per process, taken with
/// `install()` as the first thing a long-running command does; a signal that arrived
/// earlier, even before main, is not lost: it waited in the pipe and is taken now.
public final class ShutdownSignal: Sendable {
    private struct State {
        var received: Int32?
        var waiters: [CheckedContinuation<Int32, Never>] = []
        var observers: [@Sendable (Int32) -> Void] = []
        /// Once someone asked for reload requests, SIGHUP goes to them instead of stopping.
        var reloadListeners: [AsyncStream<Void>.Continuation] = []
        /// Takes the second stop signal instead of the immediate death (once; a third kills).
        var secondSignal: (@Sendable (Int32) -> Void)?
        var secondTaken = false
    }

    private let state = Mutex(State())
    private static let shared = Mutex<ShutdownSignal?>(nil)

    private init() {}

    /// Starts the one thread that takes the process's stop signals (once per process;
    /// later calls return the same instance).
    public static func install() -> ShutdownSignal {
        shared.withLock { current in
            if let current { return current }
            let s = ShutdownSignal()
            current = s
            // SIGQUIT stays the operator's way out of a command that stops gracefully: its
            // default action (quit at once), even when the command was started with it
            // ignored, as a non-interactive shell starts its background jobs.
            signal(SIGQUIT, SIG_DFL)
            SignalThread.start { signal in s.deliver(signal) }
            return s
        }
    }

    /// The first signal received, if any.
    public var received: Int32? { state.withLock { $0.received } }

    /// Suspends until the first signal (returns at once if it already came).
    public func wait() async -> Int32 {
        await withCheckedContinuation { (k: CheckedContinuation<Int32, Never>) in
            let now: Int32? = state.withLock { s in
                if let r = s.received { return r }
                s.waiters.append(k)
                return nil
            }
            if let now { k.resume(returning: now) }
        }
    }

    /// Calls `body` on the signal thread when the first signal comes (at once, on the
    /// caller's thread, if it already came). Keep it short: set a flag, cancel a job.
    public func onSignal(_ body: @escaping @Sendable (Int32) -> Void) {
        let now: Int32? = state.withLock { s in
            if let r = s.received { return r }
            s.observers.append(body)
            return nil
        }
        if let now { body(now) }
    }

    /// The second stop signal calls `body` (on the signal thread; keep it short) instead of
    /// ending the process at once, for a command that can still wind down quickly (an
    /// engine cancelling its jobs and giving them back). A third signal ends it at once.
    public func onSecondSignal(_ body: @escaping @Sendable (Int32) -> Void) {
        state.withLock { $0.secondSignal = body }
    }

    /// From now on SIGHUP is a reload request (as in nginx and PostgreSQL) rather than a
    /// stop: each one is yielded on the returned stream (requests that arrive faster than
    /// they are taken coalesce into one). SIGTERM and SIGINT stop as before. A SIGHUP that
    /// already stopped the process, or arrived before this call, stays a stop.
    public func reloadRequests() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        state.withLock { $0.reloadListeners.append(continuation) }
        return stream
    }

    private func deliver(_ signal: Int32) {
        if signal == SIGHUP {
            let listeners = state.withLock { s in s.received == nil ? s.reloadListeners : [] }
            if !listeners.isEmpty {
                for l in listeners { l.yield() }
                return
            }
        }
        let first: (waiters: [CheckedContinuation<Int32, Never>], observers: [@Sendable (Int32) -> Void])? =
            state.withLock { s in
                guard s.received == nil else { return nil }
                s.received = signal
                defer { s.waiters = []; s.observers = [] }
                return (s.waiters, s.observers)
            }
        guard let first else {
            let handler = state.withLock { s -> (@Sendable (Int32) -> Void)? in
                guard !s.secondTaken, let h = s.secondSignal else { return nil }
                s.secondTaken = true
                return h
            }
            if let handler {
                StandardError.write("spool: second signal (\(ProcessSignals.name(signal))): cancelling running work (a third stops at once)\n")
                handler(signal)
                return
            }
            StandardError.write("spool: second signal (\(ProcessSignals.name(signal))): stopping at once\n")
            spool_signal_die(signal)
        }
        for o in first.observers { o(signal) }
        for w in first.waiters { w.resume(returning: signal) }
    }
}

/// The dedicated thread that reads the caught stop signals from the start-up pipe.
private enum SignalThread {
    static func start(_ deliver: @escaping @Sendable (Int32) -> Void) {
        let started = OSThread.spawn(stackBytes: 256 << 10) {
            while true { deliver(spool_signal_wait()) }
        }
        precondition(started, "spool: could not start the signal thread")
    }
}

/// Unbuffered writes to descriptor 2, or another one (safe from any thread, no stdio locks).
public enum StandardError {
    public static func write(_ text: String, to fd: Int32 = STDERR_FILENO) {
        var text = text
        // The one raw pointer in Lifecycle: write(2) needs the address of the string's
        // UTF-8 bytes, which stays inside this closure (justified: no safe write(2) exists
        // below Foundation, and Lifecycle must not depend on the runtime).
        text.withUTF8 { b in
            guard var p = b.baseAddress else { return }
            var left = b.count
            while left > 0 {
                let n = unsafe Glibc.write(fd, p, left)
                if n < 0 { if errno == EINTR { continue }; return }
                unsafe p += n
                left -= n
            }
        }
    }
}
