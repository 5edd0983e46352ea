// The engine's I/O-wait signal (EngineRuntime.IOWait): the busiest disk's share of time
// with I/O in flight, from /proc/diskstats, never the CPU's iowait (which counts threads
// parked in io_uring_enter).
@testable import EngineRuntime
import XCTest

final class IOWaitTests: XCTestCase {
    func testTheBusiestDiskCountsAndLoopDevicesDoNot() {
        let before = """
               7       0 loop0 10 0 80 5 0 0 0 0 0 100 5 0 0 0 0 0 0
             253       0 vda 500 20 9000 300 700 50 12000 900 0 1000 1200 0 0 0 0 0 0
             253       1 vda1 400 20 8000 250 600 50 11000 800 0 900 1050 0 0 0 0 0 0
             259       0 nvme0n1 100 0 800 40 10 0 80 5 0 200 45
            """
        let after = """
               7       0 loop0 10 0 80 5 0 0 0 0 0 1100 5 0 0 0 0 0 0
             253       0 vda 600 20 9900 360 800 50 13000 990 0 1600 1350 0 0 0 0 0 0
             253       1 vda1 480 20 8700 300 680 50 11800 870 0 1300 1170 0 0 0 0 0 0
             259       0 nvme0n1 100 0 800 40 10 0 80 5 0 250 45
            """
        let a = IOWait.ioTicks(before), b = IOWait.ioTicks(after)
        XCTAssertNil(a["loop0"], "loop devices are left out")
        XCTAssertEqual(a["vda"], 1000)
        XCTAssertEqual(b["nvme0n1"], 250)
        // vda: 600 ms busy of 1000: 0.6 (the busiest; loop0's 1000 ms does not count).
        XCTAssertEqual(IOWait.busiest(previous: a, current: b, elapsedMilliseconds: 1000) ?? -1, 0.6, accuracy: 1e-9)
        XCTAssertEqual(IOWait.busiest(previous: a, current: b, elapsedMilliseconds: 100), 1, "capped at 1")
        XCTAssertNil(IOWait.busiest(previous: a, current: b, elapsedMilliseconds: 0))
        XCTAssertEqual(IOWait.busiest(previous: b, current: b, elapsedMilliseconds: 1000), 0)
    }

    func testTheLiveReadingIsAShare() {
        _ = IOWait.fraction()
        usleep(100_000)
        if let f = IOWait.fraction() { XCTAssertTrue((0...1).contains(f), "\(f)") }
    }
}
