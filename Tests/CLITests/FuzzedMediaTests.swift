// A few hundred mutated clips (zzuf-style byte flips at a fixed seed, made at test time)
// through the real `spool transcode`: no death by a signal, no hang, and exit 0 only when
// the output really has video. Prints how many of the files the ffmpeg CLI decodes (exit 0
// with its default error tolerance) Spool transcodes: a figure, not a threshold.
import Foundation
import SpoolTestSupport
import XCTest

final class FuzzedMediaTests: XCTestCase {
    struct Outcome { var exited: Int32?; var signal: Int32?; var hung: Bool; var output: String }

    /// Runs a program with a time limit; a run past it is killed and reported as hung.
    static func run(_ exe: String, _ args: [String], limit: TimeInterval) throws -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let deadline = Date().addingTimeInterval(limit)
        while p.isRunning && Date() < deadline { usleep(5_000) }
        let hung = p.isRunning
        if hung { kill(p.processIdentifier, SIGKILL) }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let signalled = p.terminationReason == .uncaughtSignal
        return Outcome(exited: signalled ? nil : p.terminationStatus, signal: signalled ? p.terminationStatus : nil,
                       hung: hung, output: String(decoding: data, as: UTF8.self))
    }

    /// A refusal's kind, for the tally printed at the end.
    static func category(_ line: String) -> String {
        if line.contains("the limit is") { return "a size or duration limit (from a damaged header)" }
        if line.contains("could not be decoded") || line.contains("decode error") { return "the decode-error budget" }
        if line.contains("no frame could be decoded") { return "no video frame decoded" }
        if line.contains("invalid media data") || line.contains("Invalid data") { return "invalid media data" }
        return String(line.dropFirst("spool transcode: ".count).prefix(60))
    }

    func testMutatedClipsNeverKillHangOrSucceedWithoutVideo() throws {
        if ProcessInfo.processInfo.environment["SPOOL_IO_BACKEND"] == "epoll" {
            throw XCTSkip("transcoding does not use the I/O backend; this runs in the io_uring pass")
        }
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spool").path
        guard FileManager.default.isExecutableFile(atPath: bin) else { throw XCTSkip("spool not built next to the tests") }
        let ffmpeg = "/usr/bin/ffmpeg", ffprobe = "/usr/bin/ffprobe"
        guard FileManager.default.isExecutableFile(atPath: ffprobe) else { throw XCTSkip("ffprobe (make deps) is missing") }
        let dir = NSTemporaryDirectory() + "spool-fuzzed-media-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        var sources: [(name: String, bytes: [UInt8])] = []
        for ext in ["mp4", "ts", "mkv"] {
            let path = "\(dir)/source.\(ext)"
            let (rc, text) = try runProcess(bin, ["synthesize", path, "--seconds", "1", "--width", "160", "--height", "120", "--fps", "15"])
            XCTAssertEqual(rc, 0, text)
            sources.append((ext, Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
        }
        var rng = SplitMix(seed: 0x5EED_F022)
        let perSource = 80
        // The mutations are drawn in order from the seed first; the clips then run two at a
        // time (one per core), each case writing only its own files.
        var cases: [(ext: String, index: Int, bytes: [UInt8])] = []
        for (ext, original) in sources {
            for i in 0..<perSource {
                // Flip a few bytes in 1,000 (zzuf's default ratio is 0.4%), past the first 64
                // for half of the files so some headers survive, anywhere for the other half.
                var bytes = original
                let ratio = [0.0005, 0.002, 0.004, 0.01][i % 4]
                let start = i % 2 == 0 ? 64 : 0
                let flips = max(1, Int(Double(bytes.count) * ratio))
                for _ in 0..<flips {
                    let at = start + Int(rng.next() % UInt64(bytes.count - start))
                    bytes[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                }
                cases.append((ext, i, bytes))
            }
        }
        let allCases = cases
        struct CaseResult { var ffmpegDecodes = false; var spoolOK = false; var reason: String?; var failures: [String] = [] }
        let collected = NSLock()
        nonisolated(unsafe) var outcomes = [CaseResult](repeating: CaseResult(), count: cases.count)
        DispatchQueue.concurrentPerform(iterations: cases.count) { n in
            let (ext, i, bytes) = allCases[n]
            var result = CaseResult()
            do {
                let input = "\(dir)/m\(i).\(ext)", output = "\(dir)/m\(i)-\(ext)-out.mp4"
                try Data(bytes).write(to: URL(fileURLWithPath: input))
                defer {
                    try? FileManager.default.removeItem(atPath: input)
                    try? FileManager.default.removeItem(atPath: output)
                }
                let r = try Self.run(bin, ["transcode", input, output, "--preset", "h264-360p", "--overwrite"], limit: 60)
                let tag = "seed 0x5EEDF022, \(ext) #\(i)"
                if r.hung { result.failures.append("\(tag): hung (killed after 60 s)") }
                if let s = r.signal { result.failures.append("\(tag): killed by signal \(s): \(r.output.suffix(300))") }
                if r.exited == 0 {
                    // Success must mean video: ffprobe counts the output's video packets.
                    let probe = try Self.run(ffprobe, ["-v", "quiet", "-select_streams", "v:0", "-count_packets",
                                                       "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", output], limit: 30)
                    let packets = Int(probe.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                    if packets < 1 { result.failures.append("\(tag): exit 0 but the output has no video (\(probe.output))") }
                    result.spoolOK = packets >= 1
                } else if FileManager.default.fileExists(atPath: output) {
                    result.failures.append("\(tag): failed but left \(output)")
                }
                let ff = try Self.run(ffmpeg, ["-v", "error", "-i", input, "-map", "0:v:0", "-f", "null", "-"], limit: 60)
                result.ffmpegDecodes = ff.exited == 0
                if result.ffmpegDecodes && !result.spoolOK {
                    // Why Spool refused a file the ffmpeg CLI took: the error's code word.
                    let line = r.output.split(separator: "\n").last(where: { $0.hasPrefix("spool transcode:") }).map(String.init) ?? "?"
                    result.reason = Self.category(line)
                }
            } catch {
                result.failures.append("\(ext) #\(i): \(error)")
            }
            collected.withLock { outcomes[n] = result }
        }
        let results = outcomes.map { (ffmpegDecodes: $0.ffmpegDecodes, spoolOK: $0.spoolOK) }
        let failures = outcomes.flatMap(\.failures)
        var reasons: [String: Int] = [:]
        for o in outcomes { if let r = o.reason { reasons[r, default: 0] += 1 } }
        XCTAssertTrue(failures.isEmpty, failures.prefix(10).joined(separator: "\n"))
        let decodable = results.filter(\.ffmpegDecodes)
        let both = decodable.filter(\.spoolOK).count
        let spoolOnly = results.filter { !$0.ffmpegDecodes && $0.spoolOK }.count
        print("fuzzed media: \(results.count) mutated clips; the ffmpeg CLI decodes (exit 0) \(decodable.count); spool transcodes \(both) of those (\(decodable.isEmpty ? 0 : both * 100 / decodable.count)%) and \(spoolOnly) that it refuses")
        for (reason, n) in reasons.sorted(by: { $0.value > $1.value }).prefix(6) { print("  \(n)× \(reason)") }
        XCTAssertEqual(results.count, 3 * perSource)
    }
}
