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
    /// Over any of these the engine is busy: 1-minute load per CPU, memory available, I/O
    /// wait (the busiest disk's share of time with I/O in flight).
    public var maxLoadPerCPU = 4.0
    public var minMemoryAvailableBytes: Int64 = 128 << 20
    public var maxIOWaitFraction = 0.5
    /// After `drain()`, running jobs are cancelled and requeued past this.
    public var drainTimeout: Duration = .seconds(600)
    /// Download inputs first or stream them into the transcode (M29; InputDecision).
    public var inputPolicy = InputPolicy()

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
        /// Moving average of input download throughput (bytes/s), once measured.
        var downloadBytesPerSecond: Double?
        var sentCapabilities = ""
        var completed = 0
        var failed = 0
        /// Jobs reloaded from the local queue at start, to resume before leasing new ones.
        var resumable: [Lease] = []
        /// Whether the dispatcher takes outputs written straight into its store (nil: not
        /// asked yet; DirectOutputUpload).
        var directUploads: Bool?
    }

    public let configuration: EngineConfiguration
    let runner: any TranscodeRunner
    let monitor: any ResourceMonitorPlugin
    let logger: Logger
    let state = Mutex(State())
    let wakeHeartbeat: AsyncStream<Void>
    let wakeHeartbeatContinuation: AsyncStream<Void>.Continuation
    let local = Mutex<LocalQueue?>(nil)
    /// Blocking writes into streamed inputs' FIFOs and reads from streamed outputs' (two per
    /// streamed job at most), kept off the shared blocking pool: each waits as long as its
    /// transcode does.
    let streamPool: BlockingPool

    public init(configuration: EngineConfiguration, runner: any TranscodeRunner, monitor: any ResourceMonitorPlugin,
                logger: Logger = Logger(label: "spool.engine")) {
        self.configuration = configuration
        self.runner = runner
        self.monitor = monitor
        self.logger = logger
        // Per streamed job: the input's writer and the output's reader.
        streamPool = BlockingPool(BlockingPool.Configuration(maxThreads: 2 * max(1, configuration.slots)))
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
        // With S3 storage the dispatcher answers an input request with a 307 to a presigned
        // URL; the engine's key is not sent there (the client drops Authorization when the
        // origin changes).
        cfg.followRedirects = true
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
}
