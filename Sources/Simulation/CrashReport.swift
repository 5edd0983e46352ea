// Simulation.CrashReport: a run that traps (a precondition in the loop, a Web assertion)
// kills the test process before any checker can print its seed. Before each run the
// harness formats "which seed, how to replay" into a buffer; a handler for the fatal
// signals writes that buffer (write(2) only: async-signal-safe), then hands the signal to
// whoever handled it before (Swift's backtracer), so the process dies as it would have.
// Non-goals: recovering from the crash; reports for threads other than the one that traps.
#if canImport(Glibc)
import Glibc
#endif

enum CrashReport {
    nonisolated(unsafe) private static var message = UnsafeMutablePointer<CChar>.allocate(capacity: 512)
    nonisolated(unsafe) private static var length = 0
    nonisolated(unsafe) private static var installed = false
    nonisolated(unsafe) private static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 32)

    /// Sets what a crash prints from now on (call on the thread that starts runs).
    static func arm(_ text: String) {
        install()
        let bytes = Array(text.utf8.prefix(510)) + [10]
        unsafe bytes.withUnsafeBufferPointer { src in
            unsafe UnsafeMutableRawPointer(message).copyMemory(from: src.baseAddress!, byteCount: src.count)
        }
        unsafe length = bytes.count
    }

    static func disarm() { unsafe length = 0 }

    private static func install() {
        guard unsafe !installed else { return }
        unsafe installed = true
        for sig in [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS] {
            var action = sigaction()
            unsafe action.__sigaction_handler.sa_handler = { sig in
                if unsafe CrashReport.length > 0 { _ = unsafe write(2, CrashReport.message, CrashReport.length) }
                // Then whatever handled the signal before (Swift's backtracer, or death).
                unsafe sigaction(sig, CrashReport.previous + Int(sig), nil)
                raise(sig)
            }
            unsafe sigaction(sig, &action, previous + Int(sig))
        }
    }
}
