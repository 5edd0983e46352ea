// Jobs.Job: the job record as the service keeps it, what it asks for (one preset, a list of
// outputs, a ladder or a custom spec; SpoolModel's settings types validate them), its
// result, and the service's settings (mapped from the server's configuration by Dispatcher).
import SpoolModel

/// What a job produces. The JSON form is the request's: `"preset": NAME`, `"outputs": [...]`,
/// `"ladder": NAME | {...}` or `"custom": {...}`.
public enum JobOutputs: Sendable, Equatable {
    /// A named preset: a single-output TranscodePreset, or a LadderPreset by its name.
    case preset(String)
    /// Several outputs from one input (1...8).
    case outputs([JobOutput])
    case ladder(LadderSpec)
    case custom(CustomOutput)
}

public enum JobOutput: Sendable, Equatable {
    case preset(String)
    case custom(CustomOutput)
}

public enum LadderSpec: Sendable, Equatable {
    case named(String)
    case custom(CustomLadder)
}

/// The custom single-output form (the fields of `TranscodePreset.custom`).
public struct CustomOutput: Sendable, Equatable {
    public var codec = "h264"
    public var width: Int32?
    public var height: Int32?
    public var crf: Int?
    public var bitrateKbps: Int?
    public var gopSeconds: Double = 2
    public var speed = "veryfast"
    public var profile: String?
    public var audioCodec = "aac"
    public var audioBitrateKbps = 128
    public var maxFrameRate: Int?
    public init() {}

    /// The validated settings (422 naming the setting when one is out of range).
    public func preset() throws(ModelError) -> TranscodePreset {
        try TranscodePreset.custom(codec: codec, width: width, height: height, crf: crf, bitrateKbps: bitrateKbps,
                                   gopSeconds: gopSeconds, speed: speed, profile: profile, audioCodec: audioCodec,
                                   audioBitrateKbps: audioBitrateKbps, maxFrameRate: maxFrameRate)
    }
}

/// A custom ladder: rungs of H.264 (or another codec) capped in bitrate, shared audio.
public struct CustomLadder: Sendable, Equatable {
    public struct Rung: Sendable, Equatable {
        public var name: String
        public var width: Int32
        public var height: Int32
        public var maxBitrateKbps: Int
        public var codec = "h264"
        public var profile: String?
        public init(name: String, width: Int32, height: Int32, maxBitrateKbps: Int) {
            self.name = name; self.width = width; self.height = height; self.maxBitrateKbps = maxBitrateKbps
        }
    }
    public var rungs: [Rung] = []
    public var segmentSeconds: Double = 4
    public var audioCodec = "aac"
    public var audioBitrateKbps = 128
    public init() {}

    public func preset() throws(ModelError) -> LadderPreset {
        let rungs = self.rungs.map { r -> LadderRung in
            var rung = LadderPreset.rung(r.name, width: r.width, height: r.height, maxKbps: r.maxBitrateKbps)
            rung.video.codec = r.codec
            rung.video.profile = r.profile ?? (r.codec == "h264" ? "high" : nil)
            return rung
        }
        var audio = AudioSettings()
        audio.codec = audioCodec
        audio.bitrateKbps = audioBitrateKbps
        let p = LadderPreset(name: "custom", summary: "custom ladder", rungs: rungs, audio: audio, segmentSeconds: segmentSeconds)
        try p.validate()
        return p
    }
}

/// One stored output of a finished job.
public struct JobResultOutput: Sendable, Equatable {
    public var fileID: FileID
    /// Where the output belongs under the job's output directory ("master.m3u8",
    /// "720p/seg_00001.m4s", "h264-720p.mp4"); nil in results written before names existed.
    public var name: String?
    public var url: String?
    public init(fileID: FileID, name: String? = nil, url: String? = nil) { self.fileID = fileID; self.name = name; self.url = url }
}

public struct JobResult: Sendable, Equatable {
    public var outputs: [JobResultOutput]
    /// The quality report as JSON text (written into responses as is).
    public var qualityReport: String?
    public init(outputs: [JobResultOutput], qualityReport: String? = nil) {
        self.outputs = outputs; self.qualityReport = qualityReport
    }
}

