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
    /// How many spare workers to keep started: as many as jobs can run at once.
    public var spares = 1
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
    let cancelled = Mutex<Set<String>>([])
    /// Warm workers waiting for a job (at most one kept).
    let spares = Mutex<[Spare]>([])
    let spareCounter = Atomic<Int>(0)
    /// Workers' memory cgroups are named this plus a count: this process and this runner
    /// (`spool up` runs several engines in one process).
    let cgroupPrefix = "spool-worker-\(getpid())-\(SandboxRunner.runners.add(1, ordering: .relaxed).newValue)-"
    let cgroupCounter = Atomic<Int>(0)
    static let runners = Atomic<Int>(0)

    /// `capabilitiesJSON`: what the worker's plugin can do (probed in this process: the
    /// same binary and libraries run in the child).
    public init(configuration: SandboxConfiguration, capabilitiesJSON: String) {
        self.configuration = configuration
        self.pluginCapabilities = capabilitiesJSON
        // A direct child (no PID namespace) can read /proc: keep this process's entries
        // (its environment, descriptors, memory) closed to it.
        if configuration.confinement.kind == .direct { ConfinedProcess.protectThisProcess() }
        // Slots left by an earlier run of this engine go; the spares start now.
        if let dir = configuration.spareDirectory { removeTree(dir) }
        // Memory cgroups of workers of an earlier engine that was killed (empty by now).
        configuration.confinement.memoryCgroups?.removeStale(prefix: "spool-worker-")
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

    public func streamRefusal(_ spec: JobSpec) -> String? {
        if configuration.plugins.contains(where: { !Set($0.capabilities).isDisjoint(with: spec.requiredCapabilities) }) {
            return "it runs on a plugin, which reads files"
        }
        return builtinStreamRefusal(spec)
    }

    public func run(_ job: RunnerJob, progress: @escaping @Sendable (TranscodeProgress) -> Void) async throws(TranscodeFailure) -> RunnerResult {
        do { _ = try OutputPlan.make(job.spec) } catch { throw .invalidJob(error.message) }
        cancelled.withLock { _ = $0.remove(job.jobID) }
        let limits = effectiveLimits(job)
        var stage = job.outputDirectory + ".sandbox"
        var slot: String?
        let outcome: Result<RunnerResult, TranscodeFailure>
        let plugin = configuration.plugins.first { !Set($0.capabilities).isDisjoint(with: job.spec.requiredCapabilities) }
        var spareOutcome: Result<RunnerResult, TranscodeFailure>?
        if plugin == nil, let spare = takeSpare(for: job) {
            // A warm worker: its start was paid before the job came (or is under way).
            replenishSpares()
            slot = spare.slot
            let request = requestText(job, input: spare.insideInput, output: spare.insideOutput,
                                      outputStream: job.outputStreamPath.map { _ in spare.insideStage + "/output-stream" })
            let r = await withCheckedContinuation { continuation in
                spare.assign(Spare.Assignment(request: request, jobID: job.jobID, limits: limits, startedAt: SystemClock.nanoseconds(),
                                              progress: progress, continuation: continuation))
            }
            if case .failure = r, spare.hasFailed {   // its worker never started: start one cold
                removeTree(spare.slot)
                slot = nil
            } else {
                stage = spare.slot + "/stage"
                spareOutcome = r
            }
        }
        if let spareOutcome {
            outcome = spareOutcome
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
            replenishSpares()
        }
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

    func isCancelled(_ id: String) -> Bool { cancelled.withLock { $0.contains(id) } }
}
