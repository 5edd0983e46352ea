// Plugins.TranscodeWorker: the child side of SandboxRunner (`spool worker`). It reads one
// request line from stdin ({"job_id", "spec", "input", "output_directory", "threads", and
// "plugin":{"name","path"} for a plugin job}), runs it through a plugin table (the loaded
// plugin's, else the built-in transcoder's: one protocol for both), and writes JSON lines
// to stdout: {"ready":{}} first (the end of its start; the runner measures the latency),
// {"progress":{...}} as it goes, then {"result":{"work","cpu_seconds","quality_report"}} or
// {"failure":{"code","message"}}. It opens no socket and knows no path but those it is
// given; the sandbox sees to it that it could not anyway. Whatever follows the request on
// stdin is control: "cancel" (or the end of stdin) cancels the job through its table.
import EngineRuntime
import Glibc
import JSON
import Jobs
import SpoolModel
import Synchronization
import Threads
import TranscodeAPI

/// The worker's request.
public struct WorkerRequest: Sendable {
    public var job: RunnerJob
    /// A plugin job: the plugin's name and its path as the worker sees it.
    public var plugin: (name: String, path: String)?

    public static func parse(_ bytes: [UInt8]) throws(ModelError) -> WorkerRequest {
        let doc: JSONDocument
        do { doc = try JSONDocument(parsing: bytes) } catch { throw ModelError(.invalidJSON, "the request is not JSON: \(error.description)") }
        let root = doc.root
        guard let id = try? root["job_id"]?.string(), let specValue = root["spec"],
              let inputPath = try? root["input"]?.string(), let out = try? root["output_directory"]?.string() else {
            throw ModelError(.validationFailed, "job_id, spec, input and output_directory are required")
        }
        let threads = (try? root["threads"]?.int64()) ?? 0
        let stream = (try? root["input_stream"]?.bool()) ?? false
        let outputStream = try? root["output_stream"]?.string()
        var request = WorkerRequest(job: RunnerJob(jobID: id, spec: try JobSpec.decode(specValue), inputPath: inputPath,
                                                   outputDirectory: out, threads: Int32(clamping: threads), inputIsStream: stream,
                                                   outputStreamPath: outputStream))
        if let p = root["plugin"], !p.isNull {
            guard let name = try? p["name"]?.string(), let path = try? p["path"]?.string() else {
                throw ModelError(.validationFailed, "plugin needs a name and a path")
            }
            request.plugin = (name, path)
        }
        return request
    }
}

public enum TranscodeWorker {
    /// Set by `requestStop` (the worker's SIGTERM: the engine cancelling the job). The job
    /// is cancelled through its table, so a plugin stops its programs its own way.
    static let stopRequested = Atomic<Bool>(false)
    public static func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    /// Runs the request on stdin with `builtin` (from BuiltinPlugin.install) or the plugin
    /// the request names; returns the exit status (0 once an outcome line was written, 2
    /// for an unreadable request).
    public static func run(builtin: PluginTable) -> Int32 {
        emit("{\"ready\":{}}")
        guard let input = readLine(fd: 0, limit: 1 << 20) else {
            writeLine(failure: TranscodeFailure(code: "worker_request", message: "the request line on stdin is missing or over 1 MiB"))
            return 2
        }
        // The rest of stdin is the engine's control channel: "cancel", or its end (the
        // engine is gone), stops the job.
        _ = OSThread.spawn {
            var byte: UInt8 = 0
            while read(0, &byte, 1) == 1 {}
            requestStop()
        }
        let request: WorkerRequest
        do { request = try WorkerRequest.parse(input) } catch {
            writeLine(failure: TranscodeFailure(code: "worker_request", message: "unreadable request: \(error.message)"))
            return 2
        }
        var table = builtin
        if let p = request.plugin {
            do { table = try PluginLibrary.load(p.path, describe: false) } catch {
                writeLine(failure: TranscodeFailure(code: "plugin_load", message: error.description))
                return 0
            }
            guard table.name == p.name else {
                writeLine(failure: TranscodeFailure(code: "plugin_load", message: "\(p.path) is plugin \(table.name), not \(p.name)"))
                return 0
            }
        }
        let outcome = PluginJob.run(table, request: String(decoding: input, as: UTF8.self),
                                    stopRequested: { stopRequested.load(ordering: .relaxed) }) { p in
            var w = JSONWriter()
            w.beginObject(); w.key("progress"); p.encode(to: &w); w.endObject()
            emit(w.text)
        }
        switch outcome {
        case .success(let result):
            var w = JSONWriter()
            w.beginObject()
            w.key("result")
            w.beginObject()
            w.field("work", result.work)
            // Its own CPU time: a parent cannot always count it (bubblewrap's PID-namespace
            // init does not wait for the payload, so the engine's children totals miss it).
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            w.field("cpu_seconds", Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6)
            w.key("quality_report"); if let q = result.qualityReportJSON { w.rawJSON(q) } else { w.null() }
            w.endObject()
            w.endObject()
            emit(w.text)
        case .failure(let f):
            writeLine(failure: f)
        }
        return 0
    }

    static func writeLine(failure: TranscodeFailure) {
        var w = JSONWriter()
        w.beginObject(); w.key("failure"); failure.encode(to: &w); w.endObject()
        emit(w.text)
    }

    static let outputLock = Mutex<Void>(())

    /// One whole line per write (progress comes from the transcode thread).
    static func emit(_ text: String) {
        outputLock.withLock { _ in
            let bytes = Array((text + "\n").utf8)
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + off, $0.count - off) }
                if n < 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    /// The first line of `fd`, read a byte at a time so nothing after it is taken.
    static func readLine(fd: Int32, limit: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            if byte == UInt8(ascii: "\n") { break }
            out.append(byte)
            if out.count > limit { return nil }
        }
        return out.isEmpty ? nil : out
    }
}
