// The sandboxed runner (M20) against hostile workers and the real `spool worker`, in each
// confinement this machine offers (bubblewrap when it works here; the direct child always).
// Every escape test asserts the refusal and that the runner then still transcodes a real
// clip. The hostile worker is hostile_worker.c, built with cc into a scratch directory.
import EngineRuntime
import Foundation
import Jobs
import Sandbox
import SpoolModel
import SpoolTestSupport
import TranscodeAPI
import XCTest

final class SandboxTests: XCTestCase {
    static let scratch: String = {
        let dir = NSTemporaryDirectory() + "spool-sandbox-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The real worker: .build/debug/spool.
    static var spool: String? {
        let exe = repo + "/.build/debug/spool"
        return FileManager.default.isExecutableFile(atPath: exe) ? exe : nil
    }

    static let hostile: String? = {
        let out = scratch + "/hostile_worker"
        let src = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("hostile_worker.c").path
        guard let (rc, _) = try? runProcess("/usr/bin/cc", ["-O1", "-o", out, src]), rc == 0 else { return nil }
        return out
    }()

    /// A small real clip, made once by `spool synthesize`.
    static let clip: String? = {
        guard let spool else { return nil }
        let path = scratch + "/clip.mp4"
        guard let (rc, _) = try? runProcess(spool, ["synthesize", path, "--seconds", "1", "--width", "160", "--height", "90"]), rc == 0 else { return nil }
        return path
    }()

    func confinements() -> [ConfinementReport] { Self.confinements() }

    static func confinements() -> [ConfinementReport] {
        var out = [ConfinementReport.probe(allowBubblewrap: false)]
        let bwrap = ConfinementReport.probe()
        if bwrap.kind == .bubblewrap { out.append(bwrap) } else { print("bubblewrap unavailable here: \(bwrap.bubblewrapReason ?? "?")") }
        return out
    }

    var counter = 0
    func job(_ spec: JobSpec = JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset("h264-360p"))) throws -> RunnerJob {
        counter += 1
        let dir = Self.scratch + "/\(name.filter { $0.isLetter || $0.isNumber })-\(counter)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let input = Self.clip ?? (dir + "/input")
        if Self.clip == nil { FileManager.default.createFile(atPath: input, contents: Data("not media".utf8)) }
        return RunnerJob(jobID: "job-\(counter)", spec: spec, inputPath: input, outputDirectory: dir + "/out")
    }

    func runner(_ c: ConfinementReport, _ arguments: [String], limits: SandboxLimits = SandboxLimits()) throws -> SandboxRunner {
        guard let hostile = Self.hostile else { throw XCTSkip("cc could not build the hostile worker") }
        var config = SandboxConfiguration(executable: hostile, confinement: c)
        config.arguments = arguments
        config.limits = limits
        config.killGraceSeconds = 1
        return SandboxRunner(configuration: config, capabilitiesJSON: "{}")
    }

    func outcome(_ runner: SandboxRunner, _ job: RunnerJob) async -> Result<RunnerResult, TranscodeFailure> {
        do { return .success(try await runner.run(job) { _ in }) } catch { return .failure(error) }
    }

