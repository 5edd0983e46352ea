// Parker: one suspended task per owner object (a listener or connection), woken by the
// loop when a multishot completion arrives, by an optional deadline, or by cancellation.
// Deadlines cost no kernel timer: the loop keeps them in a heap and bounds its own wait
// by the earliest one (EventLoop.scheduleDeadline), so an idle keep-alive wait that ends
// with data (the common case) never arms and cancels a timeout.
// Non-goals: several waiters on one object (each socket has one reader at a time).
#if canImport(Glibc)
import Glibc
#endif

enum WakeReason: Equatable {
    case signalled, cancelled, timedOut
}

@safe final class Parker {
    private var continuation: UnsafeContinuation<WakeReason, Never>?
    private var generation: UInt64 = 0
    /// Monotonic deadline of the current wait, if it has one.
    var deadline: Int64?
    /// Earliest entry this parker has in its loop's deadline heap (nil: none).
    var heapAt: Int64?
    var isWaiting: Bool { unsafe continuation != nil }

    /// Suspends until `wake`, the deadline, or (if `cancellable`) task cancellation.
    nonisolated(nonsending) func wait(loop: EventLoop, timeoutNs: Int64? = nil, cancellable: Bool = true) async -> WakeReason {
        loop.assertInLoop()
        unsafe precondition(continuation == nil, "two tasks waiting on one socket")
        if cancellable && Task.isCancelled { return .cancelled }
        generation &+= 1
        // Not cancellable (a server's connections): suspend directly, with no closure
        // context to allocate.
        guard cancellable else {
            return unsafe await withUnsafeContinuation { (k: UnsafeContinuation<WakeReason, Never>) in
                unsafe park(k, loop: loop, timeoutNs: timeoutNs)
            }
        }
        let gen = generation
        let box = LoopBound(self, loop: loop)
        return await withTaskCancellationHandler {
            unsafe await withUnsafeContinuation { (k: UnsafeContinuation<WakeReason, Never>) in
                unsafe self.park(k, loop: loop, timeoutNs: timeoutNs)
            }
        } onCancel: {
            loop.execute {
                if box.value.generation == gen { box.value.wake(.cancelled) }
            }
        }
    }

    /// Keeps `k` until a wake, and schedules the deadline when there is one.
    private func park(_ k: UnsafeContinuation<WakeReason, Never>, loop: EventLoop, timeoutNs: Int64?) {
        unsafe continuation = k
        if let t = timeoutNs {
            let d = loop.nowNanos &+ Swift.max(0, t)
            deadline = d
            if heapAt.map({ d < $0 }) ?? true {
                heapAt = d
                loop.scheduleDeadline(d, self)
            }
        }
    }

    /// Resumes the waiting task, if any.
    func wake(_ reason: WakeReason = .signalled, loop: EventLoop? = nil) {
        guard let k = unsafe continuation else { return }
        unsafe continuation = nil
        deadline = nil
        unsafe k.resume(returning: reason)
    }
}
