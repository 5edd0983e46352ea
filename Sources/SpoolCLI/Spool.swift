// The `spool` executable: one binary for every role: version, kernel-check, serve, and the
// local media commands (transcode, probe, synthesize), engine, up, submit and jobs.
import ArgumentParser
import Dispatch
import BufferPool
import JSON
import Lifecycle
import Ring
import Sandbox
import Threads
import SpoolAPI
import Dispatcher
import ServerConfig
import Logging
import SpoolModel
import Web
#if canImport(Glibc)
import Glibc
#endif

@main
struct Spool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool",
        abstract: "Spool: a distributed video transcoding system on io_uring.",
        version: SpoolVersion.string,
        subcommands: [Serve.self, Up.self, EngineCommand.self, Submit.self, JobsCommand.self, Transcode.self, Probe.self, Synthesize.self, Capabilities.self, GatewayCommand.self, ClusterCommand.self, Version.self, KernelCheck.self, EchoServerCommand.self, RunWithoutIOURing.self, Worker.self]
    )

    /// Parses, settles what signals do for the chosen command, then runs it. SIGTERM,
    /// SIGINT and SIGHUP have been caught since before main (CProcessStart), so one that
    /// arrives while parsing or starting up waits: a `StopsGracefully` command takes it
    /// on its signal thread; any other command gets the start-up dispositions back
    /// (the signal then acts as it would have).
    nonisolated static func main() async {
        // `spool worker` is started once per sandboxed job (issue 13: start under 50 ms). Its
        // one form takes no arguments, so it skips the argument parser, whose building of
        // the command tree (type names by reflection, protocol conformance scans over ~150
        // loaded libraries) costs a few milliseconds at start and more at a failed job's
        // exit (the error message machinery). Any other form (`worker --help`) goes
        // through the parser as usual.
        if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "worker" {
            ProcessSignals.restoreDefaults()
            Glibc.exit(Worker.serveOneRequest())
        }
        // Every logger writes to standard error at the configured log_level (ProcessLogLevel).
        LoggingSystem.bootstrap(LevelledLogHandler.init)
        do {
            var command = try parseAsRoot()
            if !(command is StopsGracefully) { ProcessSignals.restoreDefaults() }
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// A long-running command that takes SIGTERM/SIGINT/SIGHUP itself (ShutdownSignal.install()
/// first thing in run): a graceful stop on the first, an immediate one on the second.
protocol StopsGracefully: SendableMetatype {}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the Spool version and runtime facts.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let release = KernelFacts.release
        if json {
            print(VersionInfo(version: SpoolVersion.string, kernel: release).jsonText)
        } else {
            print("spool \(SpoolVersion.string) (kernel \(release))")
        }
    }
}

struct KernelCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel-check",
        abstract: "Report whether io_uring can run here, and which I/O backend Spool would use.",
        discussion: "Exit status: 0 io_uring fully usable; 77 usable but optional features missing; 1 unusable (the epoll fallback runs)."
    )

    @Flag(help: "Install a seccomp filter that blocks io_uring first (shows what Docker's default profile does).")
    var simulateSeccomp = false

    @Flag(help: "Also start an event loop and report the backend it actually chose.")
    var startLoop = false

    func run() throws {
        if simulateSeccomp {
            do { try KernelReport.denyIOUringWithSeccomp() } catch {
                print("could not install the seccomp filter: \(error)")
                throw ExitCode(2)
            }
        }
        let report = KernelReport.collect()
        print(report.render())
        // What a transcode is confined with (see `spool engine --sandbox`).
        print("  transcode sandbox:       \(ConfinementReport.probe())")
        if startLoop {
            do {
                let loop = try EventLoop.start()
                print("  started loop:            \(loop.backendKind): \(loop.backendSummary)")
                loop.shutdown()
            } catch {
                print("  started loop:            FAILED: \(error)")
                throw ExitCode(1)
            }
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

/// `spool run-without-io-uring -- CMD ARGS...`: runs a command under a seccomp filter that
/// makes io_uring_setup/enter/register fail with EPERM, as Docker's default profile does.
/// `make test` runs the runtime suite this way to prove the automatic fallback.
struct RunWithoutIOURing: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-without-io-uring",
        abstract: "Run a command with io_uring blocked by seccomp (to test the epoll fallback)."
    )

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.")
    var command: [String] = []

    func run() throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard let program = argv.first else {
            throw ValidationError("name a command to run, e.g. spool run-without-io-uring -- swift test")
        }
        try KernelReport.denyIOUringWithSeccomp()
        // execvp takes C strings: strdup'd copies, never freed (execvp replaces the
        // process; if it fails, the command throws and the process exits).
        var cargs: [UnsafeMutablePointer<CChar>?] = unsafe argv.map { unsafe strdup($0) }
        unsafe cargs.append(nil)
        unsafe execvp(program, &cargs)
        let e = errno
        throw ValidationError(unsafe "could not run \(program): \(String(cString: strerror(e)))")
    }
}

