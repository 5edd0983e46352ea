// PSNR/SSIM computed in-process while encoding, against the scaled source.
import Foundation
import Media
import TranscodeAPI
import XCTest
import SpoolModel

final class QualityTests: XCTestCase {
    private func measure(crf: Int) throws -> QualityReport {
        let preset = try TranscodePreset.custom(width: 320, height: 240, crf: crf, speed: "ultrafast")
        var request = TranscodeRequest(input: try Clips.mp4(), output: Scratch.path("quality-\(crf).mp4"), preset: preset)
        request.measureQuality = true
        let baseline = LibAVObjects.live
        let s = try Transcoder.transcodeBlocking(request)
        XCTAssertEqual(LibAVObjects.live, baseline, "the quality decoder or kept pictures leaked")
        return try XCTUnwrap(s.quality)
    }

    func testQualityIsMeasuredForEveryFrameAndFollowsTheRateFactor() throws {
        let good = try measure(crf: 12)
        let poor = try measure(crf: 45)
        XCTAssertEqual(good.frames, 50)
        XCTAssertEqual(poor.frames, 50)
        XCTAssertGreaterThan(good.psnrY, 38, "\(good)")
        XCTAssertLessThan(good.psnrY, 100)
        XCTAssertGreaterThan(good.psnrY, poor.psnrY + 5, "good \(good) poor \(poor)")
        XCTAssertGreaterThan(good.ssimY, 0.95)
        XCTAssertLessThanOrEqual(good.ssimY, 1)
        XCTAssertGreaterThan(good.ssimY, poor.ssimY)
        XCTAssertLessThanOrEqual(poor.ssimYWorstFrame, poor.ssimY)
    }

    func testLadderReportsQualityPerRendition() throws {
        let ladder = LadderPreset(name: "q", summary: "", rungs: [LadderPreset.rung("240p", width: 320, height: 240, maxKbps: 800),
                                                                  LadderPreset.rung("120p", width: 160, height: 120, maxKbps: 300)],
                                  segmentSeconds: 1)
        var request = LadderRequest(input: try Clips.mp4(), outputDirectory: Scratch.path("q-ladder-\(UUID().uuidString)"), preset: ladder)
        request.measureQuality = true
        let s = try Transcoder.transcodeLadderBlocking(request)
        XCTAssertEqual(s.renditions.count, 2)
        for r in s.renditions {
            let q = try XCTUnwrap(r.quality, r.name)
            XCTAssertEqual(q.frames, 50)
            XCTAssertGreaterThan(q.psnrY, 25)
            XCTAssertGreaterThan(q.ssimY, 0.8)
        }
    }
}
