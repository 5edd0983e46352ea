// Streaming over real loopback sockets: uploads read chunk by chunk with backpressure (and
// a 5 GiB chunked upload with memory bounded by the pool), chunked and SSE responses,
// file ranges, middleware (request id, access log, authentication), JSON errors, and the
// HTTP client (pool reuse, stale connections, timeouts, redirects, streaming both ways).
import Foundation
import ProcFS
import HTTP1
import JSON
import Logging
import Ring
import Synchronization
@testable import Web
import SpoolTestSupport
import XCTest

/// The byte at `offset` of every generated upload: depends on the position modulo a prime
/// period (coprime to every piece size used), so loss, duplication or reordering shows.
/// The period is a table, so a piece is filled with a few copies rather than a loop per
/// byte: a debug build spent most of the 5 GiB test generating bytes.
let uploadPeriod = 65_521
let uploadTable: [UInt8] = (0..<UInt64(uploadPeriod)).map { UInt8(truncatingIfNeeded: ($0 &* 0x9E37_79B9) >> 13 ^ $0) }

@inline(__always) func uploadByte(_ offset: UInt64) -> UInt8 {
    uploadTable[Int(offset % UInt64(uploadPeriod))]
}

/// Fills `piece` with the upload's bytes from `offset` on.
func fillUpload(_ piece: UnsafeMutableBufferPointer<UInt8>, from offset: UInt64) {
    var k = 0, at = Int(offset % UInt64(uploadPeriod))
    uploadTable.withUnsafeBufferPointer { table in
        while k < piece.count {
            let n = min(piece.count - k, uploadPeriod - at)
            UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(piece)[k..<(k + n)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(table)[at..<(at + n)]))
            k += n
            at = 0
        }
    }
}

/// Captures log lines for assertions.
final class CapturedLogs: Sendable {
    let lines = Mutex<[String]>([])
    func handler(label: String) -> LogHandler { Handler(sink: self) }
    struct Handler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            let m = (metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            sink.lines.withLock { $0.append("\(level) \(message) \(m)") }
        }
    }
}

struct JobSubmission: JSONDecodable, JSONEncodable, Equatable {
    var input: String
    var preset: String
    var priority: Int
    init(input: String, preset: String, priority: Int) {
        self.input = input
        self.preset = preset
        self.priority = priority
    }
    init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(["input", "preset", "priority"])
        input = try json.field("input")
        preset = try json.field("preset")
        priority = try json.optionalField("priority") ?? 5
        guard (0...9).contains(priority) else { throw json["priority"]!.invalid("priority must be 0...9") }
    }
    func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("input", input)
        w.field("preset", preset)
        w.field("priority", priority)
        w.endObject()
    }
}

final class StreamingTests: XCTestCase {
    var server: HTTPServer!
    var client: EventLoop!
    var base: String!
    var dataDir: String!
    let logs = CapturedLogs()

