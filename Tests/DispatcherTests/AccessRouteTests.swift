// The key endpoints and the authentication of /api/v1 over real loopback HTTP: 401 with
// WWW-Authenticate for a missing, wrong or revoked key, 403 for a tenant key on admin
// routes, a secret shown once and never listed, strict bodies, insecure_no_auth.
import Dispatcher
import Events
import Foundation
import GRDB
import JSON
import MessageQueue
import Ring
import ServerConfig
import SpoolModel
import Threads
import Web
import XCTest

/// A DispatchServer on 127.0.0.1:0 in a temp data directory, with a client loop.
final class AccessHarness: @unchecked Sendable {
    let dispatch: DispatchServer
    let http: HTTPServer
    let client: EventLoop
    let base: String
    let dataDirectory: String
    let clock: ManualClock

    /// `clock`: the dispatcher's (a manual clock at 2027-01-15 unless a test needs
    /// another calendar time, such as a store that refuses requests signed far from now).
    static func start(insecure: Bool = false, dataDirectory: String? = nil, clock: ManualClock = ManualClock(),
                      configure: (inout ServerSettings) -> Void = { _ in },
                      wrapQueue: (@Sendable (any MessageQueue) -> any MessageQueue)? = nil) async throws -> AccessHarness {
        let dir = dataDirectory ?? NSTemporaryDirectory() + "spool-dispatch-access-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var settings = ServerSettings()
        settings.insecureNoAuth = insecure
        configure(&settings)
        let dispatch = try await DispatchServer.open(dataDirectory: dir, settings: LiveSettings(settings), clock: clock, wrapQueue: wrapQueue)
        var configuration = HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0"))
        configuration.refused = dispatch.metrics.refusalRecorder   // as spool serve does
        let http = HTTPServer(configuration: configuration, router: dispatch.makeRouter())
        try await http.start()
        return AccessHarness(dispatch: dispatch, http: http, client: try EventLoop.start(id: 7),
                             base: "http://\(http.localAddress!)", dataDirectory: dir, clock: clock)
    }

    init(dispatch: DispatchServer, http: HTTPServer, client: EventLoop, base: String, dataDirectory: String, clock: ManualClock) {
        self.dispatch = dispatch; self.http = http; self.client = client; self.base = base
        self.dataDirectory = dataDirectory; self.clock = clock
    }

    /// Stops the server; `keepData` leaves the data directory for another start (a restart).
    func stop(keepData: Bool = false) async {
        await http.stop(grace: .milliseconds(50))
        client.shutdown()
        if keepData { await dispatch.database.close(); await dispatch.closeStorage() } else { try? FileManager.default.removeItem(atPath: dataDirectory) }
    }

    /// One request; the body as text.
    func call(_ method: String, _ path: String, key: String? = nil, body: String? = nil,
              headers: [(name: String, value: String)] = []) async throws -> (status: Int, headers: [(name: String, value: String)], text: String) {
        var h = headers
        if let key { h.append(("Authorization", "Bearer " + key)) }
        if body != nil { h.append(("Content-Type", "application/json")) }
        let request = ClientRequest(method: method, url: base + path, headers: h, body: body.map { .bytes(Array($0.utf8)) } ?? .none)
        let response = try await client.run { () async throws -> ClientResponse in
            let c = HTTPClient()
            do {
                let r = try await c.execute(request)
                await c.shutdown()
                return r
            } catch {
                await c.shutdown()
                throw error
            }
        }
        return (response.status, response.headers, String(decoding: response.body, as: UTF8.self))
    }

    /// Waits (at most 10 s) until an event stream of `jobID` is subscribed to the in-process bus.
    func waitForSubscriber(_ jobID: String) async throws {
        let bus = try XCTUnwrap(dispatch.events as? InProcessEventBus)
        let deadline = ContinuousClock.now + .seconds(10)
        while bus.subscriberCount(subject: jobID) == 0 && ContinuousClock.now < deadline { try await Task.sleep(nanoseconds: 1_000_000) }
    }

