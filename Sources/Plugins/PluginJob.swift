// Plugins.PluginJob: one job driven through a plugin table, from start to DONE or FAILED,
// on the calling thread (the worker's): progress mapped to TranscodeProgress, the DONE
// message read as {"work", "quality_report"}, a FAILED message's "code: " prefix kept as
// the failure's code.
import CPlugin
import JSON
import TranscodeAPI
import EngineRuntime
import Threads

public enum PluginJob {
    /// `stopRequested` is read between polls: once true, the job is cancelled through the
    /// table and followed to its end.
    public static func run(_ plugin: PluginTable, request: String, stopRequested: () -> Bool = { false },
                           progress: (TranscodeProgress) -> Void) -> Result<RunnerResult, TranscodeFailure> {
        let t = plugin.table.pointee
        var error = [CChar](repeating: 0, count: 2048)
        let started = error.withUnsafeMutableBufferPointer { e in t.start!(request, e.baseAddress, e.count) }
        guard let job = started else {
            let reason = String(cString: error)
            return .failure(failure(reason.isEmpty ? "the plugin refused the job" : reason, plugin: plugin.name, defaultCode: "plugin_refused"))
        }
        defer { t.free_job!(job) }
        var message = [CChar](repeating: 0, count: 1 << 16)
        let begun = Double(SystemClock.nanoseconds()) / 1e9
        var cancelSent = false
        while true {
            if !cancelSent && stopRequested() {
                cancelSent = true
                t.cancel!(job)
            }
            var p = spool_plugin_progress(fraction: -1, fps: -1, eta_seconds: -1, speed: -1, frames: 0)
            let status = message.withUnsafeMutableBufferPointer { m in t.poll!(job, 500, &p, m.baseAddress, m.count) }
            switch Int(status) {
            case Int(SPOOL_PLUGIN_RUNNING):
                if p.fraction >= 0 || p.frames > 0 {
                    let elapsed = Double(SystemClock.nanoseconds()) / 1e9 - begun
                    progress(TranscodeProgress(videoFrames: Int(p.frames), mediaSeconds: max(0, min(1, p.fraction)),
                                               totalSeconds: p.fraction >= 0 ? 1 : 0, elapsedSeconds: elapsed,
                                               fps: p.fps >= 0 ? p.fps : 0, speed: p.speed >= 0 ? p.speed : 0,
                                               etaSeconds: p.eta_seconds >= 0 ? p.eta_seconds : nil))
                }
            case Int(SPOOL_PLUGIN_DONE):
                let text = String(cString: message)
                var result = RunnerResult(qualityReportJSON: nil, work: 0)
                if !text.isEmpty {
                    guard let doc = try? JSONDocument(parsing: Array(text.utf8)), doc.root.kind == .object else {
                        return .failure(TranscodeFailure(code: "plugin_protocol", message: "plugin \(plugin.name) ended with a result that is not a JSON object"))
                    }
                    if let w = try? doc.root["work"]?.double(), w.isFinite, w >= 0 { result.work = w }
                    if let q = doc.root["quality_report"], q.kind == .object { result.qualityReportJSON = q.rawText }
                }
                return .success(result)
            case Int(SPOOL_PLUGIN_FAILED):
                return .failure(failure(String(cString: message), plugin: plugin.name, defaultCode: "plugin_failed"))
            default:
                return .failure(TranscodeFailure(code: "plugin_protocol", message: "plugin \(plugin.name) answered poll with status \(status)"))
            }
        }
    }

    /// "code: message" keeps its code (lowercase letters, digits and _); anything else is the message.
    static func failure(_ text: String, plugin: String, defaultCode: String) -> TranscodeFailure {
        if let colon = text.firstIndex(of: ":") {
            let code = text[..<colon]
            if !code.isEmpty, code.count <= 40, code.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }) {
                return TranscodeFailure(code: String(code), message: String(text[text.index(after: colon)...]).drop(while: { $0 == " " }).description)
            }
        }
        return TranscodeFailure(code: defaultCode, message: "plugin \(plugin): \(text.isEmpty ? "failed" : text)")
    }
}
