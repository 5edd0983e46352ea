// S3Storage against a real S3-compatible server (moto's server mode, authentication on:
// every request must carry a valid Signature V4), plus the signer against AWS's published
// examples. Objects are checked byte for byte and by SHA-256 read back from the server.
import Crypto
import Foundation
import Ring
@testable import S3
import SpoolModel
import SpoolTestSupport
import Storage
import XCTest

/// A source of `data` in pieces of random sizes (up to 64 KiB), failing after `failAfter` bytes.
final class Pieces: AsyncByteSource {
    let data: [UInt8]
    var offset = 0
    var rng: SplitMix
    let failAfter: Int?
    /// Called with the offset before each piece until it returns true (once).
    var onOffset: ((Int) -> Bool)?
    struct Broken: Error {}

    init(_ data: [UInt8], seed: UInt64 = 1, failAfter: Int? = nil, onOffset: ((Int) -> Bool)? = nil) {
        self.data = data
        self.rng = SplitMix(seed: seed)
        self.failAfter = failAfter
        self.onOffset = onOffset
    }

    func read(_ consume: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        if let f = failAfter, offset >= f { throw Broken() }
        if let hook = onOffset, hook(offset) { onOffset = nil }
        guard offset < data.count else { return false }
        let n = min(data.count - offset, Int(rng.next() % 65_536) + 1)
        try data[offset..<(offset + n)].withUnsafeBytes { try consume($0) }
        offset += n
        return true
    }
}

func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix(seed: seed)
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        var v = rng.next()
        for _ in 0..<8 where i < count { out[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
    }
    return out
}

final class SigV4Tests: XCTestCase {
    let credentials = S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    /// 2013-05-24T00:00:00Z, the time of AWS's examples.
    let exampleTime: Int64 = 1_369_353_600

    /// AWS's "GET Object" example (Signature V4 in the Authorization header, with a Range).
    func testHeaderSignatureMatchesAWSsExample() {
        let signer = SigV4Signer(credentials: credentials, region: "us-east-1")
        let headers = signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt",
                                  headers: [("Range", "bytes=0-9")], payloadHash: SigV4Signer.emptyPayloadHash, unixSeconds: exampleTime)
        let auth = headers.first { $0.name == "Authorization" }?.value
        XCTAssertEqual(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        XCTAssertEqual(headers.first { $0.name == "x-amz-date" }?.value, "20130524T000000Z")
    }

