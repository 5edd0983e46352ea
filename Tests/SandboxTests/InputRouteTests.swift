// M29: how an input reaches the transcode. The decision (InputDecision) over size, free
// disk, measured throughput, the runner's say and the container; the container sniff on
// real files (a fast-start MP4, one whose index follows the media as ffmpeg writes it by
// default, MPEG-TS, Matroska, garbage); and the stream itself: a real transcode, sandboxed
// in each confinement here and in-process, reading its input from a FIFO a writer thread
// fills, produces the same output as from the file; a reader stopped before any writer
// came does not hang.
import EngineRuntime
import Foundation
import Jobs
import Sandbox
import SpoolModel
import SpoolTestSupport
import TranscodeAPI
import XCTest

final class InputRouteTests: XCTestCase {
    let GiB: Int64 = 1 << 30

    func testTheDecisionFollowsDiskSizeThroughputAndStreamability() {
        var p = InputPolicy()
        p.streamMinBytes = 2 * GiB
        p.diskReserveBytes = 1 * GiB
        p.minStreamBytesPerSecond = 25e6
        let ts = Streamability.yes("MPEG-TS")
        func route(_ size: Int64, free: Int64, _ t: Double?, _ s: Streamability = .yes("MPEG-TS"), _ policy: InputPolicy? = nil) -> InputRoute {
            InputDecision.route(size: size, freeDisk: free, throughput: t, streamable: s, policy: policy ?? p).0
        }
        XCTAssertEqual(route(100 << 20, free: 50 * GiB, nil), .download, "small inputs are downloaded")
        XCTAssertEqual(route(3 * GiB, free: 50 * GiB, nil), .stream, "large, no measurement yet")
        XCTAssertEqual(route(3 * GiB, free: 50 * GiB, 100e6), .stream, "large, fast network")
        XCTAssertEqual(route(3 * GiB, free: 50 * GiB, 5e6), .download, "large, slow network: the transcoder would stall")
        XCTAssertEqual(route(500 << 20, free: 1 * GiB, 5e6), .stream, "does not fit beside the reserve: streamed even on a slow network")
        XCTAssertEqual(route(500 << 20, free: 1 * GiB, nil, .no("moov at the end")), .download, "never streams what needs seeking")
        var forced = p
        forced.mode = .stream
        XCTAssertEqual(route(1 << 20, free: 50 * GiB, 1e3, ts, forced), .stream)
        XCTAssertEqual(route(1 << 20, free: 50 * GiB, nil, .no("moov at the end"), forced), .download)
        forced.mode = .download
        XCTAssertEqual(route(100 * GiB, free: 1 * GiB, nil, ts, forced), .download)
        let (_, why) = InputDecision.route(size: 3 * GiB, freeDisk: 50 * GiB, throughput: 5e6, streamable: ts, policy: p)
        XCTAssertEqual(why, "input 3.0 GiB, 50.0 GiB free, downloads at 4.8 MiB/s: the network is slower than 23.8 MiB/s")
    }

    func testTheSniffKnowsWhichContainersStream() throws {
        guard let spool = SandboxTests.spool else { throw XCTSkip(".build/debug/spool not built") }
        guard let ffmpeg = ServiceProcess.find("ffmpeg") else { throw ServiceProcess.missing("ffmpeg") }
        let dir = SandboxTests.scratch + "/sniff"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func prefix(_ path: String) throws -> [UInt8] {
            Array(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(ContainerSniff.prefixBytes))
        }
        for ext in ["mp4", "ts", "mkv"] {
            let (rc, out) = try runProcess(spool, ["synthesize", "\(dir)/clip.\(ext)", "--seconds", "1", "--width", "160", "--height", "90"])
            XCTAssertEqual(rc, 0, out)
            XCTAssertTrue(ContainerSniff.streamability(try prefix("\(dir)/clip.\(ext)")).isStreamable, ext)
        }
        // ffmpeg's MP4 muxer writes the index after the media unless told otherwise.
        let (rc, out) = try runProcess(ffmpeg, ["-loglevel", "error", "-y", "-i", "\(dir)/clip.ts", "-c", "copy", "\(dir)/late.mp4"])
        XCTAssertEqual(rc, 0, out)
        guard case .no(let why) = ContainerSniff.streamability(try prefix("\(dir)/late.mp4")) else { return XCTFail("moov at the end streams?") }
        XCTAssertTrue(why.contains("moov"), why)
        XCTAssertFalse(ContainerSniff.streamability(Array(repeating: 0x42, count: 4096)).isStreamable)
        XCTAssertFalse(ContainerSniff.streamability([]).isStreamable)
        // A truncated box header and a box claiming more than exists end the walk, not the process.
        XCTAssertFalse(ContainerSniff.streamability([0, 0, 0, 24] + Array("ftyp".utf8) + [0, 0, 0, 1] + Array("free".utf8) + [0xFF]).isStreamable)
    }

