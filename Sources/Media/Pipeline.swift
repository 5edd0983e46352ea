// Media.Pipeline: decode once, encode one or more video renditions and one audio track,
// write one or more containers.
//
//   demux → decode (libav threads) ─┬→ scale → x264 → target(s)      (one per rendition)
//                                   └→ resample → FIFO → AAC → every target (packets shared)
//
// Scalers are built from the first decoded frame (validated format and size) and rebuilt
// if the decoder's output changes. Timestamps are taken from the decoder, made relative to
// the container's start and kept strictly increasing. Cancellation is checked before every
// packet and frame; every libav object has an owner, so throwing frees everything.
internal import CLibAV
#if canImport(Glibc)
import Glibc
import SpoolModel
#endif

/// One container the pipeline writes.
enum TargetPlan {
    /// `path` is what libav opens (a staged temporary); `label` names it in messages.
    case file(path: String, label: String)
    case stream(sink: any ByteSink, format: String, name: String)
    /// HLS with fMP4 segments: the media playlist path, segment file pattern, init name.
    case hls(playlist: String, segmentPattern: String, initName: String, segmentSeconds: Double)
}

struct RenditionPlan {
    var name: String
    var video: VideoSettings
    /// Index into PipelinePlan.targets.
    var target: Int
}

struct PipelinePlan {
    /// The input's name in messages, and the file to open (unless `inputStream`).
    var input: String
    var inputPath: MediaPath
    var inputStream: (any ByteSource)?
    var targets: [TargetPlan]
    var renditions: [RenditionPlan]
    var audio: AudioSettings?
    var limits: MediaLimits
    var threads: Int32
    var progressInterval: Double
    /// Drop renditions whose box is larger than the source in both directions (keeping at
    /// least the smallest), as ladders do.
    var skipUpscaled: Bool
    /// Decode each rendition again while encoding and compare with the scaled source.
    var measureQuality = false
}

struct PipelineResult {
    struct Rendition {
        var name: String; var width: Int32; var height: Int32; var frames: Int; var target: Int; var codecs: String
        var quality: QualityReport?
        var frameRate: Double
    }
    var renditions: [Rendition]
    var sourceFrames: Int
    var mediaSeconds: Double
    var elapsedSeconds: Double
    var audioSamples: Int64
    var fps: Double
    var speed: Double
    var bytesWritten: Int64
    var hasAudio: Bool
    var audioCopied: Bool
    var videoCopied: Bool
    /// Packets (or frames) the decoders could not decode and skipped.
    var decodeErrors: Int
}

final class Target {
    let muxer: Muxer
    var videoStream: Int?
    var audioStream: Int?
    init(muxer: Muxer) { self.muxer = muxer }
}

final class Rendition {
    let name: String
    let encoder: Encoder
    let target: Target
    let targetIndex: Int
    let width: Int32, height: Int32
    /// The encoder's time base (1/output frame rate) and the last timestamp sent.
    let timeBase: AVRational
    var lastPts: Int64 = -1
    var scaler: VideoScaler?
    let scaled: Frame
    var frames = 0
    var quality: QualityMeter?
    var qualityReport: QualityReport?

    init(name: String, encoder: Encoder, target: Target, targetIndex: Int, width: Int32, height: Int32) throws(MediaError) {
        self.name = name; self.encoder = encoder; self.target = target; self.targetIndex = targetIndex
        self.width = width; self.height = height
        timeBase = encoder.timeBase
        scaled = try Frame()
    }
}

/// Video stream copy: the input's packets remuxed into one target, never decoded.
final class VideoCopy {
    let name: String
    let target: Target
    let targetIndex: Int
    let width: Int32, height: Int32
    let frameRate: Double
    let codecs: String
    var frames = 0
    init(name: String, target: Target, targetIndex: Int, width: Int32, height: Int32, frameRate: Double, codecs: String) {
        self.name = name; self.target = target; self.targetIndex = targetIndex
        self.width = width; self.height = height; self.frameRate = frameRate; self.codecs = codecs
    }
}

