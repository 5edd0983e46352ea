// Files.FileRecord and FileSettings: what the service knows of one stored file (its
// metadata row) and the limits it enforces, read through a closure at each upload so a
// configuration reload applies to the next upload at once.
import SpoolModel

/// One uploaded file: who owns it, its length and SHA-256, the Content-Type it came with,
/// when it was committed, and the storage key of its bytes.
public struct FileRecord: Sendable, Equatable {
    public var id: FileID
    public var tenant: String
    public var size: Int64
    /// 64 lower-case hex digits.
    public var sha256: String
    public var contentType: String
    /// Unix milliseconds when the upload was committed.
    public var createdMilliseconds: Int64
    public var storageKey: String

    public init(id: FileID, tenant: String, size: Int64, sha256: String, contentType: String,
                createdMilliseconds: Int64, storageKey: String) {
        self.id = id
        self.tenant = tenant
        self.size = size
        self.sha256 = sha256
        self.contentType = contentType
        self.createdMilliseconds = createdMilliseconds
        self.storageKey = storageKey
    }
}

public struct FileSettings: Sendable, Equatable {
    /// One file at most (413 above it: from Content-Length before reading, or at the byte
    /// that crosses it for a chunked body).
    public var maxFileBytes: Int64
    /// Every committed file plus the uploads in flight at most (507 above it).
    public var totalQuotaBytes: Int64

    public init(maxFileBytes: Int64 = 10 << 30, totalQuotaBytes: Int64 = 100 << 30) {
        self.maxFileBytes = maxFileBytes
        self.totalQuotaBytes = totalQuotaBytes
    }
}

/// Upper bound of a stored Content-Type (longer ones are refused with 422).
let contentTypeBytesMax = 255
