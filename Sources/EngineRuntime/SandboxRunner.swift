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
// its stderr is kept (the last 4 KiB) for the failure reason. The request is one line on
// stdin, which stays open: "cancel" on it cancels the job (the worker cancels it through its
// plugin table, so a plugin stops its own programs), SIGKILL to the group follows after the
// grace period. Whatever the child does
// (crashes, runs out of memory, hangs past the deadline, writes garbage on the pipe), the
// engine reads an ExitStatus and fails the job with a readable reason; the staging
// directory, and with it every partial output, is removed. Only a clean result's outputs
// are moved to the job's output directory.
//
// Each job has one OS thread for its whole life: it spawns the child (PR_SET_PDEATHSIG is
// tied to the spawning thread), feeds the request, reads the pipes, enforces the deadline
// and cancellation ("cancel" on the worker's stdin, SIGKILL after the grace period) and reaps it.
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
    /// (Swift's crash backtracer is off: it cannot work under the filter, which refuses
    /// ptrace and new processes, and its noise would bury the crash message.)
    public var environment: [String] = ["PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "SWIFT_BACKTRACE=enable=no"]
    /// After SIGTERM (a cancel), SIGKILL this much later.
    public var killGraceSeconds = 5.0
    /// Where spare workers keep their slot directories (on the same file system as the
    /// jobs' inputs and outputs); nil: no spares, every job starts its worker cold.
    public var spareDirectory: String?
    /// Loaded plugins (checked by the engine at start); a job requiring one of a plugin's
    /// capabilities runs with it, in a worker whose filter lets it start programs.
    public var plugins: [PluginInfo] = []
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

/// A plugin as the runner knows it: data only (the worker loads the code).
public struct PluginInfo: Sendable {
    public var name: String
    /// The shared object on the engine's file system.
    public var path: String
    public var capabilities: [String]
    /// Its capabilities document (a JSON object).
    public var capabilitiesJSON: String
    public init(name: String, path: String, capabilities: [String], capabilitiesJSON: String) {
        self.name = name; self.path = path; self.capabilities = capabilities; self.capabilitiesJSON = capabilitiesJSON
    }
}

public final class SandboxRunner: TranscodeRunner {
    let configuration: SandboxConfiguration
    let pluginCapabilities: String
    /// Jobs asked to stop.
    private let cancelled = Mutex<Set<String>>([])
    /// Warm workers waiting for a job (at most one kept).
    private let spares = Mutex<[Spare]>([])
    private let spareCounter = Atomic<Int>(0)

    /// `capabilitiesJSON`: what the worker's plugin can do (probed in this process: the
    /// same binary and libraries run in the child).
    public init(configuration: SandboxConfiguration, capabilitiesJSON: String) {
        self.configuration = configuration
        self.pluginCapabilities = capabilitiesJSON
        // A direct child (no PID namespace) can read /proc: keep this process's entries
        // (its environment, descriptors, memory) closed to it.
        if configuration.confinement.kind == .direct { ConfinedProcess.protectThisProcess() }
        // Slots left by an earlier run of this engine go; one spare starts now.
        if let dir = configuration.spareDirectory { removeTree(dir) }
        replenishSpares()
    }

    /// Spare workers started and waiting for a job.
    public var readySpares: Int { spares.withLock { $0.filter(\.isReady).count } }

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
        var extra = ",\"sandbox\":" + w.text
        if !configuration.plugins.isEmpty {
            var p = JSONWriter()
            p.beginArray()
            for plugin in configuration.plugins {
                p.beginObject(); p.field("name", plugin.name); p.key("details"); p.rawJSON(plugin.capabilitiesJSON); p.endObject()
            }
            p.endArray()
            var names = JSONWriter()
            names.beginArray()
            for c in Set(configuration.plugins.flatMap(\.capabilities)).sorted() { names.string(c) }
            names.endArray()
            extra += ",\"plugins\":" + p.text + ",\"capabilities\":" + names.text
        }
        let text = pluginCapabilities.trimmingSpaces
        guard text.hasSuffix("}"), text.count > 2 else { return "{" + extra.dropFirst() + "}" }
        return String(text.dropLast()) + extra + "}"
    }

    public func cancel(jobID: String) { _ = cancelled.withLock { $0.insert(jobID) } }

    public func run(_ job: RunnerJob, progress: @escaping @Sendable (TranscodeProgress) -> Void) async throws(TranscodeFailure) -> RunnerResult {
        do { _ = try OutputPlan.make(job.spec) } catch { throw .invalidJob(error.message) }
        cancelled.withLock { _ = $0.remove(job.jobID) }
        let limits = effectiveLimits(job)
        var stage = job.outputDirectory + ".sandbox"
        var slot: String?
        let outcome: Result<RunnerResult, TranscodeFailure>
        let plugin = configuration.plugins.first { !Set($0.capabilities).isDisjoint(with: job.spec.requiredCapabilities) }
        if plugin == nil, let spare = takeSpare(for: job) {
            // A warm worker: its start was paid before the job came.
            slot = spare.slot
            stage = spare.slot + "/stage"
            let request = requestText(job, input: spare.insideInput, output: spare.insideOutput)
            outcome = await withCheckedContinuation { continuation in
                spare.assign(Spare.Assignment(request: request, jobID: job.jobID, limits: limits, startedAt: SystemClock.nanoseconds(),
                                              progress: progress, continuation: continuation))
            }
        } else {
            removeTree(stage)
            try makeDirectory(stage)
            let coldStage = stage
            outcome = await withCheckedContinuation { continuation in
                let started = OSThread.spawn { [self] in
                    continuation.resume(returning: supervise(job, stage: coldStage, limits: limits, plugin: plugin, progress: progress))
                }
                if !started { continuation.resume(returning: .failure(TranscodeFailure(code: "internal", message: "cannot start a thread"))) }
            }
        }
        replenishSpares()
        defer { if let slot { removeTree(slot) } }
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

    /// The job's own limits apply within the engine's caps.
    func effectiveLimits(_ job: RunnerJob) -> SandboxLimits {
        var limits = configuration.limits
        let own = job.spec.limits
        if let s = own.maxSeconds { limits.wallSeconds = min(limits.wallSeconds, Double(s)) }
        if let s = own.maxCPUSeconds { limits.cpuSeconds = min(limits.cpuSeconds, Int64(s)) }
        if let m = own.maxMemoryMiB { limits.addressSpaceBytes = min(limits.addressSpaceBytes, Int64(m) << 20) }
        return limits
    }

    func requestText(_ job: RunnerJob, input: String, output: String, plugin: (name: String, path: String)? = nil) -> String {
        var request = JSONWriter()
        request.beginObject()
        request.field("job_id", job.jobID)
        request.key("spec"); job.spec.encodeTranscodeForm(to: &request)
        request.field("input", input)
        request.field("output_directory", output)
        request.field("threads", Int(job.threads))
        request.key("required_capabilities")
        request.beginArray()
        for c in job.spec.requiredCapabilities { request.string(c) }
        request.endArray()
        if let plugin {
            request.key("plugin"); request.beginObject(); request.field("name", plugin.name); request.field("path", plugin.path); request.endObject()
        }
        request.endObject()
        return request.text
    }

    /// On the job's own thread: a cold worker's whole life.
    private func supervise(_ job: RunnerJob, stage: String, limits: SandboxLimits, plugin: PluginInfo?,
                           progress: @escaping @Sendable (TranscodeProgress) -> Void) -> Result<RunnerResult, TranscodeFailure> {
        var view = SandboxView()
        let input: String, output: String, home: String
        var pluginPath: String?
        switch configuration.confinement.kind {
        case .bubblewrap:
            let base = job.inputPath.split(separator: "/").last.map(String.init) ?? "input"
            input = "/job/input/" + base
            output = "/job/stage/out"
            home = "/job/stage"
            view.readOnly = [(job.inputPath, input)]
            if let plugin {
                pluginPath = "/job/plugins/" + plugin.name + ".so"
                view.readOnly.append((plugin.path, pluginPath!))
            }
            view.readWrite = [(stage, "/job/stage")]
            view.workingDirectory = "/job/stage"
        case .direct:
            input = job.inputPath
            output = stage + "/out"
            home = stage
            view.readOnly = [(job.inputPath, input)]
            if let plugin {
                pluginPath = plugin.path
                view.readOnly.append((plugin.path, plugin.path))
            }
            view.readWrite = [(stage, stage)]
            view.workingDirectory = stage
        }
        // A plugin's programs may want a home and a temporary directory: the stage (only
        // out/ in it is uploaded).
        let environment = plugin == nil ? nil : configuration.environment.filter { !$0.hasPrefix("HOME=") && !$0.hasPrefix("TMPDIR=") }
            + ["HOME=" + home, "TMPDIR=" + home]
        switch launch(view: view, limits: limits, allowProcesses: plugin != nil, environment: environment) {
        case .failure(let f): return .failure(f)
        case .success(let worker):
            let request = requestText(job, input: input, output: output, plugin: plugin.map { ($0.name, pluginPath!) })
            return drive(worker, request: request, jobID: job.jobID, limits: limits, startedAt: worker.spawnedAt, progress: progress)
        }
    }

    /// Starts a worker; the request is sent later (drive).
    func launch(view: SandboxView, limits: SandboxLimits, allowProcesses: Bool = false,
                environment: [String]? = nil) -> Result<LiveWorker, TranscodeFailure> {
        guard var toChild = Pipe(), var fromChild = Pipe(), var errors = Pipe() else {
            return .failure(TranscodeFailure(code: "io_error", message: "pipe: \(String(cString: strerror(errno)))"))
        }
        let spawnedAt = SystemClock.nanoseconds()
        let child: ConfinedProcess
        do {
            child = try ConfinedProcess.spawn(executable: configuration.executable, arguments: configuration.arguments,
                                              environment: environment ?? configuration.environment,
                                              fds: [toChild.read, fromChild.write, errors.write],
                                              view: view, limits: limits, confinement: configuration.confinement,
                                              cpus: configuration.cpus, allowProcesses: allowProcesses)
        } catch {
            toChild.closeBoth(); fromChild.closeBoth(); errors.closeBoth()
            return .failure(TranscodeFailure(code: "worker_start", message: "cannot start the transcode worker: \(error.description)"))
        }
        toChild.closeRead(); fromChild.closeWrite(); errors.closeWrite()
        return .success(LiveWorker(child: child, requestFD: toChild.write, outputFD: fromChild.read, errorFD: errors.read, spawnedAt: spawnedAt))
    }

    /// Sends the request and follows the worker to its end. `startedAt`: when the job began
    /// waiting for this worker (its spawn, or a spare's assignment).
    func drive(_ worker: LiveWorker, request: String, jobID: String, limits: SandboxLimits, startedAt: Int64,
               progress: @escaping @Sendable (TranscodeProgress) -> Void) -> Result<RunnerResult, TranscodeFailure> {
        let child = worker.child
        var fromChild = Pipe(read: worker.outputFD), errors = Pipe(read: worker.errorFD)
        // The request is small (a spec); a child that never reads it gets EPIPE, not a hang.
        // One line; the pipe stays open as the control channel ("cancel\n"), closed at the end.
        _ = fcntl(worker.requestFD, F_SETFL, fcntl(worker.requestFD, F_GETFL) | O_NONBLOCK)
        _ = Array((request + "\n").utf8).withUnsafeBytes { write(worker.requestFD, $0.baseAddress, $0.count) }
        defer { close(worker.requestFD) }
        let start = SystemClock.nanoseconds()
        let deadline = start + Int64(limits.wallSeconds * 1e9)
        var lines = worker.lines
        var stderrTail: [UInt8] = []
        var outcome: WorkerLine?
        var readyAt = worker.readyAt
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
            if isCancelled(jobID) {
                if termSentAt == nil {
                    // The worker cancels the job through its plugin table (a plugin stops its
                    // own programs); SIGKILL to everything after the grace period.
                    termSentAt = now
                    _ = Array("cancel\n".utf8).withUnsafeBytes { write(worker.requestFD, $0.baseAddress, $0.count) }
                }
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
            if killedFor == nil && isCancelled(jobID) { stop("cancelled", now: now) }
            usleep(10_000)
        }
        let tail = String(decoding: stderrTail.suffix(600), as: UTF8.self).trimmingSpaces
        let detail = tail.isEmpty ? "" : " (stderr: \(tail.replacingNewlines))"
        switch killedFor {
        case "deadline"?:
            return .failure(TranscodeFailure(code: "deadline_exceeded", message: "the transcode ran past its deadline of \(Int(limits.wallSeconds)) s and was killed"))
        case "cancelled"?:
            return .failure(.cancelled)
        case "garbage"?:
            return .failure(TranscodeFailure(code: "worker_protocol", message: "the transcode worker wrote \(violation ?? "garbage") on its progress pipe and was killed"))
        default: break
        }
        if termSentAt != nil { return .failure(.cancelled) }
        switch (status, outcome) {
        case (.exited(0), .result(var r)?):
            r.workerStartSeconds = readyAt.map { Double(max(0, $0 - startedAt)) / 1e9 }
            r.workerSpawnSeconds = readyAt.map { Double($0 - worker.spawnedAt) / 1e9 }
            return .success(r)
        case (.exited, .failure(let f)?):
            return .failure(f)
        case (.signaled(SIGXCPU), _):
            return .failure(TranscodeFailure(code: "cpu_limit", message: "the transcode used its CPU time limit of \(limits.cpuSeconds) s and was killed"))
        case (.signaled(SIGKILL), _):
            return .failure(TranscodeFailure(code: "worker_killed", message: "the transcode worker was killed (SIGKILL: out of memory?)\(detail)"))
        case (.signaled(SIGXFSZ), _):
            return .failure(TranscodeFailure(code: "file_size_limit", message: "an output passed the file size limit of \(limits.fileSizeBytes) bytes\(detail)"))
        case (.signaled(let s), _):
            return .failure(TranscodeFailure(code: "worker_crashed", message: "the transcode worker crashed (\(signalName(s)))\(detail)"))
        case (.exited(let rc), _):
            return .failure(TranscodeFailure(code: "worker_failed", message: "the transcode worker exited with status \(rc) without a result\(detail)"))
        }
    }
}

// MARK: spare workers
//
// A worker's cold start costs about 0.1 s, nearly all of it the dynamic linker binding the
// ~150 shared libraries libav brings (bubblewrap itself takes ~6 ms). So the runner keeps
// one worker started ahead of need, in a slot directory of its own (in/ read-only,
// stage/ writable, bound or ruled before the job is known). A job takes it by hard-linking
// its input into in/ and sending the request; the spare's start is then already paid. A
// job with its own CPU or memory limits starts cold (rlimits are set at spawn).

extension SandboxRunner {
    func takeSpare(for job: RunnerJob) -> Spare? {
        guard configuration.spareDirectory != nil, job.spec.limits.maxCPUSeconds == nil, job.spec.limits.maxMemoryMiB == nil else { return nil }
        let spare = spares.withLock { list -> Spare? in
            list.removeAll { $0.hasFailed }
            guard let i = list.firstIndex(where: { $0.isReady }) else { return nil }
            return list.remove(at: i)
        }
        guard let spare else { return nil }
        guard link(job.inputPath, spare.slot + "/in/input") == 0 else {
            // Another file system, say: this job starts cold, the spare waits for the next.
            spares.withLock { $0.append(spare) }
            return nil
        }
        return spare
    }

    /// Keeps one spare worker starting or ready.
    func replenishSpares() {
        guard let dir = configuration.spareDirectory else { return }
        let made = spares.withLock { list -> Spare? in
            list.removeAll { $0.hasFailed }
            guard list.isEmpty else { return nil }
            let n = spareCounter.add(1, ordering: .relaxed).newValue
            let slot = dir + "/spare-\(getpid())-\(n)"
            removeTree(slot)
            do {
                try makeDirectory(slot + "/in")
                try makeDirectory(slot + "/stage")
            } catch { return nil }
            let spare: Spare
            switch configuration.confinement.kind {
            case .bubblewrap: spare = Spare(slot: slot, insideInput: "/job/input/input", insideOutput: "/job/stage/out")
            case .direct: spare = Spare(slot: slot, insideInput: slot + "/in/input", insideOutput: slot + "/stage/out")
            }
            list.append(spare)
            return spare
        }
        guard let spare = made else { return }
        if !OSThread.spawn({ [self] in runSpare(spare) }) { spare.state.change { $0 = .failed } }
    }

    /// The spare's thread: start the worker, wait for its ready line, wait for a job, drive it.
    private func runSpare(_ spare: Spare) {
        var view = SandboxView()
        switch configuration.confinement.kind {
        case .bubblewrap:
            view.readOnly = [(spare.slot + "/in", "/job/input")]
            view.readWrite = [(spare.slot + "/stage", "/job/stage")]
            view.workingDirectory = "/job/stage"
        case .direct:
            view.readOnly = [(spare.slot + "/in", spare.slot + "/in")]
            view.readWrite = [(spare.slot + "/stage", spare.slot + "/stage")]
            view.workingDirectory = spare.slot + "/stage"
        }
        guard case .success(let worker) = launch(view: view, limits: configuration.limits) else {
            spare.state.change { $0 = .failed }
            return
        }
        guard awaitReady(worker, seconds: 30) else {
            worker.child.signal(SIGKILL)
            _ = worker.child.wait()
            close(worker.requestFD); close(worker.outputFD); close(worker.errorFD)
            spare.state.change { $0 = .failed }
            removeTree(spare.slot)
            return
        }
        spare.state.change { $0 = .ready }
        let a = spare.state.wait(until: { if case .assigned = $0 { return true } else { return false } }) { s, _ -> Spare.Assignment? in
            if case .assigned(let a) = s { return a } else { return nil }
        }
        guard let a else { return }
        a.continuation.resume(returning: drive(worker, request: a.request, jobID: a.jobID, limits: a.limits, startedAt: a.startedAt, progress: a.progress))
    }

    /// Reads the worker's first line; true when it is {"ready":{}} within `seconds`.
    private func awaitReady(_ worker: LiveWorker, seconds: Double) -> Bool {
        let end = SystemClock.nanoseconds() + Int64(seconds * 1e9)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while worker.readyAt == nil {
            let left = end - SystemClock.nanoseconds()
            guard left > 0 else { return false }
            var fds = [pollfd(fd: worker.outputFD, events: Int16(POLLIN), revents: 0)]
            let r = poll(&fds, 1, Int32(min(left / 1_000_000, 1000)))
            if r < 0 && errno != EINTR { return false }
            if r <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(worker.outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            var good = true
            _ = worker.lines.feed(buffer[..<n]) { line in
                if case .ready? = WorkerLine.parse(line), worker.readyAt == nil { worker.readyAt = SystemClock.nanoseconds() } else { good = false }
            }
            guard good else { return false }
        }
        return true
    }
}

/// A started worker: the child and the engine's ends of its pipes.
final class LiveWorker: @unchecked Sendable {
    let child: ConfinedProcess
    let requestFD: Int32
    let outputFD: Int32
    let errorFD: Int32
    let spawnedAt: Int64
    /// When its ready line was read (before the job, for a spare).
    var readyAt: Int64?
    var lines = LineReader(limit: 1 << 20)
    init(child: ConfinedProcess, requestFD: Int32, outputFD: Int32, errorFD: Int32, spawnedAt: Int64) {
        self.child = child; self.requestFD = requestFD; self.outputFD = outputFD; self.errorFD = errorFD; self.spawnedAt = spawnedAt
    }
}

final class Spare: Sendable {
    struct Assignment: Sendable {
        var request: String
        var jobID: String
        var limits: SandboxLimits
        var startedAt: Int64
        var progress: @Sendable (TranscodeProgress) -> Void
        var continuation: CheckedContinuation<Result<RunnerResult, TranscodeFailure>, Never>
    }
    enum State: Sendable { case starting, ready, failed, assigned(Assignment) }

    let slot: String
    let insideInput: String
    let insideOutput: String
    let state = ConditionLock<State>(.starting)

    init(slot: String, insideInput: String, insideOutput: String) {
        self.slot = slot; self.insideInput = insideInput; self.insideOutput = insideOutput
    }
    var isReady: Bool { state.withLock { if case .ready = $0 { return true } else { return false } } }
    var hasFailed: Bool { state.withLock { if case .failed = $0 { return true } else { return false } } }
    func assign(_ a: Assignment) { state.change { $0 = .assigned(a) } }
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
