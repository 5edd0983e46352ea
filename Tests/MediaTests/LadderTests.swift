// Decode once, encode a ladder, write HLS (fMP4 segments) with a master playlist.
import Foundation
import Media
import TranscodeAPI
import XCTest
import SpoolModel

final class LadderTests: XCTestCase {
    private func testLadder() -> LadderPreset {
        LadderPreset(name: "test-ladder", summary: "three small rungs and one too large",
                     rungs: [LadderPreset.rung("720p", width: 1280, height: 720, maxKbps: 3000),
                             LadderPreset.rung("240p", width: 320, height: 240, maxKbps: 800),
                             LadderPreset.rung("180p", width: 240, height: 180, maxKbps: 500),
                             LadderPreset.rung("120p", width: 160, height: 120, maxKbps: 300, profile: "main")],
                     segmentSeconds: 1)
    }

    func testLadderWritesEveryRenditionAndAMasterPlaylist() throws {
        let dir = Scratch.path("ladder-\(UUID().uuidString)")
        let baseline = LibAVObjects.live
        let log = ProgressLog()
        let summary = try Transcoder.transcodeLadderBlocking(
            LadderRequest(input: try Clips.mp4(), outputDirectory: dir, preset: testLadder()), progress: { log.add($0) })
        XCTAssertEqual(LibAVObjects.live, baseline)
        XCTAssertEqual(summary.sourceFrames, 50)
        XCTAssertEqual(summary.renditions.map(\.name), ["240p", "180p", "120p"], "720p is an upscale and must be skipped")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/720p"))
        XCTAssertEqual(log.all.last?.videoFrames, 50)

        let master = try String(contentsOfFile: summary.master, encoding: .utf8)
        XCTAssertTrue(master.hasPrefix("#EXTM3U\n"), master)
        for (name, w, h) in [("240p", 320, 240), ("180p", 240, 180), ("120p", 160, 120)] {
            XCTAssertTrue(master.contains("RESOLUTION=\(w)x\(h)"), master)
            XCTAssertTrue(master.contains("\n\(name)/index.m3u8\n"), master)
            let r = try XCTUnwrap(summary.renditions.first { $0.name == name })
            XCTAssertEqual(r.frames, 50)
            XCTAssertEqual(r.segments, 2, "1 s segments of a 2 s clip")
            XCTAssertTrue(r.codecs.hasPrefix("avc1.") && r.codecs.hasSuffix(",mp4a.40.2"), r.codecs)
            XCTAssertGreaterThan(r.bandwidth, 0)
            XCTAssertLessThanOrEqual(r.averageBandwidth, r.bandwidth)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/\(name)/init.mp4"))
            let playlist = try String(contentsOfFile: r.playlist, encoding: .utf8)
            XCTAssertTrue(playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""), playlist)
            XCTAssertTrue(playlist.contains("#EXT-X-ENDLIST"), playlist)

            let streams = try ffprobeStreams(r.playlist)
            let v = try XCTUnwrap(streams.first { $0.type == "video" })
            XCTAssertEqual(v.codec, "h264")
            XCTAssertEqual(v.width, w)
            XCTAssertEqual(v.height, h)
            XCTAssertEqual(v.frames, 50)
            XCTAssertEqual(streams.first { $0.type == "audio" }?.codec, "aac")
        }
        XCTAssertTrue(master.contains("CODECS=\"avc1.4d"), "the Main-profile rung: \(master)")
    }

    func testLadderValidationAndCleanupOnFailure() throws {
        var bad = testLadder()
        bad.rungs[1].name = "../x"
        XCTAssertThrowsError(try bad.validate()) { XCTAssertEqual(($0 as? ModelError)?.code, .validationFailed) }
        bad = testLadder(); bad.rungs[2].name = "240p"
        XCTAssertThrowsError(try bad.validate()) { XCTAssertEqual(($0 as? ModelError)?.details.first?.0, "rungs") }
        XCTAssertNoThrow(try LadderPreset.hlsLadderH264.validate())

        // A hostile input leaves no output directory behind.
        let dir = Scratch.path("ladder-fail-\(UUID().uuidString)")
        let junk = Scratch.path("ladder-junk.mp4")
        FileManager.default.createFile(atPath: junk, contents: Data(repeating: 7, count: 5000))
        let e = expectMediaError {
            _ = try Transcoder.transcodeLadderBlocking(LadderRequest(input: junk, outputDirectory: dir, preset: testLadder()))
        }
        XCTAssertNotNil(e)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
    }

    func testLadderCancellation() async throws {
        var spec = TestClipSpec()
        spec.seconds = 8
        let input = try Clips.clip("long.mp4", spec: spec)
        let dir = Scratch.path("ladder-cancel-\(UUID().uuidString)")
        let flag = CancellationFlag()
        let log = ProgressLog()
        log.onReport = { p in if p.videoFrames >= 5 { flag.cancel() } }
        var request = LadderRequest(input: input, outputDirectory: dir, preset: testLadder())
        request.progressInterval = 0
        let baseline = LibAVObjects.live
        do {
            _ = try await Transcoder.transcodeLadder(request, cancel: flag, progress: { log.add($0) })
            XCTFail("finished despite cancellation")
        } catch {
            XCTAssertEqual(error, .cancelled)
        }
        XCTAssertEqual(LibAVObjects.live, baseline)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
    }
}
