// TranscodeAPI.Results: what a finished job reports: a single output's summary, or a
// ladder's with one summary per rendition, each with its optional quality report.
import JSON

/// PSNR and SSIM of a rendition against the scaled source it was encoded from.
public struct QualityReport: Sendable, Equatable {
    public var frames: Int
    public var psnrY: Double
    public var psnrU: Double
    public var psnrV: Double
    /// Over all samples (4:2:0: Y counts 4× each chroma plane).
    public var psnrAverage: Double
    /// Luma only, mean over frames; and the worst frame.
    public var ssimY: Double
    public var ssimYWorstFrame: Double

    public init(frames: Int, psnrY: Double, psnrU: Double, psnrV: Double, psnrAverage: Double,
                ssimY: Double, ssimYWorstFrame: Double) {
        self.frames = frames; self.psnrY = psnrY; self.psnrU = psnrU; self.psnrV = psnrV
        self.psnrAverage = psnrAverage; self.ssimY = ssimY; self.ssimYWorstFrame = ssimYWorstFrame
    }
}

public struct TranscodeSummary: Sendable, Equatable {
    public var input: String
    public var output: String
    public var preset: String
    public var mediaSeconds: Double
    public var elapsedSeconds: Double
    public var videoFrames: Int
    public var audioSamples: Int
    public var width: Int32
    public var height: Int32
    public var fps: Double
    public var speed: Double
    public var outputBytes: Int64
    public var quality: QualityReport?
    /// True when the audio packets were copied rather than re-encoded.
    public var audioCopied: Bool
    /// True when the video packets were remuxed (the encoder was never opened).
    public var videoCopied: Bool
    /// Undecodable packets skipped (within MediaLimits' decode error budget).
    public var decodeErrors: Int

    public init(input: String, output: String, preset: String, mediaSeconds: Double, elapsedSeconds: Double,
                videoFrames: Int, audioSamples: Int, width: Int32, height: Int32, fps: Double, speed: Double,
                outputBytes: Int64, quality: QualityReport? = nil, audioCopied: Bool = false, videoCopied: Bool = false,
                decodeErrors: Int = 0) {
        self.input = input; self.output = output; self.preset = preset
        self.mediaSeconds = mediaSeconds; self.elapsedSeconds = elapsedSeconds
        self.videoFrames = videoFrames; self.audioSamples = audioSamples; self.width = width; self.height = height
        self.fps = fps; self.speed = speed; self.outputBytes = outputBytes; self.quality = quality
        self.audioCopied = audioCopied; self.videoCopied = videoCopied; self.decodeErrors = decodeErrors
    }
}

public struct RenditionSummary: Sendable, Equatable {
    public var name: String
    public var width: Int32
    public var height: Int32
    public var frames: Int
    public var playlist: String
    public var segments: Int
    /// Peak segment bitrate, bits per second (HLS BANDWIDTH).
    public var bandwidth: Int
    public var averageBandwidth: Int
    /// RFC 6381 codec strings of the rendition, comma-separated (HLS CODECS).
    public var codecs: String
    public var bytes: Int64
    public var quality: QualityReport?

    public init(name: String, width: Int32, height: Int32, frames: Int, playlist: String, segments: Int,
                bandwidth: Int, averageBandwidth: Int, codecs: String, bytes: Int64, quality: QualityReport? = nil) {
        self.name = name; self.width = width; self.height = height; self.frames = frames; self.playlist = playlist
        self.segments = segments; self.bandwidth = bandwidth; self.averageBandwidth = averageBandwidth
        self.codecs = codecs; self.bytes = bytes; self.quality = quality
    }
}

public struct LadderSummary: Sendable, Equatable {
    public var master: String
    public var renditions: [RenditionSummary]
    public var mediaSeconds: Double
    public var elapsedSeconds: Double
    public var sourceFrames: Int
    public var fps: Double
    public var speed: Double
    /// Undecodable packets skipped (within MediaLimits' decode error budget).
    public var decodeErrors: Int

    public init(master: String, renditions: [RenditionSummary], mediaSeconds: Double, elapsedSeconds: Double,
                sourceFrames: Int, fps: Double, speed: Double, decodeErrors: Int = 0) {
        self.master = master; self.renditions = renditions; self.mediaSeconds = mediaSeconds
        self.elapsedSeconds = elapsedSeconds; self.sourceFrames = sourceFrames; self.fps = fps; self.speed = speed
        self.decodeErrors = decodeErrors
    }

    public var outputBytes: Int64 { renditions.reduce(0) { $0 + $1.bytes } }
}

extension QualityReport: JSONEncodable, JSONDecodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("frames", frames)
        w.field("psnr_y", psnrY); w.field("psnr_u", psnrU); w.field("psnr_v", psnrV)
        w.field("psnr_average", psnrAverage)
        w.field("ssim_y", ssimY); w.field("ssim_y_worst_frame", ssimYWorstFrame)
        w.endObject()
    }

    public init(json: JSONValue) throws(JSONError) {
        try json.rejectUnknownKeys(["frames", "psnr_y", "psnr_u", "psnr_v", "psnr_average", "ssim_y", "ssim_y_worst_frame"])
        self.init(frames: try json.field("frames"), psnrY: try json.field("psnr_y"), psnrU: try json.field("psnr_u"),
                  psnrV: try json.field("psnr_v"), psnrAverage: try json.field("psnr_average"),
                  ssimY: try json.field("ssim_y"), ssimYWorstFrame: try json.field("ssim_y_worst_frame"))
    }
}

extension TranscodeSummary: JSONEncodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("input", input); w.field("output", output); w.field("preset", preset)
        w.field("media_seconds", mediaSeconds); w.field("elapsed_seconds", elapsedSeconds)
        w.field("video_frames", videoFrames); w.field("audio_samples", audioSamples)
        w.field("width", width); w.field("height", height)
        w.field("fps", fps); w.field("speed", speed); w.field("output_bytes", outputBytes)
        w.field("quality", quality)
        w.field("audio_copied", audioCopied); w.field("video_copied", videoCopied)
        w.field("decode_errors", decodeErrors)
        w.endObject()
    }
}

extension RenditionSummary: JSONEncodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("name", name); w.field("width", width); w.field("height", height); w.field("frames", frames)
        w.field("playlist", playlist); w.field("segments", segments)
        w.field("bandwidth", bandwidth); w.field("average_bandwidth", averageBandwidth)
        w.field("codecs", codecs); w.field("bytes", bytes); w.field("quality", quality)
        w.endObject()
    }
}

extension LadderSummary: JSONEncodable {
    public func encode<S: JSONSink>(to w: inout JSONWriter<S>) {
        w.beginObject()
        w.field("master", master)
        w.field("renditions", renditions)
        w.field("media_seconds", mediaSeconds); w.field("elapsed_seconds", elapsedSeconds)
        w.field("source_frames", sourceFrames); w.field("fps", fps); w.field("speed", speed)
        w.field("decode_errors", decodeErrors); w.field("output_bytes", outputBytes)
        w.endObject()
    }
}
