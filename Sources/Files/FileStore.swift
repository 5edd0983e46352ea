// Files.FileStore: the files_records table (one row per committed file) and every query
// on it, parameterized, the same on SQLite and PostgreSQL. Only FileService calls this; no
// other service reads the table.
import Relational
import SpoolModel

struct FileStore: Sendable {
    let database: any RelationalDatabase

    static let migrations = [
        SQLMigration("files.1", sqlite: """
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
            """, postgresql: """
            CREATE TABLE files_records (
                id TEXT PRIMARY KEY NOT NULL,
                tenant TEXT NOT NULL,
                size BIGINT NOT NULL CHECK (size >= 0),
                sha256 TEXT NOT NULL,
                content_type TEXT NOT NULL,
                created_ms BIGINT NOT NULL,
                storage_key TEXT NOT NULL UNIQUE
            );
            CREATE INDEX files_records_tenant ON files_records (tenant, id);
            """),
    ]

    static let columns = "id, tenant, size, sha256, content_type, created_ms, storage_key"

    static func record(_ row: SQLRow) throws -> FileRecord? {
        guard let id = FileID(try row.string("id")) else { return nil }
        return FileRecord(id: id, tenant: try row.string("tenant"), size: try row.int64("size"), sha256: try row.string("sha256"),
                          contentType: try row.string("content_type"), createdMilliseconds: try row.int64("created_ms"),
                          storageKey: try row.string("storage_key"))
    }

    func insert(_ r: FileRecord) async throws {
        try await database.writing { db in
            try db.execute("INSERT INTO files_records (\(Self.columns)) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [r.id.text, r.tenant, r.size, r.sha256, r.contentType, r.createdMilliseconds, r.storageKey])
        }
    }

    /// " AND tenant = ?" with its argument when a tenant restricts the query (nil: an admin).
    private static func tenantFilter(_ tenant: String?) -> (sql: String, arguments: [(any SQLConvertible)?]) {
        tenant.map { (" AND tenant = ?", [$0]) } ?? ("", [])
    }

    /// The record `id`, restricted to `tenant` unless nil (an admin).
    func fetch(_ id: FileID, tenant: String?) async throws -> FileRecord? {
        let t = Self.tenantFilter(tenant)
        return try await database.reading { db in
            try db.one("SELECT \(Self.columns) FROM files_records WHERE id = ?" + t.sql, [id.text] + t.arguments).flatMap(Self.record)
        }
    }

    /// Deletes the row and returns it (nil when there was none for this tenant).
    func remove(_ id: FileID, tenant: String?) async throws -> FileRecord? {
        let t = Self.tenantFilter(tenant)
        return try await database.writing { db in
            try db.one("DELETE FROM files_records WHERE id = ?" + t.sql + " RETURNING \(Self.columns)",
                       [id.text] + t.arguments).flatMap(Self.record)
        }
    }

    /// A page in id order (creation order): after `after` when given, else from `offset`.
    func page(tenant: String?, after: String?, offset: Int, limit: Int) async throws -> (records: [FileRecord], total: Int) {
        try await database.reading { db in
            var conditions: [String] = []
            var arguments: [(any SQLConvertible)?] = []
            if let tenant {
                conditions.append("tenant = ?")
                arguments.append(tenant)
            }
            let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            let total = Int(try db.integer("SELECT COUNT(*) FROM files_records" + filter, arguments) ?? 0)
            if let after {
                conditions.append("id > ?")
                arguments.append(after)
            }
            let pageFilter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            arguments += [limit, after == nil ? offset : 0]
            let rows = try db.query("SELECT \(Self.columns) FROM files_records" + pageFilter + " ORDER BY id LIMIT ? OFFSET ?", arguments)
            return (try rows.compactMap(Self.record), total)
        }
    }

    func exists(_ id: FileID, tenant: String) async throws -> Bool {
        try await database.reading { db in
            try db.exists("SELECT 1 FROM files_records WHERE id = ? AND tenant = ?", [id.text, tenant])
        }
    }

    func totalBytes() async throws -> Int64 {
        try await database.reading { db in
            try db.integer("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM files_records") ?? 0
        }
    }

    /// Storage key → file id of every row (the start-up reconciliation).
    func allKeys() async throws -> [String: String] {
        try await database.reading { db in
            var out: [String: String] = [:]
            for row in try db.query("SELECT id, storage_key FROM files_records") {
                out[try row.string("storage_key")] = try row.string("id")
            }
            return out
        }
    }
}