/// `spool echo --listen HOST:PORT`: a diagnostic TCP echo server on the Spool runtime,
/// used by the benchmarks (against a C liburing yardstick) and for smoke tests.
struct EchoServerCommand: ParsableCommand, StopsGracefully {
    static let configuration = CommandConfiguration(
        commandName: "echo",
        abstract: "Run a TCP echo server on the Spool runtime (diagnostics and benchmarks)."
    )

    @Option(help: "Address to listen on.")
    var listen = "127.0.0.1:7000"

    @Option(help: "Event loops (threads), each with its own SO_REUSEPORT listener.")
    var loops = 1

    @Option(name: .customLong("pool-mib"), help: "Buffer pool cap per loop, in MiB.")
    var poolMiB = 64

    func validate() throws {
        guard loops >= 1 && loops <= 256 else { throw ValidationError("--loops must be 1...256") }
        guard poolMiB >= 1 else { throw ValidationError("--pool-mib must be at least 1") }
    }

    func run() throws {
        let shutdown = ShutdownSignal.install()
        let address = try SocketAddress(listen)
        var config = EventLoop.Configuration()
        config.pool = BufferPoolConfiguration(bufferSizeBytes: 16 * 1024, memoryCapBytes: poolMiB << 20)
        var started: [EventLoop] = []
        for i in 0..<loops {
            let loop = try EventLoop.start(id: i, configuration: config)
            started.append(loop)
            let ready = ConditionLock(false)
            loop.spawn {
                let listener: TCPListener
                do { listener = try TCPListener(address: address, exclusive: i == 0) } catch {
                    print("echo: \(error)")
                    Glibc.exit(1)
                }
                ready.change { $0 = true }
                while true {
                    guard let conn = try? await listener.accept() else { continue }
                    EchoConnection(conn).start()
                }
            }
            ready.wait(until: { $0 }) { _, _ in }
        }
        print("echo: listening on \(address) with \(loops) loop(s), backend \(started[0].backendKind)")
        fflush(nil)
        let stopped = ConditionLock(false)
        shutdown.onSignal { _ in stopped.change { $0 = true } }
        stopped.wait(until: { $0 }) { _, _ in }
        print("echo: \(ProcessSignals.name(shutdown.received ?? SIGTERM)) received: stopped")
        fflush(nil)
        // Connections are dropped with the process: an echo server has nothing to drain.
    }
}

/// One echo connection, driven by completions on its loop (no task per piece): each
/// received buffer is queued back to the socket as it arrives (TCPConnection's callback
/// layer: receiveContinuously, sendQueued). Memory stays within the loop's pool: when every
/// buffer is held by connections that do not read, receives wait for one; a piece the peer
/// does not take within `sendTimeout` ends its connection.
final class EchoConnection {
    static let sendTimeout: Duration = .seconds(30)
    /// The same in nanoseconds, converted once: each piece is queued with it.
    static let sendTimeoutNanoseconds = sendTimeout.nanosecondsClamped
    let conn: TCPConnection
    private var ending = false

