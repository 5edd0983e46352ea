// EngineRuntime.SandboxRunner+Spares: the spare worker started ahead of need.
import Glibc
import JSON
import Jobs
import Sandbox
import SpoolModel
import Synchronization
import Threads
import TranscodeAPI

// MARK: spare workers
//
// A worker's cold start costs 50-70 ms here, most of it the dynamic linker mapping and
// binding the ~150 shared libraries Debian's libav brings (a C program that only links
// them takes ~42 ms to start; bubblewrap itself ~5 ms). So the runner keeps
// `configuration.spares` workers (one per job the engines can run at once) started ahead
// of need, each in a slot directory of its own (in/ read-only, stage/ writable, bound or
// ruled before the job is known). A job takes a ready spare, or else one still starting
// (normally sooner ready than a cold start begun later; one that fails, or is not ready
// within 30 s, leaves the job a cold start), by hard-linking its input into in/ and
// handing over the request; the next spare starts at once, so it starts during this job
// rather than after it. A job with its own CPU or memory limits starts cold (rlimits are
// set at spawn).

extension SandboxRunner {
    func takeSpare(for job: RunnerJob) -> Spare? {
        guard configuration.spareDirectory != nil, job.spec.limits.maxCPUSeconds == nil, job.spec.limits.maxMemoryMiB == nil else { return nil }
        let spare = spares.withLock { list -> Spare? in
            list.removeAll { $0.hasFailed }
            guard let i = list.firstIndex(where: { $0.isReady }) ?? list.firstIndex(where: { $0.isStarting }) else { return nil }
            return list.remove(at: i)
        }
        guard let spare else { return nil }
        guard link(job.inputPath, spare.slot + "/in/input") == 0 else {
            // Another file system, say: this job starts cold, the spare waits for the next.
            spares.withLock { $0.append(spare) }
            return nil
        }
        // A streamed output's FIFO goes into the writable stage.
        if let o = job.outputStreamPath, link(o, spare.slot + "/stage/output-stream") != 0 {
            unlink(spare.slot + "/in/input")
            spares.withLock { $0.append(spare) }
            return nil
        }
        return spare
    }

    /// Starts spare workers until `configuration.spares` are starting or ready: at most
    /// the shortfall counted on entry (spares that fail as fast as they start cannot keep
    /// this going).
    func replenishSpares() {
        guard let dir = configuration.spareDirectory else { return }
        let shortfall = spares.withLock { list -> Int in
            list.removeAll { $0.hasFailed }
            return configuration.spares - list.count
        }
        for _ in 0..<max(0, shortfall) {
            let made = spares.withLock { list -> Spare? in
                guard list.count < configuration.spares else { return nil }
                let n = spareCounter.add(1, ordering: .relaxed).newValue
                let slot = dir + "/spare-\(getpid())-\(n)"
                removeTree(slot)
                do {
                    try makeDirectory(slot + "/in")
                    try makeDirectory(slot + "/stage")
                } catch { return nil }
                let spare: Spare
                switch configuration.confinement.kind {
                case .bubblewrap: spare = Spare(slot: slot, insideInput: "/job/input/input", insideOutput: "/job/stage/out",
                                                insideStage: "/job/stage")
                case .direct: spare = Spare(slot: slot, insideInput: slot + "/in/input", insideOutput: slot + "/stage/out", insideStage: slot + "/stage")
                }
                list.append(spare)
                return spare
            }
            guard let spare = made else { return }
            if !OSThread.spawn({ [self] in runSpare(spare) }) {
                spare.fail()
                return
            }
        }
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
            spare.fail()
            return
        }
        guard awaitReady(worker, seconds: 30) else {
            worker.child.signal(SIGKILL)
            _ = worker.child.wait()
            worker.cgroup?.remove()
            close(worker.requestFD); close(worker.outputFD); close(worker.errorFD)
            spare.fail()
            return
        }
        // A job may have taken it while it started: then it stays assigned.
        spare.state.change { if case .starting = $0 { $0 = .ready } }
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
    /// Its memory cgroup, removed once it is reaped.
    let cgroup: JobCgroup?
    init(child: ConfinedProcess, requestFD: Int32, outputFD: Int32, errorFD: Int32, spawnedAt: Int64, cgroup: JobCgroup?) {
        self.child = child; self.requestFD = requestFD; self.outputFD = outputFD; self.errorFD = errorFD; self.spawnedAt = spawnedAt
        self.cgroup = cgroup
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
    /// The writable stage as the worker sees it.
    let insideStage: String
    let state = ConditionLock<State>(.starting)

    init(slot: String, insideInput: String, insideOutput: String, insideStage: String) {
        self.slot = slot; self.insideInput = insideInput; self.insideOutput = insideOutput; self.insideStage = insideStage
    }
    var isReady: Bool { state.withLock { if case .ready = $0 { return true } else { return false } } }
    var isStarting: Bool { state.withLock { if case .starting = $0 { return true } else { return false } } }
    var hasFailed: Bool { state.withLock { if case .failed = $0 { return true } else { return false } } }
    /// Hands the job to the spare's thread; a spare that failed meanwhile answers at once.
    func assign(_ a: Assignment) {
        let failed = state.change { s -> Bool in
            if case .failed = s { return true }
            s = .assigned(a)
            return false
        }
        if failed { a.continuation.resume(returning: .failure(Spare.failure)) }
    }

    /// The failure a job that took this spare while it was starting gets when its worker
    /// never became ready; the runner then starts one cold. (The runner checks `hasFailed`,
    /// not the code: a worker could write this code in its own failure line.)
    static let failure = TranscodeFailure(code: "spare_failed", message: "the spare worker did not start")

    /// The worker did not start: its slot goes, and a job that took it is told (and
    /// starts a cold worker).
    func fail() {
        removeTree(slot)
        let taken = state.change { s -> Assignment? in
            defer { s = .failed }
            if case .assigned(let a) = s { return a } else { return nil }
        }
        taken?.continuation.resume(returning: .failure(Spare.failure))
    }
}
