// Media.Encoders: building the encoders Spool drives from settings, shared by the
// transcoder, the ladder and the test-media synthesizer.
//
//   video  h264 → libx264   hevc → libx265   vp9 → libvpx-vp9   av1 → libsvtav1
//   audio  aac  → aac (native)               opus → libopus
//
// Settings are written once in x264 terms (speed preset names, CRF 0...51) and mapped to
// each encoder's own knobs here, so presets stay comparable across codecs.
internal import CLibAV
#if canImport(Glibc)
import Glibc
import SpoolModel
#endif

extension VideoCodec {
    var encoderName: String {
        switch self {
        case .h264: return "libx264"
        case .hevc: return "libx265"
        case .vp9: return "libvpx-vp9"
        case .av1: return "libsvtav1"
        }
    }

    var codecID: AVCodecID {
        switch self {
        case .h264: return AV_CODEC_ID_H264
        case .hevc: return AV_CODEC_ID_HEVC
        case .vp9: return AV_CODEC_ID_VP9
        case .av1: return AV_CODEC_ID_AV1
        }
    }

    /// The libav profile numbers a stream may carry to satisfy a requested profile name
    /// (constrained baseline is baseline).
    func profileIDs(_ name: String) -> [Int32] {
        switch (self, name) {
        case (.h264, "baseline"): return [FF_PROFILE_H264_BASELINE, FF_PROFILE_H264_CONSTRAINED_BASELINE]
        case (.h264, "main"): return [FF_PROFILE_H264_MAIN]
        case (.h264, "high"): return [FF_PROFILE_H264_HIGH]
        case (.hevc, "main"): return [FF_PROFILE_HEVC_MAIN]
        default: return []
        }
    }
}

extension AudioCodec {
    var encoderName: String { self == .aac ? "aac" : "libopus" }
    var codecID: AVCodecID { self == .aac ? AV_CODEC_ID_AAC : AV_CODEC_ID_OPUS }
}

enum Encoders {
    static let speeds = VideoSettings.speeds

    /// A video encoder at `width`×`height` yuv420p, constant frame rate `frameRate`.
    static func video(width: Int32, height: Int32, frameRate: AVRational, settings: VideoSettings,
                      globalHeader: Bool, threads: Int32 = 0) throws(MediaError) -> Encoder {
        guard let codec = VideoCodec(rawValue: settings.codec) else {
            throw .invalidSettings(reason: "unknown video codec \"\(settings.codec)\"")
        }
        let gop = max(1, Int32((settings.gopSeconds * frameRate.double).rounded()))
        let speedIndex = speeds.firstIndex(of: settings.speed) ?? 2
        var priv: [(String, String)] = []
        var crf: Int? = nil
        if case .crf(let c) = settings.rateControl { crf = c }
        switch codec {
        case .h264:
            priv.append(("preset", settings.speed))
            if let p = settings.profile { priv.append(("profile", p)) }
            if let crf { priv.append(("crf", String(crf))) }
            if settings.fixedGOP { priv.append(("x264-params", "scenecut=0:open-gop=0")) }
        case .hevc:
            priv.append(("preset", settings.speed))
            if let p = settings.profile { priv.append(("profile", p)) }
            if let crf { priv.append(("crf", String(crf))) }
            var params = "log-level=error"
            if settings.fixedGOP { params += ":scenecut=0:open-gop=0" }
            priv.append(("x265-params", params))
        case .vp9:
            // Speed names map to libvpx deadline/cpu-used; CRF to its 0...63 scale.
            priv.append(("deadline", speedIndex <= 2 ? "realtime" : "good"))
            priv.append(("cpu-used", String([8, 8, 8, 5, 5, 3, 2, 1, 0][speedIndex])))
            priv.append(("row-mt", "1"))
            if let crf { priv.append(("crf", String(min(63, (crf * 63 + 25) / 51)))) }
        case .av1:
            // SVT_LOG is set once by LibAVLogging.install (see there).
            // SVT-AV1 presets 0 (slowest) ... 13 (fastest); CRF on its 0...63 scale.
            priv.append(("preset", String([12, 11, 10, 9, 8, 6, 4, 3, 2][speedIndex])))
            if let crf { priv.append(("crf", String(min(63, (crf * 63 + 25) / 51)))) }
        }
        return unsafe try Encoder(encoderName: codec.encoderName, globalHeader: globalHeader, privateOptions: priv) { c throws(MediaError) in
            unsafe c.pointee.width = width
            unsafe c.pointee.height = height
            unsafe c.pointee.pix_fmt = AV_PIX_FMT_YUV420P
            unsafe c.pointee.framerate = frameRate
            unsafe c.pointee.time_base = av_inv_q(frameRate)
            unsafe c.pointee.sample_aspect_ratio = AVRational(num: 1, den: 1)
            unsafe c.pointee.gop_size = gop
            unsafe c.pointee.keyint_min = gop
            unsafe c.pointee.thread_count = threads
            if codec == .vp9, crf != nil {
                // Constant quality; under a cap (a ladder rung), constrained quality: libvpx
                // refuses a maximum rate without a bitrate, and takes the cap as that bitrate.
                unsafe c.pointee.bit_rate = settings.maxBitrateKbps.map { Int64($0) * 1000 } ?? 0
            }
            if crf != nil, let cap = settings.maxBitrateKbps {
                unsafe c.pointee.rc_max_rate = Int64(cap) * 1000
                unsafe c.pointee.rc_buffer_size = Int32(cap) * 2000
            }
            if case .bitrate(let kbps) = settings.rateControl {
                unsafe c.pointee.bit_rate = Int64(kbps) * 1000
                if codec != .av1 {
                    unsafe c.pointee.rc_max_rate = Int64(kbps) * 1500
                    unsafe c.pointee.rc_buffer_size = Int32(kbps) * 2000
                }
            }
        }
    }

