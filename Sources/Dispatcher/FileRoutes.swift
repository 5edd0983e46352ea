// Dispatcher.FileRoutes: /api/v1/files over FileService.
//
//   POST   /files        the raw bytes as the body (Content-Length or chunked), streamed to
//                        storage; 201 {"id","size","sha256","content_type","created_at"}
//   GET    /files        the caller's files, paged like every list (limit, cursor, offset)
//   GET    /files/{id}   the bytes, with Range (206/416), ETag = "<sha256>", Last-Modified
//   HEAD   /files/{id}   the same headers, no body
//   DELETE /files/{id}   204 (412 when If-Match or If-Unmodified-Since fails)
//
// A tenant sees only its own files (another's is 404, as is an id that does not parse);
// an admin key sees every tenant's and may filter the list with `tenant=`.
import Files
import JSON
import Persistence
import ServerConfig
import SpoolAPI
import SpoolModel
import Storage
import Web

/// Callbacks for the byte counters (upload/download metrics). Upload: the body bytes a
/// request delivered, whatever came of it. Download: the bytes of a 200/206 GET answer.
public struct FileTransferCounters: Sendable {
    public var uploaded: (@Sendable (Int64) -> Void)?
    public var downloaded: (@Sendable (Int64) -> Void)?
    public init(uploaded: (@Sendable (Int64) -> Void)? = nil, downloaded: (@Sendable (Int64) -> Void)? = nil) {
        self.uploaded = uploaded
        self.downloaded = downloaded
    }
}

extension DispatchServer {
    /// The route limit of uploads: FileService enforces the configured (reloadable) one.
    static let uploadBodyMax = UInt64(Int64.max)

    /// Large uploads take as long as they take while bytes keep coming: no whole-body
    /// deadline, a piece at least every 60 s, and the slow-body rate floor.
    static let uploadTimeLimits = BodyTimeLimits(deadline: nil, pieceTimeout: .seconds(60))

    func installFileRoutes(on v1: inout RouteBuilder, counters: FileTransferCounters = FileTransferCounters()) {
        let files = self.files, cursors = self.cursors

        v1.post("files", body: .streaming(max: Self.uploadBodyMax), timeLimits: Self.uploadTimeLimits) { req in
            let caller = try req.caller()
            let body = req.bodyStream
            defer { counters.uploaded?(Int64(body.bytesRead)) }
            let record = try await files.upload(tenant: caller.tenant, contentType: req.header("Content-Type") ?? "application/octet-stream",
                                                declaredLength: body.declaredLength, from: RequestBodySource(body))
            var r = Response.json(201) { w in encodeFile(record, into: &w) }
            r.headers.append(("Location", "/api/\(SpoolAPI.version)/files/\(record.id.text)"))
            return r
        }

        v1.get("files") { req in
            let caller = try req.caller()
            let asked = try tenantFilter(req)
            // As on GET /jobs: a tenant key names no other tenant (it used to be ignored).
            if !caller.isAdmin, let asked, asked != caller.tenant {
                throw ModelError(.forbidden, "a tenant key lists only its own tenant's files", details: [("tenant", "not your tenant")])
            }
            let tenant = caller.isAdmin ? asked : caller.tenant
            let filters = "files;tenant=" + (tenant ?? "*")
            let page = try cursors.page(of: req, filters: filters)
            let (records, total) = try await files.list(tenant: tenant, after: page.after, offset: page.offset, limit: page.limit + 1)
            let shown = records.prefix(page.limit)
            var next: String? = nil
            if records.count > page.limit, let last = shown.last {
                next = nextPageURL(path: "/api/\(SpoolAPI.version)/files", filters: caller.isAdmin ? [("tenant", tenant ?? "")] : [],
                                   limit: page.limit, cursor: cursors.cursor(after: last.id.text, filters: filters))
            }
            return Response.page(shown, total: total, next: next) { r, w in encodeFile(r, into: &w) }
        }

        v1.get("files/:id") { req in
            let caller = try req.caller()
            let record = try await files.metadata(id: try fileID(req), tenant: caller.isAdmin ? nil : caller.tenant)
            let etag = record.entityTag, lastModified = record.lastModifiedSeconds
            // If-Match and If-Unmodified-Since come before If-None-Match (RFC 9110 §13.2.2).
            if Conditional.failsPrecondition(req, tag: etag, lastModified: HTTPDate.format(lastModified)) {
                throw Conditional.preconditionFailedError
            }
            if let inm = req.headerList("If-None-Match"), ifNoneMatch(inm, matches: etag) {
                return Response(status: 304, headers: [("ETag", etag), ("Last-Modified", HTTPDate.format(lastModified))])
            }
            switch try await files.location(of: record) {
            case .localFile(let path):
                let r = try await Response.file(path, for: req, contentType: record.contentType, etag: etag, lastModified: lastModified)
                counters.countDownload(r, for: req, fileSize: record.size)
                return r
            case .url(let url):
                // A range the file cannot satisfy is answered here, in the API's own error
                // shape, rather than by the store after the redirect.
                if req.method == "GET", let range = req.header("Range"), req.header("If-Range").map({ $0 == etag }) ?? true,
                   ByteRange.parse(range, size: UInt64(max(0, record.size))) == .unsatisfiable {
                    return .rangeNotSatisfiable(size: UInt64(max(0, record.size)))
                }
                return Response(status: 302, headers: [("Location", url), ("ETag", etag)])
            }
        }

        v1.delete("files/:id") { req in
            let caller = try req.caller()
            let id = try fileID(req), tenant = caller.isAdmin ? nil : caller.tenant
            // A file never changes, so its validators checked here still hold at the delete.
            if req.header("If-Match") != nil || req.header("If-Unmodified-Since") != nil {
                let record = try await files.metadata(id: id, tenant: tenant)
                if Conditional.failsPrecondition(req, tag: record.entityTag, lastModified: HTTPDate.format(record.lastModifiedSeconds)) {
                    throw Conditional.preconditionFailedError
                }
            }
            try await self.deleteFile(id, tenant: tenant)
            return Response(status: 204)
        }
    }
}

