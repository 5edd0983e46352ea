// Relational: one small SQL surface over both databases a dispatcher can keep its state in:
// SQLite (Persistence, through GRDB) and PostgreSQL (Postgres, through libpq). A service
// writes each query once, with `?` placeholders, in the SQL both dialects share (INSERT ...
// ON CONFLICT, RETURNING, CAST); only its schema steps are written per dialect, because
// the types differ (SQLite's INTEGER is 64-bit, PostgreSQL's is not). Values cross as
// `SQLValue`; rows come back as `SQLRow` with typed, throwing accessors. Bodies run on the
// blocking pool, never on a ring thread, as both databases' own calls do.
//
// The job store keeps its own two implementations (JobStore): it is the hot path, and it
// uses what only one side has (SQLite's single-writer cache, PostgreSQL's row locks).
import Persistence
import Postgres

public enum SQLDialect: String, Sendable { case sqlite, postgresql }

/// A value bound to a placeholder or read from a column.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
}

/// What may be bound to a `?`: strings, integers, doubles and booleans (stored as 0 and 1,
/// the same in both dialects).
public protocol SQLConvertible: Sendable {
    var sqlValue: SQLValue { get }
}

extension String: SQLConvertible { public var sqlValue: SQLValue { .text(self) } }
extension Int: SQLConvertible { public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Int64: SQLConvertible { public var sqlValue: SQLValue { .integer(self) } }
extension Double: SQLConvertible { public var sqlValue: SQLValue { .real(self) } }
extension Bool: SQLConvertible { public var sqlValue: SQLValue { .integer(self ? 1 : 0) } }

/// A column that is not there, or holds what the accessor cannot read as asked.
public struct SQLColumnError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { "database: \(message)" }
}

/// One result row. PostgreSQL sends every value as text; SQLite as what was stored. The
/// accessors read either.
public struct SQLRow: Sendable {
    public let columns: [String]
    public let values: [SQLValue]

    public init(columns: [String], values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }

    public func value(_ name: String) throws(SQLColumnError) -> SQLValue {
        guard let i = columns.firstIndex(of: name) else { throw SQLColumnError(message: "no column \(name) in the result") }
        return values[i]
    }

    public func optionalString(_ name: String) throws(SQLColumnError) -> String? {
        switch try value(name) {
        case .null: return nil
        case .text(let s): return s
        case .integer(let n): return String(n)
        case .real(let d): return "\(d)"
        }
    }

    public func string(_ name: String) throws(SQLColumnError) -> String {
        guard let s = try optionalString(name) else { throw SQLColumnError(message: "column \(name) is NULL") }
        return s
    }

    public func optionalInt64(_ name: String) throws(SQLColumnError) -> Int64? {
        switch try value(name) {
        case .null: return nil
        case .integer(let n): return n
        case .real(let d) where d == d.rounded() && abs(d) < 9e18: return Int64(d)
        case .text(let s):
            guard let n = Int64(s) else { throw SQLColumnError(message: "column \(name) holds \(s), not an integer") }
            return n
        case .real(let d): throw SQLColumnError(message: "column \(name) holds \(d), not an integer")
        }
    }

    public func int64(_ name: String) throws(SQLColumnError) -> Int64 {
        guard let n = try optionalInt64(name) else { throw SQLColumnError(message: "column \(name) is NULL") }
        return n
    }

    public func int(_ name: String) throws(SQLColumnError) -> Int { Int(try int64(name)) }
    public func bool(_ name: String) throws(SQLColumnError) -> Bool {
        // Stored as 0/1; PostgreSQL's own booleans ("t"/"f") are read too.
        if case .text(let s) = try value(name), s == "t" || s == "f" { return s == "t" }
        return try int64(name) != 0
    }

    public func optionalDouble(_ name: String) throws(SQLColumnError) -> Double? {
        switch try value(name) {
        case .null: return nil
        case .integer(let n): return Double(n)
        case .real(let d): return d
        case .text(let s):
            guard let d = Double(s) else { throw SQLColumnError(message: "column \(name) holds \(s), not a number") }
            return d
        }
    }
}

/// Statements inside one `reading` or `writing` body. Not Sendable: it belongs to the one
/// blocking-pool thread running the body.
public protocol SQLSession {
    var dialect: SQLDialect { get }
    /// Runs one statement and returns its rows (none for a statement without RETURNING).
    func query(_ sql: String, _ arguments: [(any SQLConvertible)?]) throws -> [SQLRow]
    /// Runs one statement and returns the number of rows it changed.
    @discardableResult
    func execute(_ sql: String, _ arguments: [(any SQLConvertible)?]) throws -> Int
}

extension SQLSession {
    public func query(_ sql: String) throws -> [SQLRow] { try query(sql, []) }

    /// The first row, or nil.
    public func one(_ sql: String, _ arguments: [(any SQLConvertible)?] = []) throws -> SQLRow? {
        try query(sql, arguments).first
    }

    /// The first column of the first row as an integer (COUNT, SUM, EXISTS), or nil.
    public func integer(_ sql: String, _ arguments: [(any SQLConvertible)?] = []) throws -> Int64? {
        guard let row = try one(sql, arguments), let first = row.columns.first else { return nil }
        return try row.optionalInt64(first)
    }

    /// Whether the query returns any row.
    public func exists(_ sql: String, _ arguments: [(any SQLConvertible)?] = []) throws -> Bool {
        try one(sql, arguments) != nil
    }
}

/// One schema step, in both dialects. Names are unique across services ("files.1") and
/// are the names SQLite databases made before this module already recorded.
public struct SQLMigration: Sendable {
    public let name: String
    public let sqlite: String
    public let postgresql: String
    public init(_ name: String, sqlite: String, postgresql: String) {
        self.name = name
        self.sqlite = sqlite
        self.postgresql = postgresql
    }
}

/// A database a service keeps its tables in.
public protocol RelationalDatabase: Sendable {
    var dialect: SQLDialect { get }
    /// Runs `body` where it sees committed data only; it must not write.
    func reading<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T
    /// Runs `body` in one transaction, committed (durably) before this returns and rolled
    /// back when `body` throws. It may run more than once (PostgreSQL retries a
    /// serialization failure), so `body` must have no effect outside the database.
    func writing<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T
    /// Applies the steps not applied yet, in order.
    func migrate(_ migrations: [SQLMigration]) async throws
    /// Whether the database answers (readiness).
    func isReachable() async -> Bool
}
