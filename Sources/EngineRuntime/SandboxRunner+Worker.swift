// EngineRuntime.SandboxRunner+Worker: one worker's life. `supervise` starts a cold worker
// for a job (the view of its paths, a plugin's profile and environment), `launch` spawns it
// confined with its three pipes, `drive` sends the request line and follows the worker to
// its end (progress, the deadline, a cancel as a line on its stdin and SIGKILL after the
// grace period, garbage on the pipe), then turns its exit status into the job's outcome.
import Glibc
import JSON
import Jobs
import Sandbox
import SpoolModel
import Synchronization
import Threads
import TranscodeAPI

extension SandboxRunner {
    /// The job's own limits apply within the engine's caps.
    func effectiveLimits(_ job: RunnerJob) -> SandboxLimits {
        var limits = configuration.limits
        let own = job.spec.limits
        if let s = own.maxSeconds { limits.wallSeconds = min(limits.wallSeconds, Double(s)) }
        if let s = own.maxCPUSeconds { limits.cpuSeconds = min(limits.cpuSeconds, Int64(s)) }
        if let m = own.maxMemoryMiB {
            limits.addressSpaceBytes = min(limits.addressSpaceBytes, Int64(m) << 20)
            limits.memoryBytes = min(limits.memoryBytes, Int64(m) << 20)
        }
        return limits
    }

    func requestText(_ job: RunnerJob, input: String, output: String, outputStream: String? = nil,
                     plugin: (name: String, path: String)? = nil) -> String {
        var request = JSONWriter()
        request.beginObject()
        request.field("job_id", job.jobID)
        request.key("spec"); job.spec.encodeTranscodeForm(to: &request)
        request.field("input", input)
        if job.inputIsStream { request.field("input_stream", true) }
        if let outputStream { request.field("output_stream", outputStream) }
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
    func supervise(_ job: RunnerJob, stage: String, limits: SandboxLimits, plugin: PluginInfo?,
                           progress: @escaping @Sendable (TranscodeProgress) -> Void) -> Result<RunnerResult, TranscodeFailure> {
        var view = SandboxView()
        let input: String, output: String, home: String
        var pluginPath: String?
        var outputStream: String?
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
            if let o = job.outputStreamPath {
                outputStream = "/job/output-stream"
                view.readWrite.append((o, outputStream!))
            }
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
            if let o = job.outputStreamPath {
                outputStream = o
                view.readWrite.append((o, o))
            }
            view.workingDirectory = stage
        }
        // A plugin's programs may want a home and a temporary directory: the stage (only
        // out/ in it is uploaded).
        let environment = plugin == nil ? nil : configuration.environment.filter { !$0.hasPrefix("HOME=") && !$0.hasPrefix("TMPDIR=") }
            + ["HOME=" + home, "TMPDIR=" + home]
        switch launch(view: view, limits: limits, allowProcesses: plugin != nil, environment: environment) {
        case .failure(let f): return .failure(f)
        case .success(let worker):
            let request = requestText(job, input: input, output: output, outputStream: outputStream,
                                      plugin: plugin.map { ($0.name, pluginPath!) })
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
        var cgroup: JobCgroup?
        do {
            if let groups = configuration.confinement.memoryCgroups, limits.memoryBytes > 0 {
                cgroup = try groups.make(name: cgroupPrefix + String(cgroupCounter.add(1, ordering: .relaxed).newValue),
                                         limitBytes: limits.memoryBytes)
            }
            child = try ConfinedProcess.spawn(executable: configuration.executable, arguments: configuration.arguments,
                                              environment: environment ?? configuration.environment,
                                              fds: [toChild.read, fromChild.write, errors.write],
                                              view: view, limits: limits, confinement: configuration.confinement,
                                              cpus: configuration.cpus, allowProcesses: allowProcesses, cgroup: cgroup)
        } catch {
            toChild.closeBoth(); fromChild.closeBoth(); errors.closeBoth()
            cgroup?.remove()
            return .failure(TranscodeFailure(code: "worker_start", message: "cannot start the transcode worker: \(error.description)"))
        }
        toChild.closeRead(); fromChild.closeWrite(); errors.closeWrite()
        return .success(LiveWorker(child: child, requestFD: toChild.write, outputFD: fromChild.read, errorFD: errors.read, spawnedAt: spawnedAt,
                                   cgroup: cgroup))
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
        // Its memory cgroup goes with it, once read: an out-of-memory kill is the cgroup's.
        let oomKilled = (worker.cgroup?.oomKills ?? 0) > 0
        worker.cgroup?.remove()
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
        case (.signaled(SIGKILL), _) where oomKilled:
            return .failure(TranscodeFailure(code: "out_of_memory", message: "the transcode used its memory limit of \(limits.memoryBytes >> 20) MiB and was killed by the kernel (its memory cgroup)"))
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
