// Engines and S3 storage, through the real routes and a real S3 server (moto, without
// authentication: it cannot serve presigned URLs with it on): the input is a 307 to a
// presigned GET; an output is written with presigned PUTs of its parts straight into the
// bucket and committed by the dispatcher (wrong part lists and checksums refused, a second
// completion refused, limits and quota checked before any URL is signed, an abandoned
// upload leaves nothing); with local storage the route answers 501.
import Crypto
import Dispatcher
import Foundation
import JSON
import Ring
import ServerConfig
import SpoolTestSupport
import Web
import XCTest

final class S3EngineUploadTests: XCTestCase {
    nonisolated(unsafe) static var shared: S3TestServer?
    nonisolated(unsafe) static var buckets = 0

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    func start(maxFileBytes: Int64 = 64 << 20, quota: Int64 = 256 << 20) async throws -> (AccessHarness, S3TestServer, String) {
        if Self.shared == nil { Self.shared = try S3TestServer.start(authenticate: false) }
        let s3 = Self.shared!
        Self.buckets += 1
        let bucket = "engine-out-\(Self.buckets)"
        try s3.createBucket(bucket)
        let h = try await AccessHarness.start { s in
            s.useS3(endpoint: s3.endpoint, bucket: bucket, accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey, partMiB: 5)
            s.files.maxFileBytes = maxFileBytes
            s.files.totalQuotaBytes = quota
        }
        return (h, s3, bucket)
    }

    /// Any URL, no credentials (as an engine sends to the store).
    func fetch(_ h: AccessHarness, _ method: String, _ url: String, body: [UInt8] = []) async throws -> ClientResponse {
        let request = ClientRequest(method: method, url: url, body: body.isEmpty ? .none : .bytes(body))
        return try await h.client.run { () async throws -> ClientResponse in
            let c = HTTPClient()
            do { let r = try await c.execute(request); await c.shutdown(); return r } catch { await c.shutdown(); throw error }
        }
    }

