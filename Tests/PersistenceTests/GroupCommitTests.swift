// PersistenceTests.GroupCommitTests: SQLiteDatabase.write under concurrency. Writes that
// arrive together share a commit, yet each stays atomic on its own: one that throws (or
// breaks a constraint) leaves no trace and does not disturb the others, and every caller
// is answered only after its group committed. Also: one process per database file, and
// close() frees the file for a reopen.
import Foundation
import GRDB
import Persistence
import XCTest

final class GroupCommitTests: XCTestCase {
    var dir: String!

    override func setUp() {
        dir = NSTemporaryDirectory() + "spool-persistence-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    struct Refused: Error {}

    final class Commits: @unchecked Sendable {
        let lock = NSLock()
        var writes = 0
        func add() { lock.lock(); writes += 1; lock.unlock() }
    }

    func testConcurrentWritesShareCommitsAndStayAtomicEach() async throws {
        let commits = Commits()
        let db = try SQLiteDatabase(path: dir + "/t.sqlite", observer: { kind, _ in if kind == "write" { commits.add() } })
        try await db.migrate([Migration("t.1") { db in try db.execute(sql: "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)") }])
        let n = 300
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for i in 0..<n {
                group.addTask {
                    do {
                        try await db.write { db in
                            // Two rows per write: both or neither.
                            try db.execute(sql: "INSERT INTO t (k, v) VALUES (?, 'a')", arguments: [i * 2])
                            if i % 7 == 3 { throw Refused() }
                            // Every 11th collides with the first row of write i - 1 (a constraint error).
                            let second = i % 11 == 5 ? (i - 1) * 2 : i * 2 + 1
                            try db.execute(sql: "INSERT INTO t (k, v) VALUES (?, 'b')", arguments: [second])
                        }
                        return (i, true)
                    } catch {
                        return (i, false)
                    }
                }
            }
            var out: [Int: Bool] = [:]
            for await (i, ok) in group { out[i] = ok }
            return out
        }
        let rows = try await db.read { db in try Int.fetchAll(db, sql: "SELECT k FROM t ORDER BY k") }
        // Whichever of two colliding writes came first won; each acknowledged write left
        // both its rows and nothing else did.
        var expected: [Int] = []
        for i in 0..<n where outcomes[i] == true { expected += [i * 2, i % 11 == 5 ? (i - 1) * 2 : i * 2 + 1] }
        XCTAssertEqual(rows, expected.sorted(), "exactly the writes that were acknowledged, each whole")
        for i in 0..<n {
            if i % 7 == 3 { XCTAssertEqual(outcomes[i], false, "write \(i) threw") }
            if i % 7 != 3 && i % 11 != 5 && (i + 1) % 11 != 5 { XCTAssertEqual(outcomes[i], true, "write \(i) had no reason to fail") }
            if i % 11 == 5 && i % 7 != 3 && (i - 1) % 7 != 3 {
                XCTAssertTrue(outcomes[i] != outcomes[i - 1], "of writes \(i - 1) and \(i), exactly one may win row \((i - 1) * 2)")
            }
        }
        XCTAssertLessThan(commits.writes, n, "\(n) concurrent writes took \(commits.writes) commits: none were grouped")
    }

    func testASecondOpenOfTheSameFileIsRefusedUntilTheFirstIsGone() throws {
        var first: SQLiteDatabase? = try SQLiteDatabase(path: dir + "/t.sqlite")
        XCTAssertNotNil(first)
        XCTAssertThrowsError(try SQLiteDatabase(path: dir + "/t.sqlite")) { e in
            XCTAssertTrue("\(e)".contains("in use by another process"), "\(e)")
        }
        first = nil
        XCTAssertNoThrow(try SQLiteDatabase(path: dir + "/t.sqlite"))
    }

    /// A database file removed or replaced under a running server is not "reachable": the
    /// open connections would go on writing to the old inode, lost at the next start.
    func testAFileRemovedOrReplacedIsNotReachable() async throws {
        let path = dir + "/t.sqlite"
        let db = try SQLiteDatabase(path: path)
        let answered = await db.isReachable()
        XCTAssertTrue(answered)
        try FileManager.default.moveItem(atPath: path, toPath: path + ".moved")
        let removed = await db.isReachable()
        XCTAssertFalse(removed, "the file is gone from its path")
        FileManager.default.createFile(atPath: path, contents: Data())
        let replaced = await db.isReachable()
        XCTAssertFalse(replaced, "another file is at its path")
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: path + ".moved", toPath: path)
        let back = await db.isReachable()
        XCTAssertTrue(back, "the same file back in place")
    }

    /// close(): the same path opens again at once although the closed object is still
    /// referenced, with what was written, and the closed object refuses further reads.
    func testCloseCommitsQueuedWritesAndFreesTheFileForAReopen() async throws {
        let first = try SQLiteDatabase(path: dir + "/t.sqlite")
        try await first.write { db in try db.execute(sql: "CREATE TABLE t (v INTEGER NOT NULL)") }
        try await first.write { db in try db.execute(sql: "INSERT INTO t (v) VALUES (7)") }
        try await first.close()
        let second = try SQLiteDatabase(path: dir + "/t.sqlite")
        let awaited1 = try await second.read { db in try Int.fetchOne(db, sql: "SELECT v FROM t") }
        XCTAssertEqual(awaited1, 7)
        do {
            _ = try await first.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
            XCTFail("a closed database answered a read")
        } catch {}
        withExtendedLifetime(first) {}
    }

    /// A new database and its WAL are the owner's alone (0600); the process's umask does
    /// not widen them (an outside probe found spool.sqlite created 0644).
    func testANewDatabaseIsTheOwnersAlone() async throws {
        let old = umask(0o022)
        defer { umask(old) }
        let path = dir + "/private.sqlite"
        let db = try SQLiteDatabase(path: path)
        try await db.migrate([Migration("p.1") { db in try db.execute(sql: "CREATE TABLE p (k INTEGER PRIMARY KEY)") }])
        try await db.write { db in try db.execute(sql: "INSERT INTO p (k) VALUES (1)") }
        for file in [path, path + "-wal"] {
            let mode = (try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? NSNumber)?.intValue
            XCTAssertEqual(mode, 0o600, file)
        }
        try await db.close()
    }
}
