// The reap's replay of a kept answer (Ring.ReplayTable, CShims/CURing/replay.c): armed
// while the connection's task waits, it answers exactly the kept request without Swift,
// with the Date and request id renewed, until a guard word moves; anything else reaches
// the task. A replay's send in flight keeps its place in the byte stream ahead of what
// the task sends next, an idle timeout counts from the last replay, and a connection
// closed under a blocked replay send is cleaned up. io_uring only: on epoll the loop has
// no table and the keep is refused.
import BufferPool
import Foundation
@testable import Ring
import SpoolTestSupport
import Threads
import XCTest

/// Loop-confined record of what the server saw.
private final class ReplayLog: @unchecked Sendable {
    var toTask: [String] = []
    var folded = 0
    var timedOut = false
    var keptAt: Int64 = 0
}

final class ReplayTests: TwoLoopTestCase {
    private static let metricKey = SharedWord()

    /// "PONG <Date> <16 hex digits>\n": the Date at 5, the id's digits at 35.
    private static let pong: [UInt8] = Array("PONG \(String(repeating: "X", count: 29)) \(String(repeating: "0", count: 16))\n".utf8)

    private static func keep(_ conn: TCPConnection, request: String, answer: [UInt8], dateAt: Int, requestIDAt: Int,
                      ids: SharedWord?, guards: [ReplayGuard], log: ReplayLog) -> Bool {
        let keep = ReplayKeep(answer: answer, dateAt: dateAt, requestIDAt: requestIDAt, requestIDs: ids, guards: guards,
                              metricKey: ObjectIdentifier(ReplayTests.metricKey), fold: { count, _ in log.folded += count })
        return Array(request.utf8).withUnsafeBytes { conn.keepReplay(request: $0, keep) }
    }

    /// Accepts the next connection on `l`, reads its first request (`request`), keeps
    /// `request` with `answer` for the reap, answers "FIRST\n" itself and arms the replay.
    private static func acceptAndArm(_ l: Unchecked<TCPListener>, request: String, answer: [UInt8], dateAt: Int, requestIDAt: Int = -1,
                                     ids: SharedWord? = nil, guards: [ReplayGuard] = [], log: ReplayLog,
                                     smallSendBuffer: Bool = false, shortcutWaitNanoseconds: Int64? = nil) async throws -> TCPConnection {
        let conn = try await l.value.accept()
        if smallSendBuffer { shrink(conn, SO_SNDBUF) }
        var pending: [UInt8] = []
        _ = try await read(conn, request.utf8.count, pending: &pending)
        XCTAssertTrue(keep(conn, request: request, answer: answer, dateAt: dateAt, requestIDAt: requestIDAt, ids: ids, guards: guards, log: log))
        try await conn.send(Array("FIRST\n".utf8), timeout: .seconds(10))
        if let wait = shortcutWaitNanoseconds { conn.receiveShortcutWaitNanoseconds = wait }
        conn.armReplay()
        return conn
    }

