// Media.Transcoder: one file-to-file transcode.
//
//   demux → decode (libav threads) → scale (libswscale, built from the first decoded frame)
//         → libx264 → mux (MP4 +faststart / MPEG-TS / Matroska)
//         → decode → resample (libswresample) → FIFO (encoder frame size) → AAC → mux
//
// The pipeline is synchronous and runs on a dedicated thread; `Transcoder.transcode` is
// the async front that starts that thread and resumes the caller when it ends, so no
// libav call ever blocks an event loop or the cooperative pool. Cancellation is a flag
// checked before every packet and every frame, and by libav's interrupt callback; when
// it fires the pipeline throws `.cancelled`, every owner frees its libav object, and the
// partial output file is removed.
import CLibAV
#if canImport(Glibc)
import Glibc
#endif

public struct TranscodeRequest: Sendable {
    public var input: String
    public var output: String
    public var preset: TranscodePreset
    public var limits: MediaLimits
    /// Codec threads (0 = libav decides).
    public var threads: Int32
    /// Seconds between progress reports (at most; a report comes at the first frame after).
    public var progressInterval: Double

    /// Streamed input (pipe mode): read from here instead of the file `input`, which then
    /// only names the stream in messages.
    public var inputStream: (any ByteSource)?
    /// Streamed output (pipe mode): written here instead of the file `output`, in
    /// `outputFormat` ("mpegts", "mp4" (fragmented) or "matroska").
    public var outputStream: (any ByteSink)?
    public var outputFormat: String?

    public static let streamFormats = ["mpegts", "mp4", "matroska"]

    public init(input: String, output: String, preset: TranscodePreset, limits: MediaLimits = MediaLimits(),
                threads: Int32 = 0, progressInterval: Double = 0.5) {
        self.input = input; self.output = output; self.preset = preset; self.limits = limits
        self.threads = threads; self.progressInterval = progressInterval
    }
}

public struct TranscodeProgress: Sendable {
    public var videoFrames: Int
    /// Output media time written so far, seconds.
    public var mediaSeconds: Double
    /// Input duration, seconds (0 when the container does not say).
    public var totalSeconds: Double
    public var elapsedSeconds: Double
    /// Video frames per second of wall time.
    public var fps: Double
    /// Media seconds per wall second (× real time).
    public var speed: Double
    /// Estimated seconds left, when the total is known and work has started.
    public var etaSeconds: Double?
    /// 0...1 when the total is known.
    public var fraction: Double? { totalSeconds > 0 ? min(1, mediaSeconds / totalSeconds) : nil }
}

public struct TranscodeSummary: Sendable {
    public var input: String
    public var output: String
    public var preset: String
    public var mediaSeconds: Double
    public var elapsedSeconds: Double
    public var videoFrames: Int
    public var audioSamples: Int
    public var width: Int32
    public var height: Int32
    public var fps: Double
    public var speed: Double
    public var outputBytes: Int64
}

public enum Transcoder {
    /// Runs a transcode on its own thread; cancelling the calling task cancels the job.
    public static func transcode(_ request: TranscodeRequest, cancel: CancellationFlag = CancellationFlag(),
                                 progress: (@Sendable (TranscodeProgress) -> Void)? = nil) async throws(MediaError) -> TranscodeSummary {
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (k: CheckedContinuation<TranscodeSummary, any Error>) in
                    let started = DedicatedThread.start {
                        do { k.resume(returning: try transcodeBlocking(request, cancel: cancel, progress: progress)) }
                        catch { k.resume(throwing: error) }
                    }
                    if !started { k.resume(throwing: MediaError.libav(operation: "starting a transcode thread", code: clibav_averror(EAGAIN), message: "no thread")) }
                }
            } onCancel: {
                cancel.cancel()
            }
        } catch let e as MediaError {
            throw e
        } catch {
            throw .libav(operation: "transcoding", code: 0, message: "\(error)")
        }
    }

    /// Runs a transcode on the calling thread (which must be allowed to block).
    public static func transcodeBlocking(_ request: TranscodeRequest, cancel: CancellationFlag = CancellationFlag(),
                                         progress: (@Sendable (TranscodeProgress) -> Void)? = nil) throws(MediaError) -> TranscodeSummary {
        LibAVLogging.ensureInstalled()
        try request.preset.validate()
        if request.outputStream != nil {
            guard let f = request.outputFormat, TranscodeRequest.streamFormats.contains(f) else {
                throw .invalidSettings(reason: "a streamed output needs a format: \(TranscodeRequest.streamFormats.joined(separator: ", "))")
            }
        }
        var a = stat(), b = stat()
        if request.inputStream == nil && request.outputStream == nil && stat(request.input, &a) == 0 && stat(request.output, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino {
            throw .invalidSettings(reason: "the output \(request.output) is the input file")
        }
        var createdOutput = false
        do {
            let session = try TranscodeSession(request: request, cancel: cancel, progress: progress)
            let summary = try session.run(createdOutput: &createdOutput)
            return summary
        } catch {
            if createdOutput { unlink(request.output) }
            throw error
        }
    }
}