    func testOutputsGoStraightIntoTheBucketAndTheInputComesFromIt() async throws {
        let (h, s3, bucket) = try await start()
        let key = try await h.adminKey()
        let e = try await h.registerEngine(name: "e1")
        let media = "input bytes " + String(repeating: "y", count: 3_000)
        let jobID = try await h.submitJob(key: key, bytes: media)
        let leased = try await h.leaseJob(e)
        XCTAssertEqual(leased.status, 200, leased.text)
        let base = "/api/v1/engines/\(e.0)/jobs/\(jobID)"

        let input = try await h.call("GET", base + "/input?lease_epoch=1", key: e.1)
        XCTAssertEqual(input.status, 307)
        let location = try XCTUnwrap(input.headers.first { $0.name.lowercased() == "location" }?.value)
        XCTAssertTrue(location.hasPrefix("\(s3.endpoint)/\(bucket)/file_") && location.contains("X-Amz-Signature="), location)
        let fetched = try await fetch(h, "GET", location)
        XCTAssertEqual(String(decoding: fetched.body, as: UTF8.self), media)

        // 12 MiB + 7 bytes: three parts of at most 5 MiB, each its own presigned PUT.
        let output = (0..<(12 << 20) + 7).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        let begun = try await h.call("POST", base + "/output-uploads?lease_epoch=1", key: e.1, body: #"{"name":"out/h264.mp4","size":\#(output.count)}"#)
        XCTAssertEqual(begun.status, 201, begun.text)
        let plan = try json(begun.text)
        let fileID = try XCTUnwrap(plan["file_id"]?.string())
        let parts = Array(try XCTUnwrap(plan["parts"]).elements)
        XCTAssertEqual(parts.count, 3)
        XCTAssertEqual(try parts.map { try $0["length"]!.int() }, [5 << 20, 5 << 20, (2 << 20) + 7])
        XCTAssertEqual(try parts.map { try $0["offset"]!.int() }, [0, 5 << 20, 10 << 20])
        var etags: [String] = []
        for p in parts {
            let url = try p["url"]!.string()
            XCTAssertTrue(url.contains("partNumber=") && url.contains("uploadId=") && url.contains("X-Amz-Signature="), url)
            let off = try p["offset"]!.int(), len = try p["length"]!.int()
            let put = try await fetch(h, "PUT", url, body: Array(output[off..<(off + len)]))
            XCTAssertEqual(put.status, 200, String(decoding: put.body, as: UTF8.self))
            etags.append(try XCTUnwrap(put.header("ETag")))
        }
        let sha = SHA256.hash(data: output).map { String(format: "%02x", $0) }.joined()
        let complete = base + "/output-uploads/\(fileID)/complete?lease_epoch=1"
        let tooFew = try await h.call("POST", complete, key: e.1, body: #"{"parts":\#(jsonArray([etags[0]])),"sha256":"\#(sha)"}"#)
        XCTAssertEqual(tooFew.status, 422, tooFew.text)
        let badSum = try await h.call("POST", complete, key: e.1, body: #"{"parts":\#(jsonArray(etags)),"sha256":"XYZ"}"#)
        XCTAssertEqual(badSum.status, 422, badSum.text)
        let stale = try await h.call("POST", base + "/output-uploads/\(fileID)/complete?lease_epoch=0", key: e.1,
                                     body: #"{"parts":\#(jsonArray(etags)),"sha256":"\#(sha)"}"#)
        XCTAssertEqual(stale.status, 409, stale.text)
        let done = try await h.call("POST", complete, key: e.1, body: #"{"parts":\#(jsonArray(etags)),"sha256":"\#(sha)"}"#)
        XCTAssertEqual(done.status, 201, done.text)
        XCTAssertEqual(try json(done.text)["size"]?.int(), output.count)
        let again = try await h.call("POST", complete, key: e.1, body: #"{"parts":\#(jsonArray(etags)),"sha256":"\#(sha)"}"#)
        XCTAssertEqual(again.status, 404, "completed once: \(again.text)")

        let finished = try await h.call("POST", base + "/complete", key: e.1,
                                        body: #"{"lease_epoch":1,"outputs":[{"name":"out/h264.mp4","file_id":"\#(fileID)"}],"work":1}"#)
        XCTAssertEqual(finished.status, 200, finished.text)
        let file = try await h.call("GET", "/api/v1/files/\(fileID)", key: key)
        XCTAssertEqual(file.status, 302)
        XCTAssertEqual(file.headers.first { $0.name == "ETag" }?.value, "\"\(sha)\"")
        let back = try await fetch(h, "GET", try XCTUnwrap(file.headers.first { $0.name == "Location" }?.value))
        XCTAssertTrue(back.body == output, "the output read back from the bucket differs")
        XCTAssertEqual(h.dispatch.files.directUploadsInFlight, 0)
        await h.dispatch.closeStorage()
        await h.stop()
    }

    func testLimitsComeFirstAndAnAbandonedUploadLeavesNothing() async throws {
        let (h, s3, bucket) = try await start(maxFileBytes: 20 << 20, quota: 30 << 20)
        let key = try await h.adminKey()
        let e = try await h.registerEngine(name: "e1")
        let jobID = try await h.submitJob(key: key, bytes: "input")
        _ = try await h.leaseJob(e)
        let base = "/api/v1/engines/\(e.0)/jobs/\(jobID)/output-uploads"
        let tooBig = try await h.call("POST", base + "?lease_epoch=1", key: e.1, body: #"{"name":"a.mp4","size":\#(21 << 20)}"#)
        XCTAssertEqual(tooBig.status, 413, tooBig.text)
        let first = try await h.call("POST", base + "?lease_epoch=1", key: e.1, body: #"{"name":"a.mp4","size":\#(18 << 20)}"#)
        XCTAssertEqual(first.status, 201, first.text)
        let over = try await h.call("POST", base + "?lease_epoch=1", key: e.1, body: #"{"name":"b.mp4","size":\#(18 << 20)}"#)
        XCTAssertEqual(over.status, 507, "the first upload's reservation counts: \(over.text)")
        for bad in [#"{"name":"../x","size":1}"#, #"{"name":"a.mp4","size":-1}"#, #"{"name":"a.mp4"}"#] {
            let r = try await h.call("POST", base + "?lease_epoch=1", key: e.1, body: bad)
            XCTAssertEqual(r.status, 422, bad)
        }
        let stale = try await h.call("POST", base + "?lease_epoch=2", key: e.1, body: #"{"name":"a.mp4","size":1}"#)
        XCTAssertEqual(stale.status, 409)
        // The store holds the multipart upload until it is abandoned; then nothing.
        let id = try json(first.text)["file_id"]!.string()
        let uploads = "\(s3.endpoint)/\(bucket)?uploads"
        let before = try await fetch(h, "GET", uploads)
        XCTAssertTrue(String(decoding: before.body, as: UTF8.self).contains("<UploadId>"), String(decoding: before.body, as: UTF8.self))
        let abandoned = try await h.call("DELETE", base + "/\(id)?lease_epoch=1", key: e.1)
        XCTAssertEqual(abandoned.status, 204, abandoned.text)
        let after = try await fetch(h, "GET", uploads)
        XCTAssertFalse(String(decoding: after.body, as: UTF8.self).contains("<UploadId>"), String(decoding: after.body, as: UTF8.self))
        let gone = try await h.call("POST", base + "/\(id)/complete?lease_epoch=1", key: e.1, body: #"{"parts":["x"],"sha256":"\#(String(repeating: "0", count: 64))"}"#)
        XCTAssertEqual(gone.status, 404)
        // The reservation went back with it.
        let second = try await h.call("POST", base + "?lease_epoch=1", key: e.1, body: #"{"name":"b.mp4","size":\#(18 << 20)}"#)
        XCTAssertEqual(second.status, 201, second.text)
        await h.dispatch.closeStorage()
        await h.stop()
    }

    func testLocalStorageTakesNoDirectUploads() async throws {
        let h = try await AccessHarness.start { $0.engines.joinToken = EngineLeaseTests.join }
        let key = try await h.adminKey()
        let e = try await h.registerEngine(name: "e1")
        let jobID = try await h.submitJob(key: key, bytes: "input")
        _ = try await h.leaseJob(e)
        let r = try await h.call("POST", "/api/v1/engines/\(e.0)/jobs/\(jobID)/output-uploads?lease_epoch=1", key: e.1,
                                 body: #"{"name":"a.mp4","size":10}"#)
        XCTAssertEqual(r.status, 501, r.text)
        XCTAssertEqual(try json(r.text)["error"]?["code"]?.string(), "not_implemented")
        await h.stop()
    }
}

extension ServerSettings {
    /// Files in `bucket` at `endpoint`, and engines that may join (EngineLeaseTests.join).
    mutating func useS3(endpoint: String, bucket: String, accessKeyID: String, secretAccessKey: String, partMiB: Int) {
        engines.joinToken = EngineLeaseTests.join
        storage.backend = "s3"
        storage.s3Endpoint = endpoint
        storage.s3Bucket = bucket
        storage.s3AccessKeyID = accessKeyID
        storage.s3SecretAccessKey = secretAccessKey
        storage.s3PartMiB = partMiB
    }
}

func jsonArray(_ strings: [String]) -> String {
    "[" + strings.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "]"
}
