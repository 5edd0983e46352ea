// The server's synchronous lane (FastLane.swift) over real loopback sockets: which requests
// it is offered (plain GETs only, to the route the full router would pick), that a decline
// and everything else takes the full path, the framing of its answers (same as a full-path
// answer, pipelined in order), and a fast handler's invalid header answered 500.
import Foundation
import HTTP1
import Ring
import Synchronization
@testable import Web
import XCTest

/// What the replayed route's answers are made from: a version that a test moves on, each
/// with an object that says whether it is still the version (the replay's anchor).
final class ReplaySource: Sendable {
    final class Version: Sendable {
        let number: Int
        let current = Atomic<Bool>(true)
        init(_ number: Int) { self.number = number }
    }
    private let version = Mutex(Version(1))
    let checks = Atomic<Int>(0)
    let handled = Atomic<Int>(0)
    var now: Version { version.withLock { $0 } }

    func advance() {
        version.withLock { v in
            v.current.store(false, ordering: .releasing)
            v = Version(v.number + 1)
        }
    }
}

final class FastLaneTests: XCTestCase {
    var server: HTTPServer!
    var client: EventLoop!
    let source = ReplaySource()

    override func setUp() async throws {
        let router = Router { r in
            r.group("/api/v1") { v1 in
                // Registered before the parameter route: the full router picks it for
                // /things/special, so the lane must not answer that path.
                v1.get("things/special") { _ in Response(status: 200, headers: [("X-Lane", "no")], body: Array("literal".utf8)) }
                v1.get("things/:id", fast: { request, response in
                    let id = request.parameter(0)
                    guard id != "decline" else { return false }
                    response.header("Content-Type", "text/plain")
                    response.header("X-Lane", "yes")
                    if let trace = request.header("X-Trace") { response.header("X-Trace", trace) }
                    response.body = Array(id.utf8)
                    return true
                }) { request in
                    var headers: [(name: String, value: String)] = [("Content-Type", "text/plain"), ("X-Lane", "no")]
                    if let trace = request.header("X-Trace") { headers.append(("X-Trace", trace)) }
                    return Response(status: 200, headers: headers, body: Array((request.pathParameters["id"] ?? "").utf8))
                }
                v1.post("things/:id") { _ in Response(status: 201, body: Array("posted".utf8)) }
                v1.get("pairs/:a/:b", fast: { request, response in
                    response.header("X-Lane", "yes")
                    response.body = Array((request.parameter(0) + "+" + request.parameter(1)).utf8)
                    return true
                }) { request in
                    Response(status: 200, headers: [("X-Lane", "no")],
                             body: Array(((request.pathParameters["a"] ?? "") + "+" + (request.pathParameters["b"] ?? "")).utf8))
                }
                v1.get("bad", fast: { _, response in
                    response.header("X-Bad", "a\r\nInjected: yes")
                    return true
                }) { _ in Response(status: 200) }
                // Answers that may be replayed: the path's id, the source's version, and a
                // request id by the middleware's rule.
                let source = self.source
                let check: FastReplayCheck = { replay, _ in
                    source.checks.add(1, ordering: .relaxed)
                    return (replay.anchor as? ReplaySource.Version)?.current.load(ordering: .acquiring) ?? false
                }
                v1.get("versions/:id", fast: { request, response in
                    source.handled.add(1, ordering: .relaxed)
                    let v = source.now
                    response.header("Content-Type", "text/plain")
                    StandardMiddleware.requestID(request, &response)
                    response.body = Array("\(request.parameter(0)) v\(v.number)".utf8)
                    response.replay = FastReplay(anchor: v, check: check)
                    return true
                }) { request in
                    Response(status: 200, headers: [("Content-Type", "text/plain")],
                             body: Array("\(request.pathParameters["id"] ?? "") v\(source.now.number)".utf8))
                }
                v1.get("unchanged", fast: { _, response in
                    response.status = 304
                    response.header("ETag", entityTagHash: 0xfeed)
                    response.body = Array("never sent".utf8)
                    return true
                }) { _ in Response(status: 304) }
            }
        }
        var configuration = HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0"))
        // Short, so a test can see that answers in the receive completion keep an active
        // connection alive and that an idle one still ends.
        configuration.idleTimeout = .milliseconds(500)
        server = HTTPServer(configuration: configuration, router: router)
        try await server.start()
        client = try EventLoop.start(id: 9)
    }