    init(_ conn: TCPConnection) { self.conn = conn }

    func start() {
        conn.followsTaskCancellation = false
        conn.receiveContinuously(onData: { [self] piece in
            do { try conn.sendQueued(piece, timeoutNanoseconds: Self.sendTimeoutNanoseconds) } catch { end() }
        }, onEnd: { [self] _ in end() })
    }

    /// Delivers what is queued (the peer may have only half-closed), then closes.
    private func end() {
        guard !ending else { return }
        ending = true
        let me = LoopBound(self, loop: conn.loop)
        conn.loop.spawn {
            let c = me.value.conn
            try? await c.flushSends()
            await c.close()
        }
    }
}

/// `spool serve --listen HOST:PORT --data-dir DIR [--config FILE]`: the dispatch server
/// (Dispatcher's routes on the ring; SQLite and local storage in the data directory).
/// Settings come from the file, then SPOOL_* environment, then these flags; SIGHUP (or a
/// changed file) reloads the reloadable ones.
struct Serve: AsyncParsableCommand, StopsGracefully {
    static let configuration = CommandConfiguration(abstract: "Run the dispatch server (HTTP API under /api/v1).")

    @Option(help: "Address to listen on (HOST:PORT; IPv6 as [::1]:PORT). Default 127.0.0.1:8080.")
    var listen: String?

    @Option(help: "Directory for Spool's data (created if missing): database, files, keys.")
    var dataDir: String?

    @Option(help: "Event loops (default: one per core).")
    var loops: Int?

    @Option(help: "A JSON configuration file (keys: see README); SPOOL_* variables and flags override it.")
    var config: String?

    @Option(help: "The job queue: redis://[[user]:password@]host[:port][/db] for Redis Streams shared by several dispatchers (default: in-process).")
    var queueURL: String?

    @Option(help: "The database: postgres://user[:password]@host[:port]/db for PostgreSQL shared by several dispatchers (default: SQLite in the data directory).")
    var databaseURL: String?

    @Option(help: "Where file contents live: local (the data directory, default) or s3 (the storage.s3_* settings, e.g. SPOOL_STORAGE_S3_ENDPOINT).")
    var storage: String?

    @Flag(help: "Serve the API without keys: every caller is an admin of tenant `default` (tests, local use).")
    var insecureNoAuth = false

    func run() async throws {
        // First, before any socket listens: a stop signal from now on (or one pending
        // since start) gives a graceful stop once the server is up; SIGHUP means reload.
        let shutdown = ShutdownSignal.install()
        let reloadRequests = shutdown.reloadRequests()
        var flags: [String: String] = [:]
        if let listen { flags["listen"] = listen }
        if let dataDir { flags["data_dir"] = dataDir }
        if let loops { flags["loops"] = String(loops) }
        if insecureNoAuth { flags["insecure_no_auth"] = "true" }
        if let queueURL { flags["queue.url"] = queueURL }
        if let databaseURL { flags["database.url"] = databaseURL }
        if let storage { flags["storage.backend"] = storage }
        let loader = ConfigLoader(filePath: config, flags: flags)
        let running = try await RunningDispatch.start(loader: loader, environment: ConfigLoader.processEnvironment(),
                                                      reloadRequests: reloadRequests, label: "spool.serve")
        let settings = running.settings, dataDir = settings.dataDirectory
        print("spool: serving \(running.url)/api/v1 with \(settings.loops) loop(s); data in \(dataDir)\(settings.insecureNoAuth ? "; NO AUTHENTICATION (--insecure-no-auth)" : "")")
        fflush(nil)
        let signal = await shutdown.wait()
        print("spool: \(ProcessSignals.name(signal)) received: draining (a second signal stops at once)")
        fflush(nil)
        await running.stop()
        print("spool: stopped")
        fflush(nil)
    }
}
