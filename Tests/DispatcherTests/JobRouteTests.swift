// DispatcherTests.JobRouteTests: /api/v1/jobs over real loopback HTTP with DispatchServer on
// a temp directory: creation and Idempotency-Key replays, 400/422 bodies, ETag/304 and HEAD,
// list paging and cursors, cancel and retry, SSE with Last-Event-ID. Until authentication is
// wired, a test middleware sets the principal (X-Test-Principal, "admin:default" by default).
import Events
import Foundation
@testable import Dispatcher
import JSON
import Jobs
import Ring
import ServerConfig
import SpoolModel
import Threads
import Web
import XCTest

final class JobRouteTests: XCTestCase {
    var dir: String!
    var dispatch: DispatchServer!
    var http: HTTPServer!
    var client: EventLoop!
    var base: String!
    /// An uploaded input file per tenant (POST /jobs checks that its input exists).
    var inputs: [String: String] = [:]
    var file: String { inputs["default"]! }
    var minimal: String { #"{"input":{"file_id":"\#(file)"},"preset":"h264-720p"}"# }

    override func setUp() async throws {
        dir = NSTemporaryDirectory() + "spool-jobroutes-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        dispatch = try await DispatchServer.open(dataDirectory: dir, settings: LiveSettings(ServerSettings()))
        try await start(dispatch)
        client = try EventLoop.start(id: 9)
        for tenant in ["default", "globex"] {
            let r = try await send("POST", "/api/v1/files", headers: [("X-Test-Principal", "tenant:" + tenant)], body: "input of \(tenant)")
            XCTAssertEqual(r.status, 201, text(r))
            inputs[tenant] = try json(r)["id"]!.string()
        }
    }

    func start(_ server: DispatchServer) async throws {
        if let http { await http.stop(grace: .milliseconds(10)) }
        let router = Router { r in
            r.group("/api/v1") { v1 in
                v1.use { req, next in
                    var req = req
                    req.principal = req.header("X-Test-Principal") ?? "admin:default"
                    return await next(req)
                }
                server.installFileRoutes(on: &v1)
                server.installJobRoutes(on: &v1)
            }
        }
        http = HTTPServer(configuration: HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0")), router: router)
        try await http.start()
        base = "http://\(http.localAddress!)"
    }

    override func tearDown() async throws {
        await http.stop(grace: .milliseconds(50))
        client.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func send(_ method: String, _ path: String, headers: [(name: String, value: String)] = [], body: String? = nil) async throws -> ClientResponse {
        try await API(loop: client, base: base).send(method, path, headers: headers, body: body)
    }

    /// The client side, Sendable so a test can keep a request open in another task.
    struct API: Sendable {
        let loop: EventLoop
        let base: String
        func send(_ method: String, _ path: String, headers: [(name: String, value: String)] = [], body: String? = nil) async throws -> ClientResponse {
            let url = path.hasPrefix("http") ? path : base + path
            return try await loop.run {
                let c = HTTPClient()
                do {
                    let r = try await c.execute(ClientRequest(method: method, url: url, headers: headers, body: body.map { .bytes(Array($0.utf8)) } ?? .none))
                    await c.shutdown()
                    return r
                } catch {
                    await c.shutdown()
                    throw error
                }
            }
        }
    }

    func json(_ r: ClientResponse) throws -> JSONValue { try JSONDocument(parsing: r.body).root }
    func text(_ r: ClientResponse) -> String { String(decoding: r.body, as: UTF8.self) }
    func details(_ r: ClientResponse) throws -> Set<String> { Set(try json(r)["error"]!["details"]!.members.map(\.key)) }
    func code(_ r: ClientResponse) throws -> String { try json(r)["error"]!["code"]!.string() }

    func create(_ body: String? = nil, key: String = UUID().uuidString, as principal: String = "admin:default") async throws -> String {
        let tenant = String(principal.split(separator: ":").last ?? "default")
        let body = body ?? #"{"input":{"file_id":"\#(inputs[tenant]!)"},"preset":"h264-720p"}"#
        let r = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", key), ("X-Test-Principal", principal)], body: body)
        XCTAssertEqual(r.status, 201, text(r))
        return try json(r)["id"]!.string()
    }

    func testCreateReplayAndKeyRules() async throws {
        let first = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "abc 123")], body: minimal)
        XCTAssertEqual(first.status, 201, text(first))
        let job = try json(first)
        let id = try job["id"]!.string()
        XCTAssertEqual(first.header("Location"), "/api/v1/jobs/\(id)")
        XCTAssertNil(first.header("Idempotent-Replayed"))
        XCTAssertEqual(try job["state"]!.string(), "pending")
        XCTAssertEqual(try job["input"]!["file_id"]!.string(), file)
        XCTAssertEqual(try job["preset"]!.string(), "h264-720p")
        XCTAssertEqual(try job["tenant"]!.string(), "default")
        XCTAssertTrue(try job["created_at"]!.string().hasSuffix("Z"))
        // Two keys: which one the answer is stored under would be a guess.
        let twoKeys = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")], body: minimal)
        XCTAssertEqual(twoKeys.status, 400, text(twoKeys))
        XCTAssertEqual(try code(twoKeys), "invalid_idempotency_key")

        let replay = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "abc 123")], body: minimal)
        XCTAssertEqual(replay.status, 201)
        XCTAssertEqual(replay.body, first.body, "byte for byte")
        XCTAssertEqual(replay.header("Idempotent-Replayed"), "true")
        XCTAssertEqual(replay.header("Location"), first.header("Location"))

        let reused = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "abc 123")],
                                    body: #"{"input":{"file_id":"\#(file)"},"preset":"h264-360p"}"#)
        XCTAssertEqual(reused.status, 422)
        XCTAssertEqual(try code(reused), "idempotency_key_reused")
        // Reused with a body that would not even decode: still the key's error, not the body's.
        let garbled = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "abc 123")], body: #"{"input":"#)
        XCTAssertEqual(try code(garbled), "idempotency_key_reused")

        // Once the input is deleted, a new request for it is refused, but the replay of the
        // first one still answers what it answered.
        let deleted = try await send("DELETE", "/api/v1/files/\(file)")
        XCTAssertEqual(deleted.status, 204)
        let afterDelete = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "abc 123")], body: minimal)
        XCTAssertEqual(afterDelete.status, 201, text(afterDelete))
        XCTAssertEqual(afterDelete.body, first.body)
        XCTAssertEqual(afterDelete.header("Idempotent-Replayed"), "true")
        let fresh = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "new key")], body: minimal)
        XCTAssertEqual(fresh.status, 422, text(fresh))

        let missing = try await send("POST", "/api/v1/jobs", body: minimal)
        XCTAssertEqual(missing.status, 400)
        XCTAssertEqual(try code(missing), "idempotency_key_required")
        let long = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", String(repeating: "k", count: 256))], body: minimal)
        XCTAssertEqual(long.status, 400)
        let v1 = try await dispatch.jobs.list(JobQuery()).totalCount
        XCTAssertEqual(v1, 1)
    }

    func testBadBodies() async throws {
        func post(_ body: String) async throws -> ClientResponse {
            try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", UUID().uuidString)], body: body)
        }
        let wrong = try await post(#"{"input":{"file_id":"file_x"},"preset":"h264-720p","priority":"high","colour":1}"#)
        XCTAssertEqual(wrong.status, 422)
        XCTAssertEqual(try code(wrong), "validation_failed")
        XCTAssertEqual(try details(wrong), ["/input/file_id", "/priority", "/colour"])
        let duplicate = try await post(#"{"input":{"file_id":"\#(file)"},"preset":"h264-720p","preset":"h264-720p"}"#)
        XCTAssertEqual(duplicate.status, 422)
        XCTAssertEqual(try details(duplicate), ["/preset"])
        let malformed = try await post(#"{"input":{"file_id":"#)
        XCTAssertEqual(malformed.status, 400)
        XCTAssertEqual(try code(malformed), "invalid_json")
        let huge = try await post(#"{"input":{"file_id":"\#(file)"},"preset":"h264-720p","ttl_seconds":1e400}"#)
        XCTAssertEqual(huge.status, 422)
        XCTAssertEqual(try details(huge), ["/ttl_seconds"])

        // The input file must exist for the tenant: an unknown id, and another tenant's file.
        let unknown = try await post(#"{"input":{"file_id":"file_01J00000000000000000000000"},"preset":"h264-720p"}"#)
        XCTAssertEqual(unknown.status, 422)
        XCTAssertEqual(try details(unknown), ["/input/file_id"])
        let theirs = try await post(#"{"input":{"file_id":"\#(inputs["globex"]!)"},"preset":"h264-720p"}"#)
        XCTAssertEqual(theirs.status, 422, "a tenant cannot use another tenant's file")
    }

    /// When the input cannot be looked up (here: the file table is out of reach, while the
    /// Idempotency-Key table answers), the submission is an error a client sends again,
    /// never the 422 "no file" that says the job can never be made; afterwards it succeeds.
    func testAnInputLookupThatFailsIsNotA422() async throws {
        func files(_ sql: String) async throws {
            _ = try await dispatch.database.relational.writing { s in try s.execute(sql, []) }
        }
        try await files("ALTER TABLE files_records RENAME TO files_records_away")
        let during = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "lookup")], body: minimal)
        XCTAssertGreaterThanOrEqual(during.status, 500, text(during))
        XCTAssertNotEqual(try code(during), "validation_failed")
        try await files("ALTER TABLE files_records_away RENAME TO files_records")
        let after = try await send("POST", "/api/v1/jobs", headers: [("Idempotency-Key", "lookup")], body: minimal)
        XCTAssertEqual(after.status, 201, text(after))
    }

    func testGetWithETagHeadAndTenants() async throws {
        let id = try await create()
        let get = try await send("GET", "/api/v1/jobs/\(id)")
        XCTAssertEqual(get.status, 200)
        let etag = try XCTUnwrap(get.header("ETag"))
        XCTAssertNotNil(get.header("Last-Modified"))
        XCTAssertEqual(try json(get)["id"]!.string(), id)

        let notModified = try await send("GET", "/api/v1/jobs/\(id)", headers: [("If-None-Match", etag)])
        XCTAssertEqual(notModified.status, 304)
        XCTAssertTrue(notModified.body.isEmpty)

        let head = try await send("HEAD", "/api/v1/jobs/\(id)")
        XCTAssertEqual(head.status, 200)
        XCTAssertTrue(head.body.isEmpty)
        for name in ["ETag", "Last-Modified", "Content-Type", "Content-Length"] {
            XCTAssertEqual(head.header(name), get.header(name), name)
        }

        let matching = try await send("GET", "/api/v1/jobs/\(id)", headers: [("If-Match", etag)])
        XCTAssertEqual(matching.status, 200)

        _ = try await send("POST", "/api/v1/jobs/\(id)/cancel")
        let changed = try await send("GET", "/api/v1/jobs/\(id)", headers: [("If-None-Match", etag)])
        XCTAssertEqual(changed.status, 200, "a change gives a new ETag")
        XCTAssertNotEqual(changed.header("ETag"), etag)
        // The tag a client holds no longer names the job: If-Match fails with the standard 412.
        let stale = try await send("GET", "/api/v1/jobs/\(id)", headers: [("If-Match", etag)])
        XCTAssertEqual(stale.status, 412)
        XCTAssertEqual(try json(stale)["error"]?["code"]?.string(), "precondition_failed")

        let v2 = try await send("GET", "/api/v1/jobs/job_nope").status
        XCTAssertEqual(v2, 404)
        let v3 = try await send("GET", "/api/v1/jobs/%FF%FE").status
        XCTAssertEqual(v3, 404)
        let v4 = try await send("GET", "/api/v1/jobs/\(id)", headers: [("X-Test-Principal", "tenant:globex")]).status
        XCTAssertEqual(v4, 404)
        let v5 = try await send("GET", "/api/v1/jobs/\(id)", headers: [("X-Test-Principal", "tenant:default")]).status
        XCTAssertEqual(v5, 200)
    }

    func testListPagesWithCursorsAndFilters() async throws {
        var ids: [String] = []
        for _ in 0..<7 { ids.append(try await create()) }
        _ = try await create(as: "tenant:globex")
        var seen: [String] = []
        var next: String? = "/api/v1/jobs?tenant=default&limit=3"
        var pages = 0
        while let url = next {
            let r = try await send("GET", url)
            XCTAssertEqual(r.status, 200, text(r))
            let page = try json(r)
            XCTAssertEqual(try page["total_count"]!.int(), 7)
            seen += try page["data"]!.elements.map { try $0["id"]!.string() }
            next = page["next_page_url"]!.isNull ? nil : try page["next_page_url"]!.string()
            pages += 1
        }
        XCTAssertEqual(seen, ids)
        XCTAssertEqual(pages, 3)

        let first = try json(await send("GET", "/api/v1/jobs?tenant=default&limit=3"))
        let nextURL = try first["next_page_url"]!.string()
        let tampered = nextURL.replacingOccurrences(of: "cursor=job_", with: "cursor=job_0")
        let v6 = try await send("GET", tampered).status
        XCTAssertEqual(v6, 400)
        let otherFilter = nextURL.replacingOccurrences(of: "tenant=default", with: "tenant=globex")
        let refiltered = try await send("GET", otherFilter)
        XCTAssertEqual(try code(refiltered), "invalid_cursor")

        let v7 = try await send("GET", "/api/v1/jobs?state=bogus").status
        XCTAssertEqual(v7, 422)
        // Filters outside their OpenAPI form are refused, not read as "no such tenant" or "no filter".
        // A parameter given twice is refused too: which one counts would be a guess.
        for q in ["state=", "tenant=", "tenant=ACME", "tenant=a%20b", "tenant=" + String(repeating: "t", count: 65),
                  "limit=10&limit=20", "state=pending&state=cancelled", "offset=5&offset=10", "tenant=default&tenant=default"] {
            let r = try await send("GET", "/api/v1/jobs?" + q)
            XCTAssertEqual(r.status, 422, q)
            XCTAssertEqual(try code(r), "validation_failed", q)
        }
        let v8 = try await send("GET", "/api/v1/jobs?limit=0").status
        XCTAssertEqual(v8, 422)
        let offset = try json(await send("GET", "/api/v1/jobs?tenant=default&offset=5"))
        XCTAssertEqual(try offset["data"]!.elements.map { try $0["id"]!.string() }, Array(ids[5...]))
        XCTAssertTrue(offset["next_page_url"]!.isNull)

        let globex = try json(await send("GET", "/api/v1/jobs", headers: [("X-Test-Principal", "tenant:globex")]))
        XCTAssertEqual(try globex["total_count"]!.int(), 1, "a tenant sees only its own jobs")
        let v9 = try await send("GET", "/api/v1/jobs?tenant=default", headers: [("X-Test-Principal", "tenant:globex")]).status
        XCTAssertEqual(v9, 403)
        _ = try await send("POST", "/api/v1/jobs/\(ids[2])/cancel")
        let cancelled = try json(await send("GET", "/api/v1/jobs?state=cancelled"))
        XCTAssertEqual(try cancelled["data"]!.elements.map { try $0["id"]!.string() }, [ids[2]])
    }

    func testCancelTwiceIs409AndRetryIsIdempotent() async throws {
        let id = try await create()
        let cancel = try await send("POST", "/api/v1/jobs/\(id)/cancel")
        XCTAssertEqual(cancel.status, 200)
        XCTAssertEqual(try json(cancel)["state"]!.string(), "cancelled")
        let again = try await send("POST", "/api/v1/jobs/\(id)/cancel")
        XCTAssertEqual(again.status, 409)
        XCTAssertEqual(try code(again), "invalid_transition")

        let failing = try await create(#"{"input":{"file_id":"\#(file)"},"preset":"h264-720p","max_attempts":1}"#)
        let jobID = JobID(failing)!
        _ = try await dispatch.jobs.transition(jobID, to: .assigned)
        let failed = try await dispatch.jobs.transition(jobID, to: .failed, reason: "boom")
        XCTAssertEqual(failed.state, .failed)
        let retry = try await send("POST", "/api/v1/jobs/\(failing)/retry", headers: [("Idempotency-Key", "r1")])
        XCTAssertEqual(retry.status, 200, text(retry))
        XCTAssertEqual(try json(retry)["state"]!.string(), "pending")
        let replay = try await send("POST", "/api/v1/jobs/\(failing)/retry", headers: [("Idempotency-Key", "r1")])
        XCTAssertEqual(replay.status, 200)
        XCTAssertEqual(replay.body, retry.body)
        XCTAssertEqual(replay.header("Idempotent-Replayed"), "true")
        let v10 = try await send("POST", "/api/v1/jobs/\(failing)/retry").status
        XCTAssertEqual(v10, 409, "a pending job cannot be retried")
        let v11 = try await send("POST", "/api/v1/jobs/\(id)/retry", headers: [("Idempotency-Key", "r1")]).status
        XCTAssertEqual(v11, 422,
                       "the key is bound to the first job's retry")
    }

    struct SSE: Equatable { var event: String; var id: String? }

    func parseSSE(_ body: [UInt8]) -> [SSE] {
        String(decoding: body, as: UTF8.self).components(separatedBy: "\n\n").compactMap { block in
            var event: String?, id: String?
            for line in block.split(separator: "\n") {
                if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
                if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
            }
            return event.map { SSE(event: $0, id: id) }
        }
    }

    func testEventStreamSeesTheCancelAndResumes() async throws {
        let id = try await create()
        let bus = try XCTUnwrap(dispatch.events as? InProcessEventBus)
        let api = API(loop: client, base: base)
        let stream = Task { try await api.send("GET", "/api/v1/jobs/\(id)/events") }
        while bus.subscriberCount(subject: id) == 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        let v12 = try await send("POST", "/api/v1/jobs/\(id)/cancel").status
        XCTAssertEqual(v12, 200)
        let r = try await stream.value
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Content-Type"), "text/event-stream")
        let events = parseSSE(r.body)
        XCTAssertEqual(events.map(\.event), ["JobCreated", "JobFinished"], text(r))
        XCTAssertTrue(text(r).contains(#""state":"cancelled""#))

        // Resuming after the first event gives only what followed; after the last, 204.
        let resumed = try await send("GET", "/api/v1/jobs/\(id)/events", headers: [("Last-Event-ID", events[0].id!)])
        XCTAssertEqual(parseSSE(resumed.body), [events[1]])
        let done = try await send("GET", "/api/v1/jobs/\(id)/events", headers: [("Last-Event-ID", events[1].id!)])
        XCTAssertEqual(done.status, 204)
        let v13 = try await send("GET", "/api/v1/jobs/\(id)/events", headers: [("Last-Event-ID", "x")]).status
        XCTAssertEqual(v13, 400)
        // Only the decimal ids the server writes, once.
        for bad in [[("Last-Event-ID", "+19")], [("Last-Event-ID", "-0")], [("Last-Event-ID", String(repeating: "0", count: 21))],
                    [("Last-Event-ID", "1"), ("Last-Event-ID", "2")]] {
            let s = try await send("GET", "/api/v1/jobs/\(id)/events", headers: bad).status
            XCTAssertEqual(s, 400, "\(bad)")
        }
    }
    /// A quiet stream gets a `: keep-alive` comment every events.keepalive_seconds (reloadable),
    /// which EventSource ignores; the events that follow are unchanged.
    func testAQuietEventStreamGetsKeepAliveComments() async throws {
        var settings = dispatch.settings.current
        settings.events.keepAliveSeconds = 1
        dispatch.settings.replace(settings)
        let id = try await create()
        let bus = try XCTUnwrap(dispatch.events as? InProcessEventBus)
        let api = API(loop: client, base: base)
        let stream = Task { try await api.send("GET", "/api/v1/jobs/\(id)/events") }
        while bus.subscriberCount(subject: id) == 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        try await Task.sleep(for: .milliseconds(2_500))
        let cancelled = try await send("POST", "/api/v1/jobs/\(id)/cancel").status
        XCTAssertEqual(cancelled, 200)
        let r = try await stream.value
        let body = text(r)
        let comments = body.components(separatedBy: "\n").filter { $0 == ": keep-alive" }.count
        XCTAssertGreaterThanOrEqual(comments, 2, body)
        XCTAssertLessThanOrEqual(comments, 4, body)
        XCTAssertEqual(parseSSE(r.body).map(\.event), ["JobCreated", "JobFinished"], body)
        XCTAssertTrue(body.hasSuffix("\n\n"))
    }
}