final class Pipeline {
    let plan: PipelinePlan
    let cancel: CancellationFlag
    let progress: (@Sendable (TranscodeProgress) -> Void)?
    let input: InputFile
    private(set) var targets: [Int: Target] = [:]
    private(set) var renditions: [Rendition] = []

    // Video
    var videoIn: Int?
    var videoDecoder: Decoder?
    var videoTimeBase = AVRational(num: 1, den: 25)
    var videoOrigin: Int64 = 0
    var lastVideoPts: Int64 = -1
    var sourceFrames = 0
    /// Video stream copy (nil when the video is decoded and encoded).
    var videoCopy: VideoCopy?
    var copiedVideoEnd: Double = 0

    // Audio
    var audioIn: Int?
    var audioDecoder: Decoder?
    var audioEncoder: Encoder?
    var resampler: AudioResampler?
    var fifo: AudioFIFO?
    var audioSamples: Int64 = 0
    var audioStarted = false
    /// Audio stream copy: packets go to the outputs without decoding.
    var audioCopy = false
    var copiedAudioEnd: Double = 0

    // Scratch objects reused across frames
    let packet: Packet
    let outPacket: Packet
    let sharedPacket: Packet
    let decoded: Frame
    let audioFrame: Frame

    var packetsPerStream: [Int: Int] = [:]
    /// Audio frames decoded, and audio packets copied (to tell "no audio came out").
    var audioFramesOut = 0
    var lastPacketCorrupt = false
    let startNanos = monotonicNanos()
    var lastReportNanos: UInt64 = 0
    var origin: Int64 = 0   // container start, AV_TIME_BASE units

    init(plan: PipelinePlan, cancel: CancellationFlag, progress: (@Sendable (TranscodeProgress) -> Void)?) throws(MediaError) {
        self.plan = plan
        self.cancel = cancel
        self.progress = progress
        if let source = plan.inputStream {
            input = try InputFile(source: source, name: plan.input, limits: plan.limits, cancel: cancel)
        } else {
            input = try InputFile(path: plan.inputPath, limits: plan.limits, cancel: cancel)
        }
        packet = try Packet()
        outPacket = try Packet()
        sharedPacket = try Packet()
        decoded = try Frame()
        audioFrame = try Frame()
        let st = unsafe input.ctx.pointee.start_time
        origin = st == AVCode.noPTS ? 0 : st
        // A start time beyond ±100 years is a broken file, and would make every later
        // timestamp subtraction overflow.
        guard origin.magnitude < 3_155_760_000 * UInt64(AV_TIME_BASE) else {
            throw .invalidData(reason: "the start time \(origin) µs is out of range")
        }
        try setUpVideo()
        try setUpAudio()
        if renditions.isEmpty && videoCopy == nil && audioEncoder == nil && !audioCopy { throw .noUsableStreams(path: plan.input) }
    }

    func target(_ index: Int) throws(MediaError) -> Target {
        if let t = targets[index] { return t }
        let muxer: Muxer
        switch plan.targets[index] {
        case .file(let path, let label):
            muxer = try Muxer(path: path, label: label)
        case .stream(let sink, let format, let name):
            muxer = try Muxer(sink: sink, formatName: format, name: name)
        case .hls(let playlist, let pattern, let initName, let seconds):
            muxer = try Muxer(path: playlist, formatName: "hls")
            muxer.headerOptions = [
                ("hls_time", String(seconds)), ("hls_playlist_type", "vod"), ("hls_segment_type", "fmp4"),
                ("hls_segment_filename", pattern), ("hls_fmp4_init_filename", initName),
                ("hls_flags", "independent_segments"), ("protocol_whitelist", "file"),
            ]
        }
        let t = Target(muxer: muxer)
        targets[index] = t
        return t
    }

