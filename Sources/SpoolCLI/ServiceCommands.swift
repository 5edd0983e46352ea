// The service commands: `spool engine` (a transcoding engine joining a dispatcher) and
// `spool up` (a dispatcher and N engines in one process, on the embedded defaults).
import Access
import ArgumentParser
import BufferPool
import CProcessStart
import Dispatcher
import EngineRuntime
import HostMetrics
import Lifecycle
import Logging
import Media
import ProcFS
import Ring
import ServerConfig
import SpoolModel
import Threads
import Web
#if canImport(Glibc)
import Glibc
#endif

/// `spool engine --server URL --join-token TOKEN --data-dir DIR`.
struct EngineCommand: AsyncParsableCommand, StopsGracefully {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Run a transcoding engine that takes jobs from a dispatch server.",
        discussion: """
            The engine registers with the join token (or SPOOL_JOIN_TOKEN), keeps its id and token in \
            DATA/engine.json (mode 0600) and reuses them when it restarts. SIGTERM/SIGINT drain: no new \
            leases, running jobs finish, then the engine reports offline and exits 0; a second signal cancels the \
            running jobs and gives them back to the queue; a third stops at once.
            """
    )

    @Option(help: "The dispatch server's URL (default: SPOOL_SERVER, else http://127.0.0.1:8080).")
    var server: String?

    @Option(help: "The join token (default: SPOOL_JOIN_TOKEN). Not needed once registered.")
    var joinToken: String?

    @Option(help: "Directory for the engine's credentials and work files (created if missing).")
    var dataDir: String = "./spool-engine"

    @Option(help: "The engine's name (default: the host name).")
    var name: String?

    @Option(name: .customLong("tag"), help: "A tag jobs may require (GPU:0, CPU_Set:1-4, or your own); repeatable.")
    var tags: [String] = []

    @Option(help: "Jobs run at once.")
    var slots: Int = 1

    @Option(help: "Codec threads per transcode (0: automatic).")
    var threads: Int32 = 0

    @Option(help: "Busy (no new leases) above this 1-minute load per CPU.")
    var maxLoadPerCpu: Double = 4.0

    @Option(help: "Seconds running jobs get to finish after a stop signal before they are cancelled and requeued.")
    var drainTimeout: Int = 600

    @Option(help: "Busy (no new leases) below this much available memory, in MiB.")
    var minFreeMemoryMib: Int = 128

    @Option(help: "Busy (no new leases) above this share of time the busiest disk has I/O in flight (0...1, /proc/diskstats).")
    var maxIoWait: Double = 0.5

    @Option(help: """
        How inputs reach the transcode: auto (streamed when the disk is short, or when large and the network keeps up; \
        else downloaded first), download, or stream (when the job and its container allow it).
        """)
    var inputMode: String = "auto"

    @Option(help: "In auto mode, inputs at least this large (MiB) are streamed when the network keeps up.")
    var streamMinMib: Int = 2048

    @OptionGroup var sandboxOptions: SandboxOptions

    func validate() throws {
        guard InputMode(rawValue: inputMode) != nil else {
            throw ValidationError("--input-mode must be one of \(InputMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard streamMinMib >= 0 else { throw ValidationError("--stream-min-mib must be 0 or more") }
        guard (1...64).contains(slots) else { throw ValidationError("--slots must be 1...64") }
        guard (0...64).contains(threads) else { throw ValidationError("--threads must be 0...64") }
        guard maxLoadPerCpu > 0 else { throw ValidationError("--max-load-per-cpu must be above 0") }
        guard minFreeMemoryMib >= 0 else { throw ValidationError("--min-free-memory-mib must be 0 or more") }
        guard (0...1).contains(maxIoWait) else { throw ValidationError("--max-io-wait must be 0...1") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be 0 or more") }
        for t in tags where t.isEmpty || t.utf8.count > 64 { throw ValidationError("--tag must be 1 to 64 characters") }
    }

    func run() async throws {
        let shutdown = ShutdownSignal.install()
        let env = ConfigLoader.processEnvironment()
        var config = EngineConfiguration(server: server ?? env["SPOOL_SERVER"] ?? "http://127.0.0.1:8080",
                                         joinToken: joinToken ?? env["SPOOL_JOIN_TOKEN"], dataDirectory: dataDir,
                                         name: name ?? "engine")
        if name == nil { config.name = hostName() }
        config.tags = tags
        config.slots = slots
        config.threads = threads
        config.maxLoadPerCPU = maxLoadPerCpu
        config.drainTimeout = .seconds(Int64(drainTimeout))
        config.minMemoryAvailableBytes = Int64(minFreeMemoryMib) << 20
        config.maxIOWaitFraction = maxIoWait
        config.inputPolicy.mode = InputMode(rawValue: inputMode) ?? .auto
        config.inputPolicy.streamMinBytes = Int64(streamMinMib) << 20
        let runner = try sandboxOptions.makeRunner(tags: tags, label: "spool engine", spareDirectory: dataDir + "/sandbox", concurrentJobs: slots)
        let agent = EngineAgent(configuration: config, runner: runner,
                                monitor: ProcResourceMonitor(), logger: Logger(label: "spool.engine"))
        try applyAffinity(tags)
        let loop = try EventLoop.start()
        defer { loop.shutdown() }
        shutdown.onSignal { signal in
            StandardError.write("spool engine: \(ProcessSignals.name(signal)) received: draining (a second signal cancels the running jobs)\n")
            agent.drain()
        }
        // The second: running jobs are cancelled and given back to the queue, then exit.
        shutdown.onSecondSignal { _ in agent.stopNow() }
        let task = loop.spawn { try await agent.run() }
        do {
            try await task.value
        } catch {
            StandardError.write("spool engine: \(error)\n")
            throw ExitCode(1)
        }
        print("spool engine: stopped")
        fflush(nil)
    }
}

/// `spool up --listen ADDR --data-dir DIR --engines N`: the dispatcher and N engines in one
/// process on the embedded defaults (SQLite and local disk in DIR).
struct Up: AsyncParsableCommand, StopsGracefully {
    static let configuration = CommandConfiguration(
        abstract: "Run a dispatch server and N engines in one process (the embedded default).",
        discussion: """
            Writes DIR/server.url and DIR/admin.key so `spool submit --data-dir DIR` finds the server. \
            SIGTERM/SIGINT: the engines drain (running jobs finish), then the server stops.
            """
    )

    @Option(help: "Address to listen on (HOST:PORT).")
    var listen: String = "127.0.0.1:8080"

    @Option(help: "Directory for Spool's data (created if missing).")
    var dataDir: String = "./spool-data"

    @Option(help: "Engines to run in this process.")
    var engines: Int = 1

    @Option(help: "Jobs each engine runs at once.")
    var slots: Int = 1

    @Option(help: "Codec threads per transcode (0: automatic).")
    var threads: Int32 = 0

    @Option(help: "A JSON configuration file (as for `spool serve`).")
    var config: String?

    @OptionGroup var sandboxOptions: SandboxOptions

    func validate() throws {
        guard (0...64).contains(engines) else { throw ValidationError("--engines must be 0...64") }
        guard (1...64).contains(slots) else { throw ValidationError("--slots must be 1...64") }
    }

    func run() async throws {
        let shutdown = ShutdownSignal.install()
        var env = ConfigLoader.processEnvironment()
        let joinToken = env["SPOOL_JOIN_TOKEN"] ?? Hex.random(bytes: 24)
        env["SPOOL_JOIN_TOKEN"] = joinToken
        let loader = ConfigLoader(filePath: config, environment: env, flags: ["listen": listen, "data_dir": dataDir])
        let running = try await RunningDispatch.start(loader: loader, environment: env, reloadRequests: shutdown.reloadRequests(), label: "spool.up")
        let settings = running.settings, url = running.url

        // The engines: each on its own loop, registering over loopback like any remote engine.
        let runner = try sandboxOptions.makeRunner(tags: [], label: "spool up", spareDirectory: settings.dataDirectory + "/sandbox",
                                                   concurrentJobs: engines * slots)
        var agents: [EngineAgent] = []
        var loops: [EventLoop] = []
        var tasks: [Task<Void, any Error>] = []
        for i in 0..<engines {
            var c = EngineConfiguration(server: url, joinToken: joinToken, dataDirectory: settings.dataDirectory + "/engines/\(i + 1)",
                                        name: "local-\(i + 1)")
            c.slots = slots
            c.threads = threads
            c.leaseWaitSeconds = 5
            let agent = EngineAgent(configuration: c, runner: runner, monitor: ProcResourceMonitor(),
                                    logger: Logger(label: "spool.engine.\(i + 1)"))
            let loop = try EventLoop.start(id: 1_000 + i)
            agents.append(agent)
            loops.append(loop)
            tasks.append(loop.spawn { try await agent.run() })
        }
        let everyAgent = agents
        shutdown.onSecondSignal { _ in for a in everyAgent { a.stopNow() } }
        print("spool: up at \(url)/api/v1 with \(engines) engine(s); data in \(settings.dataDirectory) (server.url, admin.key)")
        fflush(nil)
        let signal = await shutdown.wait()
        print("spool: \(ProcessSignals.name(signal)) received: engines draining, then the server stops (a second signal cancels running jobs, a third stops at once)")
        fflush(nil)
        for a in agents { a.drain() }
        for t in tasks {
            do { try await t.value } catch { print("spool: an engine stopped with an error: \(error)") }
        }
        for l in loops { l.shutdown() }
        await running.stop()
        print("spool: stopped")
        fflush(nil)
    }
}

/// A dispatch server running on the ring (`serve`, `up`): the data directory checked,
/// the services opened, the admin key prepared, the HTTP server listening, the sweeps and
/// the scheduler running, reloads taken, DIR/server.url written.
struct RunningDispatch {
    let settings: ServerSettings
    let dispatch: DispatchServer
    let server: HTTPServer
    let url: String
    let background: Task<Void, Never>
    let reloading: Task<Void, Never>

    static func start(loader: ConfigLoader, environment: [String: String], reloadRequests: AsyncStream<Void>, label: String) async throws -> RunningDispatch {
        let settings: ServerSettings
        do { settings = try loader.load() } catch { throw ValidationError(error.description) }
        let dataDir = settings.dataDirectory
        let address: SocketAddress
        do { address = try SocketAddress(settings.listen) } catch { throw ValidationError("listen: \(error)") }
        // Unsafe only in the C signatures: Swift passes `dataDir` as a C string for the
        // call's duration, and strerror's text is copied at once.
        if unsafe mkdir(dataDir, 0o700) != 0 && errno != EEXIST {
            throw ValidationError(unsafe "data directory \(dataDir): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard unsafe stat(dataDir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw ValidationError("data directory \(dataDir) exists and is not a directory")
        }
        guard unsafe access(dataDir, W_OK) == 0 else { throw ValidationError("data directory \(dataDir) is not writable") }
        // A bad SPOOL_ADMIN_KEY is a configuration refused at start (exit 64), like a bad key.
        if !settings.insecureNoAuth, let given = environment["SPOOL_ADMIN_KEY"], let problem = AccessService.adminKeyProblem(given) {
            throw ValidationError(problem)
        }
        let live = LiveSettings(settings)
        ProcessLogLevel.set(named: settings.logLevel)
        let logger = Logger(label: label)
        let dispatch = try await DispatchServer.open(dataDirectory: dataDir, settings: live, logger: logger)
        if let shown = try await dispatch.prepareAdminKey(environment: environment) {
            print("spool: admin key (shown once; kept in \(dataDir)/admin.key, mode 0600): \(shown)")
        }
        var http = HTTPServerConfiguration(listen: address)
        http.loops = settings.loops
        http.bodyBytesMax = UInt64(settings.http.jsonBodyMaxBytes)
        http.bodyBytesMaxNow = { UInt64(live.current.http.jsonBodyMaxBytes) }   // reloadable
        http.refused = dispatch.metrics.refusalRecorder
        let server = HTTPServer(configuration: http, router: dispatch.makeRouter(), logger: logger)
        try await server.start()
        let background = Task { await dispatch.runBackground() }
        let reloader = Reloader(loader: loader, live: live, clock: SystemClock.shared, logger: logger)
        let reloading = Task { await reloader.run(requests: reloadRequests) }
        let url = "http://\(server.localAddress ?? address)"
        try writeServerURL(url, dataDirectory: dataDir)
        return RunningDispatch(settings: settings, dispatch: dispatch, server: server, url: url, background: background, reloading: reloading)
    }

    /// Drains the HTTP server (10 s grace), then stops the background work.
    func stop() async {
        reloading.cancel()
        await server.stop(grace: .seconds(10))
        background.cancel()
        _ = await background.value
        removeServerURL(url, dataDirectory: settings.dataDirectory)
    }
}

/// DIR/server.url: where a local server listens, for `spool submit --data-dir DIR`.
func writeServerURL(_ url: String, dataDirectory: String) throws {
    let path = dataDirectory + "/server.url"
    let fd = unsafe open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ValidationError("cannot write \(path)") }
    let bytes = Array((url + "\n").utf8)
    _ = unsafe bytes.withUnsafeBytes { unsafe write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

/// After a stop: DIR/server.url goes when it still names this server (a later server on
/// the same directory has written its own), so no client is sent to a port nobody serves.
func removeServerURL(_ url: String, dataDirectory: String) {
    let path = dataDirectory + "/server.url"
    guard let text = readSmall(path), text.trimmingWhitespace() == url else { return }
    _ = unsafe unlink(path)
}



/// The ids of this process's threads (/proc/self/task).
func threadIDs() -> [pid_t] {
    let out = ProcFile.directoryEntries("/proc/self/task").compactMap { pid_t($0) }
    return out.isEmpty ? [0] : out
}

/// CPU_Set:A-B[,C] tags pin this engine's threads (and the sandbox pins each transcode's
/// child); GPU:N selects the device hardware encoders open (CUDA_VISIBLE_DEVICES).
func applyAffinity(_ tags: [String]) throws {
    let (cpus, gpu) = try parseAffinityTags(tags)
    if !cpus.isEmpty {
        let list = cpus.map { Int32($0) }
        // Every thread the process has now (threads made later inherit from their maker).
        for tid in threadIDs() {
            guard unsafe list.withUnsafeBufferPointer({ unsafe spool_set_affinity(tid, $0.baseAddress, Int32($0.count)) }) == 0 else {
                throw ValidationError(unsafe "CPU_Set: sched_setaffinity failed: \(String(cString: strerror(errno)))")
            }
        }
    }
    if let gpu { unsafe setenv("CUDA_VISIBLE_DEVICES", gpu, 1) }
}
