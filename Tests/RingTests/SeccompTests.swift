// io_uring blocked by a seccomp filter (as Docker's default profile does): kernel-check
// says so and exits 1, the automatic choice falls back to epoll, and SPOOL_IO_BACKEND=uring
// refuses to start with a clear message. Runs the real `spool` binary as a child process.
import Foundation
import SpoolTestSupport
import XCTest

final class SeccompTests: XCTestCase {
    func spoolBinary() throws -> String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir.appendingPathComponent("spool"), dir.deletingLastPathComponent().appendingPathComponent("spool")] {
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
        }
        throw XCTSkip("spool binary not built next to the tests (run `swift build` first)")
    }

    func run(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String) {
        var e = ProcessInfo.processInfo.environment
        e.removeValue(forKey: "SPOOL_IO_BACKEND")
        for (k, v) in env { e[k] = v }
        return try runProcess(try spoolBinary(), args, environment: e)
    }

    func testKernelCheckUnderSeccompFallsBackToEpoll() throws {
        let (code, text) = try run(["kernel-check", "--simulate-seccomp", "--start-loop"])
        XCTAssertEqual(code, 1, text)
        XCTAssertTrue(text.contains("seccomp filter blocks io_uring"), text)
        XCTAssertTrue(text.contains("started loop:            epoll"), text)
    }

    func testForcedUringUnderSeccompFailsClearly() throws {
        let (code, text) = try run(["kernel-check", "--simulate-seccomp", "--start-loop"], env: ["SPOOL_IO_BACKEND": "uring"])
        XCTAssertEqual(code, 1, text)
        XCTAssertTrue(text.contains("SPOOL_IO_BACKEND=uring but io_uring cannot run"), text)
    }

    func testKernelCheckHere() throws {
        let (code, text) = try run(["kernel-check"])
        XCTAssertTrue([0, 77, 1].contains(code), text)
        XCTAssertTrue(text.contains("exit status:             \(code)"), text)
    }
}
