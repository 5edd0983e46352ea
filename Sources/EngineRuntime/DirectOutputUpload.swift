// EngineRuntime.EngineAgent+DirectUpload: an output file written straight into the
// dispatcher's object store (S3). The dispatcher answers the output's size with a
// presigned PUT URL per part (that key, that part, for minutes); the engine reads each
// part from its file, hashes it into the file's SHA-256 and PUTs it (Content-Length, no
// credentials), retrying a part on a connection failure, 5xx or 429 with full-jitter
// backoff, then reports the parts' ETags and the SHA-256, and the dispatcher completes
// the upload and commits the file. A failure abandons the upload (nothing stays). A
// dispatcher with local storage answers 501: the engine then uploads through the
// dispatcher for good (`directUploads` remembers it).
import Crypto
import Glibc
import JSON
import Ring
import SpoolModel
import Web

extension EngineAgent {
    /// The output's file id; nil when the dispatcher takes no direct uploads.
    func directUpload(_ client: HTTPClient, _ lease: Lease, path: String, name: String) async throws -> String? {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        var st = stat()
        guard stat(path, &st) == 0 else { throw EngineError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        let base = api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/output-uploads"
        let epoch = "lease_epoch=\(lease.epoch)"
        var w = JSONWriter()
        w.beginObject(); w.field("name", name); w.field("size", Int64(st.st_size)); w.endObject()
        let begun = try await client.execute(ClientRequest(method: "POST", url: base + "?" + epoch,
                                                           headers: authorization(creds.token) + [("Content-Type", "application/json")],
                                                           body: .bytes(w.bytes), timeout: .seconds(60)))
        if begun.status == 501 { return nil }
        if begun.status == 409 { throw StaleLease(description: "lease lost before uploading \(name)") }
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
        let upload = base + "/" + fileID
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
                                                              headers: authorization(creds.token) + [("Content-Type", "application/json")],
                                                              body: .bytes(c.bytes), timeout: .seconds(300)))
            if done.status == 409 { throw StaleLease(description: "lease lost while uploading \(name)") }
            guard done.status == 201 else {
                throw EngineError("completing the upload of \(name) answered \(done.status): \(String(decoding: done.body.prefix(300), as: UTF8.self))")
            }
            logger.info("job \(lease.jobID): output \(name) (\(st.st_size) bytes, \(parts.count) part(s)) written to the store directly")
            return fileID
        } catch {
            _ = try? await client.execute(ClientRequest(method: "DELETE", url: upload + "?" + epoch, headers: authorization(creds.token),
                                                        timeout: .seconds(30)))
            throw error
        }
    }

    /// PUTs one part to its presigned URL; its ETag. A connection failure, 5xx or 429 is
    /// tried again (eight tries, full-jitter backoff up to 5 s); another refusal is final.
    func putPart(_ client: HTTPClient, url: String, bytes: [UInt8], what: String) async throws -> String {
        var attempt = 0
        while true {
            attempt += 1
            var problem: String
            do {
                let r = try await client.execute(ClientRequest(method: "PUT", url: url, body: .bytes(bytes), timeout: .seconds(600)))
                if (200..<300).contains(r.status), let etag = r.header("ETag"), !etag.isEmpty { return etag }
                problem = "the store answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))"
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
