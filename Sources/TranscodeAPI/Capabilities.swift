// TranscodeAPI.Capabilities: what a transcoder plugin can do on its machine, as an engine
// reports it when it registers. The libav plugin discovers these from the linked libav.
import JSON

public struct TranscoderCapabilities: Sendable, Equatable {
    /// Encoders the plugin can drive and has (e.g. "libx264", "aac").
    public var encoders: [String]
    /// Encoders present that the plugin knows but does not drive yet.
    public var encodersPresentNotDriven: [String]
    /// Decoders present (video and audio).
    public var videoDecoders: Int
    public var audioDecoders: Int
    /// Allowed input formats present.
    public var demuxers: [String]
    /// Output containers present and supported.
    public var muxers: [String]
    /// Hardware device types that could actually be opened (e.g. "vaapi"). A software
    /// Vulkan driver (lavapipe) counts as openable too; Spool does not use devices yet.
    public var hardwareDevices: [String]
    /// Hardware device types the plugin was built with (whether or not one opened).
    public var hardwareTypesBuilt: [String]
    public var presets: [String]
    /// The engine library's version ("5.1.4" for libav).
    public var libavVersion: String

    public init(encoders: [String], encodersPresentNotDriven: [String] = [], videoDecoders: Int, audioDecoders: Int,
                demuxers: [String], muxers: [String], hardwareDevices: [String] = [], hardwareTypesBuilt: [String] = [],
                presets: [String], libavVersion: String) {
        self.encoders = encoders; self.encodersPresentNotDriven = encodersPresentNotDriven
        self.videoDecoders = videoDecoders; self.audioDecoders = audioDecoders
        self.demuxers = demuxers; self.muxers = muxers
        self.hardwareDevices = hardwareDevices; self.hardwareTypesBuilt = hardwareTypesBuilt
        self.presets = presets; self.libavVersion = libavVersion
    }

    public var json: String { jsonText }
}

extension TranscoderCapabilities: JSONEncodable, JSONDecodable {
    static let keys: Set<String> = ["libav", "encoders", "encoders_present_not_driven", "video_decoders", "audio_decoders",
                                    "demuxers", "muxers", "hardware_devices", "hardware_types_built", "presets"]

    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("libav", libavVersion)
        w.field("encoders", encoders)
        w.field("encoders_present_not_driven", encodersPresentNotDriven)
        w.field("video_decoders", videoDecoders)
        w.field("audio_decoders", audioDecoders)
        w.field("demuxers", demuxers)
        w.field("muxers", muxers)
        w.field("hardware_devices", hardwareDevices)
        w.field("hardware_types_built", hardwareTypesBuilt)
        w.field("presets", presets)
        w.endObject()
    }

    public init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(Self.keys)
        self.init(encoders: try json.field("encoders"), encodersPresentNotDriven: try json.field("encoders_present_not_driven"),
                  videoDecoders: try json.field("video_decoders"), audioDecoders: try json.field("audio_decoders"),
                  demuxers: try json.field("demuxers"), muxers: try json.field("muxers"),
                  hardwareDevices: try json.field("hardware_devices"), hardwareTypesBuilt: try json.field("hardware_types_built"),
                  presets: try json.field("presets"), libavVersion: try json.field("libav"))
    }
}