    func testRunnersSayWhichJobsCanStream() {
        let file = FileID("file_00000000000000000000000000")!
        let plain = JobSpec(inputFileID: file, outputs: .preset("h264-360p"))
        var quality = plain
        quality.measureQuality = true
        let runner = SandboxRunner(configuration: SandboxConfiguration(executable: "/bin/false", confinement: ConfinementReport.probe(allowBubblewrap: false)),
                                   capabilitiesJSON: "{}")
        XCTAssertNil(runner.streamRefusal(plain))
        XCTAssertNotNil(runner.streamRefusal(quality))
    }

    /// Writes `path` into the FIFO `fifo` on a thread of its own (as the engine's writer does).
    func feed(_ path: String, into fifo: String) -> Thread {
        let t = Thread {
            let fd = open(fifo, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { close(fd) }
            guard let data = FileManager.default.contents(atPath: path) else { return }
            data.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = write(fd, raw.baseAddress! + off, min(4096, raw.count - off))
                    if n <= 0 { return }
                    off += n
                }
            }
        }
        t.start()
        return t
    }

    /// Reads the FIFO `fifo` to its end into the file `path`, on a thread of its own (as the
    /// engine's upload does).
    func drain(_ fifo: String, into path: String) -> Thread {
        let t = Thread {
            let fd = open(fifo, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var all = Data()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                all.append(contentsOf: buffer[..<n])
            }
            _ = FileManager.default.createFile(atPath: path, contents: all)
        }
        t.start()
        return t
    }

    func testARealTranscodeReadsItsInputFromAFIFO() async throws {
        guard let spool = SandboxTests.spool, let clip = SandboxTests.clip else { throw XCTSkip(".build/debug/spool not built") }
        var runners: [(String, any TranscodeRunner)] = []
        for c in SandboxTests.confinements() {
            runners.append(("\(c.kind)", SandboxRunner(configuration: SandboxConfiguration(executable: spool, confinement: c), capabilitiesJSON: "{}")))
        }
        for (label, runner) in runners {
            let dir = SandboxTests.scratch + "/fifo-\(label)"
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            XCTAssertEqual(mkfifo(dir + "/input", 0o600), 0)
            let writer = feed(clip, into: dir + "/input")
            let job = RunnerJob(jobID: "stream-\(label)", spec: JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset("h264-360p")),
                                inputPath: dir + "/input", outputDirectory: dir + "/out", inputIsStream: true)
            let r = try await runner.run(job) { _ in }
            _ = writer
            XCTAssertGreaterThan(r.work, 0, label)
            let out = dir + "/out/h264-360p.mp4"
            let probe = try runProcess(spool, ["probe", out])
            XCTAssertEqual(probe.0, 0, probe.1)
            XCTAssertTrue(probe.1.contains("\"h264\""), "\(label): \(probe.1)")
            // The same job from the file: the same frames came out.
            var fromFile = job
            fromFile.inputIsStream = false
            fromFile.inputPath = clip
            fromFile.outputDirectory = dir + "/out-file"
            let f = try await runner.run(fromFile) { _ in }
            XCTAssertEqual(r.work, f.work, "\(label): a streamed input gave other frames than the file")

            // Input and output both streamed: the output comes out of its FIFO as a whole
            // (fragmented) MP4 with the same frames, and the output directory stays empty.
            XCTAssertEqual(mkfifo(dir + "/output-stream", 0o600), 0)
            let feeder = feed(clip, into: dir + "/input")
            let drainer = drain(dir + "/output-stream", into: dir + "/streamed.mp4")
            var both = job
            both.outputDirectory = dir + "/out-both"
            both.outputStreamPath = dir + "/output-stream"
            let b = try await runner.run(both) { _ in }
            _ = feeder
            for _ in 0..<200 where drainer.isExecuting || !drainer.isFinished { usleep(10_000) }
            XCTAssertEqual(b.work, f.work, label)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/out-both"), [], label)
            let frames = try runProcess("/usr/bin/ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v:0",
                                                             "-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", dir + "/streamed.mp4"])
            let fileFrames = try runProcess("/usr/bin/ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v:0",
                                                                 "-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", dir + "/out-file/h264-360p.mp4"])
            XCTAssertEqual(frames.0, 0, frames.1)
            XCTAssertEqual(frames.1, fileFrames.1, "\(label): the streamed output differs in frames from the file output")
            XCTAssertTrue(frames.1.hasPrefix("h264,"), frames.1)
        }
    }

    func testAReaderStoppedBeforeAnyWriterCameDoesNotHang() throws {
        let dir = SandboxTests.scratch + "/fifo-stop"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(dir + "/input", 0o600), 0)
        let source = FIFOSource(path: dir + "/input")
        let done = expectation(description: "the read returned")
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 64)
            _ = buffer.withUnsafeMutableBytes { try? source.read(into: $0) }
            done.fulfill()
        }
        reader.start()
        usleep(100_000)   // the reader now waits in open(2) for a writer
        source.stopReading()
        wait(for: [done], timeout: 10)
    }
}
