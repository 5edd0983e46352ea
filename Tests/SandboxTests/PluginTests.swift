// Plugins (M3) through the real loader and the real sandboxed runner: test plugins built
// from test_plugin.c with cc at test time (one variant per -D), and the HandBrake plugin
// from Plugins/handbrake (built by `make plugins`, or here when missing).
import EngineRuntime
import Foundation
import Jobs
import Plugins
import Sandbox
import SpoolModel
import SpoolTestSupport
import TranscodeAPI
import XCTest

final class PluginTests: XCTestCase {
    static let dir: String = {
        let d = SandboxTests.scratch + "/plugins"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()
    static let header = SandboxTests.repo + "/CShims/CPlugin/include"

    /// Builds a variant of test_plugin.c as DIR/NAME.so.
    static func build(_ variant: String, name: String, into directory: String = dir) throws -> String {
        let src = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("test_plugin.c").path
        let out = directory + "/\(name).so"
        let (rc, log) = try runProcess("/usr/bin/cc", ["-shared", "-fPIC", "-O1", "-D\(variant)", "-DPLUGIN_NAME=\"\(name)\"",
                                                       "-I", header, "-o", out, src])
        guard rc == 0 else { throw XCTSkip("cc could not build the test plugin: \(log)") }
        return out
    }

    func testTheLoaderRefusesWhatIsNotAPluginWithTheReason() throws {
        let bad = Self.dir + "/bad"
        try? FileManager.default.removeItem(atPath: bad)
        try FileManager.default.createDirectory(atPath: bad, withIntermediateDirectories: true)
        _ = try Self.build("GOOD", name: "good", into: bad)
        _ = try Self.build("ABI99", name: "future", into: bad)
        _ = try Self.build("NO_ENTRY", name: "noentry", into: bad)
        _ = try Self.build("NO_POLL", name: "nopoll", into: bad)
        FileManager.default.createFile(atPath: bad + "/garbage.so", contents: Data("not an ELF file".utf8))
        let (plugins, errors) = PluginLibrary.loadDirectory(bad)
        XCTAssertEqual(plugins.map(\.name), ["good"])
        XCTAssertEqual(plugins.first?.capabilities, ["good"])
        let reasons = errors.map(\.description).joined(separator: "\n")
        XCTAssertEqual(errors.count, 4, reasons)
        XCTAssertTrue(reasons.contains("future.so: is built for plugin ABI version 99; this engine speaks version 1"), reasons)
        XCTAssertTrue(reasons.contains("noentry.so: has no spool_plugin_entry symbol"), reasons)
        XCTAssertTrue(reasons.contains("nopoll.so: nopoll lacks poll"), reasons)
        XCTAssertTrue(reasons.contains("garbage.so: cannot be loaded"), reasons)
    }

    func runner(_ c: ConfinementReport, plugins: [String]) throws -> SandboxRunner {
        guard let spool = SandboxTests.spool else { throw XCTSkip(".build/debug/spool not built") }
        var config = SandboxConfiguration(executable: spool, confinement: c)
        for path in plugins {
            let p = try PluginLibrary.load(path)
            config.plugins.append(PluginInfo(name: p.name, path: p.path, capabilities: p.capabilities, capabilitiesJSON: p.capabilitiesJSON))
        }
        return SandboxRunner(configuration: config, capabilitiesJSON: "{\"encoders\":[\"libx264\"]}")
    }

    func job(_ name: String, requiring: [String], preset: String = "h264-360p") throws -> RunnerJob {
        guard let clip = SandboxTests.clip else { throw XCTSkip(".build/debug/spool not built") }
        let dir = Self.dir + "/jobs/\(name)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var spec = JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset(preset))
        spec.requiredCapabilities = requiring
        return RunnerJob(jobID: name, spec: spec, inputPath: clip, outputDirectory: dir + "/out")
    }

    func testAPluginJobRunsInTheSandboxAndOthersStayBuiltIn() async throws {
        let good = try Self.build("GOOD", name: "tplug", into: Self.dir)
        let spawn = try Self.build("SPAWN", name: "tspawn", into: Self.dir)
        for c in SandboxTests.confinements() {
            let runner = try runner(c, plugins: [good, spawn])
            let caps = try JSONSerialization.jsonObject(with: Data(runner.capabilitiesJSON().utf8)) as? [String: Any]
            XCTAssertEqual(caps?["capabilities"] as? [String], ["tplug", "tspawn"])
            XCTAssertEqual((caps?["plugins"] as? [[String: Any]])?.compactMap { $0["name"] as? String }, ["tplug", "tspawn"])

            let seen = ProgressBox()
            let j = try job("plugin-\(c.kind)", requiring: ["tplug"])
            let r = try await runner.run(j) { _ in seen.bump() }
            XCTAssertEqual(r.work, 7)
            XCTAssertEqual(try String(contentsOfFile: j.outputDirectory + "/plugin.txt", encoding: .utf8), "made by a plugin\n")
            XCTAssertGreaterThan(seen.count, 0, "\(c.kind): the plugin's progress did not come through")

            // A plugin job may start a program (its own profile); the built-in one may not (SandboxTests).
            let s = try job("spawn-\(c.kind)", requiring: ["tspawn"])
            _ = try await runner.run(s) { _ in }
            XCTAssertEqual(try String(contentsOfFile: s.outputDirectory + "/plugin.txt", encoding: .utf8), "made by a program\n")

            // A job without a plugin capability still goes to libav.
            let plain = try job("plain-\(c.kind)", requiring: ["h264"])
            _ = try await runner.run(plain) { _ in }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: plain.outputDirectory), ["h264-360p.mp4"])
        }
    }

    func testAPluginThatCrashesOrFailsFailsTheJobAndTheRunnerServesOn() async throws {
        let segv = try Self.build("SEGV_START", name: "tsegv", into: Self.dir)
        let fail = try Self.build("FAIL", name: "tfail", into: Self.dir)
        for c in SandboxTests.confinements() {
            let runner = try runner(c, plugins: [segv, fail])
            let j = try job("segv-\(c.kind)", requiring: ["tsegv"])
            do {
                _ = try await runner.run(j) { _ in }
                XCTFail("\(c.kind): a plugin that segfaults completed")
            } catch let error as TranscodeFailure {
                XCTAssertEqual(error.code, "worker_crashed", "\(c.kind): \(error.message)")
                XCTAssertTrue(error.message.contains("SIGSEGV"), error.message)
                XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory))
            }
            let f = try job("fail-\(c.kind)", requiring: ["tfail"])
            do {
                _ = try await runner.run(f) { _ in }
                XCTFail("\(c.kind): a failing plugin completed")
            } catch let error as TranscodeFailure {
                XCTAssertEqual(error.code, "invalid_data", "\(c.kind): \(error.message)")
                XCTAssertEqual(error.message, "the plugin did not like it")
                XCTAssertFalse(FileManager.default.fileExists(atPath: f.outputDirectory), "\(c.kind): a failed plugin job left outputs")
            }
            // The next (built-in) job on the same runner completes.
            let next = try job("after-\(c.kind)", requiring: [])
            _ = try await runner.run(next) { _ in }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: next.outputDirectory), ["h264-360p.mp4"])
        }
    }

    /// The HandBrake plugin (Plugins/handbrake) in the sandbox: capabilities from
    /// HandBrakeCLI's preset list, a transcode checked with ffprobe, and a cancel.
    func testTheHandBrakePluginTranscodesInTheSandbox() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/HandBrakeCLI") else { throw XCTSkip("handbrake-cli is not installed") }
        var path = SandboxTests.repo + "/.build/plugins/handbrake.so"
        if !FileManager.default.fileExists(atPath: path) {
            path = Self.dir + "/handbrake.so"
            let (rc, log) = try runProcess("/usr/bin/cc", ["-shared", "-fPIC", "-O2", "-I", Self.header, "-o", path,
                                                           SandboxTests.repo + "/Plugins/handbrake/handbrake_plugin.c"])
            XCTAssertEqual(rc, 0, log)
        }
        let hb = try PluginLibrary.load(path)
        XCTAssertEqual(hb.name, "handbrake")
        XCTAssertTrue(hb.capabilities.contains("handbrake"))
        XCTAssertTrue(hb.capabilities.contains("handbrake-preset:Very_Fast_480p30"), "\(hb.capabilities)")
        for c in SandboxTests.confinements() {
        let runner = try runner(c, plugins: [path])
        let j = try job("handbrake-\(c.kind)", requiring: ["handbrake"], preset: "h264-360p")
        let seen = ProgressBox()
        _ = try await runner.run(j) { _ in seen.bump() }
        let out = j.outputDirectory + "/h264-360p.mp4"
        let (rc, probe) = try runProcess("/usr/bin/ffprobe", ["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", out])
        XCTAssertEqual(rc, 0, probe)
        XCTAssertTrue(probe.contains("h264,"), probe)
        XCTAssertTrue(probe.contains("aac"), probe)
        let (_, encoder) = try runProcess("/usr/bin/ffprobe", ["-v", "error", "-show_entries", "format_tags=encoder", "-of", "csv=p=0", out])
        XCTAssertTrue(encoder.contains("HandBrake"), "\(c.kind): encoder tag \(encoder)")
        // A named HandBrake preset through its capability.
        let named = try job("handbrake-named-\(c.kind)", requiring: ["handbrake", "handbrake-preset:Very_Fast_720p30"], preset: "h264-720p")
        _ = try await runner.run(named) { _ in }
        XCTAssertTrue(FileManager.default.fileExists(atPath: named.outputDirectory + "/h264-720p.mp4"))
        XCTAssertGreaterThan(seen.count, 0, "\(c.kind): no progress from HandBrakeCLI")
        }
    }
}

