// Plugins.BuiltinPlugin: the statically linked transcoder (libav's, given by the `spool`
// binary) behind the same C table as a loaded plugin, so the worker drives every job one
// way. `install` takes the plugin once per process; the table's functions are C function
// pointers over that one global, and each job is a retained object whose state a
// ConditionLock guards (poll waits on it).
import CPlugin
import EngineRuntime
import Glibc
import JSON
import Jobs
import SpoolModel
import Threads
import TranscodeAPI

public enum BuiltinPlugin {
    nonisolated(unsafe) static var plugin: (any TranscoderPlugin)?
    nonisolated(unsafe) static var capabilitiesText: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) static var nameText: UnsafeMutablePointer<CChar>?
    /// Heap storage, never freed: a pointer to a static var's value may be to a temporary.
    nonisolated(unsafe) static var table: UnsafeMutablePointer<spool_plugin>?

    /// The table for `plugin`; call once, before any job (the worker's start).
    public static func install(_ plugin: any TranscoderPlugin) -> PluginTable {
        self.plugin = plugin
        var caps = JSONWriter()
        caps.beginObject()
        caps.key("capabilities"); caps.beginArray(); caps.string(plugin.name); caps.endArray()
        caps.endObject()
        capabilitiesText = strdup(caps.text)
        nameText = strdup(plugin.name)
        let storage = UnsafeMutablePointer<spool_plugin>.allocate(capacity: 1)
        storage.initialize(to: spool_plugin(abi_version: UInt32(SPOOL_PLUGIN_ABI_VERSION), name: UnsafePointer(nameText),
                             capabilities_json: { UnsafePointer(BuiltinPlugin.capabilitiesText) },
                             start: { request, error, size in BuiltinPlugin.start(request, error, size) },
                             poll: { job, ms, progress, message, size in BuiltinPlugin.poll(job, ms, progress, message, size) },
                             cancel: { job in BuiltinPlugin.job(job).cancel() },
                             free_job: { job in if let job { Unmanaged<BuiltinJob>.fromOpaque(UnsafeRawPointer(job)).release() } }))
        table = storage
        return PluginTable(table: UnsafePointer(storage), name: plugin.name, path: "(built in)", capabilitiesJSON: caps.text,
                           capabilities: [plugin.name])
    }

    static func job(_ p: OpaquePointer?) -> BuiltinJob { Unmanaged<BuiltinJob>.fromOpaque(UnsafeRawPointer(p!)).takeUnretainedValue() }

    static func copy(_ text: String, into buffer: UnsafeMutablePointer<CChar>?, _ size: Int) {
        guard let buffer, size > 0 else { return }
        let bytes = Array(text.utf8.prefix(size - 1))
        for (i, b) in bytes.enumerated() { buffer[i] = CChar(bitPattern: b) }
        buffer[bytes.count] = 0
    }

    static func start(_ request: UnsafePointer<CChar>?, _ error: UnsafeMutablePointer<CChar>?, _ size: Int) -> OpaquePointer? {
        guard let plugin, let request else { copy("the built-in transcoder is not installed", into: error, size); return nil }
        let job: RunnerJob
        do { job = try WorkerRequest.parse(Array(String(cString: request).utf8)).job } catch let e {
            copy("worker_request: \(e.message)", into: error, size)
            return nil
        }
        let state = BuiltinJob(jobID: job.jobID, plugin: plugin)
        let started = OSThread.spawn {
            // Its own thread, so a worker blocked in poll never starves the transcode.
            let done = ConditionLock<Result<RunnerResult, TranscodeFailure>?>(nil)
            Task {
                let r: Result<RunnerResult, TranscodeFailure>
                do throws(TranscodeFailure) {
                    r = .success(try await PluginRunner(plugin: plugin).run(job) { p in state.report(p) })
                } catch { r = .failure(error) }
                done.change { $0 = r }
            }
            let result = done.wait(until: { $0 != nil }) { s, _ in s! }
            state.finish(result)
        }
        guard started else { copy("cannot start a thread", into: error, size); return nil }
        return OpaquePointer(Unmanaged.passRetained(state).toOpaque())
    }

    static func poll(_ p: OpaquePointer?, _ ms: Int32, _ progress: UnsafeMutablePointer<spool_plugin_progress>?,
                     _ message: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int32 {
        let job = job(p)
        let (latest, outcome) = job.wait(milliseconds: Int64(ms))
        if let latest, let progress {
            progress.pointee = spool_plugin_progress(fraction: latest.fraction ?? -1, fps: latest.fps, eta_seconds: latest.etaSeconds ?? -1,
                                                     speed: latest.speed, frames: Int64(latest.videoFrames))
        }
        switch outcome {
        case nil: return Int32(SPOOL_PLUGIN_RUNNING)
        case .success(let r)?:
            var w = JSONWriter()
            w.beginObject()
            w.field("work", r.work)
            w.key("quality_report"); if let q = r.qualityReportJSON { w.rawJSON(q) } else { w.null() }
            w.endObject()
            copy(w.text, into: message, size)
            return Int32(SPOOL_PLUGIN_DONE)
        case .failure(let f)?:
            copy("\(f.code): \(f.message)", into: message, size)
            return Int32(SPOOL_PLUGIN_FAILED)
        }
    }
}

final class BuiltinJob: Sendable {
    struct State: Sendable {
        var progress: TranscodeProgress?
        var reported = 0
        var seen = 0
        var outcome: Result<RunnerResult, TranscodeFailure>?
    }
    let jobID: String
    let plugin: any TranscoderPlugin
    let state = ConditionLock(State())

    init(jobID: String, plugin: any TranscoderPlugin) { self.jobID = jobID; self.plugin = plugin }

    func report(_ p: TranscodeProgress) { state.change { $0.progress = p; $0.reported += 1 } }
    func finish(_ r: Result<RunnerResult, TranscodeFailure>) { state.change { $0.outcome = r } }
    func cancel() { plugin.cancel(jobID: jobID) }

    /// Waits until new progress or the outcome (or the time is up).
    func wait(milliseconds: Int64) -> (TranscodeProgress?, Result<RunnerResult, TranscodeFailure>?) {
        state.wait(until: { $0.outcome != nil || $0.reported != $0.seen }, timeoutNanos: milliseconds * 1_000_000) { s, _ in
            s.seen = s.reported
            return (s.progress, s.outcome)
        }
    }
}
