// Completion-driven receiving (TCPConnection.receiveContinuously): an echo with no task
// per piece keeps every byte in order and hears the end of stream once; a reset peer is
// reported as a failure; close() ends it without a report. On whichever backend
// SPOOL_IO_BACKEND selects.
import BufferPool
import Foundation
@testable import Ring
import SpoolTestSupport
import Threads
import XCTest

/// Loop-confined record of what the handlers saw.
private final class Seen: @unchecked Sendable {
    var pieces = 0
    var ends: [String] = []
}

final class ContinuousReceiveTests: TwoLoopTestCase {

    /// Starts a callback-driven echo of the next connection `l` accepts; `seen` records it.
    private func startEcho(_ l: Unchecked<TCPListener>, seen: Seen) -> Task<Void, any Error> {
        let loop = server!
        return loop.spawn {
            let conn = try await l.value.accept()
            let box = Unchecked(conn)
            let finished = Unchecked(Parked())
            conn.receiveContinuously(onData: { piece in
                seen.pieces += 1
                do { try box.value.sendQueued(piece, timeout: .seconds(20)) } catch { seen.ends.append("send failed") }
            }, onEnd: { failure in
                seen.ends.append(failure.map { "\($0.code)" } ?? "end")
                finished.value.done = true
            })
            // Bounded wait for the end, on the loop's clock.
            let deadline = loop.now + .seconds(20)
            while !finished.value.done && loop.now < deadline { try await loop.sleep(for: .milliseconds(2)) }
            try? await conn.flushSends()
            await conn.close()
        }
    }

    /// 1 MiB in uneven pieces to a callback-driven echo and back, with a half-close: every
    /// byte returns in order, and the end of stream is reported once, after the data.
    func testCallbackEchoKeepsOrderAndReportsTheEndOnce() async throws {
        let serverLoop = self.server!, clientLoop = self.client!
        let (l, addr) = try await listen(on: serverLoop)
        let seen = Seen()
        let echo = startEcho(l, seen: seen)
        let data = pattern(seed: 21, count: 1 << 20)
        let back = try await clientLoop.run { () -> [UInt8] in
            let conn = try await TCPConnection.connect(to: addr)
            var off = 0, k = 0
            while off < data.count {
                let n = min(data.count - off, 1 + (k * 40_503) % 50_000)
                try await conn.send(Array(data[off..<(off + n)]), timeout: .seconds(20))
                off += n; k += 1
            }
            try await conn.shutdown(.write)
            var got: [UInt8] = []
            while let b = try await conn.receive(timeout: .seconds(20)) { got += b.bytes }
            await conn.close()
            return got
        }
        try await echo.value
        XCTAssertEqual(back.count, data.count)
        XCTAssertTrue(back == data, "echoed bytes differ or are out of order")
        let (pieces, ends) = try await serverLoop.run { (seen.pieces, seen.ends) }
        XCTAssertGreaterThan(pieces, 1)
        XCTAssertEqual(ends, ["end"])
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
    }

    /// A peer that resets the connection: the end is reported once, as a failure.
    func testAResetPeerIsReportedAsAFailure() async throws {
        let serverLoop = self.server!, clientLoop = self.client!
        let (l, addr) = try await listen(on: serverLoop)
        let seen = Seen()
        let echo = startEcho(l, seen: seen)
        try await clientLoop.run {
            let conn = try await TCPConnection.connect(to: addr)
            try await conn.send(Array("hello".utf8), timeout: .seconds(5))
            guard let b = try await conn.receive(timeout: .seconds(5)) else { throw RingError(.closed, operation: "echo") }
            XCTAssertEqual(b.bytes, Array("hello".utf8))
            conn.setResetOnClose()
            await conn.close()
        }
        try await echo.value
        let ends = try await serverLoop.run { seen.ends }
        XCTAssertEqual(ends.count, 1)
        XCTAssertNotEqual(ends.first, "end", "a reset is not a clean end of stream")
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
    }
}

private final class Parked { var done = false }
