// TranscodeAPI.Progress: what a running job reports, at most every `progressInterval`
// seconds and once at the end, as the engine forwards it to the dispatcher.
import JSON

public struct TranscodeProgress: Sendable, Equatable {
    public var videoFrames: Int
    /// Output media time written so far, seconds.
    public var mediaSeconds: Double
    /// Input duration, seconds (0 when the container does not say).
    public var totalSeconds: Double
    public var elapsedSeconds: Double
    /// Video frames per second of wall time.
    public var fps: Double
    /// Media seconds per wall second (× real time).
    public var speed: Double
    /// Estimated seconds left, when the total is known and work has started.
    public var etaSeconds: Double?

    public init(videoFrames: Int, mediaSeconds: Double, totalSeconds: Double, elapsedSeconds: Double,
                fps: Double, speed: Double, etaSeconds: Double? = nil) {
        self.videoFrames = videoFrames; self.mediaSeconds = mediaSeconds; self.totalSeconds = totalSeconds
        self.elapsedSeconds = elapsedSeconds; self.fps = fps; self.speed = speed; self.etaSeconds = etaSeconds
    }

    /// 0...1 when the total is known.
    public var fraction: Double? { totalSeconds > 0 ? min(1, mediaSeconds / totalSeconds) : nil }
}

extension TranscodeProgress: JSONEncodable, JSONDecodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("video_frames", videoFrames)
        w.field("media_seconds", mediaSeconds)
        w.field("total_seconds", totalSeconds)
        w.field("elapsed_seconds", elapsedSeconds)
        w.field("fps", fps)
        w.field("speed", speed)
        w.field("eta_seconds", etaSeconds)
        w.field("fraction", fraction)
        w.endObject()
    }

    /// `fraction` is derived, so it is accepted and ignored.
    public init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(["video_frames", "media_seconds", "total_seconds", "elapsed_seconds", "fps", "speed",
                                    "eta_seconds", "fraction"])
        self.init(videoFrames: try json.field("video_frames"), mediaSeconds: try json.field("media_seconds"),
                  totalSeconds: try json.field("total_seconds"), elapsedSeconds: try json.field("elapsed_seconds"),
                  fps: try json.field("fps"), speed: try json.field("speed"), etaSeconds: try json.optionalField("eta_seconds"))
    }
}
