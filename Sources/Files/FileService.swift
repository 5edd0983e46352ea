// Files.FileService: uploaded media by id. Bytes go to a StorageProvider, metadata (owner,
// size, SHA-256, Content-Type, creation time, storage key) to the files_records table.
//
// Crash consistency, in this order: temp write → fsync → rename → directory fsync (the
// provider) → the row committed (synchronous=FULL) → the caller acknowledges. A crash
// before the commit leaves at most an object without a row, never acknowledged: `open`
// removes those. A row whose object is missing should not happen and is logged.
// Deleting commits the row's removal first, then removes the object (a crash in between
// leaves an orphan object, removed at the next start).
//
// Quotas: per file (413 `payload_too_large`: from the declared length before reading, or
// at the crossing byte of a chunked body) and in total (507 `insufficient_storage`: stored
// bytes plus bytes reserved by uploads in flight, see StorageQuota).
import Logging
import Synchronization
import HTTP1
import Relational
import SpoolModel
import Storage
import Threads

public final class FileService: Sendable {
    public let storage: any StorageProvider
    let store: FileStore
    let settings: @Sendable () -> FileSettings
    let clock: any WallClock
    let logger: Logger
    let quota: StorageQuota

    /// What `open` found: objects removed because no row named them, rows whose object is
    /// missing.
    public let removedOrphans: [String]
    public let missingObjects: [FileID]
    /// Other dispatchers write rows and objects too (a shared PostgreSQL database).
    let shared: Bool
    /// Direct uploads begun and not yet finished or abandoned (FileService+DirectUploads).
    let directUploads = Mutex<[FileID: PendingDirectUpload]>([:])

    /// Migrates the table, reconciles storage with the rows, and loads the quota ledger.
    /// `shared`: other dispatchers use the same database and storage. Then an object without
    /// a row may be another dispatcher's upload between its rename and its commit, so none
    /// is removed here, and the quota ledger re-reads the committed total before each upload
    /// (their commits count; uploads in flight elsewhere do not, so the quota can be passed
    /// by at most what other dispatchers are receiving at that moment).
    public static func open(database: any RelationalDatabase, storage: any StorageProvider,
                            settings: @escaping @Sendable () -> FileSettings, clock: any WallClock,
                            logger: Logger = Logger(label: "spool.files"), shared: Bool = false) async throws -> FileService {
        try await database.migrate(FileStore.migrations)
        let store = FileStore(database: database)
        let rows = try await store.allKeys()
        let objects = try await storage.list()
        var removed: [String] = []
        for object in objects where rows[object.key] == nil && !shared {
            // Renamed into place but never committed, so never acknowledged.
            try await storage.delete(key: object.key)
            removed.append(object.key)
        }
        let present = Set(objects.map(\.key))
        let missing = rows.filter { !present.contains($0.key) }.compactMap { FileID($0.value) }.sorted()
        if !removed.isEmpty {
            logger.notice("removed uncommitted uploads", metadata: ["count": "\(removed.count)"])
        }
        let unowned = shared ? objects.filter { rows[$0.key] == nil }.count : 0
        if unowned > 0 {
            logger.notice("objects without a file row left alone (shared storage: another dispatcher's upload in flight, or not ours)",
                          metadata: ["count": "\(unowned)"])
        }
        for id in missing {
            logger.error("a file's stored object is missing", metadata: ["file_id": "\(id)"])
        }
        let committed = try await store.totalBytes()
        return FileService(storage: storage, store: store, settings: settings, clock: clock, logger: logger,
                           quota: StorageQuota(committed: committed), removedOrphans: removed, missingObjects: missing, shared: shared)
    }

    private init(storage: any StorageProvider, store: FileStore, settings: @escaping @Sendable () -> FileSettings,
                 clock: any WallClock, logger: Logger, quota: StorageQuota, removedOrphans: [String], missingObjects: [FileID],
                 shared: Bool) {
        self.shared = shared
        self.storage = storage
        self.store = store
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.quota = quota
        self.removedOrphans = removedOrphans
        self.missingObjects = missingObjects
    }

