// Threads.SharedWord: a 64-bit atomic word at an address that stays put, so code outside
// Swift may read it (the io_uring reap's answer replay checks guards with C atomics,
// ADR 0019, addendum 5). Swift's `Atomic` lives inline in its owner, whose address Swift
// does not promise to keep; this one is allocated once and freed with its object.
// Unsafe code here: the allocation and the address handed out.
import Synchronization

@safe public final class SharedWord: @unchecked Sendable {
    // @unchecked Sendable: the storage is only reached through the atomic operations.
    private let storage: UnsafeMutablePointer<Atomic<UInt64>>

    public init(_ value: UInt64 = 0) {
        unsafe storage = .allocate(capacity: 1)
        unsafe storage.initialize(to: Atomic(value))
    }

    deinit {
        unsafe storage.deinitialize(count: 1)
        unsafe storage.deallocate()
    }

    /// The word, with acquiring ordering (as the C readers load it).
    @inline(__always)
    public func load() -> UInt64 { unsafe storage.pointee.load(ordering: .acquiring) }

    /// Sets the word, with releasing ordering.
    @inline(__always)
    public func store(_ value: UInt64) { unsafe storage.pointee.store(value, ordering: .releasing) }

    /// Adds `delta` (wrapping, acquiring and releasing) and returns the new value.
    @inline(__always)
    @discardableResult
    public func wrappingAdd(_ delta: UInt64) -> UInt64 {
        unsafe storage.pointee.wrappingAdd(delta, ordering: .acquiringAndReleasing).newValue
    }

    /// The word's address, valid while this object lives: for C code that reads it with
    /// its own atomic loads (or adds with atomic read-modify-writes). Whoever keeps the
    /// address keeps the object.
    public var address: UnsafeMutablePointer<UInt64> {
        unsafe UnsafeMutableRawPointer(storage).assumingMemoryBound(to: UInt64.self)
    }
}
