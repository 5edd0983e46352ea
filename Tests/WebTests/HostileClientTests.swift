// Hostile clients on loopback (issue 9, the server part): slow bodies cut off by the
// whole-body deadline and the rate floor, refusals answered without waiting for a declared
// body. Every wait is bounded by a count of steps, never by a timing threshold.
import Foundation
import ProcFS
import HTTP1
import Ring
@testable import Web
import XCTest

final class HostileClientTests: XCTestCase {
    var client: EventLoop!
    var servers: [HTTPServer] = []

    override func setUp() async throws {
        client = try EventLoop.start(id: 7)
    }

    override func tearDown() async throws {
        for s in servers { await s.stop(grace: .milliseconds(50)) }
        servers = []
        client.shutdown()
    }

    /// A server with small limits for tests (1 s whole-body deadline, no rate floor), after
    /// `configure` has changed what the test needs.
    func startServer(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in }) async throws -> SocketAddress {
        var config = HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0"))
        config.headTimeout = .seconds(5)
        config.idleTimeout = .seconds(5)
        config.bodyBytesMax = 64 * 1024
        config.bodyTimeLimits = BodyTimeLimits(deadline: .seconds(1), pieceTimeout: .seconds(30), rateBytesPerSecondMin: 0)
        configure(&config)
        let router = Router { r in
            // A prefix-based middleware: it must see the same path the router routes.
            r.use { req, next in
                req.path.hasPrefix("/admin") ? APIError(status: 403, code: "forbidden", message: "no").response : await next(req)
            }
            r.get("admin/x") { _ in .json(200, "{\"admin\":true}") }
            r.group("/api/v1") { v1 in
                v1.get("health") { _ in .json(200, "{\"status\":\"ok\"}") }
                v1.get("host") { req in .json(200, "{\"host\":\"\(req.header("Host") ?? "")\",\"target\":\"\(req.target)\"}") }
                v1.post("echo") { req in Response(status: 200, body: req.body) }
                // Slow but steady uploads are welcome here: no deadline, no rate floor.
                v1.post("upload", body: .streaming(max: 1 << 20),
                        timeLimits: BodyTimeLimits(deadline: nil, rateBytesPerSecondMin: 0)) { req in
                    var n = 0
                    while try await req.bodyStream.read({ n += $0.count }) {}
                    return .json(200, "{\"bytes\":\(n)}")
                }
                v1.group("/secure") { s in
                    s.use(StandardMiddleware.bearerToken { $0 == "s3cret" ? "alice" : nil })
                    s.post("echo") { req in Response(status: 200, body: req.body) }
                }
            }
        }
        let server = HTTPServer(configuration: config, router: router)
        try await server.start()
        servers.append(server)
        return server.localAddress!
    }

    /// A GET on a new connection (closed after the answer).
    func get(_ addr: SocketAddress, _ target: String) async throws -> String {
        try await httpExchange(addr, client, Array("GET \(target) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
    }

    /// Sends `head`, then one body byte each `every` until the server answers or `bytesMax`
    /// bytes went out; then reads the answer until the server closes (at most `stepsMax`
    /// waits of `every` in all). Returns what the server said and how many bytes were sent.
    func trickle(_ addr: SocketAddress, head: String, every: Duration, bytesMax: Int, stepsMax: Int = 100) async throws -> (reply: String, sent: Int, closed: Bool) {
        try await trickleExchange(client, addr, head: head, every: every, bytesMax: bytesMax, stepsMax: stepsMax)
    }

    // MARK: A. Slow bodies

    /// One byte every 200 ms against a 1 s whole-body deadline: 408 and close long before
    /// the 40 bytes the client would send (the per-piece timeout alone never fires).
    func testTricklingBodyIsCutOffAtTheWholeBodyDeadline() async throws {
        let addr = try await startServer()
        let r = try await trickle(addr, head: "POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
                                  every: .milliseconds(200), bytesMax: 40)
        XCTAssertTrue(r.reply.hasPrefix("HTTP/1.1 408"), r.reply)
        XCTAssertTrue(r.reply.contains("Connection: close"), r.reply)
        XCTAssertTrue(r.closed, "the server must close the connection")
        XCTAssertLessThan(r.sent, 40, "the server waited for the whole trickle")
    }

    /// 200 trickling clients at once (slowhttptest -B in small): every one gets 408 and is
    /// closed well before its 40-byte trickle ends; none is left open.
    func testManyTricklingBodiesAreAllCutOff() async throws {
        let addr = try await startServer { $0.loops = 2 }
        let loop = client!
        let results = try await withThrowingTaskGroup(of: (reply: String, sent: Int, closed: Bool).self) { group in
            for _ in 0..<200 {
                group.addTask {
                    try await trickleExchange(loop, addr, head: "POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8192\r\n\r\n",
                                              every: .milliseconds(200), bytesMax: 40, stepsMax: 100)
                }
            }
            var all: [(reply: String, sent: Int, closed: Bool)] = []
            for try await r in group { all.append(r) }
            return all
        }
        XCTAssertEqual(results.count, 200)
        XCTAssertEqual(results.filter { $0.reply.hasPrefix("HTTP/1.1 408") }.count, 200)
        XCTAssertEqual(results.filter { !$0.closed }.count, 0, "slow-body connections left open")
        XCTAssertEqual(results.filter { $0.sent >= 40 }.count, 0, "a trickle ran to its end")
    }

    /// No deadline, but a rate floor of 100 bytes/s (0.5 s windows, 0.5 s grace): a client at
    /// ~5 bytes/s is cut off.
    func testBodyBelowTheMinimumRateIsCutOff() async throws {
        let addr = try await startServer { c in
            c.bodyTimeLimits = BodyTimeLimits(deadline: nil, pieceTimeout: .seconds(30), rateBytesPerSecondMin: 100,
                                              rateWindow: .milliseconds(500), rateGrace: .milliseconds(500))
        }
        let r = try await trickle(addr, head: "POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
                                  every: .milliseconds(200), bytesMax: 40)
        XCTAssertTrue(r.reply.hasPrefix("HTTP/1.1 408"), r.reply)
        XCTAssertTrue(r.reply.contains("too slowly"), r.reply)
        XCTAssertTrue(r.closed)
        XCTAssertLessThan(r.sent, 40)
    }

    /// A route that overrides the limits takes a slow body past the server's deadline; a
    /// steady body at a good rate passes the server's own limits.
    func testRouteOverrideAndSteadyBodiesSucceed() async throws {
        let addr = try await startServer { c in
            c.bodyTimeLimits.rateBytesPerSecondMin = 100
            c.bodyTimeLimits.rateWindow = .milliseconds(500)
            c.bodyTimeLimits.rateGrace = .milliseconds(500)
        }
        // 12 bytes at one per 150 ms: ~1.8 s, past the 1 s deadline of other routes.
        let slow = try await trickle(addr, head: "POST /api/v1/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
                                     every: .milliseconds(150), bytesMax: 12)
        XCTAssertTrue(slow.reply.hasPrefix("HTTP/1.1 200"), slow.reply)
        XCTAssertTrue(slow.reply.hasSuffix("{\"bytes\":12}"), slow.reply)
        // 32 KiB in 8 pieces, 10 ms apart: well within 1 s and far above 100 bytes/s.
        let piece = [UInt8](repeating: 0x62, count: 4096)
        let steady = try await httpExchange(addr, client, Array("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 32768\r\nConnection: close\r\n\r\n".utf8),
                                            chunks: Array(repeating: piece, count: 8), pause: .milliseconds(10))
        XCTAssertTrue(steady.hasPrefix("HTTP/1.1 200"), String(steady.prefix(200)))
        XCTAssertTrue(steady.hasSuffix(String(repeating: "b", count: 32768)))
    }

    /// 404, 405 and 401 to requests declaring large bodies are answered at once, with
    /// Connection: close, without the client sending a byte of the body.
    func testRefusalsDoNotWaitForTheDeclaredBody() async throws {
        let addr = try await startServer()
        let cases: [(String, String)] = [
            ("POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n", "HTTP/1.1 404"),
            ("DELETE /api/v1/health HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n", "HTTP/1.1 405"),
            ("POST /api/v1/secure/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n", "HTTP/1.1 401"),
            ("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n", "HTTP/1.1 413"),
        ]
        for (head, status) in cases {
            // The trickle never starts: the answer must come within the first wait.
            let r = try await trickle(addr, head: head, every: .seconds(5), bytesMax: 0, stepsMax: 3)
            XCTAssertTrue(r.reply.hasPrefix(status), "\(head): \(r.reply)")
            XCTAssertTrue(r.reply.contains("Connection: close"), r.reply)
            XCTAssertTrue(r.closed, "\(head): the server must close")
        }
        // With the token, the same request is served once the body comes.
        let ok = try await httpExchange(addr, client, Array("POST /api/v1/secure/echo HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".utf8))
        XCTAssertTrue(ok.hasPrefix("HTTP/1.1 200") && ok.hasSuffix("hi"), ok)
    }

    // MARK: C. Malformed line ends

    /// A bare-LF request and a flood of empty lines get 400 at once, not at the head
    /// deadline (set far away here: 30 s; the client waits at most 10 s).
    func testBareLFAndEmptyLineFloodsAreAnsweredAtOnce() async throws {
        let addr = try await startServer { $0.headTimeout = .seconds(30) }
        for head in ["GET /api/v1/health HTTP/1.1\nHost: t\n\n", String(repeating: "\r\n", count: 1000)] {
            let r = try await trickle(addr, head: head, every: .seconds(10), bytesMax: 0, stepsMax: 2)
            XCTAssertTrue(r.reply.hasPrefix("HTTP/1.1 400"), "\(head.prefix(20).debugDescription): \(r.reply)")
            XCTAssertTrue(r.closed)
        }
    }

    // MARK: B. Connection cap and the first-byte deadline

    /// A cap of 20 across 2 loops: 20 idle connections are held, the 21st is refused, and
    /// after 5 close, new connections are served again.
    func testConnectionCapHoldsForTheWholeServer() async throws {
        let addr = try await startServer { c in
            c.loops = 2
            c.connectionsMax = 20
            c.headTimeout = .seconds(30)
            c.idleTimeout = .seconds(30)
        }
        let server = servers[0]
        let health = Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        let r = try await client.run { () -> (held: Int, refused: Bool, stillServed: Bool, servedAgain: Bool) in
            var open: [TCPConnection] = []
            for _ in 0..<20 { open.append(try await TCPConnection.connect(to: addr)) }
            // Wait (bounded) until both loops have accepted all of them.
            for _ in 0..<200 where server.connectionCount < 20 { try await EventLoop.current!.sleep(for: .milliseconds(25)) }
            let held = server.connectionCount
            // Refused: accepted and closed at once, so the reset may already reach the
            // connect (the epoll backend reads it from SO_ERROR) or only a later read.
            var refusedReply = ""
            if let extra = try? await TCPConnection.connect(to: addr) {
                try? await extra.send(health)
                refusedReply = await readAll(extra)
                await extra.close()
            }
            // The held connections are live: one of them is answered.
            try await open[19].send(health)
            let live = await readUntil(open[19], "{\"status\":\"ok\"}")
            for c in open.prefix(5) { await c.close() }
            var again = false
            for _ in 0..<100 where !again {
                // Until the server has counted the closes, a new connection may still be
                // refused (reset), at connect or at the first read: try again, bounded.
                if let c = try? await TCPConnection.connect(to: addr) {
                    try? await c.send(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
                    again = await readAll(c).hasPrefix("HTTP/1.1 200")
                    await c.close()
                }
                if !again { try await EventLoop.current!.sleep(for: .milliseconds(50)) }
            }
            for c in open.dropFirst(5) { await c.close() }
            return (held, !refusedReply.contains("HTTP/1.1"), live.hasPrefix("HTTP/1.1 200"), again)
        }
        XCTAssertEqual(r.held, 20)
        XCTAssertTrue(r.refused, "the 21st connection must be refused")
        XCTAssertTrue(r.stillServed)
        XCTAssertTrue(r.servedAgain, "after closing some, new connections must be served")
    }

    /// A connection that never sends a byte is closed at the head deadline (300 ms), not
    /// the idle timeout (30 s); between requests, keep-alive waits the idle timeout.
    func testSilentConnectionIsClosedAtTheHeadDeadline() async throws {
        let addr = try await startServer { c in
            c.headTimeout = .milliseconds(300)
            c.idleTimeout = .seconds(30)
        }
        let r = try await client.run { () -> (silentClosed: Bool, second: String) in
            let silent = try await TCPConnection.connect(to: addr)
            var closed = false
            do { closed = try await silent.receive(timeout: .seconds(10)) == nil } catch let e as RingError { closed = e.code != .timedOut }
            await silent.close()
            let c = try await TCPConnection.connect(to: addr)
            try await c.send(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
            _ = await readUntil(c, "{\"status\":\"ok\"}")
            try await EventLoop.current!.sleep(for: .milliseconds(900))   // past the head deadline
            try? await c.send(Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
            let second = await readAll(c)
            await c.close()
            return (closed, second)
        }
        XCTAssertTrue(r.silentClosed, "a silent connection must be closed at the head deadline")
        XCTAssertTrue(r.second.hasPrefix("HTTP/1.1 200"), "keep-alive idle uses the idle timeout: \(r.second)")
    }

    // MARK: D, E. Paths and targets

    func testDotSegmentsAreNormalizedBeforeRoutingAndMiddleware() async throws {
        let addr = try await startServer()
        for ok in ["/api/v1/./health", "/api/v1/x/../health", "/api/v1/%2e%2E/v1/health", "/api/./v1//health", "/api/v1/items/%2e/../health"] {
            let r = try await get(addr, ok)
            XCTAssertTrue(r.hasPrefix("HTTP/1.1 200"), "\(ok): \(r)")
        }
        for above in ["/../api/v1/health", "/api/v1/../../../etc/passwd", "/%2e%2e/x"] {
            let r = try await get(addr, above)
            XCTAssertTrue(r.hasPrefix("HTTP/1.1 400"), "\(above): \(r)")
        }
        // The prefix middleware sees the normalized path: no way around it.
        for sneaky in ["/admin/x", "//admin/x", "/./admin/x", "/api/../admin/x", "/%2E/admin//x"] {
            let r = try await get(addr, sneaky)
            XCTAssertTrue(r.hasPrefix("HTTP/1.1 403"), "\(sneaky): \(r)")
        }
        let notOrigin = try await get(addr, "api/v1/health")
        XCTAssertTrue(notOrigin.hasPrefix("HTTP/1.1 400"), notOrigin)
    }

    func testPathNormalizationUnits() {
        let cases: [(String, String?)] = [
            ("/a/b", "/a/b"), ("/a/./b", "/a/b"), ("/a/../b", "/b"), ("/a/b/..", "/a/"), ("/a/b/.", "/a/b/"),
            ("/a//b/", "/a/b/"), ("//", "/"), ("/", "/"), ("/..", nil), ("/a/../..", nil), ("/%2E%2e/", nil),
            ("/a/.%2E/b?x=/../y", "/b?x=/../y"), ("/a/...", "/a/..."), ("/a/.b/%2Ex", "/a/.b/%2Ex"), ("/a/%2F../b", "/a/%2F../b"),
        ]
        for (input, want) in cases { XCTAssertEqual(PathNormalization.normalize(input), want, input) }
    }

    func testAbsoluteFormTargetIsRouted() async throws {
        let addr = try await startServer()
        let r = try await httpExchange(addr, client, Array("GET http://spool.example:8080/api/v1/host?x=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(r.hasPrefix("HTTP/1.1 200"), r)
        XCTAssertTrue(r.hasSuffix("{\"host\":\"spool.example:8080\",\"target\":\"/api/v1/host?x=1\"}"), r)
        let health = try await httpExchange(addr, client, Array("GET http://h/api/v1/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(health.hasPrefix("HTTP/1.1 200"), health)
        let dotted = try await httpExchange(addr, client, Array("GET http://h/x/../admin/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(dotted.hasPrefix("HTTP/1.1 403"), dotted)
    }
}

extension HostileClientTests {
    // MARK: F. Idle footprint

    /// An idle server pins no pool memory (fixed buffers register on first use), and after
    /// a burst of connections closes, the loop gives memory back and still serves.
    func testIdleServerPinsNothingAndABurstIsGivenBack() async throws {
        let addr = try await startServer { c in
            c.loops = 1
            c.memoryTrimInterval = .milliseconds(100)
            c.memoryTrimConnectionDrop = 20
        }
        let server = servers[0]
        XCTAssertLessThan(statusKiB("VmPin") ?? 0, 16 * 1024, "pool buffers must not be pinned up front")
        let health = Array("GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        let served = try await client.run { () -> Int in
            var open: [TCPConnection] = []
            var ok = 0
            for _ in 0..<40 {
                let c = try await TCPConnection.connect(to: addr)
                try await c.send(health)
                if await readUntil(c, "{\"status\":\"ok\"}").hasPrefix("HTTP/1.1 200") { ok += 1 }
                open.append(c)
            }
            for c in open { await c.close() }
            return ok
        }
        XCTAssertEqual(served, 40)
        for _ in 0..<200 where server.memoryTrimCount == 0 { try await Task.sleep(for: .milliseconds(25)) }
        XCTAssertGreaterThan(server.memoryTrimCount, 0, "the loop did not give memory back after the burst")
        let after = try await get(addr, "/api/v1/health")
        XCTAssertTrue(after.hasPrefix("HTTP/1.1 200"), after)
    }
}

/// See HostileClientTests.trickle.
func trickleExchange(_ client: EventLoop, _ addr: SocketAddress, head: String, every: Duration, bytesMax: Int, stepsMax: Int) async throws -> (reply: String, sent: Int, closed: Bool) {
    let r = try await client.run { () -> ([UInt8], Int, Bool) in
        let conn = try await TCPConnection.connect(to: addr)
        try await conn.send(Array(head.utf8))
        var got: [UInt8] = []
        var sent = 0
        var closed = false
        for _ in 0..<stepsMax {
            do {
                guard let b = try await conn.receive(timeout: every) else { closed = true; break }
                got += b.bytes
            } catch let e as RingError where e.code == .timedOut {
                if got.isEmpty && sent < bytesMax {
                    do { try await conn.send([0x61]); sent += 1 } catch { break }
                }
            } catch {
                closed = true   // reset by the server
                break
            }
        }
        await conn.close()
        return (got, sent, closed)
    }
    return (String(decoding: r.0, as: UTF8.self), r.1, r.2)
}

/// A `/proc/self/status` figure in KiB (VmRSS, VmPin...).
func statusKiB(_ name: String) -> Int? { ProcFile.selfStatusKiB(name).map { Int($0) } }

/// Everything `conn` receives until the peer closes (or 10 s pass without a byte).
func readAll(_ conn: TCPConnection) async -> String {
    var got: [UInt8] = []
    while let b = try? await conn.receive(timeout: .seconds(10)) { got += b.bytes }
    return String(decoding: got, as: UTF8.self)
}

/// What `conn` receives until it ends with `suffix` (or closes, or 10 s of silence).
func readUntil(_ conn: TCPConnection, _ suffix: String) async -> String {
    var got: [UInt8] = []
    while !String(decoding: got, as: UTF8.self).hasSuffix(suffix), let b = try? await conn.receive(timeout: .seconds(10)) { got += b.bytes }
    return String(decoding: got, as: UTF8.self)
}
