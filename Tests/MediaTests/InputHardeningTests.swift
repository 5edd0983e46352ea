// Inputs that change or misbehave under Spool's feet: a file truncated by another
// process mid-job (a typed error, never SIGBUS) and a named pipe given as a file (refused
// at once, never a blocking open).
import Foundation
import Media
import TranscodeAPI
import XCTest
import SpoolModel

final class InputHardeningTests: XCTestCase {
    /// A private copy of the 8 s clip that a test may truncate.
    private func freshCopy(_ name: String) throws -> String {
        var spec = TestClipSpec()
        spec.seconds = 8
        let source = try Clips.clip("long.mp4", spec: spec)
        let p = Scratch.path(name)
        try? FileManager.default.removeItem(atPath: p)
        try FileManager.default.copyItem(atPath: source, toPath: p)
        return p
    }

    func testInputTruncatedMidTranscodeIsATypedError() throws {
        let input = try freshCopy("shrinking.mp4")
        XCTAssertGreaterThan(try FileManager.default.attributesOfItem(atPath: input)[.size] as! Int, 256 * 1024)
        let out = Scratch.path("shrinking-out.mp4")
        try? FileManager.default.removeItem(atPath: out)
        let baseline = LibAVObjects.live
        let done = ManagedAtomicMax()
        let log = ProgressLog()
        log.onReport = { p in
            // Another thread truncates the file to 4 KiB; the transcode waits for it.
            if p.videoFrames >= 10 && done.value == 0 { done.record(finishes(within: 5) { _ = truncate(input, 4096) } ? 1 : 2) }
        }
        var request = TranscodeRequest(input: input, output: out, preset: try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast"))
        request.progressInterval = 0
        let e = expectMediaError(within: 20) { _ = try Transcoder.transcodeBlocking(request, progress: { log.add($0) }) }
        XCTAssertEqual(done.value, 1, "the file was not truncated mid-job")
        XCTAssertEqual(e?.code, "input_truncated", String(describing: e))
        XCTAssertEqual(e?.description.contains("was truncated while being read"), true, String(describing: e))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "output left at the final name")
        XCTAssertEqual(LibAVObjects.live, baseline)
        XCTAssertEqual(OpenInputFiles.live, 0)
    }

    /// Probing is short, so the truncation races it: each attempt truncates after a longer
    /// delay until one lands mid-probe. Every outcome must be a result or a typed error.
    func testInputTruncatedMidProbeIsATypedError() throws {
        let path = Scratch.path("shrinking-probe.mp4")
        var codes: [String: Int] = [:]
        for attempt in 0..<400 where codes["input_truncated"] == nil {
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.copyItem(atPath: try freshCopy("shrinking-probe-source.mp4"), toPath: path)
            let delay = UInt32(attempt % 100) * 30
            let t = Thread { usleep(delay); _ = truncate(path, 4096) }
            t.start()
            do {
                _ = try MediaProbe.probe(path)
                codes["ok", default: 0] += 1
            } catch let e as MediaError {
                codes[e.code, default: 0] += 1
            }
            usleep(20_000)   // let the truncating thread finish before the next copy
        }
        XCTAssertNotNil(codes["input_truncated"], "no probe saw the truncation: \(codes)")
        XCTAssertEqual(OpenInputFiles.live, 0)
    }

    func testNamedPipeIsRefusedAtOnce() throws {
        let fifo = Scratch.path("named-pipe.mp4")
        unlink(fifo)
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        let codes = CodeBox()
        let ok = finishes(within: 5) {
            do { _ = try MediaProbe.probe(fifo) } catch let e as MediaError { codes.add(e.code, e.description) } catch { codes.add("?", "\(error)") }
            let out = Scratch.path("from-pipe.mp4")
            do { _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: fifo, output: out, preset: .h264_360p)) } catch let e as MediaError {
                codes.add(e.code, e.description)
            } catch { codes.add("?", "\(error)") }
        }
        if !ok {
            // Unblock the stuck open so the test process can end.
            let fd = open(fifo, O_WRONLY | O_NONBLOCK)
            if fd >= 0 { close(fd) }
            XCTFail("probing or transcoding a named pipe blocked")
            return
        }
        XCTAssertEqual(codes.codes, ["input_unreadable", "input_unreadable"], codes.texts.joined(separator: "; "))
        XCTAssertTrue(codes.texts.allSatisfy { $0.contains("not a regular file (a named pipe)") }, codes.texts.joined(separator: "; "))
        XCTAssertFalse(FileManager.default.fileExists(atPath: Scratch.path("from-pipe.mp4")))
    }
}

final class CodeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var c: [String] = []
    private var t: [String] = []
    func add(_ code: String, _ text: String) { lock.lock(); c.append(code); t.append(text); lock.unlock() }
    var codes: [String] { lock.lock(); defer { lock.unlock() }; return c }
    var texts: [String] { lock.lock(); defer { lock.unlock() }; return t }
}
