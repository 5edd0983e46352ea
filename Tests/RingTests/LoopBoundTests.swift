// LoopBound: the value is usable on its loop (from a task or a closure the loop runs) and
// reading it from any other thread traps, in debug and release builds. The trap is
// observed from outside: the test binary runs itself as a child process for that case.
import Foundation
@testable import Ring
import SpoolTestSupport
import XCTest

final class LoopBoundTests: XCTestCase {
    final class Tally { var count = 0 }

    static let childVariable = "SPOOL_LOOPBOUND_CHILD"

    func testOnLoopAccessWorksFromTasksAndClosures() async throws {
        let loop = try EventLoop.start(configuration: loopConfiguration())
        defer { loop.shutdown() }
        let bound = try await loop.run { LoopBound(Tally(), loop: loop) }
        let counted = try await loop.run { () -> Int in
            bound.value.count += 1
            // A child task inherits the loop as its executor, so it may read the value too.
            await withTaskGroup(of: Void.self) { g in
                g.addTask { bound.value.count += 1 }
            }
            return bound.value.count
        }
        XCTAssertEqual(counted, 2)
        let done = Counter()
        loop.execute {
            bound.value.count += 1
            done.add()
        }
        let settled = try await eventually(on: loop) { done.value == 1 }
        XCTAssertTrue(settled)
        let final = try await loop.run { bound.value.count }
        XCTAssertEqual(final, 3)
    }

    /// In the parent: runs this test again in a child process, which reads a loop-bound
    /// value from the test's own thread and must die of the precondition.
    func testOffLoopAccessTraps() async throws {
        if ProcessInfo.processInfo.environment[Self.childVariable] == "1" {
            let loop = try EventLoop.start(configuration: loopConfiguration())
            let bound = try await loop.run { LoopBound(Tally(), loop: loop) }
            print("child: reading the value off its loop")
            fflush(nil)
            _ = bound.value.count
            print("child: still alive after reading the value off its loop")
            fflush(nil)
            loop.shutdown()
            return
        }
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var env = ProcessInfo.processInfo.environment
        env[Self.childVariable] = "1"
        let (status, output) = try runProcess(exe, ["RingTests.LoopBoundTests/testOffLoopAccessTraps"], environment: env)
        XCTAssertTrue(output.contains("child: reading the value off its loop"), "the child did not get to the access:\n\(output)")
        XCTAssertFalse(output.contains("child: still alive"), "off-loop access did not trap:\n\(output)")
        XCTAssertNotEqual(status, 0, output)
        #if DEBUG
        XCTAssertTrue(output.contains("LoopBound value used off event loop"), output)
        #endif
    }
}
