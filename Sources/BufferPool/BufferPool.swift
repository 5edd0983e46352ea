// BufferPool: a fixed, mmap'd arena of equal-sized I/O buffers with a hard byte cap.
//
// Goals: zero heap allocation after init; O(1) acquire and release; buffers handed out as
// move-only (`~Copyable`) handles so a buffer has exactly one owner at a time (the user,
// an in-flight kernel operation, or the kernel's provided-buffer ring); exhaustion is an
// explicit outcome (`tryAcquire` returns nil, `acquire` waits), never growth or a crash;
// an accounting check that every handle is back at quiescence.
// The arena is mapped, not touched: pages become resident as buffers are first used, and
// `releaseFreePages` gives free buffers' pages back (after a flood, say).
// Non-goals: growing the arena at run time; sharing one pool between threads. A pool
// belongs to one event loop thread; the arena can be carved into one pool per loop.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sizing of a buffer arena, derived from a byte cap.
public struct BufferPoolConfiguration: Sendable, Equatable {
    /// Bytes in one buffer (a multiple of the page size is best for fixed-buffer I/O).
    public var bufferSizeBytes: Int
    /// Hard cap on the arena: the pool never maps more than this.
    public var memoryCapBytes: Int

    public init(bufferSizeBytes: Int = 16 * 1024, memoryCapBytes: Int = 64 * 1024 * 1024) {
        self.bufferSizeBytes = bufferSizeBytes
        self.memoryCapBytes = memoryCapBytes
    }

    /// How many buffers fit under the cap.
    public var bufferCount: Int { bufferSizeBytes > 0 ? memoryCapBytes / bufferSizeBytes : 0 }

    /// Throws a readable error when the configuration cannot work.
    public func validate() throws(BufferPoolError) {
        guard bufferSizeBytes >= 512, bufferSizeBytes <= 16 * 1024 * 1024 else {
            throw BufferPoolError(.invalidConfiguration("buffer size \(bufferSizeBytes) bytes is outside 512 B ... 16 MiB"))
        }
        guard bufferCount >= 2 else {
            throw BufferPoolError(.invalidConfiguration("memory cap \(memoryCapBytes) bytes holds fewer than 2 buffers of \(bufferSizeBytes) bytes"))
        }
        // Buffer ids travel in 16-bit fields (io_uring buffer ids and fixed-buffer indexes).
        guard bufferCount <= 65_536 else {
            throw BufferPoolError(.invalidConfiguration("\(bufferCount) buffers exceed the 65,536 a pool can address; raise the buffer size or lower the cap"))
        }
    }
}

public struct BufferPoolError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case invalidConfiguration(String)
        case mapFailed(errno: Int32)
    }
    public let kind: Kind
    public init(_ kind: Kind) { self.kind = kind }
    public var description: String {
        switch kind {
        case .invalidConfiguration(let why): return "invalid buffer pool configuration: \(why)"
        case .mapFailed(let e): return "could not map the buffer arena: errno \(e)"
        }
    }
}

/// One mmap'd region. Pools are carved out of it; it is unmapped when the last pool goes.
@safe public final class BufferArena: @unchecked Sendable {
    // @unchecked: the arena's fields are immutable after init; the memory itself is
    // partitioned into disjoint pools, each touched by one thread only.
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int

    public init(byteCount: Int) throws(BufferPoolError) {
        let p = unsafe mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p = unsafe p, unsafe p != MAP_FAILED else { throw BufferPoolError(.mapFailed(errno: errno)) }
        unsafe self.base = p
        self.byteCount = byteCount
    }

    deinit { unsafe munmap(base, byteCount) }
}

/// A fixed set of buffers owned by one thread (one event loop).
@safe public final class BufferPool {
    public enum Owner: UInt8 { case free = 0, user = 1, kernel = 2 }

    public let bufferSizeBytes: Int
    public let bufferCount: Int
    public let arena: BufferArena
    /// First byte of this pool's region of the arena.
    public let base: UnsafeMutableRawPointer

    private let freeStack: UnsafeMutablePointer<UInt32>
    private var freeCount: Int
    private let generations: UnsafeMutablePointer<UInt32>
    private let owners: UnsafeMutablePointer<UInt8>
    private var userCount = 0
    private var kernelCount = 0
    private var waiters = WaiterQueue()

    /// Lowest number of free buffers seen, and how often a caller found the pool empty.
    public private(set) var freeLowWater: Int
    public private(set) var exhaustedCount = 0

    /// Called when a buffer comes back and no `acquire` is waiting for it. The event loop
    /// uses it to refill the kernel's provided-buffer ring. Return true to keep the buffer
    /// (it is then owned by the kernel: `owner(of:) == .kernel`).
    public var releaseHook: ((UInt32) -> Bool)?

    /// A pool over its own arena.
    public convenience init(_ config: BufferPoolConfiguration) throws(BufferPoolError) {
        try config.validate()
        let arena = try BufferArena(byteCount: config.bufferCount * config.bufferSizeBytes)
        self.init(arena: arena, offset: 0, bufferSizeBytes: config.bufferSizeBytes, bufferCount: config.bufferCount)
    }

