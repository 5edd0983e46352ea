// S3.S3Storage: a StorageProvider on an S3-compatible object store (AWS S3, MinIO, Ceph,
// moto). Objects live at `prefix + key` in one bucket.
//
// Writes stream: the source (an HTTP request body, on the caller's loop) is cut into
// parts of `partSize` while its SHA-256 is computed. An object that ends within the first
// part goes up in one PUT; a larger one as a multipart upload, at most `partsInFlight`
// parts travelling at once (the source is read on while they do, and waits when they are
// all in flight, so memory stays near (partsInFlight + 1) × partSize). Each part carries
// its own signed SHA-256, so the store refuses a part damaged on the way, and a failed
// part is sent again on its own (the parts already stored stay). When the source or a
// part fails for good, the upload is aborted: nothing of it stays in the bucket, and the
// object appears only at CompleteMultipartUpload. The finished object's size is checked
// with a HEAD; its SHA-256 is what FileService stores.
//
// Reads are presigned: `download` answers a GET URL for that key alone, valid for
// `presignSeconds`, which the dispatcher gives clients (302) and engines (307) instead of
// relaying bytes or handing out the secret key.
//
// Direct uploads (S3Storage+DirectUploads): engines' outputs go to the bucket with
// presigned PUTs of each part, the dispatcher completing the upload.
//
// Every request runs on the store's own event loop (one HTTPClient, keep-alive
// connections), so the provider works from any loop or thread.
import Crypto
import Ring
import SpoolModel
import Storage
import Threads
import Web

public struct S3StorageConfiguration: Sendable {
    public var endpoint: S3Endpoint
    /// Put before every key ("spool/"): several deployments may share a bucket.
    public var prefix: String = ""
    /// Bytes per multipart part (5 MiB at least, S3's rule for all but the last part).
    public var partSize: Int = 16 << 20
    public var partsInFlight: Int = 2
    /// How long a presigned download URL stays valid.
    public var presignSeconds: Int = 900
    /// Tries per request (the first included) while S3 answers retryable errors: with
    /// the backoff capped at 5 s, ten tries ride out about half a minute of a store away.
    public var maxAttempts: Int = 10
    public var retryBase: Duration = .milliseconds(100)
    /// Longest wait for any piece of an answer (a stalled store fails the request, which
    /// is then retried), and for a whole request.
    public var readTimeout: Duration = .seconds(60)
    public var requestTimeout: Duration = .seconds(600)
    /// Unix seconds (signatures carry the time; tests move it).
    public var now: @Sendable () -> Int64 = { SystemClock.shared.unixMilliseconds / 1000 }

    public init(endpoint: S3Endpoint) { self.endpoint = endpoint }
}

public final class S3Storage: DirectUploadStorage {
    public let configuration: S3StorageConfiguration
    let loop: EventLoop
    let client: LoopBound<S3Client>

    /// Starts the store's loop and client. Checks nothing on the network: `problem()` and
    /// the first request tell whether the bucket answers.
    public static func open(_ configuration: S3StorageConfiguration) async throws -> S3Storage {
        guard configuration.partSize >= 5 << 20 else { throw StorageError("S3 parts must be 5 MiB at least (S3's minimum)") }
        guard configuration.prefix.isEmpty || (configuration.prefix.utf8.count < 512 && !configuration.prefix.hasPrefix("/")) else {
            throw StorageError("the S3 key prefix must not start with '/' and must be shorter than 512 bytes")
        }
        var loopConfiguration = EventLoop.Configuration()
        loopConfiguration.pool = .init(bufferSizeBytes: 16 << 10, memoryCapBytes: 8 << 20)
        let loop = try EventLoop.start(id: 700, configuration: loopConfiguration)
        let c = configuration
        let client = try await loop.run {
            var http = HTTPClientConfiguration()
            http.readTimeout = c.readTimeout
            http.totalTimeout = c.requestTimeout
            http.maxConnectionsPerOrigin = max(4, c.partsInFlight * 4)
            let here = EventLoop.current!
            return LoopBound(S3Client(endpoint: c.endpoint, http: HTTPClient(configuration: http), loop: here, maxAttempts: c.maxAttempts,
                                      retryBase: c.retryBase, now: c.now), loop: here)
        }
        return S3Storage(configuration: configuration, loop: loop, client: client)
    }

    private init(configuration: S3StorageConfiguration, loop: EventLoop, client: LoopBound<S3Client>) {
        self.configuration = configuration
        self.loop = loop
        self.client = client
    }

    /// Stops the store's loop (after the server stopped writing).
    public func shutdown() async {
        let client = self.client
        _ = try? await loop.run { await client.value.http.shutdown() }
        loop.shutdown()
    }

    /// Runs one request on the store's loop.
    func send(_ request: sending S3Request, accept: Set<Int> = []) async throws(S3Error) -> ClientResponse {
        let client = self.client
        do {
            return try await loop.run { () async throws -> ClientResponse in try await client.value.send(request, accept: accept) }
        } catch let e as S3Error { throw e } catch { throw S3Error(0, "Internal", "\(error)") }
    }

    func objectKey(_ key: String) -> String { configuration.prefix + key }

