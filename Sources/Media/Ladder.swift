// Media.Ladder: decode once, encode several renditions, write them as HLS with fMP4
// (CMAF-style) segments and a master playlist.
//
//   OUTPUT_DIR/master.m3u8           lists every rendition (bandwidth, resolution, codecs)
//   OUTPUT_DIR/<rung>/index.m3u8     VOD media playlist (libavformat's hls muxer)
//   OUTPUT_DIR/<rung>/init.mp4       fMP4 initialization segment
//   OUTPUT_DIR/<rung>/seg_000.m4s …  media segments of segmentSeconds each
//
// Every rung has a fixed GOP equal to the segment length and no scene-cut keyframes, so
// segments of all renditions start at the same instants and players can switch between
// them. Rungs larger than the source are skipped (never upscale a ladder).
internal import CLibAV
import Foundation
import SpoolModel

public struct LadderRequest: Sendable {
    /// The input file, as the bytes the kernel sees (the stream's name in pipe mode).
    public var inputPath: MediaPath
    /// Created by the transcode: built under a temporary name next to it and renamed on
    /// success. Must not exist unless `overwrite` (then it is replaced, atomically).
    public var outputDirectoryPath: MediaPath
    public var overwrite = false
    public var input: String {
        get { inputPath.description }
        set { inputPath = MediaPath(newValue) }
    }
    public var outputDirectory: String {
        get { outputDirectoryPath.description }
        set { outputDirectoryPath = MediaPath(newValue) }
    }
    public var preset: LadderPreset
    public var limits: MediaLimits
    public var threads: Int32
    public var progressInterval: Double
    public var inputStream: (any ByteSource)?
    /// Also report PSNR and SSIM of every rendition against its scaled source.
    public var measureQuality = false

    public init(input: String, outputDirectory: String, preset: LadderPreset, limits: MediaLimits = MediaLimits(),
                threads: Int32 = 0, progressInterval: Double = 0.5) {
        self.init(inputPath: MediaPath(input), outputDirectoryPath: MediaPath(outputDirectory), preset: preset,
                  limits: limits, threads: threads, progressInterval: progressInterval)
    }

    public init(inputPath: MediaPath, outputDirectoryPath: MediaPath, preset: LadderPreset, limits: MediaLimits = MediaLimits(),
                threads: Int32 = 0, progressInterval: Double = 0.5) {
        self.inputPath = inputPath; self.outputDirectoryPath = outputDirectoryPath; self.preset = preset; self.limits = limits
        self.threads = threads; self.progressInterval = progressInterval
    }
}

public struct RenditionSummary: Sendable {
    public var name: String
    public var width: Int32
    public var height: Int32
    public var frames: Int
    public var playlist: String
    public var segments: Int
    /// Peak segment bitrate, bits per second (HLS BANDWIDTH).
    public var bandwidth: Int
    public var averageBandwidth: Int
    public var codecs: String
    public var bytes: Int64
    public var quality: QualityReport?
}

public struct LadderSummary: Sendable {
    public var master: String
    public var renditions: [RenditionSummary]
    public var mediaSeconds: Double
    public var elapsedSeconds: Double
    public var sourceFrames: Int
    public var fps: Double
    public var speed: Double
    /// Undecodable packets skipped (within MediaLimits' decode error budget).
    public var decodeErrors: Int = 0
    public var outputBytes: Int64 { renditions.reduce(0) { $0 + $1.bytes } }
}

extension Transcoder {
    /// Runs a ladder on its own thread; cancelling the calling task cancels the job.
    public static func transcodeLadder(_ request: LadderRequest, cancel: CancellationFlag = CancellationFlag(),
                                       progress: (@Sendable (TranscodeProgress) -> Void)? = nil) async throws(MediaError) -> LadderSummary {
        try await DedicatedThread.run(cancel: cancel, input: request.inputStream) { () throws(MediaError) in
            try transcodeLadderBlocking(request, cancel: cancel, progress: progress)
        }
    }

