// EngineRuntime.EngineAgent: a transcoding engine. It registers with a dispatcher (join
// token; the id and token it gets are kept in DATA/engine.json, 0600, and reused on
// restart), sends heartbeats (state, load, the jobs it runs, its capabilities when they
// change), and in each of its slots long-polls for a lease, downloads the input, runs the
// transcode through its TranscodeRunner, uploads the outputs and completes the job, every
// call carrying the lease epoch (a 409 stale_lease means the job is no longer ours: the
// work is dropped, never reported).
//
// Backpressure: while the machine is over its limits (load per CPU, available memory, I/O
// wait) the engine reports `busy` and leases nothing. Shutdown: `drain()` (first signal)
// stops leasing, lets running jobs finish and reports offline; `stopNow()` (second signal,
// or the drain timeout) cancels running jobs and gives them back to the queue.
//
// Local queue (M21): every lease is recorded in DATA/engine.sqlite before work starts and
// removed once the server has the outcome; a restarted engine resumes what it held (see
// LocalQueue).
//
// Loop-confined I/O: `run()` must be called on an event loop; the HTTP client lives there
// and every slot, the heartbeat and the progress reporters are tasks on that loop. The
// transcodes themselves run off the loop (the runner's threads).
import Glibc
import JSON
import Jobs
import Logging
import ProcFS
import Ring
import SpoolModel
import Synchronization
import Threads
import TranscodeAPI
import Web

public struct EngineConfiguration: Sendable {
    /// The dispatcher's base URL ("http://127.0.0.1:8080").
    public var server: String
    /// Needed to register (not when DATA/engine.json holds a token the server still knows).
    public var joinToken: String?
    public var dataDirectory: String
    public var name: String
    /// "GPU:0", "CPU_Set:1-4", or anything a job may require.
    public var tags: [String] = []
    /// Jobs run at once.
    public var slots = 1
    /// Seconds a lease request waits on the server for work.
    public var leaseWaitSeconds = 10
    /// Codec threads per transcode (0: automatic).
    public var threads: Int32 = 0
    /// Over any of these the engine is busy: 1-minute load per CPU, memory available, I/O wait share.
    public var maxLoadPerCPU = 4.0
    public var minMemoryAvailableBytes: Int64 = 128 << 20
    public var maxIOWaitFraction = 0.5
    /// After `drain()`, running jobs are cancelled and requeued past this.
    public var drainTimeout: Duration = .seconds(600)

    public init(server: String, joinToken: String?, dataDirectory: String, name: String) {
        var s = server
        while s.hasSuffix("/") { s.removeLast() }
        self.server = s; self.joinToken = joinToken; self.dataDirectory = dataDirectory; self.name = name
    }
}

public struct EngineError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

public final class EngineAgent: Sendable {
    struct Running: Sendable {
        var epoch: Int64
        var progress: TranscodeProgress?
        var reported: Double = -1
    }
    struct State: Sendable {
        var draining = false
        var stopping = false
        var busy = false
        var running: [String: Running] = [:]
        var credentials: EngineCredentials?
        var heartbeatSeconds = 5.0
        var sentCapabilities = ""
        var completed = 0
        var failed = 0
        /// Jobs reloaded from the local queue at start, to resume before leasing new ones.
        var resumable: [Lease] = []
    }

    public let configuration: EngineConfiguration
    let runner: any TranscodeRunner
    let monitor: any ResourceMonitorPlugin
    let logger: Logger
    let state = Mutex(State())
    let wakeHeartbeat: AsyncStream<Void>
    let wakeHeartbeatContinuation: AsyncStream<Void>.Continuation
    let local = Mutex<LocalQueue?>(nil)