    private func setUpVideo() throws(MediaError) {
        guard !plan.renditions.isEmpty,
              let v = input.bestStream(AVMEDIA_TYPE_VIDEO),
              unsafe (input.stream(v).pointee.disposition & AV_DISPOSITION_ATTACHED_PIC) == 0 else { return }
        let st = unsafe input.stream(v)
        let par = unsafe st.pointee.codecpar.pointee
        unsafe try plan.limits.checkPicture(width: par.width, height: par.height)
        var rate = unsafe st.pointee.avg_frame_rate
        if !rate.isValid || rate.double > 240 { rate = unsafe st.pointee.r_frame_rate }
        if !rate.isValid || rate.double > 240 || rate.double < 1 { rate = AVRational(num: 25, den: 1) }
        videoTimeBase = av_inv_q(rate)
        let sar = unsafe par.sample_aspect_ratio
        if try setUpVideoCopy(index: v, rate: rate) { return }
        let dec = unsafe try Decoder(stream: st, threads: plan.threads)
        unsafe try plan.limits.checkDecodedFrameMemory(width: dec.ctx.pointee.width, height: dec.ctx.pointee.height,
                                                pixelFormat: dec.ctx.pointee.pix_fmt.rawValue, framesInFlight: dec.framesInFlight)

        var chosen = plan.renditions
        if plan.skipUpscaled {
            let fits = chosen.filter { r in
                (r.video.maxHeight.map { unsafe $0 <= par.height } ?? true) || (r.video.maxWidth.map { unsafe $0 <= par.width } ?? true)
            }
            let smallest = chosen.min { ($0.video.maxHeight ?? .max) < ($1.video.maxHeight ?? .max) }
            chosen = fits.isEmpty ? (smallest.map { [$0] } ?? []) : fits
        }
        for r in chosen {
            let preset = TranscodePreset(name: r.name, summary: "", video: r.video, audio: AudioSettings())
            let (w, h) = unsafe preset.outputSize(sourceWidth: par.width, sourceHeight: par.height, sampleAspect: (sar.num, sar.den))
            let t = try target(r.target)
            try t.muxer.checkCarries(VideoCodec(rawValue: r.video.codec)?.codecID ?? AV_CODEC_ID_NONE, name: r.video.codec)
            var outRate = rate
            if let m = r.video.maxFrameRate, rate.double > Double(m) + 0.001 { outRate = AVRational(num: Int32(m), den: 1) }
            let enc = try Encoders.video(width: w, height: h, frameRate: outRate, settings: r.video,
                                         globalHeader: t.muxer.needsGlobalHeader, threads: plan.threads)
            guard t.videoStream == nil else {
                throw .invalidSettings(reason: "two renditions write to the same output")
            }
            t.videoStream = try t.muxer.addStream(for: enc)
            let rendition = try Rendition(name: r.name, encoder: enc, target: t, targetIndex: r.target, width: w, height: h)
            if plan.measureQuality { rendition.quality = try QualityMeter(encoder: enc) }
            renditions.append(rendition)
        }
        videoIn = v
        videoDecoder = dec
    }

    private func setUpAudio() throws(MediaError) {
        guard let settings = plan.audio, let a = input.bestStream(AVMEDIA_TYPE_AUDIO) else { return }
        // Audio goes to every output that has video (or to every planned output if none has).
        if targets.isEmpty { for i in plan.targets.indices { _ = try target(i) } }
        let st = unsafe input.stream(a)
        let par = unsafe st.pointee.codecpar.pointee
        if try setUpAudioCopy(index: a, settings: settings) { return }
        let dec = unsafe try Decoder(stream: st, threads: plan.threads)
        let channels = unsafe min(max(1, par.ch_layout.nb_channels), settings.maxChannels)
        let global = targets.values.contains { $0.muxer.needsGlobalHeader }
        for t in targets.values {
            try t.muxer.checkCarries(AudioCodec(rawValue: settings.codec)?.codecID ?? AV_CODEC_ID_NONE, name: settings.codec)
        }
        let enc = unsafe try Encoders.audio(settings.codec, sampleRate: par.sample_rate > 0 ? par.sample_rate : 48000, channels: channels,
                                     bitrateKbps: settings.bitrateKbps, globalHeader: global)
        for t in targets.values { t.audioStream = try t.muxer.addStream(for: enc) }
        audioIn = a; audioDecoder = dec; audioEncoder = enc
        fifo = unsafe try AudioFIFO(format: enc.ctx.pointee.sample_fmt, channels: channels)
    }