    /// Runs a ladder on the calling thread (which must be allowed to block).
    public static func transcodeLadderBlocking(_ request: LadderRequest, cancel: CancellationFlag = CancellationFlag(),
                                               progress: (@Sendable (TranscodeProgress) -> Void)? = nil) throws(MediaError) -> LadderSummary {
        LibAVLogging.ensureInstalled()
        let preset = request.preset
        try preset.checkedForThisLibav()
        let fm = FileManager.default
        // Built in a temporary directory next to the final one (an ASCII path through
        // /proc/self/fd, so no byte of the user's path reaches libav), renamed on success.
        let staged = try StagedOutput.directory(request.outputDirectoryPath, overwrite: request.overwrite)
        let dir = staged.workPath
        let finalDir = request.outputDirectory
        var plans: [TargetPlan] = []
        var rungs: [RenditionPlan] = []
        do {
            for (i, r) in preset.rungs.enumerated() {
                let sub = dir + "/" + r.name
                try fm.createDirectory(atPath: sub, withIntermediateDirectories: false)
                plans.append(.hls(playlist: sub + "/index.m3u8", segmentPattern: sub + "/seg_%03d.m4s",
                                  initName: "init.mp4", segmentSeconds: preset.segmentSeconds))
                var video = r.video
                video.gopSeconds = preset.segmentSeconds
                video.fixedGOP = true
                rungs.append(RenditionPlan(name: r.name, video: video, target: i))
            }
        } catch {
            staged.abandon()
            throw .outputUnwritable(path: finalDir, reason: "\(error)")
        }
        do {
            let plan = PipelinePlan(input: request.input, inputPath: request.inputPath, inputStream: request.inputStream,
                                    targets: plans, renditions: rungs,
                                    audio: preset.audio, limits: request.limits, threads: request.threads,
                                    progressInterval: request.progressInterval, skipUpscaled: true,
                                    measureQuality: request.measureQuality)
            let pipeline = try Pipeline(plan: plan, cancel: cancel, progress: progress)
            let result = try pipeline.run()
            // Rungs skipped as upscales leave empty directories: remove them.
            let kept = Set(result.renditions.map(\.name))
            for r in preset.rungs where !kept.contains(r.name) { try? fm.removeItem(atPath: dir + "/" + r.name) }
            var summaries: [RenditionSummary] = []
            for r in result.renditions {
                var summary = try HLSPlaylists.measure(directory: dir + "/" + r.name, rendition: r, audio: result.hasAudio)
                summary.playlist = finalDir + "/" + r.name + "/index.m3u8"
                summaries.append(summary)
            }
            try HLSPlaylists.writeMaster(path: dir + "/master.m3u8", renditions: summaries,
                                         frameRates: Dictionary(uniqueKeysWithValues: result.renditions.map { ($0.name, $0.frameRate) }))
            try staged.commit()
            return LadderSummary(master: finalDir + "/master.m3u8", renditions: summaries, mediaSeconds: result.mediaSeconds,
                                 elapsedSeconds: result.elapsedSeconds, sourceFrames: result.sourceFrames,
                                 fps: result.fps, speed: result.speed, decodeErrors: result.decodeErrors)
        } catch {
            staged.abandon()
            throw error
        }
    }
}

enum HLSCodecs {
    /// RFC 6381 codec string ("avc1.64001f") from the SPS in the encoder's extradata
    /// (Annex B with global headers, or avcC); High 3.1 if there is none.
    static func h264(extradata ctx: UnsafeMutablePointer<AVCodecContext>) -> String {
        let fallback = "avc1.64001f"
        guard let p = unsafe ctx.pointee.extradata, unsafe ctx.pointee.extradata_size > 4 else { return fallback }
        let n = unsafe Int(ctx.pointee.extradata_size)
        func hex(_ b: UInt8) -> String { let s = String(b, radix: 16); return s.count == 1 ? "0" + s : s }
        if unsafe p[0] == 1 && n >= 4 {   // avcC: version, profile, compatibility, level
            return unsafe "avc1." + hex(p[1]) + hex(p[2]) + hex(p[3])
        }
        var i = 0
        while i + 6 < n {
            if unsafe p[i] == 0 && p[i + 1] == 0 && p[i + 2] == 1 && (p[i + 3] & 0x1F) == 7 {
                return unsafe "avc1." + hex(p[i + 4]) + hex(p[i + 5]) + hex(p[i + 6])
            }
            i += 1
        }
        return fallback
    }
}

enum HLSPlaylists {
    /// Reads a media playlist written by libav and measures its segments.
    static func measure(directory: String, rendition r: PipelineResult.Rendition, audio: Bool) throws(MediaError) -> RenditionSummary {
        let playlist = directory + "/index.m3u8"
        guard let text = try? String(contentsOfFile: playlist, encoding: .utf8) else {
            throw .outputUnwritable(path: playlist, reason: "the media playlist was not written")
        }
        var duration: Double? = nil
        var total = 0.0, peak = 0.0, bytes: Int64 = 0, segments = 0
        for line in text.split(separator: "\n") {
            if line.hasPrefix("#EXTINF:") {
                duration = Double(line.dropFirst(8).prefix { $0 != "," })
            } else if !line.hasPrefix("#"), let d = duration {
                let size = fileSize(directory + "/" + line)
                bytes += size
                total += d
                segments += 1
                if d > 0 { peak = max(peak, Double(size) * 8 / d) }
                duration = nil
            }
        }
        let average = total > 0 ? Double(bytes) * 8 / total : 0   // media segments only, like the peak
        bytes += fileSize(directory + "/init.mp4")
        let codecs = audio ? "\(r.codecs),mp4a.40.2" : r.codecs
        return RenditionSummary(name: r.name, width: r.width, height: r.height, frames: r.frames, playlist: playlist,
                                segments: segments, bandwidth: Int(peak.rounded(.up)), averageBandwidth: Int(average.rounded(.up)),
                                codecs: codecs, bytes: bytes, quality: r.quality)
    }

    static func writeMaster(path: String, renditions: [RenditionSummary], frameRates: [String: Double]) throws(MediaError) {
        var text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        for r in renditions.sorted(by: { $0.bandwidth > $1.bandwidth }) {
            var attrs = "BANDWIDTH=\(r.bandwidth),AVERAGE-BANDWIDTH=\(r.averageBandwidth),RESOLUTION=\(r.width)x\(r.height)"
            if let frameRate = frameRates[r.name], frameRate > 0 { attrs += ",FRAME-RATE=" + String(format: "%.3f", frameRate) }
            attrs += ",CODECS=\"\(r.codecs)\""
            text += "#EXT-X-STREAM-INF:\(attrs)\n\(r.name)/index.m3u8\n"
        }
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw .outputUnwritable(path: path, reason: "\(error)")
        }
    }

    private static func fileSize(_ path: String) -> Int64 {
        var st = stat()
        return unsafe stat(path, &st) == 0 ? Int64(st.st_size) : 0
    }
}
