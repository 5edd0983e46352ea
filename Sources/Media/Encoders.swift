// Media.Encoders: building the encoders Spool uses (libx264, the native AAC encoder) from
// settings, shared by the transcoder and the test-media synthesizer.
import CLibAV

enum Encoders {
    /// libx264 at `width`×`height` yuv420p, constant frame rate `frameRate`.
    static func h264(width: Int32, height: Int32, frameRate: AVRational, settings: VideoSettings,
                     globalHeader: Bool, threads: Int32 = 0) throws(MediaError) -> Encoder {
        var priv: [(String, String)] = [("preset", settings.speed)]
        if let p = settings.profile { priv.append(("profile", p)) }
        if case .crf(let c) = settings.rateControl { priv.append(("crf", String(c))) }
        if settings.fixedGOP { priv.append(("x264-params", "scenecut=0:open-gop=0")) }
        let gop = max(1, Int32((settings.gopSeconds * frameRate.double).rounded()))
        return try Encoder(encoderName: "libx264", globalHeader: globalHeader, privateOptions: priv) { c throws(MediaError) in
            c.pointee.width = width
            c.pointee.height = height
            c.pointee.pix_fmt = AV_PIX_FMT_YUV420P
            c.pointee.framerate = frameRate
            c.pointee.time_base = av_inv_q(frameRate)
            c.pointee.sample_aspect_ratio = AVRational(num: 1, den: 1)
            c.pointee.gop_size = gop
            c.pointee.keyint_min = gop
            c.pointee.thread_count = threads
            if case .crf = settings.rateControl, let cap = settings.maxBitrateKbps {
                c.pointee.rc_max_rate = Int64(cap) * 1000
                c.pointee.rc_buffer_size = Int32(cap) * 2000
            }
            if case .bitrate(let kbps) = settings.rateControl {
                c.pointee.bit_rate = Int64(kbps) * 1000
                c.pointee.rc_max_rate = Int64(kbps) * 1500
                c.pointee.rc_buffer_size = Int32(kbps) * 2000
            }
        }
    }

    /// The native AAC encoder (fltp) at `sampleRate` (or the nearest rate it supports).
    static func aac(sampleRate: Int32, channels: Int32, bitrateKbps: Int, globalHeader: Bool) throws(MediaError) -> Encoder {
        guard let codec = avcodec_find_encoder_by_name("aac") else { throw .encoderUnavailable(codec: "aac") }
        let rate = supportedRate(codec, wanted: sampleRate)
        return try Encoder(encoderName: "aac", globalHeader: globalHeader, privateOptions: []) { c throws(MediaError) in
            c.pointee.sample_fmt = AV_SAMPLE_FMT_FLTP
            c.pointee.sample_rate = rate
            clibav_channel_layout_default(&c.pointee.ch_layout, channels)
            c.pointee.bit_rate = Int64(bitrateKbps) * 1000
            c.pointee.time_base = AVRational(num: 1, den: rate)
        }
    }

    private static func supportedRate(_ codec: UnsafePointer<AVCodec>, wanted: Int32) -> Int32 {
        guard let list = codec.pointee.supported_samplerates else { return wanted > 0 ? wanted : 48000 }
        var rates: [Int32] = []
        var i = 0
        while list[i] != 0 { rates.append(list[i]); i += 1 }
        if rates.contains(wanted) { return wanted }
        return rates.contains(48000) ? 48000 : (rates.first ?? 48000)
    }

    /// Whether the encoder accepts a shorter last frame.
    static func acceptsSmallLastFrame(_ encoder: Encoder) -> Bool {
        guard let codec = encoder.ctx.pointee.codec else { return false }
        return (codec.pointee.capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME) != 0
            || (codec.pointee.capabilities & AV_CODEC_CAP_VARIABLE_FRAME_SIZE) != 0
    }
}
