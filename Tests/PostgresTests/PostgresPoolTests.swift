// PostgresTests: the libpq wrapper and the pool against a real PostgreSQL the test starts
// (initdb + pg_ctl on a free loopback port; make test requires it): parameters travel as
// data whatever they hold; the server's errors keep their SQLSTATE; a transaction commits
// or rolls back whole; the pool never opens more than its maximum, makes callers wait in
// turn and fails them after the acquire timeout; statement_timeout applies; a connection
// the server cut is replaced and a read survives a server restart (the first request after
// one succeeds however many idle connections it left dead); migrations apply once
// even when two pools migrate at the same time.
import Postgres
import SpoolTestSupport
import Threads
import XCTest

final class PostgresPoolTests: XCTestCase {
    override class func tearDown() {
        PostgresServer.stopShared(by: self)
    }

    /// One server per class (initdb costs a second or two), a database per test.
    func database() throws -> String {
        return try PostgresServer.shared(by: Self.self).createDatabase()
    }

    func pool(_ url: String, max: Int = 4, configure: (inout PostgresPoolConfiguration) -> Void = { _ in }) async throws -> PostgresPool {
        var c = PostgresPoolConfiguration(url: url)
        c.maxConnections = max
        configure(&c)
        let p = try await PostgresPool.open(c)
        addTeardownBlock { await p.close() }
        return p
    }

    func testParametersAreDataAndErrorsKeepTheirState() async throws {
        let p = try await pool(try database())
        let tricky = "'; DROP TABLE t; --  \u{1F600} ünïcode \\ \"quoted\""
        let rows = try await p.read { c in
            try c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, note TEXT, ok BOOLEAN NOT NULL, score DOUBLE PRECISION)")
            try c.query("INSERT INTO t VALUES ($1, $2, $3, $4, $5)", [Int64.max, tricky, nil, true, 0.25])
            return try c.query("SELECT * FROM t WHERE name = $1", [tricky])
        }
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(try rows[0].int64("id"), Int64.max)
        XCTAssertEqual(try rows[0].string("name"), tricky)
        XCTAssertNil(try rows[0].optionalString("note"))
        XCTAssertTrue(try rows[0].bool("ok"))
        XCTAssertEqual(try rows[0].double("score"), 0.25)
        XCTAssertThrowsError(try rows[0].string("note"))
        XCTAssertThrowsError(try rows[0].string("missing"))

