// EngineRuntime.TranscodeWorker: the child side of SandboxRunner (`spool worker`). It reads
// one request from stdin ({"job_id", "spec", "input", "output_directory", "threads"}), runs
// it with the plugin in this process (PluginRunner), and writes JSON lines to stdout:
// {"progress":{...}} as it goes, then {"result":{"work","quality_report"}} or
// {"failure":{"code","message"}}. It opens no socket and knows no path but the two it is
// given; the sandbox sees to it that it could not anyway. Its first line, {"ready":{}},
// marks the end of its start (the runner measures the latency).
import Glibc
import JSON
import Jobs
import SpoolModel
import Synchronization
import TranscodeAPI

public enum TranscodeWorker {
    /// Runs the request on stdin; returns the process exit status (0 once an outcome line
    /// was written, 2 for an unreadable request).
    public static func run(plugin: any TranscoderPlugin) async -> Int32 {
        emit("{\"ready\":{}}")
        guard let input = readAll(fd: 0, limit: 1 << 20) else {
            writeLine(failure: TranscodeFailure(code: "worker_request", message: "the request on stdin is missing or over 1 MiB"))
            return 2
        }
        let job: RunnerJob
        do {
            let doc = try JSONDocument(parsing: input)
            let root = doc.root
            guard let id = try root["job_id"]?.string(), let specValue = root["spec"],
                  let inputPath = try root["input"]?.string(), let out = try root["output_directory"]?.string() else {
                throw ModelError(.validationFailed, "job_id, spec, input and output_directory are required")
            }
            let threads = (try? root["threads"]?.int64()) ?? 0
            job = RunnerJob(jobID: id, spec: try JobSpec.decode(specValue), inputPath: inputPath, outputDirectory: out,
                            threads: Int32(clamping: threads))
        } catch {
            writeLine(failure: TranscodeFailure(code: "worker_request", message: "unreadable request: \(error)"))
            return 2
        }
        do {
            let result = try await PluginRunner(plugin: plugin).run(job) { p in
                var w = JSONWriter()
                w.beginObject(); w.key("progress"); p.encode(to: &w); w.endObject()
                emit(w.text)
            }
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
        } catch {
            writeLine(failure: error)
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

    static func readAll(fd: Int32, limit: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            out += buffer[..<n]
            if out.count > limit { return nil }
        }
        return out.isEmpty ? nil : out
    }
}
