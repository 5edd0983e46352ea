// MediaTests: synthesize → probe → transcode with each preset → check with ffprobe;
// hostile inputs end in typed errors quickly; cancellation frees every libav object.
import Foundation
import JSON
import Media
import SpoolTestSupport
import XCTest

final class SynthesisAndProbeTests: XCTestCase {
    func testSynthesizedMP4HasTheRequestedStreams() throws {
        let path = try Clips.mp4()
        let streams = try ffprobeStreams(path)
        let v = try XCTUnwrap(streams.first { $0.type == "video" })
        XCTAssertEqual(v.codec, "h264")
        XCTAssertEqual(v.width, 320)
        XCTAssertEqual(v.height, 240)
        XCTAssertEqual(v.frames, 50)
        let a = try XCTUnwrap(streams.first { $0.type == "audio" })
        XCTAssertEqual(a.codec, "aac")
        XCTAssertEqual(a.sampleRate, 48000)
        XCTAssertEqual(a.channels, 2)
    }

    func testProbeReportsStreamsAsJSON() throws {
        let path = try Clips.mp4()
        let r = try MediaProbe.probe(path)
        XCTAssertTrue(r.format.contains("mp4"), r.format)
        XCTAssertEqual(r.streams.count, 2)
        let v = try XCTUnwrap(r.streams.first { $0.type == "video" })
        XCTAssertEqual(v.codec, "h264")
        XCTAssertEqual(v.width, 320)
        XCTAssertEqual(v.height, 240)
        XCTAssertEqual(v.fps, 25)
        let a = try XCTUnwrap(r.streams.first { $0.type == "audio" })
        XCTAssertEqual(a.codec, "aac")
        XCTAssertEqual(a.sampleRate, 48000)
        XCTAssertEqual(a.channels, 2)
        XCTAssertEqual(a.channelLayout, "stereo")
        XCTAssertEqual(try XCTUnwrap(r.durationSeconds), 2.0, accuracy: 0.1)

        // The JSON (written by Spool's JSONWriter) reads back with an independent parser.
        let obj = try JSONSerialization.jsonObject(with: Data(r.json.utf8)) as! [String: Any]
        let js = obj["streams"] as! [[String: Any]]
        XCTAssertEqual(js.count, 2)
        XCTAssertEqual(js[0]["codec"] as? String, "h264")
        XCTAssertEqual(js[0]["width"] as? Int, 320)
        XCTAssertEqual(js[1]["sample_rate"] as? Int, 48000)
    }

    func testDurationStreamAndPacketCaps() throws {
        var limits = MediaLimits()
        limits.maxDurationSeconds = 1
        let e1 = expectMediaError { _ = try MediaProbe.probe(try Clips.mp4(), limits: limits) }
        XCTAssertEqual(e1?.description, "input lasts 2 s; the limit is 1 s")

        limits = MediaLimits()
        limits.maxStreams = 1
        XCTAssertEqual(expectMediaError { _ = try MediaProbe.probe(try Clips.mp4(), limits: limits) }?.description,
                       "input has 2 streams; the limit is 1")

        limits = MediaLimits()
        limits.maxPackets = 20
        var request = TranscodeRequest(input: try Clips.mp4(), output: Scratch.path("packet-cap.mp4"), preset: .h264_360p)
        request.limits = limits
        let e3 = expectMediaError { _ = try Transcoder.transcodeBlocking(request) }
        XCTAssertEqual(e3?.code, "limit_exceeded")
        XCTAssertFalse(FileManager.default.fileExists(atPath: Scratch.path("packet-cap.mp4")))

        // A stream without a duration in its header (MPEG-TS from a pipe) is capped by its timestamps.
        limits = MediaLimits()
        limits.maxDurationSeconds = 1
        var streamed = TranscodeRequest(input: "pipe", output: "memory", preset: .h264_360p)
        streamed.limits = limits
        streamed.inputStream = MemorySource(Array(try Data(contentsOf: URL(fileURLWithPath: try Clips.ts()))))
        streamed.outputStream = MemorySink()
        streamed.outputFormat = "mpegts"
        let e4 = expectMediaError { _ = try Transcoder.transcodeBlocking(streamed) }
        XCTAssertEqual(e4?.code, "limit_exceeded", String(describing: e4))
    }

