// The completion core: a fixed table of operation slots. `user_data` packs
// (generation << 32 | slot), so a completion for a reused slot is caught, never
// delivered to the wrong owner. Completions are dispatched by their slot's handler:
// a parked continuation, a callback, a multishot sink, or an orphan (owner gone).
internal import CURing
import BufferPool
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The one `user_data` codec: (generation << 32 | slot). Generations start at 1 and skip 0
/// on wrap, so no live operation's `user_data` is 0 or one of `ReservedUserData`.
enum UserData {
    /// Set in the slot half of the reap's replay user_data (ReplayTable.swift).
    static let replayBit = UInt32(CURING_REPLAY_UD_BIT)
    static let replaySentWhole = UInt32(CURING_REPLAY_SENT_WHOLE)
    @inline(__always)
    static func pack(slot: Int, generation: UInt32) -> UInt64 { UInt64(generation) << 32 | UInt64(UInt32(slot)) }
    @inline(__always)
    static func slot(_ ud: UInt64) -> Int { Int(UInt32(truncatingIfNeeded: ud)) }
    @inline(__always)
    static func generation(_ ud: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ud >> 32) }
}

extension EventLoop {
    /// The slot of `ud` when its operation is still the one in that slot (not free, not
    /// reused since), else nil.
    func liveSlot(_ ud: UInt64) -> Int? {
        let s = UserData.slot(ud)
        guard s < configuration.slotsMax, unsafe slots[s].generation == UserData.generation(ud) else { return nil }
        if case .free = unsafe slots[s].handler { return nil }
        return s
    }


    @inline(__always)
    func dispatch(_ c: Completion) {
        let ud = c.user_data
        if ud >= ReservedUserData.wakeup {
            if ud == ReservedUserData.wakeup, backendKind == .uring { armWakeup() }
            return
        }
        if UInt32(truncatingIfNeeded: ud) & UserData.replayBit != 0 {
            // A replay's send that failed, or that a waiting sender asked to hear of.
            if let owner = unsafe replayTable?.owner(of: ud) {
                unsafe Unmanaged<TCPConnection>.fromOpaque(owner).takeUnretainedValue().replaySendFinished(c.res, whole: c.flags & UserData.replaySentWhole != 0)
            }
            return
        }
        let slot = UserData.slot(ud)
        let generation = UserData.generation(ud)
        unsafe precondition(slot < configuration.slotsMax && slots[slot].generation == generation,
                     "stale completion for slot \(slot) generation \(generation) (res \(c.res))")
        checkProgrammerError(c.res, "completion")
        let more = c.flags & CQEFlag.more != 0
        switch unsafe slots[slot].handler {
        case .free:
            preconditionFailure("completion for a free slot \(slot)")
        case .continuation(let k):
            freeSlot(slot)
            unsafe k.resume(returning: OpResult(res: c.res, flags: c.flags))
        case .callback(let cb):
            if !more { freeSlot(slot) }
            cb(OpResult(res: c.res, flags: c.flags))
        case .multishot(let sink):
            if !more { freeSlot(slot) }
            sink.deliver(c.res, flags: c.flags, loop: self)
        case .queuedSend(let conn):
            freeSlot(slot)
            conn.queuedSendCompleted(c.res)
        case .orphan:
            if !more { freeSlot(slot) }
            dropDelivered(c.res, flags: c.flags)
        }
    }

    /// Returns a buffer a completion carried to the pool (its owner is gone), or closes
    /// an accepted descriptor nobody will take.
    func dropDelivered(_ res: Int32, flags: UInt32) {
        if flags & CQEFlag.buffer != 0 {
            _ = pool.adoptFromKernel(index: flags >> CQEFlag.bufferShift, count: max(0, Int(res)))
        }
    }

    // MARK: Slots

    @inline(__always)
    func allocSlot() -> (slot: Int, ud: UInt64)? {
        guard freeSlotCount > 0 else { return nil }
        freeSlotCount -= 1
        let s = unsafe Int(freeSlots[freeSlotCount])
        return unsafe (s, UserData.pack(slot: s, generation: slots[s].generation))
    }

    @inline(__always)
    func freeSlot(_ s: Int) {
        unsafe slots[s].handler = .free
        unsafe slots[s].generation &+= 1
        if unsafe slots[s].generation == 0 { unsafe slots[s].generation = 1 }
        unsafe freeSlots[freeSlotCount] = UInt32(s)
        freeSlotCount += 1
    }

    @inline(__always)
    func scratch(_ slot: Int) -> UnsafeMutableRawPointer { unsafe scratch + slot * Self.scratchStride }
    @inline(__always)
    func timeoutScratch(_ slot: Int) -> UnsafeMutableRawPointer { unsafe scratch + slot * Self.scratchStride + 256 }

    func setHandler(_ slot: Int, _ h: Handler) { unsafe slots[slot].handler = h }

    /// Marks a multishot slot's owner as gone: later completions free what they carry.
    func orphan(ud: UInt64) {
        guard let s = liveSlot(ud) else { return }
        unsafe slots[s].handler = .orphan
    }

    func cancelIfLive(_ ud: UInt64) {
        guard liveSlot(ud) != nil else { return }
        _ = backend.cancel(ud)
    }

    /// Asks the kernel to cancel operation `ud` (from any thread). The operation still
    /// completes (usually with -ECANCELED) and its owner is resumed then, not before.
    public func requestCancel(_ ud: UInt64) {
        if inLoop {
            cancelIfLive(ud)
        } else {
            pushRemote { $0.cancels.append(ud) }
        }
    }
}
