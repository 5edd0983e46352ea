// Threads.Clock: the one monotonic clock, and the interface services take it through.
//
// Code that measures intervals or keeps deadlines (the event loop, the HTTP server and
// client, expiry and leases to come) reads time from a `MonotonicClock` it was given, never
// from `ContinuousClock.now` or `clock_gettime` itself, so a test or the simulator can
// substitute time. `SystemClock` reads CLOCK_MONOTONIC (the only place Spool's runtime
// does); `ManualClock` moves only when told to; an event loop is a clock too (`loop.now`:
// the system clock on io_uring and epoll, simulated time under the simulator).
// Non-goals: wall-clock time (HTTP dates use `wallClockSeconds`), time zones, drift models.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A point on a monotonic clock: nanoseconds since the clock's arbitrary origin.
public struct MonotonicInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static func < (a: Self, b: Self) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Self, d: Duration) -> Self { Self(nanoseconds: a.nanoseconds &+ d.nanosecondsClamped) }
    public static func - (a: Self, d: Duration) -> Self { Self(nanoseconds: a.nanoseconds &- d.nanosecondsClamped) }
    public static func - (a: Self, b: Self) -> Duration { .nanoseconds(a.nanoseconds &- b.nanoseconds) }
    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to Int64 (about 292 years either way).
    public var nanosecondsClamped: Int64 {
        let (s, a) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        let (sum, o2) = ns.addingReportingOverflow(a / 1_000_000_000)
        return o2 ? (s < 0 ? .min : .max) : sum
    }
}

/// Where code that keeps deadlines gets the time.
public protocol MonotonicClock: AnyObject, Sendable {
    var now: MonotonicInstant { get }
    /// Suspends until `deadline` has passed on this clock (throws when cancelled).
    func sleep(until deadline: MonotonicInstant) async throws
}

/// Where services read the calendar time they store (created and updated times, expiry
/// deadlines, key ages): milliseconds since the Unix epoch. Kept apart from MonotonicClock
/// because the calendar can step; deadlines inside a process use the monotonic one.
public protocol WallClock: AnyObject, Sendable {
    var unixMilliseconds: Int64 { get }
}

/// The clock a service is given: monotonic time for its timers, calendar time for its
/// records. SystemClock in production, ManualClock in tests.
public typealias ServiceClock = MonotonicClock & WallClock

/// CLOCK_MONOTONIC: the real clock.
public final class SystemClock: MonotonicClock, WallClock {
    public static let shared = SystemClock()
    public init() {}

    /// CLOCK_MONOTONIC in nanoseconds: the one reading of the system clock.
    @inline(__always)
    public static func nanoseconds() -> Int64 { read(CLOCK_MONOTONIC) }

    @inline(__always)
    private static func read(_ id: clockid_t) -> Int64 {
        var ts = timespec()
        unsafe clock_gettime(id, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public var now: MonotonicInstant { MonotonicInstant(nanoseconds: Self.nanoseconds()) }

    /// CLOCK_REALTIME in milliseconds.
    public var unixMilliseconds: Int64 {
        var ts = timespec()
        unsafe clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    public func sleep(until deadline: MonotonicInstant) async throws {
        let left = deadline.nanoseconds - Self.nanoseconds()
        if left > 0 { try await Task.sleep(nanoseconds: UInt64(left)) }
    }
}

/// A clock that moves only when `advance` is called; sleepers wake when it passes their
/// deadline. For tests of code that keeps deadlines (expiry, leases) without waiting.
public final class ManualClock: MonotonicClock, WallClock {
    private struct Sleeper {
        let deadline: MonotonicInstant
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }
    private struct State {
        var now: MonotonicInstant
        var sleepers: [Sleeper] = []
        var nextID: UInt64 = 0
    }
    private let state: Mutex<State>
    /// The calendar time at `start` (2027-01-15 by default); it moves with `advance`.
    public let unixMillisecondsAtStart: Int64
    private let start: MonotonicInstant

    public init(start: MonotonicInstant = MonotonicInstant(nanoseconds: 0), unixMilliseconds: Int64 = 1_800_000_000_000) {
        state = Mutex(State(now: start))
        self.start = start
        unixMillisecondsAtStart = unixMilliseconds
    }

    public var now: MonotonicInstant { state.withLock { $0.now } }

    public var unixMilliseconds: Int64 { unixMillisecondsAtStart + (now.nanoseconds - start.nanoseconds) / 1_000_000 }

    /// Sleepers waiting now (tests advance once every sleeper is in place).
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// Moves the clock forward and wakes every sleeper whose deadline has come.
    public func advance(by d: Duration) {
        let due = state.withLock { s -> [Sleeper] in
            s.now = s.now + d
            let now = s.now
            let due = s.sleepers.filter { $0.deadline <= now }
            s.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for s in due.sorted(by: { ($0.deadline, $0.id) < ($1.deadline, $1.id) }) { s.continuation.resume() }
    }

    public func sleep(until deadline: MonotonicInstant) async throws {
        let id = state.withLock { s -> UInt64 in s.nextID += 1; return s.nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { s -> Bool in
                    if deadline <= s.now || Task.isCancelled { return true }
                    s.sleepers.append(Sleeper(deadline: deadline, id: id, continuation: k))
                    return false
                }
                if resumeNow { k.resume() }
            }
            try Task.checkCancellation()
        } onCancel: {
            let gone = state.withLock { s -> Sleeper? in
                guard let i = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.sleepers.remove(at: i)
            }
            gone?.continuation.resume(throwing: CancellationError())
        }
    }
}