    /// The act was refused (not escaped), the job failed, nothing was left behind, and the
    /// next real job on this confinement completes.
    func assertRefused(_ c: ConfinementReport, _ arguments: [String], limits: SandboxLimits = SandboxLimits(),
                       file: StaticString = #filePath, line: UInt = #line) async throws {
        let j = try job()
        let r = await outcome(try runner(c, arguments, limits: limits), j)
        guard case .failure(let f) = r else { return XCTFail("\(c.kind) \(arguments): the job completed", file: file, line: line) }
        XCTAssertEqual(f.code, "refused", "\(c.kind) \(arguments): \(f.code): \(f.message)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory), file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory + ".sandbox"), file: file, line: line)
        try await assertRealJobCompletes(c, file: file, line: line)
    }

    func assertRealJobCompletes(_ c: ConfinementReport, file: StaticString = #filePath, line: UInt = #line) async throws {
        guard let spool = Self.spool, Self.clip != nil else { throw XCTSkip(".build/debug/spool not built") }
        let runner = SandboxRunner(configuration: SandboxConfiguration(executable: spool, confinement: c), capabilitiesJSON: "{}")
        let j = try job()
        let seen = ProgressBox()
        do {
            let r = try await runner.run(j) { _ in seen.bump() }
            XCTAssertGreaterThan(r.work, 0, file: file, line: line)
            let files = try FileManager.default.contentsOfDirectory(atPath: j.outputDirectory)
            XCTAssertEqual(files, ["h264-360p.mp4"], file: file, line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory + ".sandbox"), file: file, line: line)
            XCTAssertGreaterThan(seen.count, 0, "no progress came through the pipe", file: file, line: line)
        } catch {
            XCTFail("\(c.kind): the real job after it failed: \(error)", file: file, line: line)
        }
    }

    // MARK: escapes

    func testNetworkIsRefused() async throws {
        // A listener on loopback: nothing from the sandbox may reach it.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 8)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = String(UInt16(bigEndian: addr.sin_port))
        for c in confinements() {
            try await assertRefused(c, ["tcp", port])
            try await assertRefused(c, ["udp6"])
            try await assertRefused(c, ["netlink"])
        }
        // Nothing connected.
        _ = fcntl(listener, F_SETFL, O_NONBLOCK)
        XCTAssertLessThan(accept(listener, nil, nil), 0, "a sandboxed worker reached the loopback listener")
    }