extension DispatchServer {
    /// The free space uploads leave (LocalStorage.reserveBytes; 0 for a remote store).
    var uploadReserveBytes: Int64 { (files.storage as? LocalStorage)?.reserveBytes ?? 0 }

    /// Deletes a file even on a full disk: when the database cannot commit the delete for
    /// want of room, the ballast beside it is let go and the delete tried once more; the
    /// ballast is taken back once there is room for it above the upload reserve.
    func deleteFile(_ id: FileID, tenant: String?) async throws {
        do {
            try await files.delete(id: id, tenant: tenant)
        } catch let e as PersistenceError where e.kind == .full {
            guard let ballast, await ballast.release() else { throw e }
            logger.warning("the disk is full: let the \(ballast.bytes >> 20) MiB ballast go so that a file delete can commit")
            try await files.delete(id: id, tenant: tenant)
        }
        // Off the loop thread (it stats, and may allocate): a no-op while the ballast is held.
        if let ballast { await ballast.ensure(keepFree: uploadReserveBytes) }
    }
}

extension FileTransferCounters {
    /// Counts a GET's file answer: the range it sends, or the whole file (not a HEAD's).
    func countDownload(_ response: Response, for req: Request, fileSize: Int64) {
        guard req.method == "GET", case .file(_, let range)? = response.stream else { return }
        downloaded?(Int64(range.map { $0.upperBound - $0.lowerBound } ?? UInt64(max(0, fileSize))))
    }
}

extension FileRecord {
    /// The file's validators: its SHA-256 as a strong entity tag, and its creation second.
    var entityTag: String { "\"" + sha256 + "\"" }
    var lastModifiedSeconds: Int64 { createdMilliseconds / 1000 }
}

/// FileService's settings, read from the live configuration at each upload.
func fileSettings(_ live: LiveSettings) -> @Sendable () -> FileSettings {
    { let f = live.current.files
      return FileSettings(maxFileBytes: f.maxFileBytes, totalQuotaBytes: f.totalQuotaBytes) }
}

/// The id in the path; one that does not parse is simply not found.
private func fileID(_ req: Request) throws(ModelError) -> FileID {
    let text = req.pathParameters["id"] ?? ""
    guard let id = FileID(text) else { throw ModelError(.notFound, "no file \(text.prefix(64))") }
    return id
}

private func encodeFile<S: JSONSink>(_ r: FileRecord, into w: inout JSONWriter<S>) {
    w.beginObject()
    w.field("id", r.id.text)
    w.field("size", r.size)
    w.field("sha256", r.sha256)
    w.field("content_type", r.contentType)
    w.field("created_at", RFC3339.format(r.createdMilliseconds))
    w.endObject()
}

/// "2026-11-30T18:20:08.123Z".

/// The request body as a storage AsyncByteSource. What the storage's consumer throws (a quota
/// error) comes out as is, not as the body's APIError.
final class RequestBodySource: AsyncByteSource {
    let body: RequestBody
    init(_ body: RequestBody) { self.body = body }

    func read(_ consume: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        var refusal: (any Error)?
        do {
            return try await body.read { raw throws(APIError) in
                do {
                    try consume(raw)
                } catch {
                    refusal = error
                    throw APIError(status: 500, code: "internal", message: "the upload was refused")
                }
            }
        } catch {
            if let refusal { throw refusal }
            throw error
        }
    }
}