    /// libx264 (kept for the synthesizer and older call sites).
    static func h264(width: Int32, height: Int32, frameRate: AVRational, settings: VideoSettings,
                     globalHeader: Bool, threads: Int32 = 0) throws(MediaError) -> Encoder {
        var s = settings
        s.codec = "h264"
        return try video(width: width, height: height, frameRate: frameRate, settings: s, globalHeader: globalHeader, threads: threads)
    }

    /// An audio encoder at `sampleRate` (or the nearest rate it supports), in the first
    /// sample format it accepts (planar float preferred).
    static func audio(_ codecName: String, sampleRate: Int32, channels: Int32, bitrateKbps: Int,
                      globalHeader: Bool) throws(MediaError) -> Encoder {
        guard let kind = AudioCodec(rawValue: codecName) else { throw .invalidSettings(reason: "unknown audio codec \"\(codecName)\"") }
        guard let codec = unsafe avcodec_find_encoder_by_name(kind.encoderName) else { throw .encoderUnavailable(codec: kind.encoderName) }
        let rate = unsafe supportedRate(codec, wanted: sampleRate)
        let format = unsafe preferredSampleFormat(codec)
        return unsafe try Encoder(encoderName: kind.encoderName, globalHeader: globalHeader, privateOptions: []) { c throws(MediaError) in
            unsafe c.pointee.sample_fmt = format
            unsafe c.pointee.sample_rate = rate
            unsafe clibav_channel_layout_default(&c.pointee.ch_layout, channels)
            unsafe c.pointee.bit_rate = Int64(bitrateKbps) * 1000
            unsafe c.pointee.time_base = AVRational(num: 1, den: rate)
        }
    }

    /// The native AAC encoder.
    static func aac(sampleRate: Int32, channels: Int32, bitrateKbps: Int, globalHeader: Bool) throws(MediaError) -> Encoder {
        try audio("aac", sampleRate: sampleRate, channels: channels, bitrateKbps: bitrateKbps, globalHeader: globalHeader)
    }

    private static func supportedRate(_ codec: UnsafePointer<AVCodec>, wanted: Int32) -> Int32 {
        guard let list = unsafe codec.pointee.supported_samplerates else { return wanted > 0 ? wanted : 48000 }
        var rates: [Int32] = []
        var i = 0
        while unsafe list[i] != 0 { unsafe rates.append(list[i]); i += 1 }
        if rates.contains(wanted) { return wanted }
        return rates.contains(48000) ? 48000 : (rates.first ?? 48000)
    }

    private static func preferredSampleFormat(_ codec: UnsafePointer<AVCodec>) -> AVSampleFormat {
        guard let list = unsafe codec.pointee.sample_fmts else { return AV_SAMPLE_FMT_FLTP }
        var formats: [AVSampleFormat] = []
        var i = 0
        while unsafe list[i] != AV_SAMPLE_FMT_NONE { unsafe formats.append(list[i]); i += 1 }
        for f in [AV_SAMPLE_FMT_FLTP, AV_SAMPLE_FMT_FLT, AV_SAMPLE_FMT_S16] where formats.contains(f) { return f }
        return formats.first ?? AV_SAMPLE_FMT_FLTP
    }

    /// Whether the encoder accepts a shorter last frame.
    static func acceptsSmallLastFrame(_ encoder: Encoder) -> Bool {
        guard let codec = unsafe encoder.ctx.pointee.codec else { return false }
        return unsafe (codec.pointee.capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME) != 0
            || (codec.pointee.capabilities & AV_CODEC_CAP_VARIABLE_FRAME_SIZE) != 0
    }
}
