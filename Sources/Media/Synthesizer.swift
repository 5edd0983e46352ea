// Media.TestMedia: synthesizes short clips with libav itself (never committed media):
// a moving gradient with a sliding box in yuv420p, encoded with libx264, and a sine tone
// (a different pitch per channel), encoded with AAC, muxed into MP4, MPEG-TS or Matroska
// by the output's extension. Used by the tests and by `make demo`.
internal import CLibAV
#if canImport(Glibc)
import Glibc
import SpoolModel
#endif

public struct TestClipSpec: Sendable {
    public var width: Int32 = 320
    public var height: Int32 = 240
    public var fps: Int32 = 25
    public var seconds: Double = 2
    public var sampleRate: Int32 = 48000
    public var channels: Int32 = 2
    public var toneHz: Double = 440
    public var video = true
    public var audio = true

    public init() {}

    public var frameCount: Int { Int((seconds * Double(fps)).rounded()) }
}

public enum TestMedia {
    public static func synthesize(to path: String, spec: TestClipSpec = TestClipSpec()) throws(MediaError) {
        LibAVLogging.ensureInstalled()
        guard spec.video || spec.audio else { throw .invalidSettings(reason: "a clip needs video or audio") }
        guard spec.width % 2 == 0, spec.height % 2 == 0, spec.width >= 16, spec.height >= 16 else {
            throw .invalidSettings(reason: "clip size \(spec.width)×\(spec.height) must be even and at least 16×16")
        }
        do {
            try write(path: path, spec: spec)
        } catch {
            unsafe unlink(path)
            throw error
        }
    }

    private static func write(path: String, spec: TestClipSpec) throws(MediaError) {
        let muxer = try Muxer(path: path)
        var video: Encoder? = nil
        var audio: Encoder? = nil
        var videoStream = 0, audioStream = 0
        if spec.video {
            var s = VideoSettings()
            s.speed = "ultrafast"; s.rateControl = .crf(20); s.profile = nil; s.gopSeconds = 1
            let enc = try Encoders.h264(width: spec.width, height: spec.height, frameRate: AVRational(num: spec.fps, den: 1),
                                        settings: s, globalHeader: muxer.needsGlobalHeader, threads: 1)
            videoStream = try muxer.addStream(for: enc)
            video = enc
        }
        if spec.audio {
            let enc = try Encoders.aac(sampleRate: spec.sampleRate, channels: spec.channels, bitrateKbps: 96,
                                       globalHeader: muxer.needsGlobalHeader)
            audioStream = try muxer.addStream(for: enc)
            audio = enc
        }
        try muxer.writeHeader()

        let frame = try Frame()
        let packet = try Packet()
        let totalFrames = spec.video ? spec.frameCount : 0
        let totalSamples = spec.audio ? Int((spec.seconds * Double(spec.sampleRate)).rounded()) : 0
        var frameIndex = 0
        var sampleIndex = 0
        let audioFrameSize = Int(audio.map { $0.frameSize > 0 ? $0.frameSize : 1024 } ?? 1024)

        func drain(_ enc: Encoder, _ stream: Int) throws(MediaError) {
            while try enc.receive(into: packet) { try muxer.write(packet, stream: stream) }
        }

        while frameIndex < totalFrames || sampleIndex < totalSamples {
            // Write whichever stream is behind in time.
            let videoTime = Double(frameIndex) / Double(spec.fps)
            let audioTime = Double(sampleIndex) / Double(spec.sampleRate)
            let doVideo = frameIndex < totalFrames && (sampleIndex >= totalSamples || videoTime <= audioTime)
            if doVideo, let enc = video {
                frame.unref()
                unsafe frame.ptr.pointee.width = spec.width
                unsafe frame.ptr.pointee.height = spec.height
                unsafe frame.ptr.pointee.format = AV_PIX_FMT_YUV420P.rawValue
                unsafe try check(av_frame_get_buffer(frame.ptr, 0), "allocating a synthetic picture")
                draw(frame, index: frameIndex, spec: spec)
                frame.pts = Int64(frameIndex)
                try enc.send(frame)
                try drain(enc, videoStream)
                frameIndex += 1
            } else if let enc = audio {
                let n = min(audioFrameSize, totalSamples - sampleIndex)
                frame.unref()
                unsafe frame.ptr.pointee.format = AV_SAMPLE_FMT_FLTP.rawValue
                unsafe frame.ptr.pointee.sample_rate = enc.ctx.pointee.sample_rate
                _ = unsafe clibav_channel_layout_copy(&frame.ptr.pointee.ch_layout, &enc.ctx.pointee.ch_layout)
                unsafe frame.ptr.pointee.nb_samples = Int32(n)
                unsafe try check(av_frame_get_buffer(frame.ptr, 0), "allocating synthetic audio")
                unsafe tone(frame, start: sampleIndex, count: n, spec: spec, rate: enc.ctx.pointee.sample_rate)
                frame.pts = Int64(sampleIndex)
                try enc.send(frame)
                try drain(enc, audioStream)
                sampleIndex += n
            }
        }
        if let enc = video { try enc.send(nil); try drain(enc, videoStream) }
        if let enc = audio { try enc.send(nil); try drain(enc, audioStream) }
        try muxer.finish()
    }

