// Misuse of a pool buffer's ownership fails to compile: Tests/CompileFail is compiled
// with the toolchain's swiftc against the BufferPool module this build produced.
import Foundation
import SpoolTestSupport
import XCTest

final class CompileFailTests: XCTestCase {
    /// The snippet, the built modules, and the compiler; a missing piece fails the test
    /// (a skipped compile-fail test would prove nothing).
    func harness() throws -> (swiftc: String, modules: String, source: String) {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("CompileFail/use_after_consume.swift").path
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let modules = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("Modules").path
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let swiftc = path.split(separator: ":").map { "\($0)/swiftc" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: source), source)
        XCTAssertTrue(FileManager.default.fileExists(atPath: modules + "/BufferPool.swiftmodule"), "no BufferPool.swiftmodule in \(modules)")
        return (try XCTUnwrap(swiftc, "swiftc is not on the PATH"), modules, source)
    }

    /// Compiles to SIL: the move checker, which reports use after consume, runs there.
    func compile(_ h: (swiftc: String, modules: String, source: String), defines: [String]) throws -> (Int32, String) {
        try runProcess(h.swiftc, ["-emit-sil", "-o", "/dev/null", "-I", h.modules] + defines.flatMap { ["-D", $0] } + [h.source])
    }

    func testUseAfterConsumeDoesNotCompile() throws {
        let h = try harness()
        let (controlStatus, controlOutput) = try compile(h, defines: [])
        XCTAssertEqual(controlStatus, 0, "the control must compile:\n\(controlOutput)")
        let (status, output) = try compile(h, defines: ["COMPILE_FAIL"])
        XCTAssertNotEqual(status, 0, "using a consumed PooledBuffer compiled")
        let errors = output.split(separator: "\n").filter { $0.contains("error: 'buffer' used after consume") && $0.hasPrefix("/") }
        XCTAssertEqual(errors.count, 2, "one use-after-consume error per misuse:\n\(output)")
    }
}