    /// What a failed request means for the server's logs and for the API's 5xx.
    func storageError(_ what: String, _ error: S3Error) -> StorageError {
        let b = configuration.endpoint
        switch (error.status, error.code) {
        case (403, _):
            return StorageError("\(what): the S3 store refused access (\(error.code): \(error.message)); check storage.s3_access_key_id and storage.s3_secret_access_key, and the key's rights on bucket \(b.bucket)")
        case (404, "NoSuchBucket"):
            return StorageError("\(what): bucket \(b.bucket) does not exist at \(b.url) (create it, or fix storage.s3_bucket)")
        default:
            return StorageError("\(what): \(error)")
        }
    }

    // MARK: StorageProvider

    public func write(key: String, from source: some AsyncByteSource) async throws -> StoredObject {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key \"\(key)\"") }
        let partSize = configuration.partSize
        var hasher = SHA256()
        var size: Int64 = 0
        var part: [UInt8] = []
        part.reserveCapacity(partSize)
        var upload: String?
        var inFlight: [(number: Int, task: Task<String, any Error>)] = []
        var finished: [(number: Int, etag: String)] = []
        var nextNumber = 1
        // Set once the object exists in the store (its size is checked after).
        var stored = false
        do {
            var more = true
            while more {
                more = unsafe try await source.read { bytes in
                    unsafe hasher.update(bufferPointer: bytes)
                    size += Int64(bytes.count)
                    unsafe part.append(contentsOf: bytes)
                }
                // A full part goes (or the last one, when the source has ended and a
                // multipart upload is under way).
                while part.count >= partSize || (!more && upload != nil && !part.isEmpty) {
                    let cut = min(part.count, partSize)
                    let body = Array(part[..<cut])
                    part.removeFirst(cut)
                    if upload == nil { upload = try await createMultipart(key) }
                    inFlight.append((nextNumber, startPart(key: key, upload: upload!, number: nextNumber, body: body)))
                    nextNumber += 1
                    if inFlight.count >= max(1, configuration.partsInFlight) {
                        let first = inFlight.removeFirst()
                        finished.append((first.number, try await first.task.value))
                    }
                }
            }
            let digest = Hex.encode(hasher.finalize())
            if let upload {
                for p in inFlight { finished.append((p.number, try await p.task.value)) }
                inFlight = []
                try await completeMultipart(key, upload: upload, parts: finished)
            } else {
                do {
                    _ = try await send(S3Request(method: "PUT", key: objectKey(key), headers: [("x-amz-meta-sha256", digest)],
                                                 body: part, payloadHash: digest))
                } catch { throw storageError("storing object \(key)", error) }
            }
            stored = true
            try await verify(key, size: size)
            return StoredObject(key: key, size: size, sha256: digest)
        } catch {
            for p in inFlight { p.task.cancel() }
            for p in inFlight { _ = try? await p.task.value }
            if let upload, !stored { await abortMultipart(key, upload: upload) }
            // An object that does not hold what was written is not left for a later
            // listing to mistake for a file.
            if stored { try? await delete(key: key) }
            throw error
        }
    }

    public func download(key: String) async throws -> StoredObjectLocation {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key \"\(key)\"") }
        return .url(presignedURL(method: "GET", key: key, seconds: configuration.presignSeconds))
    }

    public func delete(key: String) async throws {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key \"\(key)\"") }
        do { _ = try await send(S3Request(method: "DELETE", key: objectKey(key)), accept: [404]) } catch {
            throw storageError("removing object \(key)", error)
        }
    }

    public func list() async throws -> [StoredObjectInfo] {
        var out: [StoredObjectInfo] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("max-keys", "1000")]
            if !configuration.prefix.isEmpty { query.append(("prefix", configuration.prefix)) }
            if let token { query.append(("continuation-token", token)) }
            let text: String
            do { text = String(decoding: try await send(S3Request(method: "GET", key: nil, query: query)).body, as: UTF8.self) } catch {
                throw storageError("listing bucket \(configuration.endpoint.bucket)", error)
            }
            let keys = S3XML.all("Key", in: text), sizes = S3XML.all("Size", in: text)
            guard keys.count == sizes.count else { throw StorageError("listing bucket \(configuration.endpoint.bucket): an answer with \(keys.count) keys and \(sizes.count) sizes") }
            for (k, s) in zip(keys, sizes) where k.hasPrefix(configuration.prefix) {
                let key = String(k.dropFirst(configuration.prefix.count))
                // Only our keys: anything else in the bucket (or under the prefix) is not ours to list.
                if isValidStorageKey(key), let n = Int64(s) { out.append(StoredObjectInfo(key: key, size: n)) }
            }
            token = S3XML.first("IsTruncated", in: text) == "true" ? S3XML.first("NextContinuationToken", in: text) : nil
        } while token != nil
        return out
    }

    public func url(key: String) -> String {
        configuration.endpoint.url + configuration.endpoint.path(objectKey(key))
    }

    public func problem() async -> String? {
        do {
            let r = try await send(S3Request(method: "HEAD", key: nil), accept: [403, 404])
            switch r.status {
            case 403: return "S3 bucket \(configuration.endpoint.bucket) at \(configuration.endpoint.url) refuses this key (403)"
            case 404: return "S3 bucket \(configuration.endpoint.bucket) does not exist at \(configuration.endpoint.url)"
            default: return nil
            }
        } catch {
            return "S3 at \(configuration.endpoint.url): \(error)"
        }
    }

    // MARK: Beyond the protocol

    /// A URL for `method` ("GET", "PUT", "HEAD") on `key` alone (with `query`: one part
    /// of one upload), valid for `seconds`.
    public func presignedURL(method: String, key: String, seconds: Int, query: [(String, String)] = []) -> String {
        let endpoint = configuration.endpoint
        let signer = SigV4Signer(credentials: endpoint.credentials, region: endpoint.region)
        let path = endpoint.path(objectKey(key))
        return endpoint.url + path + "?" + signer.presign(method: method, host: endpoint.hostHeader, path: path, query: query,
                                                          expires: seconds, unixSeconds: configuration.now())
    }

    /// Creates the bucket (set-up and tests); an existing bucket of ours is not an error.
    public func createBucket() async throws {
        let r: ClientResponse
        do { r = try await send(S3Request(method: "PUT", key: nil), accept: [409]) } catch {
            throw storageError("creating bucket \(configuration.endpoint.bucket)", error)
        }
        if r.status == 409, S3Client.error(status: 409, body: r.body).code != "BucketAlreadyOwnedByYou" {
            throw storageError("creating bucket \(configuration.endpoint.bucket)", S3Client.error(status: 409, body: r.body))
        }
    }

    /// The object's bytes streamed to `onBody` (an inclusive byte `range` when given);
    /// answers the status (200, 206). For tools and tests: clients use presigned URLs.
    public func read(key: String, range: ClosedRange<Int64>? = nil,
                     onBody: @escaping @Sendable ([UInt8]) -> Void) async throws -> Int {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key \"\(key)\"") }
        let client = self.client
        let request = S3Request(method: "GET", key: objectKey(key),
                                headers: range.map { [("Range", "bytes=\($0.lowerBound)-\($0.upperBound)")] } ?? [])
        do {
            return try await loop.run { () async throws -> Int in try await client.value.stream(request, onBody: onBody) }
        } catch let e as S3Error { throw storageError("reading object \(key)", e) }
    }

    // MARK: Multipart

    func createMultipart(_ key: String) async throws -> String {
        do {
            let r = try await send(S3Request(method: "POST", key: objectKey(key), query: [("uploads", "")]))
            guard let id = S3XML.first("UploadId", in: String(decoding: r.body, as: UTF8.self)), !id.isEmpty else {
                throw StorageError("starting a multipart upload of \(key): no UploadId in the answer")
            }
            return id
        } catch let e as S3Error { throw storageError("starting a multipart upload of \(key)", e) }
    }

    /// Sends one part on the store's loop (retried there); the task's value is its ETag.
    private func startPart(key: String, upload: String, number: Int, body: [UInt8]) -> Task<String, any Error> {
        let client = self.client, objectKey = self.objectKey(key), what = "part \(number) of \(key)"
        return loop.spawn { [self] () async throws -> String in
            let request = S3Request(method: "PUT", key: objectKey, query: [("partNumber", String(number)), ("uploadId", upload)],
                                    body: body)
            do {
                let r = try await client.value.send(request)
                guard let etag = r.header("ETag"), !etag.isEmpty else { throw StorageError("\(what): no ETag in the answer") }
                return etag
            } catch let e as S3Error { throw storageError(what, e) }
        }
    }

    func completeMultipart(_ key: String, upload: String, parts: [(number: Int, etag: String)]) async throws {
        var xml = "<CompleteMultipartUpload>"
        for p in parts.sorted(by: { $0.number < $1.number }) {
            xml += "<Part><PartNumber>\(p.number)</PartNumber><ETag>\(S3XML.escape(p.etag))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        do {
            let r = try await send(S3Request(method: "POST", key: objectKey(key), query: [("uploadId", upload)],
                                             headers: [("Content-Type", "application/xml")], body: Array(xml.utf8)))
            // S3 may answer 200 and then an error in the body (a failure after the head went).
            let text = String(decoding: r.body, as: UTF8.self)
            if text.contains("<Error>") { throw S3Client.error(status: 500, body: r.body) }
        } catch let e as S3Error { throw storageError("completing the multipart upload of \(key)", e) }
    }

    func abortMultipart(_ key: String, upload: String) async {
        _ = try? await send(S3Request(method: "DELETE", key: objectKey(key), query: [("uploadId", upload)]), accept: [404])
    }

    /// The stored object has the size that went in.
    func verify(_ key: String, size: Int64) async throws {
        let r: ClientResponse
        do { r = try await send(S3Request(method: "HEAD", key: objectKey(key))) } catch {
            throw storageError("checking object \(key) after writing it", error)
        }
        guard let length = r.header("Content-Length").flatMap(Int64.init), length == size else {
            throw StorageError("object \(key) holds \(r.header("Content-Length") ?? "?") bytes after \(size) were written")
        }
    }
}
