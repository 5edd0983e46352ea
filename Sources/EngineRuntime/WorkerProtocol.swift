// EngineRuntime.WorkerProtocol: the engine's side of the worker's wire format: its JSON
// lines (ready, progress, result, failure), a bounded line splitter, the pipes between
// them, and how a bad line is quoted in a failure.
import Glibc
import JSON
import Sandbox
import TranscodeAPI

func describe(_ line: ArraySlice<UInt8>) -> String {
    let text = String(decoding: line.prefix(80), as: UTF8.self)
    var out = ""
    for s in text.unicodeScalars { out += s.value >= 0x20 && s.value < 0x7f ? String(s) : "?" }
    return "\"\(out)\(line.count > 80 ? "..." : "")\""
}

/// One line from the worker.
enum WorkerLine {
    /// The worker is up (its first line): the end of the child's start latency.
    case ready
    case progress(TranscodeProgress)
    case result(RunnerResult)
    case failure(TranscodeFailure)

    static func parse(_ line: ArraySlice<UInt8>) -> WorkerLine? {
        guard let doc = try? JSONDocument(parsing: Array(line)), doc.root.kind == .object else { return nil }
        if doc.root["ready"] != nil { return .ready }
        if let p = doc.root["progress"] { return (try? TranscodeProgress(json: p)).map { .progress($0) } }
        if let f = doc.root["failure"] { return (try? TranscodeFailure(json: f)).map { .failure($0) } }
        if let r = doc.root["result"] {
            guard let work = try? r["work"]?.double(), work.isFinite, work >= 0 else { return nil }
            var quality: String?
            if let q = r["quality_report"], !q.isNull {
                guard q.kind == .object else { return nil }
                quality = q.rawText
            }
            var result = RunnerResult(qualityReportJSON: quality, work: work)
            if let cpu = try? r["cpu_seconds"]?.double(), cpu.isFinite, cpu >= 0 { result.workerCPUSeconds = cpu }
            return .result(result)
        }
        return nil
    }
}

/// Splits a byte stream into lines of at most `limit` bytes.
struct LineReader {
    let limit: Int
    var pending: [UInt8] = []
    init(limit: Int) { self.limit = limit }

    /// false when a line passed the limit.
    mutating func feed(_ bytes: ArraySlice<UInt8>, _ each: (ArraySlice<UInt8>) -> Void) -> Bool {
        pending += bytes
        var start = 0
        while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            if nl > start { each(pending[start..<nl]) }
            start = nl + 1
        }
        pending.removeFirst(start)
        return pending.count <= limit
    }
}

struct Pipe {
    var read: Int32
    var write: Int32
    init?() {
        guard let p = makePipe() else { return nil }
        read = p.read; write = p.write
    }
    init(read fd: Int32) { read = fd; write = -1 }
    mutating func closeRead() { if read >= 0 { close(read); read = -1 } }
    mutating func closeWrite() { if write >= 0 { close(write); write = -1 } }
    mutating func closeBoth() { closeRead(); closeWrite() }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
    var replacingNewlines: String { String(map { $0.isNewline ? " " : $0 }) }
}
