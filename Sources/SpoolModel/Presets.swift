// SpoolModel.Presets: the transcode settings a job asks for, as plain validated values:
// the codecs Spool drives, video and audio settings (in x264 terms, mapped per encoder by
// Media), the named presets and the custom form. A dispatcher validates a submission with
// them without linking libav; Media turns them into encoders and adds one check only it
// can make (is the encoder in the linked libav?).
//
//   h264-1080p/720p/360p  H.264 High (Main at 360p), CRF 23, x264 veryfast (medium at
//                         360p), keyframe every 2 s; AAC-LC 128 kb/s (96 at 360p).
//   hevc-1080p            H.265 Main, CRF 26, x265 fast; AAC 128 kb/s.
//   vp9-720p, av1-720p    VP9 / AV1 (SVT-AV1) at 720p; Opus 96 kb/s.

/// Video codecs Spool drives, by the name users write.
public enum VideoCodec: String, Sendable, CaseIterable {
    case h264, hevc, vp9, av1

    /// Profiles Spool accepts (nil profile = the encoder's default).
    public var profiles: [String] {
        switch self {
        case .h264: return ["baseline", "main", "high"]
        case .hevc: return ["main"]
        case .vp9, .av1: return []
        }
    }
}

/// Audio codecs Spool drives.
public enum AudioCodec: String, Sendable, CaseIterable {
    case aac, opus
}

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

    /// One named preset: a codec in a box at a CRF and speed, with its audio.
    private static func make(_ name: String, _ summary: String, codec: VideoCodec = .h264, box: (Int32, Int32),
                              crf: Int, speed: String, profile: String?, audio: AudioCodec = .aac, audioKbps: Int = 128) -> TranscodePreset {
        var v = VideoSettings()
        v.codec = codec.rawValue; v.maxWidth = box.0; v.maxHeight = box.1; v.rateControl = .crf(crf); v.speed = speed; v.profile = profile
        var a = AudioSettings(); a.codec = audio.rawValue; a.bitrateKbps = audioKbps
        return TranscodePreset(name: name, summary: summary, video: v, audio: a)
    }

    public static let h264_1080p = make("h264-1080p", "H.264 High in 1920×1080, CRF 23, veryfast, GOP 2 s; AAC 128 kb/s",
                                         box: (1920, 1080), crf: 23, speed: "veryfast", profile: "high")
    public static let h264_720p = make("h264-720p", "H.264 High in 1280×720, CRF 23, veryfast, GOP 2 s; AAC 128 kb/s",
                                        box: (1280, 720), crf: 23, speed: "veryfast", profile: "high")
    public static let h264_360p = make("h264-360p", "H.264 Main in 640×360, CRF 23, medium, GOP 2 s; AAC 96 kb/s",
                                        box: (640, 360), crf: 23, speed: "medium", profile: "main", audioKbps: 96)
    public static let hevc_1080p = make("hevc-1080p", "H.265 Main in 1920×1080, CRF 26, x265 fast, GOP 2 s; AAC 128 kb/s",
                                         codec: .hevc, box: (1920, 1080), crf: 26, speed: "fast", profile: "main")
    public static let vp9_720p = make("vp9-720p", "VP9 in 1280×720, constant quality (CRF 32 → libvpx 40), cpu-used 5, GOP 2 s; Opus 96 kb/s (use .webm or .mkv)",
                                       codec: .vp9, box: (1280, 720), crf: 32, speed: "faster", profile: nil, audio: .opus, audioKbps: 96)
    public static let av1_720p = make("av1-720p", "AV1 (SVT-AV1 preset 8) in 1280×720, CRF 30 → 37, GOP 2 s; Opus 96 kb/s (.webm, .mkv or .mp4)",
                                       codec: .av1, box: (1280, 720), crf: 30, speed: "fast", profile: nil, audio: .opus, audioKbps: 96)

    public static let all: [TranscodePreset] = [h264_1080p, h264_720p, h264_360p, hevc_1080p, vp9_720p, av1_720p]

    public static func named(_ name: String) throws(ModelError) -> TranscodePreset {
        guard let p = all.first(where: { $0.name == name }) else {
            let names = all.map(\.name) + LadderPreset.all.map(\.name)
            throw ModelError.invalidSetting("preset", "unknown preset \"\(name)\"; presets: \(names.joined(separator: ", "))")
        }
        return p
    }

    /// The custom form, validated.
    public static func custom(codec: String = "h264", width: Int32? = nil, height: Int32? = nil,
                              crf: Int? = nil, bitrateKbps: Int? = nil, gopSeconds: Double = 2,
                              speed: String = "veryfast", profile: String? = nil,
                              audioCodec: String = "aac", audioBitrateKbps: Int = 128,
                              maxFrameRate: Int? = nil) throws(ModelError) -> TranscodePreset {
        var v = VideoSettings()
        v.codec = codec; v.maxWidth = width; v.maxHeight = height
        v.gopSeconds = gopSeconds; v.speed = speed; v.profile = profile; v.maxFrameRate = maxFrameRate
        switch (crf, bitrateKbps) {
        case (let c?, nil): v.rateControl = .crf(c)
        case (nil, let b?): v.rateControl = .bitrate(kbps: b)
        case (nil, nil): v.rateControl = .crf(23)
        case (_?, _?): throw ModelError.invalidSetting("crf", "give either a CRF or a bitrate, not both")
        }
        var a = AudioSettings(); a.bitrateKbps = audioBitrateKbps; a.codec = audioCodec
        let p = TranscodePreset(name: "custom", summary: "custom \(codec)", video: v, audio: a)
        try p.validate()
        return p
    }

    /// Checks every value against what Spool drives, without asking libav: Media adds
    /// the check that the encoders are present in the linked libav.
    public func validate() throws(ModelError) {
        guard let codec = VideoCodec(rawValue: video.codec) else {
            throw .invalidSetting("codec", "video codec \"\(video.codec)\" is not supported; use \(VideoCodec.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        for (label, d) in [("width", video.maxWidth), ("height", video.maxHeight)] {
            if let d, !(16...8192).contains(d) || d % 2 != 0 {
                throw .invalidSetting(label, "\(label) \(d) must be an even number in 16...8192")
            }
        }
        switch video.rateControl {
        case .crf(let c) where !(0...51).contains(c):
            throw .invalidSetting("crf", "CRF \(c) must be in 0...51")
        case .bitrate(let b) where !(50...100_000).contains(b):
            throw .invalidSetting("bitrate_kbps", "video bitrate \(b) kb/s must be in 50...100000")
        default: break
        }
        guard VideoSettings.speeds.contains(video.speed) else {
            throw .invalidSetting("speed", "speed \"\(video.speed)\" must be one of \(VideoSettings.speeds.joined(separator: ", "))")
        }
        if let p = video.profile, !codec.profiles.contains(p) {
            throw .invalidSetting("profile", codec.profiles.isEmpty ? "\(codec.rawValue) takes no profile setting"
                : "\(codec.rawValue) profile \"\(p)\" must be one of \(codec.profiles.joined(separator: ", "))")
        }
        if let m = video.maxBitrateKbps, !(50...100_000).contains(m) {
            throw .invalidSetting("max_bitrate_kbps", "maximum video bitrate \(m) kb/s must be in 50...100000")
        }
        if let f = video.maxFrameRate, !(1...240).contains(f) {
            throw .invalidSetting("max_fps", "maximum frame rate \(f) must be in 1...240")
        }
        guard video.gopSeconds > 0, video.gopSeconds <= 20 else {
            throw .invalidSetting("gop_seconds", "GOP \(video.gopSeconds) s must be in (0, 20]")
        }
        guard AudioCodec(rawValue: audio.codec) != nil else {
            throw .invalidSetting("audio_codec", "audio codec \"\(audio.codec)\" is not supported; use aac or opus")
        }
        guard (16...512).contains(audio.bitrateKbps) else {
            throw .invalidSetting("audio_bitrate_kbps", "audio bitrate \(audio.bitrateKbps) kb/s must be in 16...512")
        }
        guard (1...8).contains(audio.maxChannels) else { throw .invalidSetting("audio_channels", "audio channels must be 1...8") }
    }
}

extension VideoSettings {
    /// Speed names (x264's presets), fastest first; mapped per encoder by Media.
    public static let speeds = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]
}