    override func tearDown() async throws {
        await server.stop(grace: .milliseconds(50))
        client.shutdown()
    }

    /// One request on its own connection (closed by the client after the answer's head and
    /// body: a keep-alive request, since `Connection: close` is not plain).
    func get(_ target: String, method: String = "GET", headers: String = "") async throws -> (text: String, lane: Bool) {
        let before = server.fastAnswerCount
        let r = try await httpExchange(server.localAddress!, client,
                                       Array("\(method) \(target) HTTP/1.1\r\nHost: t\r\n\(headers)\r\nGET /api/v1/things/special HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        let answered = server.fastAnswerCount - before
        XCTAssertLessThanOrEqual(answered, 1)
        // Only the first response: the second request (literal route, never fast) just
        // makes the server close the connection.
        let first = r.components(separatedBy: "HTTP/1.1 ").dropFirst().first.map { "HTTP/1.1 " + $0 } ?? r
        return (first, answered == 1)
    }

    func testPlainGETsAreAnsweredOnTheLaneAndFramedLikeFullAnswers() async throws {
        let fast = try await get("/api/v1/things/abc", headers: "X-Trace: t-1\r\n")
        XCTAssertTrue(fast.lane, fast.text)
        // The handler gave no ETag: the server adds the body's, as it does on the full path.
        XCTAssertTrue(fast.text.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Lane: yes\r\nX-Trace: t-1\r\nETag: \(entityTag(of: Array("abc".utf8)))\r\nDate: "), fast.text)
        XCTAssertTrue(fast.text.hasSuffix("\r\nContent-Length: 3\r\n\r\nabc"), fast.text)
        // The same request declined by the handler: the full path, the same framing.
        let full = try await get("/api/v1/things/decline", headers: "X-Trace: t-1\r\n")
        XCTAssertFalse(full.lane)
        XCTAssertTrue(full.text.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Lane: no\r\nX-Trace: t-1\r\nETag: \(entityTag(of: Array("decline".utf8)))\r\nDate: "), full.text)
        XCTAssertTrue(full.text.hasSuffix("\r\nContent-Length: 7\r\n\r\ndecline"), full.text)
        let two = try await get("/api/v1/pairs/x/y")
        XCTAssertTrue(two.lane)
        XCTAssertTrue(two.text.hasSuffix("\r\n\r\nx+y"), two.text)
        // A single trailing slash is plain; the router ignores it too.
        let slash = try await get("/api/v1/things/abc/")
        XCTAssertTrue(slash.lane)
        XCTAssertTrue(slash.text.hasSuffix("\r\n\r\nabc"), slash.text)
    }

    func testEverythingNotPlainTakesTheFullPath() async throws {
        let cases: [(target: String, method: String, headers: String, body: String)] = [
            ("/api/v1/things/special", "GET", "", "literal"),        // an earlier literal route
            ("/api/v1/things/a%62c", "GET", "", "abc"),              // percent-encoding, decoded
            ("/api/v1/things/a+b", "GET", "", "a b"),                // '+', which parameters decode as a space
            ("/api/v1/things/abc?x=1", "GET", "", "abc"),            // a query
            ("/api/v1//things/abc", "GET", "", "abc"),               // an empty segment
            ("/api/v1/x/../things/abc", "GET", "", "abc"),           // dot segments
            ("http://t/api/v1/things/abc", "GET", "", "abc"),        // absolute form
            ("/api/v1/things/abc", "HEAD", "", ""),                  // HEAD
            ("/api/v1/things/abc", "POST", "Content-Length: 0\r\n", "posted"),
            ("/api/v1/things/abc", "GET", "Content-Length: 2\r\n\r\nhi", "abc"),   // a body
            ("/api/v1/things/abc", "GET", "If-None-Match: \"x\"\r\n", "abc"),       // preconditions are the server's
            ("/api/v1/things/abc", "GET", "if-modified-since: Sun, 06 Nov 1994 08:49:37 GMT\r\n", "abc"),
        ]
        for c in cases {
            let r = try await get(c.target, method: c.method, headers: c.headers)
            XCTAssertFalse(r.lane, "\(c.method) \(c.target)")
            XCTAssertFalse(r.text.contains("X-Lane: yes"), r.text)
            XCTAssertTrue(r.text.hasSuffix("\r\n\r\n" + c.body), "\(c.method) \(c.target): \(r.text)")
        }
        // HTTP/1.0 and Connection: close are not plain either (they need a Connection header).
        for request in ["GET /api/v1/things/abc HTTP/1.0\r\n\r\n", "GET /api/v1/things/abc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"] {
            let before = server.fastAnswerCount
            let r = try await httpExchange(server.localAddress!, client, Array(request.utf8))
            XCTAssertEqual(server.fastAnswerCount, before)
            XCTAssertTrue(r.contains("X-Lane: no\r\n"), r)
            XCTAssertTrue(r.hasSuffix("\r\n\r\nabc"), r)
        }
    }

    func testAnInvalidFastHeaderIs500AndAContentlessStatusHasNoBody() async throws {
        let bad = try await get("/api/v1/bad")
        XCTAssertTrue(bad.lane)
        XCTAssertTrue(bad.text.hasPrefix("HTTP/1.1 500"), bad.text)
        XCTAssertFalse(bad.text.contains("Injected"), bad.text)
        XCTAssertTrue(bad.text.contains("\"code\":\"internal\""), bad.text)
        let unchanged = try await get("/api/v1/unchanged")
        XCTAssertTrue(unchanged.lane)
        XCTAssertTrue(unchanged.text.hasPrefix("HTTP/1.1 304 Not Modified\r\nETag: \"000000000000feed\"\r\nDate: "), unchanged.text)
        XCTAssertFalse(unchanged.text.contains("Content-Length"), unchanged.text)
        XCTAssertTrue(unchanged.text.hasSuffix("GMT\r\n\r\n"), unchanged.text)
    }

    /// Pipelined requests mixing the lane and the full path are answered in order.
    func testPipelinedLaneAndFullAnswersStayInOrder() async throws {
        var all = ""
        for i in 0..<300 {
            all += i % 3 == 0 ? "GET /api/v1/things/\(i)?full HTTP/1.1\r\nHost: t\r\n\r\n" : "GET /api/v1/things/\(i) HTTP/1.1\r\nHost: t\r\n\r\n"
        }
        all += "GET /api/v1/things/last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        let before = server.fastAnswerCount
        let r = try await httpExchange(server.localAddress!, client, Array(all.utf8))
        XCTAssertEqual(server.fastAnswerCount - before, 200)
        let bodies = r.components(separatedBy: "HTTP/1.1 200 OK").dropFirst().map { $0.components(separatedBy: "\r\n\r\n").last ?? "" }
        XCTAssertEqual(bodies, (0..<300).map(String.init) + ["last"])
    }

    /// A request the lane declines after copying its head (a precondition, or the handler
    /// says no) must not leave a long head's copy in the connection's scratch: a client
    /// whose polls always decline would otherwise pin it for the connection's life.
    func testADeclinedRequestLeavesNoLargeScratch() throws {
        let router = Router { r in
            r.get("things/:id", fast: { request, response in
                guard request.parameter(0) != "decline" else { return false }
                response.body = Array("x".utf8)
                return true
            }) { _ in Response(status: 200) }
        }
        // About 21 KB of head in lines under the parser's 8 KiB line limit.
        let padding = (1...3).map { "X-Pad-\($0): " + String(repeating: "c", count: 7_000) + "\r\n" }.joined()
        /// Offers `GET target` with the padding and `extra` headers to a fresh scratch.
        func offer(_ target: String, _ extra: String = "") throws -> (answered: Bool, lane: FastLaneScratch) {
            let raw = Array("GET \(target) HTTP/1.1\r\nHost: t\r\n\(padding)\(extra)\r\n".utf8)
            var lane = FastLaneScratch()
            let answered = try raw.withUnsafeBytes { bytes in
                var parser = RequestHeadParser()
                let head = try XCTUnwrap(try parser.parse(bytes))
                return router.answerFast(head, raw: bytes, lane: &lane)
            }
            return (answered, lane)
        }
        for (target, extra) in [("/things/abc", "If-None-Match: \"x\"\r\n"), ("/things/decline", "")] {
            let (answered, lane) = try offer(target, extra)
            XCTAssertFalse(answered, target)
            XCTAssertLessThanOrEqual(lane.head.capacity, 4096, target)
        }
        // And a plain request with the same head is answered (the head fit the parser).
        XCTAssertTrue(try offer("/things/abc").answered)
    }

    /// Between the requests of a keep-alive connection, a plain one is answered in its
    /// receive completion (LaneShortcut.swift), with the same bytes; everything else still
    /// takes the task's path, in order; answers there restart the idle timeout, and an idle
    /// connection still ends when it runs out.
    func testKeepAlivePollsAreAnsweredInTheirReceiveCompletion() async throws {
        let server = self.server!, address = server.localAddress!, loop = client!
        let steps: [(request: String, body: String, lane: String, shortcut: Bool, pauseMs: Int)] = [
            ("GET /api/v1/things/first HTTP/1.1\r\nHost: t\r\n\r\n", "first", "yes", false, 0),   // the task's first request
            ("GET /api/v1/things/second HTTP/1.1\r\nHost: t\r\nX-Trace: s\r\n\r\n", "second", "yes", true, 0),
            ("GET /api/v1/things/decline HTTP/1.1\r\nHost: t\r\n\r\n", "decline", "no", false, 0),
            ("GET /api/v1/things/special HTTP/1.1\r\nHost: t\r\n\r\n", "literal", "no", false, 0),
            ("GET /api/v1/things/c HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"x\"\r\n\r\n", "c", "no", false, 0),
            ("GET /api/v1/things/a+b HTTP/1.1\r\nHost: t\r\n\r\n", "a b", "no", false, 0),
            ("GET /api/v1/pairs/x/y HTTP/1.1\r\nHost: t\r\n\r\n", "x+y", "yes", true, 0),
        ] + (1...6).map { i in ("GET /api/v1/things/p\(i) HTTP/1.1\r\nHost: t\r\n\r\n", "p\(i)", "yes", true, 150) }
        let fastBefore = server.fastAnswerCount, shortcutBefore = server.shortcutAnswerCount
        let (answers, endedIdle) = try await loop.run { () -> ([String], Bool) in
            let conn = try await TCPConnection.connect(to: address)
            var answers: [String] = []
            var pending: [UInt8] = []
            for step in steps {
                // 6 x 150 ms: longer than the 500 ms idle timeout, which each answer restarts.
                if step.pauseMs > 0 { try await loop.sleep(for: .milliseconds(step.pauseMs)) }
                try await conn.send(Array(step.request.utf8))
                guard let answer = try await FastLaneTests.nextAnswer(conn, &pending) else { return (answers, false) }
                answers.append(answer)
            }
            // Then idle: the server ends the connection after its idle timeout.
            var ended = false
            do { ended = try await conn.receive(timeout: .seconds(5)) == nil } catch {}
            await conn.close()
            return (answers, ended)
        }
        XCTAssertEqual(answers.count, steps.count, "\(answers)")
        for (step, answer) in zip(steps, answers) {
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), answer)
            XCTAssertTrue(answer.contains("X-Lane: \(step.lane)\r\n"), "\(step.request): \(answer)")
            XCTAssertTrue(answer.hasSuffix("\r\n\r\n" + step.body), "\(step.request): \(answer)")
        }
        XCTAssertTrue(answers[1].contains("X-Trace: s\r\n"), answers[1])
        XCTAssertTrue(endedIdle, "an idle keep-alive connection must still end after the idle timeout")
        XCTAssertEqual(server.shortcutAnswerCount - shortcutBefore, steps.filter(\.shortcut).count)
        XCTAssertEqual(server.fastAnswerCount - fastBefore, steps.filter { $0.lane == "yes" }.count)
    }

    /// A poller asking the same thing again on its connection gets the handler's answer
    /// replayed, with a new Date and request id, for exactly as long as the replay's check
    /// finds what it was made from unchanged; any other request (even one byte apart) is
    /// answered afresh, and a request id the client gave is echoed in a replay too.
    func testRepeatedPollsAreReplayedWhileWhatTheyWereMadeFromStands() async throws {
        let server = self.server!, address = server.localAddress!, loop = client!, source = self.source
        let poll = "GET /api/v1/versions/a1 HTTP/1.1\r\nHost: t\r\n\r\n"
        let other = "GET /api/v1/versions/a2 HTTP/1.1\r\nHost: t\r\n\r\n"   // same length, one byte apart
        let traced = "GET /api/v1/versions/a1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-7\r\n\r\n"
        // (request, advance the source first, expected body, replayed)
        let steps: [(String, Bool, String, Bool)] = [
            (poll, false, "a1 v1", false),    // the task's first request
            (poll, false, "a1 v1", false),    // the shortcut's, kept for a replay
            (poll, false, "a1 v1", true),
            (poll, false, "a1 v1", true),
            (poll, true, "a1 v2", false),     // the version moved on: afresh, kept again
            (poll, false, "a1 v2", true),
            (other, false, "a2 v2", false),
            (other, false, "a2 v2", true),
            (poll, false, "a1 v2", false),    // only the last fresh answer is kept
            (traced, false, "a1 v2", false),
            (traced, false, "a1 v2", true),
        ]
        let replayedBefore = server.replayedAnswerCount, checksBefore = source.checks.load(ordering: .relaxed)
        let handledBefore = source.handled.load(ordering: .relaxed)
        let answers = try await loop.run { () -> [String] in
            let conn = try await TCPConnection.connect(to: address)
            var answers: [String] = []
            var pending: [UInt8] = []
            for step in steps {
                if step.1 { source.advance() }
                // A fresh answer runs the handler before it is queued; a replay does not. (The
                // epoll backend sends an answer inside `queue`, so the client may read it
                // before anything the server does after queueing it.)
                let before = source.handled.load(ordering: .relaxed)
                try await conn.send(Array(step.0.utf8))
                guard let answer = try await FastLaneTests.nextAnswer(conn, &pending) else { return answers }
                answers.append(answer + (source.handled.load(ordering: .relaxed) == before ? "|replayed" : "|fresh"))
            }
            await conn.close()
            return answers
        }
        XCTAssertEqual(answers.count, steps.count, "\(answers)")
        var ids: [String] = []
        for (step, answer) in zip(steps, answers) {
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request-Id: "), answer)
            XCTAssertTrue(answer.hasSuffix("\r\n\r\n" + step.2 + (step.3 ? "|replayed" : "|fresh")), "\(step.0): \(answer)")
            XCTAssertTrue(answer.contains("\r\nDate: "), answer)
            let id = answer.components(separatedBy: "X-Request-Id: ")[1].components(separatedBy: "\r\n")[0]
            if step.0 == traced {
                XCTAssertEqual(id, "trace-7", "a client's id is echoed, replayed or not")
            } else {
                XCTAssertEqual(id.count, 32, id)
                XCTAssertTrue(id.allSatisfy(\.isHexDigit), id)
                ids.append(id)
            }
        }
        XCTAssertEqual(Set(ids).count, ids.count, "every answer, replayed or not, has its own request id: \(ids)")
        XCTAssertEqual(Set(ids.map { $0.prefix(16) }).count, 1, "one process's ids share their prefix")
        // Same framing as the fresh answer it replays: only the Date and the id may differ.
        func shape(_ a: String) -> String {
            a.split(separator: "\r\n").map { $0.hasPrefix("Date: ") || $0.hasPrefix("X-Request-Id: ") ? String($0.prefix(6)) : String($0) }
                .joined(separator: "\r\n").replacingOccurrences(of: "|replayed", with: "|fresh")
        }
        XCTAssertEqual(shape(answers[2]), shape(answers[1]))
        XCTAssertEqual(shape(answers[7]), shape(answers[6]))
        let replayed = steps.filter(\.3).count
        XCTAssertEqual(server.replayedAnswerCount - replayedBefore, replayed)
        // Each replay was checked; a failed check (the moved version) made it afresh.
        XCTAssertEqual(source.checks.load(ordering: .relaxed) - checksBefore, replayed + 1)
        XCTAssertEqual(source.handled.load(ordering: .relaxed) - handledBefore, steps.count - replayed)
    }

    /// A replay rewrites its kept Date only when the second changed, so every replay must
    /// carry the second it was sent in, across the seconds' ends too, not the one it was
    /// made or last rewritten in.
    func testReplaysCarryTheDateOfTheSecondTheyAreSentIn() async throws {
        let server = self.server!, address = server.localAddress!, loop = client!, source = self.source
        let poll = "GET /api/v1/versions/a1 HTTP/1.1\r\nHost: t\r\n\r\n"
        let replayedBefore = server.replayedAnswerCount
        let handledBefore = source.handled.load(ordering: .relaxed)
        // (Date, the seconds before the send and after the answer)
        let seen = try await loop.run { () -> [(String, Int64, Int64)] in
            let conn = try await TCPConnection.connect(to: address)
            var seen: [(String, Int64, Int64)] = []
            var pending: [UInt8] = []
            // The task's answer, the shortcut's (kept), then replays every 150 ms (under the
            // fixture's 500 ms idle timeout) until two seconds' ends have passed.
            var ends = 0
            while ends < 2 && seen.count < 40 {
                if seen.count >= 2 { try await Task.sleep(for: .milliseconds(150)) }
                let before = wallClockSeconds()
                try await conn.send(Array(poll.utf8))
                guard let answer = try await FastLaneTests.nextAnswer(conn, &pending) else { return seen }
                let date = answer.components(separatedBy: "\r\nDate: ").dropFirst().first?.components(separatedBy: "\r\n").first ?? ""
                if let last = seen.last, last.0 != date { ends += 1 }
                seen.append((date, before, wallClockSeconds()))
            }
            await conn.close()
            return seen
        }
        XCTAssertGreaterThanOrEqual(seen.count, 5, "the connection ended early: \(seen)")
        XCTAssertEqual(source.handled.load(ordering: .relaxed) - handledBefore, 2, "all but the first two were replays")
        XCTAssertEqual(server.replayedAnswerCount - replayedBefore, seen.count - 2)
        XCTAssertGreaterThanOrEqual(Set(seen.map(\.0)).count, 3, "the replays did not span two seconds' ends: \(seen.map(\.0))")
        for (date, before, after) in seen {
            XCTAssertTrue((before...after).contains { HTTPDate.format($0) == date }, "\(date) is not a second between the send (\(HTTPDate.format(before))) and the answer")
        }
    }

    /// The next whole answer on `conn`, read on the caller's loop; bytes after it stay in
    /// `pending` for the next call. Nil when the connection ends first.
    nonisolated(nonsending) static func nextAnswer(_ conn: TCPConnection, _ pending: inout [UInt8]) async throws -> String? {
        while true {
            if let (answer, used) = oneAnswer(pending) {
                pending.removeFirst(used)
                return answer
            }
            guard let b = try await conn.receive(timeout: .seconds(5)) else { return nil }
            pending += b.bytes
        }
    }

    /// The first complete answer in `bytes` (head and Content-Length body) and its length.
    static func oneAnswer(_ bytes: [UInt8]) -> (String, Int)? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.utf8.count == bytes.count, let end = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<end.lowerBound]
        var length = 0
        for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
            length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        let total = text.utf8.distance(from: text.utf8.startIndex, to: end.upperBound) + length
        guard bytes.count >= total else { return nil }
        return (String(decoding: bytes[..<total], as: UTF8.self), total)
    }
}