    /// A diagonal gradient that scrolls, with a bright box sliding left to right.
    private static func draw(_ frame: Frame, index t: Int, spec: TestClipSpec) {
        let w = Int(spec.width), h = Int(spec.height)
        let box = max(8, h / 6)
        let bx = (t * 4) % max(1, w - box)
        let by = h / 2 - box / 2
        if let y = unsafe frame.data(0) {
            let ls = frame.linesize(0)
            for row in 0..<h {
                let line = unsafe y + row * ls
                for col in 0..<w {
                    let inBox = col >= bx && col < bx + box && row >= by && row < by + box
                    unsafe line[col] = inBox ? 235 : UInt8(truncatingIfNeeded: 16 + ((col + row + t * 3) % 200))
                }
            }
        }
        for plane in Int32(1)...2 {
            guard let p = unsafe frame.data(plane) else { continue }
            let ls = frame.linesize(plane)
            for row in 0..<(h / 2) {
                let line = unsafe p + row * ls
                for col in 0..<(w / 2) {
                    let v = plane == 1 ? (col * 2 + t) : (row * 2 + t * 2)
                    unsafe line[col] = UInt8(truncatingIfNeeded: 64 + (v % 128))
                }
            }
        }
    }

    /// Planar float sine; channel c plays toneHz × (1 + c/2).
    private static func tone(_ frame: Frame, start: Int, count: Int, spec: TestClipSpec, rate: Int32) {
        let channels = unsafe Int(frame.ptr.pointee.ch_layout.nb_channels)
        for c in 0..<channels {
            guard let raw = unsafe frame.data(Int32(c)) else { continue }
            let out = unsafe UnsafeMutableRawPointer(raw).assumingMemoryBound(to: Float.self)
            let f = spec.toneHz * (1 + Double(c) / 2)
            for i in 0..<count {
                unsafe out[i] = Float(0.3 * sin(2 * Double.pi * f * Double(start + i) / Double(rate)))
            }
        }
    }
}

extension TestMedia {
    /// Writes a Matroska file whose header declares an MPEG-2 video stream of `width`×`height`
    /// followed by one packet of junk: a well-formed container with absurd dimensions,
    /// for testing the limits. Nothing is encoded.
    public static func synthesizeHeaderOnly(to path: String, width: Int32, height: Int32) throws(MediaError) {
        LibAVLogging.ensureInstalled()
        let muxer = try Muxer(path: path, formatName: "matroska")
        guard let st = unsafe avformat_new_stream(muxer.ctx, nil) else { throw outOfMemory("adding a stream") }
        let par = unsafe st.pointee.codecpar!
        unsafe par.pointee.codec_type = AVMEDIA_TYPE_VIDEO
        unsafe par.pointee.codec_id = AV_CODEC_ID_MPEG2VIDEO
        unsafe par.pointee.width = width
        unsafe par.pointee.height = height
        unsafe st.pointee.time_base = AVRational(num: 1, den: 1000)
        unsafe muxer.registerRawStream(timeBase: st.pointee.time_base)
        do {
            try muxer.writeHeader()
            let packet = try Packet()
            unsafe try check(av_new_packet(packet.ptr, 64), "allocating a packet")
            for i in 0..<64 { unsafe packet.ptr.pointee.data[i] = UInt8(truncatingIfNeeded: i &* 37) }
            unsafe packet.ptr.pointee.pts = 0
            unsafe packet.ptr.pointee.dts = 0
            unsafe packet.ptr.pointee.flags |= AV_PKT_FLAG_KEY
            try muxer.write(packet, stream: 0)
            try muxer.finish()
        } catch {
            unsafe unlink(path)
            throw error
        }
    }
}
