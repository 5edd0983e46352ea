// The Redis client against a real redis-server on loopback: commands and error replies,
// many concurrent callers pipelined on one connection, a blocking command on its own
// connection, a reply past its deadline (CLIENT PAUSE) breaking the connection and the
// next command reconnecting, a server restart, and URL parsing.
import RESP
import Redis
import SpoolTestSupport
import XCTest

final class RedisClientTests: XCTestCase {
    var server: RedisServer!

    override func setUpWithError() throws { server = try RedisServer.start() }
    override func tearDown() { server?.stop() }

    func client(_ tweak: (inout RedisConfiguration) -> Void = { _ in }) async throws -> RedisClient {
        var c = RedisConfiguration(endpoint: try RedisEndpoint(url: server.url))
        tweak(&c)
        return try await RedisClient.connect(c)
    }

    func testCommandsAndErrorReplies() async throws {
        let r = try await client()
        try await r.send(["SET", "k", "välue\r\n"])
        let got = try await r.send(["GET", "k"])
        XCTAssertEqual(got.text, "välue\r\n")
        let awaited1 = try await r.send(["GET", "missing"])
        XCTAssertEqual(awaited1, .null)
        do {
            try await r.send(["INCR", "k"])
            XCTFail("INCR of a string must fail")
        } catch {
            XCTAssertEqual(error.kind, .server)
            XCTAssertEqual(error.code, "ERR")
        }
        // A pipeline returns error replies in place, not thrown.
        let replies = try await r.pipeline([["SET", "n", "1"], ["LPUSH", "n", "x"], ["INCR", "n"]])
        XCTAssertEqual(replies[0], .simple("OK"))
        if case .error(let e) = replies[1] { XCTAssertTrue(e.hasPrefix("WRONGTYPE"), e) } else { XCTFail("\(replies[1])") }
        XCTAssertEqual(replies[2], .integer(2))
        await r.shutdown()
    }

    func testConcurrentCallersShareOnePipelinedConnection() async throws {
        let r = try await client()
        try await withThrowingTaskGroup(of: Void.self) { g in
            for _ in 0..<200 { g.addTask { try await r.send(["INCR", "counter"]) } }
            try await g.waitForAll()
        }
        let awaited2 = try await r.send(["GET", "counter"]).integer
        XCTAssertEqual(awaited2, 200)
        let clients = try await r.send(["CLIENT", "LIST"]).text ?? ""
        XCTAssertEqual(clients.split(separator: "\n").count, 1, "one connection for every caller: \(clients)")
        await r.shutdown()
    }

    func testBlockingCommandHasItsOwnConnection() async throws {
        let r = try await client()
        let waiter = Task { try await r.blocking(["BLPOP", "list", "5"], block: .seconds(5)) }
        try await Task.sleep(for: .milliseconds(200))
        // The shared connection is not held up by the blocked one.
        try await r.send(["RPUSH", "list", "item"])
        let got = try await waiter.value
        XCTAssertEqual(got, .array([.bulk(Array("list".utf8)), .bulk(Array("item".utf8))]))
        // A blocking command that times out server-side answers null.
        let awaited3 = try await r.blocking(["BLPOP", "empty", "0.1"], block: .milliseconds(100))
        XCTAssertEqual(awaited3, .null)
        await r.shutdown()
    }

    func testLateReplyBreaksTheConnectionAndTheNextCommandReconnects() async throws {
        let r = try await client { $0.commandTimeout = .milliseconds(300) }
        let other = try await client()
        try await other.send(["CLIENT", "PAUSE", "1000", "ALL"])
        do {
            try await r.send(["PING"])
            XCTFail("a reply past its deadline must fail")
        } catch {
            XCTAssertEqual(error.kind, .timedOut)
        }
        try await Task.sleep(for: .milliseconds(900))
        let awaited4 = try await r.send(["PING"])
        XCTAssertEqual(awaited4, .simple("PONG"))
        await r.shutdown()
        await other.shutdown()
    }

    func testServerRestartIsSurvived() async throws {
        let r = try await client()
        try await r.send(["SET", "a", "1"])
        server.halt()
        do {
            try await r.send(["GET", "a"])
            XCTFail("the server is down")
        } catch {
            XCTAssertEqual(error.kind, .connection, "\(error)")
        }
        try server.restart()
        let awaited5 = try await r.send(["PING"])
        XCTAssertEqual(awaited5, .simple("PONG"), "reconnects on the next command")
        await r.shutdown()
    }

    func testRefusedConnectionIsAClearError() async throws {
        server.halt()
        do {
            _ = try await client()
            XCTFail("nothing listens")
        } catch let e as RedisError {
            XCTAssertEqual(e.kind, .connection)
            XCTAssertTrue(e.message.contains("127.0.0.1:\(server.port)"), e.message)
        }
    }

    func testScriptsRunByShaAfterTheFirstCall() async throws {
        let r = try await client()
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        let awaited6 = try await r.eval(script, keys: ["s"], args: ["5"])
        XCTAssertEqual(awaited6, .integer(5))
        let awaited7 = try await r.send(["SCRIPT", "EXISTS", script.sha1])
        XCTAssertEqual(awaited7, .array([.integer(1)]))
        let awaited8 = try await r.eval(script, keys: ["s"], args: ["2"])
        XCTAssertEqual(awaited8, .integer(7))
        try await r.send(["SCRIPT", "FLUSH"])
        let awaited9 = try await r.eval(script, keys: ["s"], args: ["1"])
        XCTAssertEqual(awaited9, .integer(8), "NOSCRIPT falls back to EVAL")
        await r.shutdown()
    }
}

final class RedisEndpointTests: XCTestCase {
    func testURLs() throws {
        XCTAssertEqual(try RedisEndpoint(url: "redis://127.0.0.1:6380"), RedisEndpoint(host: "127.0.0.1", port: 6380))
        XCTAssertEqual(try RedisEndpoint(url: "redis://localhost"), RedisEndpoint(host: "localhost"))
        XCTAssertEqual(try RedisEndpoint(url: "redis://:s%40cret@h:1/3"), RedisEndpoint(host: "h", port: 1, password: "s@cret", database: 3))
        XCTAssertEqual(try RedisEndpoint(url: "redis://user:pw@[::1]:7000/"), RedisEndpoint(host: "::1", port: 7000, user: "user", password: "pw"))
        XCTAssertEqual(try RedisEndpoint(url: "redis://:pw@h:1/3").description, "redis://:***@h:1/3")
        for bad in ["http://h", "redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://h/db", "redis://[::1", "redis://:%zz@h", "rediss://h"] {
            XCTAssertThrowsError(try RedisEndpoint(url: bad), bad) { e in XCTAssertEqual((e as? RedisError)?.kind, .invalid, bad) }
        }
        // A refused URL is named without its password.
        for bad in ["redis://:hunter2@127.0.0.1:notaport", "redis://user:hunter2@127.0.0.1:99999/0", "redis://u:hunter2@h/x", "redis://hunter2@[::1"] {
            XCTAssertThrowsError(try RedisEndpoint(url: bad), bad) { e in
                XCTAssertFalse("\(e)".contains("hunter2"), "\(e)")
                XCTAssertTrue("\(e)".contains("***@"), "\(e)")
            }
        }
        XCTAssertEqual(RedisEndpoint.masked("redis://user:p@ss@h:1"), "redis://user:***@h:1")
    }
}
