// Relational.PostgresBackend: PostgresPool (libpq) behind RelationalDatabase. Reads run in
// autocommit, writes in one READ COMMITTED transaction (retried by the pool on a
// serialization failure or deadlock), schema steps under the pool's advisory lock. The
// `?` placeholders services write become `$1, $2, ...` here.
import Postgres
import Synchronization

extension PostgresPool: RelationalDatabase {
    public var dialect: SQLDialect { .postgresql }

    public func reading<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await read { c in try body(PostgresSession(connection: c)) }
    }

    public func writing<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await transaction { c in try body(PostgresSession(connection: c)) }
    }

    public func migrate(_ migrations: [SQLMigration]) async throws {
        try await migrate(migrations.map { PostgresMigration($0.name, $0.postgresql) })
    }
}

struct PostgresSession: SQLSession {
    let connection: PostgresConnection
    var dialect: SQLDialect { .postgresql }

    func query(_ sql: String, _ arguments: [(any SQLConvertible)?]) throws -> [SQLRow] {
        let result = try run(sql, arguments)
        return result.values.map { row in
            SQLRow(columns: result.columns, values: row.map { $0.map(SQLValue.text) ?? .null })
        }
    }

    func execute(_ sql: String, _ arguments: [(any SQLConvertible)?]) throws -> Int {
        try run(sql, arguments).affected
    }

    private func run(_ sql: String, _ arguments: [(any SQLConvertible)?]) throws -> PostgresRows {
        try connection.query(PlaceholderRewrite.numbered(sql), arguments.map { v -> (any PostgresBindable)? in
            switch v?.sqlValue ?? .null {
            case .null: return nil
            case .integer(let n): return n
            case .real(let d): return d
            case .text(let s): return s
            }
        })
    }
}

/// `?` → `$n`, outside quoted literals and identifiers. Statements are a few fixed strings
/// per service, so each is rewritten once and kept.
enum PlaceholderRewrite {
    private static let cache = Mutex<[String: String]>([:])

    static func numbered(_ sql: String) -> String {
        if let hit = cache.withLock({ $0[sql] }) { return hit }
        var out = ""
        out.reserveCapacity(sql.utf8.count + 8)
        var n = 0
        var quote: Character? = nil
        for ch in sql {
            if let q = quote {
                if ch == q { quote = nil }
                out.append(ch)
            } else if ch == "'" || ch == "\"" {
                quote = ch
                out.append(ch)
            } else if ch == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(ch)
            }
        }
        // Bounded: statements built from a varying number of conditions are few shapes.
        cache.withLock { c in if c.count < 512 { c[sql] = out } }
        return out
    }
}
