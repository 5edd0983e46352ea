// JobsTests.ShardRouterTests: where jobs land. The hash spreads ids evenly and always the
// same way; a layout added later routes ids made before it as they were placed and ids made
// after it over the grown set; layouts that go back in time or shrink are refused; a
// list's shard positions survive the trip through text and nothing else parses as one.
@testable import Jobs
import SpoolModel
import XCTest

final class ShardRouterTests: XCTestCase {
    func ids(_ n: Int, ms: UInt64) -> [JobID] {
        var rng = SystemRandomNumberGenerator()
        return (0..<n).map { i in JobID.generate(milliseconds: ms + UInt64(i), using: &rng) }
    }

    func testIdsSpreadEvenlyAndRouteTheSameWayEveryTime() {
        let router = ShardRouter(shardCount: 2)
        let all = ids(4_000, ms: 1_700_000_000_000)
        var counts = [0, 0]
        for id in all { counts[router.shard(of: id)] += 1 }
        // 4,000 fair coin flips: 2,000 ± 200 is more than 6 standard deviations.
        XCTAssertTrue((1_800...2_200).contains(counts[0]), "\(counts)")
        let again = ShardRouter(shardCount: 2)
        XCTAssertEqual(all.map(router.shard(of:)), all.map(again.shard(of:)))
        // Keys that differ in one character spread too (a bare FNV-1a puts the low bit by parity).
        let keys = (0..<4_000).map { router.shard(tenant: "acme", key: "key-\($0)", at: 0) }
        XCTAssertTrue((1_800...2_200).contains(keys.filter { $0 == 0 }.count))
        XCTAssertNotEqual(Array(keys.prefix(64)), (0..<64).map { $0 % 2 == 0 ? keys[0] : 1 - keys[0] }, "shards alternate with the last digit")
        let three = ShardRouter(shardCount: 3)
        XCTAssertEqual(Set(all.map(three.shard(of:))), [0, 1, 2])
    }

    func testALaterLayoutLeavesOlderJobsWhereTheyWere() throws {
        let grownAt: UInt64 = 1_800_000_000_000
        let before = ShardRouter(shardCount: 2)
        let after = try ShardRouter(shardCount: 3, layouts: ShardRouter.parseLayouts("2@0,3@\(grownAt)"))
        let old = ids(500, ms: grownAt - 1_000)
        XCTAssertEqual(old.map(after.shard(of:)), old.map(before.shard(of:)), "an old job moved")
        let new = ids(600, ms: grownAt)
        XCTAssertEqual(Set(new.map(after.shard(of:))), [0, 1, 2], "new jobs use the third shard too")
        XCTAssertEqual(after.count(at: grownAt - 1), 2)
        XCTAssertEqual(after.count(at: grownAt), 3)
        // Keys follow the layout of their moment.
        XCTAssertLessThan(after.shard(tenant: "acme", key: "k", at: grownAt - 1), 2)
    }

    func testBadLayoutsAreRefused() {
        XCTAssertThrowsError(try ShardRouter.parseLayouts("2@0,three@5"))
        XCTAssertThrowsError(try ShardRouter.parseLayouts("2"))
        XCTAssertThrowsError(try ShardRouter(shardCount: 2, layouts: [.init(sinceMilliseconds: 0, count: 3)]))
        XCTAssertThrowsError(try ShardRouter(shardCount: 3, layouts: [.init(sinceMilliseconds: 0, count: 2), .init(sinceMilliseconds: 0, count: 3)]))
        XCTAssertThrowsError(try ShardRouter(shardCount: 3, layouts: [.init(sinceMilliseconds: 0, count: 3), .init(sinceMilliseconds: 9, count: 2)]))
        // The first layout always starts at the beginning of time.
        let r = try? ShardRouter(shardCount: 2, layouts: [.init(sinceMilliseconds: 50, count: 2)])
        XCTAssertEqual(r?.layouts.first?.sinceMilliseconds, 0)
    }

    func testPositionsRoundTripAndNothingElseParses() {
        let a = ids(1, ms: 1_700_000_000_000)[0]
        let p = ShardPositions(ids: [a, nil, a])
        XCTAssertEqual(ShardPositions(text: p.text), p)
        XCTAssertEqual(p.text, "\(a.text)~-~\(a.text)")
        for bad in ["", a.text, "-", "\(a.text)~", "~", "\(a.text)~job_x", "\(a.text)~--", "\(a.text)~'; DROP TABLE jobs_jobs"] {
            XCTAssertNil(ShardPositions(text: bad), bad)
        }
    }
}
