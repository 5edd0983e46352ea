// DiskBallast: the room held back beside the database for a delete on a full disk is real
// blocks (not a sparse file), let go on demand, and taken back only when there is room for
// it above what must stay free.
import Foundation
import Persistence
import XCTest

final class DiskBallastTests: XCTestCase {
    func testTheBallastIsHeldLetGoAndTakenBack() async throws {
        let dir = NSTemporaryDirectory() + "spool-ballast-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ballast = DiskBallast(path: dir + "/spool.ballast", bytes: 1 << 20)
        XCTAssertFalse(ballast.isHeld)
        let held = await ballast.ensure(keepFree: 0)
        XCTAssertTrue(held)
        XCTAssertTrue(ballast.isHeld)
        var st = stat()
        XCTAssertEqual(stat(ballast.path, &st), 0)
        XCTAssertEqual(Int64(st.st_size), 1 << 20)
        XCTAssertGreaterThanOrEqual(Int64(st.st_blocks) * 512, 1 << 20, "allocated, not sparse")
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let again = await ballast.ensure(keepFree: 0)
        XCTAssertTrue(again, "already held")
        let released = await ballast.release()
        XCTAssertTrue(released)
        XCTAssertFalse(ballast.isHeld)
        let twice = await ballast.release()
        XCTAssertFalse(twice, "nothing left to let go")
        // Not taken back when that would leave less than keepFree.
        let greedy = await ballast.ensure(keepFree: Int64.max / 4)
        XCTAssertFalse(greedy)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ballast.path))
    }
}
