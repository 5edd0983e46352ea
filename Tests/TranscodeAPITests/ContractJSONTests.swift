// The contract's values through the JSON module: written by JSONWriter, parsed by
// JSONDocument, decoded back equal (doubles bit for bit); unknown members refused with
// their JSON Pointer.
import JSON
import SpoolModel
import TranscodeAPI
import XCTest

final class ContractJSONTests: XCTestCase {
    func roundTrip<T: JSONEncodable & JSONDecodable & Equatable>(_ value: T, file: StaticString = #filePath, line: UInt = #line) throws {
        let bytes = value.jsonBytes
        let back = try JSONDocument.decode(T.self, from: bytes)
        XCTAssertEqual(back, value, String(decoding: bytes, as: UTF8.self), file: file, line: line)
        XCTAssertEqual(back.jsonBytes, bytes, file: file, line: line)
    }

    func testCapabilitiesRoundTrip() throws {
        let caps = TranscoderCapabilities(
            encoders: ["libx264", "aac"], encodersPresentNotDriven: ["libaom-av1"], videoDecoders: 291, audioDecoders: 202,
            demuxers: ["mov", "mpegts"], muxers: ["mp4", "hls"], hardwareDevices: [], hardwareTypesBuilt: ["vaapi", "vulkan"],
            presets: ["h264-720p", "weird \"name\"\\\n"], libavVersion: "5.1.4-0+deb12u1")
        try roundTrip(caps)
        let doc = try JSONDocument(parsing: caps.jsonBytes)
        XCTAssertEqual(try doc.root["libav"]?.string(), "5.1.4-0+deb12u1")
        XCTAssertEqual(doc.root["hardware_devices"]?.count, 0)
        XCTAssertEqual(caps.json, caps.jsonText)
    }

    func testProgressRoundTripsWithAndWithoutAnEstimate() throws {
        let p = TranscodeProgress(videoFrames: 123, mediaSeconds: 4.92, totalSeconds: 10.000000000000002, elapsedSeconds: 0.1 + 0.2,
                                  fps: 1230.5, speed: 49.2, etaSeconds: 0.10569105691056911)
        try roundTrip(p)
        var unknown = p
        unknown.totalSeconds = 0
        unknown.etaSeconds = nil
        try roundTrip(unknown)
        let doc = try JSONDocument(parsing: unknown.jsonBytes)
        XCTAssertTrue(doc.root["eta_seconds"]?.isNull == true)
        XCTAssertTrue(doc.root["fraction"]?.isNull == true)
        XCTAssertEqual(try JSONDocument(parsing: p.jsonBytes).root["fraction"]?.double(), p.fraction)
    }

    func testSamplesQualityAndFailuresRoundTrip() throws {
        try roundTrip(ResourceSample(cpus: 2, loadAverage1m: 0.69, memoryTotalBytes: 25_276_063_744,
                                     memoryAvailableBytes: 24_525_377_536, processResidentBytes: 45 << 20))
        try roundTrip(QualityReport(frames: 50, psnrY: 41.234567, psnrU: 44.5, psnrV: 45.25, psnrAverage: 42.1,
                                    ssimY: 0.98765, ssimYWorstFrame: 0.91))
        try roundTrip(TranscodeFailure.cancelled)
        try roundTrip(TranscodeFailure(code: "input_unreadable", message: "cannot read \"a\\b\"\n\u{1}: gone"))
    }

    func testUnknownMembersAreRefusedWithTheirPointer() {
        let text = #"{"code":"cancelled","message":"cancelled","extra":1}"#
        XCTAssertThrowsError(try JSONDocument.decode(TranscodeFailure.self, from: Array(text.utf8))) { error in
            XCTAssertEqual((error as? JSONError)?.pointer, "/extra")
        }
        let missing = #"{"cpus":2}"#
        XCTAssertThrowsError(try JSONDocument.decode(ResourceSample.self, from: Array(missing.utf8))) { error in
            XCTAssertEqual((error as? JSONError)?.pointer, "/load_1m")
        }
    }

    func testSummariesWriteEveryField() throws {
        let r = RenditionSummary(name: "720p", width: 1280, height: 720, frames: 150, playlist: "out/720p/index.m3u8",
                                 segments: 2, bandwidth: 2_000_000, averageBandwidth: 1_500_000,
                                 codecs: "hvc1.1.6.L93.B0,opus", bytes: 1_000_000)
        let ladder = LadderSummary(master: "out/master.m3u8", renditions: [r, r], mediaSeconds: 6, elapsedSeconds: 3,
                                   sourceFrames: 150, fps: 50, speed: 2)
        let doc = try JSONDocument(parsing: ladder.jsonBytes)
        XCTAssertEqual(try doc.root["output_bytes"]?.int64(), 2_000_000)
        XCTAssertEqual(try doc.root["renditions"]?[1]?["codecs"]?.string(), "hvc1.1.6.L93.B0,opus")
        XCTAssertTrue(doc.root["renditions"]?[0]?["quality"]?.isNull == true)
        let single = TranscodeSummary(input: "a", output: "b", preset: "h264-720p", mediaSeconds: 2, elapsedSeconds: 1,
                                      videoFrames: 50, audioSamples: 96000, width: 1280, height: 720, fps: 50, speed: 2,
                                      outputBytes: 99, videoCopied: true)
        XCTAssertEqual(try JSONDocument(parsing: single.jsonBytes).root["video_copied"]?.bool(), true)
    }
}
