// EngineRuntime.DirectOutputUpload: an output file written straight into the
// dispatcher's object store (S3). The dispatcher answers the output's size with a
// presigned PUT URL per part (that key, that part, for minutes); the engine reads each
// part from its file, hashes it into the file's SHA-256 and PUTs it (Content-Length, no
// credentials), retrying a part on a connection failure, 5xx or 429 with full-jitter
// backoff, then reports the parts' ETags and the SHA-256, and the dispatcher completes
// the upload and commits the file. A failure abandons the upload (nothing stays). A
// dispatcher with local storage answers 501: the engine then uploads through the
// dispatcher for good (`directUploads` remembers it).
// A store that no longer knows the multipart upload (a part answers 404 NoSuchUpload: an
// S3 server restarted and lost the uploads it had in progress) gets the output again:
// the upload is abandoned and begun anew from the file, at most twice, since the file is
// still there and the parts already sent are gone with the upload.
import Crypto
import Glibc
import JSON
import Logging
import Ring
import SpoolModel
import Web

extension EngineAgent {
    /// The output's file id; nil when the dispatcher takes no direct uploads.
    func directUpload(_ client: HTTPClient, _ lease: Lease, path: String, name: String) async throws -> String? {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        let upload = DirectOutputUpload(uploadsURL: api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/output-uploads",
                                        leaseEpoch: lease.epoch, token: creds.token, logger: logger)
        return try await upload.run(client, path: path, name: name, jobID: lease.jobID)
    }
}

/// One output file written straight into the dispatcher's store (see the file's header):
/// the calls an engine makes, on the HTTP client of the loop it runs on.
public struct DirectOutputUpload: Sendable {
    /// ".../api/v1/engines/{engine}/jobs/{job}/output-uploads".
    public let uploadsURL: String
    public let leaseEpoch: Int64
    /// The engine's key.
    public let token: String
    public let logger: Logger
    /// Times the upload is begun again after the store lost it.
    public var maxRestarts = 2

    public init(uploadsURL: String, leaseEpoch: Int64, token: String, logger: Logger) {
        self.uploadsURL = uploadsURL
        self.leaseEpoch = leaseEpoch
        self.token = token
        self.logger = logger
    }

    /// The store lost the multipart upload the parts were going into.
    struct UploadLost: Error { var what: String }

    var authorization: [(name: String, value: String)] { [("Authorization", "Bearer " + token)] }

    /// The output's file id; nil when the dispatcher takes no direct uploads (501).
    public func run(_ client: HTTPClient, path: String, name: String, jobID: String) async throws -> String? {
        var restarts = 0
        while true {
            do {
                return try await once(client, path: path, name: name, jobID: jobID)
            } catch let lost as UploadLost {
                restarts += 1
                guard restarts <= maxRestarts else {
                    throw EngineError("\(lost.what): the store lost the multipart upload \(restarts) times")
                }
                logger.warning("job \(jobID): \(lost.what): the store no longer knows the multipart upload (restarted?); uploading \(name) again from the file")
            }
        }
    }

