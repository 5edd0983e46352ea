// EngineRuntime.TranscodeRunner: the one interface an engine runs transcodes through. The
// engine hands it a job's spec, the input file and an output directory, and gets back the
// files to upload, a quality report and the work done; how the transcode runs is the
// runner's business. `PluginRunner` runs a TranscoderPlugin in this process (libav's, or
// a fake in tests); a sandboxed child-process runner can replace it without touching the
// engine's logic.
import JSON
import Jobs
import SpoolModel
import TranscodeAPI

public struct RunnerJob: Sendable {
    public var jobID: String
    public var spec: JobSpec
    public var inputPath: String
    /// Must not exist yet: the runner creates it and fills it with the outputs.
    public var outputDirectory: String
    /// Codec threads (0: automatic).
    public var threads: Int32
    /// The input is a FIFO the engine streams into (read once, front to back), not a file.
    public var inputIsStream = false
    /// A FIFO the job's one output is written into as a stream (fragmented MP4), instead of
    /// a file in `outputDirectory` (which then stays empty). Single-output jobs only.
    public var outputStreamPath: String?
    public init(jobID: String, spec: JobSpec, inputPath: String, outputDirectory: String, threads: Int32 = 0, inputIsStream: Bool = false,
                outputStreamPath: String? = nil) {
        self.jobID = jobID; self.spec = spec; self.inputPath = inputPath; self.outputDirectory = outputDirectory; self.threads = threads
        self.inputIsStream = inputIsStream
        self.outputStreamPath = outputStreamPath
    }
}

public struct RunnerResult: Sendable {
    /// JSON object text, or nil when quality was not measured.
    public var qualityReportJSON: String?
    /// Pixels × frames encoded, summed over the outputs (the scheduler's measured cost).
    public var work: Double
    /// Sandboxed runs: seconds the job waited for its worker to be ready (0 for a spare
    /// started before the job came).
    public var workerStartSeconds: Double?
    /// Sandboxed runs: seconds from the worker's spawn to its first line (its own start,
    /// whenever that was).
    public var workerSpawnSeconds: Double?
    /// Sandboxed runs: CPU seconds the worker used (user + system, as it reported them).
    public var workerCPUSeconds: Double?
    public init(qualityReportJSON: String?, work: Double) { self.qualityReportJSON = qualityReportJSON; self.work = work }
}

public protocol TranscodeRunner: Sendable {
    /// The capabilities document the engine registers with (a JSON object).
    func capabilitiesJSON() -> String
    func run(_ job: RunnerJob, progress: @escaping @Sendable (TranscodeProgress) -> Void) async throws(TranscodeFailure) -> RunnerResult
    /// Cancels a running job (it then throws `.cancelled`); unknown ids are ignored.
    func cancel(jobID: String)
    /// Whether `spec` can run on a streamed input (`RunnerJob.inputIsStream`): the
    /// built-in transcoder reading it once; the reason when not.
    func streamRefusal(_ spec: JobSpec) -> String?
}

extension TranscodeRunner {
    public func streamRefusal(_ spec: JobSpec) -> String? { "this runner reads inputs from files only" }
}

/// Why the built-in transcoder cannot take `spec` on a stream, or nil when it can.
func builtinStreamRefusal(_ spec: JobSpec) -> String? {
    if spec.measureQuality { return "its quality report is measured against the input, which needs it again" }
    guard let plan = try? OutputPlan.make(spec), plan.count == 1 else {
        return "its outputs are made one after another, each reading the input again"
    }
    return nil
}

/// The file name of `spec`'s output when it is one file that can be written as a stream
/// (a single transcode into MP4, MPEG-TS or Matroska; a ladder writes many files), else nil.
public func streamedOutputName(_ spec: JobSpec) -> String? {
    guard let plan = try? OutputPlan.make(spec), plan.count == 1, case .single(let name, _) = plan[0],
          streamFormat(forOutput: name) != nil else { return nil }
    return name
}

/// libav's muxer for a streamed output, by its file name.
func streamFormat(forOutput name: String) -> String? {
    if name.hasSuffix(".mp4") || name.hasSuffix(".m4v") { return "mp4" }
    if name.hasSuffix(".ts") { return "mpegts" }
    if name.hasSuffix(".mkv") || name.hasSuffix(".webm") { return "matroska" }
    return nil
}

/// Runs a plugin in this process: each output of the spec in turn, into the directory.
public final class PluginRunner: TranscodeRunner {
    let plugin: any TranscoderPlugin
    public init(plugin: any TranscoderPlugin) { self.plugin = plugin }

    public func capabilitiesJSON() -> String { plugin.capabilities().jsonText }

