// Damaged media data: undecodable packets are skipped and counted within an error budget
// (a few bad packets do not fail a job; a mostly broken file does, with the reason), and
// an input whose video cannot be decoded at all fails instead of giving an empty output.
// Damage is made at test time, at fixed seeds, in the sample data of synthesized MP4s.
import Foundation
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest
import SpoolModel

/// The payload range of the top-level `mdat` box of an MP4.
func mdatPayload(_ bytes: [UInt8]) -> Range<Int>? {
    var at = 0
    func be(_ i: Int, _ n: Int) -> Int { (0..<n).reduce(0) { $0 << 8 | Int(bytes[i + $1]) } }
    while at + 8 <= bytes.count {
        var size = be(at, 4)
        var header = 8
        if size == 1, at + 16 <= bytes.count { size = be(at + 8, 8); header = 16 }
        if size == 0 { size = bytes.count - at }
        guard size >= header, at + size <= bytes.count else { return nil }
        if bytes[at + 4 ..< at + 8].elementsEqual("mdat".utf8) { return (at + header) ..< (at + size) }
        at += size
    }
    return nil
}

/// A copy of `source` with `damage` applied to its mdat payload.
func damagedCopy(of source: String, named name: String, _ damage: (inout [UInt8], Range<Int>) -> Void) throws -> String {
    var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: source)))
    let payload = try XCTUnwrap(mdatPayload(bytes), "no mdat in \(source)")
    damage(&bytes, payload)
    let p = Scratch.path(name)
    try Data(bytes).write(to: URL(fileURLWithPath: p))
    return p
}

final class DecodeErrorTests: XCTestCase {
    private func longClip() throws -> String {
        var spec = TestClipSpec()
        spec.seconds = 8
        return try Clips.clip("long.mp4", spec: spec)
    }

    /// Decoded (not copied) video and audio, so both decoders see the damage.
    private func decodingPreset() throws -> TranscodePreset {
        var p = try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast")
        p.audio.copyIfCompatible = false
        return p
    }

    func testAFewBadPacketsAreSkippedAndCounted() throws {
        // Six 48-byte stretches of noise in the middle of the sample data.
        let input = try damagedCopy(of: try longClip(), named: "few-bad-packets.mp4") { bytes, payload in
            var g = SplitMix(seed: 9)
            let middle = payload.lowerBound + payload.count / 3 ..< payload.lowerBound + 2 * payload.count / 3
            for _ in 0..<6 {
                let at = Int.random(in: middle, using: &g)
                for i in at ..< at + 48 { bytes[i] = UInt8.random(in: 0...255, using: &g) }
            }
        }
        let out = Scratch.path("few-bad-packets-out.mp4")
        let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: out, preset: try decodingPreset()))
        XCTAssertGreaterThan(s.decodeErrors, 0, "the damage was not noticed by any decoder")
        XCTAssertLessThanOrEqual(s.decodeErrors, 12)
        XCTAssertGreaterThan(s.videoFrames, 150)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
    }

    func testAMostlyBrokenFileFailsWithTheBudgetError() throws {
        // Noise over every other 256-byte stretch of the sample data.
        let input = try damagedCopy(of: try longClip(), named: "mostly-broken.mp4") { bytes, payload in
            var g = SplitMix(seed: 10)
            for block in stride(from: payload.lowerBound, to: payload.upperBound - 256, by: 512) {
                for i in block ..< block + 256 { bytes[i] = UInt8.random(in: 0...255, using: &g) }
            }
        }
        let out = Scratch.path("mostly-broken-out.mp4")
        let baseline = LibAVObjects.live
        let e = expectMediaError(within: 30) {
            _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: out, preset: try decodingPreset()))
        }
        XCTAssertEqual(e?.code, "too_many_decode_errors", String(describing: e))
        XCTAssertEqual(e?.description.contains("packets could not be decoded"), true, String(describing: e))
        XCTAssertEqual(e?.description.contains("Operation not permitted"), false, String(describing: e))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(LibAVObjects.live, baseline)
    }

    func testGenericLibavErrorIsNotWordedAsAnErrno() {
        let e = MediaError.libav(operation: "decoding stream 1 (aac)", code: -1, message: "Operation not permitted")
        XCTAssertEqual(e.description, "decoding stream 1 (aac) failed: libav error -1 (generic error)")
    }

    func testVideoThatCannotBeDecodedFailsTheJob() throws {
        var spec = TestClipSpec()
        spec.audio = false
        let source = try Clips.clip("video-only.mp4", spec: spec)
        // Every sample zeroed: the stream is declared (with its size) but holds no picture.
        let input = try damagedCopy(of: source, named: "no-pictures.mp4") { bytes, payload in
            for i in payload { bytes[i] = 0 }
        }
        var limits = MediaLimits()
        limits.decodeErrorAllowance = Int.max   // only the "nothing came out" rule may fire
        var request = TranscodeRequest(input: input, output: Scratch.path("no-pictures-out.mp4"), preset: try decodingPreset())
        request.limits = limits
        let e = expectMediaError(within: 10) { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "no_video_frames", String(describing: e))
        XCTAssertEqual(e?.description, "\(input) has a video stream but no frame could be decoded")
        XCTAssertFalse(FileManager.default.fileExists(atPath: request.output))

        let dir = Scratch.path("no-pictures-ladder")
        var ladder = LadderRequest(input: input, outputDirectory: dir, preset: .hlsLadderH264)
        ladder.limits = limits
        XCTAssertEqual(expectMediaError(within: 10) { _ = try Transcoder.transcodeLadderBlocking(ladder) }?.code, "no_video_frames")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
    }

    func testAudioThatCannotBeDecodedFailsTheJob() throws {
        var spec = TestClipSpec()
        spec.video = false
        let source = try Clips.clip("audio-only.mp4", spec: spec)
        let input = try damagedCopy(of: source, named: "no-samples.mp4") { bytes, payload in
            var g = SplitMix(seed: 11)
            for i in payload { bytes[i] = UInt8.random(in: 0...255, using: &g) }
        }
        var request = TranscodeRequest(input: input, output: Scratch.path("no-samples-out.mp4"), preset: try decodingPreset())
        request.limits.decodeErrorAllowance = Int.max
        let e = expectMediaError(within: 10) { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "no_audio_frames", String(describing: e))
        XCTAssertFalse(FileManager.default.fileExists(atPath: request.output))
    }
}