    /// AWS's presigned-URL example (a GET valid for 86400 s).
    func testPresignedURLMatchesAWSsExample() {
        let signer = SigV4Signer(credentials: credentials, region: "us-east-1")
        let query = signer.presign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", expires: 86_400, unixSeconds: exampleTime)
        XCTAssertEqual(query, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        // Another method, key or time signs differently.
        XCTAssertNotEqual(query, signer.presign(method: "PUT", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", expires: 86_400, unixSeconds: exampleTime))
        XCTAssertNotEqual(query, signer.presign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test2.txt", expires: 86_400, unixSeconds: exampleTime))
    }

    func testEncodingFollowsRFC3986() {
        XCTAssertEqual(SigV4Signer.uriEncode("a b/c~d_e.f-g*h"), "a%20b%2Fc~d_e.f-g%2Ah")
        XCTAssertEqual(SigV4Signer.uriEncode("dir/file name", keepSlash: true), "dir/file%20name")
        XCTAssertEqual(SigV4Signer.canonicalQuery([("uploads", ""), ("b", "2"), ("a", "x y")]), "a=x%20y&b=2&uploads=")
        XCTAssertEqual(SigV4Signer.timestamp(0).stamp, "19700101T000000Z")
    }

    func testXMLValuesAreUnescaped() {
        let text = "<R><Code>NoSuchKey</Code><Message>a &lt;b&gt; &amp; &quot;c&#39;&#x41;</Message><Key>k1</Key><Key>k2</Key></R>"
        XCTAssertEqual(S3XML.first("Code", in: text), "NoSuchKey")
        XCTAssertEqual(S3XML.first("Message", in: text), "a <b> & \"c'A")
        XCTAssertEqual(S3XML.all("Key", in: text), ["k1", "k2"])
        XCTAssertNil(S3XML.first("Missing", in: text))
        XCTAssertEqual(S3XML.escape("\"e\"&<"), "&quot;e&quot;&amp;&lt;")
    }

    func testEndpointsAreValidated() {
        XCTAssertThrowsError(try S3Endpoint(url: "ftp://h", bucket: "bucket", region: "r", credentials: credentials))
        XCTAssertThrowsError(try S3Endpoint(url: "http://h/path", bucket: "bucket", region: "r", credentials: credentials))
        XCTAssertThrowsError(try S3Endpoint(url: "http://h", bucket: "Bad_Bucket", region: "r", credentials: credentials))
        XCTAssertEqual(try S3Endpoint(url: "http://h:80/", bucket: "bucket", region: "r", credentials: credentials).hostHeader, "h")
        XCTAssertEqual(try S3Endpoint(url: "https://h:9000", bucket: "bucket", region: "r", credentials: credentials).hostHeader, "h:9000")
    }
}

final class S3StorageTests: XCTestCase {
    /// One server for the class (moto takes ~2 s to start); each test its own bucket.
    nonisolated(unsafe) static var shared: S3TestServer?
    nonisolated(unsafe) static var buckets = 0
    var server: S3TestServer!
    var bucket = ""
    var storages: [S3Storage] = []

    override func setUp() async throws {
        if Self.shared == nil { Self.shared = try S3TestServer.start() }
        server = Self.shared
        Self.buckets += 1
        bucket = "spool-test-\(Self.buckets)"
    }

    override func tearDown() async throws {
        for s in storages { await s.shutdown() }
        storages = []
    }

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    func storage(bucket name: String? = nil, secret: String? = nil, prefix: String = "", partSize: Int = 5 << 20,
                 readTimeout: Duration = .seconds(60)) async throws -> S3Storage {
        let endpoint = try S3Endpoint(url: server.endpoint, bucket: name ?? bucket, region: "us-east-1",
                                      credentials: S3Credentials(accessKeyID: server.accessKeyID, secretAccessKey: secret ?? server.secretAccessKey))
        var c = S3StorageConfiguration(endpoint: endpoint)
        c.prefix = prefix
        c.partSize = partSize
        c.retryBase = .milliseconds(10)
        c.readTimeout = readTimeout
        let s = try await S3Storage.open(c)
        storages.append(s)
        return s
    }

    /// The object's bytes as the server holds them.
    func contents(_ s: S3Storage, _ key: String) async throws -> [UInt8] {
        let collected = Collected()
        _ = try await s.read(key: key) { collected.append($0) }
        return collected.bytes
    }

    /// Multipart uploads the server still holds open (none after a finished or failed write).
    func openUploads(_ s: S3Storage) async throws -> Int {
        let r = try await s.send(S3Request(method: "GET", key: nil, query: [("uploads", "")]))
        return S3XML.all("UploadId", in: String(decoding: r.body, as: UTF8.self)).count
    }

    func testSmallObjectRoundTripListAndDelete() async throws {
        // (A prefix without '/': moto 5.2.1 checks the signature of a listing whose prefix has
        // an escaped character against a doubly escaped query; boto3 fails the same way.)
        let s = try await storage(prefix: "media-")
        try await s.createBucket()
        try await s.createBucket()   // ours already: not an error
        let problem = await s.problem()
        XCTAssertNil(problem)
        let data = pattern(1 << 20, seed: 3)
        let stored = try await s.write(key: "file_one", from: Pieces(data))
        XCTAssertEqual(stored, StoredObject(key: "file_one", size: Int64(data.count), sha256: Hex.encode(SHA256.hash(data: data))))
        _ = try await s.write(key: "file_empty", from: Pieces([]))
        let listed = try await s.list().sorted { $0.key < $1.key }
        XCTAssertEqual(listed, [StoredObjectInfo(key: "file_empty", size: 0), StoredObjectInfo(key: "file_one", size: Int64(data.count))])
        let back = try await contents(s, "file_one")
        XCTAssertEqual(back.count, data.count)
        XCTAssertTrue(back == data, "the object read back differs")
        // A range, as engines ask for when sniffing a container.
        let piece = Collected()
        let status = try await s.read(key: "file_one", range: 100...199) { piece.append($0) }
        XCTAssertEqual(status, 206)
        XCTAssertEqual(piece.bytes, Array(data[100...199]))
        // The location is a presigned GET for this key alone.
        guard case .url(let url) = try await s.download(key: "file_one") else { return XCTFail("not a URL") }
        XCTAssertTrue(url.hasPrefix(server.endpoint + "/\(bucket)/media-file_one?"), url)
        XCTAssertTrue(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=900"), url)
        try await s.delete(key: "file_one")
        try await s.delete(key: "file_one")   // gone already: not an error
        let afterDelete = try await s.list()
        XCTAssertEqual(afterDelete, [StoredObjectInfo(key: "file_empty", size: 0)])
        await XCTAssertThrowsErrorAsync(try await s.write(key: "../escape", from: Pieces([1])))
    }

    func testLargeObjectGoesUpInPartsAndReadsBackIntact() async throws {
        let s = try await storage()
        try await s.createBucket()
        let data = pattern(23 << 20 + 12_345, seed: 7)   // 5 parts of 5 MiB (the last one short)
        let stored = try await s.write(key: "file_large", from: Pieces(data, seed: 9))
        XCTAssertEqual(stored.size, Int64(data.count))
        XCTAssertEqual(stored.sha256, Hex.encode(SHA256.hash(data: data)))
        let back = try await contents(s, "file_large")
        XCTAssertEqual(Hex.encode(SHA256.hash(data: back)), stored.sha256)
        let open = try await openUploads(s)
        XCTAssertEqual(open, 0)
        // The multipart ETag ("…-5") shows it went up in five parts.
        let head = try await s.send(S3Request(method: "HEAD", key: "file_large"))
        XCTAssertTrue(head.header("ETag")?.hasSuffix("-5\"") == true, head.header("ETag") ?? "no ETag")
    }

    /// The store stalls for 4 s in the middle of a multipart upload (SIGSTOP: connections
    /// open, nothing answers): the parts in flight time out and are sent again, and the
    /// object completes whole.
    func testAMultipartUploadRidesOutAStalledStore() async throws {
        let s = try await storage(readTimeout: .seconds(1))
        try await s.createBucket()
        let data = pattern(40 << 20, seed: 11)
        let server = self.server!
        let source = Pieces(data, seed: 12) { offset in
            guard offset >= 12 << 20 else { return false }
            server.pause()
            Thread.detachNewThread { Thread.sleep(forTimeInterval: 4); server.resume() }
            return true
        }
        let started = Date()
        let stored = try await s.write(key: "file_stalled", from: source)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 3.5, "the store was not stalled during the upload")
        XCTAssertEqual(stored.sha256, Hex.encode(SHA256.hash(data: data)))
        let back = try await contents(s, "file_stalled")
        XCTAssertEqual(Hex.encode(SHA256.hash(data: back)), stored.sha256)
        let open = try await openUploads(s)
        XCTAssertEqual(open, 0)
    }

    func testAFailedSourceAbortsTheUploadAndLeavesNothing() async throws {
        let s = try await storage()
        try await s.createBucket()
        let data = pattern(16 << 20, seed: 5)
        do {
            _ = try await s.write(key: "file_broken", from: Pieces(data, failAfter: 12 << 20))
            XCTFail("the write succeeded")
        } catch is Pieces.Broken {
        } catch { XCTFail("the source's error did not come out as is: \(error)") }
        let listed = try await s.list()
        XCTAssertEqual(listed, [])
        let open = try await openUploads(s)
        XCTAssertEqual(open, 0, "the multipart upload was not aborted")
    }

    func testAWrongSecretOrAMissingBucketIsAClearError() async throws {
        let good = try await storage()
        try await good.createBucket()
        let wrong = try await storage(secret: "not-the-secret")
        do {
            _ = try await wrong.write(key: "file_x", from: Pieces([1, 2, 3]))
            XCTFail("a write with a wrong secret succeeded")
        } catch let e as StorageError {
            XCTAssertTrue(e.message.contains("refused access") && e.message.contains("SignatureDoesNotMatch"), e.message)
        }
        let problem = await wrong.problem()
        XCTAssertNotNil(problem)
        let missing = try await storage(bucket: "no-such-bucket")
        let missingProblem = await missing.problem()
        XCTAssertTrue(missingProblem?.contains("does not exist") == true, missingProblem ?? "no problem reported")
        do {
            _ = try await missing.list()
            XCTFail("listing a missing bucket succeeded")
        } catch let e as StorageError {
            XCTAssertTrue(e.message.contains("does not exist"), e.message)
        }
        let listed = try await good.list()
        XCTAssertEqual(listed, [], "the refused write stored something")
    }

    func testPartsAreBoundedBelowByS3sMinimum() async throws {
        let endpoint = try S3Endpoint(url: server.endpoint, bucket: "spool-test", region: "us-east-1",
                                      credentials: S3Credentials(accessKeyID: "a", secretAccessKey: "b"))
        var c = S3StorageConfiguration(endpoint: endpoint)
        c.partSize = 1 << 20
        await XCTAssertThrowsErrorAsync(try await S3Storage.open(c))
    }
}

final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var data: [UInt8] = []
    func append(_ bytes: [UInt8]) { lock.withLock { data += bytes } }
    var bytes: [UInt8] { lock.withLock { data } }
}

func XCTAssertThrowsErrorAsync<T>(_ expression: @autoclosure () async throws -> T, file: StaticString = #filePath, line: UInt = #line) async {
    do {
        _ = try await expression()
        XCTFail("no error was thrown", file: file, line: line)
    } catch {}
}
