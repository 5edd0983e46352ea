// Hostile inputs end in typed errors quickly, free every libav object and leave no output.
import Foundation
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest
import SpoolModel

final class HostileInputTests: XCTestCase {
    private func write(_ name: String, _ bytes: [UInt8]) -> String {
        let p = Scratch.path(name)
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    /// Both probing and transcoding must end with a typed error within 2 s.
    private func assertRefused(_ path: String, codes: Set<String>, file: StaticString = #filePath, line: UInt = #line) {
        let baseline = LibAVObjects.live
        let e1 = expectMediaError(file: file, line: line) { _ = try MediaProbe.probe(path) }
        let out = path + ".out.mp4"
        let e2 = expectMediaError(file: file, line: line) {
            _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: path, output: out, preset: .h264_360p))
        }
        for e in [e1, e2] {
            if let e { XCTAssertTrue(codes.contains(e.code), "\(e.code): \(e)", file: file, line: line) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "output left behind", file: file, line: line)
        XCTAssertEqual(LibAVObjects.live, baseline, "libav objects leaked", file: file, line: line)
        XCTAssertEqual(OpenInputFiles.live, 0, "an input file was not closed", file: file, line: line)
    }

    func testDecodedFrameMemoryCap() throws {
        // 320×240 yuv420p is 115200 bytes a frame; one decoding thread holds 2 in flight
        // (the one being decoded and the one handed out; the clip has no B-frames).
        let input = try Clips.mp4()
        let preset = try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast")   // scaled: decoded, not copied
        let baseline = LibAVObjects.live
        let out = Scratch.path("frame-memory.mp4")
        var request = TranscodeRequest(input: input, output: out, preset: preset)
        request.threads = 1
        request.limits.maxDecodedFrameBytes = 200_000
        let e = expectMediaError { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e?.code, "limit_exceeded")
        XCTAssertEqual(e?.description, "decoding 320×240 yuv420p with 2 frames in flight needs 225 KiB of decoded frames; the limit is 195.3 KiB")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(LibAVObjects.live, baseline)

        request.limits.maxDecodedFrameBytes = 300_000
        XCTAssertEqual(try Transcoder.transcodeBlocking(request).videoFrames, 50)
        // More decoding threads hold more frames: four frame threads and the one handed out.
        request.threads = 4
        request.overwrite = true   // the output of the run above exists
        let e4 = expectMediaError { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e4?.description, "decoding 320×240 yuv420p with 5 frames in flight needs 562.5 KiB of decoded frames; the limit is 293 KiB")
        XCTAssertEqual(LibAVObjects.live, baseline)
    }

    func testDirectoryIsNotARegularFile() {
        assertRefused(Scratch.dir, codes: ["input_unreadable"])
    }

    func testZeroLengthFile() {
        let p = write("empty.mp4", [])
        assertRefused(p, codes: ["empty_input"])
    }

    func testMissingFile() {
        assertRefused(Scratch.path("does-not-exist.mp4"), codes: ["input_unreadable"])
    }

    func testRandomBytes() {
        for seed: UInt64 in [1, 2, 3] {
            assertRefused(write("random-\(seed).mp4", pattern(seed: seed, count: 64 * 1024)),
                          codes: ["unrecognized_format", "invalid_data"])
        }
    }

    func testPlaylistPointingAtEtcPasswdIsRefusedByName() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXTINF:10.0,\n/etc/passwd\n#EXT-X-ENDLIST\n"
        let p = write("evil.m3u8", Array(text.utf8))
        assertRefused(p, codes: ["format_not_allowed"])
        do {
            _ = try MediaProbe.probe(p)
        } catch {
            XCTAssertEqual(error.description, "input format \"hls\" is not allowed; allowed formats: mov, mp4, m4a, matroska, webm, mpegts")
        }
    }

    func testTruncatedFiles() throws {
        let whole = try Array(Data(contentsOf: URL(fileURLWithPath: try Clips.mp4())))
        // Cut inside the index, and inside the media data after a complete index.
        assertRefused(write("cut-header.mp4", Array(whole.prefix(600))), codes: ["invalid_data", "unrecognized_format", "libav_error"])
        let cutData = write("cut-data.mp4", Array(whole.prefix(whole.count * 6 / 10)))
        let e = expectMediaError {
            _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: cutData, output: cutData + ".out.mp4", preset: .h264_360p))
        }
        XCTAssertEqual(e?.code, "invalid_data", e?.description ?? "")
        XCTAssertFalse(FileManager.default.fileExists(atPath: cutData + ".out.mp4"))
    }

    func testValidHeaderWithAbsurdDimensions() throws {
        let p = Scratch.path("absurd.mkv")
        try TestMedia.synthesizeHeaderOnly(to: p, width: 100_000, height: 100_000)
        assertRefused(p, codes: ["limit_exceeded"])
        do {
            _ = try MediaProbe.probe(p)
        } catch {
            XCTAssertEqual(error.description, "input is 100000×100000; the limit is 8192×8192")
        }
    }

    func testCorruptedMediaDataDoesNotCrash() throws {
        // Flip bytes all over the media data (not the header): decoding may complain or
        // succeed, but the process must survive and end either way.
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: try Clips.ts())))
        var g = SplitMix(seed: 42)
        for _ in 0..<400 {
            let i = 4096 + Int(g.next() % UInt64(bytes.count - 4096))
            bytes[i] = UInt8(truncatingIfNeeded: g.next())
        }
        let p = write("corrupt.ts", bytes)
        let out = Scratch.path("corrupt-out.mp4")
        do {
            _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: p, output: out, preset: .h264_360p))
        } catch {
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
    }
}
