// EngineRuntime.SandboxRunner: every transcode in a confined child process (M20). The
// child is the `spool` binary in worker mode (TranscodeWorker), libav in-process there,
// started through Sandbox.ConfinedProcess: bubblewrap namespaces (no network, its own PID
// space and /proc, only the job's input read-only and a fresh staging directory
// read-write) or, where that is unavailable, a direct child under Landlock; rlimits and the
// seccomp filter in both.
//
// The request goes in on the child's stdin; progress and the outcome come back on its
// stdout as JSON lines ({"ready":{}} first, {"progress":{...}} as it goes, then
// {"result":{...}} or {"failure":{...}});
// its stderr is kept (the last 4 KiB) for the failure reason. Whatever the child does
// (crashes, runs out of memory, hangs past the deadline, writes garbage on the pipe), the
// engine reads an ExitStatus and fails the job with a readable reason; the staging
// directory, and with it every partial output, is removed. Only a clean result's outputs
// are moved to the job's output directory.
//
// Each job has one OS thread for its whole life: it spawns the child (PR_SET_PDEATHSIG is
// tied to the spawning thread), feeds the request, reads the pipes, enforces the deadline
// and cancellation (SIGTERM to the group, SIGKILL after the grace period) and reaps it.
import Glibc
import JSON
import Jobs
import Sandbox
import SpoolModel
import Synchronization
import Threads
import TranscodeAPI

public struct SandboxConfiguration: Sendable {
    /// The worker binary and its arguments (`spool worker`).
    public var executable: String
    public var arguments: [String] = ["worker"]
    public var limits = SandboxLimits()
    public var confinement: ConfinementReport
    /// CPUs the children are pinned to (CPU_Set tags), none: inherited.
    public var cpus: [Int32] = []
    /// Environment of the child (CUDA_VISIBLE_DEVICES from a GPU tag goes here).
    public var environment: [String] = ["PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"]
    /// After SIGTERM (a cancel), SIGKILL this much later.
    public var killGraceSeconds = 5.0
    public init(executable: String, confinement: ConfinementReport) {
        self.executable = executable; self.confinement = confinement
    }

    /// This very binary (/proc/self/exe) as the worker.
    public static func thisExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/proc/self/exe"
    }
}

public final class SandboxRunner: TranscodeRunner {
    let configuration: SandboxConfiguration
    let pluginCapabilities: String
    /// Jobs asked to stop.
    private let cancelled = Mutex<Set<String>>([])

    /// `capabilitiesJSON`: what the worker's plugin can do (probed in this process: the
    /// same binary and libraries run in the child).
    public init(configuration: SandboxConfiguration, capabilitiesJSON: String) {
        self.configuration = configuration
        self.pluginCapabilities = capabilitiesJSON
    }

    public func capabilitiesJSON() -> String {
        var w = JSONWriter()
        w.beginObject()
        w.field("mode", configuration.confinement.kind.rawValue)
        w.field("namespaces", configuration.confinement.kind == .bubblewrap)
        w.field("seccomp", true)
        w.field("landlock", configuration.confinement.kind == .direct && configuration.confinement.landlockABI != nil)
        w.field("cgroup_memory", configuration.confinement.cgroupMemory)
        w.field("summary", configuration.confinement.description)
        w.endObject()
        let text = pluginCapabilities.trimmingSpaces
        guard text.hasSuffix("}"), text.count > 2 else { return "{\"sandbox\":\(w.text)}" }
        return String(text.dropLast()) + ",\"sandbox\":" + w.text + "}"
    }

    public func cancel(jobID: String) { _ = cancelled.withLock { $0.insert(jobID) } }

