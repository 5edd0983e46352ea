// The HTTP server over real loopback sockets: routes, standard errors, HEAD, pipelining,
// strict framing with close, body limits, chunked uploads, slowloris deadlines, and real
// clients (curl, Python requests) talking to `spool serve`.
import Foundation
import HTTP1
import Ring
@testable import Web
import SpoolTestSupport
import XCTest

struct Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

final class HTTPServerTests: XCTestCase {
    var server: HTTPServer!
    var client: EventLoop!
    var address: SocketAddress!
    /// Yields when a request enters the slow handler (tests wait on it instead of sleeping).
    let slowEntered = AsyncStream<Void>.makeStream()

    override func setUp() async throws {
        let entered = slowEntered.continuation
        var config = HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0"))
        config.headTimeout = .milliseconds(400)
        config.idleTimeout = .seconds(5)
        config.bodyBytesMax = 64 * 1024
        let router = Router { r in
            r.group("/api/v1") { v1 in
                v1.get("health") { _ in .json(200, "{\"status\":\"ok\"}") }
                v1.get("dated") { _ in
                    Response(status: 200, headers: [("Last-Modified", HTTPDate.format(784_111_777))], body: Array("v1".utf8))
                }
                v1.get("items/:id") { req in .json(200, "{\"id\":\"\(req.pathParameters["id"] ?? "")\"}") }
                v1.get("sized/:id") { req in
                    .json(200, "{\"id\":\"\(req.pathParameters["id"] ?? "")\",\"pad\":\"\(String(repeating: "p", count: 3000))\"}")
                }
                v1.post("echo") { req in Response(status: 200, headers: [("Content-Type", "application/octet-stream")], body: req.body) }
                v1.get("boom") { _ in throw CancellationError() }
                v1.get("slow") { _ in
                    entered.yield()
                    try await EventLoop.current!.sleep(for: .milliseconds(300))
                    return .json(200, "{\"slow\":true}")
                }
            }
        }
        server = HTTPServer(configuration: config, router: router)
        try await server.start()
        address = server.localAddress
        client = try EventLoop.start(id: 9)
    }

    override func tearDown() async throws {
        await server.stop(grace: .milliseconds(50))
        client.shutdown()
    }

    /// Sends `request` on a new connection and reads until the server closes or `until`
    /// says the response is complete.
    func exchange(_ request: [UInt8], chunks: [[UInt8]] = [], pause: Duration = .zero) async throws -> String {
        try await httpExchange(address!, client!, request, chunks: chunks, pause: pause)
    }
}

/// `sent` (if given) yields once the request's first bytes are on their way.
func httpExchange(_ addr: SocketAddress, _ loop: EventLoop, _ request: [UInt8], chunks: [[UInt8]] = [], pause: Duration = .zero,
                  sent: AsyncStream<Void>.Continuation? = nil) async throws -> String {
        let bytes = try await loop.run { () -> [UInt8] in
            let conn = try await TCPConnection.connect(to: addr)
            try await conn.send(request)
            sent?.yield()
            do {
                for c in chunks {
                    try await loop.sleep(for: pause)
                    try await conn.send(c)
                }
            } catch {}   // the server may close first (408, 413): read what it said
            var got: [UInt8] = []
            do {
                while let b = try await conn.receive(timeout: .seconds(10)) { got += b.bytes }
            } catch {}
            await conn.close()
            return got
        }
        return String(decoding: bytes, as: UTF8.self)
}

/// The `id` of every `{"id":"..."}` answer in `r`, in order.
func answeredIDs(_ r: String) -> [String] {
    var ids: [String] = []
    var rest = Substring(r)
    while let range = rest.range(of: "{\"id\":\"") {
        let after = rest[range.upperBound...]
        guard let end = after.firstIndex(of: "\"") else { break }
        ids.append(String(after[..<end]))
        rest = after[end...]
    }
    return ids
}

extension HTTPServerTests {