    func testSecretsAreUnreadable() async throws {
        let data = Self.scratch + "/engine-data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: data + "/engine.json", contents: Data("{\"token\":\"secret\"}".utf8))
        for c in confinements() {
            try await assertRefused(c, ["read", "/etc/shadow"])
            try await assertRefused(c, ["read", data + "/engine.json"])
            // The engine's own /proc entries (its environment, its memory).
            try await assertRefused(c, ["read", "/proc/\(getpid())/environ"])
            try await assertRefused(c, ["read", "/proc/\(getpid())/mem"])
        }
    }

    func testWritesOutsideTheOutputDirectoryAreRefused() async throws {
        for c in confinements() {
            let target = Self.scratch + "/outside-\(c.kind).txt"
            try await assertRefused(c, ["write", target])
            XCTAssertFalse(FileManager.default.fileExists(atPath: target), "\(c.kind): the write outside landed")
            try await assertRefused(c, ["write", "/usr/spool-escape"])
        }
    }

    func testForkBombAndPtraceAreRefused() async throws {
        for c in confinements() {
            try await assertRefused(c, ["forkbomb"])
            try await assertRefused(c, ["ptrace", String(getpid())])
        }
    }

    func testTenGiBAllocationFails() async throws {
        var limits = SandboxLimits()
        limits.addressSpaceBytes = 1 << 30
        for c in confinements() { try await assertRefused(c, ["oom"], limits: limits) }
    }

    // MARK: crashes, hangs and garbage

    func testCrashesHangsAndGarbageFailTheJobAndLeaveNothing() async throws {
        var limits = SandboxLimits()
        limits.wallSeconds = 2
        var cpuLimits = SandboxLimits()
        cpuLimits.cpuSeconds = 1
        let cases: [([String], SandboxLimits, String, String)] = [
            (["segv-after-output"], SandboxLimits(), "worker_crashed", "SIGSEGV"),
            (["abort"], SandboxLimits(), "worker_crashed", "SIGABRT"),
            (["hang"], limits, "deadline_exceeded", "deadline of 2 s"),
            (["spin"], cpuLimits, "cpu_limit", "CPU time limit of 1 s"),
            (["garbage"], SandboxLimits(), "worker_protocol", "this is not JSON"),
            (["silent-exit"], SandboxLimits(), "worker_failed", "something went wrong"),
        ]
        for c in confinements() {
            for (args, l, code, text) in cases {
                let j = try job()
                let r = await outcome(try runner(c, args, limits: l), j)
                guard case .failure(let f) = r else { XCTFail("\(c.kind) \(args): completed"); continue }
                XCTAssertEqual(f.code, code, "\(c.kind) \(args): \(f.message)")
                XCTAssertTrue(f.message.contains(text), "\(c.kind) \(args): \(f.message)")
                XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory), "\(c.kind) \(args): partial outputs left")
                XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory + ".sandbox"), "\(c.kind) \(args)")
            }
            try await assertRealJobCompletes(c)
        }
    }

    func testCancelStopsTheChild() async throws {
        for c in confinements() {
            let r = try runner(c, ["hang"])
            let j = try job()
            let started = Date()
            Task { try? await Task.sleep(nanoseconds: 300_000_000); r.cancel(jobID: j.jobID) }
            let o = await outcome(r, j)
            guard case .failure(let f) = o else { XCTFail("\(c.kind): completed"); continue }
            XCTAssertTrue(f.isCancelled, "\(c.kind): \(f.code): \(f.message)")
            XCTAssertLessThan(Date().timeIntervalSince(started), 5, "\(c.kind): the cancel took the kill grace and more")
        }
    }

    func testAWellBehavedWorkersOutputsAreMovedIntoPlace() async throws {
        for c in confinements() {
            let j = try job()
            let r = await outcome(try runner(c, ["ok"]), j)
            guard case .success(let result) = r else { XCTFail("\(c.kind): \(r)"); continue }
            XCTAssertEqual(result.work, 42)
            XCTAssertEqual(try String(contentsOfFile: j.outputDirectory + "/out.txt", encoding: .utf8), "made in the sandbox\n")
        }
    }

    // MARK: the real worker

    func testRealWorkerTranscodesAndReportsBadMedia() async throws {
        guard let spool = Self.spool, Self.clip != nil else { throw XCTSkip(".build/debug/spool not built") }
        for c in confinements() {
            try await assertRealJobCompletes(c)
            // Not media: the worker's own failure comes back, and nothing is left.
            let runner = SandboxRunner(configuration: SandboxConfiguration(executable: spool, confinement: c), capabilitiesJSON: "{}")
            var j = try job()
            let bad = Self.scratch + "/not-media.mp4"
            FileManager.default.createFile(atPath: bad, contents: Data(repeating: 0x47, count: 10_000))
            j.inputPath = bad
            do {
                _ = try await runner.run(j) { _ in }
                XCTFail("\(c.kind): garbage input transcoded")
            } catch {
                XCTAssertFalse(error.code.hasPrefix("worker_"), "\(c.kind): \(error.code): \(error.message)")
                XCTAssertFalse(FileManager.default.fileExists(atPath: j.outputDirectory))
            }
        }
    }

    func testCapabilitiesSayHowTranscodesAreConfined() throws {
        for c in confinements() {
            let runner = SandboxRunner(configuration: SandboxConfiguration(executable: "/bin/true", confinement: c),
                                       capabilitiesJSON: "{\"encoders\":[\"libx264\"]}")
            let caps = try JSONSerialization.jsonObject(with: Data(runner.capabilitiesJSON().utf8)) as? [String: Any]
            XCTAssertEqual(caps?["encoders"] as? [String], ["libx264"])
            let sandbox = caps?["sandbox"] as? [String: Any]
            XCTAssertEqual(sandbox?["mode"] as? String, c.kind.rawValue)
            XCTAssertEqual(sandbox?["namespaces"] as? Bool, c.kind == .bubblewrap)
            XCTAssertEqual(sandbox?["seccomp"] as? Bool, true)
        }
    }
}

