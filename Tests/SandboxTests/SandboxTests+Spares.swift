// SandboxTests+Spares: the spare workers a SandboxRunner keeps started ahead of jobs.
import EngineRuntime
import Foundation
import Jobs
import Sandbox
import SpoolModel
import SpoolTestSupport
import TranscodeAPI
import XCTest

extension SandboxTests {
    /// A spare worker (started before the job) takes the next job; a job with its own
    /// memory limit starts cold; slots are removed and a new spare comes up.
    func testASpareWorkerTakesTheNextJob() async throws {
        guard let spool = Self.spool, Self.clip != nil else { throw XCTSkip(".build/debug/spool not built") }
        for c in confinements() {
            var config = SandboxConfiguration(executable: spool, confinement: c)
            let spareDir = Self.scratch + "/spares-\(c.kind)"
            config.spareDirectory = spareDir
            let runner = SandboxRunner(configuration: config, capabilitiesJSON: "{}")
            for round in 0..<2 {
                try await waitForSpare(runner, "\(c.kind) round \(round)")
                let j = try job()
                let r = try await runner.run(j) { _ in }
                XCTAssertEqual(r.workerStartSeconds, 0, "\(c.kind): the job waited for a worker that was ready")
                XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: j.outputDirectory), ["h264-360p.mp4"])
                // Only the next spare's slot is left.
                XCTAssertLessThanOrEqual(try FileManager.default.contentsOfDirectory(atPath: spareDir).count, 1)
            }
            try await waitForSpare(runner, "\(c.kind) before the limited job")
            var spec = JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset("h264-360p"))
            spec.limits = TranscodeLimits(maxMemoryMiB: 2048)
            let r = try await runner.run(try job(spec)) { _ in }
            XCTAssertGreaterThan(try XCTUnwrap(r.workerStartSeconds), 0, "\(c.kind): a job with its own rlimits used the spare")
            XCTAssertEqual(runner.readySpares, 1, "\(c.kind): the spare stays for the next job")
        }
    }

    /// With two spares, two jobs at once both find a worker ready; a job that comes while
    /// the spares are still starting takes one of them rather than start a cold worker.
    func testSparesCoverConcurrentJobsAndAJobTakesAStartingSpare() async throws {
        guard let spool = Self.spool, Self.clip != nil else { throw XCTSkip(".build/debug/spool not built") }
        for c in confinements() {
            var config = SandboxConfiguration(executable: spool, confinement: c)
            config.spareDirectory = Self.scratch + "/spares2-\(c.kind)"
            config.spares = 2
            let runner = SandboxRunner(configuration: config, capabilitiesJSON: "{}")
            let early = try await runner.run(try job()) { _ in }
            let wait = try XCTUnwrap(early.workerStartSeconds), spawn = try XCTUnwrap(early.workerSpawnSeconds)
            // A cold worker's wait is its whole start (both measured from its spawn); a spare's
            // is measured from the job's hand-over, which can come before or after the spare's
            // spawn, but is never the same instant.
            XCTAssertGreaterThan(wait, 0, "\(c.kind): no worker can be ready the moment the runner is made")
            XCTAssertNotEqual(wait, spawn, "\(c.kind): the job started a cold worker instead of taking a starting spare")
            try await waitForSpare(runner, "\(c.kind) two spares", count: 2)
            let j1 = try job(), j2 = try job()
            async let a = runner.run(j1) { _ in }
            async let b = runner.run(j2) { _ in }
            let (r1, r2) = try await (a, b)
            XCTAssertEqual(r1.workerStartSeconds, 0, "\(c.kind): the first of two jobs found a ready worker")
            XCTAssertEqual(r2.workerStartSeconds, 0, "\(c.kind): the second of two jobs found a ready worker")
            for j in [j1, j2] { XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: j.outputDirectory), ["h264-360p.mp4"]) }
            try await waitForSpare(runner, "\(c.kind) two spares again", count: 2)
        }
    }

    /// Spares that cannot start leave a job nothing worse than a cold start: the job that
    /// took one while it was starting falls back to a cold worker and gets that one's reason.
    func testAJobWhoseSpareFailsStartsColdWithTheReason() async throws {
        for c in confinements() {
            var config = SandboxConfiguration(executable: Self.scratch + "/no-such-worker", confinement: c)
            config.spareDirectory = Self.scratch + "/spares-broken-\(c.kind)"
            config.killGraceSeconds = 1
            let r = await outcome(SandboxRunner(configuration: config, capabilitiesJSON: "{}"), try job())
            guard case .failure(let f) = r else { XCTFail("\(c.kind): completed"); continue }
            XCTAssertNotEqual(f.code, "spare_failed", "\(c.kind): the spare's failure reached the job")
            XCTAssertTrue(["worker_start", "worker_failed"].contains(f.code), "\(c.kind): \(f.code) \(f.message)")
        }
    }

    func waitForSpare(_ runner: SandboxRunner, _ what: String, count: Int = 1) async throws {
        for _ in 0..<600 where runner.readySpares < count { try await Task.sleep(nanoseconds: 50_000_000) }
        XCTAssertEqual(runner.readySpares, count, "\(what): the spares did not come up")
    }
}
