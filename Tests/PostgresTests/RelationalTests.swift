// PostgresTests.RelationalTests: the one SQL surface on both databases. The same
// statements (written once, `?` placeholders) give the same rows on SQLite and on a real
// PostgreSQL: integers past 32 bits, text with quotes and question marks, NULL, reals,
// booleans as 0/1, RETURNING, ON CONFLICT, changed-row counts; a failing body rolls its
// transaction back on both; schema steps apply once per dialect. Then the placeholder
// rewrite alone: `?` inside literals and quoted identifiers is left as it is.
import Foundation
import Persistence
import Postgres
@testable import Relational
import SpoolTestSupport
import XCTest

final class RelationalTests: XCTestCase {
    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    static let schema = [SQLMigration("t.1", sqlite: """
        CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL, note TEXT, score REAL, flag INTEGER NOT NULL);
        """, postgresql: """
        CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, n BIGINT NOT NULL, note TEXT, score DOUBLE PRECISION, flag INTEGER NOT NULL);
        """)]

    func databases() async throws -> [any RelationalDatabase] {
        let dir = NSTemporaryDirectory() + "spool-relational-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let sqlite = try SQLiteDatabase(path: dir + "/t.sqlite")
        let pool = try await PostgresPool.open(PostgresPoolConfiguration(url: try PostgresServer.shared(by: Self.self).createDatabase("rel")))
        addTeardownBlock {
            try? await sqlite.close()
            await pool.close()
            try? FileManager.default.removeItem(atPath: dir)
        }
        return [sqlite, pool]
    }

    func testTheSameStatementsGiveTheSameRowsOnBoth() async throws {
        var results: [String] = []
        for db in try await databases() {
            try await db.migrate(Self.schema)
            try await db.migrate(Self.schema)  // applied once
            let tricky = "it's a 'quote' and a ? mark"
            let out = try await db.writing { s -> String in
                try s.execute("INSERT INTO items (id, n, note, score, flag) VALUES (?, ?, ?, ?, ?)", ["a", Int64(1) << 40, tricky, 2.5, true])
                try s.execute("INSERT INTO items (id, n, note, score, flag) VALUES (?, ?, ?, ?, ?)", ["b", -7, nil, nil, false])
                let skipped = try s.execute("INSERT INTO items (id, n, flag) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING", ["a", 0, 0])
                let bumped = try s.query("UPDATE items SET n = n + 1 WHERE id = ? RETURNING id, n", ["b"])
                let changed = try s.execute("UPDATE items SET flag = ? WHERE flag = ?", [1, 0])
                let rows = try s.query("SELECT * FROM items WHERE note = ? OR note IS NULL ORDER BY id", [tricky])
                let described = try rows.map { r in
                    "\(try r.string("id")) \(try r.int64("n")) \(try r.optionalString("note") ?? "NULL") "
                        + "\(try r.optionalDouble("score").map { "\($0)" } ?? "NULL") \(try r.bool("flag"))"
                }
                let total = try s.integer("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM items")
                return "skipped=\(skipped) bumped=\(try bumped[0].int64("n")) changed=\(changed) total=\(total ?? -1) "
                    + described.joined(separator: "; ") + " exists=\(try s.exists("SELECT 1 FROM items WHERE id = ?", ["zz"]))"
            }
            results.append(out)
        }
        XCTAssertEqual(results.count, 2)
        XCTAssertEqual(results[0], results[1], "SQLite and PostgreSQL differ")
        XCTAssertEqual(results[0], "skipped=0 bumped=-6 changed=1 total=\((Int64(1) << 40) - 6) "
                       + "a \(Int64(1) << 40) it's a 'quote' and a ? mark 2.5 true; b -6 NULL NULL true exists=false")
    }

    /// A body that throws leaves nothing behind, on both.
    func testAFailingBodyRollsBackOnBoth() async throws {
        struct Stop: Error {}
        for db in try await databases() {
            try await db.migrate(Self.schema)
            do {
                try await db.writing { s in
                    try s.execute("INSERT INTO items (id, n, flag) VALUES (?, ?, ?)", ["x", 1, 0])
                    throw Stop()
                }
                XCTFail("the body's error was swallowed (\(db.dialect))")
            } catch is Stop {}
            let n = try await db.reading { s in try s.integer("SELECT COUNT(*) FROM items") }
            XCTAssertEqual(n, 0, "\(db.dialect)")
            let missing = try await db.reading { s in try s.one("SELECT * FROM items WHERE id = ?", ["x"]) }
            XCTAssertNil(missing)
            XCTAssertThrowsError(try SQLRow(columns: ["a"], values: [.text("x")]).int64("a"))
            XCTAssertThrowsError(try SQLRow(columns: ["a"], values: [.null]).string("a"))
            XCTAssertThrowsError(try SQLRow(columns: ["a"], values: [.null]).string("b"))
        }
    }

    func testPlaceholdersOutsideQuotesAreNumbered() {
        XCTAssertEqual(PlaceholderRewrite.numbered("SELECT ? , '?' , \"a?\" FROM t WHERE x = ? AND y = 'it''s ?' AND z = ?"),
                       "SELECT $1 , '?' , \"a?\" FROM t WHERE x = $2 AND y = 'it''s ?' AND z = $3")
        XCTAssertEqual(PlaceholderRewrite.numbered("SELECT 1"), "SELECT 1")
    }
}
