// Media.MediaProbe: what is in a file, under the same limits and allow-lists as a
// transcode, as values and as JSON (written with Spool's JSONWriter).
internal import CLibAV
import TranscodeAPI
import JSON

public struct StreamInfo: Sendable, Equatable {
    public var index: Int
    /// "video", "audio", "subtitle", "data", "attachment" or "unknown".
    public var type: String
    public var codec: String
    public var width: Int?
    public var height: Int?
    public var fps: Double?
    public var sampleRate: Int?
    public var channels: Int?
    public var channelLayout: String?
    public var durationSeconds: Double?
    public var bitRate: Int64?
}

public struct ProbeResult: Sendable, Equatable {
    public var path: String
    public var format: String
    public var formatLongName: String
    public var durationSeconds: Double?
    public var bitRate: Int64?
    public var streams: [StreamInfo]

    public func write<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("path", path)
        w.field("format", format)
        w.field("format_long_name", formatLongName)
        w.key("duration_seconds"); if let d = durationSeconds { w.double(d) } else { w.null() }
        w.key("bit_rate"); if let b = bitRate { w.int(b) } else { w.null() }
        w.key("streams")
        w.beginArray()
        for s in streams {
            w.beginObject()
            w.field("index", s.index)
            w.field("type", s.type)
            w.field("codec", s.codec)
            if let v = s.width { w.field("width", v) }
            if let v = s.height { w.field("height", v) }
            if let v = s.fps { w.field("fps", v) }
            if let v = s.sampleRate { w.field("sample_rate", v) }
            if let v = s.channels { w.field("channels", v) }
            if let v = s.channelLayout { w.field("channel_layout", v) }
            if let v = s.durationSeconds { w.field("duration_seconds", v) }
            if let v = s.bitRate { w.field("bit_rate", v) }
            w.endObject()
        }
        w.endArray()
        w.endObject()
    }

    public var json: String {
        var w = JSONWriter()
        write(to: &w)
        return w.text
    }
}

public enum MediaProbe {
    public static func probe(_ path: String, limits: MediaLimits = MediaLimits(),
                             cancel: CancellationFlag? = nil) throws(MediaError) -> ProbeResult {
        try probe(MediaPath(path), limits: limits, cancel: cancel)
    }

    /// Probes a file named by its bytes (a name that is not valid UTF-8 stays exact).
    public static func probe(_ path: MediaPath, limits: MediaLimits = MediaLimits(),
                             cancel: CancellationFlag? = nil) throws(MediaError) -> ProbeResult {
        describe(try InputFile(path: path, limits: limits, cancel: cancel))
    }

    /// Probes a streamed input (pipe, socket, memory); `name` labels it in the result.
    public static func probe(source: any ByteSource, name: String = "-", limits: MediaLimits = MediaLimits(),
                             cancel: CancellationFlag? = nil) throws(MediaError) -> ProbeResult {
        describe(try InputFile(source: source, name: name, limits: limits, cancel: cancel))
    }

    private static func describe(_ input: InputFile) -> ProbeResult {
        let path = input.path
        var streams: [StreamInfo] = []
        for i in 0..<input.streamCount {
            let st = unsafe input.stream(i)
            let par = unsafe st.pointee.codecpar.pointee
            var s = unsafe StreamInfo(index: i, type: typeName(par.codec_type),
                               codec: cString(avcodec_get_name(par.codec_id)) ?? "unknown")
            if unsafe par.codec_type == AVMEDIA_TYPE_VIDEO {
                s.width = unsafe Int(par.width); s.height = unsafe Int(par.height)
                var r = unsafe st.pointee.avg_frame_rate
                if !r.isValid { r = unsafe st.pointee.r_frame_rate }
                if r.isValid { s.fps = (r.double * 1000).rounded() / 1000 }
            } else if unsafe par.codec_type == AVMEDIA_TYPE_AUDIO {
                s.sampleRate = unsafe Int(par.sample_rate)
                s.channels = unsafe Int(par.ch_layout.nb_channels)
                var buf = [CChar](repeating: 0, count: 64)
                var layout = unsafe par.ch_layout
                if unsafe clibav_channel_layout_describe(&layout, &buf, buf.count) == 0 { s.channelLayout = unsafe buf.withUnsafeBufferPointer { unsafe String(cString: $0.baseAddress!) } }
            }
            if unsafe st.pointee.duration != AVCode.noPTS && st.pointee.duration > 0 {
                s.durationSeconds = unsafe Double(st.pointee.duration) * st.pointee.time_base.double
            }
            if unsafe par.bit_rate > 0 { s.bitRate = unsafe par.bit_rate }
            streams.append(s)
        }
        let br = unsafe input.ctx.pointee.bit_rate
        return ProbeResult(path: path, format: input.formatName, formatLongName: input.formatLongName,
                           durationSeconds: input.durationSeconds > 0 ? input.durationSeconds : nil,
                           bitRate: br > 0 ? br : nil, streams: streams)
    }

    static func typeName(_ t: AVMediaType) -> String {
        switch t {
        case AVMEDIA_TYPE_VIDEO: return "video"
        case AVMEDIA_TYPE_AUDIO: return "audio"
        case AVMEDIA_TYPE_SUBTITLE: return "subtitle"
        case AVMEDIA_TYPE_DATA: return "data"
        case AVMEDIA_TYPE_ATTACHMENT: return "attachment"
        default: return "unknown"
        }
    }
}
