// Encoder threads (Media.EncodeWorker): each rendition encodes on a thread of its own, fed
// through two picture slots. A failure on that thread (here: the output refusing bytes
// mid-job) ends the job with its typed error and leaves no libav object alive once the
// call returns; the hand-off keeps every picture in order and intact, so one-thread
// encodes are byte-identical from run to run and a ladder's renditions each get every
// frame.
import Foundation
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest
import SpoolModel

final class EncoderThreadTests: XCTestCase {
    private func preset() throws -> TranscodePreset { try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast") }

    func testAnOutputThatFailsMidJobEndsItAndFreesEverything() throws {
        var spec = TestClipSpec()
        spec.seconds = 4
        let input = try Clips.clip("encoder-thread-4s.mp4", spec: spec)
        let baseline = LibAVObjects.live
        var request = TranscodeRequest(input: input, output: "stdout", preset: try preset())
        request.outputStream = FailingSink(failAfter: 20_000)   // StreamingTests.swift
        request.outputFormat = "mpegts"
        let e = expectMediaError(within: 10) { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "output_unwritable", String(describing: e))
        // The encoder thread let go of its encoder, pictures and packet before the job
        // returned, not some time later.
        XCTAssertEqual(LibAVObjects.live, baseline, "libav objects alive after the failed job")
    }

    func testOneThreadEncodesAreIdenticalFromRunToRun() throws {
        let input = try Clips.mp4()
        var outputs: [Data] = []
        for run in 0..<3 {
            let out = Scratch.path("encoder-thread-run\(run)-\(UUID().uuidString).ts")
            var request = TranscodeRequest(input: input, output: out, preset: try preset())
            request.threads = 1
            request.outputFormat = "mpegts"
            let result = try Transcoder.transcodeBlocking(request)
            XCTAssertEqual(result.videoFrames, 50)
            outputs.append(try Data(contentsOf: URL(fileURLWithPath: out)))
            try? FileManager.default.removeItem(atPath: out)
        }
        XCTAssertGreaterThan(outputs[0].count, 10_000)
        XCTAssertEqual(outputs[1], outputs[0])
        XCTAssertEqual(outputs[2], outputs[0])
    }

    func testEveryRenditionOfALadderGetsEveryFrame() throws {
        let ladder = LadderPreset(name: "three", summary: "", rungs: [
            LadderPreset.rung("240p", width: 320, height: 240, maxKbps: 800),
            LadderPreset.rung("180p", width: 240, height: 180, maxKbps: 400),
            LadderPreset.rung("120p", width: 160, height: 120, maxKbps: 200),
        ])
        let dir = Scratch.path("encoder-thread-ladder-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let baseline = LibAVObjects.live
        let result = try Transcoder.transcodeLadderBlocking(LadderRequest(input: try Clips.mp4(), outputDirectory: dir, preset: ladder))
        XCTAssertEqual(result.renditions.map(\.frames), [50, 50, 50])
        XCTAssertEqual(LibAVObjects.live, baseline)
    }
}