    /// Stops the HTTP server with a 30 s grace and checks it took well under that (a stop
    /// that waited out its grace for an open stream used to).
    func stopPromptly(file: StaticString = #filePath, line: UInt = #line) async {
        let started = ContinuousClock.now
        await http.stop(grace: .seconds(30))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(20), "the stop waited out its grace for a stream", file: file, line: line)
    }

    /// Uploads a small input and submits an h264-720p job for it; returns the job's id.
    func submitJob(key: String? = nil, idempotencyKey: String) async throws -> String {
        let file = try await call("POST", "/api/v1/files", key: key, body: "input")
        let fileID = try json(file.text)["id"]!.string()
        let job = try await call("POST", "/api/v1/jobs", key: key, body: #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p"}"#,
                                 headers: [("Idempotency-Key", idempotencyKey)])
        return try json(job.text)["id"]!.string()
    }

    func adminKey() async throws -> String {
        try await dispatch.access.ensureAdminKey(fromEnvironment: nil, dataDirectory: dataDirectory)!
    }
}

func json(_ text: String) throws -> JSONValue { try JSONDocument(parsing: text).root }

final class AccessRouteTests: XCTestCase {
    /// Readiness checks the database and the storage: with the upload directory gone the
    /// server says 503 and names it; once it is back, 200.
    func testReadyReportsAStorageThatCannotTakeUploads() async throws {
        let h = try await AccessHarness.start()
        let ok = try await h.call("GET", "/api/v1/ready")
        XCTAssertEqual(ok.status, 200, ok.text)
        XCTAssertEqual(try json(ok.text)["checks"]?["storage"]?.string(), "ok")
        let tmp = h.dataDirectory + "/files/tmp"
        try FileManager.default.removeItem(atPath: tmp)
        let down = try await h.call("GET", "/api/v1/ready")
        XCTAssertEqual(down.status, 503, down.text)
        XCTAssertEqual(try json(down.text)["status"]?.string(), "unavailable")
        XCTAssertEqual(try json(down.text)["checks"]?["storage"]?.string(), "files/tmp is missing", "no absolute path on an answer without a key")
        XCTAssertEqual(try json(down.text)["checks"]?["database"]?.string(), "ok")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        let back = try await h.call("GET", "/api/v1/ready")
        XCTAssertEqual(back.status, 200, back.text)
        await h.stop()
    }

