// The loop core: async and callback round trips, cross-thread wakeups, cancellation of
// timers, backend selection and its errors, and the epoll backend's timer heap.
import BufferPool
import Foundation
@testable import Ring
import SpoolTestSupport
import XCTest

final class LoopTests: XCTestCase {
    func testNopRoundTripsAsyncAndCallback() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration())
        defer { loop.shutdown() }
        let asyncResults = try await loop.run { () -> [Int32] in
            var out: [Int32] = []
            for _ in 0..<1000 { out.append(await loop.nop().res) }
            return out
        }
        XCTAssertEqual(asyncResults, Array(repeating: 0, count: 1000))

        // Callback layer: a chain of 1,000 NOPs, each submitted from the previous completion.
        let done = Counter()
        loop.execute {
            final class Chain { var left = 1000 }
            let chain = Chain()
            func step(_ r: OpResult) {
                precondition(r.res == 0)
                chain.left -= 1
                done.add()
                if chain.left > 0 { loop.submitNop(step) }
            }
            loop.submitNop(step)
        }
        let settled = try await eventually(on: loop) { done.value == 1000 }
        XCTAssertTrue(settled)
        try await assertQuiescent(loop)
    }

    func testCrossThreadWakeupsReachASleepingLoop() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration())
        defer { loop.shutdown() }
        let n = Counter()
        for _ in 0..<200 {
            try await Task.sleep(for: .microseconds(200))   // let the loop block in the kernel
            loop.execute { n.add() }
        }
        let settled = try await eventually(on: loop) { n.value == 200 }
        XCTAssertTrue(settled)
        // Tasks started from other threads run on the loop thread.
        let onLoop = try await loop.run { loop.inLoop && EventLoop.current === loop }
        XCTAssertTrue(onLoop)
    }

    func testSleepIsCancellable() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration())
        defer { loop.shutdown() }
        let t = loop.spawn { () -> String in
            do { try await loop.sleep(for: .seconds(30)); return "slept" } catch { return "\(error)" }
        }
        let settled = try await eventually(on: loop) { loop.operationsInFlight == 1 }
        XCTAssertTrue(settled)
        t.cancel()
        let outcome = try await t.value
        XCTAssertEqual(outcome, "sleep: cancelled")
        try await assertQuiescent(loop)
    }

    func testManyConcurrentTimersCompleteInDeadlineOrder() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration())
        defer { loop.shutdown() }
        let order = try await loop.run { () -> [Int] in
            final class Log { var items: [Int] = [] }
            let log = Log()
            let l = Unchecked(log)
            var tasks: [Task<Void, any Error>] = []
            for i in [5, 1, 4, 2, 3] {
                tasks.append(loop.spawn {
                    try await loop.sleep(for: .milliseconds(i * 30))
                    l.value.items.append(i)
                })
            }
            for t in tasks { try await t.value }
            return log.items
        }
        XCTAssertEqual(order, [1, 2, 3, 4, 5])
    }

    func testBadBackendVariableIsAClearError() throws {
        let saved = getenv("SPOOL_IO_BACKEND").map { String(cString: $0) }
        setenv("SPOOL_IO_BACKEND", "iouring2", 1)
        defer {
            if let saved { setenv("SPOOL_IO_BACKEND", saved, 1) } else { unsetenv("SPOOL_IO_BACKEND") }
        }
        XCTAssertThrowsError(try EventLoop.start(configuration: loopConfiguration())) { e in
            XCTAssertTrue("\(e)".contains("SPOOL_IO_BACKEND=iouring2 is not one of uring, epoll, auto"), "\(e)")
        }
    }

    func testForcedEpollBackend() throws {
        var c = loopConfiguration()
        c.backend = .epoll
        let loop = try EventLoop.start(configuration: c)
        XCTAssertEqual(loop.backendKind, .epoll)
        loop.shutdown()
    }

    func testInvalidPoolConfigurationIsRejected() {
        var c = loopConfiguration()
        c.pool = BufferPoolConfiguration(bufferSizeBytes: 4096, memoryCapBytes: 4096)
        XCTAssertThrowsError(try EventLoop.start(configuration: c)) { e in
            XCTAssertTrue("\(e)".contains("fewer than 2 buffers"), "\(e)")
        }
    }

    func testKernelVersionParsing() {
        XCTAssertEqual(KernelVersion(release: "6.18.44-fc-v657"), KernelVersion(6, 18, 44))
        XCTAssertEqual(KernelVersion(release: "5.4.0"), KernelVersion(5, 4, 0))
        XCTAssertEqual(KernelVersion(release: "6.1"), KernelVersion(6, 1, 0))
        XCTAssertNil(KernelVersion(release: "linux"))
        XCTAssertLessThan(KernelVersion(5, 19), KernelVersion(6, 0))
    }

    func testTimerHeapOrdersAndRemoves() {
        var h = TimerHeap()
        var g = SplitMix(seed: 42)
        var expected: [Int64] = []
        for i in 0..<500 {
            let d = Int64(g.next() % 10_000)
            h.push(deadline: d, ud: UInt64(i + 1), cancelsTarget: false)
            if i % 5 != 0 { expected.append(d) } else { h.remove(ud: UInt64(i + 1)) }
        }
        var got: [Int64] = []
        while let e = h.popExpired(now: .max) { got.append(e.deadline) }
        XCTAssertEqual(got, expected.sorted())
        XCTAssertNil(h.nextDeadline)
    }

    func testKernelReportHere() {
        let r = KernelReport.collect()
        let text = r.render()
        XCTAssertTrue(text.contains("kernel:"))
        XCTAssertTrue(text.contains("backend Spool would run:"))
        if r.setupErrno == 0 {
            XCTAssertTrue(r.opcodes.contains { $0.name == "RECV" && $0.supported == true })
        } else {
            XCTAssertEqual(r.exitCode, 1)
        }
    }
}
