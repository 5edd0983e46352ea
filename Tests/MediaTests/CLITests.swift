// The `spool` binary's media commands (skipped when .build/debug/spool is not built).
import Foundation
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest

/// The `spool` binary's media commands, when it has been built (swift build --build-tests
/// builds it alongside the tests).
final class CLITests: XCTestCase {
    private var spool: String? {
        let exe = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/spool").path
        return FileManager.default.isExecutableFile(atPath: exe) ? exe : nil
    }

    func testProbePrintsJSONAndTranscodePrintsPlainProgressWhenNotATerminal() throws {
        guard let spool else { throw XCTSkip(".build/debug/spool not built") }
        let clip = try Clips.mp4()
        let (rc, out) = try runProcess(spool, ["probe", clip])
        XCTAssertEqual(rc, 0, out)
        let json = out.split(separator: "\n").first { $0.hasPrefix("{") }.map(String.init) ?? ""
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        XCTAssertEqual((obj?["streams"] as? [Any])?.count, 2, out)

        let dest = Scratch.path("cli-out.mp4")
        let (rc2, out2) = try runProcess(spool, ["transcode", clip, dest, "--preset", "h264-360p"])
        XCTAssertEqual(rc2, 0, out2)
        XCTAssertTrue(out2.contains("progress: frames="), out2)
        XCTAssertFalse(out2.contains("\r"), "a bar was drawn although stdout is a pipe")
        XCTAssertTrue(out2.contains("done: 2.00 s of media"), out2)
        XCTAssertTrue(out2.contains("480×360, 50 frames"), out2)

        // Pipe mode: stdin to stdout, reports on stderr.
        let piped = Scratch.path("cli-piped.mp4")
        let (rc4, out4) = try runProcess("/bin/sh", ["-c", "'\(spool)' transcode - - --preset h264-360p --format mp4 < '\(try Clips.ts())' > '\(piped)'"])
        XCTAssertEqual(rc4, 0, out4)
        XCTAssertTrue(out4.contains("output: stdout"), out4)
        let v = try ffprobeStreams(piped).first { $0.type == "video" }
        XCTAssertEqual(v?.frames, 50)
        XCTAssertEqual(v?.height, 360)

        // The ladder preset writes a directory with a master playlist.
        let ladderDir = Scratch.path("cli-ladder-\(UUID().uuidString)")
        let (rc5, out5) = try runProcess(spool, ["transcode", clip, ladderDir, "--preset", "hls-ladder-h264"])
        XCTAssertEqual(rc5, 0, out5)
        XCTAssertTrue(out5.contains("1 renditions") && out5.contains("360p: 480×360"), out5)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ladderDir + "/master.m3u8"))

        let (rc3, out3) = try runProcess(spool, ["transcode", clip, dest, "--preset", "h264-9000p"])
        XCTAssertNotEqual(rc3, 0)
        XCTAssertTrue(out3.contains("unknown preset"), out3)
    }

    func testNegativeNumbersReachValidation() throws {
        guard let spool else { throw XCTSkip(".build/debug/spool not built") }
        let clip = try Clips.mp4()
        for (flag, value, message) in [("--crf", "-5", "--crf must be 0...51"), ("--width", "-640", "--width must be an even number in 16...8192"),
                                       ("--bitrate", "-1", "--bitrate must be 50...100000"), ("--threads", "-2", "--threads must be 0...256")] {
            let (rc, out) = try runProcess(spool, ["transcode", clip, Scratch.path("negative.mp4"), "--preset", "custom", flag, value])
            XCTAssertEqual(rc, 64, out)   // ArgumentParser's usage error
            XCTAssertTrue(out.contains(message), "\(flag) \(value): \(out)")
            XCTAssertFalse(out.contains("Missing value"), out)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: Scratch.path("negative.mp4")))
    }

    func testNonUTF8NamesFromArgvAndOverwrite() throws {
        guard let spool else { throw XCTSkip(".build/debug/spool not built") }
        let dir = Scratch.path("cli-bytes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // The shell's printf makes the byte 0xFF (octal 377), which is not UTF-8.
        let name = "\"$(printf '\(dir)/out\\377.mp4')\""
        let transcode = "'\(spool)' transcode '\(try Clips.mp4())' \(name) --preset h264-360p"
        let (rc, out) = try runProcess("/bin/sh", ["-c", transcode])
        XCTAssertEqual(rc, 0, out)
        let exact = MediaPath(bytes: Array((dir + "/out").utf8) + [0xFF] + Array(".mp4".utf8))
        XCTAssertEqual(try MediaProbe.probe(exact).streams.count, 2, "not written under the exact bytes")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).count, 1)
        let (rc2, out2) = try runProcess("/bin/sh", ["-c", "'\(spool)' probe \(name)"])
        XCTAssertEqual(rc2, 0, out2)

        // An existing output is refused without --overwrite and replaced with it.
        let (rc3, out3) = try runProcess("/bin/sh", ["-c", transcode])
        XCTAssertEqual(rc3, 1, out3)
        XCTAssertTrue(out3.contains("already exists (pass --overwrite"), out3)
        let (rc4, out4) = try runProcess("/bin/sh", ["-c", transcode + " --overwrite"])
        XCTAssertEqual(rc4, 0, out4)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).count, 1)
    }

    func testKilledMidRunLeavesNothingAtTheFinalName() throws {
        guard let spool else { throw XCTSkip(".build/debug/spool not built") }
        var spec = TestClipSpec()
        spec.seconds = 8
        let input = try Clips.clip("long.mp4", spec: spec)
        let dir = Scratch.path("cli-kill-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let out = dir + "/out.mp4"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: spool)
        p.arguments = ["transcode", input, out, "--preset", "custom", "--width", "240", "--height", "180", "--speed", "veryslow", "--threads", "1"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait until the job is writing (its temporary has bytes), then SIGKILL it.
        let deadline = Date().addingTimeInterval(20)
        var writing = false
        while !writing && Date() < deadline && p.isRunning {
            writing = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).contains { name in
                name.contains("spool-tmp") && ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + name)[.size] as? Int) ?? 0) > 0
            }
            usleep(20_000)
        }
        XCTAssertTrue(writing, "the job never started writing")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the job ended before it could be killed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a partial output is at the final name")
    }

    func testSkippedPacketsAreReported() throws {
        guard let spool else { throw XCTSkip(".build/debug/spool not built") }
        // Noise in the middle of the sample data (as DecodeErrorTests), decoded video and audio.
        let input = try damagedCopy(of: try Clips.mp4(), named: "cli-few-bad-packets.mp4") { bytes, payload in
            var g = SplitMix(seed: 9)
            let middle = payload.lowerBound + payload.count / 3 ..< payload.lowerBound + 2 * payload.count / 3
            for _ in 0..<4 {
                let at = Int.random(in: middle, using: &g)
                for i in at ..< at + 48 { bytes[i] = UInt8.random(in: 0...255, using: &g) }
            }
        }
        let (rc, out) = try runProcess(spool, ["transcode", input, Scratch.path("cli-skipped.mkv"), "--preset", "custom",
                                               "--width", "160", "--height", "120", "--speed", "ultrafast", "--audio-codec", "opus"])
        XCTAssertEqual(rc, 0, out)
        XCTAssertNotNil(out.range(of: #"skipped: [1-9][0-9]* undecodable packets"#, options: .regularExpression), out)
    }
}
