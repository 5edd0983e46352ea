// File ranges on a TCP connection (TCPConnection.send(file:range:)): the bytes of every
// range arrive intact by splice (io_uring) and by the copy path; a peer that does not read
// meets the send deadline; close() ends a send blocked on a full socket; a file shorter
// than the range is an error. On whichever backend SPOOL_IO_BACKEND selects; every test
// checks that the pipes are closed and the loops are quiescent afterwards.
import BufferPool
import Foundation
@testable import Ring
import SpoolTestSupport
import XCTest

final class SendFileTests: TwoLoopTestCase {
    private var directory: String!

    override func setUp() async throws {
        try await super.setUp()
        directory = NSTemporaryDirectory() + "spool-sendfile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: directory)
        try await super.tearDown()
    }

    private func makeFile(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Ranges below, at and above the splice minimum, from offset 0 and from odd offsets,
    /// up to the whole file, one after another on one connection and read slowly: the
    /// bytes arrive in order and intact. With the default configuration every range of at
    /// least `spliceMinimum` goes by splice where the backend has it; with
    /// `splicedSendsMax = 0` none does, and the bytes are the same.
    func testEveryRangeArrivesIntactBySpliceAndByCopy() async throws {
        let size = 3 * 1024 * 1024 + 123
        let content = pattern(seed: 11, count: size)
        let path = try makeFile("ranges", content)
        let minimum = Int(TCPConnection.spliceMinimum)
        let ranges: [Range<Int>] = [0..<1, 5..<(5 + minimum - 1), 7..<(7 + minimum), 17..<size, 0..<size, (size - 1)..<size, 1_000_000..<1_000_000]
        let expected = ranges.flatMap { content[$0] }
        let large = ranges.filter { $0.count >= minimum }.count

        var copyOnly = loopConfiguration()
        copyOnly.splicedSendsMax = 0
        let copyLoop = try EventLoop.start(id: 3, configuration: copyOnly)
        defer { copyLoop.shutdown() }

        for loop in [server!, copyLoop] {
            let fdsBefore = openFDCount()
            let (l, addr) = try await listen(on: loop)
            let sender = loop.spawn { () -> Int in
                let conn = try await l.value.accept()
                var small: Int32 = 16 * 1024
                setsockopt(conn.fd, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
                let file = try await File.open(path, .read)
                let before = loop.splicedSendsDone
                for r in ranges {
                    try await conn.send(file: file, range: UInt64(r.lowerBound)..<UInt64(r.upperBound), timeout: .seconds(20))
                }
                try await file.close()
                try await conn.shutdown(.write)
                await conn.close()
                return loop.splicedSendsDone - before
            }
            let received = try await readSlowly(from: addr, on: client!)
            let spliced = try await sender.value
            XCTAssertEqual(received.count, expected.count, "loop \(loop.id)")
            XCTAssertTrue(received == expected, "loop \(loop.id): the bytes differ")
            let splices = try await loop.run { loop.backend.supportsSplice }
            XCTAssertEqual(spliced, loop === copyLoop || !splices ? 0 : large, "loop \(loop.id) (\(loop.backendKind)): ranges sent by splice")
            try await loop.run { await l.value.close() }
            try await assertQuiescent(loop)
            XCTAssertEqual(openFDCount(), fdsBefore, "loop \(loop.id): a descriptor (a pipe?) was left open")
        }
        try await assertQuiescent(client!)
    }

    /// A peer that never reads: the send of a 64 MiB range fails at its deadline (the
    /// splice blocked on the full socket is cancelled), the pipe is closed, and the next
    /// send on the loop may splice again.
    func testASendToAPeerThatDoesNotReadFailsAtItsDeadline() async throws {
        let serverLoop = self.server!, clientLoop = self.client!
        let path = try makeFile("big", pattern(seed: 3, count: 64 * 1024 * 1024))
        let fdsBefore = openFDCount()
        let (l, addr) = try await listen(on: serverLoop)
        let sender = serverLoop.spawn { () -> (String, Int) in
            let conn = try await l.value.accept()
            let file = try await File.open(path, .read)
            var outcome = "sent"
            do {
                try await conn.send(file: file, range: 0..<UInt64(64 * 1024 * 1024), timeout: .milliseconds(300))
            } catch {
                outcome = (error as? RingError).map { "\($0.code)" } ?? "\(error)"
            }
            try await file.close()
            await conn.close()
            return (outcome, serverLoop.splicedSends)
        }
        let holder = try await clientLoop.run { Unchecked(try await TCPConnection.connect(to: addr)) }
        let started = ContinuousClock.now
        let (outcome, inFlight) = try await sender.value
        XCTAssertEqual(outcome, "\(RingError.Code.timedOut)")
        XCTAssertEqual(inFlight, 0, "the splice count was not given back")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(20))
        try await clientLoop.run { await holder.value.close() }
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
        XCTAssertEqual(openFDCount(), fdsBefore, "a descriptor (a pipe?) was left open")
    }

    /// close() from another task while a send waits on a full socket with a 60 s deadline:
    /// the send fails at once and close() returns, well before the deadline.
    func testCloseEndsASendBlockedOnAFullSocket() async throws {
        let serverLoop = self.server!, clientLoop = self.client!
        let path = try makeFile("big", pattern(seed: 5, count: 64 * 1024 * 1024))
        let (l, addr) = try await listen(on: serverLoop)
        let sender = serverLoop.spawn { () -> String in
            let conn = try await l.value.accept()
            let file = try await File.open(path, .read)
            let c = Unchecked(conn)
            serverLoop.spawn {
                try? await serverLoop.sleep(for: .milliseconds(300))
                await c.value.close()
            }
            var outcome = "sent"
            do {
                try await conn.send(file: file, range: 0..<UInt64(64 * 1024 * 1024), timeout: .seconds(60))
            } catch {
                outcome = "failed"
            }
            try await file.close()
            await conn.close()
            return outcome
        }
        let holder = try await clientLoop.run { Unchecked(try await TCPConnection.connect(to: addr)) }
        let started = ContinuousClock.now
        let outcome = try await sender.value
        XCTAssertEqual(outcome, "failed")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(30), "the send waited for its 60 s deadline")
        try await clientLoop.run { await holder.value.close() }
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
    }