    func testHealthAndParametersAndHead() async throws {
        let r = try await exchange(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(r.hasPrefix("HTTP/1.1 200 OK\r\n"), r)
        XCTAssertTrue(r.contains("Content-Type: application/json\r\n"), r)
        XCTAssertTrue(r.hasSuffix("\r\n\r\n{\"status\":\"ok\"}"), r)
        let p = try await exchange(Array("GET /api/v1/items/42 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(p.hasSuffix("{\"id\":\"42\"}"), p)
        let h = try await exchange(Array("HEAD /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(h.contains("Content-Length: 15\r\n"), h)
        XCTAssertTrue(h.hasSuffix("\r\n\r\n"), "HEAD has no body: \(h)")
    }

    func testStandardErrors() async throws {
        let nf = try await exchange(Array("GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(nf.hasPrefix("HTTP/1.1 404 Not Found"), nf)
        XCTAssertTrue(nf.hasSuffix("{\"error\":{\"code\":\"not_found\",\"message\":\"no route for /nope\",\"details\":{}}}"), nf)
        let na = try await exchange(Array("DELETE /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(na.hasPrefix("HTTP/1.1 405"), na)
        XCTAssertTrue(na.contains("Allow: GET, HEAD\r\n"), na)
        let boom = try await exchange(Array("GET /api/v1/boom HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(boom.hasPrefix("HTTP/1.1 500"), boom)
        XCTAssertTrue(boom.contains("\"code\":\"internal\",\"message\":\"internal error\""), boom)
        XCTAssertFalse(boom.contains("CancellationError"), "internals leaked: \(boom)")
    }

    func testSmugglingIsRefusedAndTheConnectionClosed() async throws {
        // The second request must never be answered: the first one is refused and closes.
        let r = try await exchange(Array("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
        XCTAssertTrue(r.hasPrefix("HTTP/1.1 400 Bad Request"), r)
        XCTAssertTrue(r.contains("Connection: close"), r)
        XCTAssertEqual(r.components(separatedBy: "HTTP/1.1 ").count - 1, 1, "only one response: \(r)")
        let long = try await exchange(Array("GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
        XCTAssertTrue(long.hasPrefix("HTTP/1.1 414"), long)
        XCTAssertTrue(long.contains("\"code\":\"uri_too_long\""), long)
        let junk = try await exchange(Array("\u{1}\u{2}\u{3} garbage\r\n\r\n".utf8))
        XCTAssertTrue(junk.hasPrefix("HTTP/1.1 400"), junk)
        let big = try await exchange(Array("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n".utf8))
        // Refusals made before any route runs carry a Date like every other answer (RFC 9110 §6.6.1).
        for refused in [r, long, junk, big] {
            let head = refused.components(separatedBy: "\r\n\r\n")[0]
            let date = head.components(separatedBy: "\r\n").first { $0.hasPrefix("Date: ") }
            XCTAssertNotNil(date.flatMap { HTTPDate.parse(String($0.dropFirst(6))) }, head)
        }
    }

    func testBodiesContentLengthChunkedAndTooLarge() async throws {
        let cl = try await exchange(Array("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello".utf8),
                                    chunks: [Array(" world".utf8)], pause: .milliseconds(20))
        XCTAssertTrue(cl.hasSuffix("\r\n\r\nhello world"), cl)
        let ch = try await exchange(Array("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhel".utf8),
                                    chunks: [Array("lo\r\n6;x=y\r\n world\r\n0\r\n\r\n".utf8)], pause: .milliseconds(20))
        XCTAssertTrue(ch.hasSuffix("\r\n\r\nhello world"), ch)
        let big = try await exchange(Array("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n".utf8))
        XCTAssertTrue(big.hasPrefix("HTTP/1.1 413"), big)
        let cont = try await exchange(Array("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".utf8),
                                      chunks: [Array("ok".utf8)], pause: .milliseconds(50))
        XCTAssertTrue(cont.hasPrefix("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), cont)
    }

    /// 1,000 pipelined requests on one connection are answered in order.
    func testThousandPipelinedRequestsInOrder() async throws {
        var all: [UInt8] = []
        for i in 0..<1000 { all += Array("GET /api/v1/items/\(i) HTTP/1.1\r\nHost: t\r\n\r\n".utf8) }
        all += Array("GET /api/v1/items/last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
        let r = try await exchange(all)
        let ids = answeredIDs(r)
        XCTAssertEqual(ids, (0..<1000).map(String.init) + ["last"])
    }

    /// 3,000 pipelined requests whose 9 MB of answers the client does not read for a
    /// second: the server's queued answers meet a full socket (it then waits for them
    /// instead of queueing more), and once the client reads, every answer arrives, in order.
    func testPipelinedAnswersToAClientThatReadsLateArriveInOrder() async throws {
        var all: [UInt8] = []
        for i in 0..<3000 { all += Array("GET /api/v1/sized/\(i) HTTP/1.1\r\nHost: t\r\n\r\n".utf8) }
        let last = Array("GET /api/v1/sized/last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
        let r = try await exchange(all, chunks: [last], pause: .seconds(1))
        let ids = answeredIDs(r)
        XCTAssertEqual(ids, (0..<3000).map(String.init) + ["last"])
        XCTAssertEqual(r.components(separatedBy: "HTTP/1.1 200 OK\r\n").count - 1, 3001)
    }

    /// A slowloris client is cut off with 408 at the head deadline while another client is
    /// served meanwhile.
    func testSlowlorisIsCutOffWhileOthersAreServed() async throws {
        let addr = address!, loop = client!
        let (started, startedK) = AsyncStream<Void>.makeStream()
        let slowTask = Task {
            try await httpExchange(addr, loop, Array("GET /api/v1/health HTTP/1.1\r\n".utf8),
                               chunks: (0..<20).map { _ in Array("X-A: b\r\n".utf8) }, pause: .milliseconds(100), sent: startedK)
        }
        var first = started.makeAsyncIterator()
        _ = await first.next()   // the slow client is connected and has begun its head
        let t0 = ContinuousClock.now
        let fast = try await exchange(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(fast.hasPrefix("HTTP/1.1 200"), fast)
        XCTAssertLessThan(ContinuousClock.now - t0, .seconds(2), "the healthy client waited on the slow one")
        let slow = try await slowTask.value
        XCTAssertTrue(slow.hasPrefix("HTTP/1.1 408"), slow)
        XCTAssertTrue(slow.contains("\"code\":\"request_timeout\""), slow)
    }
}

/// Real clients against the real binary: curl (HEAD, keep-alive) and Python requests.
final class ServeCommandTests: XCTestCase {
    func testCurlAndPythonRequestsTalkToSpoolServe() throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spool").path
        guard FileManager.default.isExecutableFile(atPath: bin) else { throw XCTSkip("spool not built next to the tests") }
        let dir = NSTemporaryDirectory() + "spool-serve-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        // Port 0: the server picks a free port and prints it; a fixed guess can collide
        // with an ephemeral port in use.
        p.arguments = ["serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--loops", "1"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        var banner = ""
        let deadline0 = Date().addingTimeInterval(10)
        while !banner.contains("/api/v1 with") && Date() < deadline0 && p.isRunning {
            banner += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        }
        guard let range = banner.range(of: "http://127.0.0.1:"),
              let port = Int(banner[range.upperBound...].prefix { $0.isNumber }) else {
            return XCTFail("spool serve did not report its address: \(banner)")
        }
        defer { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        func run(_ exe: String, _ args: [String]) throws -> String { try runProcess(exe, args).1 }
        var up = ""
        for _ in 0..<100 where !up.contains("ok") {
            up = try run("/usr/bin/curl", ["-s", "--max-time", "2", "http://127.0.0.1:\(port)/api/v1/health"])
            if !up.contains("ok") { usleep(50_000) }
        }
        XCTAssertTrue(up.contains("\"status\":\"ok\""), up)
        let head = try run("/usr/bin/curl", ["-s", "-I", "--max-time", "5", "http://127.0.0.1:\(port)/api/v1/version"])
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200"), head)
        XCTAssertTrue(head.lowercased().contains("content-length:"), head)
        // Two requests on one curl invocation reuse the connection (keep-alive).
        let twice = try run("/usr/bin/curl", ["-s", "-v", "--max-time", "5", "http://127.0.0.1:\(port)/api/v1/version", "http://127.0.0.1:\(port)/api/v1/health"])
        XCTAssertTrue(twice.contains("Re-using existing connection") || twice.contains("Reusing existing connection"), twice)
        let py = try run("/usr/bin/env", ["python3", "-c", """
            import requests
            s = requests.Session()
            r = s.get('http://127.0.0.1:\(port)/api/v1/version', timeout=5)
            h = s.head('http://127.0.0.1:\(port)/api/v1/health', timeout=5)
            n = s.get('http://127.0.0.1:\(port)/api/v1/missing', timeout=5)
            print(r.status_code, r.json()['api'], h.status_code, h.text == '', n.status_code, n.json()['error']['code'])
            """])
        XCTAssertEqual(py.trimmingCharacters(in: .whitespacesAndNewlines), "200 v1 200 True 404 not_found")
        // SIGTERM drains and exits 0 (bounded wait).
        p.terminate()
        let deadline = Date().addingTimeInterval(15)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        XCTAssertFalse(p.isRunning, "spool serve did not stop on SIGTERM")
        if !p.isRunning { XCTAssertEqual(p.terminationStatus, 0) }
    }
}

extension HTTPServerTests {
    /// Graceful stop: a request in flight gets its answer (with Connection: close), an idle
    /// keep-alive connection is closed, and new connections are refused.
    func testGracefulStop() async throws {
        let addr = address!, loop = client!
        let slow = Task { try await httpExchange(addr, loop, Array("GET /api/v1/slow HTTP/1.1\r\nHost: t\r\n\r\n".utf8)) }
        let (answered, answeredK) = AsyncStream<Void>.makeStream()
        // An idle keep-alive connection: one request answered, then it waits.
        let idle = Task {
            try await loop.run { () -> String in
                let c = try await TCPConnection.connect(to: addr)
                try await c.send(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
                var got: [UInt8] = []
                while let b = try await c.receive(timeout: .seconds(10)) {   // ends when the server closes
                    got += b.bytes
                    if String(decoding: got, as: UTF8.self).hasSuffix("{\"status\":\"ok\"}") { answeredK.yield() }
                }
                await c.close()
                return String(decoding: got, as: UTF8.self)
            }
        }
        // Stop once the slow request is in its handler and the idle connection had its answer.
        var entered = slowEntered.stream.makeAsyncIterator()
        _ = await entered.next()
        var idleAnswered = answered.makeAsyncIterator()
        _ = await idleAnswered.next()
        await server.stop(grace: .seconds(3))
        let slowAnswer = try await slow.value
        XCTAssertTrue(slowAnswer.hasPrefix("HTTP/1.1 200"), slowAnswer)
        XCTAssertTrue(slowAnswer.contains("Connection: close"), slowAnswer)
        XCTAssertTrue(slowAnswer.hasSuffix("{\"slow\":true}"), slowAnswer)
        let idleAnswer = try await idle.value
        XCTAssertEqual(idleAnswer.components(separatedBy: "HTTP/1.1 200").count - 1, 1, idleAnswer)
        let refused = try await loop.run { () -> Bool in
            do { _ = try await TCPConnection.connect(to: addr, timeout: .seconds(2)); return false } catch { return true }
        }
        XCTAssertTrue(refused, "new connections must be refused after stop")
    }
}

extension HTTPServerTests {
    func header(_ response: String, _ name: String) -> String? {
        for line in response.components(separatedBy: "\r\n") where line.lowercased().hasPrefix(name.lowercased() + ":") {
            return String(line.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    func testETagsAndConditionalGets() async throws {
        let first = try await exchange(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        let tag = try XCTUnwrap(header(first, "ETag"), first)
        XCTAssertEqual(tag, entityTag(of: Array("{\"status\":\"ok\"}".utf8)))
        for condition in [tag, "W/\(tag)", "\"other\", \(tag)", "*"] {
            let r = try await exchange(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\nIf-None-Match: \(condition)\r\nConnection: close\r\n\r\n".utf8))
            XCTAssertTrue(r.hasPrefix("HTTP/1.1 304 Not Modified\r\n"), "\(condition): \(r)")
            XCTAssertEqual(header(r, "ETag"), tag)
            XCTAssertNil(header(r, "Content-Length"), r)
            XCTAssertTrue(r.hasSuffix("\r\n\r\n"), "no body: \(r)")
        }
        let changed = try await exchange(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"stale\"\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(changed.hasPrefix("HTTP/1.1 200"), changed)
        let head = try await exchange(Array("HEAD /api/v1/health HTTP/1.1\r\nHost: t\r\nIf-None-Match: \(tag)\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 304"), head)
        // If-Modified-Since, consulted when there is no If-None-Match.
        let later = HTTPDate.format(784_111_777 + 60), earlier = HTTPDate.format(784_111_777 - 60)
        let fresh = try await exchange(Array("GET /api/v1/dated HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: \(later)\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(fresh.hasPrefix("HTTP/1.1 304"), fresh)
        let stale = try await exchange(Array("GET /api/v1/dated HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: \(earlier)\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(stale.hasPrefix("HTTP/1.1 200") && stale.hasSuffix("v1"), stale)
        let garbage = try await exchange(Array("GET /api/v1/dated HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: yesterday\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(garbage.hasPrefix("HTTP/1.1 200"), garbage)
    }

    func testHTTPDates() {
        XCTAssertEqual(HTTPDate.format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(HTTPDate.format(0), "Thu, 01 Jan 1970 00:00:00 GMT")
        XCTAssertEqual(HTTPDate.format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT")
        for t: Int64 in [0, 784_111_777, 951_782_400, 1_700_000_000, 4_102_444_799] {
            XCTAssertEqual(HTTPDate.parse(HTTPDate.format(t)), t)
        }
        // The two obsolete forms a recipient must accept too (RFC 9110 §5.6.7).
        XCTAssertEqual(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT"), 784_111_777)
        XCTAssertEqual(HTTPDate.parse("Sun Nov  6 08:49:37 1994"), 784_111_777)
        XCTAssertEqual(HTTPDate.parse("Sat Dec 05 23:59:59 2026"), HTTPDate.parse("Sat, 05 Dec 2026 23:59:59 GMT"))
        // A two-digit year more than 50 years ahead is the last century's.
        let in2026: Int64 = 1_796_000_000
        XCTAssertEqual(HTTPDate.parse("Saturday, 05-Dec-26 23:59:59 GMT", now: in2026), HTTPDate.parse("Sat, 05 Dec 2026 23:59:59 GMT"))
        XCTAssertEqual(HTTPDate.parse("Friday, 01-Jan-76 00:00:00 GMT", now: in2026), HTTPDate.parse("Fri, 01 Jan 2076 00:00:00 GMT"))
        XCTAssertEqual(HTTPDate.parse("Monday, 01-Jan-77 00:00:00 GMT", now: in2026), HTTPDate.parse("Mon, 01 Jan 1977 00:00:00 GMT"))
        for bad in ["Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT",
                    "Sun, 06 Nov 1994 08:49:37 GMT ", "Sun,  06 Nov 1994 08:49:37 GMT", "Sun, +6 Nov 1994 08:49:37 GMT",
                    "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun, 06-Nov-94 08:49:37 GMT", "Sunday, 6-Nov-94 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 UTC",
                    "Sun Nov 6 08:49:37 1994", "Sun Nov   6 08:49:37 1994", "Sun Nov 06 08:49:37 94", "Sunday Nov 06 08:49:37 1994", ""] {
            XCTAssertNil(HTTPDate.parse(bad), bad)
        }
    }
}

/// Stopping a server of several loops: no loop keeps accepting while another waits for
/// its requests in flight. (Each loop used to close its listener only after the loops
/// before it had drained, so a slow request on the first left the others taking new
/// connections for as long as it ran.)
final class MultiLoopStopTests: XCTestCase {
    func testEveryLoopStopsAcceptingBeforeAnyWaitsForItsRequests() async throws {
        let (entered, enteredK) = AsyncStream<Void>.makeStream()
        var config = HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0"))
        config.loops = 2
        let router = Router { r in
            r.get("hold") { _ in
                enteredK.yield()
                try await EventLoop.current!.sleep(for: .milliseconds(1500))
                return .json(200, "{}")
            }
        }
        let server = HTTPServer(configuration: config, router: router)
        try await server.start()
        let addr = try XCTUnwrap(server.localAddress)
        let client = try EventLoop.start(id: 19)
        defer { client.shutdown() }
        // Requests in flight on both loops (eight connections: all on one loop 1 time in 128).
        let held = (0..<8).map { _ in Task { try await httpExchange(addr, client, Array("GET /hold HTTP/1.1\r\nHost: t\r\n\r\n".utf8)) } }
        var it = entered.makeAsyncIterator()
        for _ in 0..<8 { _ = await it.next() }
        let stopping = Task { await server.stop(grace: .seconds(5)) }
        try await Task.sleep(for: .milliseconds(200))
        let accepted = try await client.run { () -> Int in
            var n = 0
            for _ in 0..<20 {
                if let c = try? await TCPConnection.connect(to: addr, timeout: .seconds(1)) {
                    n += 1
                    await c.close()
                }
            }
            return n
        }
        XCTAssertEqual(accepted, 0, "connections taken while the server was stopping")
        await stopping.value
        for h in held {
            let answer = try await h.value
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        }
    }
}