/// Runs a closure on a new detached pthread (so blocking libav work stays off the pools).
enum DedicatedThread {
    private final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }

    static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attr, 8 << 20)
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, &attr, { arg in
            let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        if rc != 0 { Unmanaged<Box>.fromOpaque(box).release(); return false }
        return true
    }
}

/// One transcode's state. Lives on the transcode thread only.
final class TranscodeSession {
    let request: TranscodeRequest
    let cancel: CancellationFlag
    let progress: (@Sendable (TranscodeProgress) -> Void)?
    let input: InputFile
    let muxer: Muxer

    // Video
    var videoIn: Int?
    var videoDecoder: Decoder?
    var videoEncoder: Encoder?
    var videoOut = 0
    var scaler: VideoScaler?
    var videoOrigin: Int64 = 0
    var lastVideoPts: Int64 = -1
    var videoFrames = 0
    var outWidth: Int32 = 0, outHeight: Int32 = 0

    // Audio
    var audioIn: Int?
    var audioDecoder: Decoder?
    var audioEncoder: Encoder?
    var audioOut = 0
    var resampler: AudioResampler?
    var fifo: AudioFIFO?
    var audioSamples: Int64 = 0
    var audioStarted = false

    // Scratch objects reused across frames
    let packet: Packet
    let outPacket: Packet
    let decoded: Frame
    let converted: Frame

    var packetsPerStream: [Int: Int] = [:]
    var lastPacketCorrupt = false
    let startNanos = monotonicNanos()
    var lastReportNanos: UInt64 = 0
    var origin: Int64 = 0   // container start, AV_TIME_BASE units

    init(request: TranscodeRequest, cancel: CancellationFlag, progress: (@Sendable (TranscodeProgress) -> Void)?) throws(MediaError) {
        self.request = request
        self.cancel = cancel
        self.progress = progress
        if let source = request.inputStream {
            input = try InputFile(source: source, name: request.input, limits: request.limits, cancel: cancel)
        } else {
            input = try InputFile(path: request.input, limits: request.limits, cancel: cancel)
        }
        if let sink = request.outputStream {
            muxer = try Muxer(sink: sink, formatName: request.outputFormat ?? "mpegts", name: request.output)
        } else {
            muxer = try Muxer(path: request.output)
        }
        packet = try Packet()
        outPacket = try Packet()
        decoded = try Frame()
        converted = try Frame()
        let st = input.ctx.pointee.start_time
        origin = st == AVCode.noPTS ? 0 : st
        try setUpStreams()
    }

    private func setUpStreams() throws(MediaError) {
        let preset = request.preset
        if let v = input.bestStream(AVMEDIA_TYPE_VIDEO),
           (input.stream(v).pointee.disposition & AV_DISPOSITION_ATTACHED_PIC) == 0 {
            let st = input.stream(v)
            let par = st.pointee.codecpar.pointee
            try request.limits.checkPicture(width: par.width, height: par.height)
            let dec = try Decoder(stream: st, threads: request.threads)
            var rate = st.pointee.avg_frame_rate
            if !rate.isValid || rate.double > 240 { rate = st.pointee.r_frame_rate }
            if !rate.isValid || rate.double > 240 || rate.double < 1 { rate = AVRational(num: 25, den: 1) }
            let sar = par.sample_aspect_ratio
            (outWidth, outHeight) = preset.outputSize(sourceWidth: par.width, sourceHeight: par.height,
                                                      sampleAspect: (sar.num, sar.den))
            let enc = try Encoders.h264(width: outWidth, height: outHeight, frameRate: rate, settings: preset.video,
                                        globalHeader: muxer.needsGlobalHeader, threads: request.threads)
            videoIn = v; videoDecoder = dec; videoEncoder = enc
            videoOut = try muxer.addStream(for: enc)
        }
        if let a = input.bestStream(AVMEDIA_TYPE_AUDIO) {
            let st = input.stream(a)
            let par = st.pointee.codecpar.pointee
            let dec = try Decoder(stream: st, threads: request.threads)
            let channels = min(max(1, par.ch_layout.nb_channels), preset.audio.maxChannels)
            let enc = try Encoders.aac(sampleRate: par.sample_rate > 0 ? par.sample_rate : 48000, channels: channels,
                                       bitrateKbps: preset.audio.bitrateKbps, globalHeader: muxer.needsGlobalHeader)
            audioIn = a; audioDecoder = dec; audioEncoder = enc
            audioOut = try muxer.addStream(for: enc)
            fifo = try AudioFIFO(format: enc.ctx.pointee.sample_fmt, channels: channels)
        }
        if videoIn == nil && audioIn == nil { throw .noUsableStreams(path: request.input) }
    }

