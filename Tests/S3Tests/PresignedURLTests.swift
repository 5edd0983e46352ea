// Presigned URLs against a server that checks them: rclone's `serve s3` (RcloneS3Server;
// moto checks no presigned signature). A URL does what it was signed for (that method,
// that key, until it expires) and nothing else: another method, another key, a changed
// signature or a past expiry is refused by the server.
import Foundation
import Ring
@testable import S3
import SpoolTestSupport
import Web
import XCTest

final class PresignedURLTests: XCTestCase {
    var server: RcloneS3Server!
    var loop: EventLoop!
    var storages: [S3Storage] = []

    override func setUp() async throws {
        server = try RcloneS3Server.start()
        loop = try EventLoop.start(id: 41)
    }

    override func tearDown() async throws {
        for s in storages { await s.shutdown() }
        storages = []
        loop?.shutdown()
        server?.stop()
    }

    /// A store whose clock reads `skew` seconds from now (a URL signed by it was signed then).
    func storage(skew: Int64 = 0) async throws -> S3Storage {
        let endpoint = try S3Endpoint(url: server.endpoint, bucket: "spool-presigned", region: "us-east-1",
                                      credentials: S3Credentials(accessKeyID: server.accessKeyID, secretAccessKey: server.secretAccessKey))
        var c = S3StorageConfiguration(endpoint: endpoint)
        c.retryBase = .milliseconds(10)
        c.now = { Int64(Date().timeIntervalSince1970) + skew }
        let s = try await S3Storage.open(c)
        storages.append(s)
        return s
    }

    /// A plain request, no credentials: what an engine or a browser sends to the URL.
    func fetch(_ method: String, _ url: String, body: [UInt8] = []) async throws -> (status: Int, text: String) {
        let request = ClientRequest(method: method, url: url, body: body.isEmpty ? .none : .bytes(body))
        let r = try await loop.run { () async throws -> ClientResponse in
            let c = HTTPClient()
            do { let r = try await c.execute(request); await c.shutdown(); return r } catch { await c.shutdown(); throw error }
        }
        return (r.status, String(decoding: r.body, as: UTF8.self))
    }

    /// `fetch`, which the server must refuse as unsigned for it (403); the answer's text.
    @discardableResult
    func refused(_ method: String, _ url: String, body: [UInt8] = [], line: UInt = #line) async throws -> String {
        let r = try await fetch(method, url, body: body)
        XCTAssertEqual(r.status, 403, "\(method): \(r.text)", line: line)
        return r.text
    }

    func testAPresignedURLDoesWhatItWasSignedForAndNothingElse() async throws {
        let s = try await storage()
        try await s.createBucket()
        let body = Array("the bytes an engine puts".utf8)

        // Unsigned requests are refused: the server checks signatures at all.
        let anonymous = try await fetch("GET", server.endpoint + "/spool-presigned/file_a")
        XCTAssertTrue((400..<500).contains(anonymous.status), "an unsigned GET: \(anonymous.status) \(anonymous.text)")

        let put = s.presignedURL(method: "PUT", key: "file_a", seconds: 300)
        let stored = try await fetch("PUT", put, body: body)
        XCTAssertEqual(stored.status, 200, stored.text)
        let get = s.presignedURL(method: "GET", key: "file_a", seconds: 300)
        let read = try await fetch("GET", get)
        XCTAssertEqual(read.status, 200, read.text)
        XCTAssertEqual(read.text, "the bytes an engine puts")

        // Another method with the GET's URL: refused, and the object is untouched.
        let wrongMethod = try await refused("PUT", get, body: Array("overwritten".utf8))
        XCTAssertTrue(wrongMethod.contains("SignatureDoesNotMatch"), wrongMethod)
        try await refused("DELETE", get)
        // Another key under the same signature: refused, for reading and for writing.
        let otherKey = get.replacingOccurrences(of: "/spool-presigned/file_a?", with: "/spool-presigned/file_b?")
        XCTAssertNotEqual(otherKey, get)
        try await refused("GET", otherKey)
        try await refused("PUT", put.replacingOccurrences(of: "/spool-presigned/file_a?", with: "/spool-presigned/file_b?"), body: body)
        // A changed signature, or a longer validity than was signed: refused.
        let signature = try XCTUnwrap(get.range(of: "X-Amz-Signature=")).upperBound
        let flipped = get[signature] == "0" ? "1" : "0"
        let forged = String(get[..<signature]) + flipped + String(get[get.index(after: signature)...])
        try await refused("GET", forged)
        let stretched = get.replacingOccurrences(of: "X-Amz-Expires=300", with: "X-Amz-Expires=3000")
        XCTAssertNotEqual(stretched, get)
        try await refused("GET", stretched)

        // Past its expiry: a URL valid for three seconds (signed with the time in whole
        // seconds) works at once and is refused four seconds later; one signed an hour
        // ago, valid for a minute, is refused.
        let brief = s.presignedURL(method: "GET", key: "file_a", seconds: 3)
        let inTime = try await fetch("GET", brief)
        XCTAssertEqual(inTime.status, 200, inTime.text)
        try await Task.sleep(nanoseconds: 4_200_000_000)
        let afterwards = try await fetch("GET", brief)
        XCTAssertTrue((400..<500).contains(afterwards.status), "an expired URL: \(afterwards.status) \(afterwards.text)")
        let old = try await storage(skew: -3600)
        let expired = old.presignedURL(method: "GET", key: "file_a", seconds: 60)
        let late = try await fetch("GET", expired)
        XCTAssertTrue((400..<500).contains(late.status), "an expired URL: \(late.status) \(late.text)")
        XCTAssertFalse(late.text.contains("the bytes an engine puts"))
        let expiredPut = old.presignedURL(method: "PUT", key: "file_c", seconds: 60)
        let latePut = try await fetch("PUT", expiredPut, body: body)
        XCTAssertTrue((400..<500).contains(latePut.status), "an expired PUT URL: \(latePut.status) \(latePut.text)")

        // Nothing but the first PUT reached the bucket, and its bytes are the ones put.
        let names = try FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/spool-presigned").filter { !$0.hasPrefix(".") }
        XCTAssertEqual(names, ["file_a"])
        XCTAssertEqual(try String(contentsOfFile: server.objectPath(bucket: "spool-presigned", key: "file_a"), encoding: .utf8),
                       "the bytes an engine puts")
    }
}