    /// A pool over `bufferCount` buffers of `arena` starting at `offset` bytes.
    public init(arena: BufferArena, offset: Int, bufferSizeBytes: Int, bufferCount: Int) {
        precondition(offset >= 0 && offset + bufferSizeBytes * bufferCount <= arena.byteCount, "pool exceeds its arena")
        precondition(bufferCount > 0 && bufferCount <= 65_536)
        self.arena = arena
        unsafe self.base = arena.base + offset
        self.bufferSizeBytes = bufferSizeBytes
        self.bufferCount = bufferCount
        unsafe freeStack = .allocate(capacity: bufferCount)
        unsafe generations = .allocate(capacity: bufferCount)
        unsafe owners = .allocate(capacity: bufferCount)
        unsafe generations.initialize(repeating: 1, count: bufferCount)
        unsafe owners.initialize(repeating: Owner.free.rawValue, count: bufferCount)
        // Highest index at the bottom, so index 0 is handed out first.
        for i in 0..<bufferCount { unsafe freeStack[i] = UInt32(bufferCount - 1 - i) }
        freeCount = bufferCount
        freeLowWater = bufferCount
    }

    deinit {
        // A handle outliving its pool would write freed memory: crash loudly instead.
        precondition(userCount == 0, "BufferPool deinit with \(userCount) buffers still held by users")
        unsafe freeStack.deallocate()
        unsafe generations.deallocate()
        unsafe owners.deallocate()
    }

    // MARK: Accounting

    public var freeBuffers: Int { freeCount }
    public var userHeldBuffers: Int { userCount }
    public var kernelHeldBuffers: Int { kernelCount }
    public var waitingAcquirers: Int { waiters.count }
    public var capacityBytes: Int { bufferCount * bufferSizeBytes }

    /// True when no buffer is held by a user or an operation: every buffer is free or lent
    /// to the kernel's provided-buffer ring (where it is still the pool's).
    public var isQuiescent: Bool { userCount == 0 && freeCount + kernelCount == bufferCount }

    public func owner(of index: UInt32) -> Owner { unsafe Owner(rawValue: owners[Int(index)])! }

    /// Address of buffer `index`. Stable for the pool's lifetime. Package-only: the
    /// event loop hands it to the kernel; everyone else goes through a `PooledBuffer`.
    @inline(__always)
    package func address(of index: UInt32) -> UnsafeMutableRawPointer {
        unsafe base + Int(index) * bufferSizeBytes
    }

    // MARK: Acquire and release

    /// A buffer, or nil when every buffer is in use (the caller applies backpressure).
    public func tryAcquire() -> PooledBuffer? {
        guard let index = takeFree(as: .user) else { return nil }
        return unsafe PooledBuffer(pool: self, index: index, generation: generations[Int(index)])
    }

    /// A buffer; suspends while the pool is exhausted, resumed in FIFO order as buffers return.
    public func acquire() async -> PooledBuffer {
        if let index = takeFree(as: .user) {
            return unsafe PooledBuffer(pool: self, index: index, generation: generations[Int(index)])
        }
        let index: UInt32 = unsafe await withUnsafeContinuation { unsafe waiters.append($0) }
        return unsafe PooledBuffer(pool: self, index: index, generation: generations[Int(index)])
    }

    private func takeFree(as owner: Owner) -> UInt32? {
        guard freeCount > 0 else {
            exhaustedCount &+= 1
            return nil
        }
        freeCount -= 1
        let index = unsafe freeStack[freeCount]
        if freeCount < freeLowWater { freeLowWater = freeCount }
        unsafe owners[Int(index)] = owner.rawValue
        if owner == .user { userCount += 1 } else { kernelCount += 1 }
        return index
    }

    /// Called from `PooledBuffer.deinit`.
    @usableFromInline
    func release(index: UInt32, generation: UInt32) {
        let i = Int(index)
        unsafe precondition(owners[i] == Owner.user.rawValue && generations[i] == generation,
                     "stale or double release of buffer \(index)")
        unsafe generations[i] &+= 1
        if unsafe generations[i] == 0 { unsafe generations[i] = 1 }
        userCount -= 1
        unsafe owners[i] = Owner.free.rawValue
        giveBack(index)
    }

    private func giveBack(_ index: UInt32) {
        let i = Int(index)
        if let waiter = unsafe waiters.popFirst() {
            unsafe owners[i] = Owner.user.rawValue
            userCount += 1
            unsafe waiter.resume(returning: index)
            return
        }
        if let hook = releaseHook {
            unsafe owners[i] = Owner.kernel.rawValue
            kernelCount += 1
            if hook(index) { return }
            unsafe owners[i] = Owner.free.rawValue
            kernelCount -= 1
        }
        unsafe freeStack[freeCount] = index
        freeCount += 1
    }

    // MARK: Lending to the kernel (used by the event loop only)

