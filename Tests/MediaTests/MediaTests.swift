// MediaTests: synthesize → probe → transcode with each preset → check with ffprobe;
// hostile inputs end in typed errors quickly; cancellation frees every libav object.
import Foundation
import JSON
import Media
import TranscodeAPI
import SpoolTestSupport
import XCTest
import SpoolModel

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
        // Cancel once the job is running: at its first progress report, not after a guess.
        let (running, started) = AsyncStream<Void>.makeStream()
        let task = Task {
            try await Transcoder.transcode(TranscodeRequest(input: input, output: out, preset: .h264_720p),
                                           progress: { _ in started.yield() })
        }
        var reports = running.makeAsyncIterator()
        _ = await reports.next()
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

    /// The model refuses bad settings (SpoolModelTests); Media refuses them again before
    /// opening anything, so a hand-built preset cannot slip through: the input here does
    /// not even exist, and the error is about the settings.
    func testPresetsAreValidatedBeforeWork() {
        var bad = TranscodePreset.h264_720p
        bad.video.rateControl = .crf(60)
        let missing = Scratch.path("does-not-exist.mp4"), out = Scratch.path("never.mp4")
        let e = expectMediaError { _ = try Transcoder.transcodeBlocking(TranscodeRequest(input: missing, output: out, preset: bad)) }
        XCTAssertEqual(e?.code, "invalid_settings")
        XCTAssertTrue(e?.description.contains("CRF 60") ?? false, "\(String(describing: e))")
        var ladder = LadderPreset.hlsLadderH264
        ladder.rungs[0].video.speed = "ludicrous"
        let l = expectMediaError { _ = try Transcoder.transcodeLadderBlocking(LadderRequest(input: missing, outputDirectory: out, preset: ladder)) }
        XCTAssertEqual(l?.code, "invalid_settings")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        for p in TranscodePreset.all { XCTAssertNoThrow(try p.validate(), p.name) }
        XCTAssertEqual(TranscodePreset.all.map(\.name), ["h264-1080p", "h264-720p", "h264-360p", "hevc-1080p", "vp9-720p", "av1-720p"])
    }
}