    @inline(__always)
    func checkCancelled() throws(MediaError) {
        if cancel.isCancelled { throw .cancelled }
    }

    func run() throws(MediaError) -> PipelineResult {
        let ordered = targets.keys.sorted().map { targets[$0]! }
        for t in ordered { try t.muxer.writeHeader() }
        let maxTs = plan.limits.maxDurationSeconds
        while try input.read(into: packet) {
            try checkCancelled()
            let idx = unsafe Int(packet.ptr.pointee.stream_index)
            guard idx == videoIn || idx == audioIn else { continue }
            packetsPerStream[idx, default: 0] += 1
            lastPacketCorrupt = unsafe (packet.ptr.pointee.flags & AV_PKT_FLAG_CORRUPT) != 0
            try checkTimestamps(packet, stream: idx, maxSeconds: maxTs)
            if idx == videoIn, let copy = videoCopy {
                try copyVideo(packet, into: copy)
            } else if idx == videoIn, let dec = videoDecoder {
                try dec.send(packet)
                while try dec.receive(into: decoded) { try videoFrame(decoded) }
                try checkDecodeErrors(final: false)
            } else if idx == audioIn && audioCopy {
                try copyAudio(packet)
                if renditions.isEmpty { report(force: false) }
            } else if idx == audioIn, let dec = audioDecoder {
                try dec.send(packet)
                while try dec.receive(into: decoded) { try audioFrame(decoded) }
                try checkDecodeErrors(final: false)
            }
        }
        try checkComplete()
        // End of input: drain decoders, resampler, FIFO and encoders.
        if let dec = videoDecoder {
            try dec.send(nil)
            while try dec.receive(into: decoded) { try videoFrame(decoded) }
        }
        if let dec = audioDecoder {
            try dec.send(nil)
            while try dec.receive(into: decoded) { try audioFrame(decoded) }
            try finishAudio()
        }
        try checkDecodeErrors(final: true)
        try checkSomethingCameOut()
        for r in renditions {
            try r.encoder.send(nil)
            try drain(r)
            r.qualityReport = try r.quality?.finish()
            r.quality = nil
        }
        for t in ordered { try t.muxer.finish() }
        report(force: true)

        let elapsed = Double(monotonicNanos() - startNanos) / 1e9
        let media = mediaSeconds
        return PipelineResult(
            renditions: renditions.map {
                unsafe .init(name: $0.name, width: $0.width, height: $0.height, frames: $0.frames, target: $0.targetIndex,
                      codecs: HLSCodecs.h264(extradata: $0.encoder.ctx), quality: $0.qualityReport,
                      frameRate: $0.timeBase.num > 0 ? Double($0.timeBase.den) / Double($0.timeBase.num) : 0)
            } + (videoCopy.map { c in
                [.init(name: c.name, width: c.width, height: c.height, frames: c.frames, target: c.targetIndex,
                       codecs: c.codecs, quality: nil, frameRate: c.frameRate)]
            } ?? []),
            sourceFrames: sourceFrames, mediaSeconds: media, elapsedSeconds: elapsed, audioSamples: audioSamples,
            fps: elapsed > 0 ? Double(sourceFrames) / elapsed : 0, speed: elapsed > 0 ? media / elapsed : 0,
            bytesWritten: ordered.reduce(0) { $0 + $1.muxer.bytesWritten }, hasAudio: audioEncoder != nil || audioCopy,
            audioCopied: audioCopy, videoCopied: videoCopy != nil, decodeErrors: decodeErrors)
    }

    /// A file that ends early is refused: containers with an index (MP4) say how many
    /// packets each stream has, and libav flags a packet cut short by the end of the file.
    private func checkComplete() throws(MediaError) {
        if lastPacketCorrupt {
            throw .invalidData(reason: "\(plan.input) ends in the middle of a packet (truncated?)")
        }
        for idx in [videoIn, audioIn].compactMap({ $0 }) {
            let declared = unsafe input.stream(idx).pointee.nb_frames
            let read = packetsPerStream[idx, default: 0]
            if declared > 0 && Int64(read) < declared {
                throw .invalidData(reason: "\(plan.input) ends early: stream \(idx) has \(read) of \(declared) packets (truncated?)")
            }
        }
    }

