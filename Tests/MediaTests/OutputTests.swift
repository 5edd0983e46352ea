// Outputs: staged under a temporary name and renamed on success only; an existing output
// is refused unless overwrite is asked; a symlink at the output name is never followed;
// failures leave nothing (no final name, no temporary); a closed pipe is a typed error.
import Foundation
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest
import SpoolModel

final class OutputTests: XCTestCase {
    /// A fresh empty directory for one test.
    private func directory(_ name: String) throws -> String {
        let d = Scratch.path("outputs-\(name)")
        try? FileManager.default.removeItem(atPath: d)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    private func temporaries(in dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.contains("spool-tmp") }
    }

    private func quickPreset() throws -> TranscodePreset { try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast") }

    func testExistingOutputIsRefusedAndOverwriteReplacesIt() throws {
        let dir = try directory("exists")
        let out = dir + "/out.mp4"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: out))
        var request = TranscodeRequest(input: try Clips.mp4(), output: out, preset: try quickPreset())
        let e = expectMediaError { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "output_exists")
        XCTAssertEqual(e?.description, "\(out) already exists (pass --overwrite, or overwrite: true, to replace it)")
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "keep me")
        XCTAssertEqual(temporaries(in: dir), [])

        request.overwrite = true
        let s = try Transcoder.transcodeBlocking(request)
        XCTAssertEqual(s.videoFrames, 50)
        XCTAssertEqual(try ffprobeStreams(out).first { $0.type == "video" }?.frames, 50)
        XCTAssertEqual(s.outputBytes, try FileManager.default.attributesOfItem(atPath: out)[.size] as? Int64)
        XCTAssertEqual(temporaries(in: dir), [])
    }

    func testSymlinkAtTheOutputIsNeverFollowed() throws {
        let dir = try directory("symlink")
        let target = dir + "/precious.txt"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: target))
        let link = dir + "/link.mp4"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        var request = TranscodeRequest(input: try Clips.mp4(), output: link, preset: try quickPreset())
        XCTAssertEqual(expectMediaError { _ = try Transcoder.transcodeBlocking(request) }?.code, "output_exists")
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "precious")

        // With overwrite the link itself is replaced by the rename; its target is untouched.
        request.overwrite = true
        _ = try Transcoder.transcodeBlocking(request)
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "precious")
        let type = try FileManager.default.attributesOfItem(atPath: link)[.type] as? FileAttributeType
        XCTAssertEqual(type, .typeRegular)
        XCTAssertEqual(temporaries(in: dir), [])
    }

    func testAFailedJobLeavesNothingAtTheFinalNameNorATemporary() throws {
        let dir = try directory("failure")
        let junk = dir + "/junk.mp4"
        try Data(pattern(seed: 5, count: 20_000)).write(to: URL(fileURLWithPath: junk))
        let out = dir + "/out.mp4"
        XCTAssertNotNil(expectMediaError { _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: junk, output: out, preset: .h264_360p)) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // A failure after the output was started (the input truncated mid-job is another).
        var limits = MediaLimits()
        limits.maxPackets = 30
        var request = TranscodeRequest(input: try Clips.mp4(), output: out, preset: try quickPreset())
        request.limits = limits
        XCTAssertEqual(expectMediaError { _ = try Transcoder.transcodeBlocking(request) }?.code, "limit_exceeded")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // A ladder that fails leaves no directory and no temporary one.
        XCTAssertNotNil(expectMediaError {
            _ = try Transcoder.transcodeLadderBlocking(LadderRequest(input: junk, outputDirectory: dir + "/hls", preset: .hlsLadderH264))
        })
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["junk.mp4"])
    }

    func testOutputInAMissingDirectoryIsATypedError() throws {
        let out = Scratch.path("no-such-dir-\(UUID().uuidString)/out.mp4")
        let e = expectMediaError { _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: out, preset: .h264_360p)) }
        XCTAssertEqual(e?.code, "output_unwritable")
        XCTAssertEqual(e?.description, "cannot write \(out): its directory: No such file or directory")
    }

    func testLadderDirectoryIsRefusedWhenItExistsAndReplacedWithOverwrite() throws {
        let parent = try directory("ladder")
        let out = parent + "/hls"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        try Data("old".utf8).write(to: URL(fileURLWithPath: out + "/old.txt"))
        var preset = LadderPreset.hlsLadderH264
        preset.rungs = [LadderPreset.rung("120p", width: 160, height: 120, maxKbps: 300)]
        preset.segmentSeconds = 1
        var request = LadderRequest(input: try Clips.mp4(), outputDirectory: out, preset: preset)
        XCTAssertEqual(expectMediaError { _ = try Transcoder.transcodeLadderBlocking(request) }?.code, "output_exists")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/old.txt"))

        request.overwrite = true
        let s = try Transcoder.transcodeLadderBlocking(request)
        XCTAssertEqual(s.master, out + "/master.m3u8")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), ["120p", "master.m3u8"])
        XCTAssertEqual(s.renditions.first?.playlist, out + "/120p/index.m3u8")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/120p/init.mp4"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), ["hls"], "the old tree or a temporary was left")
    }

    func testClosedPipeIsATypedError() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        close(fds[0])   // the reader goes away
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous); close(fds[1]) }
        var request = TranscodeRequest(input: try Clips.mp4(), output: "stdout", preset: try quickPreset())
        request.outputStream = FileDescriptorSink(fd: fds[1])
        request.outputFormat = "mpegts"
        let e = expectMediaError(within: 10) { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "output_unwritable", String(describing: e))
        XCTAssertEqual(e?.description.contains("broken pipe"), true, String(describing: e))
    }
}

final class BytePathTests: XCTestCase {
    /// `dir/name` with the byte 0xFF in the name, which is not UTF-8.
    private func nonUTF8(_ dir: String, _ prefix: String, _ ext: String) -> MediaPath {
        MediaPath(bytes: Array((dir + "/" + prefix).utf8) + [0xFF] + Array(ext.utf8))
    }

    func testNonUTF8NamesRoundTripExactly() throws {
        let dir = Scratch.path("bytes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let out = nonUTF8(dir, "out", ".mp4")
        XCTAssertNil(out.string)
        var request = TranscodeRequest(inputPath: MediaPath(try Clips.mp4()), outputPath: out,
                                       preset: try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast"))
        _ = try Transcoder.transcodeBlocking(request)
        // The file exists under exactly those bytes, and not under the repaired text.
        XCTAssertEqual(try MediaProbe.probe(out).streams.count, 2)
        XCTAssertEqual(expectMediaError { _ = try MediaProbe.probe(out.description) }?.code, "input_unreadable")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).count, 1)

        // As an input too.
        request.inputPath = out
        request.outputPath = nonUTF8(dir, "again", ".ts")
        XCTAssertEqual(try Transcoder.transcodeBlocking(request).videoFrames, 50)
        XCTAssertEqual(try MediaProbe.probe(request.outputPath).format, "mpegts")

        // A ladder directory.
        var preset = LadderPreset.hlsLadderH264
        preset.rungs = [LadderPreset.rung("120p", width: 160, height: 120, maxKbps: 300)]
        let hls = nonUTF8(dir, "hls", "")
        _ = try Transcoder.transcodeLadderBlocking(LadderRequest(inputPath: MediaPath(try Clips.mp4()), outputDirectoryPath: hls, preset: preset))
        let master = hls.appending("master.m3u8")
        do { _ = try MediaProbe.probe(master) } catch let e as MediaError {
            XCTAssertEqual(e.code, "format_not_allowed", "master.m3u8 is where it should be, and is a playlist: \(e)")
        }
    }
}
