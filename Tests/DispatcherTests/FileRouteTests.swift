// /api/v1/files over real HTTP on 127.0.0.1: uploads with Content-Length and chunked,
// downloads whole and by range, HEAD, ETag/304, DELETE, quotas with the standard error,
// and tenant isolation, through the server's own router with real bearer keys (tenant
// keys "acme" and "globex", an admin key "ops").
import Dispatcher
import Foundation
import JSON
import Logging
import Ring
import ServerConfig
import SpoolModel
import SpoolTestSupport
import Web
import XCTest

class FileRouteTests: XCTestCase {
    /// Downloads answer 302 to the bytes' location (S3) instead of the bytes.
    var downloadsRedirect: Bool { false }
    /// Storage settings for the subclass's backend.
    func configureStorage(_ settings: inout ServerSettings) throws {}
    var server: HTTPServer!
    var dispatch: DispatchServer!
    var client: EventLoop!
    var base: String!
    var dir: String!
    var live: LiveSettings!

    override func setUp() async throws {
        dir = NSTemporaryDirectory() + "spool-file-routes-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var settings = ServerSettings()
        settings.files.maxFileBytes = 16 << 20
        settings.files.totalQuotaBytes = 64 << 20
        try configureStorage(&settings)
        live = LiveSettings(settings)
        dispatch = try await DispatchServer.open(dataDirectory: dir, settings: live, logger: Logger(label: "test.files"))
        // Real keys through the real router: one per principal the tests act as.
        for (principal, tenant, admin) in [("tenant:acme", "acme", false), ("tenant:globex", "globex", false), ("admin:ops", "ops", true)] {
            keys[principal] = try await dispatch.access.createKey(tenant: tenant, admin: admin).secret
        }
        let router = dispatch.makeRouter()
        server = HTTPServer(configuration: HTTPServerConfiguration(listen: try SocketAddress("127.0.0.1:0")), router: router)
        try await server.start()
        base = "http://\(server.localAddress!)/api/v1"
        client = try EventLoop.start(id: 41)
    }

    var keys: [String: String] = [:]

