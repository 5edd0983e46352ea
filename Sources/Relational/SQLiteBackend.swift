// Relational.SQLiteBackend: SQLiteDatabase (GRDB) behind RelationalDatabase. Reads go to
// the reader pool, writes to the group commit, schema steps to GRDB's migrator under the
// names they always had.
import GRDB
import Persistence

extension SQLiteDatabase: RelationalDatabase {
    public var dialect: SQLDialect { .sqlite }

    public func reading<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await read { db in try body(SQLiteSession(db: db)) }
    }

    public func writing<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await write { db in try body(SQLiteSession(db: db)) }
    }

    public func migrate(_ migrations: [SQLMigration]) async throws {
        try await migrate(migrations.map { m in Migration(m.name) { db in try db.execute(sql: m.sqlite) } })
    }
}

struct SQLiteSession: SQLSession {
    let db: Database
    var dialect: SQLDialect { .sqlite }

    func query(_ sql: String, _ arguments: [(any SQLConvertible)?]) throws -> [SQLRow] {
        try Row.fetchAll(db, sql: sql, arguments: Self.arguments(arguments)).map { row in
            SQLRow(columns: Array(row.columnNames), values: row.databaseValues.map(Self.value))
        }
    }

    func execute(_ sql: String, _ arguments: [(any SQLConvertible)?]) throws -> Int {
        try db.execute(sql: sql, arguments: Self.arguments(arguments))
        return db.changesCount
    }

    static func arguments(_ values: [(any SQLConvertible)?]) -> StatementArguments {
        StatementArguments(values.map { v -> DatabaseValue in
            switch v?.sqlValue ?? .null {
            case .null: return .null
            case .integer(let n): return n.databaseValue
            case .real(let d): return d.databaseValue
            case .text(let s): return s.databaseValue
            }
        })
    }

    static func value(_ v: DatabaseValue) -> SQLValue {
        switch v.storage {
        case .null: return .null
        case .int64(let n): return .integer(n)
        case .double(let d): return .real(d)
        case .string(let s): return .text(s)
        case .blob(let b): return .text(String(decoding: b, as: UTF8.self))
        }
    }
}
