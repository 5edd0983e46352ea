// Threads: the one way Spool runs work on an OS thread of its own, below every other
// module. `OSThread.spawn` starts a detached thread (the signal thread, each transcode,
// each pool worker); `ConditionLock` is a state guarded by a mutex with a condition to
// wait on; `BlockingPool` (BlockingPool.swift) runs bounded blocking work (DNS, file I/O
// on the epoll backend, database calls) and hands results back to async callers.
// Unsafe code here: the pthread trampoline's context pointer and the heap-allocated
// pthread mutex and condition (never stored inline in a Swift object, whose address
// Swift does not promise to keep for C).
#if canImport(Glibc)
import Glibc
#endif

public enum OSThread {
    private final class Start: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts a detached thread running `body`; false when the system refuses a thread.
    @discardableResult
    public static func spawn(stackBytes: Int = 8 << 20, _ body: @escaping @Sendable () -> Void) -> Bool {
        var attr = pthread_attr_t()
        unsafe pthread_attr_init(&attr)
        defer { unsafe pthread_attr_destroy(&attr) }
        unsafe pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        unsafe pthread_attr_setstacksize(&attr, stackBytes)
        let context = unsafe Unmanaged.passRetained(Start(body)).toOpaque()
        var thread = pthread_t()
        let rc = unsafe pthread_create(&thread, &attr, { raw in
            let start = unsafe Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body()
            return nil
        }, unsafe context)
        guard rc == 0 else {
            unsafe Unmanaged<Start>.fromOpaque(context).release()
            return false
        }
        return true
    }
}

/// A value guarded by a mutex, with a condition to wait for a change of it.
@safe public final class ConditionLock<State>: @unchecked Sendable {
    // @unchecked Sendable: `state` is touched only with `mutex` held, and the pthread
    // objects live on the heap, at addresses that never move.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    private var state: State   // only touched with `mutex` held

    public init(_ initial: State) {
        state = initial
        unsafe mutex = .allocate(capacity: 1)
        unsafe mutex.initialize(to: pthread_mutex_t())
        unsafe pthread_mutex_init(mutex, nil)
        unsafe cond = .allocate(capacity: 1)
        unsafe cond.initialize(to: pthread_cond_t())
        var attr = pthread_condattr_t()
        unsafe pthread_condattr_init(&attr)
        unsafe pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        unsafe pthread_cond_init(cond, &attr)
        unsafe pthread_condattr_destroy(&attr)
    }

    deinit {
        unsafe pthread_cond_destroy(cond)
        unsafe pthread_mutex_destroy(mutex)
        unsafe cond.deallocate()
        unsafe mutex.deallocate()
    }

    /// Runs `body` with the state locked.
    public func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        unsafe pthread_mutex_lock(mutex)
        defer { unsafe pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Changes the state and wakes every waiter (or, with `wakeAll: false`, one of them).
    public func change<R>(wakeAll: Bool = true, _ body: (inout State) -> R) -> R {
        unsafe pthread_mutex_lock(mutex)
        defer {
            if wakeAll { unsafe pthread_cond_broadcast(cond) } else { unsafe pthread_cond_signal(cond) }
            unsafe pthread_mutex_unlock(mutex)
        }
        return body(&state)
    }

    /// Waits until `ready` holds, then runs `body` with the state still locked. With
    /// `timeoutNanos`, gives up after that long and runs `body` anyway; `ready` tells it.
    public func wait<R>(until ready: (State) -> Bool, timeoutNanos: Int64? = nil, _ body: (inout State, Bool) -> R) -> R {
        unsafe pthread_mutex_lock(mutex)
        defer { unsafe pthread_mutex_unlock(mutex) }
        var deadline = timespec()
        if let timeoutNanos {
            unsafe clock_gettime(CLOCK_MONOTONIC, &deadline)
            let total = Int64(deadline.tv_nsec) + Swift.max(0, timeoutNanos)
            deadline.tv_sec += Int(total / 1_000_000_000)
            deadline.tv_nsec = Int(total % 1_000_000_000)
        }
        while !ready(state) {
            if timeoutNanos != nil {
                if unsafe pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT { return body(&state, ready(state)) }
            } else {
                unsafe pthread_cond_wait(cond, mutex)
            }
        }
        return body(&state, true)
    }
}
