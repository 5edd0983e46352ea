// The blocking pool: bounded threads and queue, idle workers end, results reach async
// callers; and the proof that matters to a server: a file operation that blocks (opening
// a FIFO nobody writes) stalls no event loop, on either backend.
import Foundation
@testable import Ring
import SpoolTestSupport
import Synchronization
import Threads
import XCTest

final class BlockingPoolTests: XCTestCase {
    /// 64 jobs that each wait at a gate on a pool of 3 threads: exactly 3 run at once, the
    /// rest wait their turn, and every one finishes.
    func testThreadsAreBoundedAndEveryJobRuns() throws {
        let pool = BlockingPool(.init(maxThreads: 3, maxQueued: 1000, idleNanos: 5_000_000_000))
        struct Gauge { var running = 0, peak = 0, done = 0, open = false }
        let gauge = ConditionLock(Gauge())
        for _ in 0..<64 {
            try pool.submit {
                gauge.change { $0.running += 1; $0.peak = max($0.peak, $0.running) }
                gauge.wait(until: { $0.open }) { _, _ in }
                gauge.change { $0.running -= 1; $0.done += 1 }
            }
        }
        // Three are running and waiting at the gate; nothing more can start.
        let three = gauge.wait(until: { $0.running == 3 }, timeoutNanos: 10_000_000_000) { s, _ in s.running }
        XCTAssertEqual(three, 3)
        XCTAssertEqual(pool.snapshot.threads, 3)
        XCTAssertEqual(pool.snapshot.queued, 61)
        gauge.change { $0.open = true }
        let done = gauge.wait(until: { $0.done == 64 }, timeoutNanos: 20_000_000_000) { s, _ in s.done }
        XCTAssertEqual(done, 64)
        XCTAssertEqual(gauge.withLock { $0.peak }, 3)
    }

    func testAFullQueueRefusesInsteadOfGrowingForEver() throws {
        let pool = BlockingPool(.init(maxThreads: 1, maxQueued: 2, idleNanos: 5_000_000_000))
        let gate = ConditionLock(false)
        let started = ConditionLock(false)
        try pool.submit {
            started.change { $0 = true }
            gate.wait(until: { $0 }) { _, _ in }
        }
        _ = started.wait(until: { $0 }, timeoutNanos: 10_000_000_000) { _, ok in ok }
        try pool.submit {}
        try pool.submit {}
        XCTAssertThrowsError(try pool.submit {}) { error in
            XCTAssertEqual((error as? BlockingPoolError)?.queued, 2)
        }
        gate.change { $0 = true }
    }

    func testIdleWorkersEnd() throws {
        let pool = BlockingPool(.init(maxThreads: 4, maxQueued: 100, idleNanos: 20_000_000))
        let done = ConditionLock(0)
        for _ in 0..<8 { try pool.submit { done.change { $0 += 1 } } }
        _ = done.wait(until: { $0 == 8 }, timeoutNanos: 10_000_000_000) { _, _ in }
        // Each worker ends 20 ms after its last job; poll the count, bounded.
        let deadline = ContinuousClock.now + .seconds(10)
        while pool.snapshot.threads > 0 && ContinuousClock.now < deadline { usleep(5_000) }
        XCTAssertEqual(pool.snapshot.threads, 0)
        XCTAssertEqual(pool.snapshot.completed, 8)
    }

    func testRunReturnsResultsAndErrorsToTheAwaitingTask() async throws {
        let pool = BlockingPool(.init(maxThreads: 2))
        let v = try await pool.run { () -> Int in 6 * 7 }
        XCTAssertEqual(v, 42)
        struct Boom: Error {}
        do {
            _ = try await pool.run { () throws(Boom) -> Int in throw Boom() }
            XCTFail("no error")
        } catch is Boom {}
    }

    /// Opening a FIFO for reading blocks until a writer comes. Through the loop (io_uring:
    /// io-wq; epoll: the blocking pool) it must not stall the loop: a NOP on the same loop
    /// completes meanwhile. Before the pool, the epoll backend opened files on the loop
    /// thread and this test hung until the writer came.
    func testABlockingFileOpenDoesNotStallTheLoop() async throws {
        let dir = NSTemporaryDirectory() + "spool-pool-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let loop = try EventLoop.start(configuration: loopConfiguration())
        defer { loop.shutdown() }
        let finished = ConditionLock(false)
        let opening = loop.spawn { () -> Bool in
            defer { finished.change { $0 = true } }
            let f = try await File.open(fifo, .read)
            try await f.close()
            return true
        }
        // The loop answers while the open waits.
        for _ in 0..<20 {
            let r = try await loop.run { await loop.nop() }
            XCTAssertEqual(r.res, 0)
        }
        // A writer releases the open. Non-blocking: io_uring may have opened (and closed)
        // the reading end already, and then a blocking writer would wait for ever.
        var w: Int32 = -1
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            w = open(fifo, O_WRONLY | O_NONBLOCK)
            if w >= 0 || errno != ENXIO { break }
            // ENXIO: no reader (yet, or any more). Done when the open already finished.
            if finished.withLock({ $0 }) { break }
            usleep(1_000)
        }
        let opened = try await opening.value
        if w >= 0 { close(w) }
        XCTAssertTrue(opened)
    }
}
