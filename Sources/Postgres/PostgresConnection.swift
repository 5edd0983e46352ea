// Postgres: PostgreSQL through libpq (CLibPQ, Debian's libpq-dev), for the services a
// shared database serves when several dispatchers run. This file is the only user of the C
// API: a connection, parameterized statements with text parameters and text results, and
// the server's errors with their SQLSTATE. Every call blocks, so connections are used only
// on the blocking pool (PostgresPool), never on a ring thread; docs/adr/0008 says why the
// blocking pool rather than libpq's non-blocking mode on the ring.
import CLibPQ
#if canImport(Glibc)
import Glibc
#endif

/// A failure talking to PostgreSQL. `sqlState` is the server's five-character code
/// ("23505" unique violation, "40001" serialization failure, ...) when it answered.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Could not connect, or the connection broke.
        case connection
        /// The server refused a statement.
        case server
        /// The pool is closed, or no connection came within the wait.
        case pool
        /// A result this code cannot read (a column missing, a value of the wrong form).
        case decoding
    }
    public let kind: Kind
    public let sqlState: String?
    public let message: String

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String {
        "postgres \(kind.rawValue)\(sqlState.map { " \($0)" } ?? ""): \(message)"
    }

    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// A transaction that may succeed if run again (serialization failure, deadlock).
    public var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" }
}

/// The rows a statement returned, all values as text (NULL as nil), and how many rows it changed.
public struct PostgresRows: Sendable {
    public let columns: [String]
    public let values: [[String?]]
    public let affected: Int

    public var count: Int { values.count }
    public var isEmpty: Bool { values.isEmpty }
    public subscript(_ i: Int) -> PostgresRow { PostgresRow(columns: columns, values: values[i]) }
    public var rows: [PostgresRow] { values.map { PostgresRow(columns: columns, values: $0) } }
}

/// One row: values by column name, in text form, with typed reads that throw `.decoding`.
public struct PostgresRow: Sendable {
    public let columns: [String]
    public let values: [String?]

    func index(_ name: String) throws(PostgresError) -> Int {
        guard let i = columns.firstIndex(of: name) else { throw PostgresError(.decoding, "no column \(name) in the result") }
        return i
    }

    public func optionalString(_ name: String) throws(PostgresError) -> String? { values[try index(name)] }

    public func string(_ name: String) throws(PostgresError) -> String {
        guard let v = try optionalString(name) else { throw PostgresError(.decoding, "\(name) is NULL") }
        return v
    }

    public func optionalInt64(_ name: String) throws(PostgresError) -> Int64? {
        guard let v = try optionalString(name) else { return nil }
        guard let n = Int64(v) else { throw PostgresError(.decoding, "\(name) = \(v.debugDescription) is not an integer") }
        return n
    }

    public func int64(_ name: String) throws(PostgresError) -> Int64 {
        guard let v = try optionalInt64(name) else { throw PostgresError(.decoding, "\(name) is NULL") }
        return v
    }

    public func int(_ name: String) throws(PostgresError) -> Int { Int(try int64(name)) }

    public func double(_ name: String) throws(PostgresError) -> Double {
        let v = try string(name)
        guard let d = Double(v) else { throw PostgresError(.decoding, "\(name) = \(v.debugDescription) is not a number") }
        return d
    }

    public func bool(_ name: String) throws(PostgresError) -> Bool {
        switch try string(name) {
        case "t", "true": return true
        case "f", "false": return false
        case let v: throw PostgresError(.decoding, "\(name) = \(v.debugDescription) is not a boolean")
        }
    }
}

/// A value bound to a `$n` parameter, sent in PostgreSQL's text form.
public protocol PostgresBindable: Sendable {
    var postgresText: String { get }
}

extension String: PostgresBindable { public var postgresText: String { self } }
extension Int: PostgresBindable { public var postgresText: String { String(self) } }
extension Int64: PostgresBindable { public var postgresText: String { String(self) } }
extension Double: PostgresBindable { public var postgresText: String { "\(self)" } }
extension Bool: PostgresBindable { public var postgresText: String { self ? "true" : "false" } }

/// One libpq connection. Not thread-safe: the pool hands it to one blocking-pool thread at
/// a time.
public final class PostgresConnection: @unchecked Sendable {
    private let handle: OpaquePointer
    /// When it was last handed back to the pool (for the idle timeout and health checks).
    var idleSince: Int64 = 0

    private init(handle: OpaquePointer) { self.handle = handle }

    /// Connects with a libpq connection string or URL (`postgres://user:pw@host:port/db?...`).
    public static func connect(_ conninfo: String) throws(PostgresError) -> PostgresConnection {
        guard let h = PQconnectdb(conninfo) else { throw PostgresError(.connection, "libpq could not allocate a connection") }
        let c = PostgresConnection(handle: h)
        guard PQstatus(h) == CONNECTION_OK else {
            throw PostgresError(.connection, c.lastError())
        }
        return c
    }

    deinit { PQfinish(handle) }

    /// Whether libpq still considers the connection usable.
    public var isOpen: Bool { PQstatus(handle) == CONNECTION_OK }

    private func lastError() -> String {
        guard let m = PQerrorMessage(handle) else { return "unknown error" }
        return String(cString: m).trimmingTrailingNewlines
    }

    /// Runs one statement with `$1...` parameters (text form, NULL for nil) and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) throws(PostgresError) -> PostgresRows {
        if parameters.isEmpty { return try read(PQexecParams(handle, sql, 0, nil, nil, nil, nil, 0)) }
        // NULL stays a null pointer; every other value is a C string freed after the call.
        let cStrings: [UnsafeMutablePointer<CChar>?] = parameters.map { p in p.flatMap { strdup($0.postgresText) } }
        defer { for p in cStrings { free(p) } }
        let values: [UnsafePointer<CChar>?] = cStrings.map { $0.map { UnsafePointer($0) } }
        return try read(PQexecParams(handle, sql, Int32(values.count), nil, values, nil, nil, 0))
    }

    /// Runs statements without parameters (several, separated by ';': migrations).
    public func execute(_ sql: String) throws(PostgresError) {
        _ = try read(PQexec(handle, sql))
    }

    private func read(_ result: OpaquePointer?) throws(PostgresError) -> PostgresRows {
        guard let result else {
            throw PostgresError(isOpen ? .server : .connection, lastError())
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            break
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = PQresultErrorMessage(result).map { String(cString: $0).trimmingTrailingNewlines } ?? "statement failed"
            throw PostgresError(isOpen ? .server : .connection, message, sqlState: state)
        }
        let nrows = Int(PQntuples(result)), ncols = Int(PQnfields(result))
        var columns: [String] = []
        columns.reserveCapacity(ncols)
        for c in 0..<ncols { columns.append(PQfname(result, Int32(c)).map { String(cString: $0) } ?? "?column?") }
        var values: [[String?]] = []
        values.reserveCapacity(nrows)
        for r in 0..<nrows {
            var row: [String?] = []
            row.reserveCapacity(ncols)
            for c in 0..<ncols {
                if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                    row.append(nil)
                } else {
                    row.append(PQgetvalue(result, Int32(r), Int32(c)).map { String(cString: $0) })
                }
            }
            values.append(row)
        }
        let affected = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
        return PostgresRows(columns: columns, values: values, affected: affected)
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" { s = s.dropLast() }
        return String(s)
    }
}
