// EventLoop as a clock: every deadline on a loop (parked waits, timed sends, the HTTP
// server's and client's timeouts) reads `loop.now`. Real backends answer with
// CLOCK_MONOTONIC (read directly, no call through the backend); a backend that keeps its
// own time (the simulator) answers with that, so simulated time moves every deadline.
// Non-goals: reading the clock from other threads under a simulated backend (its time
// belongs to the loop thread).
import Threads

extension EventLoop: MonotonicClock {
    /// Nanoseconds on this loop's clock.
    @inline(__always)
    var nowNanos: Int64 { clockFromBackend ? backend.nowNanos : SystemClock.nanoseconds() }

    /// Nanoseconds from the loop's last mark to now, and now the new mark: on the loop
    /// thread, the time since the loop turned to the completion being handled (the pass's
    /// reap, or the answer before this one in the pass), for one clock read per answer.
    /// The HTTP server's replayed answers time themselves with it (Web/LaneShortcut.swift).
    @inline(__always)
    package func nanosSinceMark() -> Int64 {
        let now = nowNanos
        defer { markNanos = now }
        return now &- markNanos
    }

    /// Now on this loop's clock. On a simulated backend, read it on the loop thread.
    public var now: MonotonicInstant { MonotonicInstant(nanoseconds: nowNanos) }

    /// Suspends the calling task (on this loop) until `deadline` on the loop's clock.
    public func sleep(until deadline: MonotonicInstant) async throws {
        let left = deadline.nanoseconds - nowNanos
        if left > 0 { try await sleep(nanoseconds: left) }
    }
}