    @inline(__always)
    private func checkCancelled() throws(MediaError) {
        if cancel.isCancelled { throw .cancelled }
    }

    func run(createdOutput: inout Bool) throws(MediaError) -> TranscodeSummary {
        createdOutput = !muxer.isStreamed
        try muxer.writeHeader()
        let maxTs = request.limits.maxDurationSeconds
        while try input.read(into: packet) {
            try checkCancelled()
            let idx = Int(packet.ptr.pointee.stream_index)
            if idx == videoIn || idx == audioIn {
                let st = input.stream(idx)
                let pts = packet.ptr.pointee.pts
                if pts != AVCode.noPTS {
                    let secs = Double(pts) * st.pointee.time_base.double - Double(origin) / Double(AV_TIME_BASE)
                    if secs > maxTs { try request.limits.checkDuration(secs) }
                }
            }
            if idx == videoIn || idx == audioIn {
                packetsPerStream[idx, default: 0] += 1
                lastPacketCorrupt = (packet.ptr.pointee.flags & AV_PKT_FLAG_CORRUPT) != 0
            }
            if idx == videoIn, let dec = videoDecoder {
                try dec.send(packet)
                while try dec.receive(into: decoded) { try videoFrame(decoded) }
            } else if idx == audioIn, let dec = audioDecoder {
                try dec.send(packet)
                while try dec.receive(into: decoded) { try audioFrame(decoded) }
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
        if let enc = videoEncoder { try enc.send(nil); try drain(enc, stream: videoOut) }
        try muxer.finish()
        report(force: true)

        let elapsed = Double(monotonicNanos() - startNanos) / 1e9
        let media = mediaSeconds
        var st = stat()
        let size: Int64 = muxer.isStreamed ? muxer.bytesWritten : (stat(request.output, &st) == 0 ? Int64(st.st_size) : 0)
        return TranscodeSummary(
            input: request.input, output: request.output, preset: request.preset.name,
            mediaSeconds: media, elapsedSeconds: elapsed, videoFrames: videoFrames, audioSamples: Int(audioSamples),
            width: outWidth, height: outHeight,
            fps: elapsed > 0 ? Double(videoFrames) / elapsed : 0, speed: elapsed > 0 ? media / elapsed : 0,
            outputBytes: size)
    }

    /// A file that ends early is refused: containers with an index (MP4) say how many
    /// packets each stream has, and libav flags a packet cut short by the end of the file.
    private func checkComplete() throws(MediaError) {
        if lastPacketCorrupt {
            throw .invalidData(reason: "\(request.input) ends in the middle of a packet (truncated?)")
        }
        for idx in [videoIn, audioIn].compactMap({ $0 }) {
            let declared = input.stream(idx).pointee.nb_frames
            let read = packetsPerStream[idx, default: 0]
            if declared > 0 && Int64(read) < declared {
                throw .invalidData(reason: "\(request.input) ends early: stream \(idx) has \(read) of \(declared) packets (truncated?)")
            }
        }
    }

    private func drain(_ enc: Encoder, stream: Int) throws(MediaError) {
        while try enc.receive(into: outPacket) {
            try muxer.write(outPacket, stream: stream)
        }
    }

    // MARK: video

    private func videoFrame(_ frame: Frame) throws(MediaError) {
        try checkCancelled()
        guard let enc = videoEncoder, let vi = videoIn else { return }
        if scaler == nil || !scaler!.matches(frame) {
            scaler = try VideoScaler(srcWidth: frame.width, srcHeight: frame.height, srcFormat: frame.format,
                                     dstWidth: outWidth, dstHeight: outHeight, dstFormat: AV_PIX_FMT_YUV420P,
                                     limits: request.limits)
        }
        let tb = enc.timeBase
        var pts: Int64
        let ts = frame.ptr.pointee.best_effort_timestamp
        if ts != AVCode.noPTS {
            pts = av_rescale_q(ts, input.stream(vi).pointee.time_base, tb) - av_rescale_q(origin, clibav_time_base_q(), tb)
            if lastVideoPts < 0 { videoOrigin = min(0, pts) }
            pts -= videoOrigin
        } else {
            pts = lastVideoPts + 1
        }
        if pts <= lastVideoPts { pts = lastVideoPts + 1 }
        lastVideoPts = pts
        try scaler!.scale(frame, into: converted)
        converted.pts = pts
        try enc.send(converted)
        try drain(enc, stream: videoOut)
        videoFrames += 1
        report(force: false)
    }

    // MARK: audio

    private func audioFrame(_ frame: Frame) throws(MediaError) {
        try checkCancelled()
        guard let enc = audioEncoder, let fifo, let ai = audioIn else { return }
        if !audioStarted {
            audioStarted = true
            let ts = frame.ptr.pointee.best_effort_timestamp
            if ts != AVCode.noPTS {
                let rateTB = AVRational(num: 1, den: enc.ctx.pointee.sample_rate)
                let start = av_rescale_q(ts, input.stream(ai).pointee.time_base, rateTB) - av_rescale_q(origin, clibav_time_base_q(), rateTB)
                audioSamples = max(0, min(start, Int64(enc.ctx.pointee.sample_rate) * 10))
            }
        }
        if let r = resampler, !r.matches(frame) {
            try r.convert(nil, into: fifo, scratch: converted)
            resampler = nil
        }
        if resampler == nil { resampler = try AudioResampler(from: frame, to: enc) }
        try resampler!.convert(frame, into: fifo, scratch: converted)
        try encodeFIFO(final: false)
        if videoEncoder == nil { report(force: false) }
    }

    private func encodeFIFO(final: Bool) throws(MediaError) {
        guard let enc = audioEncoder, let fifo else { return }
        let frameSize = enc.frameSize > 0 ? enc.frameSize : 1024
        while fifo.count >= frameSize || (final && fifo.count > 0) {
            let n = min(frameSize, fifo.count)
            converted.unref()
            converted.ptr.pointee.format = enc.ctx.pointee.sample_fmt.rawValue
            converted.ptr.pointee.sample_rate = enc.ctx.pointee.sample_rate
            _ = clibav_channel_layout_copy(&converted.ptr.pointee.ch_layout, &enc.ctx.pointee.ch_layout)
            if n < frameSize && !Encoders.acceptsSmallLastFrame(enc) {
                // Pad the last frame with silence for encoders that need full frames.
                try fifo.read(into: converted, samples: n)
                let tmp = try Frame()
                tmp.ptr.pointee.format = converted.format
                tmp.ptr.pointee.sample_rate = converted.ptr.pointee.sample_rate
                _ = clibav_channel_layout_copy(&tmp.ptr.pointee.ch_layout, &converted.ptr.pointee.ch_layout)
                tmp.ptr.pointee.nb_samples = frameSize
                try check(av_frame_get_buffer(tmp.ptr, 0), "allocating an audio frame")
                let ch = tmp.ptr.pointee.ch_layout.nb_channels
                av_samples_set_silence(clibav_frame_extended_data(tmp.ptr), 0, frameSize, ch, enc.ctx.pointee.sample_fmt)
                av_samples_copy(clibav_frame_extended_data(tmp.ptr), clibav_frame_extended_data(converted.ptr), 0, 0, n, ch, enc.ctx.pointee.sample_fmt)
                tmp.pts = audioSamples
                audioSamples += Int64(n)
                try enc.send(tmp)
            } else {
                try fifo.read(into: converted, samples: n)
                converted.pts = audioSamples
                audioSamples += Int64(n)
                try enc.send(converted)
            }
            try drain(enc, stream: audioOut)
        }
    }

    private func finishAudio() throws(MediaError) {
        guard let enc = audioEncoder, let fifo else { return }
        if let r = resampler { try r.convert(nil, into: fifo, scratch: converted) }
        try encodeFIFO(final: true)
        try enc.send(nil)
        try drain(enc, stream: audioOut)
    }

    // MARK: progress

    private var mediaSeconds: Double {
        if let enc = videoEncoder, lastVideoPts >= 0 { return Double(lastVideoPts + 1) * enc.timeBase.double }
        if let enc = audioEncoder { return Double(audioSamples) / Double(enc.ctx.pointee.sample_rate) }
        return 0
    }

    private func report(force: Bool) {
        guard let progress else { return }
        let now = monotonicNanos()
        if !force && Double(now &- lastReportNanos) / 1e9 < request.progressInterval { return }
        lastReportNanos = now
        let elapsed = Double(now - startNanos) / 1e9
        let media = mediaSeconds
        let total = input.durationSeconds
        let speed = elapsed > 0 ? media / elapsed : 0
        var eta: Double? = nil
        if total > 0 && speed > 0 { eta = max(0, (total - media) / speed) }
        progress(TranscodeProgress(videoFrames: videoFrames, mediaSeconds: media, totalSeconds: total,
                                   elapsedSeconds: elapsed, fps: elapsed > 0 ? Double(videoFrames) / elapsed : 0,
                                   speed: speed, etaSeconds: eta))
    }
}