    override func setUp() async throws {
        dataDir = NSTemporaryDirectory() + "spool-web-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        var config = HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0"))
        config.idleTimeout = .milliseconds(300)
        config.bodyBytesMax = 64 * 1024
        config.bodyTimeout = .seconds(5)
        let logger = Logger(label: "test.access") { [logs] in logs.handler(label: $0) }
        let dir = dataDir!
        let router = Router(logger: logger) { r in
            r.use(StandardMiddleware.requestID())
            r.use(StandardMiddleware.accessLog(logger))
            r.group("/api/v1") { v1 in
                // Large uploads: no whole-body deadline, only the rate floor.
                v1.post("upload", body: .streaming(max: 8 << 30), timeLimits: BodyTimeLimits(deadline: nil)) { req in try await StreamingTests.receiveUpload(req) }
                v1.post("slow-upload", body: .streaming(max: 1 << 30)) { req in
                    var n = 0
                    _ = try await req.bodyStream.read { n += $0.count }
                    try await EventLoop.current!.sleep(for: .milliseconds(1500))   // a busy consumer
                    try await req.bodyStream.discard()
                    return .json(200, "{\"first\":\(n)}")
                }
                v1.post("jobs") { req in
                    let job = try req.decode(JobSubmission.self)
                    return .json(201, encoding: job)
                }
                v1.get("stream") { _ in
                    .streaming(contentType: "text/plain") { w in
                        for i in 0..<100 { try await w.write("line \(i)\n") }
                    }
                }
                v1.get("events") { _ in
                    .events { w in
                        for i in 1...3 {
                            try await w.send(ServerSentEvent(event: "progress", id: "\(i)", data: "{\"percent\":\(i * 33)}"))
                            try await EventLoop.current!.sleep(for: .milliseconds(10))
                        }
                        try await w.writeJSON { j in j.beginObject(); j.field("done", true); j.endObject() }
                    }
                }
                v1.get("files/:name") { req in
                    try await Response.file(root: dir, name: req.pathParameters["name"] ?? "", for: req)
                }
                v1.get("sleep") { req in
                    try await EventLoop.current!.sleep(for: .milliseconds(Int(req.query("ms") ?? "0") ?? 0))
                    return .json(200, "{\"slept\":true}")
                }
                v1.get("redirect") { _ in Response(status: 302, headers: [("Location", "/api/v1/sleep?ms=0")]) }
                v1.get("redirect-with-body") { _ in
                    Response(status: 307, headers: [("Location", "/api/v1/sleep?ms=0"), ("Content-Type", "text/plain")], body: Array("moved, see Location".utf8))
                }
                v1.get("located/:x") { req in
                    // Echoes a decoded path parameter into a header: CR/LF must not crash the server.
                    Response(status: 201, headers: [("Location", "/jobs/" + (req.pathParameters["x"] ?? ""))])
                }
                v1.post("picky", body: .streaming(max: 1 << 20)) { req in
                    // Refuses the body on its first byte, from inside the consumer.
                    while try await req.bodyStream.read({ bytes throws(APIError) in
                        if bytes.first.map({ $0 != 0x4D }) ?? false {
                            throw APIError(status: 415, code: "unsupported_media_type", message: "not a media file")
                        }
                    }) {}
                    return .json(200, "{\"ok\":true}")
                }
                v1.group("/secure") { s in
                    s.use(StandardMiddleware.bearerToken { token in token == "s3cret" ? "alice" : nil })
                    s.get("whoami") { req in .json(200, "{\"principal\":\"\(req.principal ?? "")\"}") }
                }
            }
        }
        server = HTTPServer(configuration: config, router: router)
        try await server.start()
        base = "http://\(server.localAddress!)"
        client = try EventLoop.start(id: 8)
    }

    /// Reads an upload piece by piece, checking sampled bytes against the pattern.
    static func receiveUpload(_ req: Request) async throws -> Response {
        final class Tally: @unchecked Sendable {
            var offset: UInt64 = 0
            var mismatches = 0
            var pieces = 0
        }
        let t = Tally()
        let consume: (UnsafeRawBufferPointer) -> Void = { bytes in
            var k = Int((4093 - t.offset % 4093) % 4093)
            while k < bytes.count {
                if bytes[k] != uploadByte(t.offset + UInt64(k)) { t.mismatches += 1 }
                k += 4093
            }
            if let last = bytes.last, last != uploadByte(t.offset + UInt64(bytes.count - 1)) { t.mismatches += 1 }
            t.offset += UInt64(bytes.count)
            t.pieces += 1
        }
        while try await req.bodyStream.read(consume) {}
        var w = JSONWriter()
        w.beginObject()
        w.field("bytes", t.offset)
        w.field("mismatches", t.mismatches)
        w.field("pieces", t.pieces)
        w.endObject()
        return Response(status: 200, headers: [("Content-Type", "application/json")], body: w.bytes)
    }

    override func tearDown() async throws {
        await server.stop(grace: .milliseconds(50))
        client.shutdown()
        try? FileManager.default.removeItem(atPath: dataDir)
    }

    /// Runs `body` with an HTTPClient on the client loop.
    func withClient<T: Sendable>(_ configuration: HTTPClientConfiguration = HTTPClientConfiguration(),
                                 _ body: @escaping @Sendable (HTTPClient) async throws -> T) async throws -> T {
        try await client.withHTTPClient(configuration, body)
    }

    // MARK: Uploads

    /// Streams `total` bytes chunked through the client to /upload and returns the reply.
    func upload(_ total: UInt64, chunk: Int, name: String) async throws -> JSONTree {
        let base = self.base!
        let response = try await withClient { c in
            try await c.execute(ClientRequest(method: "POST", url: "\(base)/api/v1/upload?name=\(name)", body: .stream { w in
                var sent: UInt64 = 0
                var piece = [UInt8](repeating: 0, count: chunk)
                while sent < total {
                    let n = Int(min(UInt64(chunk), total - sent))
                    if n != piece.count { piece = [UInt8](repeating: 0, count: n) }
                    // Generate this piece's bytes (copies from the pattern's table).
                    piece.withUnsafeMutableBufferPointer { fillUpload($0, from: sent) }
                    try await w.write(piece)
                    sent += UInt64(n)
                }
            }, timeout: .seconds(900)))   // a memory test: a debug build on 2 busy cores may take minutes
        }
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        return try JSONTree(json: JSONDocument(parsing: response.body).root)
    }

    func testStreamedUploadReadsChunkByChunk() async throws {
        let total: UInt64 = 3 << 20 + 12345
        let reply = try await upload(total, chunk: 100_000, name: "small")
        XCTAssertEqual(reply, try JSONTree(json: JSONDocument(parsing: #"{"bytes":\#(total),"mismatches":0,"pieces":\#(piecesOf(reply))}"#).root))
        XCTAssertGreaterThan(piecesOf(reply), 10, "the body arrived in pieces, not as one buffer")
    }

    private func piecesOf(_ t: JSONTree) -> Int {
        if case .object(let m) = t, let p = m.first(where: { $0.key == "pieces" }), case .number(let s) = p.value { return Int(s) ?? -1 }
        return -1
    }

    /// 5 GiB through one chunked upload: every byte accounted for, and the process's
    /// memory stays bounded (the server never holds more than a few pool buffers of it).
    func testFiveGiBChunkedUploadStreamsInBoundedMemory() async throws {
        let gib = UInt64(ProcessInfo.processInfo.environment["SPOOL_BIG_UPLOAD_GIB"].flatMap { UInt64($0) } ?? 5)
        let total = gib << 30
        let rssBefore = residentBytes()
        let reply = try await upload(total, chunk: 1 << 20, name: "big")
        let rssAfter = residentBytes()
        guard case .object(let m) = reply else { return XCTFail("\(reply)") }
        XCTAssertEqual(m.first { $0.key == "bytes" }?.value, .number(String(total)))
        XCTAssertEqual(m.first { $0.key == "mismatches" }?.value, .number("0"))
        // Two loops' pools (64 MiB each by default, mapped up front) bound what can be held;
        // 5 GiB passing through must not show up in RSS.
        XCTAssertLessThan(rssAfter - rssBefore, 256 << 20, "RSS grew by \((rssAfter - rssBefore) >> 20) MiB for a \(gib) GiB upload")
    }

    /// A handler that stops reading pushes back on the client: its send cannot complete
    /// while the handler is busy (nothing is buffered without bound on the server).
    func testSlowConsumerPushesBackOnTheSender() async throws {
        let addr = server.localAddress!
        let result = try await client.run { () -> (timedOut: Bool, reply: String) in
            let conn = try await TCPConnection.connect(to: addr)
            let total = 64 << 20
            try await conn.send(Array("POST /api/v1/slow-upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(total)\r\n\r\n".utf8))
            let piece = [UInt8](repeating: 0x61, count: 1 << 20)
            var timedOut = false
            var sent = 0
            while sent < total {
                do {
                    try await conn.send(piece, timeout: .milliseconds(400))
                    sent += piece.count
                } catch let e as RingError where e.code == .timedOut {
                    timedOut = true
                    break
                }
            }
            await conn.close()
            return (timedOut, "")
        }
        XCTAssertTrue(result.timedOut, "64 MiB went through while the handler was not reading: no backpressure")
    }

    // MARK: Responses

    func testChunkedAndServerSentEventResponses() async throws {
        let base = self.base!
        let (stream, events) = try await withClient { c in
            (try await c.get("\(base)/api/v1/stream"), try await c.get("\(base)/api/v1/events"))
        }
        XCTAssertEqual(stream.status, 200)
        XCTAssertEqual(stream.header("Transfer-Encoding"), "chunked")
        XCTAssertEqual(String(decoding: stream.body, as: UTF8.self), (0..<100).map { "line \($0)\n" }.joined())
        XCTAssertEqual(events.header("Content-Type"), "text/event-stream")
        let text = String(decoding: events.body, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("event: progress\nid: 1\ndata: {\"percent\":33}\n\n"), text)
        XCTAssertTrue(text.contains("id: 3\ndata: {\"percent\":99}\n\n"), text)
        XCTAssertTrue(text.hasSuffix("{\"done\":true}"), text)
        // HEAD on a streamed GET: headers only.
        let head = try await httpExchange(server.localAddress!, client, Array("HEAD /api/v1/stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200") && head.hasSuffix("\r\n\r\n"), head)
    }

    func testFileRangesAndValidators() async throws {
        let content = pattern(seed: 7, count: 100_000)
        try Data(content).write(to: URL(fileURLWithPath: dataDir + "/clip.bin"))
        let base = self.base!
        let rs = try await withClient { c -> [ClientResponse] in
            var out: [ClientResponse] = []
            out.append(try await c.get("\(base)/api/v1/files/clip.bin"))
            out.append(try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "bytes=100-199")]))
            out.append(try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "bytes=-10")]))
            out.append(try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "bytes=99990-")]))
            out.append(try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "bytes=100000-")]))
            out.append(try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "bytes=0-1,5-6")]))
            out.append(try await c.get("\(base)/api/v1/files/missing.bin"))
            out.append(try await c.get("\(base)/api/v1/files/..%2F..%2F..%2F..%2Fetc%2Fpasswd"))
            out.append(try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "BYTES=0-1")]))
            return out
        }
        XCTAssertEqual(rs[0].status, 200)
        XCTAssertEqual(rs[0].body, content)
        XCTAssertEqual(rs[0].header("Accept-Ranges"), "bytes")
        XCTAssertEqual(rs[1].status, 206)
        XCTAssertEqual(rs[1].header("Content-Range"), "bytes 100-199/100000")
        XCTAssertEqual(rs[1].body, Array(content[100..<200]))
        XCTAssertEqual(rs[2].body, Array(content[99990...]))
        XCTAssertEqual(rs[3].status, 206)
        XCTAssertEqual(rs[3].body, Array(content[99990...]))
        XCTAssertEqual(rs[4].status, 416)
        XCTAssertEqual(rs[4].header("Content-Range"), "bytes */100000")
        XCTAssertEqual(rs[5].status, 200, "several ranges: the whole file")
        XCTAssertEqual(rs[5].body.count, 100_000)
        XCTAssertEqual(rs[6].status, 404)
        XCTAssertEqual(rs[7].status, 404, "a decoded path must not leave the served directory")
        XCTAssertEqual(rs[8].status, 206, "the range unit is case-insensitive")
        let tag = try XCTUnwrap(rs[0].header("ETag"))
        let cached = try await withClient { c in try await c.get("\(base)/api/v1/files/clip.bin", headers: [("If-None-Match", tag)]) }
        XCTAssertEqual(cached.status, 304)
        XCTAssertTrue(cached.body.isEmpty)
        let (current, stale) = try await withClient { c in
            (try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "bytes=0-9"), ("If-Range", tag)]),
             try await c.get("\(base)/api/v1/files/clip.bin", headers: [("Range", "bytes=0-9"), ("If-Range", "\"other\"")]))
        }
        XCTAssertEqual(current.status, 206, "If-Range with the current tag: the range")
        XCTAssertEqual(stale.status, 200, "If-Range with another tag: the whole file")
        XCTAssertEqual(stale.body.count, 100_000)
        XCTAssertEqual(ByteRange.parse("bytes=5-2", size: 10), ByteRange.none)
        XCTAssertEqual(ByteRange.parse("bytes=-0", size: 10), .unsatisfiable)
        XCTAssertEqual(ByteRange.parse("bytes=3-99", size: 10), .range(3..<10))
        XCTAssertEqual(ByteRange.parse("items=0-1", size: 10), ByteRange.none)
    }

    // MARK: Middleware and JSON

    func testMiddlewareRequestIDAccessLogAndAuthentication() async throws {
        let base = self.base!
        let rs = try await withClient { c -> [ClientResponse] in
            [
                try await c.get("\(base)/api/v1/secure/whoami"),
                try await c.get("\(base)/api/v1/secure/whoami", headers: [("Authorization", "Bearer wrong")]),
                try await c.get("\(base)/api/v1/secure/whoami", headers: [("Authorization", "Bearer s3cret"), ("X-Request-Id", "req-42")]),
                try await c.get("\(base)/api/v1/nothing-here"),
            ]
        }
        XCTAssertEqual(rs[0].status, 401)
        XCTAssertEqual(rs[0].header("WWW-Authenticate"), #"Bearer realm="spool""#)
        XCTAssertEqual(rs[1].header("WWW-Authenticate"), #"Bearer realm="spool", error="invalid_token""#)
        XCTAssertTrue(String(decoding: rs[0].body, as: UTF8.self).contains("\"code\":\"unauthorized\""))
        XCTAssertEqual(rs[1].status, 401)
        XCTAssertEqual(rs[2].status, 200)
        XCTAssertEqual(String(decoding: rs[2].body, as: UTF8.self), "{\"principal\":\"alice\"}")
        XCTAssertEqual(rs[2].header("X-Request-Id"), "req-42")
        let date = try XCTUnwrap(rs[2].header("Date").flatMap(HTTPDate.parse), "responses carry Date (RFC 9110 §6.6.1)")
        XCTAssertLessThan(abs(date - Int64(Date().timeIntervalSince1970)), 5)
        let generated = try XCTUnwrap(rs[0].header("X-Request-Id"))
        XCTAssertEqual(generated.count, 32)
        XCTAssertNotEqual(generated, rs[1].header("X-Request-Id"))
        XCTAssertEqual(rs[3].status, 404)
        XCTAssertNotNil(rs[3].header("X-Request-Id"), "root middleware wraps 404s too")
        let lines = logs.lines.withLock { $0 }
        XCTAssertTrue(lines.contains { $0.contains("GET /api/v1/secure/whoami 200") && $0.contains("request_id=req-42") && $0.contains("peer=127.0.0.1:") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("GET /api/v1/nothing-here 404") }, "\(lines)")
    }

    func testJSONBodiesAndStandardJSONErrors() async throws {
        let base = self.base!
        func post(_ body: String) async throws -> (Int, JSONValue) {
            let r = try await withClient { c in
                try await c.execute(ClientRequest(method: "POST", url: "\(base)/api/v1/jobs", headers: [("Content-Type", "application/json")], body: .bytes(Array(body.utf8))))
            }
            return (r.status, try JSONDocument(parsing: r.body).root)
        }
        let (ok, created) = try await post(#"{"input":"s3://b/in.mp4","preset":"h264-720p"}"#)
        XCTAssertEqual(ok, 201)
        XCTAssertEqual(try created.decode(JobSubmission.self), JobSubmission(input: "s3://b/in.mp4", preset: "h264-720p", priority: 5))
        let (bad, badBody) = try await post(#"{"input":"x","preset":"y",}"#)
        XCTAssertEqual(bad, 400)
        XCTAssertEqual(try badBody["error"]?["code"]?.string(), "invalid_json")
        XCTAssertEqual(try badBody["error"]?["details"]?["offset"]?.string(), "26")
        let (missing, missingBody) = try await post(#"{"input":"x"}"#)
        XCTAssertEqual(missing, 422)
        XCTAssertEqual(try missingBody["error"]?["code"]?.string(), "validation_failed")
        XCTAssertEqual(try missingBody["error"]?["details"]?["field"]?.string(), "/preset")
        let (range, rangeBody) = try await post(#"{"input":"x","preset":"y","priority":12}"#)
        XCTAssertEqual(range, 422)
        XCTAssertEqual(try rangeBody["error"]?["details"]?["field"]?.string(), "/priority")
        let (typed, typedBody) = try await post(#"{"input":7,"preset":"y"}"#)
        XCTAssertEqual(typed, 422)
        XCTAssertEqual(try typedBody["error"]?["details"]?["field"]?.string(), "/input")
        let (unknown, _) = try await post(#"{"input":"x","preset":"y","prio":1}"#)
        XCTAssertEqual(unknown, 422)
    }

    /// A consumer that throws part-way leaves the body's end unknown: the connection closes
    /// after the error, and body bytes are never parsed as a request.
    func testThrowingConsumerClosesTheConnection() async throws {
        var body = [UInt8](repeating: 0x58, count: 20_000)
        // Inside the body, something shaped like a request: it must never be answered.
        body.replaceSubrange(16_000..<16_040, with: Array("GET /api/v1/sleep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n".utf8.prefix(40)))
        let next = Array("GET /api/v1/sleep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        let r = try await httpExchange(server.localAddress!, client, Array("POST /api/v1/picky HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n".utf8),
                                       chunks: [body + next], pause: .milliseconds(50))
        XCTAssertTrue(r.hasPrefix("HTTP/1.1 415"), r)
        XCTAssertTrue(r.contains("Connection: close"), r)
        XCTAssertEqual(r.components(separatedBy: "HTTP/1.1 ").count - 1, 1, "only the 415: \(r)")
    }

    func testInvalidHandlerHeaderIsA500NotACrash() async throws {
        let base = self.base!
        let (bad, good) = try await withClient { c in
            (try await c.get("\(base)/api/v1/located/a%0D%0ASet-Cookie:%20x=1"), try await c.get("\(base)/api/v1/located/42"))
        }
        XCTAssertEqual(bad.status, 500)
        XCTAssertNil(bad.header("Set-Cookie"))
        XCTAssertEqual(good.status, 201)
        XCTAssertEqual(good.header("Location"), "/jobs/42")
    }

    // MARK: Client

    /// With one connection allowed, a waiter whose deadline passes gives up without
    /// stranding the next waiter, which gets the slot when the first request ends.
    func testClientWaitersHonourDeadlinesAndHandOverSlots() async throws {
        let base = self.base!
        var config = HTTPClientConfiguration()
        config.maxConnectionsPerOrigin = 1
        let outcome = try await withClient(config) { client -> [String] in
            // Child tasks run on the client's loop (they inherit its executor), so the
            // loop-bound client may be read there.
            let c = LoopBound(client, loop: EventLoop.current!)
            return try await withThrowingTaskGroup(of: (Int, String).self) { g in
                g.addTask { (0, "\(try await c.value.get("\(base)/api/v1/sleep?ms=600").status)") }
                // No sleep needed for A to take the slot first: the children run on this loop
                // in the order they were added, and checkout takes a slot before it suspends.
                g.addTask {
                    // B: waits, but only 200 ms in total.
                    do {
                        _ = try await c.value.execute(ClientRequest(url: "\(base)/api/v1/sleep?ms=0", timeout: .milliseconds(200)))
                        return (1, "served")
                    } catch let e as HTTPClientError { return (1, "\(e.kind)") }
                }
                g.addTask { (2, "\(try await c.value.get("\(base)/api/v1/sleep?ms=0").status)") }
                var out = ["", "", ""]
                for try await (i, v) in g { out[i] = v }
                return out
            }
        }
        XCTAssertEqual(outcome, ["200", "timedOut", "200"])
    }

    /// Waiters handed a slot leave no deadline timer behind: 30 requests through one
    /// connection, each with a 60 s deadline, and afterwards the loop has no timers of
    /// theirs in flight (before the fix: one sleeping timer per waiter, for 60 s).
    func testHandedOverWaitersCancelTheirDeadlineTimers() async throws {
        let base = self.base!
        var config = HTTPClientConfiguration()
        config.maxConnectionsPerOrigin = 1
        let (statuses, inFlight) = try await withClient(config) { client -> ([Int], Int) in
            let c = LoopBound(client, loop: EventLoop.current!)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { g in
                for _ in 0..<30 {
                    g.addTask { try await c.value.execute(ClientRequest(url: "\(base)/api/v1/sleep?ms=0", timeout: .seconds(60))).status }
                }
                var out: [Int] = []
                for try await s in g { out.append(s) }
                return out
            }
            // Cancelled timers complete on the loop's next turns; give them a few.
            for _ in 0..<10 { await EventLoop.current!.nop() }
            return (statuses, EventLoop.current!.operationsInFlight)
        }
        XCTAssertEqual(statuses, Array(repeating: 200, count: 30))
        XCTAssertLessThan(inFlight, 5, "waiter timers still in flight")
    }

    func testClientReusesConnectionsAndRecoversFromStaleOnes() async throws {
        let base = self.base!
        let (opened, openedAfterIdle, statuses) = try await withClient { c -> (Int, Int, [Int]) in
            var statuses: [Int] = []
            for _ in 0..<10 { statuses.append(try await c.get("\(base)/api/v1/sleep?ms=0").status) }
            let opened = c.connectionsOpened
            // The server closes idle connections after 300 ms; the pooled one is stale now.
            try await EventLoop.current!.sleep(for: .milliseconds(600))
            statuses.append(try await c.get("\(base)/api/v1/sleep?ms=0").status)
            return (opened, c.connectionsOpened, statuses)
        }
        XCTAssertEqual(statuses, Array(repeating: 200, count: 11))
        XCTAssertEqual(opened, 1, "ten sequential requests use one keep-alive connection")
        XCTAssertEqual(openedAfterIdle, 2, "the stale connection was replaced")
    }

    func testClientBoundsConnectionsPerOrigin() async throws {
        let base = self.base!
        var config = HTTPClientConfiguration()
        config.maxConnectionsPerOrigin = 2
        let (opened, statuses) = try await withClient(config) { client -> (Int, [Int]) in
            let c = LoopBound(client, loop: EventLoop.current!)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { g in
                for _ in 0..<12 { g.addTask { try await c.value.get("\(base)/api/v1/sleep?ms=20").status } }
                var out: [Int] = []
                for try await s in g { out.append(s) }
                return out
            }
            return (client.connectionsOpened, statuses)
        }
        XCTAssertEqual(statuses, Array(repeating: 200, count: 12))
        XCTAssertLessThanOrEqual(opened, 2)
    }

    func testClientTimeoutsErrorsAndRedirects() async throws {
        let base = self.base!
        var config = HTTPClientConfiguration()
        config.readTimeout = .milliseconds(200)
        let timeout = try await withClient(config) { c -> HTTPClientError? in
            do { _ = try await c.get("\(base)/api/v1/sleep?ms=1000"); return nil } catch { return error as? HTTPClientError }
        }
        XCTAssertEqual(timeout?.kind, .timedOut)
        var total = HTTPClientConfiguration()
        total.totalTimeout = .milliseconds(300)
        let totalTimeout = try await withClient(total) { c -> HTTPClientError? in
            do { _ = try await c.get("\(base)/api/v1/sleep?ms=1000"); return nil } catch { return error as? HTTPClientError }
        }
        XCTAssertEqual(totalTimeout?.kind, .timedOut)
        // A port nobody listens on (bind one and close it).
        let closedPort = try await client.run { () -> UInt16 in
            let l = try TCPListener(address: try SocketAddress("127.0.0.1:0"))
            let p = l.localAddress.port
            await l.close()
            return p
        }
        let refused = try await withClient { c -> HTTPClientError? in
            do { _ = try await c.get("http://127.0.0.1:\(closedPort)/"); return nil } catch { return error as? HTTPClientError }
        }
        XCTAssertEqual(refused?.kind, .connectFailed)
        let badURL = try await withClient { c -> HTTPClientError? in
            do { _ = try await c.get("ftp://127.0.0.1/"); return nil } catch { return error as? HTTPClientError }
        }
        XCTAssertEqual(badURL?.kind, .invalidURL)
        let notFollowed = try await withClient { c in try await c.get("\(base)/api/v1/redirect") }
        XCTAssertEqual(notFollowed.status, 302, "redirects are off by default")
        var follow = HTTPClientConfiguration()
        follow.followRedirects = true
        let followed = try await withClient(follow) { c in try await c.get("\(base)/api/v1/redirect") }
        XCTAssertEqual(followed.status, 200)
        XCTAssertEqual(String(decoding: followed.body, as: UTF8.self), "{\"slept\":true}")
        let followedWithBody = try await withClient(follow) { c in try await c.get("\(base)/api/v1/redirect-with-body") }
        XCTAssertEqual(String(decoding: followedWithBody.body, as: UTF8.self), "{\"slept\":true}", "the redirect's own body is not part of the result")
        var small = HTTPClientConfiguration()
        small.responseBodyMax = 10
        let tooBig = try await withClient(small) { c -> HTTPClientError? in
            do { _ = try await c.get("\(base)/api/v1/stream"); return nil } catch { return error as? HTTPClientError }
        }
        XCTAssertEqual(tooBig?.kind, .bodyTooLarge)
    }

    func testClientRejectsMalformedResponses() async throws {
        // A fake server on the client loop answers with a smuggling-style response.
        let loop = client!
        let (port, serverTask) = try await loop.run { () -> (UInt16, Task<Void, any Error>) in
            let l = try TCPListener(address: try SocketAddress("127.0.0.1:0"))
            let ref = Box(l)
            let t = loop.spawn {
                let c = try await ref.value.accept()
                _ = try await c.receive(timeout: .seconds(5))
                try await c.send(Array("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".utf8))
                try? await loop.sleep(for: .milliseconds(100))
                await c.close()
                await ref.value.close()
            }
            return (l.localAddress.port, t)
        }
        let err = try await withClient { c -> HTTPClientError? in
            do { _ = try await c.get("http://127.0.0.1:\(port)/"); return nil } catch { return error as? HTTPClientError }
        }
        XCTAssertEqual(err?.kind, .malformedResponse)
        try await serverTask.value
    }
}

/// Resident set size of this process.
func residentBytes() -> Int { Int(ProcFile.residentBytes) }
