// Files.FileService+DirectUploads: files whose bytes a client (an engine's output) writes
// straight into the store with URLs the dispatcher signs (Storage.DirectUploadStorage: S3
// presigned PUTs), so the bytes skip the dispatcher and the client holds no store
// credentials. Begin checks the per-file limit (413) and reserves the size against the
// total quota (507) before any URL is handed out; finish completes the object, checks its
// size in the store, then commits the row, so a file is visible only when whole, as with
// `upload`. An upload neither finished nor abandoned gives its reservation back once its
// URLs have expired (checked at each begin); the store's own lifecycle rule should abort
// its parts (S3: AbortIncompleteMultipartUpload).
import SpoolModel
import Storage

/// A direct upload between begin and finish.
struct PendingDirectUpload: Sendable {
    let tenant: String
    let contentType: String
    let size: Int64
    let uploadID: String?
    let parts: Int
    /// When its URLs stop working (Unix seconds).
    let expiresAt: Int64
}

extension FileService {
    /// Whether the store takes direct uploads (else clients upload through `upload`).
    public var takesDirectUploads: Bool { storage is any DirectUploadStorage }

    /// Starts a direct upload of `size` bytes as a new file of `tenant`: its id and where
    /// each part goes. 413 past the per-file limit, 507 past the quota, 501 when the store
    /// cannot take one.
    public func beginDirectUpload(tenant: String, contentType: String, size: Int64) async throws -> (FileID, DirectUploadPlan) {
        guard let direct = storage as? any DirectUploadStorage else {
            throw ModelError(.notImplemented, "this server's storage takes no direct uploads: send the bytes to the upload endpoint")
        }
        guard size >= 0 else { throw ModelError.invalidField("size", "must be a byte count (0 or more)") }
        let limits = settings()
        guard size <= limits.maxFileBytes else {
            throw ModelError(.payloadTooLarge, "a file of \(size) bytes is larger than the limit of \(limits.maxFileBytes) bytes")
        }
        releaseExpiredDirectUploads()
        if shared { quota.resync(committed: try await store.totalBytes()) }
        try quota.reserve(size, quota: limits.totalQuotaBytes)
        var rng = SystemRandomNumberGenerator()
        let id = FileID.generate(milliseconds: UInt64(max(0, clock.unixMilliseconds)), using: &rng)
        let plan: DirectUploadPlan
        do {
            plan = try await direct.beginDirectUpload(key: id.text, size: size)
        } catch {
            quota.settle(reserved: size, stored: 0)
            throw error
        }
        directUploads.withLock {
            $0[id] = PendingDirectUpload(tenant: tenant, contentType: contentType, size: size, uploadID: plan.uploadID,
                                         parts: plan.parts.count, expiresAt: plan.expiresAt)
        }
        return (id, plan)
    }

    /// Completes the direct upload `id` of `tenant` from its parts' ETags and the SHA-256
    /// its writer computed, and commits the file. 404 for an upload that is not pending
    /// (finished, abandoned, expired, another tenant's); 422 for a wrong part count or
    /// checksum form; a store's refusal (a part missing, the size wrong) abandons it.
    public func finishDirectUpload(id: FileID, tenant: String, etags: [String], sha256: String) async throws -> FileRecord {
        guard let direct = storage as? any DirectUploadStorage else {
            throw ModelError(.notImplemented, "this server's storage takes no direct uploads")
        }
        guard let pending = directUploads.withLock({ $0[id] }), pending.tenant == tenant else {
            throw ModelError(.notFound, "no direct upload \(id.text) in progress")
        }
        guard etags.count == pending.parts, etags.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 256 && $0.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } }) else {
            throw ModelError.invalidField("parts", "must list the \(pending.parts) part(s) in order, each with the ETag the store answered")
        }
        guard sha256.utf8.count == 64, sha256.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw ModelError.invalidField("sha256", "must be the file's SHA-256 in 64 lower-case hex digits")
        }
        // Taken out first: a second finish of the same upload is a 404, not a second row.
        guard directUploads.withLock({ $0.removeValue(forKey: id) }) != nil else {
            throw ModelError(.notFound, "no direct upload \(id.text) in progress")
        }
        do {
            try await direct.finishDirectUpload(key: id.text, uploadID: pending.uploadID, etags: etags, size: pending.size)
        } catch {
            await direct.abortDirectUpload(key: id.text, uploadID: pending.uploadID)
            quota.settle(reserved: pending.size, stored: 0)
            throw error
        }
        let record = FileRecord(id: id, tenant: tenant, size: pending.size, sha256: sha256, contentType: pending.contentType,
                                createdMilliseconds: clock.unixMilliseconds, storageKey: id.text)
        try await commit(record, reserved: pending.size)
        return record
    }

    /// Abandons the direct upload `id` of `tenant` (nothing of it stays); false when none
    /// was pending.
    @discardableResult
    public func abortDirectUpload(id: FileID, tenant: String) async -> Bool {
        guard let direct = storage as? any DirectUploadStorage else { return false }
        let pending = directUploads.withLock { uploads -> PendingDirectUpload? in
            guard let p = uploads[id], p.tenant == tenant else { return nil }
            return uploads.removeValue(forKey: id)
        }
        guard let pending else { return false }
        await direct.abortDirectUpload(key: id.text, uploadID: pending.uploadID)
        quota.settle(reserved: pending.size, stored: 0)
        return true
    }

    /// Direct uploads in flight (metrics, tests).
    public var directUploadsInFlight: Int { directUploads.withLock { $0.count } }

    /// Gives back the reservations of uploads whose URLs have expired unfinished.
    func releaseExpiredDirectUploads() {
        let now = clock.unixMilliseconds / 1000
        let expired = directUploads.withLock { uploads -> [PendingDirectUpload] in
            let gone = uploads.filter { $0.value.expiresAt < now }
            for id in gone.keys { uploads.removeValue(forKey: id) }
            return Array(gone.values)
        }
        for p in expired { quota.settle(reserved: p.size, stored: 0) }
    }
}