    override func tearDown() async throws {
        await server?.stop(grace: .milliseconds(50))
        await dispatch?.closeStorage()
        client?.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func call(_ request: ClientRequest) async throws -> ClientResponse {
        try await client.run {
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
    }

    func request(_ method: String, _ path: String, as principal: String = "tenant:acme",
                 headers: [(name: String, value: String)] = [], body: ClientBody = .none) async throws -> ClientResponse {
        try await call(ClientRequest(method: method, url: base + path, headers: [("Authorization", "Bearer " + keys[principal]!)] + headers, body: body))
    }

    /// Sends `data` chunked in pieces of 100 000 bytes.
    func chunked(_ data: [UInt8]) -> ClientBody {
        .stream { w in
            var i = 0
            while i < data.count {
                try await w.write(Array(data[i..<min(data.count, i + 100_000)]))
                i += 100_000
            }
        }
    }

    /// GET or HEAD of a file's bytes as a client sees them: with a redirecting backend, the
    /// 302 is checked (the ETag rides on it) and its Location fetched without our key.
    func download(_ id: String, method: String = "GET", headers: [(name: String, value: String)] = [],
                  as principal: String = "tenant:acme") async throws -> ClientResponse {
        let r = try await request(method, "/files/\(id)", as: principal, headers: headers)
        guard downloadsRedirect, r.status == 302 else { return r }
        let location = try XCTUnwrap(r.header("Location"))
        XCTAssertFalse(location.contains(keys[principal]!), "the key went into the URL")
        XCTAssertNotNil(r.header("ETag"))
        return try await call(ClientRequest(method: method, url: location, headers: headers))
    }

    func json(_ r: ClientResponse) throws -> JSONTree { try JSONTree(json: JSONDocument(parsing: r.body).root) }

    func field(_ r: ClientResponse, _ key: String) throws -> JSONTree? {
        guard case .object(let m) = try json(r) else { return nil }
        return m.first { $0.key == key }?.value
    }

    func string(_ r: ClientResponse, _ key: String) throws -> String? {
        if case .string(let s)? = try field(r, key) { return s }
        return nil
    }

    func errorCode(_ r: ClientResponse) throws -> String? {
        guard case .object(let e)? = try field(r, "error"), case .string(let c)? = e.first(where: { $0.key == "code" })?.value else { return nil }
        return c
    }

    func upload(_ data: [UInt8], chunkedBody: Bool = false, contentType: String = "video/mp4", as principal: String = "tenant:acme") async throws -> ClientResponse {
        try await request("POST", "/files", as: principal, headers: [("Content-Type", contentType)],
                          body: chunkedBody ? chunked(data) : .bytes(data))
    }

    func testUploadWithContentLengthAndChunkedThenDownload() async throws {
        let data = pattern(seed: 21, count: (3 << 20) + 4321)
        for isChunked in [false, true] {
            let up = try await upload(data, chunkedBody: isChunked)
            XCTAssertEqual(up.status, 201, String(decoding: up.body, as: UTF8.self))
            let id = try XCTUnwrap(try string(up, "id"))
            XCTAssertEqual(up.header("Location"), "/api/v1/files/\(id)")
            XCTAssertEqual(try field(up, "size"), .number(String(data.count)))
            XCTAssertEqual(try string(up, "content_type"), "video/mp4")
            let sha = try XCTUnwrap(try string(up, "sha256"))
            XCTAssertEqual(sha.utf8.count, 64)
            XCTAssertNotNil(try string(up, "created_at")?.hasSuffix("Z"))
            let down = try await download(id)
            XCTAssertEqual(down.status, 200)
            XCTAssertEqual(down.body, data, "chunked: \(isChunked)")
            if downloadsRedirect {
                let redirect = try await request("GET", "/files/\(id)")
                XCTAssertEqual(redirect.status, 302)
                XCTAssertEqual(redirect.header("ETag"), "\"\(sha)\"")
                continue
            }
            XCTAssertEqual(down.header("ETag"), "\"\(sha)\"")
            XCTAssertEqual(down.header("Content-Type"), "video/mp4")
            XCTAssertEqual(down.header("X-Content-Type-Options"), "nosniff")
            XCTAssertNotNil(down.header("Last-Modified").flatMap(HTTPDate.parse))
        }
        if !downloadsRedirect {
            let tmp = try FileManager.default.contentsOfDirectory(atPath: dir + "/files/tmp")
            XCTAssertEqual(tmp, [], "no temp file left after the uploads")
        }
    }

    /// The stored Content-Type is sent back as a header: only a media type is taken
    /// (RFC 9110 §8.3.1), anything else is a 422 naming the header and nothing is stored.
    func testOnlyAMediaTypeIsTakenAsTheContentType() async throws {
        for good in ["video/mp4;", "text/plain; charset=\"utf-8\"", "text/plain;charset=utf-8 ; format=flowed", "application/vnd.a+b"] {
            let up = try await upload([1, 2, 3], contentType: good)
            XCTAssertEqual(up.status, 201, good)
            XCTAssertEqual(try string(up, "content_type"), good)
        }
        for bad in [";;;///", "", "video", "video/", "/mp4", "video/mp4; x", "video/mp4;=y", "video /mp4", "text/plain; a=\"open"] {
            let up = try await upload([1, 2, 3], contentType: bad)
            XCTAssertEqual(up.status, 422, "\(bad.debugDescription): \(String(decoding: up.body, as: UTF8.self))")
            XCTAssertEqual(try errorCode(up), "validation_failed", bad)
        }
        let list = try await request("GET", "/files", as: "tenant:acme")
        XCTAssertEqual(try field(list, "total_count"), .number("4"), "only the four good uploads are stored")
        // The list's tenant filter is a tenant name or a 422, not an empty list.
        for q in ["tenant=", "tenant=ACME", "tenant=a%20b"] {
            let r = try await request("GET", "/files?" + q, as: "admin:ops")
            XCTAssertEqual(r.status, 422, q)
        }
        // A tenant key may name its own tenant, no other (403, as on GET /jobs).
        let own = try await request("GET", "/files?tenant=acme", as: "tenant:acme")
        XCTAssertEqual(own.status, 200)
        let other = try await request("GET", "/files?tenant=globex", as: "tenant:acme")
        XCTAssertEqual(other.status, 403)
        XCTAssertEqual(try errorCode(other), "forbidden")
    }

    func testRangesHeadAndConditionalRequests() async throws {
        let data = pattern(seed: 22, count: 1 << 20)
        let uploaded = try await upload(data)
        let id = try XCTUnwrap(try string(uploaded, "id"))
        let size = data.count
        let a = try await download(id, headers: [("Range", "bytes=100-199")])
        XCTAssertEqual(a.status, 206)
        XCTAssertEqual(a.header("Content-Range"), "bytes 100-199/\(size)")
        XCTAssertEqual(a.body, Array(data[100..<200]))
        let from = try await download(id, headers: [("Range", "bytes=\(size - 1000)-")])
        XCTAssertEqual(from.status, 206)
        XCTAssertEqual(from.body, Array(data[(size - 1000)...]))
        let suffix = try await download(id, headers: [("Range", "bytes=-10")])
        XCTAssertEqual(suffix.status, 206)
        XCTAssertEqual(suffix.body, Array(data[(size - 10)...]))
        // The ETag (the SHA-256) answers conditional requests on the dispatcher, whatever the backend.
        let get = try await request("GET", "/files/\(id)")
        let etag = try XCTUnwrap(get.header("ETag"))
        XCTAssertEqual(etag, "\"" + (try XCTUnwrap(try string(uploaded, "sha256"))) + "\"")
        let notModified = try await request("GET", "/files/\(id)", headers: [("If-None-Match", etag)])
        XCTAssertEqual(notModified.status, 304)
        XCTAssertEqual(notModified.body, [])
        XCTAssertEqual(notModified.header("ETag"), etag)
        let stale = try await download(id, headers: [("If-None-Match", "\"other\"")])
        XCTAssertEqual(stale.status, 200)
        XCTAssertEqual(stale.body.count, size)
        // Past the end: 416 in the API's error shape, also where downloads redirect (the
        // size is known before the redirect).
        let past = try await request("GET", "/files/\(id)", headers: [("Range", "bytes=\(size)-")])
        XCTAssertEqual(past.status, 416)
        XCTAssertEqual(past.header("Content-Range"), "bytes */\(size)")
        XCTAssertEqual(try errorCode(past), "range_not_satisfiable")
        // HEAD is the store's to answer once redirected.
        if downloadsRedirect { return }
        let head = try await request("HEAD", "/files/\(id)")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.body, [])
        let strip = { (r: ClientResponse) in r.headers.filter { !["date", "x-request-id"].contains($0.name.lowercased()) }.map { "\($0.name.lowercased()): \($0.value)" } }
        XCTAssertEqual(strip(head), strip(get), "HEAD answers GET's headers")
        XCTAssertEqual(head.header("Content-Length"), String(size))
    }

    /// If-Match (strong comparison) and If-Unmodified-Since: 412 with the standard error when
    /// they fail, before If-None-Match is looked at; a DELETE they fail deletes nothing.
    func testIfMatchAndIfUnmodifiedSince() async throws {
        let data = pattern(seed: 23, count: 4096)
        let uploaded = try await upload(data)
        let id = try XCTUnwrap(try string(uploaded, "id"))
        let etag = "\"" + (try XCTUnwrap(try string(uploaded, "sha256"))) + "\""
        let past = "Sun, 06 Nov 1994 08:49:37 GMT", future = "Fri, 01 Jan 2100 00:00:00 GMT"
        let cases: [([(String, String)], Int)] = [
            ([("If-Match", etag)], 200),
            ([("If-Match", "\"other\", \(etag)")], 200),
            ([("If-Match", "\"other\""), ("If-Match", etag)], 200),        // one list over two lines
            ([("If-Match", "*")], 200),
            ([("If-Match", "\"other\"")], 412),
            ([("If-Match", "W/\(etag)")], 412),                       // strong comparison
            ([("If-Unmodified-Since", past)], 412),
            ([("If-Unmodified-Since", future)], 200),
            ([("If-Unmodified-Since", "yesterday")], 200),             // not a date: no condition
            ([("If-Match", etag), ("If-Unmodified-Since", past)], 200), // If-Match wins
            ([("If-Match", "\"other\""), ("If-None-Match", etag)], 412),
            ([("If-Match", etag), ("If-None-Match", etag)], 304),
        ]
        for (headers, status) in cases {
            let r = try await request("GET", "/files/\(id)", headers: headers)
            XCTAssertEqual(r.status, status == 200 && downloadsRedirect ? 302 : status, "\(headers)")
            if status == 412 { XCTAssertEqual(try errorCode(r), "precondition_failed", "\(headers)") }
        }
        for headers in [[("If-Match", "\"other\"")], [("If-Unmodified-Since", past)]] {
            let r = try await request("DELETE", "/files/\(id)", headers: headers)
            XCTAssertEqual(r.status, 412, "\(headers)")
            XCTAssertEqual(try errorCode(r), "precondition_failed")
        }
        let still = try await request("GET", "/files/\(id)")
        XCTAssertEqual(still.status, downloadsRedirect ? 302 : 200, "a refused DELETE deleted nothing")
        let del = try await request("DELETE", "/files/\(id)", headers: [("If-Match", etag)])
        XCTAssertEqual(del.status, 204)
        let gone = try await request("DELETE", "/files/\(id)", headers: [("If-Match", "*")])
        XCTAssertEqual(gone.status, 404, "If-Match: * on a missing file is its 404")
    }

    func testDeleteThenNotFoundAndOtherTenants() async throws {
        let uploaded = try await upload([1, 2, 3])
        let id = try XCTUnwrap(try string(uploaded, "id"))
        for (method, principal) in [("GET", "tenant:globex"), ("HEAD", "tenant:globex"), ("DELETE", "tenant:globex")] {
            let r = try await request(method, "/files/\(id)", as: principal)
            XCTAssertEqual(r.status, 404, "\(method) as \(principal)")
        }
        let list = try await request("GET", "/files", as: "tenant:globex")
        XCTAssertEqual(try field(list, "total_count"), .number("0"))
        let got1 = try await download(id, as: "admin:ops").status
        XCTAssertEqual(got1, 200, "an admin sees every tenant's files")
        for bad in ["nope", "file_", "file_\(String(repeating: "Z", count: 26))", "..%2F..%2Fspool.sqlite"] {
            let r = try await request("GET", "/files/\(bad)")
            XCTAssertEqual(r.status, 404, bad)
            XCTAssertEqual(try errorCode(r), "not_found", bad)
        }
        let del = try await request("DELETE", "/files/\(id)")
        XCTAssertEqual(del.status, 204)
        let gone = try await request("GET", "/files/\(id)")
        XCTAssertEqual(gone.status, 404)
        XCTAssertEqual(try errorCode(gone), "not_found")
        let got2 = try await request("DELETE", "/files/\(id)").status
        XCTAssertEqual(got2, 404)
    }

    func testQuotasAnswerWithTheStandardError() async throws {
        // Content-Length over the per-file limit: refused before the body is read.
        var s = live.current
        s.files.maxFileBytes = 100_000
        s.files.totalQuotaBytes = 250_000
        live.replace(s)
        let tooBig = try await upload(pattern(seed: 1, count: 100_001))
        XCTAssertEqual(tooBig.status, 413)
        XCTAssertEqual(try errorCode(tooBig), "payload_too_large")
        // Chunked: stopped at the crossing byte.
        let tooBigChunked = try await upload(pattern(seed: 1, count: 300_000), chunkedBody: true)
        XCTAssertEqual(tooBigChunked.status, 413)
        XCTAssertEqual(try errorCode(tooBigChunked), "payload_too_large")
        // The total quota: 2 × 100 000 fit, the next 60 000 do not.
        for _ in 0..<2 { let r = try await upload(pattern(seed: 2, count: 100_000)); XCTAssertEqual(r.status, 201) }
        for isChunked in [false, true] {
            let full = try await upload(pattern(seed: 3, count: 60_000), chunkedBody: isChunked)
            XCTAssertEqual(full.status, 507, "chunked: \(isChunked)")
            XCTAssertEqual(try errorCode(full), "insufficient_storage")
        }
        let got3 = try await upload(pattern(seed: 3, count: 50_000)).status
        XCTAssertEqual(got3, 201, "exactly the rest fits")
        if !downloadsRedirect {
            let tmp = try FileManager.default.contentsOfDirectory(atPath: dir + "/files/tmp")
            XCTAssertEqual(tmp, [], "refused uploads leave no temp file")
        }
    }

    func testListPagesWithCursorAndOffset() async throws {
        var ids: [String] = []
        for i in 0..<5 { let r = try await upload([UInt8(i)]); ids.append(try XCTUnwrap(try string(r, "id"))) }
        _ = try await upload([9], as: "tenant:globex")
        let first = try await request("GET", "/files?limit=2")
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(try field(first, "total_count"), .number("5"))
        XCTAssertEqual(try listedIDs(first), Array(ids[0..<2]))
        let next = try XCTUnwrap(try string(first, "next_page_url"))
        XCTAssertTrue(next.hasPrefix("/api/v1/files?limit=2&cursor="), next)
        let second = try await call(ClientRequest(url: "http://\(server.localAddress!)" + next, headers: [("Authorization", "Bearer " + keys["tenant:acme"]!)]))
        XCTAssertEqual(try listedIDs(second), Array(ids[2..<4]))
        let last = try await call(ClientRequest(url: "http://\(server.localAddress!)" + (try XCTUnwrap(try string(second, "next_page_url"))),
                                                headers: [("Authorization", "Bearer " + keys["tenant:acme"]!)]))
        XCTAssertEqual(try listedIDs(last), [ids[4]])
        XCTAssertEqual(try field(last, "next_page_url"), .null)
        // Another tenant's cursor is refused; offset works; a bad limit is 422.
        let cursor = String(next.split(separator: "cursor=")[1])
        let got4 = try await request("GET", "/files?cursor=\(cursor)", as: "tenant:globex").status
        XCTAssertEqual(got4, 400)
        let offsetPage = try await request("GET", "/files?offset=3")
        XCTAssertEqual(try listedIDs(offsetPage), Array(ids[3...]))
        let bad = try await request("GET", "/files?limit=0")
        XCTAssertEqual(bad.status, 422)
        XCTAssertEqual(try errorCode(bad), "validation_failed")
    }

    func listedIDs(_ r: ClientResponse) throws -> [String] {
        guard case .array(let items)? = try field(r, "data") else { return [] }
        return items.compactMap { item in
            guard case .object(let m) = item, case .string(let s)? = m.first(where: { $0.key == "id" })?.value else { return nil }
            return s
        }
    }
}

/// The same routes with file contents in S3 (moto's server, started per test): uploads
/// stream into the bucket (multipart past one part), downloads are presigned redirects.
final class S3FileRouteTests: FileRouteTests {
    /// One server for the class (moto takes ~2 s to start); each test gets a bucket.
    nonisolated(unsafe) static var shared: S3TestServer?
    nonisolated(unsafe) static var buckets = 0
    var bucket = ""
    override var downloadsRedirect: Bool { true }

