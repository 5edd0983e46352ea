// Media.Presets: named, documented, validated transcode settings, and the custom form.
//
//   h264-720p  H.264 High, fits 1280×720 (aspect kept, even sizes), CRF 23, x264 veryfast,
//              keyframe every 2 s, AAC-LC 128 kb/s stereo.
//   h264-360p  H.264 Main, fits 640×360, CRF 23, x264 medium, keyframe every 2 s,
//              AAC-LC 96 kb/s stereo.
//
//   hevc-1080p H.265 Main, fits 1920×1080, CRF 26, x265 fast; AAC 128 kb/s.
//   vp9-720p   VP9, fits 1280×720, constant quality, cpu-used 5; Opus 96 kb/s (WebM).
//   av1-720p   AV1 (SVT-AV1 preset 8), fits 1280×720; Opus 96 kb/s.
//
// Custom: codec (h264, hevc, vp9, av1), a bounding box (width and/or height),
// CRF (0...51) or a bitrate, optional GOP and profile. Everything is validated before a
// file is opened, so a bad combination fails at once with a readable reason.
import CLibAV

public struct VideoSettings: Sendable, Equatable {
    public enum RateControl: Sendable, Equatable {
        case crf(Int)
        case bitrate(kbps: Int)
    }
    /// Codec name as users write it ("h264").
    public var codec: String = "h264"
    /// Bounding box; nil keeps that dimension from the source (aspect is kept).
    public var maxWidth: Int32?
    public var maxHeight: Int32?
    public var rateControl: RateControl = .crf(23)
    /// x264 speed preset.
    public var speed: String = "veryfast"
    /// Keyframe interval in seconds.
    public var gopSeconds: Double = 2
    public var profile: String? = "high"
    /// With CRF: a VBV cap in kb/s (buffer twice that), so a rung of a ladder stays
    /// within its advertised bandwidth.
    public var maxBitrateKbps: Int?
    /// Keyframes only every GOP (no scene-cut keyframes), so segments of every rendition
    /// start at the same instants.
    public var fixedGOP = false
    /// Frames per second at most: faster sources are decimated (frames dropped on the
    /// output's time grid), slower ones keep their rate.
    public var maxFrameRate: Int?
    /// Remux the input's video packets instead of re-encoding when the input already is
    /// what these settings ask for (same codec, requested profile, within the box without
    /// scaling, within the frame-rate cap). Only single-rendition transcodes copy; ladder
    /// rungs set this to false (they need fixed GOPs).
    public var copyWhenMatching = true

    public init() {}
}

public struct AudioSettings: Sendable, Equatable {
    public var codec: String = "aac"
    public var bitrateKbps: Int = 128
    /// At most this many channels (downmixed by the resampler).
    public var maxChannels: Int32 = 2
    /// Copy the input's audio packets untouched when they already match: same codec, at
    /// most `maxChannels`, a known bitrate no higher than 1.25 × `bitrateKbps`.
    public var copyIfCompatible = true

    public init() {}
}

public struct TranscodePreset: Sendable, Equatable {
    public var name: String
    public var summary: String
    public var video: VideoSettings
    public var audio: AudioSettings

    public init(name: String, summary: String, video: VideoSettings, audio: AudioSettings) {
        self.name = name; self.summary = summary; self.video = video; self.audio = audio
    }

    public static let h264_1080p: TranscodePreset = {
        var v = VideoSettings()
        v.maxWidth = 1920; v.maxHeight = 1080; v.rateControl = .crf(23); v.speed = "veryfast"; v.profile = "high"
        return TranscodePreset(name: "h264-1080p", summary: "H.264 High in 1920×1080, CRF 23, veryfast, GOP 2 s; AAC 128 kb/s",
                               video: v, audio: AudioSettings())
    }()

    public static let h264_720p: TranscodePreset = {
        var v = VideoSettings()
        v.maxWidth = 1280; v.maxHeight = 720; v.rateControl = .crf(23); v.speed = "veryfast"; v.profile = "high"
        return TranscodePreset(name: "h264-720p", summary: "H.264 High in 1280×720, CRF 23, veryfast, GOP 2 s; AAC 128 kb/s",
                               video: v, audio: AudioSettings())
    }()

