// Media.MediaLimits: media is untrusted. These caps are checked while opening (header
// values) and again while working (decoded frames, packet timestamps, counts), and every
// violation is a MediaError with a reason a user can read.
internal import CLibAV
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

    func checkPicture(width: Int32, height: Int32) throws(MediaError) {
        guard width > 0, height > 0 else {
            throw .invalidData(reason: "picture size \(width)×\(height) is not valid")
        }
        guard width <= maxWidth, height <= maxHeight else {
            throw .limitExceeded(reason: "input is \(width)×\(height); the limit is \(maxWidth)×\(maxHeight)")
        }
    }

    func checkDecodedFrameMemory(width: Int32, height: Int32, pixelFormat: Int32, framesInFlight: Int) throws(MediaError) {
        let desc = unsafe pixelFormat >= 0 ? av_pix_fmt_desc_get(AVPixelFormat(rawValue: pixelFormat)) : nil
        // An unknown format is counted as 8-bit 4:2:0, the smallest common one.
        let bits = unsafe desc.map { unsafe Int(av_get_padded_bits_per_pixel($0)) }.flatMap { $0 > 0 ? $0 : nil } ?? 12
        let frameBytes = Int(max(0, width)) * Int(max(0, height)) * bits / 8
        let (total, overflow) = frameBytes.multipliedReportingOverflow(by: max(1, framesInFlight))
        if overflow || total > maxDecodedFrameBytes {
            let name = unsafe desc.flatMap { unsafe cString($0.pointee.name) } ?? "unknown format"
            throw .limitExceeded(reason: "decoding \(width)×\(height) \(name) with \(framesInFlight) frames in flight needs \(overflow ? "more than \(formatBytes(Int.max))" : formatBytes(total)) of decoded frames; the limit is \(formatBytes(maxDecodedFrameBytes))")
        }
    }

    /// How many decoding errors `packets` decoded packets may have.
    func decodeErrorBudget(packets: Int) -> Int {
        let fraction = maxDecodeErrorFraction.isFinite ? min(max(maxDecodeErrorFraction, 0), 1) : 0
        return max(decodeErrorAllowance, Int(fraction * Double(max(0, packets))))
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

/// "512 KiB", "1.5 MiB", "2 GiB" (binary units, at most one decimal).
func formatBytes(_ n: Int) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    if u == 0 { return "\(n) bytes" }
    let r = (v * 10).rounded() / 10
    return (r == r.rounded() ? String(Int(r)) : String(r)) + " " + units[u]
}