/// Per-job limits on the transcode's sandboxed child: each applies within the engine's own
/// cap (the lower one wins); nil: the engine's.
public struct TranscodeLimits: Sendable, Equatable {
    /// Wall-clock seconds before the transcode is killed.
    public var maxSeconds: Int?
    /// CPU seconds (RLIMIT_CPU).
    public var maxCPUSeconds: Int?
    /// Address space, MiB (RLIMIT_AS).
    public var maxMemoryMiB: Int?
    public init(maxSeconds: Int? = nil, maxCPUSeconds: Int? = nil, maxMemoryMiB: Int? = nil) {
        self.maxSeconds = maxSeconds; self.maxCPUSeconds = maxCPUSeconds; self.maxMemoryMiB = maxMemoryMiB
    }
    public var isEmpty: Bool { maxSeconds == nil && maxCPUSeconds == nil && maxMemoryMiB == nil }
    public static let secondsRange = 1...604_800
    public static let memoryMiBRange = 256...1_048_576
}

/// What a client submits (decoded and validated by `JobSpec.decode`).
public struct JobSpec: Sendable, Equatable {
    public var inputFileID: FileID
    public var outputs: JobOutputs
    public var priority: Int = JobSpec.defaultPriority
    public var requiredCapabilities: [String] = []
    public var webhookURL: String?
    /// nil: the settings' default.
    public var ttlSeconds: Int64?
    public var metadata: [String: String] = [:]
    /// nil: the settings' default.
    public var maxAttempts: Int?
    /// Also measure PSNR and SSIM of every output against the scaled source.
    public var measureQuality = false
    public var limits = TranscodeLimits()

    public static let defaultPriority = 5
    public static let priorities = 0...9
    public static let ttlRange: ClosedRange<Int64> = 1...2_592_000
    public static let maxAttemptsRange = 1...20

    public init(inputFileID: FileID, outputs: JobOutputs) {
        self.inputFileID = inputFileID; self.outputs = outputs
    }
}

public struct Job: Sendable, Equatable {
    public var id: JobID
    public var tenant: String
    /// 0...9, higher first.
    public var priority: Int
    public var inputFileID: FileID
    public var outputs: JobOutputs
    public var requiredCapabilities: [String]
    public var webhookURL: String?
    public var ttlSeconds: Int64
    public var metadata: [String: String]
    /// The engine measures PSNR/SSIM of the outputs (the result's quality report).
    public var measureQuality: Bool = false
    /// Limits on the transcode (within the engine's caps).
    public var limits = TranscodeLimits()
    /// Milliseconds since the Unix epoch.
    public var createdAt: Int64
    /// Strictly increases with every change (so it can serve as a validator).
    public var updatedAt: Int64
    /// A pending job not leased by then fails with reason `expired` (created + TTL, or
    /// the last time a retry made it pending + TTL).
    public var expiresAt: Int64
    /// Failed attempts so far.
    public var attempts: Int
    public var maxAttempts: Int
    public var state: JobState
    public var reason: String?
    /// 0...100.
    public var progress: Double
    /// Increases each time the job is leased to an engine; reports with an older one are refused.
    public var leaseEpoch: Int64
    public var engineID: EngineID?
    /// When a retrying job becomes pending again.
    public var nextAttemptAt: Int64?
    public var result: JobResult?
}

/// The service's settings (a reload is seen at the next call).
public struct JobSettings: Sendable, Equatable {
    public var defaultTTLSeconds: Int64 = 86_400
    public var maxAttempts = 3
    public var retryBackoffSeconds: Int64 = 5
    public var retryBackoffMaxSeconds: Int64 = 300
    public var idempotencyRetentionSeconds: Int64 = 86_400
    public var expiryIntervalMilliseconds: Int64 = 1_000
    /// Each retry's wait is the backoff ± this share of it, at random, so jobs that failed
    /// together (an engine lost) do not all come back at the same moment. 0...1.
    public var retryJitter = 0.2
    public init() {}

    /// The wait before attempt `attempts + 1`, after `attempts` failures (1, 2, ...):
    /// the base doubling each time, at most the max (before jitter; see `retryWait`).
    public func backoffMilliseconds(afterFailures attempts: Int) -> Int64 {
        let base = max(0, retryBackoffSeconds), cap = max(base, retryBackoffMaxSeconds)
        let shift = min(max(attempts - 1, 0), 40)
        let (v, overflow) = base.multipliedReportingOverflow(by: Int64(1) << shift)
        return (overflow ? cap : min(v, cap)) * 1000
    }

    /// The backoff with its jitter: a uniform draw in backoff × (1 ± retryJitter).
    public func retryWait<R: RandomNumberGenerator>(afterFailures attempts: Int, using rng: inout R) -> Int64 {
        let base = backoffMilliseconds(afterFailures: attempts)
        let j = min(1, max(0, retryJitter.isFinite ? retryJitter : 0))
        guard j > 0, base > 0 else { return base }
        return max(0, Int64((Double(base) * Double.random(in: (1 - j)...(1 + j), using: &rng)).rounded()))
    }
}