final class ProgressBox: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func bump() { lock.lock(); n += 1; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return n }
}

extension SandboxTests {
    func testTheWorkersStartLatencyIsMeasured() async throws {
        guard let spool = Self.spool, Self.clip != nil else { throw XCTSkip(".build/debug/spool not built") }
        for c in confinements() {
            let runner = SandboxRunner(configuration: SandboxConfiguration(executable: spool, confinement: c), capabilitiesJSON: "{}")
            let r = try await runner.run(try job()) { _ in }
            let start = try XCTUnwrap(r.workerStartSeconds, "\(c.kind)")
            XCTAssertGreaterThan(start, 0)
            XCTAssertLessThan(start, 30, "\(c.kind): a start latency that is not one")
        }
    }
}

/// Fuzzed media (zzuf-style mutations of synthesized clips) through the sandboxed runner
/// and the real worker, as an engine runs them: every job ends completed or failed with a
/// reason, a failed job leaves nothing behind, and the runner takes the next one.
/// SPOOL_SANDBOX_FUZZ=N sets the count (300 by default), SPOOL_SANDBOX_FUZZ_SEED the seed.
final class SandboxFuzzTests: XCTestCase {
    func testFuzzedMediaThroughTheSandboxedRunner() async throws {
        guard let spool = SandboxTests.spool else { throw XCTSkip(".build/debug/spool not built") }
        let env = ProcessInfo.processInfo.environment
        let count = env["SPOOL_SANDBOX_FUZZ"].flatMap(Int.init) ?? 300
        let seed = env["SPOOL_SANDBOX_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5EED_F022
        let dir = SandboxTests.scratch + "/fuzz"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var sources: [Data] = []
        for ext in ["mp4", "ts", "mkv"] {
            let path = dir + "/source.\(ext)"
            let (rc, out) = try runProcess(spool, ["synthesize", path, "--seconds", "1", "--width", "96", "--height", "64", "--fps", "10"])
            XCTAssertEqual(rc, 0, out)
            sources.append(try Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let confinement = ConfinementReport.probe()
        var config = SandboxConfiguration(executable: spool, confinement: confinement)
        config.limits.wallSeconds = 60
        config.limits.cpuSeconds = 60
        let runner = SandboxRunner(configuration: config, capabilitiesJSON: "{}")
        var rng = SplitMix(seed: seed)
        // The mutations are drawn in order from the seed; the jobs then run two at a time,
        // as an engine's two slots would.
        var inputs: [String] = []
        for i in 0..<count {
            var bytes = [UInt8](sources[i % sources.count])
            switch rng.next() % 4 {
            case 0, 1:  // bit flips at a zzuf-like ratio
                let flips = max(1, Int(Double(bytes.count) * Double(rng.next() % 80 + 4) / 10_000))
                for _ in 0..<flips { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8)) }
            case 2:     // truncated
                bytes.removeLast(Int(rng.next() % UInt64(bytes.count - 16)))
            default:    // a run overwritten with random bytes
                let at = Int(rng.next() % UInt64(bytes.count)), n = min(bytes.count - at, Int(rng.next() % 4096) + 1)
                for k in at..<(at + n) { bytes[k] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            let input = dir + "/input-\(i)"
            try Data(bytes).write(to: URL(fileURLWithPath: input))
            inputs.append(input)
        }
        let inputPaths = inputs
        /// One case's end: its code, or what went wrong with it.
        struct Ended: Sendable { var code: String; var problems: [String] }
        @Sendable func one(_ i: Int) async -> Ended {
            let input = inputPaths[i], out = dir + "/out-\(i)"
            let job = RunnerJob(jobID: "fuzz-\(i)", spec: JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset("h264-360p")),
                                inputPath: input, outputDirectory: out)
            var ended = Ended(code: "completed", problems: [])
            do {
                _ = try await runner.run(job) { _ in }
                if !FileManager.default.fileExists(atPath: out + "/h264-360p.mp4") { ended.problems.append("completed without its output") }
            } catch {
                ended.code = error.code
                if error.message.isEmpty { ended.problems.append("a failure without a reason") }
                if error.code == "worker_start" { ended.problems.append(error.message) }
                if FileManager.default.fileExists(atPath: out) { ended.problems.append("a failed job left outputs") }
            }
            if FileManager.default.fileExists(atPath: out + ".sandbox") { ended.problems.append("the staging directory stayed") }
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: out)
            return ended
        }
        var codes: [String: Int] = [:]
        await withTaskGroup(of: (Int, Ended).self) { group in
            var next = 0
            func start() { let i = next; next += 1; group.addTask { (i, await one(i)) } }
            while next < min(2, count) { start() }
            while let (i, ended) = await group.next() {
                codes[ended.code, default: 0] += 1
                for p in ended.problems { XCTFail("case \(i) (seed \(seed)): \(p)") }
                if next < count { start() }
            }
        }
        print("fuzzed media through the sandbox (\(confinement.kind), seed \(seed)): \(codes.sorted { $0.key < $1.key })")
        XCTAssertEqual(codes.values.reduce(0, +), count)
    }
}

extension SandboxTests {
    func testAJobsOwnLimitsApplyWithinTheEnginesCaps() async throws {
        let c = ConfinementReport.probe()
        var spec = JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset("h264-360p"))
        spec.limits = TranscodeLimits(maxSeconds: 1)
        let r = await outcome(try runner(c, ["hang"]), try job(spec))
        guard case .failure(let f) = r else { return XCTFail("completed") }
        XCTAssertEqual(f.code, "deadline_exceeded", f.message)
        XCTAssertTrue(f.message.contains("deadline of 1 s"), f.message)
        // Above the engine's cap, the cap wins.
        var capped = SandboxLimits()
        capped.wallSeconds = 1
        spec.limits = TranscodeLimits(maxSeconds: 600)
        let r2 = await outcome(try runner(c, ["hang"], limits: capped), try job(spec))
        guard case .failure(let f2) = r2 else { return XCTFail("completed") }
        XCTAssertTrue(f2.message.contains("deadline of 1 s"), f2.message)
    }
}