    private func drain(_ r: Rendition) throws(MediaError) {
        while try r.encoder.receive(into: outPacket) {
            try r.quality?.feed(outPacket)
            try r.target.muxer.write(outPacket, stream: r.target.videoStream!)
        }
    }

    // MARK: video

    private func videoFrame(_ frame: Frame) throws(MediaError) {
        try checkCancelled()
        guard let vi = videoIn else { return }
        let tb = videoTimeBase
        var pts: Int64
        let ts = unsafe frame.ptr.pointee.best_effort_timestamp
        if ts != AVCode.noPTS {
            pts = unsafe av_rescale_q(ts, input.stream(vi).pointee.time_base, tb) - av_rescale_q(origin, clibav_time_base_q(), tb)
            if lastVideoPts < 0 { videoOrigin = min(0, pts) }
            pts -= videoOrigin
        } else {
            pts = lastVideoPts + 1
        }
        if pts <= lastVideoPts { pts = lastVideoPts + 1 }
        lastVideoPts = pts
        for r in renditions {
            try checkCancelled()
            // On the rendition's own time grid: a slower output drops the frames that
            // land on a slot already taken.
            let decimating = av_cmp_q(r.timeBase, tb) > 0
            // Flooring keeps frame k of a 2× faster source only when k is even, so 100
            // frames at 50 fps give exactly 50 at 25 fps.
            var rpts = decimating ? av_rescale_q_rnd(pts, tb, r.timeBase, AV_ROUND_DOWN) : av_rescale_q(pts, tb, r.timeBase)
            if rpts <= r.lastPts {
                if decimating { continue }
                rpts = r.lastPts + 1
            }
            r.lastPts = rpts
            if r.scaler == nil || !r.scaler!.matches(frame) {
                if let dec = videoDecoder {
                    try plan.limits.checkDecodedFrameMemory(width: frame.width, height: frame.height, pixelFormat: frame.format,
                                                            framesInFlight: dec.framesInFlight)
                }
                r.scaler = try VideoScaler(srcWidth: frame.width, srcHeight: frame.height, srcFormat: frame.format,
                                           dstWidth: r.width, dstHeight: r.height, dstFormat: AV_PIX_FMT_YUV420P,
                                           limits: plan.limits)
            }
            try r.scaler!.scale(frame, into: r.scaled)
            r.scaled.pts = rpts
            try r.quality?.remember(r.scaled)
            try r.encoder.send(r.scaled)
            try drain(r)
            r.frames += 1
        }
        sourceFrames += 1
        report(force: false)
    }

    // MARK: progress

    var mediaSeconds: Double {
        if videoCopy != nil { return copiedVideoEnd }
        if !renditions.isEmpty, lastVideoPts >= 0 { return Double(lastVideoPts + 1) * videoTimeBase.double }
        if let enc = audioEncoder { return unsafe Double(audioSamples) / Double(enc.ctx.pointee.sample_rate) }
        return copiedAudioEnd
    }

    func report(force: Bool) {
        guard let progress else { return }
        let now = monotonicNanos()
        if !force && Double(now &- lastReportNanos) / 1e9 < plan.progressInterval { return }
        lastReportNanos = now
        let elapsed = Double(now - startNanos) / 1e9
        let media = mediaSeconds
        let total = input.durationSeconds
        let speed = elapsed > 0 ? media / elapsed : 0
        var eta: Double? = nil
        if total > 0 && speed > 0 { eta = max(0, (total - media) / speed) }
        progress(TranscodeProgress(videoFrames: sourceFrames, mediaSeconds: media, totalSeconds: total,
                                   elapsedSeconds: elapsed, fps: elapsed > 0 ? Double(sourceFrames) / elapsed : 0,
                                   speed: speed, etaSeconds: eta))
    }
}