    private func once(_ client: HTTPClient, path: String, name: String, jobID: String) async throws -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { throw EngineError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        let epoch = "lease_epoch=\(leaseEpoch)"
        var w = JSONWriter()
        w.beginObject(); w.field("name", name); w.field("size", Int64(st.st_size)); w.endObject()
        let begun = try await client.execute(ClientRequest(method: "POST", url: uploadsURL + "?" + epoch,
                                                           headers: authorization + [("Content-Type", "application/json")],
                                                           body: .bytes(w.bytes), timeout: .seconds(60)))
        if begun.status == 501 { return nil }
        if begun.status == 409 { throw EngineAgent.StaleLease(description: "lease lost before uploading \(name)") }
        guard begun.status == 201, let doc = try? JSONDocument(parsing: begun.body), let fileID = try? doc.root["file_id"]?.string(),
              let list = doc.root["parts"] else {
            throw EngineError("starting the upload of \(name) answered \(begun.status): \(String(decoding: begun.body.prefix(300), as: UTF8.self))")
        }
        var parts: [(number: Int, offset: Int64, length: Int, url: String)] = []
        for p in list.elements {
            guard let n = try? p["number"]?.int(), let off = try? p["offset"]?.int64(), let len = try? p["length"]?.int(),
                  let url = try? p["url"]?.string(), len >= 0 else { throw EngineError("the upload plan of \(name) is malformed") }
            parts.append((n, off, len, url))
        }
        let upload = uploadsURL + "/" + fileID
        do {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw EngineError("cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var hasher = SHA256()
            var etags: [String] = []
            for part in parts.sorted(by: { $0.number < $1.number }) {
                var bytes = [UInt8](repeating: 0, count: part.length)
                var got = 0
                while got < part.length {
                    let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, part.length - got, off_t(part.offset) + off_t(got)) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw EngineError("reading \(path) for part \(part.number) failed") }
                    got += n
                }
                hasher.update(data: bytes)
                etags.append(try await putPart(client, url: part.url, bytes: bytes, what: "part \(part.number) of \(name)"))
            }
            var c = JSONWriter()
            c.beginObject()
            c.key("parts"); c.beginArray(); for e in etags { c.string(e) }; c.endArray()
            c.field("sha256", Hex.encode(hasher.finalize()))
            c.endObject()
            let done = try await client.execute(ClientRequest(method: "POST", url: upload + "/complete?" + epoch,
                                                              headers: authorization + [("Content-Type", "application/json")],
                                                              body: .bytes(c.bytes), timeout: .seconds(300)))
            if done.status == 409 { throw EngineAgent.StaleLease(description: "lease lost while uploading \(name)") }
            guard done.status == 201 else {
                throw EngineError("completing the upload of \(name) answered \(done.status): \(String(decoding: done.body.prefix(300), as: UTF8.self))")
            }
            logger.info("job \(jobID): output \(name) (\(st.st_size) bytes, \(parts.count) part(s)) written to the store directly")
            return fileID
        } catch {
            _ = try? await client.execute(ClientRequest(method: "DELETE", url: upload + "?" + epoch, headers: authorization,
                                                        timeout: .seconds(30)))
            throw error
        }
    }

    /// PUTs one part to its presigned URL; its ETag. A connection failure, 5xx or 429 is
    /// tried again (eight tries, full-jitter backoff up to 5 s); 404 NoSuchUpload is
    /// `UploadLost`; another refusal is final.
    func putPart(_ client: HTTPClient, url: String, bytes: [UInt8], what: String) async throws -> String {
        var attempt = 0
        while true {
            attempt += 1
            var problem: String
            do {
                let r = try await client.execute(ClientRequest(method: "PUT", url: url, body: .bytes(bytes), timeout: .seconds(600)))
                if (200..<300).contains(r.status), let etag = r.header("ETag"), !etag.isEmpty { return etag }
                problem = "the store answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))"
                if r.status == 404 && String(decoding: r.body.prefix(2048), as: UTF8.self).contains("NoSuchUpload") {
                    throw UploadLost(what: what)
                }
                guard r.status >= 500 || r.status == 429 else { throw EngineError("\(what): \(problem)") }
            } catch let e as HTTPClientError {
                guard [.connectFailed, .connectionClosed, .timedOut].contains(e.kind) else { throw EngineError("\(what): \(e)") }
                problem = "\(e)"
            }
            guard attempt < 8 else { throw EngineError("\(what): \(problem) (after \(attempt) tries)") }
            let cap = min(Int64(100_000_000) << min(attempt - 1, 16), 5_000_000_000)
            guard let loop = EventLoop.current else { throw EngineError("\(what): not on an event loop") }
            try await loop.sleep(for: .nanoseconds(Int64.random(in: 0...cap)))
        }
    }
}
