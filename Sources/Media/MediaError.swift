// Media.MediaError: every failure the Media module reports, each with a reason a user can
// read. libav return codes are turned into these at the call site that knows what was
// being attempted, so a message says "opening the decoder for stream 0 (h264)" rather
// than a bare errno. New kinds of failure keep coming (each input hardening added one),
// so MediaError is a struct: built with static functions named for the failure, told apart
// by comparing `kind` (or `code`, its stable identifier), never by an exhaustive switch.
internal import CLibAV
import SpoolModel
#if canImport(Glibc)
import Glibc
#endif

public struct MediaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What failed, compared with `==` (`error.kind == .outputExists`). Kinds will be
    /// added, so this is a struct over a private enum, not an enum to switch over. Its
    /// description is the stable identifier (`code`).
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case inputUnreadable = "input_unreadable"
            case emptyInput = "empty_input"
            case inputTruncated = "input_truncated"
            case unrecognizedFormat = "unrecognized_format"
            case demuxerNotAllowed = "format_not_allowed"
            case invalidData = "invalid_data"
            case limitExceeded = "limit_exceeded"
            case noUsableStreams = "no_usable_streams"
            case decoderUnavailable = "decoder_unavailable"
            case encoderUnavailable = "encoder_unavailable"
            case invalidSettings = "invalid_settings"
            case outputUnwritable = "output_unwritable"
            case outputExists = "output_exists"
            case cancelled = "cancelled"
            case timedOut = "timed_out"
            case tooManyDecodeErrors = "too_many_decode_errors"
            case noVideoFrames = "no_video_frames"
            case noAudioFrames = "no_audio_frames"
            case libav = "libav_error"
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        public static let inputUnreadable = Kind(.inputUnreadable)
        public static let emptyInput = Kind(.emptyInput)
        public static let inputTruncated = Kind(.inputTruncated)
        public static let unrecognizedFormat = Kind(.unrecognizedFormat)
        public static let demuxerNotAllowed = Kind(.demuxerNotAllowed)
        public static let invalidData = Kind(.invalidData)
        public static let limitExceeded = Kind(.limitExceeded)
        public static let noUsableStreams = Kind(.noUsableStreams)
        public static let decoderUnavailable = Kind(.decoderUnavailable)
        public static let encoderUnavailable = Kind(.encoderUnavailable)
        public static let invalidSettings = Kind(.invalidSettings)
        public static let outputUnwritable = Kind(.outputUnwritable)
        public static let outputExists = Kind(.outputExists)
        public static let cancelled = Kind(.cancelled)
        public static let timedOut = Kind(.timedOut)
        public static let tooManyDecodeErrors = Kind(.tooManyDecodeErrors)
        public static let noVideoFrames = Kind(.noVideoFrames)
        public static let noAudioFrames = Kind(.noAudioFrames)
        public static let libav = Kind(.libav)

        public var description: String { value.rawValue }
    }

    /// Each failure with what its message needs. Private: callers build errors with the
    /// static functions below and tell them apart by `kind`.
    private enum Detail: Hashable, Sendable {
        case inputUnreadable(path: String, reason: String)
        case emptyInput(path: String)
        case inputTruncated(path: String, openedBytes: Int64, nowBytes: Int64)
        case unrecognizedFormat(path: String)
        case demuxerNotAllowed(name: String, allowed: [String])
        case invalidData(reason: String)
        case limitExceeded(reason: String)
        case noUsableStreams(path: String)
        case decoderUnavailable(codec: String)
        case encoderUnavailable(codec: String)
        case invalidSettings(reason: String)
        case outputUnwritable(path: String, reason: String)
        case outputExists(path: String)
        case cancelled
        case timedOut(phase: String, seconds: Double)
        case tooManyDecodeErrors(path: String, errors: Int, packets: Int, total: Int, allowed: Int, lastError: String)
        case noVideoFrames(path: String)
        case noAudioFrames(path: String)
        case libav(operation: String, code: Int32, message: String)
    }

    private let detail: Detail
    private init(_ detail: Detail) { self.detail = detail }

    /// The input path does not exist or cannot be read.
    public static func inputUnreadable(path: String, reason: String) -> MediaError { MediaError(.inputUnreadable(path: path, reason: reason)) }
    /// The input has no bytes.
    public static func emptyInput(path: String) -> MediaError { MediaError(.emptyInput(path: path)) }
    /// The input file became shorter than it was when opened (another process truncated it).
    public static func inputTruncated(path: String, openedBytes: Int64, nowBytes: Int64) -> MediaError {
        MediaError(.inputTruncated(path: path, openedBytes: openedBytes, nowBytes: nowBytes))
    }
    /// No allowed demuxer recognises the bytes.
    public static func unrecognizedFormat(path: String) -> MediaError { MediaError(.unrecognizedFormat(path: path)) }
    /// A demuxer recognised the input but is not on the allow-list (e.g. playlists).
    public static func demuxerNotAllowed(name: String, allowed: [String]) -> MediaError { MediaError(.demuxerNotAllowed(name: name, allowed: allowed)) }
    /// The input is corrupt or truncated beyond what libav can work with.
    public static func invalidData(reason: String) -> MediaError { MediaError(.invalidData(reason: reason)) }
    /// A safety limit was hit (dimensions, duration, stream or packet count...).
    public static func limitExceeded(reason: String) -> MediaError { MediaError(.limitExceeded(reason: reason)) }
    /// The input has no audio or video stream Spool can transcode.
    public static func noUsableStreams(path: String) -> MediaError { MediaError(.noUsableStreams(path: path)) }
    /// No decoder for the input codec in this libav build.
    public static func decoderUnavailable(codec: String) -> MediaError { MediaError(.decoderUnavailable(codec: codec)) }
    /// The requested encoder is not in this libav build.
    public static func encoderUnavailable(codec: String) -> MediaError { MediaError(.encoderUnavailable(codec: codec)) }
    /// A preset or custom settings were rejected before any work started.
    public static func invalidSettings(reason: String) -> MediaError { MediaError(.invalidSettings(reason: reason)) }
    /// The output cannot be written (path, container).
    public static func outputUnwritable(path: String, reason: String) -> MediaError { MediaError(.outputUnwritable(path: path, reason: reason)) }
    /// Something exists at the output path and replacing it was not asked for.
    public static func outputExists(path: String) -> MediaError { MediaError(.outputExists(path: path)) }
    /// The job was cancelled.
    public static let cancelled = MediaError(.cancelled)
    /// A phase took longer than its limit (e.g. opening and probing the input).
    public static func timedOut(phase: String, seconds: Double) -> MediaError { MediaError(.timedOut(phase: phase, seconds: seconds)) }
    /// More packets could not be decoded than the error budget allows (MediaLimits).
    /// `packets` were sent to the decoders so far, of `total` (declared, or all read).
    public static func tooManyDecodeErrors(path: String, errors: Int, packets: Int, total: Int, allowed: Int, lastError: String) -> MediaError {
        MediaError(.tooManyDecodeErrors(path: path, errors: errors, packets: packets, total: total, allowed: allowed, lastError: lastError))
    }
    /// The input has a video stream and video was asked for, but no frame came out of it.
    public static func noVideoFrames(path: String) -> MediaError { MediaError(.noVideoFrames(path: path)) }
    /// The input has an audio stream and audio was asked for, but no sample came out of it.
    public static func noAudioFrames(path: String) -> MediaError { MediaError(.noAudioFrames(path: path)) }
    /// Any other libav failure: what we were doing, the code and libav's text.
    public static func libav(operation: String, code: Int32, message: String) -> MediaError {
        MediaError(.libav(operation: operation, code: code, message: message))
    }

    public var description: String {
        switch detail {
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
        case .timedOut(let phase, let seconds): return "\(phase) took longer than \(NumberFormat.seconds(seconds)) s"
        case .tooManyDecodeErrors(let path, let errors, let packets, let total, let allowed, let last):
            let read = packets == total ? "\(packets) packets" : "the first \(packets) packets"
            return "\(path): \(errors) of \(read) could not be decoded; at most \(allowed) of \(total) may be skipped; last error: \(last)"
        case .noVideoFrames(let path): return "\(path) has a video stream but no frame could be decoded"
        case .noAudioFrames(let path): return "\(path) has an audio stream but no sample could be decoded"
        case .libav(let op, let code, let message):
            return code == -1 ? "\(op) failed: libav error -1 (generic error)" : "\(op) failed: \(message) (libav error \(code))"
        }
    }

    public var kind: Kind {
        switch detail {
        case .inputUnreadable: return .inputUnreadable
        case .emptyInput: return .emptyInput
        case .inputTruncated: return .inputTruncated
        case .unrecognizedFormat: return .unrecognizedFormat
        case .demuxerNotAllowed: return .demuxerNotAllowed
        case .invalidData: return .invalidData
        case .limitExceeded: return .limitExceeded
        case .noUsableStreams: return .noUsableStreams
        case .decoderUnavailable: return .decoderUnavailable
        case .encoderUnavailable: return .encoderUnavailable
        case .invalidSettings: return .invalidSettings
        case .outputUnwritable: return .outputUnwritable
        case .outputExists: return .outputExists
        case .cancelled: return .cancelled
        case .timedOut: return .timedOut
        case .tooManyDecodeErrors: return .tooManyDecodeErrors
        case .noVideoFrames: return .noVideoFrames
        case .noAudioFrames: return .noAudioFrames
        case .libav: return .libav
        }
    }

    /// A short stable identifier, for JSON error bodies and tests (`kind`'s description).
    public var code: String { kind.description }
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