    func testSynthesizedMPEGTSProbes() throws {
        let path = try Clips.ts()
        let r = try MediaProbe.probe(path)
        XCTAssertEqual(r.format, "mpegts")
        XCTAssertEqual(Set(r.streams.map(\.codec)), ["h264", "aac"])
    }

    func testProbeRefusesPicturesOverTheLimit() throws {
        let path = try Clips.mp4()
        var limits = MediaLimits()
        limits.maxWidth = 160
        limits.maxHeight = 120
        let baseline = LibAVObjects.live
        let e = expectMediaError { _ = try MediaProbe.probe(path, limits: limits) }
        XCTAssertEqual(e?.code, "limit_exceeded")
        XCTAssertEqual(e?.description, "input is 320×240; the limit is 160×120")
        XCTAssertEqual(LibAVObjects.live, baseline, "the demuxer opened before the refusal was not freed")
        let out = Scratch.path("over-limit.mp4")
        var request = TranscodeRequest(input: path, output: out, preset: .h264_360p)
        request.limits = limits
        XCTAssertEqual(expectMediaError { _ = try Transcoder.transcodeBlocking(request) }?.code, "limit_exceeded")
        XCTAssertEqual(LibAVObjects.live, baseline)
    }
}

final class TranscodeTests: XCTestCase {
    private func transcodeAndCheck(preset: TranscodePreset, input: String, output: String,
                                   width: Int, height: Int, frames: Int = 50) throws {
        let log = ProgressLog()
        let summary = try Transcoder.transcodeBlocking(
            TranscodeRequest(input: input, output: output, preset: preset), progress: { log.add($0) })
        XCTAssertEqual(summary.videoFrames, frames)
        XCTAssertEqual(Int(summary.width), width)
        XCTAssertEqual(Int(summary.height), height)
        XCTAssertGreaterThan(summary.outputBytes, 1000)
        XCTAssertFalse(log.all.isEmpty, "no progress reported")
        XCTAssertEqual(log.all.last?.videoFrames, frames)

        let streams = try ffprobeStreams(output)
        let v = try XCTUnwrap(streams.first { $0.type == "video" })
        XCTAssertEqual(v.codec, "h264")
        XCTAssertEqual(v.width, width)
        XCTAssertEqual(v.height, height)
        let n = try XCTUnwrap(v.frames)
        XCTAssertLessThanOrEqual(abs(n - frames), 1, "frame count \(n)")
        if let d = v.duration { XCTAssertEqual(d, Double(frames) / 25, accuracy: 0.041) }
        let a = try XCTUnwrap(streams.first { $0.type == "audio" })
        XCTAssertEqual(a.codec, "aac")
        XCTAssertEqual(a.channels, 2)
        // The file starts with its index (faststart) when it is MP4.
        if output.hasSuffix(".mp4") {
            let head = try FileHandle(forReadingFrom: URL(fileURLWithPath: output)).readData(ofLength: 64 * 1024)
            let moov = head.range(of: Data("moov".utf8)), mdat = head.range(of: Data("mdat".utf8))
            XCTAssertNotNil(moov)
            if let moov, let mdat { XCTAssertLessThan(moov.lowerBound, mdat.lowerBound) }
        }
    }

    func testPresetH264_1080p() throws {
        try transcodeAndCheck(preset: .h264_1080p, input: try Clips.mp4(), output: Scratch.path("out-1080p.mp4"),
                              width: 1440, height: 1080)
    }

    func testPresetH264_720p() throws {
        try transcodeAndCheck(preset: .h264_720p, input: try Clips.mp4(), output: Scratch.path("out-720p.mp4"),
                              width: 960, height: 720)
    }

    func testPresetH264_360p() throws {
        try transcodeAndCheck(preset: .h264_360p, input: try Clips.mp4(), output: Scratch.path("out-360p.mp4"),
                              width: 480, height: 360)
    }

    func testCustomBitrateFromMPEGTSIntoMPEGTS() throws {
        let p = try TranscodePreset.custom(width: 160, height: 120, bitrateKbps: 300, gopSeconds: 1, speed: "ultrafast")
        try transcodeAndCheck(preset: p, input: try Clips.ts(), output: Scratch.path("out-custom.ts"),
                              width: 160, height: 120)
    }