    public static let h264_360p: TranscodePreset = {
        var v = VideoSettings()
        v.maxWidth = 640; v.maxHeight = 360; v.rateControl = .crf(23); v.speed = "medium"; v.profile = "main"
        var a = AudioSettings(); a.bitrateKbps = 96
        return TranscodePreset(name: "h264-360p", summary: "H.264 Main in 640×360, CRF 23, medium, GOP 2 s; AAC 96 kb/s",
                               video: v, audio: a)
    }()

    public static let hevc_1080p: TranscodePreset = {
        var v = VideoSettings()
        v.codec = "hevc"; v.maxWidth = 1920; v.maxHeight = 1080; v.rateControl = .crf(26); v.speed = "fast"; v.profile = "main"
        return TranscodePreset(name: "hevc-1080p", summary: "H.265 Main in 1920×1080, CRF 26, x265 fast, GOP 2 s; AAC 128 kb/s",
                               video: v, audio: AudioSettings())
    }()

    public static let vp9_720p: TranscodePreset = {
        var v = VideoSettings()
        v.codec = "vp9"; v.maxWidth = 1280; v.maxHeight = 720; v.rateControl = .crf(32); v.speed = "faster"; v.profile = nil
        var a = AudioSettings(); a.codec = "opus"; a.bitrateKbps = 96
        return TranscodePreset(name: "vp9-720p", summary: "VP9 in 1280×720, constant quality (CRF 32 → libvpx 40), cpu-used 5, GOP 2 s; Opus 96 kb/s (use .webm or .mkv)",
                               video: v, audio: a)
    }()

    public static let av1_720p: TranscodePreset = {
        var v = VideoSettings()
        v.codec = "av1"; v.maxWidth = 1280; v.maxHeight = 720; v.rateControl = .crf(30); v.speed = "fast"; v.profile = nil
        var a = AudioSettings(); a.codec = "opus"; a.bitrateKbps = 96
        return TranscodePreset(name: "av1-720p", summary: "AV1 (SVT-AV1 preset 8) in 1280×720, CRF 30 → 37, GOP 2 s; Opus 96 kb/s (.webm, .mkv or .mp4)",
                               video: v, audio: a)
    }()

    public static let all: [TranscodePreset] = [h264_1080p, h264_720p, h264_360p, hevc_1080p, vp9_720p, av1_720p]

    public static func named(_ name: String) throws(MediaError) -> TranscodePreset {
        guard let p = all.first(where: { $0.name == name }) else {
            let names = all.map(\.name) + LadderPreset.all.map(\.name)
            throw .invalidSettings(reason: "unknown preset \"\(name)\"; presets: \(names.joined(separator: ", "))")
        }
        return p
    }

    /// The custom form, validated.
    public static func custom(codec: String = "h264", width: Int32? = nil, height: Int32? = nil,
                              crf: Int? = nil, bitrateKbps: Int? = nil, gopSeconds: Double = 2,
                              speed: String = "veryfast", profile: String? = nil,
                              audioCodec: String = "aac", audioBitrateKbps: Int = 128,
                              maxFrameRate: Int? = nil) throws(MediaError) -> TranscodePreset {
        var v = VideoSettings()
        v.codec = codec; v.maxWidth = width; v.maxHeight = height
        v.gopSeconds = gopSeconds; v.speed = speed; v.profile = profile; v.maxFrameRate = maxFrameRate
        switch (crf, bitrateKbps) {
        case (let c?, nil): v.rateControl = .crf(c)
        case (nil, let b?): v.rateControl = .bitrate(kbps: b)
        case (nil, nil): v.rateControl = .crf(23)
        case (_?, _?): throw .invalidSettings(reason: "give either a CRF or a bitrate, not both")
        }
        var a = AudioSettings(); a.bitrateKbps = audioBitrateKbps; a.codec = audioCodec
        let p = TranscodePreset(name: "custom", summary: "custom \(codec)", video: v, audio: a)
        try p.validate()
        return p
    }

