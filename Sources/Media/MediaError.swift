// Media.MediaError: every failure the Media module reports, each with a reason a user can
// read. libav return codes are turned into these at the call site that knows what was
// being attempted, so a message says "opening the decoder for stream 0 (h264)" rather
// than a bare errno.
internal import CLibAV
#if canImport(Glibc)
import Glibc
#endif

public enum MediaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The input path does not exist or cannot be read.
    case inputUnreadable(path: String, reason: String)
    /// The input has no bytes.
    case emptyInput(path: String)
    /// The input file became shorter than it was when opened (another process truncated it).
    case inputTruncated(path: String, openedBytes: Int64, nowBytes: Int64)
    /// No allowed demuxer recognises the bytes.
    case unrecognizedFormat(path: String)
    /// A demuxer recognised the input but is not on the allow-list (e.g. playlists).
    case demuxerNotAllowed(name: String, allowed: [String])
    /// The input is corrupt or truncated beyond what libav can work with.
    case invalidData(reason: String)
    /// A safety limit was hit (dimensions, duration, stream or packet count...).
    case limitExceeded(reason: String)
    /// The input has no audio or video stream Spool can transcode.
    case noUsableStreams(path: String)
    /// No decoder for the input codec in this libav build.
    case decoderUnavailable(codec: String)
    /// The requested encoder is not in this libav build.
    case encoderUnavailable(codec: String)
    /// A preset or custom settings were rejected before any work started.
    case invalidSettings(reason: String)
    /// The output cannot be written (path, container).
    case outputUnwritable(path: String, reason: String)
    /// Something exists at the output path and replacing it was not asked for.
    case outputExists(path: String)
    /// The job was cancelled.
    case cancelled
    /// A phase took longer than its limit (e.g. opening and probing the input).
    case timedOut(phase: String, seconds: Double)
    /// More packets could not be decoded than the error budget allows (MediaLimits).
    /// `packets` were sent to the decoders so far, of `total` (declared, or all read).
    case tooManyDecodeErrors(path: String, errors: Int, packets: Int, total: Int, allowed: Int, lastError: String)
    /// The input has a video stream and video was asked for, but no frame came out of it.
    case noVideoFrames(path: String)
    /// The input has an audio stream and audio was asked for, but no sample came out of it.
    case noAudioFrames(path: String)
    /// Any other libav failure: what we were doing, the code and libav's text.
    case libav(operation: String, code: Int32, message: String)

    public var description: String {
        switch self {
        case .inputUnreadable(let path, let reason): return "cannot read \(path): \(reason)"
        case .emptyInput(let path): return "\(path) is empty (0 bytes)"
        case .inputTruncated(let path, let opened, let now):
            return "\(path) was truncated while being read: it had \(opened) bytes when opened and now has \(now)"
        case .unrecognizedFormat(let path): return "\(path) is not a recognised media file"
        case .demuxerNotAllowed(let name, let allowed):
            return "input format \"\(name)\" is not allowed; allowed formats: \(allowed.joined(separator: ", "))"
        case .invalidData(let reason): return "invalid media data: \(reason)"
        case .limitExceeded(let reason): return reason
        case .noUsableStreams(let path): return "\(path) has no audio or video stream to transcode"
        case .decoderUnavailable(let codec): return "no decoder for \(codec) in this build"
        case .encoderUnavailable(let codec): return "no encoder for \(codec) in this build"
        case .invalidSettings(let reason): return "invalid settings: \(reason)"
        case .outputUnwritable(let path, let reason): return "cannot write \(path): \(reason)"
        case .outputExists(let path): return "\(path) already exists (pass --overwrite, or overwrite: true, to replace it)"
        case .cancelled: return "cancelled"
        case .timedOut(let phase, let seconds): return "\(phase) took longer than \(formatSeconds(seconds)) s"
        case .tooManyDecodeErrors(let path, let errors, let packets, let total, let allowed, let last):
            let read = packets == total ? "\(packets) packets" : "the first \(packets) packets"
            return "\(path): \(errors) of \(read) could not be decoded; at most \(allowed) of \(total) may be skipped; last error: \(last)"
        case .noVideoFrames(let path): return "\(path) has a video stream but no frame could be decoded"
        case .noAudioFrames(let path): return "\(path) has an audio stream but no sample could be decoded"
        case .libav(let op, let code, let message):
            return code == -1 ? "\(op) failed: libav error -1 (generic error)" : "\(op) failed: \(message) (libav error \(code))"
        }
    }

    /// A short stable identifier, for JSON error bodies and tests.
    public var code: String {
        switch self {
        case .inputUnreadable: return "input_unreadable"
        case .emptyInput: return "empty_input"
        case .inputTruncated: return "input_truncated"
        case .unrecognizedFormat: return "unrecognized_format"
        case .demuxerNotAllowed: return "format_not_allowed"
        case .invalidData: return "invalid_data"
        case .limitExceeded: return "limit_exceeded"
        case .noUsableStreams: return "no_usable_streams"
        case .decoderUnavailable: return "decoder_unavailable"
        case .encoderUnavailable: return "encoder_unavailable"
        case .invalidSettings: return "invalid_settings"
        case .outputUnwritable: return "output_unwritable"
        case .outputExists: return "output_exists"
        case .cancelled: return "cancelled"
        case .timedOut: return "timed_out"
        case .tooManyDecodeErrors: return "too_many_decode_errors"
        case .noVideoFrames: return "no_video_frames"
        case .noAudioFrames: return "no_audio_frames"
        case .libav: return "libav_error"
        }
    }
}

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? String(Int(s)) : String(format1: s)
}

extension String {
    /// A number with one decimal, without Foundation.
    init(format1 v: Double) {
        let tenths = Int((v * 10).rounded())
        let sign = tenths < 0 ? "-" : ""
        let a = abs(tenths)
        self = "\(sign)\(a / 10).\(a % 10)"
    }
}

/// libav's text for an error code. libav's own codes (FFERRTAG) have their text; -1 is
/// the generic failure many decoders return, not AVERROR(EPERM), so it is never shown as
/// "Operation not permitted"; other small negative codes are AVERROR(errno).
func libavErrorString(_ code: Int32) -> String {
    if code == -1 { return "generic error" }
    var buf = [CChar](repeating: 0, count: 256)
    _ = unsafe clibav_strerror(code, &buf, buf.count)
    return unsafe buf.withUnsafeBufferPointer { unsafe String(cString: $0.baseAddress!) }
}

/// "Invalid data found when processing input (libav error -1094995529)"; "libav error -1
/// (generic error)".
func libavErrorText(_ code: Int32) -> String {
    code == -1 ? "libav error -1 (generic error)" : "\(libavErrorString(code)) (libav error \(code))"
}

enum AVCode {
    static let eof = clibav_error_eof()
    static let eagain = clibav_error_eagain()
    static let invalidData = clibav_error_invaliddata()
    static let exit = clibav_error_exit()
    static let noPTS = clibav_nopts_value()
}

/// Turns a negative libav return code into a MediaError describing `operation`.
@inline(__always)
@discardableResult
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(MediaError) -> Int32 {
    if rc >= 0 { return rc }
    throw mediaError(rc, operation())
}

func mediaError(_ rc: Int32, _ operation: String) -> MediaError {
    if rc == AVCode.invalidData {
        return .invalidData(reason: "\(operation): \(libavErrorString(rc))")
    }
    return .libav(operation: operation, code: rc, message: libavErrorString(rc))
}

func outOfMemory(_ operation: String) -> MediaError {
    .libav(operation: operation, code: clibav_averror(ENOMEM), message: "out of memory")
}