    /// Shrinks a socket buffer (SO_SNDBUF or SO_RCVBUF) to 4 KiB, so that a large answer
    /// blocks on it.
    private static func shrink(_ conn: TCPConnection, _ option: Int32) {
        var small: Int32 = 4096
        _ = setsockopt(conn.fd, SOL_SOCKET, option, &small, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Reads exactly `n` bytes (or what came before the end of stream).
    private static func read(_ conn: TCPConnection, _ n: Int, pending: inout [UInt8]) async throws -> [UInt8] {
        while pending.count < n, let b = try await conn.receive(timeout: .seconds(10)) { pending += b.bytes }
        let got = Array(pending.prefix(n))
        pending.removeFirst(got.count)
        return got
    }

    func testTheReapAnswersTheKeptRequestUntilAGuardMoves() async throws {
        let serverLoop = server!, clientLoop = client!
        guard serverLoop.backendKind == .uring else {
            // No table: `keepReplay` refuses, and the task answers everything.
            let none = try await serverLoop.run { serverLoop.replayTable == nil }
            XCTAssertTrue(none)
            return
        }
        let (l, addr) = try await listen(on: serverLoop)
        let log = ReplayLog()
        let guardWord = SharedWord(0), ids = SharedWord(100)
        let task = serverLoop.spawn {
            let conn = try await ReplayTests.acceptAndArm(l, request: "PING\n", answer: ReplayTests.pong, dateAt: 5, requestIDAt: 35, ids: ids,
                                                          guards: [ReplayGuard(guardWord, equals: 0)], log: log)
            // Everything the reap does not answer comes here.
            while let b = try await conn.receive(timeout: .seconds(10)) {
                log.toTask.append(String(decoding: b.bytes, as: UTF8.self))
                try await conn.send(Array("SWIFT\n".utf8), timeout: .seconds(10))
            }
            await conn.close()
        }
        let answers = try await clientLoop.run { () -> [String] in
            let conn = try await TCPConnection.connect(to: addr)
            var pending: [UInt8] = [], out: [String] = []
            try await conn.send(Array("PING\n".utf8))
            out.append(String(decoding: try await ReplayTests.read(conn, 6, pending: &pending), as: UTF8.self))
            for _ in 0..<5 {
                try await conn.send(Array("PING\n".utf8))
                out.append(String(decoding: try await ReplayTests.read(conn, ReplayTests.pong.count, pending: &pending), as: UTF8.self))
            }
            // Another request: the task's.
            try await conn.send(Array("PONG\n".utf8))
            out.append(String(decoding: try await ReplayTests.read(conn, 6, pending: &pending), as: UTF8.self))
            // The kept request again, after the guard moved: the task's too.
            guardWord.store(1)
            try await conn.send(Array("PING\n".utf8))
            out.append(String(decoding: try await ReplayTests.read(conn, 6, pending: &pending), as: UTF8.self))
            await conn.close()
            return out
        }
        try await task.value
        XCTAssertEqual(answers.first, "FIRST\n")
        XCTAssertEqual(Array(answers.suffix(2)), ["SWIFT\n", "SWIFT\n"])
        let replays = answers[1...5]
        let now = Date()
        for (k, a) in replays.enumerated() {
            XCTAssertTrue(a.hasPrefix("PONG ") && a.hasSuffix("\n"), a)
            let date = String(a.dropFirst(5).prefix(29))
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "GMT")
            f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            let parsed = try XCTUnwrap(f.date(from: date), "not an IMF-fixdate: \(date)")
            XCTAssertLessThan(abs(parsed.timeIntervalSince(now)), 30, date)
            // The ids continue the counter: 101, 102, ... in 16 hex digits.
            XCTAssertEqual(String(a.dropFirst(35).prefix(16)), String(format: "%016llx", 101 + k))
        }
        XCTAssertEqual(ids.load(), 105)
        let (toTask, folded, reaped) = try await serverLoop.run { (log.toTask, log.folded, serverLoop.reapReplays) }
        XCTAssertEqual(toTask, ["PONG\n", "PING\n"])
        XCTAssertEqual(folded, 5)
        XCTAssertEqual(reaped, 5)
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        let open = try await serverLoop.run { serverLoop.replayTable?.open }
        XCTAssertEqual(open, 0)
    }

    /// Bytes the task has not seen yet come first: one write of 16 KiB of something else
    /// (a pool buffer's worth) followed by the kept request arrives as two receives in one
    /// batch, and the reap must not answer the second before the task has the first (an
    /// outside probe had the kept poll answered first, and a request's body taken for a
    /// poll).
    func testEarlierBytesInTheSameBatchComeFirst() async throws {
        let serverLoop = server!, clientLoop = client!
        guard serverLoop.backendKind == .uring else { throw XCTSkip("the reap's replay is io_uring's") }
        let (l, addr) = try await listen(on: serverLoop)
        let log = ReplayLog()
        let rounds = 8, write = (16 << 10) + 5
        let task = serverLoop.spawn {
            let conn = try await ReplayTests.acceptAndArm(l, request: "PING\n", answer: ReplayTests.pong, dateAt: 5, log: log)
            var seen = 0
            while let b = try await conn.receive(timeout: .seconds(10)) {
                seen += b.count
                log.toTask.append("\(b.count)")
                // One answer per whole write, then armed again for the next round.
                if seen % write == 0 {
                    try await conn.send(Array("SWIFT\n".utf8), timeout: .seconds(10))
                    conn.armReplay()
                }
            }
            await conn.close()
        }
        let firsts = try await clientLoop.run { () -> [String] in
            let conn = try await TCPConnection.connect(to: addr)
            var pending: [UInt8] = [], firsts: [String] = []
            try await conn.send(Array("PING\n".utf8))
            _ = try await ReplayTests.read(conn, 6, pending: &pending)
            for _ in 0..<rounds {
                try await conn.send(Array(repeating: UInt8(ascii: "x"), count: 16 << 10) + Array("PING\n".utf8))
                firsts.append(String(decoding: try await ReplayTests.read(conn, 6, pending: &pending), as: UTF8.self))
            }
            await conn.close()
            return firsts
        }
        try await task.value
        XCTAssertEqual(firsts, Array(repeating: "SWIFT\n", count: rounds), "a kept request was answered ahead of the bytes before it")
        let (toTask, reaped) = try await serverLoop.run { (log.toTask, serverLoop.reapReplays) }
        XCTAssertEqual(reaped, 0)
        XCTAssertEqual(toTask.compactMap { Int($0) }.reduce(0, +), rounds * write)
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
    }

    /// A replay's send blocked on a full socket, and another request meanwhile: the task's
    /// answer to it waits behind the replay's bytes, and nothing is lost or reordered.
    func testTheTasksAnswerWaitsBehindAReplaySendInFlight() async throws {
        let serverLoop = server!, clientLoop = client!
        guard serverLoop.backendKind == .uring else { throw XCTSkip("the reap's replay is io_uring's") }
        let (l, addr) = try await listen(on: serverLoop)
        let log = ReplayLog()
        // 29 bytes of Date, then 64 KiB: more than the small socket buffers hold.
        let big = Array(repeating: UInt8(ascii: "D"), count: 29) + pattern(seed: 3, count: 64 << 10)
        let task = serverLoop.spawn {
            let conn = try await ReplayTests.acceptAndArm(l, request: "GET\n", answer: big, dateAt: 0, log: log, smallSendBuffer: true)
            while let b = try await conn.receive(timeout: .seconds(10)) {
                log.toTask.append(String(decoding: b.bytes, as: UTF8.self))
                // Queued behind the replay's send (still blocked on the client's window).
                guard var buffer = conn.pool.tryAcquire() else { throw RingError(.invalidArgument, operation: "no pool buffer") }
                _ = Array("AFTER\n".utf8).withUnsafeBytes { buffer.append(contentsOf: $0) }
                try conn.sendQueued(buffer, timeout: .seconds(10))
            }
            try await conn.flushSends()
            await conn.close()
        }
        let (first, replay, after) = try await clientLoop.run { () -> (String, [UInt8], String) in
            let conn = try await TCPConnection.connect(to: addr)
            ReplayTests.shrink(conn, SO_RCVBUF)
            var pending: [UInt8] = []
            try await conn.send(Array("GET\n".utf8))
            let first = String(decoding: try await ReplayTests.read(conn, 6, pending: &pending), as: UTF8.self)
            try await conn.send(Array("GET\n".utf8))
            // Wait (bounded) until the reap's send is blocked, then ask for more without reading.
            let deadline = clientLoop.now + .seconds(10)
            while try await serverLoop.run({ serverLoop.reapReplays }) == 0, clientLoop.now < deadline {
                try await clientLoop.sleep(for: .milliseconds(2))
            }
            try await conn.send(Array("MORE\n".utf8))
            try await clientLoop.sleep(for: .milliseconds(50))
            let replay = try await ReplayTests.read(conn, big.count, pending: &pending)
            let after = String(decoding: try await ReplayTests.read(conn, 6, pending: &pending), as: UTF8.self)
            await conn.close()
            return (first, replay, after)
        }
        try await task.value
        XCTAssertEqual(first, "FIRST\n")
        XCTAssertEqual(replay.count, big.count)
        XCTAssertTrue(replay.dropFirst(29).elementsEqual(big.dropFirst(29)), "the replayed answer's bytes differ")
        XCTAssertEqual(after, "AFTER\n")
        let (toTask, reaped) = try await serverLoop.run { (log.toTask, serverLoop.reapReplays) }
        XCTAssertEqual(toTask, ["MORE\n"])
        XCTAssertEqual(reaped, 1)
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        let open = try await serverLoop.run { serverLoop.replayTable?.open }
        XCTAssertEqual(open, 0)
    }

    /// Replays keep a connection alive as the task's answers do: the task's idle wait
    /// (200 ms) is counted from the last replay, so twenty polls 50 ms apart are all
    /// answered, and the wait ends once they stop.
    func testAnIdleTimeoutCountsFromTheLastReplay() async throws {
        let serverLoop = server!, clientLoop = client!
        guard serverLoop.backendKind == .uring else { throw XCTSkip("the reap's replay is io_uring's") }
        let (l, addr) = try await listen(on: serverLoop)
        let log = ReplayLog()
        let task = serverLoop.spawn {
            let conn = try await ReplayTests.acceptAndArm(l, request: "PING\n", answer: ReplayTests.pong, dateAt: 5, log: log,
                                                          shortcutWaitNanoseconds: 200_000_000)
            do {
                while let b = try await conn.receive(timeout: .milliseconds(200)) { log.toTask.append(String(decoding: b.bytes, as: UTF8.self)) }
            } catch let e as RingError where e.code == .timedOut {
                log.timedOut = true
            }
            await conn.close()
        }
        let (answered, ended) = try await clientLoop.run { () -> (Int, Bool) in
            let conn = try await TCPConnection.connect(to: addr)
            var pending: [UInt8] = []
            try await conn.send(Array("PING\n".utf8))
            _ = try await ReplayTests.read(conn, 6, pending: &pending)
            var answered = 0
            for _ in 0..<20 {
                try await clientLoop.sleep(for: .milliseconds(50))
                try await conn.send(Array("PING\n".utf8))
                if try await ReplayTests.read(conn, ReplayTests.pong.count, pending: &pending).count == ReplayTests.pong.count { answered += 1 }
            }
            // Then quiet: the server ends the connection.
            let end = try await conn.receive(timeout: .seconds(10))
            await conn.close()
            return (answered, end == nil)
        }
        try await task.value
        XCTAssertEqual(answered, 20)
        XCTAssertTrue(ended)
        let (toTask, timedOut, reaped) = try await serverLoop.run { (log.toTask, log.timedOut, serverLoop.reapReplays) }
        XCTAssertEqual(toTask, [])
        XCTAssertTrue(timedOut)
        XCTAssertEqual(reaped, 20)
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
    }

    /// The task closes its connection while a replay's send is blocked on a client that
    /// does not read: the send ends, the entry is freed once it has, nothing leaks.
    func testClosingUnderABlockedReplaySendLeaksNothing() async throws {
        let serverLoop = server!, clientLoop = client!
        guard serverLoop.backendKind == .uring else { throw XCTSkip("the reap's replay is io_uring's") }
        let (l, addr) = try await listen(on: serverLoop)
        let log = ReplayLog()
        let big = Array(repeating: UInt8(ascii: "D"), count: 29) + pattern(seed: 4, count: 1 << 20)
        let task = serverLoop.spawn {
            let conn = try await ReplayTests.acceptAndArm(l, request: "GET\n", answer: big, dateAt: 0, log: log, smallSendBuffer: true)
            // The reap replays the next GET; its megabyte blocks. Close under it.
            let deadline = serverLoop.now + .seconds(10)
            while serverLoop.reapReplays == 0, serverLoop.now < deadline { try await serverLoop.sleep(for: .milliseconds(2)) }
            XCTAssertEqual(conn.queuedSendCount, 1)
            await conn.close()
        }
        try await clientLoop.run {
            let conn = try await TCPConnection.connect(to: addr)
            ReplayTests.shrink(conn, SO_RCVBUF)
            var pending: [UInt8] = []
            try await conn.send(Array("GET\n".utf8))
            _ = try await ReplayTests.read(conn, 6, pending: &pending)
            try await conn.send(Array("GET\n".utf8))
            // Hold the connection without reading until the server has closed its side.
            let deadline = clientLoop.now + .seconds(10)
            while try await serverLoop.run({ serverLoop.replayTable?.open ?? 0 }) > 0, clientLoop.now < deadline {
                try await clientLoop.sleep(for: .milliseconds(5))
            }
            await conn.close()
        }
        try await task.value
        let (reaped, open) = try await serverLoop.run { (serverLoop.reapReplays, serverLoop.replayTable?.open) }
        XCTAssertEqual(reaped, 1)
        XCTAssertEqual(open, 0)
        try await serverLoop.run { await l.value.close() }
        try await assertQuiescent(serverLoop)
        try await assertQuiescent(clientLoop)
    }
}