    func testFrameRateCapDecimatesFasterSources() throws {
        var spec = TestClipSpec()
        spec.fps = 50
        let input = try Clips.clip("clip50.mp4", spec: spec)
        let preset = try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast", maxFrameRate: 25)
        let out = Scratch.path("out-25fps.mp4")
        let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: out, preset: preset))
        XCTAssertEqual(s.videoFrames, 50, "100 frames at 50 fps become 50 at 25 fps")
        let v = try XCTUnwrap(try ffprobeStreams(out).first { $0.type == "video" })
        XCTAssertEqual(v.frames, 50)
        XCTAssertEqual(try XCTUnwrap(v.duration), 2.0, accuracy: 0.041)
        // A slower source keeps its own rate.
        let same = try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: Scratch.path("out-cap-noop.mp4"),
                                                                     preset: try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast", maxFrameRate: 30)))
        XCTAssertEqual(same.videoFrames, 50)
    }

    func testMatchingAudioIsCopiedNotReencoded() throws {
        // The clips carry stereo AAC-LC at 96 kb/s; h264-360p asks for AAC 96 kb/s stereo.
        for (input, ext) in [(try Clips.mp4(), "mp4"), (try Clips.ts(), "ts"), (try Clips.mp4(), "ts")] {
            let out = Scratch.path("copy-audio-\(input.hasSuffix(".ts") ? "ts" : "mp4").\(ext)")
            let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: out, preset: .h264_360p))
            XCTAssertTrue(s.audioCopied, input)
            let streams = try ffprobeStreams(out)
            let a = try XCTUnwrap(streams.first { $0.type == "audio" })
            XCTAssertEqual(a.codec, "aac")
            XCTAssertEqual(a.channels, 2)
            XCTAssertEqual(try XCTUnwrap(a.duration), 2.0, accuracy: 0.05)
            XCTAssertEqual(streams.first { $0.type == "video" }?.frames, 50)
        }
        // Asked not to, or asked for a different codec: re-encoded.
        var preset = TranscodePreset.h264_360p
        preset.audio.copyIfCompatible = false
        let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: Scratch.path("no-copy.mp4"), preset: preset))
        XCTAssertFalse(s.audioCopied)
        var low = TranscodePreset.h264_360p
        low.audio.bitrateKbps = 48   // the input's 96 kb/s is too rich: re-encode
        XCTAssertFalse(try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: Scratch.path("low.mp4"), preset: low)).audioCopied)
        // ADTS AAC (MPEG-TS) has no AudioSpecificConfig for an MP4 header: re-encoded.
        XCTAssertFalse(try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.ts(), output: Scratch.path("ts-to-mp4.mp4"), preset: .h264_360p)).audioCopied)
    }

    func testMatchingVideoIsCopiedNotReencoded() throws {
        // The clip is H.264 320×240 at 25 fps; asking for H.264 within 640×480 is met as is.
        let input = try Clips.mp4()
        let preset = try TranscodePreset.custom(width: 640, height: 480, speed: "ultrafast")
        for ext in ["mp4", "ts", "mkv"] {
            let out = Scratch.path("copy-video.\(ext)")
            let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: out, preset: preset))
            XCTAssertTrue(s.videoCopied, ext)
            XCTAssertEqual(s.videoFrames, 50, ext)
            XCTAssertEqual(s.width, 320)
            XCTAssertEqual(s.height, 240)
            XCTAssertEqual(s.mediaSeconds, 2.0, accuracy: 0.05, ext)
            let src = try XCTUnwrap(try ffprobeStreams(input).first { $0.type == "video" })
            let v = try XCTUnwrap(try ffprobeStreams(out).first { $0.type == "video" }, ext)
            XCTAssertEqual(v.codec, "h264")
            XCTAssertEqual(v.width, 320)
            XCTAssertEqual(v.height, 240)
            XCTAssertEqual(v.packets, src.packets, "packet count changed (\(ext))")
            XCTAssertEqual(v.frames, 50, "the copied video decodes to every frame (\(ext))")
            if let d = v.duration { XCTAssertEqual(d, 2.0, accuracy: 0.05, ext) }
        }
        // With the copy turned off, the same settings re-encode.
        var encode = preset
        encode.video.copyWhenMatching = false
        let e = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: Scratch.path("no-copy-video.mp4"), preset: encode))
        XCTAssertFalse(e.videoCopied)
        XCTAssertEqual(e.width, 640, "re-encoding fits the box")
    }

    func testCopiedVideoWithBFramesAndFromMPEGTS() throws {
        // x264 medium makes B-frames (decode order differs from display order; timestamps
        // start negative); MPEG-TS input carries Annex B H.264, rewritten by MP4 and Matroska.
        let bframes = Scratch.path("bframes.mp4")
        let made = try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: bframes,
                                                                     preset: try TranscodePreset.custom(width: 320, height: 240, speed: "medium", profile: "high")))
        XCTAssertFalse(made.videoCopied, "the clip is baseline; high was asked")
        let copy = try TranscodePreset.custom(width: 640, height: 480, speed: "ultrafast", profile: "high")
        for (input, ext) in [(bframes, "mp4"), (bframes, "ts"), (bframes, "mkv"), (try Clips.ts(), "mp4"), (try Clips.ts(), "mkv")] {
            let out = Scratch.path("copy-\((input as NSString).lastPathComponent).\(ext)")
            let preset = input == bframes ? copy : try TranscodePreset.custom(width: 640, height: 480, speed: "ultrafast")
            let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: out, preset: preset))
            XCTAssertTrue(s.videoCopied, out)
            let v = try XCTUnwrap(try ffprobeStreams(out).first { $0.type == "video" }, out)
            let src = try XCTUnwrap(try ffprobeStreams(input).first { $0.type == "video" })
            XCTAssertEqual(v.packets, src.packets, out)
            XCTAssertEqual(v.frames, 50, out)
            if let d = v.duration { XCTAssertEqual(d, 2.0, accuracy: 0.05, out) }
        }
    }

    func testCopiedHEVCInMP4IsTaggedHvc1() throws {
        let hevc = Scratch.path("hevc-source.mkv")
        _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: try Clips.mp4(), output: hevc,
                                                              preset: try TranscodePreset.custom(codec: "hevc", width: 160, height: 120, speed: "ultrafast")))
        let out = Scratch.path("hevc-copy.mp4")
        let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: hevc, output: out,
                                                                  preset: try TranscodePreset.custom(codec: "hevc", width: 320, height: 240, speed: "ultrafast")))
        XCTAssertTrue(s.videoCopied)
        let (rc, tags) = try runProcess("/usr/bin/ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_tag_string",
                                                             "-of", "csv=p=0", out])
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(tags.trimmingCharacters(in: .whitespacesAndNewlines), "hvc1")
        XCTAssertEqual(try ffprobeStreams(out).first { $0.type == "video" }?.frames, 50)
    }

    func testMismatchedVideoIsReencoded() throws {
        let input = try Clips.mp4()
        // Smaller than the source: scaled and encoded.
        let small = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: Scratch.path("mismatch-size.mp4"),
                                                                      preset: try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast")))
        XCTAssertFalse(small.videoCopied)
        XCTAssertEqual(small.width, 160)
        XCTAssertEqual(try ffprobeStreams(Scratch.path("mismatch-size.mp4")).first { $0.type == "video" }?.width, 160)
        // Another codec, a profile the source does not have, a frame-rate cap below the
        // source's, or a quality report: encoded.
        let hevc = try TranscodePreset.custom(codec: "hevc", width: 640, height: 480, speed: "ultrafast")
        XCTAssertFalse(try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: Scratch.path("mismatch-codec.mkv"), preset: hevc)).videoCopied)
        let high = try TranscodePreset.custom(width: 640, height: 480, speed: "ultrafast", profile: "high")
        XCTAssertFalse(try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: Scratch.path("mismatch-profile.mp4"), preset: high)).videoCopied)
        let slow = try TranscodePreset.custom(width: 640, height: 480, speed: "ultrafast", maxFrameRate: 15)
        XCTAssertFalse(try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: Scratch.path("mismatch-fps.mp4"), preset: slow)).videoCopied)
        var q = TranscodeRequest(input: input, output: Scratch.path("mismatch-quality.mp4"),
                                 preset: try TranscodePreset.custom(width: 640, height: 480, speed: "ultrafast"))
        q.measureQuality = true
        XCTAssertFalse(try Transcoder.transcodeBlocking(q).videoCopied)
    }

    func testFileInputIsReadThroughOneDescriptorClosedAtClose() throws {
        // MP4 (the demuxer seeks between the index and the samples, asks the size) and
        // Matroska (seeks to its cues), each opened once while working, closed after.
        for input in [try Clips.mp4(), try Clips.clip("clip.mkv")] {
            let baseline = LibAVObjects.live
            XCTAssertEqual(OpenInputFiles.live, 0)
            let fdsBefore = openDescriptorCount()
            let seen = ProgressLog()
            let openDuring = ManagedAtomicMax()
            seen.onReport = { _ in openDuring.record(OpenInputFiles.live) }
            let out = Scratch.path("pread-\((input as NSString).lastPathComponent).ts")
            let s = try Transcoder.transcodeBlocking(TranscodeRequest(input: input, output: out,
                                                                      preset: try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast")),
                                                     progress: { seen.add($0) })
            XCTAssertEqual(s.videoFrames, 50, input)
            XCTAssertEqual(openDuring.value, 1, "the input is read through one descriptor while transcoding (\(input))")
            XCTAssertEqual(OpenInputFiles.live, 0, "closed when the input closed")
            XCTAssertEqual(LibAVObjects.live, baseline)
            let r = try MediaProbe.probe(input)
            XCTAssertEqual(r.streams.count, 2)
            XCTAssertEqual(OpenInputFiles.live, 0)
            XCTAssertEqual(openDescriptorCount(), fdsBefore, "a descriptor leaked")
        }
        // A fragmented MP4 file: the demuxer asks the size and seeks to its end for the
        // fragment index, then back.
        var toMemory = TranscodeRequest(input: try Clips.mp4(), output: "memory",
                                        preset: try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast"))
        let sink = MemorySink()
        toMemory.outputStream = sink
        toMemory.outputFormat = "mp4"
        _ = try Transcoder.transcodeBlocking(toMemory)
        let fragmented = Scratch.path("fragmented.mp4")
        XCTAssertTrue(FileManager.default.createFile(atPath: fragmented, contents: Data(sink.bytes)))
        let again = try Transcoder.transcodeBlocking(TranscodeRequest(input: fragmented, output: Scratch.path("from-fragmented.ts"),
                                                                      preset: try TranscodePreset.custom(width: 160, height: 120, speed: "ultrafast")))
        XCTAssertEqual(again.videoFrames, 50)
        XCTAssertEqual(OpenInputFiles.live, 0)
    }

    func testAsyncTranscodeRunsOffTheCallersThread() async throws {
        let out = Scratch.path("out-async.mp4")
        let summary = try await Transcoder.transcode(TranscodeRequest(input: try Clips.mp4(), output: out, preset: .h264_360p))
        XCTAssertEqual(summary.videoFrames, 50)
        XCTAssertEqual(summary.mediaSeconds, 2.0, accuracy: 0.05)
    }

    func testCancellationStopsTheJobFreesEverythingAndRemovesTheOutput() async throws {
        var spec = TestClipSpec()
        spec.seconds = 8
        let input = try Clips.clip("long.mp4", spec: spec)
        let out = Scratch.path("out-cancelled.mp4")
        let baseline = LibAVObjects.live
        let flag = CancellationFlag()
        let log = ProgressLog()
        log.onReport = { p in if p.videoFrames >= 10 { flag.cancel() } }
        var request = TranscodeRequest(input: input, output: out, preset: .h264_720p)
        request.progressInterval = 0
        do {
            _ = try await Transcoder.transcode(request, cancel: flag, progress: { log.add($0) })
            XCTFail("the transcode finished although it was cancelled")
        } catch {
            XCTAssertEqual(error, .cancelled)
        }
        XCTAssertLessThan(log.all.last?.videoFrames ?? 0, 200, "stopped long after cancellation")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "partial output left behind")
        XCTAssertEqual(LibAVObjects.live, baseline, "libav objects still alive after cancellation")
    }

    func testTaskCancellationCancelsTheJob() async throws {
        var spec = TestClipSpec()
        spec.seconds = 8
        let input = try Clips.clip("long.mp4", spec: spec)
        let out = Scratch.path("out-task-cancelled.mp4")
        let task = Task { try await Transcoder.transcode(TranscodeRequest(input: input, output: out, preset: .h264_720p)) }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.result
        switch result {
        case .success: XCTFail("finished despite cancellation")
        case .failure(let e): XCTAssertEqual(e as? MediaError, .cancelled)
        }
    }

    func testOutputOntoTheInputIsRefused() throws {
        let copy = Scratch.path("self.mp4")
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: try Clips.mp4(), toPath: copy)
        let before = try Data(contentsOf: URL(fileURLWithPath: copy))
        let e = expectMediaError {
            _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: copy, output: Scratch.dir + "/./self.mp4", preset: .h264_360p))
        }
        XCTAssertEqual(e?.code, "invalid_settings")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: copy)), before)
    }

    func testPresetsAreValidatedBeforeWork() {
        XCTAssertEqual(expectMediaError { _ = try TranscodePreset.named("h264-4k") }?.code, "invalid_settings")
        XCTAssertEqual(expectMediaError { _ = try TranscodePreset.custom(crf: 60) }?.code, "invalid_settings")
        XCTAssertEqual(expectMediaError { _ = try TranscodePreset.custom(width: 641) }?.code, "invalid_settings")
        XCTAssertEqual(expectMediaError { _ = try TranscodePreset.custom(crf: 20, bitrateKbps: 500) }?.code, "invalid_settings")
        XCTAssertEqual(expectMediaError { _ = try TranscodePreset.custom(codec: "mpeg2") }?.code, "invalid_settings")
        for p in TranscodePreset.all { XCTAssertNoThrow(try p.validate(), p.name) }
        XCTAssertEqual(TranscodePreset.all.map(\.name), ["h264-1080p", "h264-720p", "h264-360p", "hevc-1080p", "vp9-720p", "av1-720p"])
    }
}

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

