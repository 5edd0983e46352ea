// Media.Pipeline: decode once, encode one or more video renditions and one audio track,
// write one or more containers.
//
//   demux → decode (libav threads) ─┬→ scale ⇢ x264 → target(s)      (one per rendition;
//                                   │          the encoder on a thread of its own)
//                                   └→ resample → FIFO → AAC → every target (packets shared)
//
// Scalers are built from the first decoded frame (validated format and size) and rebuilt
// if the decoder's output changes. Timestamps are taken from the decoder, made relative to
// the container's start and kept strictly increasing. Cancellation is checked before every
// packet and frame; every libav object has an owner, so throwing frees everything.
internal import CLibAV
import SpoolModel
import TranscodeAPI

/// One decode → encode → mux run over a PipelinePlan (PipelinePlan.swift). The pieces:
/// PipelineSetup (outputs, video and audio paths), PipelineVideo, PipelineAudio,
/// PipelineCopy (stream copy), PipelineChecks (timestamps, decode errors, empty tracks),
/// PipelineProgress.
final class Pipeline {
    let plan: PipelinePlan
    let cancel: CancellationFlag
    let progress: (@Sendable (TranscodeProgress) -> Void)?
    let input: InputFile
    var targets: [Int: Target] = [:]
    var renditions: [Rendition] = []

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

    @inline(__always)
    func checkCancelled() throws(MediaError) {
        if cancel.isCancelled { throw .cancelled }
    }

    func run() throws(MediaError) -> PipelineResult {
        let ordered = targets.keys.sorted().map { targets[$0]! }
        for t in ordered { try t.muxer.writeHeader() }
        // Every path out of here, thrown or not, leaves no encoder thread running (and no
        // worker holding its rendition: the two refer to each other until then).
        defer {
            for r in renditions {
                r.worker?.abort()
                r.worker = nil
            }
        }
        for r in renditions {
            let worker = try EncodeWorker(rendition: r, cancel: cancel)
            r.worker = worker
            try worker.start()
        }
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
        // Flush every encoder (each on its own thread, side by side), then collect quality.
        for r in renditions { try r.worker!.finish() }
        for r in renditions {
            r.qualityReport = try r.quality?.finish()
            r.quality = nil
        }
        // The last moment a cancellation can still stop the job: after this the output is whole.
        try checkCancelled()
        for t in ordered { try t.muxer.finish() }
        report(force: true)

        let elapsed = Double(monotonicNanos() - startNanos) / 1e9
        let media = mediaSeconds
        return PipelineResult(
            renditions: renditions.map {
                .init(name: $0.name, width: $0.width, height: $0.height, frames: $0.frames, target: $0.targetIndex,
                      codecs: $0.target.muxer.codecString(stream: $0.target.videoStream!, frameRate: $0.frameRate),
                      quality: $0.qualityReport,
                      frameRate: $0.frameRate)
            } + (videoCopy.map { c in
                [.init(name: c.name, width: c.width, height: c.height, frames: c.frames, target: c.targetIndex,
                       codecs: c.codecs, quality: nil, frameRate: c.frameRate)]
            } ?? []),
            sourceFrames: sourceFrames, mediaSeconds: media, elapsedSeconds: elapsed, audioSamples: audioSamples,
            fps: elapsed > 0 ? Double(sourceFrames) / elapsed : 0, speed: elapsed > 0 ? media / elapsed : 0,
            bytesWritten: ordered.reduce(0) { $0 + $1.muxer.bytesWritten }, audioCodecs: ordered.lazy.compactMap { t in t.audioStream.map { t.muxer.codecString(stream: $0) } }.first,
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

}