    public func run(_ job: RunnerJob, progress: @escaping @Sendable (TranscodeProgress) -> Void) async throws(TranscodeFailure) -> RunnerResult {
        do { _ = try OutputPlan.make(job.spec) } catch { throw .invalidJob(error.message) }
        cancelled.withLock { _ = $0.remove(job.jobID) }
        let stage = job.outputDirectory + ".sandbox"
        removeTree(stage)
        try makeDirectory(stage)
        let outcome: Result<RunnerResult, TranscodeFailure> = await withCheckedContinuation { continuation in
            let started = OSThread.spawn { [self] in
                continuation.resume(returning: supervise(job, stage: stage, progress: progress))
            }
            if !started { continuation.resume(returning: .failure(TranscodeFailure(code: "internal", message: "cannot start a thread"))) }
        }
        cancelled.withLock { _ = $0.remove(job.jobID) }
        switch outcome {
        case .success(let r):
            if rename(stage + "/out", job.outputDirectory) != 0 {
                let e = String(cString: strerror(errno))
                removeTree(stage)
                throw TranscodeFailure(code: "io_error", message: "cannot move the outputs into place: \(e)")
            }
            removeTree(stage)
            return r
        case .failure(let f):
            removeTree(stage)
            throw f
        }
    }

    private func isCancelled(_ id: String) -> Bool { cancelled.withLock { $0.contains(id) } }

