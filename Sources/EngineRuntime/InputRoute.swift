// EngineRuntime.InputRoute: how a job's input reaches the transcode (M29). Downloading it
// first costs disk (the whole file) and time (the download before the first frame);
// streaming it through a FIFO into the transcode costs neither, but the demuxer cannot
// seek, a slow network stalls the transcoder, and the input is read exactly once. So the
// engine streams when it must or when it pays, and only what can be streamed:
// - never: a plugin job (HandBrake reads a file), several outputs made one after another
//   (each reads the input again), a quality report (it is measured against the input),
//   or a container that needs seeking (MP4/MOV whose index, `moov`, follows the media;
//   an unknown container);
// - always, when the input does not fit on the disk (its size plus a reserve exceeds the
//   free space);
// - otherwise, when it is large (`streamMinBytes`) and the network has proved fast enough
//   (the measured download throughput, when there is one, at least `minStreamBytesPerSecond`).
// The decision and its reasons are logged per job. Pure: the engine supplies the facts.

/// How the engine gets inputs: decided per job (`auto`), or always one way.
public enum InputMode: String, Sendable, CaseIterable {
    case auto, download, stream
}

public struct InputPolicy: Sendable, Equatable {
    public var mode = InputMode.auto
    /// Inputs at least this large are streamed when the network is fast enough.
    public var streamMinBytes: Int64 = 2 << 30
    /// Space the work directory keeps free: an input that would eat into it is streamed.
    public var diskReserveBytes: Int64 = 1 << 30
    /// The measured download throughput below which large inputs are still downloaded
    /// (a network slower than the transcode would stall it).
    public var minStreamBytesPerSecond = 25e6
    public init() {}
}

public enum InputRoute: String, Sendable, Equatable {
    case download, stream
}

/// Whether an input can be read front to back without seeking.
public enum Streamability: Sendable, Equatable {
    case yes(String)
    case no(String)

    public var isStreamable: Bool { if case .yes = self { return true } else { return false } }
}

public enum InputDecision {
    /// The route for an input of `size` bytes, with the reason for the log.
    /// `streamable`: the container, and whether the job's runner can take a stream at all.
    public static func route(size: Int64, freeDisk: Int64, throughput: Double?, streamable: Streamability,
                             policy: InputPolicy) -> (InputRoute, String) {
        let facts = "input \(bytes(size)), \(bytes(freeDisk)) free" + (throughput.map { ", downloads at \(bytes(Int64($0)))/s" } ?? "")
        switch policy.mode {
        case .download: return (.download, facts + ": input mode is download")
        case .stream:
            if case .no(let why) = streamable { return (.download, facts + ": input mode is stream, but \(why)") }
            return (.stream, facts + ": input mode is stream")
        case .auto: break
        }
        if case .no(let why) = streamable { return (.download, facts + ": \(why)") }
        if size > freeDisk - policy.diskReserveBytes {
            return (.stream, facts + ": the input does not fit beside the \(bytes(policy.diskReserveBytes)) reserve")
        }
        guard size >= policy.streamMinBytes else { return (.download, facts + ": smaller than \(bytes(policy.streamMinBytes))") }
        if let t = throughput, t < policy.minStreamBytesPerSecond {
            return (.download, facts + ": the network is slower than \(bytes(Int64(policy.minStreamBytesPerSecond)))/s")
        }
        return (.stream, facts + ": large, and the network keeps up")
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while abs(v) >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        let tenths = Int((v * 10).rounded())
        return i == 0 ? "\(n) B" : "\(tenths / 10).\(tenths % 10) \(units[i])"
    }
}

/// Looks at an input's first bytes: which containers demux front to back.
public enum ContainerSniff {
    /// Enough to see an MP4's top-level boxes up to `moov` in a fast-start file.
    /// (Box headers only: `ftyp` is small and `moov` or `mdat` follows it.)
    public static let prefixBytes = 64 << 10

    public static func streamability(_ p: [UInt8]) -> Streamability {
        if p.count >= 8 && Array(p[4..<8]) == Array("ftyp".utf8) { return mp4(p) }
        if p.count >= 4 && p[0] == 0x1A && p[1] == 0x45 && p[2] == 0xDF && p[3] == 0xA3 { return .yes("Matroska/WebM") }
        if p.count >= 377 && p[0] == 0x47 && p[188] == 0x47 && p[376] == 0x47 { return .yes("MPEG-TS") }
        if p.count >= 3 && Array(p[0..<3]) == Array("FLV".utf8) { return .yes("FLV") }
        if p.count >= 9 && Array(p[0..<9]) == Array("YUV4MPEG2".utf8) { return .yes("Y4M") }
        if p.count >= 4 && p[0] == 0 && p[1] == 0 && p[2] == 1 && p[3] == 0xBA { return .yes("MPEG-PS") }
        return .no("its container is not one known to demux without seeking")
    }

    /// Walks the top-level boxes: `moov` before `mdat` streams (fast start); `mdat` first does not.
    static func mp4(_ p: [UInt8]) -> Streamability {
        var at = 0
        while at + 8 <= p.count {
            var size = UInt64(p[at]) << 24 | UInt64(p[at + 1]) << 16 | UInt64(p[at + 2]) << 8 | UInt64(p[at + 3])
            let type = String(decoding: p[(at + 4)..<(at + 8)], as: UTF8.self)
            if size == 1 {
                guard at + 16 <= p.count else { break }
                size = p[(at + 8)..<(at + 16)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            }
            if type == "moov" { return .yes("MP4 with its index first (fast start)") }
            if type == "mdat" { return .no("it is an MP4 whose index (moov) follows the media: demuxing it needs seeking") }
            guard size >= 8, size <= UInt64(Int.max - at) else { break }
            at += Int(size)
        }
        return .no("no MP4 index (moov) in its first \(p.count) bytes")
    }
}
