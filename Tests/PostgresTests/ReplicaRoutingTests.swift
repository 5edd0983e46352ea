// PostgresTests.ReplicaRoutingTests: the pieces of replica routing that need no server:
// WAL positions parse and order as PostgreSQL prints them (and nothing else parses), a
// postgres:// URL moves to another server keeping user, password, database and options,
// and a request session keeps the highest position its writes reached.
@testable import Postgres
import XCTest

final class ReplicaRoutingTests: XCTestCase {
    func testWALPositionsParseAndOrder() {
        let a = WALPosition(text: "0/16B3748"), b = WALPosition(text: "1/0"), c = WALPosition(text: "16/B374D848")
        XCTAssertEqual(a?.value, 0x16B3748)
        XCTAssertEqual(b?.value, 1 << 32)
        XCTAssertEqual(c?.text, "16/B374D848")
        XCTAssertTrue(a! < b! && b! < c!)
        for bad in ["", "0", "/1", "1/", "0/123456789", "x/1", "0/1/2", "-1/0", " 0/1"] {
            XCTAssertNil(WALPosition(text: bad), bad)
        }
    }

    func testURLsMoveToAnotherServer() {
        XCTAssertEqual(PostgresURL.server(of: "postgres://spool:pw@127.0.0.1:5433/spool"), "127.0.0.1:5433")
        XCTAssertEqual(PostgresURL.server(of: "postgresql://db.internal/spool"), "db.internal:5432")
        XCTAssertEqual(PostgresURL.url("postgres://spool:p@ss@127.0.0.1:5433/spool?sslmode=disable", onServer: "127.0.0.1:6000"),
                       "postgres://spool:p@ss@127.0.0.1:6000/spool?sslmode=disable")
        XCTAssertEqual(PostgresURL.url("postgres://h:1", onServer: "r:2"), "postgres://r:2")
        XCTAssertNil(PostgresURL.server(of: "host=127.0.0.1 port=5432"))
        XCTAssertNil(PostgresURL.server(of: "postgres:///spool"))
    }

    func testASessionKeepsItsHighestWrite() {
        let s = ReadSession(replicaAllowed: false, notBefore: nil)
        XCTAssertNil(s.written)
        s.recordWrite(WALPosition(200))
        s.recordWrite(WALPosition(100))
        XCTAssertEqual(s.written, WALPosition(200))
    }
}