    static let x264Speeds = Encoders.speeds

    public func validate() throws(MediaError) {
        guard let codec = VideoCodec(rawValue: video.codec) else {
            throw .invalidSettings(reason: "video codec \"\(video.codec)\" is not supported; use \(VideoCodec.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard avcodec_find_encoder_by_name(codec.encoderName) != nil else { throw .encoderUnavailable(codec: codec.encoderName) }
        for (label, d) in [("width", video.maxWidth), ("height", video.maxHeight)] {
            if let d, !(16...8192).contains(d) || d % 2 != 0 {
                throw .invalidSettings(reason: "\(label) \(d) must be an even number in 16...8192")
            }
        }
        switch video.rateControl {
        case .crf(let c) where !(0...51).contains(c):
            throw .invalidSettings(reason: "CRF \(c) must be in 0...51")
        case .bitrate(let b) where !(50...100_000).contains(b):
            throw .invalidSettings(reason: "video bitrate \(b) kb/s must be in 50...100000")
        default: break
        }
        guard TranscodePreset.x264Speeds.contains(video.speed) else {
            throw .invalidSettings(reason: "speed \"\(video.speed)\" must be one of \(TranscodePreset.x264Speeds.joined(separator: ", "))")
        }
        if let p = video.profile, !codec.profiles.contains(p) {
            throw .invalidSettings(reason: codec.profiles.isEmpty ? "\(codec.rawValue) takes no profile setting"
                : "\(codec.rawValue) profile \"\(p)\" must be one of \(codec.profiles.joined(separator: ", "))")
        }
        if let m = video.maxBitrateKbps, !(50...100_000).contains(m) {
            throw .invalidSettings(reason: "maximum video bitrate \(m) kb/s must be in 50...100000")
        }
        if let f = video.maxFrameRate, !(1...240).contains(f) {
            throw .invalidSettings(reason: "maximum frame rate \(f) must be in 1...240")
        }
        guard video.gopSeconds > 0, video.gopSeconds <= 20 else {
            throw .invalidSettings(reason: "GOP \(video.gopSeconds) s must be in (0, 20]")
        }
        guard let audioCodec = AudioCodec(rawValue: audio.codec) else {
            throw .invalidSettings(reason: "audio codec \"\(audio.codec)\" is not supported; use aac or opus")
        }
        guard avcodec_find_encoder_by_name(audioCodec.encoderName) != nil else { throw .encoderUnavailable(codec: audioCodec.encoderName) }
        guard (16...512).contains(audio.bitrateKbps) else {
            throw .invalidSettings(reason: "audio bitrate \(audio.bitrateKbps) kb/s must be in 16...512")
        }
        guard (1...8).contains(audio.maxChannels) else { throw .invalidSettings(reason: "audio channels must be 1...8") }
    }

    /// The output size for a source picture: fits the box, keeps the display aspect
    /// (sample aspect ratio applied), rounds to even numbers.
    func outputSize(sourceWidth w: Int32, sourceHeight h: Int32, sampleAspect: (Int32, Int32)) -> (Int32, Int32) {
        var dw = Double(w)
        let dh = Double(h)
        // The sample aspect ratio comes from the bitstream: anything outside 1:16...16:1 is
        // treated as square rather than trusted.
        if sampleAspect.0 > 0 && sampleAspect.1 > 0 {
            let sar = Double(sampleAspect.0) / Double(sampleAspect.1)
            if sar >= 1.0 / 16 && sar <= 16 { dw *= sar }
        }
        var scale = 1.0
        if let mw = video.maxWidth { scale = Double(mw) / dw }
        if let mh = video.maxHeight { scale = min(video.maxWidth == nil ? .infinity : scale, Double(mh) / dh) }
        if video.maxWidth == nil && video.maxHeight == nil { scale = 1 }
        func even(_ v: Double) -> Int32 {
            let c = v.isFinite ? min(max(v, 2), 16384) : 2   // never trap on a hostile size
            return max(2, Int32((c / 2).rounded()) * 2)
        }
        return (even(dw * scale), even(dh * scale))
    }
}