    /// An event stream opened with a key ends once the key is revoked (at the next event or
    /// keep-alive tick): it reads nothing a new request with that key could not.
    func testARevokedKeyEndsItsOpenEventStream() async throws {
        let h = try await AccessHarness.start(configure: { $0.events.keepAliveSeconds = 1 })
        let admin = try await h.adminKey()
        let created = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#)
        let key = try json(created.text)["secret"]!.string(), keyID = try json(created.text)["id"]!.string()
        let jobID = try await h.submitJob(key: key, idempotencyKey: "sse-revoke")
        let bus = try XCTUnwrap(h.dispatch.events as? InProcessEventBus)
        let stream = Task { try await h.call("GET", "/api/v1/jobs/\(jobID)/events", key: key) }
        try await h.waitForSubscriber(jobID)
        let revoked = try await h.call("DELETE", "/api/v1/keys/\(keyID)", key: admin)
        XCTAssertEqual(revoked.status, 204, revoked.text)
        // Nothing happens to the job: the stream must end by itself at its next tick.
        let deadline = ContinuousClock.now + .seconds(10)
        while bus.subscriberCount(subject: jobID) > 0 && ContinuousClock.now < deadline {
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTAssertEqual(bus.subscriberCount(subject: jobID), 0, "the revoked key's stream is still open")
        // A change after the revocation is not carried by it (the cancel also ends a stream
        // the fix would have left open, so the test cannot hang).
        let cancel = try await h.call("POST", "/api/v1/jobs/\(jobID)/cancel", key: admin)
        XCTAssertEqual(cancel.status, 200, cancel.text)
        let r = try await stream.value
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(r.text.contains("JobCreated"), r.text)
        XCTAssertFalse(r.text.contains("JobFinished"), r.text)
        let again = try await h.call("GET", "/api/v1/jobs/\(jobID)/events", key: key)
        XCTAssertEqual(again.status, 401)
        await h.stop()
    }

    /// A graceful stop ends an open event stream with its last chunk at once: the client
    /// gets a whole response (and resumes with Last-Event-ID elsewhere), and the stop does
    /// not wait out its grace period for it (it used to, then cut the stream short).
    func testAGracefulStopEndsOpenEventStreamsWhole() async throws {
        let h = try await AccessHarness.start(configure: { $0.events.keepAliveSeconds = 3_600 })
        let admin = try await h.adminKey()
        let jobID = try await h.submitJob(key: admin, idempotencyKey: "sse-stop")
        let bus = try XCTUnwrap(h.dispatch.events as? InProcessEventBus)
        let stream = Task { try await h.call("GET", "/api/v1/jobs/\(jobID)/events", key: admin) }
        try await h.waitForSubscriber(jobID)
        XCTAssertEqual(bus.subscriberCount(subject: jobID), 1)
        await h.stopPromptly()
        let r = try await stream.value   // a body cut short would throw here
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(r.text.contains("event: JobCreated"), r.text)
        await h.stop()
    }

    /// A client that keeps its connection after the stream's last chunk (a keep-alive
    /// pool) does not hold the stop: the server closes the connection after the stream.
    func testAStreamEndedByAStopClosesItsConnection() async throws {
        let h = try await AccessHarness.start(configure: { $0.events.keepAliveSeconds = 3_600 })
        let admin = try await h.adminKey()
        let jobID = try await h.submitJob(key: admin, idempotencyKey: "sse-stop-keep")
        let address = h.http.localAddress!
        let request = Array("GET /api/v1/jobs/\(jobID)/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(admin)\r\n\r\n".utf8)
        // A raw connection that reads to the end of the stream and then waits for the
        // server's close, never closing itself.
        let reader = Task { try await h.client.run { () async throws -> (String, Bool) in
            let conn = try await TCPConnection.connect(to: address)
            try await conn.send(request)
            var got: [UInt8] = []
            while !got.suffix(5).elementsEqual(Array("0\r\n\r\n".utf8)), let b = try await conn.receive(timeout: .seconds(20)) { got += b.bytes }
            let closed = try await conn.receive(timeout: .seconds(20)) == nil
            await conn.close()
            return (String(decoding: got, as: UTF8.self), closed)
        } }
        try await h.waitForSubscriber(jobID)
        await h.stopPromptly()
        let (text, closed) = try await reader.value
        XCTAssertTrue(text.contains("event: JobCreated"), text)
        XCTAssertTrue(closed, "the server left the connection open after the stream")
        await h.stop()
    }

    /// SQLite's own failures are the standard 507/503, not a 500: a database that cannot
    /// grow (SQLITE_FULL, here through max_page_count on the writer) refuses a submission
    /// with 507 insufficient_storage, and takes it once it can grow again.
    func testAFullDatabaseIs507() async throws {
        let h = try await AccessHarness.start()
        let admin = try await h.adminKey()
        guard case .sqlite(let db) = h.dispatch.database else { return XCTFail("not on SQLite") }
        let file = try await h.call("POST", "/api/v1/files", key: admin, body: "input")
        let fileID = try json(file.text)["id"]!.string()
        let pages = try await db.write { try Int.fetchOne($0, sql: "PRAGMA page_count") ?? 0 }
        _ = try await db.write { try Int.fetchOne($0, sql: "PRAGMA max_page_count = \(pages)") }
        let body = #"{"input":{"file_id":"\#(fileID)"},"preset":"h264-720p","metadata":{"pad":"\#(String(repeating: "x", count: 500))"}}"#
        var status = 0, text = ""
        for i in 0..<50 where status != 507 {
            let r = try await h.call("POST", "/api/v1/jobs", key: admin, body: body, headers: [("Idempotency-Key", "full-\(i)")])
            XCTAssertTrue(r.status == 201 || r.status == 507, "\(r.status): \(r.text)")
            (status, text) = (r.status, r.text)
        }
        XCTAssertEqual(status, 507, text)
        XCTAssertEqual(try json(text)["error"]?["code"]?.string(), "insufficient_storage")
        _ = try await db.write { try Int.fetchOne($0, sql: "PRAGMA max_page_count = 1073741823") }
        let after = try await h.call("POST", "/api/v1/jobs", key: admin, body: body, headers: [("Idempotency-Key", "full-after")])
        XCTAssertEqual(after.status, 201, after.text)
        let ready = try await h.call("GET", "/api/v1/ready")
        XCTAssertEqual(ready.status, 200, ready.text)
        await h.stop()
    }

    /// Across a restart the bus holds none of a finished job's events. Its stream still
    /// says the end, with the same payload shape as the bus's and an id, so a client that
    /// saw only what came before (an id of the process before) gets it, and one that saw it
    /// gets 204 (EventSource stops) instead of the same event again and again.
    func testAFinishedJobsStreamSaysItsEndAcrossARestart() async throws {
        let clock = ManualClock()
        let first = try await AccessHarness.start(insecure: true, clock: clock)
        let jobID = try await first.submitJob(idempotencyKey: "restart-sse")
        // The id of the JobCreated a client would have seen (the stream of a pending job
        // does not end, so it is read from the bus).
        let bus = try XCTUnwrap(first.dispatch.events as? InProcessEventBus)
        let createdID = String(try XCTUnwrap(bus.retained(subject: jobID).first { $0.type == .jobCreated }).id)
        // The client leaves; the server stops; the job is cancelled after the restart.
        await first.stop(keepData: true)
        clock.advance(by: .seconds(5))
        let second = try await AccessHarness.start(insecure: true, dataDirectory: first.dataDirectory, clock: clock)
        let cancel = try await second.call("POST", "/api/v1/jobs/\(jobID)/cancel")
        XCTAssertEqual(cancel.status, 200, cancel.text)
        await second.stop(keepData: true)
        clock.advance(by: .seconds(5))
        let third = try await AccessHarness.start(insecure: true, dataDirectory: first.dataDirectory, clock: clock)
        let resumed = try await third.call("GET", "/api/v1/jobs/\(jobID)/events", headers: [("Last-Event-ID", createdID)])
        XCTAssertEqual(resumed.status, 200, "the end was never seen: not a 204")
        XCTAssertTrue(resumed.text.contains("event: JobFinished"), resumed.text)
        let lines = resumed.text.split(separator: "\n")
        let finishID = try XCTUnwrap(lines.first { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) }, resumed.text)
        XCTAssertGreaterThan(try XCTUnwrap(UInt64(finishID)), try XCTUnwrap(UInt64(createdID)))
        let data = try XCTUnwrap(lines.first { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) })
        XCTAssertEqual(try json(data)["job_id"]?.string(), jobID, "the bus's payload shape")
        XCTAssertEqual(try json(data)["state"]?.string(), "cancelled")
        let fresh = try await third.call("GET", "/api/v1/jobs/\(jobID)/events")
        XCTAssertTrue(fresh.text.contains("id: \(finishID)\n"), fresh.text)
        let done = try await third.call("GET", "/api/v1/jobs/\(jobID)/events", headers: [("Last-Event-ID", finishID)])
        XCTAssertEqual(done.status, 204, "the end was seen")
        await third.stop()
    }

    /// A reader that stops reading holds at most a bounded backlog on the server: past it
    /// the stream ends (the client resumes from its Last-Event-ID), where every event used
    /// to be kept for it for as long as the job ran.
    func testAStalledEventReaderEndsInsteadOfBufferingWithoutBound() async throws {
        let h = try await AccessHarness.start(insecure: true, configure: { $0.events.replayWindow = 16 })
        let jobID = try await h.submitJob(idempotencyKey: "stalled-sse")
        let bus = try XCTUnwrap(h.dispatch.events as? InProcessEventBus)
        // A client with a small receive buffer that sends its request and reads nothing.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(h.base.split(separator: ":").last!)!).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(rc, 0)
        let request = Array("GET /api/v1/jobs/\(jobID)/events HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        XCTAssertEqual(send(fd, request, request.count, 0), request.count)
        try await h.waitForSubscriber(jobID)
        let published = 20_000
        let pad = String(repeating: "p", count: 200)
        for i in 0..<published {
            bus.publishNow(subject: jobID, type: .progressUpdated, payload: #"{"job_id":"\#(jobID)","n":\#(i),"pad":"\#(pad)"}"#)
        }
        try await Task.sleep(for: .milliseconds(500))
        // Now read everything there is, until the last chunk or 10 s.
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let until = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < until {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            got.append(contentsOf: buffer[0..<n])
            if got.count >= 5, Array(got.suffix(5)) == Array("0\r\n\r\n".utf8) { break }
        }
        let text = String(decoding: got, as: UTF8.self)
        let delivered = text.components(separatedBy: "event: ProgressUpdated").count - 1
        XCTAssertGreaterThan(delivered, 0)
        XCTAssertLessThan(delivered, published, "the server kept every event for a reader that did not read")
        XCTAssertTrue(text.hasSuffix("0\r\n\r\n"), "the stream ended: \(text.suffix(200))")
        await h.stop()
    }

    func testMissingWrongAndRevokedKeysGet401WithWWWAuthenticate() async throws {
        let h = try await AccessHarness.start()
        let admin = try await h.adminKey()
        for key in [nil, "spk_wrongwrongwrongwrongwrongwrongwrongwrong", ""] as [String?] {
            let r = try await h.call("GET", "/api/v1/keys", key: key)
            XCTAssertEqual(r.status, 401, "key \(key ?? "none")")
            // RFC 6750 §3: presented credentials that do not hold are an invalid_token; a
            // request without any gets the bare challenge.
            let challenge = key == nil ? #"Bearer realm="spool""# : #"Bearer realm="spool", error="invalid_token""#
            XCTAssertEqual(r.headers.first { $0.name.lowercased() == "www-authenticate" }?.value, challenge)
            XCTAssertEqual(try json(r.text)["error"]?["code"]?.string(), "unauthorized")
            XCTAssertTrue(try json(r.text)["error"]?["message"]?.string().hasPrefix(key == nil ? "missing credentials" : "invalid credentials") == true, r.text)
        }
        // Another scheme's credentials are no Bearer token presented: no error code.
        let basic = try await h.call("GET", "/api/v1/keys", headers: [("Authorization", "Basic YWRtaW46YWRtaW4=")])
        XCTAssertEqual(basic.status, 401)
        XCTAssertEqual(basic.headers.first { $0.name.lowercased() == "www-authenticate" }?.value, #"Bearer realm="spool""#)
        // Open routes need no key.
        for path in ["/api/v1/health", "/api/v1/version", "/api/v1/ready"] {
            let r = try await h.call("GET", path)
            XCTAssertEqual(r.status, 200, path)
        }
        let created = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme"}"#)
        XCTAssertEqual(created.status, 201, created.text)
        let body = try json(created.text)
        let secret = try body["secret"]!.string(), id = try body["id"]!.string()
        XCTAssertEqual(try body["tenant"]?.string(), "acme")
        XCTAssertEqual(try body["admin"]?.bool(), false)
        XCTAssertEqual(try body["created_at"]?.string(), RFC3339.format(h.clock.unixMilliseconds))
        XCTAssertEqual(body["revoked_at"]?.isNull, true)
        let ok = try await h.call("GET", "/api/v1/engines", key: secret)
        XCTAssertEqual(ok.status, 200, ok.text)
        let revoked = try await h.call("DELETE", "/api/v1/keys/\(id)", key: admin)
        XCTAssertEqual(revoked.status, 204)
        let after = try await h.call("GET", "/api/v1/engines", key: secret)
        XCTAssertEqual(after.status, 401, "a revoked key is refused at once")
        let again = try await h.call("DELETE", "/api/v1/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV", key: admin)
        XCTAssertEqual(again.status, 404)
        let junk = try await h.call("DELETE", "/api/v1/keys/..%2F..", key: admin)
        XCTAssertEqual(junk.status, 404)
        // The last admin key in force cannot be revoked (no one could manage keys after it);
        // once there is another, it can.
        let keys = try json(try await h.call("GET", "/api/v1/keys", key: admin).text)
        let adminID = try XCTUnwrap(keys["data"]?.elements.first { (try? $0["admin"]?.bool()) == true && $0["revoked_at"]?.isNull == true }?["id"]?.string())
        let last = try await h.call("DELETE", "/api/v1/keys/\(adminID)", key: admin)
        XCTAssertEqual(last.status, 409, last.text)
        let stillWorks = try await h.call("GET", "/api/v1/keys", key: admin).status
        XCTAssertEqual(stillWorks, 200, "the admin key still works")
        let second = try json(try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"ops","admin":true}"#).text)
        let now = try await h.call("DELETE", "/api/v1/keys/\(adminID)", key: try second["secret"]!.string())
        XCTAssertEqual(now.status, 204, now.text)
        await h.stop()
    }

    func testTenantKeysCannotManageKeys() async throws {
        let h = try await AccessHarness.start()
        let admin = try await h.adminKey()
        let created = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"acme","admin":false}"#)
        let tenantKey = try json(created.text)["secret"]!.string()
        for (method, path, body) in [("POST", "/api/v1/keys", #"{"tenant":"x"}"#), ("GET", "/api/v1/keys", nil),
                                     ("DELETE", "/api/v1/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV", nil)] as [(String, String, String?)] {
            let r = try await h.call(method, path, key: tenantKey, body: body)
            XCTAssertEqual(r.status, 403, "\(method) \(path)")
            XCTAssertEqual(try json(r.text)["error"]?["code"]?.string(), "forbidden")
        }
        // An admin key made over the API can.
        let madeAdmin = try await h.call("POST", "/api/v1/keys", key: admin, body: #"{"tenant":"ops","admin":true}"#)
        let second = try json(madeAdmin.text)["secret"]!.string()
        let listed = try await h.call("GET", "/api/v1/keys", key: second)
        XCTAssertEqual(listed.status, 200)
        await h.stop()
    }

    func testKeyBodiesAreValidatedStrictly() async throws {
        let h = try await AccessHarness.start()
        let admin = try await h.adminKey()
        let cases: [(String, Int, String?)] = [
            (#"{"tenant":"acme""#, 400, nil),
            (#"[]"#, 422, ""),
            (#"{}"#, 422, "/tenant"),
            (#"{"tenant":5}"#, 422, "/tenant"),
            (#"{"tenant":"Acme"}"#, 422, "/tenant"),
            (#"{"tenant":""}"#, 422, "/tenant"),
            ("{\"tenant\":\"\(String(repeating: "a", count: 65))\"}", 422, "/tenant"),
            (#"{"tenant":"acme","admin":"yes"}"#, 422, "/admin"),
            (#"{"tenant":"acme","colour":1}"#, 422, "/colour"),
            (#"{"tenant":"acme","tenant":"evil"}"#, 422, "/tenant"),
        ]
        for (body, status, field) in cases {
            let r = try await h.call("POST", "/api/v1/keys", key: admin, body: body)
            XCTAssertEqual(r.status, status, "\(body): \(r.text)")
            if let field {
                XCTAssertNotNil(try json(r.text)["error"]?["details"]?[field], "\(body): \(r.text)")
            }
        }
        await h.stop()
    }

    func testListPagesAndNeverShowsSecretsOrHashes() async throws {
        let h = try await AccessHarness.start()
        let admin = try await h.adminKey()
        var secrets: [String] = []
        for i in 0..<4 {
            let r = try await h.call("POST", "/api/v1/keys", key: admin, body: "{\"tenant\":\"t\(i)\"}")
            secrets.append(try json(r.text)["secret"]!.string())
        }
        var seen: [String] = []
        var path: String? = "/api/v1/keys?limit=2"
        while let p = path {
            let r = try await h.call("GET", p, key: admin)
            XCTAssertEqual(r.status, 200, r.text)
            for s in secrets + [admin] { XCTAssertFalse(r.text.contains(s), "a secret was listed") }
            XCTAssertFalse(r.text.contains("hash"))
            let body = try json(r.text)
            XCTAssertEqual(try body["total_count"]?.int(), 5)
            for k in body["data"]!.elements { seen.append(try k["id"]!.string()); XCTAssertNil(k["secret"]) }
            path = body["next_page_url"]!.isNull ? nil : try body["next_page_url"]!.string()
        }
        XCTAssertEqual(seen.count, 5)
        XCTAssertEqual(Set(seen).count, 5)
        let tampered = try await h.call("GET", "/api/v1/keys?cursor=key_01ARZ3NDEKTSV4RRFFQ69G5FAV.0000", key: admin)
        XCTAssertEqual(tampered.status, 400)
        let badLimit = try await h.call("GET", "/api/v1/keys?limit=-1", key: admin)
        XCTAssertEqual(badLimit.status, 422)
        await h.stop()
    }

    func testInsecureNoAuthMakesEveryCallerTheDefaultAdmin() async throws {
        let h = try await AccessHarness.start(insecure: true)
        let r = try await h.call("POST", "/api/v1/keys", body: #"{"tenant":"acme"}"#)
        XCTAssertEqual(r.status, 201, r.text)
        let listed = try await h.call("GET", "/api/v1/keys", key: "anything at all")
        XCTAssertEqual(listed.status, 200)
        await h.stop()
    }
}
