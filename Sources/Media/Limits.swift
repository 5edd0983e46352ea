// Media.MediaLimits: media is untrusted. These caps are checked while opening (header
// values) and again while working (decoded frames, packet timestamps, counts), and every
// violation is a MediaError with a reason a user can read.
public struct MediaLimits: Sendable, Equatable {
    /// Largest accepted picture, per dimension.
    public var maxWidth: Int32 = 8192
    public var maxHeight: Int32 = 8192
    /// Longest accepted input, in seconds (from the header and from packet timestamps).
    public var maxDurationSeconds: Double = 6 * 3600
    /// Most streams an input may declare.
    public var maxStreams: Int = 16
    /// Most packets read from one input.
    public var maxPackets: Int = 10_000_000
    /// Demuxers allowed to open input, by libav name. No playlists (hls, concat), no
    /// image sequences (image2), nothing that opens other files or URLs.
    public var allowedDemuxers: [String] = ["mov", "mp4", "m4a", "matroska", "webm", "mpegts"]
    /// Bytes libav may read and microseconds it may analyse while probing stream info.
    public var probeBytes: Int = 5_000_000
    public var analyzeMicroseconds: Int = 5_000_000
    /// Wall time allowed for opening the input and probing its streams.
    public var openTimeoutSeconds: Double = 2

    public init() {}

    func checkPicture(width: Int32, height: Int32) throws(MediaError) {
        guard width > 0, height > 0 else {
            throw .invalidData(reason: "picture size \(width)×\(height) is not valid")
        }
        guard width <= maxWidth, height <= maxHeight else {
            throw .limitExceeded(reason: "input is \(width)×\(height); the limit is \(maxWidth)×\(maxHeight)")
        }
    }

    func checkDuration(_ seconds: Double) throws(MediaError) {
        if seconds > maxDurationSeconds {
            throw .limitExceeded(reason: "input lasts \(formatSeconds(seconds.rounded())) s; the limit is \(formatSeconds(maxDurationSeconds)) s")
        }
    }

    /// True when a libav demuxer name ("mov,mp4,m4a,3gp,3g2,mj2") matches the allow-list.
    func allows(demuxer name: String) -> Bool {
        name.split(separator: ",").contains { allowedDemuxers.contains(String($0)) }
    }
}
