// ServerConfig.Reloader: a changed file (seen by the poll) applies the reloadable keys,
// keeps the restart-only ones out, and an invalid file changes nothing. The poll is
// called directly; the run loop's SIGHUP path is driven by a stream and a manual clock.
import Foundation
import ServerConfig
import Threads
import XCTest

final class ReloaderTests: XCTestCase {
    var path = ""

    override func setUpWithError() throws {
        let dir = NSTemporaryDirectory() + "spool-reload-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        path = dir + "/spool.json"
    }

    /// Replaces the file by rename (a new inode), as editors and config managers do.
    func write(_ text: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func start(_ text: String) throws -> (Reloader, LiveSettings) {
        try write(text)
        let loader = ConfigLoader(filePath: path, environment: [:])
        let live = LiveSettings(try loader.load())
        return (Reloader(loader: loader, live: live, clock: ManualClock()), live)
    }

    func testUnchangedFileIsNotReloaded() throws {
        let (reloader, _) = try start(#"{"jobs": {"max_attempts": 2}}"#)
        XCTAssertEqual(reloader.check(), .unchanged)
    }

    func testReloadAppliesSafeKeysAndKeepsRestartOnlyKeys() throws {
        let (reloader, live) = try start(#"{"listen": "127.0.0.1:9000", "loops": 2, "jobs": {"max_attempts": 2}}"#)
        try write(#"{"listen": "127.0.0.1:9999", "loops": 2, "log_level": "debug", "jobs": {"max_attempts": 9}, "files": {"max_file_bytes": 4096}}"#)
        XCTAssertEqual(reloader.check(), .applied(changed: ["log_level", "jobs.max_attempts", "files.max_file_bytes"], needsRestart: ["listen"]))
        XCTAssertEqual(live.current.jobs.maxAttempts, 9)
        XCTAssertEqual(live.current.logLevel, "debug")
        XCTAssertEqual(live.current.files.maxFileBytes, 4096)
        XCTAssertEqual(live.current.listen, "127.0.0.1:9000", "listen needs a restart: the running value stays")
        XCTAssertEqual(reloader.check(), .unchanged, "the same file again is not a change")
    }

    func testInvalidReloadKeepsTheOldSettings() throws {
        let (reloader, live) = try start(#"{"jobs": {"max_attempts": 2}}"#)
        let before = live.current
        try write(#"{"jobs": {"max_attempts": 0, "default_ttl_seconds": 60}}"#)
        guard case .rejected(let error) = reloader.check() else { return XCTFail("an invalid file was applied") }
        XCTAssertEqual(error.problems, ["jobs.max_attempts = 0 (from file \(path)): must be an integer in 1...100"])
        XCTAssertEqual(live.current, before, "nothing of an invalid file is applied, not even its valid keys")

        try write(#"{"jobs": {"max_attempts": 2, "tll": 5}}"#)
        guard case .rejected = reloader.check() else { return XCTFail("an unknown key was accepted on reload") }
        try write(#"{"jobs": {"max_attempts": 3"#)
        guard case .rejected = reloader.check() else { return XCTFail("a truncated file was accepted on reload") }
        XCTAssertEqual(live.current, before)

        try write(#"{"jobs": {"max_attempts": 4}}"#)
        XCTAssertEqual(reloader.check(), .applied(changed: ["jobs.max_attempts"], needsRestart: []))
        XCTAssertEqual(live.current.jobs.maxAttempts, 4)
    }

    func testRunReloadsOnRequestAndPollsOnTheClock() async throws {
        try write(#"{"jobs": {"max_attempts": 2}}"#)
        let loader = ConfigLoader(filePath: path, environment: [:])
        let live = LiveSettings(try loader.load())
        let clock = ManualClock()
        let reloader = Reloader(loader: loader, live: live, clock: clock)
        let (requests, hangup) = AsyncStream<Void>.makeStream()
        let task = Task { await reloader.run(requests: requests) }
        defer { task.cancel() }

        // A request (SIGHUP) reloads even when the file's identity looks the same.
        try write(#"{"jobs": {"max_attempts": 5}}"#)
        hangup.yield()
        try await waitUntil { live.current.jobs.maxAttempts == 5 }

        // The poll: a changed file is seen once the injected clock passes the interval.
        try write(#"{"jobs": {"max_attempts": 6}}"#)
        try await waitUntil(advancing: clock) { live.current.jobs.maxAttempts == 6 }
    }

    /// Polls a condition the run loop's task sets (no ordering by sleeps: the condition
    /// itself is awaited, with a generous bound).
    func waitUntil(advancing clock: ManualClock? = nil, _ condition: @escaping () -> Bool) async throws {
        for _ in 0..<2_000 {
            if condition() { return }
            clock?.advance(by: .seconds(1))
            try await Task.sleep(for: .milliseconds(5))
        }
        XCTFail("condition never became true")
    }
}
