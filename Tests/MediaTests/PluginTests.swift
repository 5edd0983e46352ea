// The libav plugin: capabilities probed from libav, jobs run and cancelled by id.
import Foundation
import Media
import TranscodeAPI
import XCTest

final class PluginTests: XCTestCase {
    func testCapabilitiesComeFromTheLinkedLibav() throws {
        let caps = LibAVTranscoderPlugin().capabilities()
        XCTAssertTrue(caps.encoders.contains("libx264") && caps.encoders.contains("aac"), "\(caps.encoders)")
        // Debian's libav has the others too; if a build lacks one, it is simply not listed.
        XCTAssertTrue(Set(caps.encoders).isSubset(of: ["libx264", "libx265", "libvpx-vp9", "libsvtav1", "aac", "libopus"]))
        XCTAssertTrue(caps.demuxers.contains("mpegts") && caps.demuxers.contains("matroska"), "\(caps.demuxers)")
        XCTAssertFalse(caps.demuxers.contains("hls"))
        XCTAssertTrue(caps.muxers.contains("mp4") && caps.muxers.contains("hls"))
        XCTAssertGreaterThan(caps.videoDecoders, 10)
        XCTAssertGreaterThan(caps.audioDecoders, 10)
        XCTAssertTrue(caps.presets.contains("h264-720p") && caps.presets.contains("hls-ladder-h264"))
        XCTAssertTrue(caps.presets.contains("vp9-720p") && caps.presets.contains("av1-720p") && caps.presets.contains("hevc-1080p"))
        XCTAssertTrue(caps.libavVersion.hasPrefix("5.1") || caps.libavVersion.contains("5.1"), caps.libavVersion)
        for d in caps.hardwareDevices { XCTAssertTrue(caps.hardwareTypesBuilt.contains(d)) }
        let obj = try JSONSerialization.jsonObject(with: Data(caps.json.utf8)) as? [String: Any]
        XCTAssertEqual(obj?["encoders"] as? [String], caps.encoders)
    }

    func testPluginRunsAndCancelsJobsById() async throws {
        let plugin = LibAVTranscoderPlugin()
        let out = Scratch.path("plugin-out.mp4")
        let result = try await plugin.transcode(
            TranscodeJob(id: "a", kind: .single(TranscodeRequest(input: try Clips.mp4(), output: out, preset: .h264_360p))),
            progress: nil)
        guard case .single(let s) = result else { return XCTFail("wrong result kind") }
        XCTAssertEqual(s.videoFrames, 50)
        XCTAssertEqual(plugin.runningJobs, [])

        var spec = TestClipSpec()
        spec.seconds = 8
        let long = try Clips.clip("long.mp4", spec: spec)
        let log = ProgressLog()
        log.onReport = { p in if p.videoFrames >= 5 { plugin.cancel(jobID: "b") } }
        var request = TranscodeRequest(input: long, output: Scratch.path("plugin-cancel.mp4"), preset: .h264_720p)
        request.progressInterval = 0
        do {
            _ = try await plugin.transcode(TranscodeJob(id: "b", kind: .single(request)), progress: { log.add($0) })
            XCTFail("finished despite cancellation")
        } catch {
            XCTAssertEqual(error, .cancelled)
        }
        XCTAssertEqual(plugin.runningJobs, [])
    }
}
