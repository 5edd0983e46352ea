// BufferPool: acquire/release, exhaustion as an outcome, FIFO waiters, kernel lending,
// disassembly for in-flight operations, and configuration errors.
@testable import BufferPool
import XCTest

final class BufferPoolTests: XCTestCase {
    func makePool(count: Int = 4, size: Int = 4096) throws -> BufferPool {
        try BufferPool(BufferPoolConfiguration(bufferSizeBytes: size, memoryCapBytes: count * size))
    }

    func testAcquireUntilExhaustedThenRelease() throws {
        let pool = try makePool()
        var held: [PooledBuffer.Parts] = []
        while let b = pool.tryAcquire() { held.append(pool.disassemble(b)) }
        XCTAssertEqual(held.count, 4)
        XCTAssertEqual(pool.freeBuffers, 0)
        XCTAssertEqual(pool.exhaustedCount, 1)
        if let extra = pool.tryAcquire() {
            XCTFail("an exhausted pool handed out buffer \(extra.index)")
        }
        XCTAssertEqual(Set(held.map(\.index)).count, 4, "every buffer handed out once")
        for p in held {
            let b = pool.reassemble(p)
            _ = consume b                             // dropped: released
        }
        XCTAssertTrue(pool.isQuiescent)
        XCTAssertEqual(pool.freeBuffers, 4)
        XCTAssertEqual(pool.freeLowWater, 0)
    }

    func testBuffersAreDisjointAndKeepTheirBytes() throws {
        let pool = try makePool(count: 8, size: 1024)
        var parts: [PooledBuffer.Parts] = []
        for i in 0..<8 {
            var b = pool.tryAcquire()!
            let bytes = [UInt8](repeating: UInt8(i), count: 1024)
            bytes.withUnsafeBytes { XCTAssertEqual(b.append(contentsOf: $0), 1024) }
            bytes.withUnsafeBytes { XCTAssertEqual(b.append(contentsOf: $0), 0, "full buffer takes nothing more") }
            parts.append(pool.disassemble(b))
        }
        for (i, p) in parts.enumerated() {
            let b = pool.reassemble(p)
            XCTAssertEqual(b.bytes, [UInt8](repeating: UInt8(i), count: 1024))
        }
        XCTAssertTrue(pool.isQuiescent)
    }

    @MainActor
    func testWaitersAreServedInOrder() async throws {
        nonisolated(unsafe) let pool = try makePool(count: 2)
        let a = pool.tryAcquire()!
        let b = pool.tryAcquire()!
        // Two waiters queue up; releasing hands buffers over in FIFO order.
        final class Log { var order: [Int] = [] }
        nonisolated(unsafe) let log = Log()
        let first = Task { @MainActor in
            let x = await pool.acquire()
            log.order.append(Int(x.index))
        }
        while pool.waitingAcquirers < 1 { await Task.yield() }
        let second = Task { @MainActor in
            let x = await pool.acquire()
            log.order.append(Int(x.index) + 10)
        }
        while pool.waitingAcquirers < 2 { await Task.yield() }
        let ia = a.index, ib = b.index
        _ = consume a
        _ = consume b
        await first.value
        await second.value
        // The tasks may run in either order; what matters is who got which buffer.
        XCTAssertEqual(log.order.sorted(), [Int(ia), Int(ib) + 10].sorted(), "first waiter gets the first buffer released")
        XCTAssertTrue(pool.isQuiescent)
    }

    func testLendingToTheKernelAndBack() throws {
        let pool = try makePool(count: 4)
        let i = pool.lendToKernel()!
        let j = pool.lendToKernel()!
        XCTAssertEqual(pool.kernelHeldBuffers, 2)
        XCTAssertTrue(pool.isQuiescent, "kernel-lent buffers still count as pooled")
        var b = pool.adoptFromKernel(index: i, count: 100)
        XCTAssertEqual(b.count, 100)
        XCTAssertEqual(pool.userHeldBuffers, 1)
        XCTAssertFalse(pool.isQuiescent)
        b.count = 0
        _ = consume b
        pool.reclaimFromKernel(index: j)
        XCTAssertEqual(pool.kernelHeldBuffers, 0)
        XCTAssertEqual(pool.freeBuffers, 4)
    }