/// The `spool` binary's media commands, when it has been built (swift build --build-tests
/// builds it alongside the tests).
final class CLITests: XCTestCase {
    private var spool: String? {
        let exe = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/spool").path
        return FileManager.default.isExecutableFile(atPath: exe) ? exe : nil
    }

    func testProbePrintsJSONAndTranscodePrintsPlainProgressWhenNotATerminal() throws {
        guard let spool else { throw XCTSkip(".build/debug/spool not built") }
        let clip = try Clips.mp4()
        let (rc, out) = try runProcess(spool, ["probe", clip])
        XCTAssertEqual(rc, 0, out)
        let json = out.split(separator: "\n").first { $0.hasPrefix("{") }.map(String.init) ?? ""
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        XCTAssertEqual((obj?["streams"] as? [Any])?.count, 2, out)

        let dest = Scratch.path("cli-out.mp4")
        let (rc2, out2) = try runProcess(spool, ["transcode", clip, dest, "--preset", "h264-360p"])
        XCTAssertEqual(rc2, 0, out2)
        XCTAssertTrue(out2.contains("progress: frames="), out2)
        XCTAssertFalse(out2.contains("\r"), "a bar was drawn although stdout is a pipe")
        XCTAssertTrue(out2.contains("done: 2.00 s of media"), out2)
        XCTAssertTrue(out2.contains("480×360, 50 frames"), out2)

        // Pipe mode: stdin to stdout, reports on stderr.
        let piped = Scratch.path("cli-piped.mp4")
        let (rc4, out4) = try runProcess("/bin/sh", ["-c", "'\(spool)' transcode - - --preset h264-360p --format mp4 < '\(try Clips.ts())' > '\(piped)'"])
        XCTAssertEqual(rc4, 0, out4)
        XCTAssertTrue(out4.contains("output: stdout"), out4)
        let v = try ffprobeStreams(piped).first { $0.type == "video" }
        XCTAssertEqual(v?.frames, 50)
        XCTAssertEqual(v?.height, 360)

        // The ladder preset writes a directory with a master playlist.
        let ladderDir = Scratch.path("cli-ladder-\(UUID().uuidString)")
        let (rc5, out5) = try runProcess(spool, ["transcode", clip, ladderDir, "--preset", "hls-ladder-h264"])
        XCTAssertEqual(rc5, 0, out5)
        XCTAssertTrue(out5.contains("1 renditions") && out5.contains("360p: 480×360"), out5)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ladderDir + "/master.m3u8"))

        let (rc3, out3) = try runProcess(spool, ["transcode", clip, dest, "--preset", "h264-9000p"])
        XCTAssertNotEqual(rc3, 0)
        XCTAssertTrue(out3.contains("unknown preset"), out3)
    }
}
