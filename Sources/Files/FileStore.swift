// Files.FileStore: the files_records table (one row per committed file) and every query
// on it, parameterized. Only FileService calls this; no other service reads the table.
import GRDB
import Persistence
import SpoolModel

struct FileStore: Sendable {
    let database: SQLiteDatabase

    static let migrations = [
        Migration("files.1") { db in
            try db.execute(sql: """
                CREATE TABLE files_records (
                    id TEXT PRIMARY KEY NOT NULL,
                    tenant TEXT NOT NULL,
                    size INTEGER NOT NULL CHECK (size >= 0),
                    sha256 TEXT NOT NULL,
                    content_type TEXT NOT NULL,
                    created_ms INTEGER NOT NULL,
                    storage_key TEXT NOT NULL UNIQUE
                ) WITHOUT ROWID;
                CREATE INDEX files_records_tenant ON files_records (tenant, id);
                """)
        },
    ]

    static let columns = "id, tenant, size, sha256, content_type, created_ms, storage_key"

    static func record(_ row: Row) -> FileRecord? {
        guard let id = FileID(row["id"] as String) else { return nil }
        return FileRecord(id: id, tenant: row["tenant"], size: row["size"], sha256: row["sha256"],
                          contentType: row["content_type"], createdMilliseconds: row["created_ms"],
                          storageKey: row["storage_key"])
    }

    func insert(_ r: FileRecord) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO files_records (\(Self.columns)) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [r.id.text, r.tenant, r.size, r.sha256, r.contentType, r.createdMilliseconds, r.storageKey])
        }
    }

    /// The record `id`, restricted to `tenant` unless nil (an admin).
    func fetch(_ id: FileID, tenant: String?) async throws -> FileRecord? {
        try await database.read { db in
            let row: Row?
            if let tenant {
                row = try Row.fetchOne(db, sql: "SELECT \(Self.columns) FROM files_records WHERE id = ? AND tenant = ?",
                                       arguments: [id.text, tenant])
            } else {
                row = try Row.fetchOne(db, sql: "SELECT \(Self.columns) FROM files_records WHERE id = ?", arguments: [id.text])
            }
            return row.flatMap(Self.record)
        }
    }

    /// Deletes the row and returns it (nil when there was none for this tenant).
    func remove(_ id: FileID, tenant: String?) async throws -> FileRecord? {
        try await database.write { db in
            let row: Row?
            if let tenant {
                row = try Row.fetchOne(db, sql: "DELETE FROM files_records WHERE id = ? AND tenant = ? RETURNING \(Self.columns)",
                                       arguments: [id.text, tenant])
            } else {
                row = try Row.fetchOne(db, sql: "DELETE FROM files_records WHERE id = ? RETURNING \(Self.columns)", arguments: [id.text])
            }
            return row.flatMap(Self.record)
        }
    }

    /// A page in id order (creation order): after `after` when given, else from `offset`.
    func page(tenant: String?, after: String?, offset: Int, limit: Int) async throws -> (records: [FileRecord], total: Int) {
        try await database.read { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let tenant {
                conditions.append("tenant = ?")
                _ = arguments.append(contentsOf: [tenant])
            }
            let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM files_records" + filter, arguments: arguments) ?? 0
            if let after {
                conditions.append("id > ?")
                _ = arguments.append(contentsOf: [after])
            }
            let pageFilter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            _ = arguments.append(contentsOf: [limit, after == nil ? offset : 0])
            let rows = try Row.fetchAll(db, sql: "SELECT \(Self.columns) FROM files_records" + pageFilter + " ORDER BY id LIMIT ? OFFSET ?",
                                        arguments: arguments)
            return (rows.compactMap(Self.record), total)
        }
    }

    func exists(_ id: FileID, tenant: String) async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM files_records WHERE id = ? AND tenant = ?)",
                              arguments: [id.text, tenant]) ?? false
        }
    }

    func totalBytes() async throws -> Int64 {
        try await database.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) FROM files_records") ?? 0 }
    }

    /// Storage key → file id of every row (the start-up reconciliation).
    func allKeys() async throws -> [String: String] {
        try await database.read { db in
            var out: [String: String] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT id, storage_key FROM files_records")
            while let row = try rows.next() { out[row["storage_key"]] = row["id"] }
            return out
        }
    }
}