    /// A range past the end of the file (it shrank after its size was read): the bytes that
    /// exist are sent, then the send fails with `.closed`, by splice and by copy alike.
    func testARangePastTheEndOfTheFileFails() async throws {
        let size = 1024 * 1024 + 9
        let content = pattern(seed: 8, count: size)
        let path = try makeFile("short", content)
        for count in [UInt64(size + 1), UInt64(size + 300_000)] {
            let (l, addr) = try await listen(on: server!)
            let serverLoop = self.server!
            let sender = serverLoop.spawn { () -> String in
                let conn = try await l.value.accept()
                let file = try await File.open(path, .read)
                var outcome = "sent"
                do {
                    try await conn.send(file: file, range: 0..<count, timeout: .seconds(20))
                } catch {
                    outcome = (error as? RingError).map { "\($0.code)" } ?? "\(error)"
                }
                try await file.close()
                try? await conn.shutdown(.write)
                await conn.close()
                return outcome
            }
            let received = try await readSlowly(from: addr, on: client!)
            let outcome = try await sender.value
            XCTAssertEqual(outcome, "\(RingError.Code.closed)", "range of \(count) bytes")
            // By copy, whole 128 KiB batches go out only once read in full; by splice, all of it.
            XCTAssertLessThanOrEqual(received.count, size)
            XCTAssertTrue(received == Array(content.prefix(received.count)), "the bytes sent differ")
            try await serverLoop.run { await l.value.close() }
            try await assertQuiescent(serverLoop)
        }
    }
}