    override func configureStorage(_ settings: inout ServerSettings) throws {
        if Self.shared == nil { Self.shared = try S3TestServer.start(authenticate: false) }
        let server = Self.shared!
        Self.buckets += 1
        let bucket = "spool-files-\(Self.buckets)"
        try server.createBucket(bucket)
        // An object under our prefix that no file row names (another deployment's, or a
        // prefix set wrong): the dispatcher must leave it alone.
        XCTAssertEqual(server.object(bucket, "t-file_notours", put: "not ours"), "HTTP/1.1 200 OK")
        self.bucket = bucket
        settings.storage.backend = "s3"
        settings.storage.s3Endpoint = server.endpoint
        settings.storage.s3Bucket = bucket
        settings.storage.s3AccessKeyID = server.accessKeyID
        settings.storage.s3SecretAccessKey = server.secretAccessKey
        settings.storage.s3Prefix = "t-"
        settings.storage.s3PartMiB = 5
    }

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    override func testUploadWithContentLengthAndChunkedThenDownload() async throws { try await super.testUploadWithContentLengthAndChunkedThenDownload() }
    override func testRangesHeadAndConditionalRequests() async throws { try await super.testRangesHeadAndConditionalRequests() }
    override func testDeleteThenNotFoundAndOtherTenants() async throws { try await super.testDeleteThenNotFoundAndOtherTenants() }
    override func testQuotasAnswerWithTheStandardError() async throws { try await super.testQuotasAnswerWithTheStandardError() }
    override func testListPagesWithCursorAndOffset() async throws { try await super.testListPagesWithCursorAndOffset() }

    /// Objects in the bucket without a file row are not removed at start (with SQLite, a
    /// dispatcher would otherwise delete what another deployment keeps there).
    func testObjectsWithoutARowAreLeftAlone() async throws {
        XCTAssertEqual(Self.shared?.object(bucket, "t-file_notours"), "HTTP/1.1 200 OK")
    }

    /// A file larger than one part goes up as a multipart upload and comes back whole.
    func testAFileOfSeveralPartsRoundTrips() async throws {
        var s = live.current
        s.files.maxFileBytes = 32 << 20
        live.replace(s)
        let data = pattern(seed: 31, count: (12 << 20) + 777)
        let up = try await upload(data, chunkedBody: true)
        XCTAssertEqual(up.status, 201, String(decoding: up.body, as: UTF8.self))
        let id = try XCTUnwrap(try string(up, "id"))
        let down = try await download(id)
        XCTAssertEqual(down.status, 200)
        XCTAssertTrue(down.body == data, "the file read back from S3 differs")
    }
}
