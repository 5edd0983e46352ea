// H.265, VP9, AV1 and Opus through the same pipeline; container/codec combinations that
// cannot work are refused before any output is written.
import Foundation
import Media
import TranscodeAPI
import XCTest
import SpoolModel

final class CodecTests: XCTestCase {
    private func run(_ codec: String, audio: String, ext: String) throws -> [FFStream] {
        let preset = try TranscodePreset.custom(codec: codec, width: 160, height: 120, crf: 30, speed: "ultrafast",
                                                audioCodec: audio, audioBitrateKbps: 64)
        let out = Scratch.path("codec-\(codec)-\(audio).\(ext)")
        let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: out, preset: preset))
        XCTAssertEqual(s.videoFrames, 50)
        return try ffprobeStreams(out)
    }

    private func check(_ streams: [FFStream], video: String, audio: String) {
        let v = streams.first { $0.type == "video" }
        XCTAssertEqual(v?.codec, video)
        XCTAssertEqual(v?.width, 160)
        XCTAssertEqual(v?.height, 120)
        XCTAssertLessThanOrEqual(abs((v?.frames ?? 0) - 50), 1, "\(String(describing: v))")
        XCTAssertEqual(streams.first { $0.type == "audio" }?.codec, audio)
    }

    func testHEVCWithAACInMP4() throws { check(try run("hevc", audio: "aac", ext: "mp4"), video: "hevc", audio: "aac") }
    func testVP9WithOpusInWebM() throws { check(try run("vp9", audio: "opus", ext: "webm"), video: "vp9", audio: "opus") }
    func testAV1WithOpusInMatroska() throws { check(try run("av1", audio: "opus", ext: "mkv"), video: "av1", audio: "opus") }

    func testImpossibleCombinationsAreRefusedBeforeWriting() throws {
        for (codec, audio, ext) in [("vp9", "opus", "ts"), ("h264", "aac", "webm"), ("h264", "opus", "webm")] {
            let preset = try TranscodePreset.custom(codec: codec, width: 160, height: 120, speed: "ultrafast", audioCodec: audio)
            let out = Scratch.path("impossible-\(codec)-\(audio).\(ext)")
            let e = expectMediaError { _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: out, preset: preset)) }
            XCTAssertEqual(e?.code, "invalid_settings", "\(codec)+\(audio) in .\(ext): \(String(describing: e))")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
        // Refused by the model, before libav is asked anything.
        XCTAssertThrowsError(try TranscodePreset.custom(codec: "vp9", profile: "high")) {
            XCTAssertEqual(($0 as? ModelError)?.details.first?.0, "profile")
        }
        XCTAssertThrowsError(try TranscodePreset.custom(audioCodec: "mp3")) {
            XCTAssertEqual(($0 as? ModelError)?.details.first?.0, "audio_codec")
        }
    }
}