extension SandboxTests {
    /// A busy engine has many descriptors open; the child gets none of them, and its exec
    /// (which needs one below its RLIMIT_NOFILE of 256) still works with 600 open here.
    func testAParentWithManyOpenDescriptorsStillStartsWorkers() async throws {
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for _ in 0..<600 { held.append(open("/dev/null", O_RDONLY | O_CLOEXEC)) }
        XCTAssertFalse(held.contains(-1))
        for c in confinements() {
            let j = try job()
            let r = await outcome(try runner(c, ["ok"]), j)
            guard case .success = r else { XCTFail("\(c.kind): \(r)"); continue }
            try await assertRealJobCompletes(c)
        }
    }
}

extension SandboxTests {
    /// A worker that cannot be started is a job failure with the reason, not a hang.
    func testAMissingWorkerFailsTheJobWithTheReason() async throws {
        for c in confinements() {
            var config = SandboxConfiguration(executable: Self.scratch + "/no-such-worker", confinement: c)
            config.killGraceSeconds = 1
            let r = await outcome(SandboxRunner(configuration: config, capabilitiesJSON: "{}"), try job())
            guard case .failure(let f) = r else { XCTFail("\(c.kind): completed"); continue }
            switch c.kind {
            case .direct:
                // exec fails in the child and the errno comes back over the report pipe.
                XCTAssertEqual(f.code, "worker_start", f.message)
                XCTAssertTrue(f.message.contains("No such file or directory"), f.message)
            case .bubblewrap:
                // bwrap starts, and cannot run what is not there.
                XCTAssertEqual(f.code, "worker_failed", f.message)
            }
        }
    }
}
