// HLS CODECS name what each rendition really is (RFC 6381, HLS authoring spec): a ladder
// of HEVC, VP9 and AV1 rungs sharing Opus audio, with each string checked against what
// ffprobe reads back from the rung's init segment.
import Foundation
import Media
import SpoolModel
import SpoolTestSupport
import TranscodeAPI
import XCTest

final class CodecStringTests: XCTestCase {
    private func rung(_ name: String, _ codec: VideoCodec, _ w: Int32, _ h: Int32, profile: String? = nil) -> LadderRung {
        var r = LadderPreset.rung(name, width: w, height: h, maxKbps: 1000)
        r.video.codec = codec.rawValue
        r.video.profile = profile
        r.video.speed = "ultrafast"
        return r
    }

    /// profile, level and sample entry of the first video stream of `path`, by ffprobe.
    private func probeVideo(_ path: String) throws -> (profile: String, level: Int, tag: String) {
        let (rc, out) = try runProcess("/usr/bin/ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries",
                                                            "stream=profile,level,codec_tag_string", "-of", "json", path])
        XCTAssertEqual(rc, 0, out)
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        let s = try XCTUnwrap((obj?["streams"] as? [[String: Any]])?.first, out)
        return (s["profile"] as? String ?? "", s["level"] as? Int ?? -1, s["codec_tag_string"] as? String ?? "")
    }

    func testMasterPlaylistNamesHEVCVP9AV1AndOpus() throws {
        var audio = AudioSettings()
        audio.codec = "opus"
        audio.bitrateKbps = 64
        let preset = LadderPreset(name: "mixed", summary: "one rung per codec",
                                  rungs: [rung("hevc", .hevc, 320, 240, profile: "main"), rung("vp9", .vp9, 240, 180),
                                          rung("av1", .av1, 160, 120)],
                                  audio: audio, segmentSeconds: 1)
        let dir = Scratch.path("codecs-\(UUID().uuidString)")
        let summary = try Transcoder.transcodeLadderBlocking(LadderRequest(input: try Clips.mp4(), outputDirectory: dir, preset: preset))
        let master = try String(contentsOfFile: summary.master, encoding: .utf8)
        XCTAssertFalse(master.contains("avc1") || master.contains("mp4a"), master)
        let codecs = Dictionary(uniqueKeysWithValues: summary.renditions.map { ($0.name, $0.codecs) })
        for (name, c) in codecs {
            XCTAssertTrue(master.contains("CODECS=\"\(c)\""), "\(name): \(master)")
            XCTAssertTrue(c.hasSuffix(",opus"), c)
        }

        // HEVC Main, main tier, the level_idc written: hvc1.1.6.L<level>.<constraint byte>,
        // whose progressive-source and frame-only bits are set (x265 writes 0x90: it leaves
        // non-packed unset, where the HLS spec's example shows B0).
        let hevc = try probeVideo(dir + "/hevc/init.mp4")
        XCTAssertEqual(hevc.tag, "hvc1", "HLS wants parameter sets in the sample entry")
        XCTAssertEqual(hevc.profile, "Main")
        let hevcCodecs = try XCTUnwrap(codecs["hevc"])
        XCTAssertTrue(hevcCodecs.hasPrefix("hvc1.1.6.L\(hevc.level)."), hevcCodecs)
        let constraints = hevcCodecs.dropFirst("hvc1.1.6.L\(hevc.level).".count).prefix { $0 != "," }
        let flags = try XCTUnwrap(UInt8(constraints, radix: 16), hevcCodecs)
        XCTAssertEqual(flags & 0x90, 0x90, hevcCodecs)

        // VP9 profile 0, 8-bit; 240×180 at 25 fps is level 1.1 (picture over level 1's 36864).
        XCTAssertEqual(try probeVideo(dir + "/vp9/init.mp4").tag, "vp09")
        XCTAssertEqual(codecs["vp9"], "vp09.00.11.08,opus")

        // AV1 Main, 8-bit, the level its sequence header declares, main tier.
        let av1 = try probeVideo(dir + "/av1/init.mp4")
        XCTAssertEqual(av1.tag, "av01")
        XCTAssertEqual(av1.profile, "Main")
        let level = av1.level < 10 ? "0\(av1.level)" : "\(av1.level)"
        XCTAssertEqual(codecs["av1"], "av01.0.\(level)M.08,opus")
    }
}