    func testReleaseHookCanKeepBuffers() throws {
        let pool = try makePool(count: 4)
        var kept: [UInt32] = []
        pool.releaseHook = { index in
            if kept.count < 1 { kept.append(index); return true }
            return false
        }
        _ = pool.tryAcquire()
        _ = pool.tryAcquire()
        XCTAssertEqual(kept.count, 1)
        XCTAssertEqual(pool.kernelHeldBuffers, 1)
        XCTAssertEqual(pool.freeBuffers, 3)
        XCTAssertTrue(pool.isQuiescent)
    }

    func testConfigurationErrors() {
        XCTAssertThrowsError(try BufferPool(BufferPoolConfiguration(bufferSizeBytes: 100, memoryCapBytes: 1 << 20))) { e in
            XCTAssertTrue("\(e)".contains("outside 512 B"), "\(e)")
        }
        XCTAssertThrowsError(try BufferPool(BufferPoolConfiguration(bufferSizeBytes: 4096, memoryCapBytes: 4096)))
        XCTAssertThrowsError(try BufferPool(BufferPoolConfiguration(bufferSizeBytes: 512, memoryCapBytes: 512 * 70_000))) { e in
            XCTAssertTrue("\(e)".contains("65,536"), "\(e)")
        }
    }

    func testArenaIsCarvedIntoDisjointPools() throws {
        let arena = try BufferArena(byteCount: 8 * 4096)
        let p1 = BufferPool(arena: arena, offset: 0, bufferSizeBytes: 4096, bufferCount: 4)
        let p2 = BufferPool(arena: arena, offset: 4 * 4096, bufferSizeBytes: 4096, bufferCount: 4)
        let a = p1.tryAcquire()!, b = p2.tryAcquire()!
        XCTAssertNotEqual(p1.address(of: a.index), p2.address(of: b.index))
        XCTAssertEqual(p2.base - p1.base, 4 * 4096)
    }

    /// Free buffers' pages go back to the kernel (they read as zeros after); buffers held by
    /// users, lent to the kernel, or named by `keep` keep their bytes.
    func testReleaseFreePagesSkipsBuffersInUse() throws {
        let pool = try makePool(count: 8, size: 4096)
        var parts: [PooledBuffer.Parts] = []
        for i in 0..<8 {
            var b = pool.tryAcquire()!
            let bytes = [UInt8](repeating: UInt8(i + 1), count: 4096)
            bytes.withUnsafeBytes { _ = b.append(contentsOf: $0) }
            parts.append(pool.disassemble(b))
        }
        // Free 0...3, keep 4 held, lend 5 to the kernel, and name 2 in `keep`.
        for p in parts[0...3] { _ = pool.reassemble(p) }
        let lent = pool.reassemble(parts[5])
        _ = consume lent
        let kernelIndex = pool.lendToKernel()!
        let advised = pool.releaseFreePages { $0 == parts[2].index }
        XCTAssertEqual(advised, 3 * 4096, "free buffers 0, 1 and 3 (6 and 7 are held)")
        func first(_ index: UInt32) -> UInt8 { pool.address(of: index).load(as: UInt8.self) }
        XCTAssertEqual(first(parts[0].index), 0, "released pages read as zeros")
        XCTAssertEqual(first(parts[2].index), 3, "kept by the caller")
        XCTAssertEqual(first(parts[4].index), 5, "held by a user")
        XCTAssertEqual(first(kernelIndex), UInt8(kernelIndex + 1), "lent to the kernel")
        XCTAssertEqual(pool.reassemble(parts[4]).bytes, [UInt8](repeating: 5, count: 4096))
        for p in parts[6...7] { _ = pool.reassemble(p) }
        pool.reclaimFromKernel(index: kernelIndex)
        XCTAssertTrue(pool.isQuiescent)
    }
}
