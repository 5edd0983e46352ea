// Storage.StorageProvider: where file contents live, behind one protocol so the local disk
// (LocalStorage, the embedded default) and an object store (S3, later) are interchangeable.
// Objects are addressed by keys the server generates (a FileID's text), never by a path a
// client chose. A write takes the bytes as a pull stream (`AsyncByteSource`: the HTTP request
// body, piece by piece) and answers the size and SHA-256 computed on the way; an object is
// visible under its key only once it is complete and durable. A read answers where the
// bytes are (a local file to serve with ranges, or a URL to redirect to).

/// The bytes of an object being written, pulled piece by piece on an event loop (an HTTP
/// request body, a file, a test's array). Pieces may be of any size, including empty.
/// Not TranscodeAPI.ByteSource: that one blocks, on a transcode thread.
public protocol AsyncByteSource {
    /// Passes the next piece to `consume`, which must not keep the pointer, and returns
    /// true; returns false once the stream has ended. What `consume` throws ends the
    /// stream and comes out of `read` as is.
    func read(_ consume: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool
}

/// A complete object: its length and the SHA-256 of its bytes (64 lower-case hex digits).
public struct StoredObject: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var sha256: String
    public init(key: String, size: Int64, sha256: String) {
        self.key = key
        self.size = size
        self.sha256 = sha256
    }
}

/// One entry of a listing.
public struct StoredObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public init(key: String, size: Int64) { self.key = key; self.size = size }
}

/// Where to read an object from.
public enum StoredObjectLocation: Sendable, Equatable {
    /// A regular file on this machine (served through the ring, with ranges).
    case localFile(path: String)
    /// A URL the client can fetch itself (an object store's signed URL).
    case url(String)
}

/// A failure of the storage itself (a full disk, an I/O error): never the client's doing.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    /// What the caller can tell its client: the store cannot take writes now (a directory
    /// not writable, a read-only file system: 503), it is full (507), or anything else.
    public enum Kind: Sendable { case failed, unavailable, full }
    public let message: String
    public let kind: Kind
    public init(_ message: String, kind: Kind = .failed) { self.message = message; self.kind = kind }
    public var description: String { "storage: \(message)" }
}

public protocol StorageProvider: Sendable {
    /// Writes the whole of `source` as the object `key` and returns its size and SHA-256.
    /// The object appears under `key` only when complete and durable; when `source` or
    /// the write fails, nothing of it remains and the error comes out as is.
    func write(key: String, from source: some AsyncByteSource) async throws -> StoredObject
    /// Where the object's bytes can be read.
    func download(key: String) async throws -> StoredObjectLocation
    /// Removes the object; removing a missing object is not an error.
    func delete(key: String) async throws
    /// Every complete object (never an upload in progress).
    func list() async throws -> [StoredObjectInfo]
    /// A URL naming the object (for logs and results; not necessarily fetchable by clients).
    func url(key: String) -> String
    /// nil when the store can take writes now; otherwise what is wrong (the readiness probe).
    func problem() async -> String?
}

/// Keys are generated (FileID text): letters, digits and `_` only, 1...64 bytes; anything
/// else is refused so no key can name a path outside the store.
public func isValidStorageKey(_ key: String) -> Bool {
    let u = key.utf8
    guard !u.isEmpty, u.count <= 64 else { return false }
    return u.allSatisfy { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F
    }
}

/// A store whose objects a client may write itself, with URLs the server signs for it
/// (S3: presigned PUTs, one per part): the bytes never pass through the server, and the
/// client never holds the store's credentials.
public protocol DirectUploadStorage: StorageProvider {
    /// Starts an upload of `size` bytes as the object `key`: where each part goes.
    func beginDirectUpload(key: String, size: Int64) async throws -> DirectUploadPlan
    /// Completes it from the parts' ETags (in part order) and checks the stored size.
    func finishDirectUpload(key: String, uploadID: String?, etags: [String], size: Int64) async throws
    /// Abandons it: nothing of it stays.
    func abortDirectUpload(key: String, uploadID: String?) async
}

/// Where the parts of a direct upload go.
public struct DirectUploadPlan: Sendable, Equatable {
    public struct Part: Sendable, Equatable {
        /// 1-based.
        public var number: Int
        public var offset: Int64
        public var length: Int64
        /// A URL for exactly one PUT of these bytes (Content-Length: `length`).
        public var url: String
        public init(number: Int, offset: Int64, length: Int64, url: String) {
            self.number = number; self.offset = offset; self.length = length; self.url = url
        }
    }
    /// The store's id of a multipart upload (nil: one PUT).
    public var uploadID: String?
    public var parts: [Part]
    /// When the URLs stop working (Unix seconds).
    public var expiresAt: Int64
    public init(uploadID: String?, parts: [Part], expiresAt: Int64) {
        self.uploadID = uploadID; self.parts = parts; self.expiresAt = expiresAt
    }
}
