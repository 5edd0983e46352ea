// TranscodeAPI.MediaLimits: media is untrusted. The caps a job runs under, as values; the
// engine checks them while opening (header values) and again while working (decoded
// frames, packet timestamps, counts).

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
    /// Bytes the demuxer may read and microseconds it may analyse while probing stream info.
    public var probeBytes: Int = 5_000_000
    public var analyzeMicroseconds: Int = 5_000_000
    /// Wall time allowed for opening the input and probing its streams.
    public var openTimeoutSeconds: Double = 2
    /// Bytes of decoded video frames a transcode may hold at once: width × height ×
    /// bytes per pixel (of the decoder's pixel format, padding included) × frames in
    /// flight (one per frame-decoding thread, plus the stream's reorder delay, plus the
    /// frame the pipeline is working on). Checked when the video decoder is configured
    /// and again if the decoded pictures change size or format. Frames a decoder keeps
    /// only as references are not counted (their number is known only while decoding).
    public var maxDecodedFrameBytes: Int = 2 << 30
    /// Undecodable packets are skipped and counted, as ffmpeg does; a job fails when more
    /// than this fraction of the packets it decoded (at least `decodeErrorAllowance`)
    /// could not be decoded.
    public var maxDecodeErrorFraction: Double = 0.05
    public var decodeErrorAllowance: Int = 5

    public init() {}

    /// How many decoding errors `packets` decoded packets may have.
    public func decodeErrorBudget(packets: Int) -> Int {
        let fraction = maxDecodeErrorFraction.isFinite ? min(max(maxDecodeErrorFraction, 0), 1) : 0
        return max(decodeErrorAllowance, Int(fraction * Double(max(0, packets))))
    }

    /// True when a libav demuxer name ("mov,mp4,m4a,3gp,3g2,mj2") matches the allow-list.
    public func allows(demuxer name: String) -> Bool {
        name.split(separator: ",").contains { allowedDemuxers.contains(String($0)) }
    }
}