    public func cancel(jobID: String) { plugin.cancel(jobID: jobID) }

    public func streamRefusal(_ spec: JobSpec) -> String? { builtinStreamRefusal(spec) }

    public func run(_ job: RunnerJob, progress: @escaping @Sendable (TranscodeProgress) -> Void) async throws(TranscodeFailure) -> RunnerResult {
        let plan: [OutputPlan]
        do { plan = try OutputPlan.make(job.spec) } catch { throw .invalidJob(error.message) }
        if !plan.contains(where: \.isLadder) { try makeDirectory(job.outputDirectory) }
        var quality: [(String, QualityReport?)] = []
        var work = 0.0
        for (i, output) in plan.enumerated() {
            // Several outputs share one progress bar: each takes its slice.
            let slice = { @Sendable (p: TranscodeProgress) in
                var q = p
                let f = (p.fraction ?? 0)
                q.mediaSeconds = (Double(i) + f) / Double(plan.count) * p.totalSeconds
                progress(q)
            }
            switch output {
            case .single(let name, let preset):
                var r = TranscodeRequest(input: job.inputPath, output: job.outputDirectory + "/" + name, preset: preset,
                                         threads: job.threads, progressInterval: 0.5)
                r.measureQuality = job.spec.measureQuality
                if job.inputIsStream { r.inputStream = FIFOSource(path: job.inputPath) }
                let sink = job.outputStreamPath.map { FIFOSink(path: $0) }
                r.outputStream = sink
                if sink != nil { r.outputFormat = streamFormat(forOutput: name) }
                let outcome: TranscodeJobResult
                do { outcome = try await plugin.transcode(TranscodeJob(id: job.jobID, kind: .single(r)), progress: slice) } catch {
                    sink?.close()
                    throw error
                }
                sink?.close()
                guard case .single(let s) = outcome else {
                    throw TranscodeFailure(code: "internal", message: "the plugin answered a single transcode with a ladder")
                }
                quality.append((name, s.quality))
                work += Double(s.videoFrames) * Double(s.width) * Double(s.height)
            case .ladder(let preset):
                var r = LadderRequest(input: job.inputPath, outputDirectory: job.outputDirectory, preset: preset,
                                      threads: job.threads, progressInterval: 0.5)
                r.measureQuality = job.spec.measureQuality
                if job.inputIsStream { r.inputStream = FIFOSource(path: job.inputPath) }
                guard case .ladder(let s) = try await plugin.transcode(TranscodeJob(id: job.jobID, kind: .ladder(r)), progress: slice) else {
                    throw TranscodeFailure(code: "internal", message: "the plugin answered a ladder with a single transcode")
                }
                for rendition in s.renditions {
                    quality.append((rendition.name, rendition.quality))
                    work += Double(rendition.frames) * Double(rendition.width) * Double(rendition.height)
                }
            }
        }
        var report: String?
        if job.spec.measureQuality {
            var w = JSONWriter()
            w.beginObject()
            w.key("outputs")
            w.beginArray()
            for (name, q) in quality {
                w.beginObject()
                w.field("name", name)
                w.field("quality", q)
                w.endObject()
            }
            w.endArray()
            w.endObject()
            report = w.text
        }
        return RunnerResult(qualityReportJSON: report, work: work)
    }
}

/// What to make of a spec: single files named after their preset, or one ladder directory.
enum OutputPlan: Sendable {
    case single(name: String, TranscodePreset)
    case ladder(LadderPreset)

    var isLadder: Bool { if case .ladder = self { return true } else { return false } }

    static func make(_ spec: JobSpec) throws(ModelError) -> [OutputPlan] {
        func file(_ preset: TranscodePreset, _ index: Int?) -> OutputPlan {
            let ext = ["vp9"].contains(preset.video.codec) ? "webm" : "mp4"
            let base = preset.name == "custom" ? "output" : preset.name
            return .single(name: (index.map { "\($0 + 1)-" } ?? "") + base + "." + ext, preset)
        }
        switch spec.outputs {
        case .preset(let name):
            if let ladder = LadderPreset.all.first(where: { $0.name == name }) { return [.ladder(ladder)] }
            return [file(try TranscodePreset.named(name), nil)]
        case .custom(let c): return [file(try c.preset(), nil)]
        case .ladder(.named(let name)): return [.ladder(try LadderPreset.named(name))]
        case .ladder(.custom(let l)): return [.ladder(try l.preset())]
        case .outputs(let list):
            return try list.enumerated().map { (i, o) throws(ModelError) -> OutputPlan in
                switch o {
                case .preset(let name): return file(try TranscodePreset.named(name), i)
                case .custom(let c): return file(try c.preset(), i)
                }
            }
        }
    }
}
