// BufferPool.PooledBuffer: the move-only handle to one pool buffer, and a move-only list
// of them. Dropping either returns its buffers to the pool; neither can be copied, so a
// buffer has one owner at a time and cannot be used after it was consumed.
/// A pooled buffer with exactly one owner. Dropping it returns it to its pool.
///
/// - warning: Not thread-safe: use and drop it on the pool's thread.
@safe public struct PooledBuffer: ~Copyable {
    /// A handle taken apart (`BufferPool.disassemble`): plain integers, owning nothing.
    package struct Parts: Sendable, Equatable {
        package let index: UInt32
        package let generation: UInt32
        package var count: Int
    }

    // Unmanaged keeps the handle trivially destructible (so `discard self` works) and
    // free of reference counting; the pool's deinit traps if any handle is still out.
    @usableFromInline let _pool: Unmanaged<BufferPool>
    @usableFromInline var pool: BufferPool { unsafe _pool.takeUnretainedValue() }
    public let index: UInt32
    @usableFromInline let generation: UInt32
    /// Number of initialized (valid) bytes, from the start of the buffer.
    public var count: Int = 0

    init(pool: BufferPool, index: UInt32, generation: UInt32) {
        unsafe self._pool = Unmanaged.passUnretained(pool)
        self.index = index
        self.generation = generation
    }

    deinit { pool.release(index: index, generation: generation) }

    /// Ends the handle without releasing the buffer (used by `BufferPool.disassemble`).
    consuming func forget() { discard self }

    public var capacity: Int { pool.bufferSizeBytes }
    public var isEmpty: Bool { count == 0 }

    /// The first `count` bytes.
    /// - warning: Do not let the pointer escape the closure.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        unsafe try body(UnsafeRawBufferPointer(start: pool.address(of: index), count: count))
    }

    /// All `capacity` bytes, writable; set `count` afterwards.
    /// - warning: Do not let the pointer escape the closure.
    public mutating func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        unsafe try body(UnsafeMutableRawBufferPointer(start: pool.address(of: index), count: pool.bufferSizeBytes))
    }

    /// Appends bytes from `source` up to the capacity; returns how many were copied.
    @discardableResult
    public mutating func append(contentsOf source: UnsafeRawBufferPointer) -> Int {
        let n = min(source.count, capacity - count)
        if n > 0, let s = source.baseAddress {
            unsafe (pool.address(of: index) + count).copyMemory(from: s, byteCount: n)
            count += n
        }
        return n
    }

    /// A copy of the valid bytes (for tests and small control messages, not the data path).
    public var bytes: [UInt8] { unsafe withUnsafeBytes { unsafe Array($0) } }
}

/// Several pooled buffers sent or written as one (a response head plus body chunks), or a
/// growing chain of them (a document serialized into pool buffers). Move-only like its
/// buffers; dropping it returns every buffer to the pool.
public struct PooledBufferList: ~Copyable {
    private var pool: BufferPool?
    package private(set) var parts: [PooledBuffer.Parts] = []

    public init() {}

    public mutating func append(_ buffer: consuming PooledBuffer) {
        let owner = buffer.pool
        precondition(pool == nil || pool === owner, "a list holds buffers of one pool")
        pool = owner
        parts.append(owner.disassemble(buffer))
    }

    public var count: Int { parts.count }
    public var isEmpty: Bool { parts.isEmpty }
    /// Valid bytes across all buffers.
    public var byteCount: Int { parts.reduce(0) { $0 + $1.count } }

    /// Runs `body` on the last buffer (to fill it further); nil when the list is empty.
    public mutating func withLast<R>(_ body: (inout PooledBuffer) -> R) -> R? {
        guard let pool, let last = parts.popLast() else { return nil }
        var buffer = pool.reassemble(last)
        let result = body(&buffer)
        parts.append(pool.disassemble(buffer))
        return result
    }

    /// Sets each buffer's count of valid bytes (after a scattered read filled them).
    package mutating func setCounts(_ counts: [Int]) {
        precondition(counts.count == parts.count)
        for i in parts.indices { parts[i].count = counts[i] }
    }

    /// Takes the last buffer back out of the list.
    public mutating func popLast() -> PooledBuffer? {
        guard let pool, let last = parts.popLast() else { return nil }
        return pool.reassemble(last)
    }

    /// Moves the first `n` buffers into a list of their own (to send them).
    public mutating func removeFirst(_ n: Int) -> PooledBufferList {
        precondition(n >= 0 && n <= parts.count)
        var head = PooledBufferList()
        head.pool = pool
        head.parts = Array(parts.prefix(n))
        parts.removeFirst(n)
        return head
    }

    /// A copy of the valid bytes of every buffer, in order (tests, not the data path).
    public var bytes: [UInt8] {
        guard let pool else { return [] }
        var out: [UInt8] = []
        out.reserveCapacity(byteCount)
        for p in parts { unsafe out.append(contentsOf: UnsafeRawBufferPointer(start: pool.address(of: p.index), count: p.count)) }
        return out
    }

    /// Address of part `i`'s first byte (valid while the list lives).
    package func address(of i: Int) -> UnsafeMutableRawPointer { unsafe pool!.address(of: parts[i].index) }

    deinit {
        if let pool { for p in parts { _ = pool.reassemble(p) } }
    }
}
