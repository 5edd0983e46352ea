// The async adapter over the completion table: an operation parks its task's
// continuation in a slot and the loop resumes it from the completion. Cancellation
// becomes ASYNC_CANCEL; the caller still waits for the kernel's own completion.
import BufferPool
import Logging
import Synchronization
import Threads
#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    // MARK: The async adapter

    /// Submits one operation and suspends until its completion. `prepare` gets the
    /// operation's `user_data` and slot index and returns 0 or a negative errno; a failure
    /// to queue completes the operation at once with that errno. With no slot free the
    /// result is `OpResult.slotsExhausted` (never a bare EAGAIN).
    ///
    /// `cancellable`: task cancellation becomes an ASYNC_CANCEL (the call still returns
    /// only when the kernel is done with the operation). Installing the cancellation
    /// handler costs a task status-record update on entry and exit (measured ~0.6 µs here,
    /// more than the NOP itself), so operations that finish in bounded time (NOP, regular
    /// file I/O, which io_uring cannot interrupt once started anyway, close, shutdown)
    /// pass `false`; everything that can wait on a peer or a clock passes `true`.
    @inline(__always)
    nonisolated(nonsending) func perform(cancellable: Bool = true, _ prepare: (UInt64, Int) -> Int32) async -> OpResult {
        assertInLoop()
        guard let (slot, ud) = allocSlot() else { return OpResult(res: OpResult.slotsExhausted) }
        if Task.isCancelled && cancellable {
            freeSlot(slot)
            return OpResult(res: -ECANCELED)
        }
        guard cancellable else { return await park(slot: slot, ud: ud, prepare) }
        return await withTaskCancellationHandler {
            await park(slot: slot, ud: ud, recheckCancellation: true, prepare)
        } onCancel: {
            self.requestCancel(ud)
        }
    }

    @inline(__always)
    nonisolated(nonsending) func park(slot: Int, ud: UInt64, recheckCancellation: Bool = false, _ prepare: (UInt64, Int) -> Int32) async -> OpResult {
        unsafe await withUnsafeContinuation { (k: UnsafeContinuation<OpResult, Never>) in
            unsafe slots[slot].handler = unsafe .continuation(k)
            let rc = prepare(ud, slot)
            if rc < 0 {
                freeSlot(slot)
                unsafe k.resume(returning: OpResult(res: rc))
            } else if recheckCancellation && Task.isCancelled {
                // Cancelled between the entry check and the handler's installation: the
                // handler ran while the slot was still free and did nothing.
                _ = backend.cancel(ud)
            }
        }
    }

    /// Submits one operation whose completion runs `callback` on the loop thread (the
    /// lower, callback-style layer). Returns the operation's `user_data`, or nil when no
    /// slot is free or the operation could not be queued.
    @discardableResult
    func submit(_ callback: @escaping Callback, _ prepare: (UInt64, Int) -> Int32) -> UInt64? {
        assertInLoop()
        guard let (slot, ud) = allocSlot() else { return nil }
        unsafe slots[slot].handler = .callback(callback)
        if prepare(ud, slot) < 0 {
            freeSlot(slot)
            return nil
        }
        return ud
    }

    /// Starts a multishot operation (`operation`, for errors) delivering to `sink`. Returns
    /// its `user_data`.
    func submitMultishot(_ operation: String, _ sink: any MultishotSink, _ prepare: (UInt64) -> Int32) -> Result<UInt64, RingError> {
        assertInLoop()
        guard let (slot, ud) = allocSlot() else { return .failure(RingError(.slotsExhausted, operation: operation)) }
        unsafe slots[slot].handler = .multishot(sink)
        let rc = prepare(ud)
        if rc < 0 {
            freeSlot(slot)
            return .failure(RingError(errno: -rc, operation: "submit"))
        }
        return .success(ud)
    }

    // MARK: Public operations

    /// A no-op round trip through the backend (async layer). A NOP completes at once, so
    /// it takes the non-cancellable path; `cancellable: true` measures the other one.
    public func nop(cancellable: Bool = false) async -> OpResult {
        await perform(cancellable: cancellable) { ud, _ in backend.nop(ud) }
    }

    /// A no-op round trip through the backend (callback layer). Call on the loop thread.
    @discardableResult
    public func submitNop(_ callback: @escaping Callback) -> Bool {
        submit(callback) { ud, _ in backend.nop(ud) } != nil
    }

    /// Suspends the calling task for `nanoseconds` using a backend timeout.
    public func sleep(nanoseconds: Int64) async throws(RingError) {
        let r = await perform { ud, slot in unsafe backend.timeout(nanoseconds: nanoseconds, storage: timeoutScratch(slot), ud) }
        if r.res == -ETIME || r.res == 0 { return }
        throw RingError(errno: -r.res, operation: "sleep")
    }

    public func sleep(for duration: Duration) async throws(RingError) {
        try await sleep(nanoseconds: duration.nanoseconds)
    }
}

extension Duration {
    var nanoseconds: Int64 { nanosecondsClamped }
}
