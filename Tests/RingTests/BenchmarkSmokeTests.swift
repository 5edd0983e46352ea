// Keeps the benchmark harness from rotting: compiles the C yardstick and load generator
// from Benchmarks/yardstick, and drives `spool echo` and the yardstick for half a second
// each. echo_load checks every connection's first echo byte for byte before it counts.
// No timing is asserted here; Benchmarks/run.sh does the measuring.
import Foundation
import SpoolTestSupport
import XCTest

final class BenchmarkSmokeTests: XCTestCase {
    var work: URL!
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    override func setUp() {
        work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("spool-bench-smoke-\(getpid())")
        try? FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: work) }

    @discardableResult
    func run(_ exe: String, _ args: [String]) throws -> (Int32, String) { try runProcess(exe, args) }

    func drive(_ server: String, _ args: [String], port: Int, load: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: server)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        // Wait (bounded) for the port to accept.
        var up = false
        for _ in 0..<100 where !up {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = UInt16(port).bigEndian
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            up = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
            close(s)
            if !up { usleep(50_000) }
        }
        XCTAssertTrue(up, "\(server) did not start listening")
        let (code, out) = try run(load, ["\(port)", "8", "1024", "0.5"])
        XCTAssertEqual(code, 0, out)
        return out
    }

    func testYardstickAndSpoolEchoUnderTheLoadGenerator() throws {
        let yard = root.appendingPathComponent("Benchmarks/yardstick")
        let load = work.appendingPathComponent("echo_load").path
        let (c1, o1) = try run("/usr/bin/cc", ["-O2", "-o", load, yard.appendingPathComponent("echo_load.c").path])
        XCTAssertEqual(c1, 0, o1)
        let spool = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spool").path
        guard FileManager.default.isExecutableFile(atPath: spool) else { throw XCTSkip("spool not built next to the tests") }

        // With the pool flag the README documents (it once parsed as --pool-mi-b).
        let port = Int(ServiceProcess.freePort())
        let out = try drive(spool, ["echo", "--listen", "127.0.0.1:\(port)", "--pool-mib", "8"], port: port, load: load)
        XCTAssertTrue(out.contains("round_trips="), out)
        XCTAssertFalse(out.contains("round_trips=0 "), out)

        // The yardstick needs io_uring; under the seccomp pass it cannot run.
        let yardBin = work.appendingPathComponent("echo_uring").path
        let (c2, o2) = try run("/usr/bin/cc", ["-O2", "-o", yardBin, yard.appendingPathComponent("echo_uring.c").path, "-luring"])
        XCTAssertEqual(c2, 0, o2)
        let facts = try run(spool, ["kernel-check"])
        guard facts.0 != 1 else { throw XCTSkip("io_uring unusable here: the C yardstick cannot run") }
        let yport = Int(ServiceProcess.freePort())
        let yout = try drive(yardBin, ["\(yport)"], port: yport, load: load)
        XCTAssertTrue(yout.contains("round_trips="), yout)
    }
}
