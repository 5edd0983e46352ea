// S3.S3Storage+DirectUploads: objects an engine writes itself. Begin answers one presigned
// PUT for an object within one part, else creates a multipart upload and presigns an
// UploadPart for each part (that upload id and part number only, for presign_seconds);
// the engine sends the parts and reports their ETags, and finish completes the upload
// and checks the object's size with a HEAD. The engine never holds a key, and a URL does
// nothing but put those bytes at that key.
import Storage

extension S3Storage {
    public func beginDirectUpload(key: String, size: Int64) async throws -> DirectUploadPlan {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key \"\(key)\"") }
        let seconds = configuration.presignSeconds
        let expires = configuration.now() + Int64(seconds)
        let partSize = Int64(configuration.partSize)
        guard size > partSize else {
            return DirectUploadPlan(uploadID: nil, parts: [.init(number: 1, offset: 0, length: size,
                                                                 url: presignedURL(method: "PUT", key: key, seconds: seconds))],
                                    expiresAt: expires)
        }
        guard size <= partSize * 10_000 else {
            throw StorageError("an object of \(size) bytes needs more than 10000 parts of \(partSize) (raise storage.s3_part_mib)")
        }
        let upload = try await createMultipart(key)
        var parts: [DirectUploadPlan.Part] = []
        var offset: Int64 = 0
        while offset < size {
            let n = parts.count + 1, length = min(partSize, size - offset)
            parts.append(.init(number: n, offset: offset, length: length,
                               url: presignedURL(method: "PUT", key: key, seconds: seconds,
                                                 query: [("partNumber", String(n)), ("uploadId", upload)])))
            offset += length
        }
        return DirectUploadPlan(uploadID: upload, parts: parts, expiresAt: expires)
    }

    public func finishDirectUpload(key: String, uploadID: String?, etags: [String], size: Int64) async throws {
        guard isValidStorageKey(key) else { throw StorageError("invalid object key \"\(key)\"") }
        if let uploadID {
            try await completeMultipart(key, upload: uploadID, parts: etags.enumerated().map { ($0.offset + 1, $0.element) })
        }
        do { try await verify(key, size: size) } catch {
            if uploadID == nil { try? await delete(key: key) }
            throw error
        }
    }

    public func abortDirectUpload(key: String, uploadID: String?) async {
        guard isValidStorageKey(key) else { return }
        if let uploadID { await abortMultipart(key, upload: uploadID) } else { try? await delete(key: key) }
    }
}