    /// On the job's own thread: the child's whole life.
    private func supervise(_ job: RunnerJob, stage: String, progress: @escaping @Sendable (TranscodeProgress) -> Void) -> Result<RunnerResult, TranscodeFailure> {
        var view = SandboxView()
        let input: String, output: String
        switch configuration.confinement.kind {
        case .bubblewrap:
            let base = job.inputPath.split(separator: "/").last.map(String.init) ?? "input"
            input = "/job/input/" + base
            output = "/job/stage/out"
            view.readOnly = [(job.inputPath, input)]
            view.readWrite = [(stage, "/job/stage")]
            view.workingDirectory = "/job/stage"
        case .direct:
            input = job.inputPath
            output = stage + "/out"
            view.readOnly = [(job.inputPath, input)]
            view.readWrite = [(stage, stage)]
            view.workingDirectory = stage
        }
        var request = JSONWriter()
        request.beginObject()
        request.field("job_id", job.jobID)
        request.key("spec"); job.spec.encodeTranscodeForm(to: &request)
        request.field("input", input)
        request.field("output_directory", output)
        request.field("threads", Int(job.threads))
        request.endObject()

        guard var toChild = Pipe(), var fromChild = Pipe(), var errors = Pipe() else {
            return .failure(TranscodeFailure(code: "io_error", message: "pipe: \(String(cString: strerror(errno)))"))
        }
        let spawnedAt = SystemClock.nanoseconds()
        let child: ConfinedProcess
        do {
            child = try ConfinedProcess.spawn(executable: configuration.executable, arguments: configuration.arguments,
                                              environment: configuration.environment,
                                              fds: [toChild.read, fromChild.write, errors.write],
                                              view: view, limits: configuration.limits, confinement: configuration.confinement,
                                              cpus: configuration.cpus)
        } catch {
            toChild.closeBoth(); fromChild.closeBoth(); errors.closeBoth()
            return .failure(TranscodeFailure(code: "worker_start", message: "cannot start the transcode worker: \(error.description)"))
        }
        toChild.closeRead(); fromChild.closeWrite(); errors.closeWrite()
        // The request is small (a spec); a child that never reads it gets EPIPE, not a hang.
        _ = fcntl(toChild.write, F_SETFL, fcntl(toChild.write, F_GETFL) | O_NONBLOCK)
        let sent = Array(request.text.utf8).withUnsafeBytes { write(toChild.write, $0.baseAddress, $0.count) }
        toChild.closeWrite()
        _ = sent

        let start = SystemClock.nanoseconds()
        let deadline = start + Int64(configuration.limits.wallSeconds * 1e9)
        var lines = LineReader(limit: 1 << 20)
        var stderrTail: [UInt8] = []
        var outcome: WorkerLine?
        var readyAt: Int64?
        var violation: String?
        var outOpen = true, errOpen = true
        var termSentAt: Int64?
        var killedFor: String?
        var buffer = [UInt8](repeating: 0, count: 65536)

        func stop(_ why: String, now: Int64) {
            if killedFor == nil { killedFor = why }
            child.signal(SIGKILL)
            _ = now
        }

        while outOpen || errOpen {
            let now = SystemClock.nanoseconds()
            if killedFor == nil && now > deadline { stop("deadline", now: now) }
            if isCancelled(job.jobID) {
                if termSentAt == nil { termSentAt = now; child.signal(SIGTERM) }
                else if now - termSentAt! > Int64(configuration.killGraceSeconds * 1e9) { stop("cancelled", now: now) }
            }
            var fds = [pollfd(fd: outOpen ? fromChild.read : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: errOpen ? errors.read : -1, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, 100)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 { continue }
            if outOpen && fds[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fromChild.read, $0.baseAddress, $0.count) }
                if n <= 0 && !(n < 0 && errno == EINTR) { outOpen = false }
                if n > 0 {
                    let ok = lines.feed(buffer[..<n]) { line in
                        guard violation == nil else { return }
                        switch WorkerLine.parse(line) {
                        case .ready?: if readyAt == nil { readyAt = SystemClock.nanoseconds() }
                        case .progress(let p)?: progress(p)
                        case let final?: if outcome == nil { outcome = final } else { violation = "more than one outcome" }
                        case nil: violation = "unreadable line \(describe(line))"
                        }
                    }
                    if !ok && violation == nil { violation = "a line longer than 1 MiB" }
                    if violation != nil { stop("garbage", now: now) ; outOpen = false }
                }
            }
            if errOpen && fds[1].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(errors.read, $0.baseAddress, $0.count) }
                if n <= 0 && !(n < 0 && errno == EINTR) { errOpen = false }
                if n > 0 {
                    stderrTail += buffer[..<n]
                    if stderrTail.count > 8192 { stderrTail.removeFirst(stderrTail.count - 4096) }
                }
            }
        }
        fromChild.closeRead(); errors.closeRead()
        // Both pipes are closed; the child is ending (or holds on past them: the deadline applies).
        var status: ExitStatus
        while true {
            if let s = child.poll() { status = s; break }
            let now = SystemClock.nanoseconds()
            if killedFor == nil && now > deadline { stop("deadline", now: now) }
            if killedFor == nil && isCancelled(job.jobID) { stop("cancelled", now: now) }
            usleep(10_000)
        }
        let tail = String(decoding: stderrTail.suffix(600), as: UTF8.self).trimmingSpaces
        let detail = tail.isEmpty ? "" : " (stderr: \(tail.replacingNewlines))"
        switch killedFor {
        case "deadline"?:
            return .failure(TranscodeFailure(code: "deadline_exceeded", message: "the transcode ran past its deadline of \(Int(configuration.limits.wallSeconds)) s and was killed"))
        case "cancelled"?:
            return .failure(.cancelled)
        case "garbage"?:
            return .failure(TranscodeFailure(code: "worker_protocol", message: "the transcode worker wrote \(violation ?? "garbage") on its progress pipe and was killed"))
        default: break
        }
        if termSentAt != nil { return .failure(.cancelled) }
        switch (status, outcome) {
        case (.exited(0), .result(var r)?):
            r.workerStartSeconds = readyAt.map { Double($0 - spawnedAt) / 1e9 }
            return .success(r)
        case (.exited, .failure(let f)?):
            return .failure(f)
        case (.signaled(SIGXCPU), _):
            return .failure(TranscodeFailure(code: "cpu_limit", message: "the transcode used its CPU time limit of \(configuration.limits.cpuSeconds) s and was killed"))
        case (.signaled(SIGKILL), _):
            return .failure(TranscodeFailure(code: "worker_killed", message: "the transcode worker was killed (SIGKILL: out of memory?)\(detail)"))
        case (.signaled(SIGXFSZ), _):
            return .failure(TranscodeFailure(code: "file_size_limit", message: "an output passed the file size limit of \(configuration.limits.fileSizeBytes) bytes\(detail)"))
        case (.signaled(let s), _):
            return .failure(TranscodeFailure(code: "worker_crashed", message: "the transcode worker crashed (\(signalName(s)))\(detail)"))
        case (.exited(let rc), _):
            return .failure(TranscodeFailure(code: "worker_failed", message: "the transcode worker exited with status \(rc) without a result\(detail)"))
        }
    }
}

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
            return .result(RunnerResult(qualityReportJSON: quality, work: work))
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