    public init(configuration: EngineConfiguration, runner: any TranscodeRunner, monitor: any ResourceMonitorPlugin,
                logger: Logger = Logger(label: "spool.engine")) {
        self.configuration = configuration
        self.runner = runner
        self.monitor = monitor
        self.logger = logger
        (wakeHeartbeat, wakeHeartbeatContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The engine id once registered.
    public var engineID: String? { state.withLock { $0.credentials?.engineID } }
    public var isDraining: Bool { state.withLock { $0.draining } }
    public var counts: (completed: Int, failed: Int) { state.withLock { ($0.completed, $0.failed) } }

    /// Stop leasing; running jobs finish; then `run` reports offline and returns.
    public func drain() {
        let first = state.withLock { s -> Bool in defer { s.draining = true }; return !s.draining }
        guard first else { return }
        logger.info("draining: no new leases; \(state.withLock { $0.running.count }) job(s) finishing")
        wakeHeartbeatContinuation.yield()
    }

    /// Cancel running jobs (they are given back to the queue) and stop.
    public func stopNow() {
        let ids = state.withLock { s -> [String] in
            s.draining = true
            s.stopping = true
            return Array(s.running.keys)
        }
        for id in ids { runner.cancel(jobID: id) }
        wakeHeartbeatContinuation.yield()
    }

    var credentialsPath: String { configuration.dataDirectory + "/engine.json" }
    var workRoot: String { configuration.dataDirectory + "/work" }
    var api: String { configuration.server + "/api/v1" }

    /// Registers, then runs the heartbeat and the slots until drained. Call on an event loop.
    public func run() async throws {
        guard let loop = EventLoop.current else { preconditionFailure("EngineAgent.run must be called on an event loop") }
        do { try makeDirectory(workRoot) } catch { throw EngineError(error.message) }
        let queue: LocalQueue
        do { queue = try await LocalQueue.open(path: configuration.dataDirectory + "/engine.sqlite") } catch {
            throw EngineError("cannot open the engine's queue in \(configuration.dataDirectory): \(error)")
        }
        local.withLock { $0 = queue }
        defer { local.withLock { $0 = nil } }
        let reloaded = try await queue.all()
        var resumable: [Lease] = []
        for row in reloaded {
            guard let doc = try? JSONDocument(parsing: row.specText), let spec = try? JobSpec.decode(doc.root) else {
                try? await queue.finished(row.jobID)
                continue
            }
            resumable.append(Lease(jobID: row.jobID, epoch: row.epoch, spec: spec, specText: row.specText))
        }
        if !resumable.isEmpty {
            logger.info("resuming \(resumable.count) job(s) from the local queue: \(resumable.map(\.jobID).joined(separator: ", "))")
        }
        // Listed in the first heartbeat, so the server does not take them back meanwhile.
        state.withLock { s in
            s.resumable = resumable
            for l in resumable { s.running[l.jobID] = Running(epoch: l.epoch) }
        }
        var cfg = HTTPClientConfiguration()
        cfg.readTimeout = .seconds(Int64(configuration.leaseWaitSeconds) + 30)
        cfg.totalTimeout = .seconds(3_600)
        cfg.maxConnectionsPerOrigin = configuration.slots + 4
        let client = LoopBound(HTTPClient(configuration: cfg, loop: loop), loop: loop)
        try await register(client.value)
        let heartbeat = loop.spawn { [self] in await heartbeatLoop(client) }
        var slots: [Task<Void, any Error>] = []
        for i in 0..<max(1, configuration.slots) {
            slots.append(loop.spawn { [self] in await slotLoop(client, slot: i) })
        }
        let drainTimer = loop.spawn { [self, loop] in
            // Once draining, the running jobs get `drainTimeout` to finish.
            while !isDraining { try await loop.sleep(until: loop.now + .milliseconds(200)) }
            try await loop.sleep(until: loop.now + configuration.drainTimeout)
            if state.withLock({ !$0.running.isEmpty }) {
                logger.warning("drain timeout: cancelling the running jobs; they go back to the queue")
                stopNow()
            }
        }
        for s in slots { _ = try? await s.value }
        drainTimer.cancel()
        heartbeat.cancel()
        _ = try? await heartbeat.value
        // EngineOffline: the last heartbeat, holding nothing.
        _ = try? await sendHeartbeat(client.value, stateName: "offline")
        await client.value.shutdown()
        let (done, failed) = counts
        logger.info("offline: \(done) job(s) completed, \(failed) failed here")
    }

    // MARK: Registration and heartbeats

    func authorization(_ token: String) -> [(name: String, value: String)] { [("Authorization", "Bearer " + token)] }

    func register(_ client: HTTPClient) async throws {
        if let saved = EngineCredentials.load(credentialsPath), saved.server == configuration.server {
            state.withLock { $0.credentials = saved }
            if (try? await sendHeartbeat(client, stateName: "online")) == 200 {
                logger.info("engine \(saved.engineID): credentials from \(credentialsPath) accepted")
                return
            }
        }
        guard let join = configuration.joinToken, !join.isEmpty else {
            throw EngineError("no usable credentials in \(credentialsPath) and no join token: give --join-token or set SPOOL_JOIN_TOKEN")
        }
        var w = JSONWriter()
        w.beginObject()
        w.field("name", configuration.name)
        w.field("host", hostName())
        w.field("version", SpoolVersion.string)
        w.field("tags", configuration.tags)
        w.key("capabilities"); w.rawJSON(runner.capabilitiesJSON())
        if let saved = state.withLock({ $0.credentials }) {
            w.field("engine_id", saved.engineID)
            w.field("token", saved.token)
        }
        w.endObject()
        let r: ClientResponse
        do {
            r = try await client.execute(ClientRequest(method: "POST", url: api + "/engines/register",
                                                       headers: authorization(join) + [("Content-Type", "application/json")],
                                                       body: .bytes(Array(w.text.utf8))))
        } catch { throw EngineError("cannot reach the server at \(configuration.server): \(error)") }
        guard r.status == 201, let doc = try? JSONDocument(parsing: r.body), let id = try? doc.root["engine_id"]?.string(),
              let token = try? doc.root["token"]?.string() else {
            throw EngineError("registration refused (\(r.status)): \(String(decoding: r.body.prefix(500), as: UTF8.self))")
        }
        let creds = EngineCredentials(engineID: id, token: token, server: configuration.server)
        do { try creds.save(credentialsPath) } catch { throw EngineError(error.message) }
        let interval = (try? doc.root["heartbeat_interval_seconds"]?.double()) ?? 5
        state.withLock { s in
            s.credentials = creds
            s.heartbeatSeconds = max(0.5, min(60, interval))
            s.sentCapabilities = runner.capabilitiesJSON()
        }
        logger.info("registered as engine \(id) with \(configuration.server)")
    }

    /// Posts one heartbeat; returns the status.
    @discardableResult
    func sendHeartbeat(_ client: HTTPClient, stateName: String? = nil) async throws -> Int {
        guard let creds = state.withLock({ $0.credentials }) else { return 0 }
        let sample = monitor.sample()
        let load = sample.cpus > 0 ? sample.loadAverage1m / Double(sample.cpus) : 0
        let busy = overloaded(sample)
        let caps = runner.capabilitiesJSON()
        let (name, running, sendCaps) = state.withLock { s -> (String, [String], Bool) in
            s.busy = busy
            let n = stateName ?? (s.draining ? "draining" : busy ? "busy" : "online")
            return (n, Array(s.running.keys).sorted(), s.sentCapabilities != caps)
        }
        var w = JSONWriter()
        w.beginObject()
        w.field("state", name)
        w.field("load", min(1_000, max(0, load.isFinite ? load : 0)))
        w.field("running", stateName == "offline" ? [] : running)
        if sendCaps { w.key("capabilities"); w.rawJSON(caps) }
        w.endObject()
        let r = try await client.execute(ClientRequest(method: "POST", url: api + "/engines/\(creds.engineID)/heartbeat",
                                                       headers: authorization(creds.token) + [("Content-Type", "application/json")],
                                                       body: .bytes(Array(w.text.utf8)), timeout: .seconds(15)))
        if r.status == 200 && sendCaps { state.withLock { $0.sentCapabilities = caps } }
        return r.status
    }

    func heartbeatLoop(_ client: LoopBound<HTTPClient>) async {
        let loop = client.loop
        // Wakes early on drain/stop so the server hears at once.
        let wake = loop.spawn { [self] in for await _ in wakeHeartbeat { _ = try? await sendHeartbeat(client.value) } }
        defer { wake.cancel() }
        while !Task.isCancelled {
            let seconds = state.withLock { $0.heartbeatSeconds }
            do { try await loop.sleep(until: loop.now + .milliseconds(Int64(seconds * 1000))) } catch { return }
            do {
                let status = try await sendHeartbeat(client.value)
                if status == 401 || status == 404 {
                    logger.warning("the server no longer knows this engine (\(status)): registering again")
                    try? await register(client.value)
                }
            } catch {
                logger.warning("heartbeat failed: \(error)")
            }
        }
    }

    /// Over the configured limits (then the engine reports busy and leases nothing).
    func overloaded(_ s: ResourceSample) -> Bool {
        let perCPU = s.cpus > 0 ? s.loadAverage1m / Double(s.cpus) : 0
        if perCPU > configuration.maxLoadPerCPU { return true }
        if s.memoryTotalBytes > 0 && s.memoryAvailableBytes < configuration.minMemoryAvailableBytes { return true }
        if let wait = IOWait.fraction(), wait > configuration.maxIOWaitFraction { return true }
        return false
    }

    // MARK: Slots

    func slotLoop(_ client: LoopBound<HTTPClient>, slot: Int) async {
        let loop = client.loop
        var failures = 0
        while !isDraining {
            if state.withLock({ $0.busy }) {
                try? await loop.sleep(until: loop.now + .seconds(1))
                continue
            }
            do {
                let next = state.withLock { s -> Lease? in s.resumable.isEmpty ? nil : s.resumable.removeFirst() }
                if let resumed = next {
                    await execute(client, resumed, resumed: true)
                    continue
                }
                guard let lease = try await lease(client.value) else { failures = 0; continue }
                failures = 0
                if isDraining {
                    try? await report(client.value, lease, "fail", body: failBody(reason: "engine draining", requeue: true))
                    try? await local.withLock({ $0 })?.finished(lease.jobID)
                    break
                }
                await execute(client, lease)
            } catch {
                failures += 1
                logger.warning("slot \(slot): lease failed: \(error)")
                let backoff = min(10_000, 250 << min(failures, 6))
                try? await loop.sleep(until: loop.now + .milliseconds(Int64(backoff)))
            }
        }
    }

    struct Lease: Sendable {
        var jobID: String
        var epoch: Int64
        var spec: JobSpec
        /// The spec as the server sent it (kept in the local queue).
        var specText: String
    }

    func lease(_ client: HTTPClient) async throws -> Lease? {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        let r = try await client.execute(ClientRequest(method: "POST", url: api + "/engines/\(creds.engineID)/lease?wait=\(configuration.leaseWaitSeconds)",
                                                       headers: authorization(creds.token)))
        switch r.status {
        case 204: return nil
        case 200: break
        default: throw EngineError("lease answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))")
        }
        guard let doc = try? JSONDocument(parsing: r.body), let epoch = try? doc.root["lease_epoch"]?.int64(),
              let id = try? doc.root["job"]?["id"]?.string(), let specValue = doc.root["spec"] else {
            throw EngineError("the lease answer is not a lease")
        }
        let spec: JobSpec
        do { spec = try JobSpec.decode(specValue) } catch {
            // A spec this engine cannot read: fail it (counted), do not loop on it.
            let bad = Lease(jobID: id, epoch: epoch, spec: JobSpec(inputFileID: FileID("file_00000000000000000000000000")!, outputs: .preset("")),
                            specText: specValue.rawText)
            try? await report(client, bad, "fail", body: failBody(reason: "invalid_settings: \(error.message)", requeue: false))
            return nil
        }
        let lease = Lease(jobID: id, epoch: epoch, spec: spec, specText: specValue.rawText)
        // Recorded (committed) before any work starts on it.
        if let queue = local.withLock({ $0 }) {
            do { try await queue.received(LocalJob(jobID: id, epoch: epoch, specText: lease.specText, starts: 0), at: Int64(SystemClock.shared.unixMilliseconds)) } catch {
                logger.error("job \(id): not recorded in the local queue (\(error)); giving it back")
                try? await report(client, lease, "fail", body: failBody(reason: "engine could not record the lease", requeue: true))
                return nil
            }
        }
        return lease
    }

    /// One job, start to end. Never throws: every outcome is reported (or, when the lease
    /// is lost, deliberately not).
    func execute(_ client: LoopBound<HTTPClient>, _ lease: Lease, resumed: Bool = false) async {
        let loop = client.loop
        let work = workRoot + "/" + lease.jobID
        removeTree(work)
        defer { removeTree(work) }
        state.withLock { $0.running[lease.jobID] = Running(epoch: lease.epoch) }
        defer { state.withLock { _ = $0.running.removeValue(forKey: lease.jobID) } }
        let queue = local.withLock { $0 }
        // Once the server has the outcome (or the lease is gone), the local record goes.
        var settled = false
        let starts = (try? await queue?.started(lease.jobID)) ?? 1
        logger.info("job \(lease.jobID) (epoch \(lease.epoch)): \(resumed ? "resumed from the local queue" : "started")\(starts > 1 ? " (start \(starts) here)" : "")")
        if starts > LocalQueue.maxStarts {
            try? await report(client.value, lease, "fail",
                              body: failBody(reason: "engine_restarts: started \(starts - 1) times on this engine without finishing", requeue: false))
            try? await queue?.finished(lease.jobID)
            return
        }
        do {
            try makeDirectory(work)
            let input = work + "/input"
            try await download(client.value, lease, to: input)
            let reporter = loop.spawn { [self] in await progressLoop(client, lease) }
            let result: RunnerResult
            do {
                result = try await runner.run(RunnerJob(jobID: lease.jobID, spec: lease.spec, inputPath: input,
                                                        outputDirectory: work + "/out", threads: configuration.threads)) { [self] p in
                    state.withLock { $0.running[lease.jobID]?.progress = p }
                }
            } catch {
                reporter.cancel()
                throw error
            }
            reporter.cancel()
            var outputs: [(name: String, fileID: String)] = []
            for name in outputFiles(under: work + "/out") {
                outputs.append((name, try await upload(client.value, lease, path: work + "/out/" + name, name: name)))
            }
            var w = JSONWriter()
            w.beginObject()
            w.field("lease_epoch", lease.epoch)
            w.key("outputs")
            w.beginArray()
            for o in outputs { w.beginObject(); w.field("name", o.name); w.field("file_id", o.fileID); w.endObject() }
            w.endArray()
            w.key("quality_report"); if let q = result.qualityReportJSON { w.rawJSON(q) } else { w.null() }
            w.field("work", result.work)
            w.endObject()
            try await report(client.value, lease, "complete", body: w.text)
            settled = true
            state.withLock { $0.completed += 1 }
            logger.info("job \(lease.jobID): completed (\(outputs.count) output file(s))")
        } catch let e as StaleLease {
            settled = true
            runner.cancel(jobID: lease.jobID)
            logger.warning("job \(lease.jobID): \(e.description); its work is dropped")
        } catch {
            let stopping = state.withLock { $0.stopping }
            let failure = (error as? TranscodeFailure)
            let requeue = stopping && (failure?.isCancelled ?? true)
            let reason = failure.map { "\($0.code): \($0.message)" } ?? String(describing: error)
            state.withLock { $0.failed += requeue ? 0 : 1 }
            logger.warning("job \(lease.jobID): \(requeue ? "given back (stopping)" : "failed"): \(reason)")
            do {
                try await report(client.value, lease, "fail", body: failBody(reason: reason, requeue: requeue))
                settled = true
            } catch is StaleLease {
                settled = true
            } catch {
                // The server did not hear it: the record stays, and the next start resumes the job.
            }
        }
        if settled { try? await queue?.finished(lease.jobID) }
    }

    func failBody(reason: String, requeue: Bool) -> String {
        var w = JSONWriter()
        w.beginObject()
        w.field("reason", String(reason.prefix(900)))
        w.field("requeue", requeue)
        w.endObject()
        return w.text
    }

    /// Reports progress at most once a second, when it changed.
    func progressLoop(_ client: LoopBound<HTTPClient>, _ lease: Lease) async {
        let loop = client.loop
        while !Task.isCancelled {
            do { try await loop.sleep(until: loop.now + .seconds(1)) } catch { return }
            guard let (p, last) = state.withLock({ s -> (TranscodeProgress, Double)? in
                guard let r = s.running[lease.jobID], let p = r.progress else { return nil }
                return (p, r.reported)
            }) else { continue }
            let percent = min(99.9, (p.fraction ?? 0) * 100)
            guard percent != last else { continue }
            var w = JSONWriter()
            w.beginObject()
            w.field("lease_epoch", lease.epoch)
            w.field("progress", percent)
            w.field("fps", p.fps.isFinite ? p.fps : 0)
            w.field("speed", p.speed.isFinite ? p.speed : 0)
            w.key("eta_seconds"); if let eta = p.etaSeconds, eta.isFinite { w.double(eta) } else { w.null() }
            w.endObject()
            do {
                try await report(client.value, lease, "progress", body: w.text)
                state.withLock { $0.running[lease.jobID]?.reported = percent }
            } catch is StaleLease {
                runner.cancel(jobID: lease.jobID)
                return
            } catch {
                logger.debug("progress report failed: \(error)")
            }
        }
    }

    struct StaleLease: Error, CustomStringConvertible { var description: String }

    /// POST engines/ID/jobs/JOB/WHAT with the epoch; a 409 is a lost lease.
    func report(_ client: HTTPClient, _ lease: Lease, _ what: String, body: String) async throws {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        let url = api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/\(what)?lease_epoch=\(lease.epoch)"
        let r = try await client.execute(ClientRequest(method: "POST", url: url,
                                                       headers: authorization(creds.token) + [("Content-Type", "application/json")],
                                                       body: .bytes(Array(body.utf8)), timeout: .seconds(60)))
        if r.status == 409 { throw StaleLease(description: "lease lost: \(String(decoding: r.body.prefix(300), as: UTF8.self))") }
        guard (200..<300).contains(r.status) else {
            throw EngineError("\(what) answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))")
        }
    }

    func download(_ client: HTTPClient, _ lease: Lease, to path: String) async throws {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw EngineError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var written: Int64 = 0
        let head = try await client.execute(ClientRequest(url: api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/input?lease_epoch=\(lease.epoch)",
                                                          headers: authorization(creds.token))) { bytes in
            var off = 0
            while off < bytes.count {
                let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
                if n < 0 { if errno == EINTR { continue }; throw EngineError("writing \(path): \(String(cString: strerror(errno)))") }
                off += n
            }
            written += Int64(bytes.count)
        }
        if head.status == 409 { throw StaleLease(description: "lease lost before the input was read") }
        guard head.status == 200 else { throw EngineError("input download answered \(head.status)") }
        if let len = head.header("Content-Length").flatMap(Int64.init), len != written {
            throw EngineError("input download ended after \(written) of \(len) bytes")
        }
    }

    func upload(_ client: HTTPClient, _ lease: Lease, path: String, name: String) async throws -> String {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        let url = api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/outputs?lease_epoch=\(lease.epoch)&name=\(name)"
        let r = try await client.execute(ClientRequest(method: "POST", url: url, headers: authorization(creds.token), body: .stream { writer in
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw EngineError("cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 256 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw EngineError("reading \(path): \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                try await writer.write(Array(buffer[..<n]))
            }
        }))
        if r.status == 409 { throw StaleLease(description: "lease lost while uploading \(name)") }
        guard r.status == 201, let doc = try? JSONDocument(parsing: r.body), let id = try? doc.root["file_id"]?.string() else {
            throw EngineError("output upload of \(name) answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))")
        }
        return id
    }
}

func hostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    guard gethostname(&buf, 255) == 0 else { return "localhost" }
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The share of CPU time spent waiting for I/O since the previous call (/proc/stat).
enum IOWait {
    static let last = Mutex<(total: UInt64, iowait: UInt64)?>(nil)

    static func fraction() -> Double? {
        guard let text = ProcFile.read("/proc/stat", limit: 64 << 10), let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard fields.count >= 5 else { return nil }
        let total = fields.reduce(0, +), iowait = fields[4]
        return last.withLock { prev in
            defer { prev = (total, iowait) }
            guard let p = prev, total > p.total else { return nil }
            return Double(iowait &- p.iowait) / Double(total - p.total)
        }
    }
}
