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
    /// The list members, by JSON name (the counts and the version are written first).
    static var lists: KeyValuePairs<String, WritableKeyPath<TranscoderCapabilities, [String]>> {
        ["encoders": \.encoders, "encoders_present_not_driven": \.encodersPresentNotDriven, "demuxers": \.demuxers,
         "muxers": \.muxers, "hardware_devices": \.hardwareDevices, "hardware_types_built": \.hardwareTypesBuilt,
         "presets": \.presets]
    }

    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("libav", libavVersion)
        w.field("video_decoders", videoDecoders)
        w.field("audio_decoders", audioDecoders)
        for (key, list) in Self.lists { w.field(key, self[keyPath: list]) }
        w.endObject()
    }

    public init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(Set(["libav", "video_decoders", "audio_decoders"] + Self.lists.map(\.key)))
        self.init(encoders: [], videoDecoders: try json.field("video_decoders"), audioDecoders: try json.field("audio_decoders"),
                  demuxers: [], muxers: [], presets: [], libavVersion: try json.field("libav"))
        for (key, list) in Self.lists { self[keyPath: list] = try json.field(key) }
    }
}