    /// Stores the bytes of `source` as a new file of `tenant` and returns its committed
    /// record. `declaredLength` (Content-Length) is checked against both quotas before
    /// anything is read. Throws ModelError 413/507/422 for the client's side, the
    /// source's own error when it fails (a client gone), a storage or database error
    /// otherwise; in every failure nothing of the upload remains.
    public func upload(tenant: String, contentType: String, declaredLength: UInt64?, from source: some AsyncByteSource) async throws -> FileRecord {
        guard contentType.utf8.count <= contentTypeBytesMax else {
            throw ModelError.invalidField("Content-Type", "must be at most \(contentTypeBytesMax) bytes")
        }
        guard isValidMediaType(contentType) else {
            throw ModelError.invalidField("Content-Type", "must be a media type such as video/mp4 or application/octet-stream (type/subtype, then any ;name=value parameters)")
        }
        let limits = settings()
        if shared { quota.resync(committed: try await store.totalBytes()) }
        var reserved: Int64 = 0
        if let n = declaredLength {
            guard n <= UInt64(max(0, limits.maxFileBytes)) else {
                throw ModelError(.payloadTooLarge, "a file of \(n) bytes is larger than the limit of \(limits.maxFileBytes) bytes")
            }
            try quota.reserve(Int64(n), quota: limits.totalQuotaBytes)
            reserved = Int64(n)
        }
        let gate = QuotaGate(source, quota: quota, settings: limits, reserved: reserved)
        var rng = SystemRandomNumberGenerator()
        let id = FileID.generate(milliseconds: UInt64(max(0, clock.unixMilliseconds)), using: &rng)
        let object: StoredObject
        do {
            object = try await storage.write(key: id.text, from: gate)
        } catch {
            quota.settle(reserved: gate.reserved, stored: 0)
            // The store's own trouble is the server's, not the client's input: say which.
            if let e = error as? StorageError, e.kind != .failed {
                logger.error("upload refused: \(e)")
                throw e.kind == .full ? ModelError(.insufficientStorage, "the file store is full")
                    : ModelError(.unavailable, "the file store cannot take uploads now")
            }
            throw error
        }
        let record = FileRecord(id: id, tenant: tenant, size: object.size, sha256: object.sha256, contentType: contentType,
                                createdMilliseconds: clock.unixMilliseconds, storageKey: object.key)
        try await commit(record, reserved: gate.reserved)
        return record
    }

    /// Commits the row of a stored object and settles its reservation; when the commit
    /// fails, the object goes (it was never acknowledged) and the reservation is given back.
    func commit(_ record: FileRecord, reserved: Int64) async throws {
        do {
            try await store.insert(record)
        } catch {
            quota.settle(reserved: reserved, stored: 0)
            try? await storage.delete(key: record.storageKey)
            throw error
        }
        quota.settle(reserved: reserved, stored: record.size)
    }

    /// The record `id` of `tenant` (nil: any tenant, for admins); 404 when there is none.
    public func metadata(id: FileID, tenant: String?) async throws -> FileRecord {
        guard let r = try await store.fetch(id, tenant: tenant) else { throw Self.notFound(id) }
        return r
    }

    /// Where the bytes of `record` can be read.
    public func location(of record: FileRecord) async throws -> StoredObjectLocation {
        try await storage.download(key: record.storageKey)
    }

    /// Deletes the file (row first, then its object); 404 when there is none.
    public func delete(id: FileID, tenant: String?) async throws {
        guard let r = try await store.remove(id, tenant: tenant) else { throw Self.notFound(id) }
        quota.released(r.size)
        do {
            try await storage.delete(key: r.storageKey)
        } catch {
            // The row is gone (the delete is acknowledged); the object is an orphan that the
            // next start removes.
            logger.warning("cannot remove a deleted file's object", metadata: ["file_id": "\(id)", "error": "\(error)"])
        }
    }

    /// A page of `tenant`'s files (nil: everyone's) in creation order, after the id `after`
    /// (a keyset cursor) or from `offset`, and how many there are in all.
    public func list(tenant: String?, after: String?, offset: Int, limit: Int) async throws -> (records: [FileRecord], totalCount: Int) {
        let page = try await store.page(tenant: tenant, after: after, offset: offset, limit: limit)
        return (page.records, page.total)
    }

    /// True when `tenant` has the file `id` (job submission checks its input with this).
    public func exists(id: FileID, tenant: String) async throws -> Bool {
        try await store.exists(id, tenant: tenant)
    }

    /// Bytes of every committed file.
    public func totalBytes() async throws -> Int64 { try await store.totalBytes() }

    /// Bytes reserved by uploads in flight right now.
    public var reservedBytes: Int64 { quota.reserved }

    static func notFound(_ id: FileID) -> ModelError {
        ModelError(.notFound, "no file \(id.text)")
    }
}