extension PluginTests {
    static func outcome(_ runner: SandboxRunner, _ job: RunnerJob, _ onProgress: @escaping @Sendable () -> Void) async -> Result<RunnerResult, TranscodeFailure> {
        do { return .success(try await runner.run(job) { _ in onProgress() }) } catch { return .failure(error) }
    }

    /// A cancel reaches the job through its table (SIGTERM to the worker): the built-in
    /// transcoder and HandBrakeCLI both stop, nothing is left running or written.
    func testCancelGoesThroughThePluginTable() async throws {
        guard let spool = SandboxTests.spool else { throw XCTSkip(".build/debug/spool not built") }
        let long = Self.dir + "/long.mp4"
        if !FileManager.default.fileExists(atPath: long) {
            let (rc, out) = try runProcess(spool, ["synthesize", long, "--seconds", "8", "--width", "640", "--height", "360"])
            XCTAssertEqual(rc, 0, out)
        }
        var plugins: [String] = []
        let hb = SandboxTests.repo + "/.build/plugins/handbrake.so"
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/HandBrakeCLI"), FileManager.default.fileExists(atPath: hb) { plugins.append(hb) }
        for c in SandboxTests.confinements() {
            let runner = try runner(c, plugins: plugins)
            for requiring in [[], plugins.isEmpty ? nil : ["handbrake"]].compactMap({ $0 }) {
                var made = try job("cancel-\(c.kind)-\(requiring.count)", requiring: requiring)
                made.inputPath = long
                let j = made
                let id = j.jobID
                let started = Date()
                let seen = ProgressBox()
                Task {
                    for _ in 0..<200 where seen.count == 0 { try? await Task.sleep(nanoseconds: 50_000_000) }
                    runner.cancel(jobID: id)
                }
                let result = await Self.outcome(runner, j) { seen.bump() }
                switch result {
                case .success: XCTFail("\(c.kind) \(requiring): a cancelled job completed")
                case .failure(let f): XCTAssertTrue(f.isCancelled, "\(c.kind) \(requiring): \(f.code): \(f.message)")
                }
                XCTAssertLessThan(Date().timeIntervalSince(started), 15, "\(c.kind) \(requiring)")
                XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory), "\(c.kind) \(requiring): outputs left")
                // No HandBrakeCLI left running (a zombie waiting for its reaper is not running).
                let (_, left) = try runProcess("/bin/sh", ["-c", "ps -eo stat=,comm= | awk '$2 == \"HandBrakeCLI\" && $1 !~ /^Z/'"])
                XCTAssertEqual(left.trimmingCharacters(in: .whitespacesAndNewlines), "", "\(c.kind): HandBrakeCLI still running")
            }
        }
    }
}
