// Media.Pipeline plan: what a pipeline is asked to do (targets, renditions, audio, limits)
// and what it reports back, and the per-output state it keeps while running (a target's
// muxer and streams, a rendition's encoder and scaler, a video stream copy).
internal import CLibAV
import Synchronization
import SpoolModel
import TranscodeAPI

/// One container the pipeline writes.
enum TargetPlan {
    /// `path` is what libav opens (a staged temporary); `label` names it in messages.
    case file(path: String, label: String)
    case stream(sink: any ByteSink, format: String, name: String)
    /// HLS with fMP4 segments: the media playlist path, segment file pattern, init name.
    case hls(playlist: String, segmentPattern: String, initName: String, segmentSeconds: Double)
}

struct RenditionPlan {
    var name: String
    var video: VideoSettings
    /// Index into PipelinePlan.targets.
    var target: Int
}

struct PipelinePlan {
    /// The input's name in messages, and the file to open (unless `inputStream`).
    var input: String
    var inputPath: MediaPath
    var inputStream: (any ByteSource)?
    var targets: [TargetPlan]
    var renditions: [RenditionPlan]
    var audio: AudioSettings?
    var limits: MediaLimits
    var threads: Int32
    var progressInterval: Double
    /// Drop renditions whose box is larger than the source in both directions (keeping at
    /// least the smallest), as ladders do.
    var skipUpscaled: Bool
    /// Decode each rendition again while encoding and compare with the scaled source.
    var measureQuality = false
}

struct PipelineResult {
    struct Rendition {
        var name: String; var width: Int32; var height: Int32; var frames: Int; var target: Int; var codecs: String
        var quality: QualityReport?
        var frameRate: Double
    }
    var renditions: [Rendition]
    var sourceFrames: Int
    var mediaSeconds: Double
    var elapsedSeconds: Double
    var audioSamples: Int64
    var fps: Double
    var speed: Double
    var bytesWritten: Int64
    /// The audio track's codec string (every target carries the same one), if there is audio.
    var audioCodecs: String?
    var audioCopied: Bool
    var videoCopied: Bool
    /// Packets (or frames) the decoders could not decode and skipped.
    var decodeErrors: Int
}

final class Target {
    let muxer: Muxer
    var videoStream: Int?
    var audioStream: Int?
    /// Held for each packet written: the renditions' encoder threads (EncodeWorker) and the
    /// pipeline thread (audio, stream copy) write into the same muxer.
    private let writing = Mutex(())
    init(muxer: Muxer) { self.muxer = muxer }

    /// Writes a packet of stream `stream`; safe from any thread of the pipeline.
    func write(_ packet: Packet, stream: Int) throws(MediaError) {
        try writing.withLock { _ throws(MediaError) in try muxer.write(packet, stream: stream) }
    }
}

final class Rendition {
    let name: String
    let encoder: Encoder
    let target: Target
    let targetIndex: Int
    let width: Int32, height: Int32
    /// The encoder's time base (1/output frame rate) and the last timestamp sent.
    let timeBase: AVRational
    var lastPts: Int64 = -1
    var scaler: VideoScaler?
    var frames = 0
    var quality: QualityMeter?
    var qualityReport: QualityReport?
    /// Encodes the scaled pictures on a thread of its own while the pipeline runs.
    var worker: EncodeWorker?
    /// Output frames per second (the inverse of the encoder's time base).
    var frameRate: Double { timeBase.num > 0 ? Double(timeBase.den) / Double(timeBase.num) : 0 }

    init(name: String, encoder: Encoder, target: Target, targetIndex: Int, width: Int32, height: Int32) {
        self.name = name; self.encoder = encoder; self.target = target; self.targetIndex = targetIndex
        self.width = width; self.height = height
        timeBase = encoder.timeBase
    }
}

/// Video stream copy: the input's packets remuxed into one target, never decoded.
final class VideoCopy {
    let name: String
    let target: Target
    let targetIndex: Int
    let width: Int32, height: Int32
    let frameRate: Double
    let codecs: String
    var frames = 0
    init(name: String, target: Target, targetIndex: Int, width: Int32, height: Int32, frameRate: Double, codecs: String) {
        self.name = name; self.target = target; self.targetIndex = targetIndex
        self.width = width; self.height = height; self.frameRate = frameRate; self.codecs = codecs
    }
}
