// Queued sends (TCPConnection.sendQueued): order with awaited sends and the FIN, short
// sends on a small socket buffer, a deadline against a peer that does not read, and close
// abandoning what is queued; on whichever backend SPOOL_IO_BACKEND selects.
import BufferPool
import Foundation
@testable import Ring
import SpoolTestSupport
import XCTest

final class QueuedSendTests: TwoLoopTestCase {

    /// 120 pieces, most queued and every fifth sent with an awaited send, over a 4 KiB
    /// socket buffer to a slow reader: every byte arrives once, in order, and the FIN
    /// (shutdown) comes after the last queued byte.
    func testQueuedAndAwaitedSendsKeepTheirOrderAndTheFINComesLast() async throws {
        let serverLoop = self.server!, clientLoop = self.client!
        let (l, addr) = try await listen(on: serverLoop)
        let sizes = (0..<120).map { i in i % 11 == 4 ? 0 : 1 + (i * 7919) % 16384 }
        let expected = pattern(seed: 7, count: sizes.reduce(0, +))
        let sender = serverLoop.spawn { () -> Int in
            let conn = try await l.value.accept()
            var small: Int32 = 4096
            setsockopt(conn.fd, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            var off = 0
            var mostQueued = 0
            for (i, n) in sizes.enumerated() {
                let piece = Array(expected[off..<(off + n)])
                off += n
                if i % 5 == 0 {
                    try await conn.send(piece, timeout: .seconds(20))
                    XCTAssertEqual(conn.queuedSendCount, 0, "an awaited send goes after the queued ones")
                } else {
                    var b = await serverLoop.pool.acquire()
                    piece.withUnsafeBytes { _ = b.append(contentsOf: $0) }
                    try conn.sendQueued(b, timeout: .seconds(20))
                    mostQueued = max(mostQueued, conn.queuedSendCount)
                }
            }
            try await conn.shutdown(.write)
            XCTAssertEqual(conn.queuedSendCount, 0)
            await conn.close()
            return mostQueued
        }
        let received = try await readSlowly(from: addr, on: clientLoop)
        let mostQueued = try await sender.value
        XCTAssertGreaterThan(mostQueued, 1, "the socket never pushed back: the test did not queue")
        XCTAssertEqual(received.count, expected.count)
        XCTAssertTrue(received == expected, "bytes differ or are out of order")
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
    }

    /// A peer that never reads: the queued sends fail at their deadline; the failure is
    /// thrown by flushSends and by every later sendQueued, each buffer goes back, and a
    /// receive on the broken connection ends at once.
    func testQueuedSendsToAPeerThatDoesNotReadFailAtTheirDeadline() async throws {
        let serverLoop = self.server!, clientLoop = self.client!
        let (l, addr) = try await listen(on: serverLoop)
        let serverSide = serverLoop.spawn { () -> [String] in
            let conn = try await l.value.accept()
            // 1,024 x 16 KiB = 16 MiB, beyond what loopback socket buffers hold.
            try queueFullBuffers(1024, on: conn, timeout: .milliseconds(300))
            var outcomes: [String] = []
            do { try await conn.flushSends(); outcomes.append("flushed") } catch { outcomes.append(errorCode(error)) }
            XCTAssertEqual(conn.queuedSendCount, 0, "a failed outbox keeps no buffer")
            outcomes.append(queueOneByte(on: conn))
            // The broken connection is shut down: a receive ends at once, not at its timeout.
            do {
                _ = try await conn.receive(timeout: .seconds(10))
                outcomes.append("receive ended")
            } catch {
                outcomes.append(errorCode(error) == "\(RingError.Code.timedOut)" ? "receive timed out" : "receive ended")
            }
            await conn.close()
            return outcomes
        }
        let holder = try await clientLoop.run { Unchecked(try await TCPConnection.connect(to: addr)) }
        let outcomes = try await serverSide.value
        XCTAssertEqual(outcomes, ["\(RingError.Code.timedOut)", "\(RingError.Code.timedOut)", "receive ended"])
        try await clientLoop.run { await holder.value.close() }
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
    }

    /// close() with sends still queued (the peer is not reading) returns at once, drops
    /// them and gives every buffer back; a later sendQueued is refused.
    func testCloseAbandonsQueuedSends() async throws {
        let serverLoop = self.server!, clientLoop = self.client!
        let (l, addr) = try await listen(on: serverLoop)
        let serverSide = serverLoop.spawn { () -> (Int, String) in
            let conn = try await l.value.accept()
            try queueFullBuffers(1024, on: conn, timeout: .seconds(60))
            let queued = conn.queuedSendCount
            await conn.close()
            return (queued, queueOneByte(on: conn))
        }
        let holder = try await clientLoop.run { Unchecked(try await TCPConnection.connect(to: addr)) }
        let started = ContinuousClock.now
        let (queued, after) = try await serverSide.value
        XCTAssertGreaterThan(queued, 0, "everything was sent at once: the test did not queue")
        XCTAssertEqual(after, "\(RingError.Code.closed)")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(30), "close waited for the 60 s deadline")
        try await clientLoop.run { await holder.value.close() }
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
    }
}

/// Queues `count` full pool buffers (the pool must have them free).
private func queueFullBuffers(_ count: Int, on conn: TCPConnection, timeout: Duration) throws {
    for _ in 0..<count {
        guard var b = conn.loop.pool.tryAcquire() else { throw RingError(.invalidArgument, operation: "test", reason: "pool empty") }
        b.count = b.capacity
        try conn.sendQueued(b, timeout: timeout)
    }
}

/// "queued", or the code sendQueued threw.
private func queueOneByte(on conn: TCPConnection) -> String {
    guard var b = conn.loop.pool.tryAcquire() else { return "pool empty" }
    b.count = 1
    do { try conn.sendQueued(b) } catch { return "\(error.code)" }
    return "queued"
}

private func errorCode(_ error: any Error) -> String {
    (error as? RingError).map { "\($0.code)" } ?? "\(error)"
}