        do {
            _ = try await p.read { c in try c.query("INSERT INTO t (id, ok) VALUES ($1, $2)", [Int64.max, false]) }
            XCTFail("a duplicate key was accepted")
        } catch let e as PostgresError {
            XCTAssertTrue(e.isUniqueViolation, "\(e)")
            XCTAssertEqual(e.kind, .server)
        }
        do {
            _ = try await p.read { c in try c.query("SELEC 1") }
            XCTFail("a syntax error was accepted")
        } catch let e as PostgresError {
            XCTAssertEqual(e.sqlState, "42601", "\(e)")
        }
    }

    func testATransactionCommitsOrRollsBackWhole() async throws {
        let p = try await pool(try database())
        try await p.read { c in try c.execute("CREATE TABLE t (v INTEGER UNIQUE)") }
        try await p.transaction { c in
            try c.query("INSERT INTO t VALUES (1)")
            try c.query("INSERT INTO t VALUES (2)")
        }
        struct Refused: Error {}
        do {
            try await p.transaction { c in
                try c.query("INSERT INTO t VALUES (3)")
                throw Refused()
            }
            XCTFail("the body's throw was lost")
        } catch is Refused {}
        do {
            try await p.transaction { c in
                try c.query("INSERT INTO t VALUES (4)")
                try c.query("INSERT INTO t VALUES (1)")  // unique violation: all of it undone
            }
            XCTFail("a duplicate was committed")
        } catch let e as PostgresError {
            XCTAssertTrue(e.isUniqueViolation)
        }
        let values = try await p.read { c in try c.query("SELECT v FROM t ORDER BY v").rows.map { try $0.int("v") } }
        XCTAssertEqual(values, [1, 2])
    }

    func testThePoolStaysWithinItsMaximumAndCallersWaitInTurn() async throws {
        let p = try await pool(try database(), max: 3)
        let peak = try await withThrowingTaskGroup(of: Int.self) { g in
            for _ in 0..<24 {
                g.addTask {
                    try await p.read { c in
                        try c.query("SELECT pg_sleep(0.02)")
                        return try c.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()").rows[0].int("n")
                    }
                }
            }
            var m = 0
            for try await n in g { m = max(m, n) }
            return m
        }
        XCTAssertLessThanOrEqual(peak, 3, "the server saw more connections than the pool's maximum")
        let counts = p.counts
        XCTAssertLessThanOrEqual(counts.open, 3)
        XCTAssertEqual(counts.acquired, 24)
        XCTAssertGreaterThan(counts.waited, 0, "24 callers on 3 connections: some waited")
    }

    func testAcquireTimesOutWhenEveryConnectionIsHeld() async throws {
        let p = try await pool(try database(), max: 1) { $0.acquireTimeout = .milliseconds(200) }
        let holder = Task { try await p.read { c in try c.query("SELECT pg_sleep(1.5)") } }
        try await Task.sleep(for: .milliseconds(100))
        do {
            _ = try await p.read { c in try c.query("SELECT 1") }
            XCTFail("got a connection while the only one was held")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .pool, "\(e)")
        }
        _ = try await holder.value
        let after = try await p.read { c in try c.query("SELECT 1").count }
        XCTAssertEqual(after, 1, "the connection came back")
    }

    func testTheStatementTimeoutApplies() async throws {
        let p = try await pool(try database()) { $0.statementTimeout = .milliseconds(200) }
        do {
            _ = try await p.read { c in try c.query("SELECT pg_sleep(3)") }
            XCTFail("a 3 s statement ran past a 200 ms timeout")
        } catch let e as PostgresError {
            XCTAssertEqual(e.sqlState, "57014", "\(e)")  // query_canceled
        }
    }

    func testCutConnectionsAreReplacedAndReadsSurviveARestart() async throws {
        let url = try database()
        let p = try await pool(url, max: 2)
        try await p.read { c in try c.execute("CREATE TABLE t (v INTEGER)") }
        // Another session cuts every connection of the pool.
        let killer = try PostgresConnection.connect(url)
        try killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        let n = try await p.read { c in try c.query("SELECT count(*) AS n FROM t").rows[0].int("n") }
        XCTAssertEqual(n, 0)
        try await p.transaction { c in try c.query("INSERT INTO t VALUES (1)") }
        try PostgresServer.shared(by: Self.self).restart()
        let m = try await p.read { c in try c.query("SELECT count(*) AS n FROM t").rows[0].int("n") }
        XCTAssertEqual(m, 1)
    }

    /// A restart leaves every idle connection dead. The first read and the first transaction
    /// after it succeed however many there are: once one is found dead, the others idle since
    /// before then are checked before use (a read retries once, a transaction whose BEGIN
    /// failed up to three times, so without that check both fail on eight dead connections).
    func testARestartCostsNoRequestWithManyIdleConnections() async throws {
        let url = try database()
        let p = try await pool(url, max: 8)
        try await p.transaction { c in try c.execute("CREATE TABLE t (v INTEGER)") }
        // Eight reads at once leave eight idle connections.
        try await withThrowingTaskGroup(of: Void.self) { g in
            for _ in 0..<8 { g.addTask { _ = try await p.read { c in try c.query("SELECT pg_sleep(0.1)").count } } }
            try await g.waitForAll()
        }
        XCTAssertEqual(p.counts.idle, 8)
        try PostgresServer.shared(by: Self.self).restart()
        try await p.transaction { c in try c.query("INSERT INTO t VALUES (1)") }
        let n = try await p.read { c in try c.query("SELECT count(*) AS n FROM t").rows[0].int("n") }
        XCTAssertEqual(n, 1)
    }

    func testMigrationsApplyOnceEvenWhenTwoPoolsRace() async throws {
        let url = try database()
        let a = try await pool(url), b = try await pool(url)
        let steps = [
            PostgresMigration("demo.1", "CREATE TABLE demo (id BIGINT PRIMARY KEY)"),
            PostgresMigration("demo.2", "ALTER TABLE demo ADD COLUMN name TEXT NOT NULL DEFAULT ''; INSERT INTO demo (id) VALUES (1)"),
        ]
        async let first: Void = a.migrate(steps)
        async let second: Void = b.migrate(steps)
        _ = try await (first, second)
        try await a.migrate(steps)
        let rows = try await a.read { c in try c.query("SELECT count(*) AS n FROM demo").rows[0].int("n") }
        XCTAssertEqual(rows, 1, "the data step ran once")
        let names = try await a.read { c in try c.query("SELECT name FROM schema_migrations ORDER BY name").rows.map { try $0.string("name") } }
        XCTAssertEqual(names, ["demo.1", "demo.2"])
        // A failing step leaves nothing of itself and stops the ones after it.
        do {
            try await a.migrate(steps + [PostgresMigration("demo.3", "ALTER TABLE nothing ADD COLUMN x INTEGER"),
                                         PostgresMigration("demo.4", "CREATE TABLE later (x INTEGER)")])
            XCTFail("a broken migration was applied")
        } catch {}
        let after = try await a.read { c in try c.query("SELECT name FROM schema_migrations ORDER BY name").rows.map { try $0.string("name") } }
        XCTAssertEqual(after, ["demo.1", "demo.2"])
    }

    func testAServerNobodyRunsFailsTheOpenWithTheReason() async throws {
        var c = PostgresPoolConfiguration(url: "postgres://spool@127.0.0.1:\(ServiceProcess.freePort())/none")
        c.connectTimeoutSeconds = 2
        do {
            _ = try await PostgresPool.open(c)
            XCTFail("opened a pool to nothing")
        } catch let e as PostgresError {
            XCTAssertEqual(e.kind, .connection)
            XCTAssertTrue(e.message.contains("127.0.0.1") || e.message.contains("refused"), e.message)
        }
    }
}