    /// Moves a free buffer into kernel ownership (a provided-buffer ring, or an emulated
    /// one in the epoll backend). Nil when none is free.
    public func lendToKernel() -> UInt32? { takeFree(as: .kernel) }

    /// The kernel filled buffer `index` with `count` bytes: the caller becomes its owner.
    public func adoptFromKernel(index: UInt32, count: Int) -> PooledBuffer {
        let i = Int(index)
        unsafe precondition(owners[i] == Owner.kernel.rawValue, "buffer \(index) adopted but not lent to the kernel")
        precondition(count >= 0 && count <= bufferSizeBytes)
        unsafe owners[i] = Owner.user.rawValue
        kernelCount -= 1
        userCount += 1
        var b = unsafe PooledBuffer(pool: self, index: index, generation: generations[i])
        b.count = count
        return b
    }

    /// A kernel-owned buffer comes back unused (ring teardown, or the epoll emulation
    /// found no data). It goes to waiters or the free list, never back through the hook.
    public func reclaimFromKernel(index: UInt32) {
        let i = Int(index)
        unsafe precondition(owners[i] == Owner.kernel.rawValue, "buffer \(index) reclaimed but not lent to the kernel")
        kernelCount -= 1
        unsafe owners[i] = Owner.free.rawValue
        if let waiter = unsafe waiters.popFirst() {
            unsafe owners[i] = Owner.user.rawValue
            userCount += 1
            unsafe waiter.resume(returning: index)
            return
        }
        unsafe freeStack[freeCount] = index
        freeCount += 1
    }

    /// Every buffer currently lent to the kernel, for teardown.
    // MARK: Giving memory back

    /// Returns the pages of free buffers to the kernel (MADV_DONTNEED; the next use
    /// faults in zeroed pages), except those `keep` names (buffers registered with
    /// io_uring must keep their pinned pages). Only free buffers: a buffer lent to the
    /// kernel may hold received bytes whose completion is not reaped yet. Runs of
    /// adjacent buffers go in one call. Returns the bytes advised.
    @discardableResult
    public func releaseFreePages(keep: (UInt32) -> Bool = { _ in false }) -> Int {
        var advised = 0
        var runStart = -1
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        func flush(_ end: Int) {
            guard runStart >= 0 else { return }
            // Whole pages inside the run only: a page shared with a buffer in use stays.
            let from = unsafe (Int(bitPattern: base + runStart * bufferSizeBytes) + page - 1) & ~(page - 1)
            let to = unsafe Int(bitPattern: base + end * bufferSizeBytes) & ~(page - 1)
            if to > from, unsafe madvise(UnsafeMutableRawPointer(bitPattern: from), to - from, MADV_DONTNEED) == 0 { advised += to - from }
            runStart = -1
        }
        for i in 0..<bufferCount {
            if unsafe owners[i] == Owner.free.rawValue && !keep(UInt32(i)) {
                if runStart < 0 { runStart = i }
            } else {
                flush(i)
            }
        }
        flush(bufferCount)
        return advised
    }

    public func kernelOwnedIndexes() -> [UInt32] {
        (0..<bufferCount).compactMap { unsafe owners[$0] == Owner.kernel.rawValue ? UInt32($0) : nil }
    }

    /// Takes a handle apart so an in-flight operation can carry it as plain integers.
    /// Rebuild it with `reassemble` when the operation completes; until then the buffer
    /// stays `.user`-owned and counted, so accounting sees it as in use. Package-only
    /// (the event loop's in-flight operations): outside it, keep buffers in a
    /// `PooledBuffer` or a `PooledBufferList`, which own them.
    package func disassemble(_ buffer: consuming PooledBuffer) -> PooledBuffer.Parts {
        let parts = PooledBuffer.Parts(index: buffer.index, generation: buffer.generation, count: buffer.count)
        buffer.forget()
        return parts
    }

    package func reassemble(_ parts: PooledBuffer.Parts) -> PooledBuffer {
        let i = Int(parts.index)
        unsafe precondition(owners[i] == Owner.user.rawValue && generations[i] == parts.generation, "reassembled a stale buffer")
        var b = PooledBuffer(pool: self, index: parts.index, generation: parts.generation)
        b.count = parts.count
        return b
    }
}

/// FIFO of suspended `acquire` callers without per-waiter heap allocation once grown.
@safe struct WaiterQueue {
    private var items: [UnsafeContinuation<UInt32, Never>?] = unsafe []
    private var head = 0
    private(set) var count = 0

    mutating func append(_ c: UnsafeContinuation<UInt32, Never>) {
        if unsafe head > 0 && head == items.count {
            unsafe items.removeAll(keepingCapacity: true)
            head = 0
        }
        unsafe items.append(c)
        count += 1
    }

    mutating func popFirst() -> UnsafeContinuation<UInt32, Never>? {
        guard count > 0 else { return nil }
        let c = unsafe items[head]
        unsafe items[head] = nil
        head += 1
        count -= 1
        if count == 0 {
            unsafe items.removeAll(keepingCapacity: true)
            head = 0
        }
        return unsafe c
    }
}
