// TranscodeAPI: the transcoder contract, without libav. An engine (or a simulated one)
// runs jobs through `TranscoderPlugin` and watches its machine through
// `ResourceMonitorPlugin`; the values they exchange (requests, progress, summaries,
// quality reports, capabilities, resource samples) are plain data that read and write
// themselves as JSON with the JSON module. `Media` implements the plugin with libav
// in-process (LibAVTranscoderPlugin); a dispatcher or a test can use every type here
// without linking libav.
//
// Failures cross the contract as `TranscodeFailure` (a stable code and a readable
// message), never as an engine's own error type.
import JSON
import SpoolModel

/// A transcode job as an engine hands it to a plugin.
public struct TranscodeJob: Sendable {
    public enum Kind: Sendable {
        case single(TranscodeRequest)
        case ladder(LadderRequest)
    }
    public var id: String
    public var kind: Kind
    public init(id: String, kind: Kind) { self.id = id; self.kind = kind }

    /// The job's streamed input, if any (a plugin stops it on cancellation).
    public var inputStream: (any ByteSource)? {
        switch kind {
        case .single(let r): return r.inputStream
        case .ladder(let r): return r.inputStream
        }
    }
}

public enum TranscodeJobResult: Sendable {
    case single(TranscodeSummary)
    case ladder(LadderSummary)
}

public protocol TranscoderPlugin: Sendable {
    var name: String { get }
    func capabilities() -> TranscoderCapabilities
    /// Runs a job off the caller's executor; throws `.cancelled` after `cancel(jobID:)`.
    func transcode(_ job: TranscodeJob, progress: (@Sendable (TranscodeProgress) -> Void)?) async throws(TranscodeFailure) -> TranscodeJobResult
    /// Cancels a running job; unknown ids are ignored.
    func cancel(jobID: String)
}

/// Why a job failed, as the contract carries it: `code` is a short stable identifier
/// ("cancelled", "input_unreadable", "invalid_settings"...; an engine's own error codes
/// pass through unchanged), `message` a sentence a user can read.
public struct TranscodeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(code: String, message: String) { self.code = code; self.message = message }

    public static let cancelled = TranscodeFailure(code: "cancelled", message: "cancelled")
    /// A job refused before any work (bad settings, a duplicate id).
    public static func invalidJob(_ reason: String) -> TranscodeFailure {
        TranscodeFailure(code: "invalid_settings", message: "invalid settings: \(reason)")
    }

    public var isCancelled: Bool { code == TranscodeFailure.cancelled.code }
    public var description: String { message }
}

extension TranscodeFailure: JSONEncodable, JSONDecodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("code", code)
        w.field("message", message)
        w.endObject()
    }

    public init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(["code", "message"])
        self.init(code: try json.field("code"), message: try json.field("message"))
    }
}
