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
import TranscodeAPI

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
                var summary = try HLSPlaylists.measure(directory: dir + "/" + r.name, rendition: r, audioCodecs: result.audioCodecs)
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

enum HLSPlaylists {
    /// Reads a media playlist written by libav and measures its segments.
    static func measure(directory: String, rendition r: PipelineResult.Rendition, audioCodecs: String?) throws(MediaError) -> RenditionSummary {
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
        let codecs = audioCodecs.map { r.codecs + "," + $0 } ?? r.codecs
        return RenditionSummary(name: r.name, width: r.width, height: r.height, frames: r.frames, playlist: playlist,
                                segments: segments, bandwidth: Int(peak.rounded(.up)), averageBandwidth: Int(average.rounded(.up)),
                                codecs: codecs, bytes: bytes, quality: r.quality)
    }

    static func writeMaster(path: String, renditions: [RenditionSummary], frameRates: [String: Double]) throws(MediaError) {
        var text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        for r in renditions.sorted(by: { $0.bandwidth > $1.bandwidth }) {
            var attrs = "BANDWIDTH=\(r.bandwidth),AVERAGE-BANDWIDTH=\(r.averageBandwidth),RESOLUTION=\(r.width)x\(r.height)"
            if let frameRate = frameRates[r.name], frameRate > 0 { attrs += ",FRAME-RATE=" + NumberFormat.fixed(frameRate, places: 3) }
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
