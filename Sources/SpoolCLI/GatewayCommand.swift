// `spool gateway`: renders the nginx gateway (Gateway.NginxConfig) into DATA_DIR/gateway,
// makes its certificate authority and server certificate with openssl when they are missing
// (or the names changed), checks the configuration with `nginx -t`, then runs nginx in the
// foreground as its own child: the first stop signal is nginx's graceful stop (SIGQUIT:
// requests in flight finish), a second its fast stop (SIGTERM); SIGHUP renders again and
// reloads nginx. `--render-only` stops after the check (for `spool cluster up` and tests).
import ArgumentParser
import Gateway
import Lifecycle
import Sandbox
#if canImport(Glibc)
import Glibc
#endif

struct GatewayCommand: AsyncParsableCommand, StopsGracefully {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run nginx as the TLS gateway in front of one or more dispatchers (auth, rate limits, retries).")

    @Option(help: "Directory for Spool's data; the gateway lives in DATA_DIR/gateway (created if missing).")
    var dataDir: String = "spool-data"

    @Option(help: "Where clients connect over TLS 1.3 (HOST:PORT).")
    var listen: String = "127.0.0.1:8443"

    @Option(name: .customLong("upstream"), help: "A dispatcher's plain-HTTP address (HOST:PORT); repeatable.")
    var upstreams: [String] = []

    @Option(help: "A plain-HTTP listener for engines inside the trusted network (HOST:PORT; engine endpoints only).")
    var engineListen: String?

    @Option(name: .customLong("cert-name"), help: "A host name or IPv4 address the server certificate is valid for, beside the listen host; repeatable (default: localhost, 127.0.0.1).")
    var certificateNames: [String] = []

    @Option(help: "Requests per second per API key before 429.")
    var ratePerKey: Int = 50

    @Option(help: "Burst allowed above the per-key rate.")
    var burstPerKey: Int = 100

    @Option(help: "Requests per second per client address before 429, whatever the key.")
    var ratePerAddress: Int = 200

    @Option(help: "Burst allowed above the per-address rate.")
    var burstPerAddress: Int = 400

    @Option(help: "Failures (errors, timeouts) after which a dispatcher is left alone for --fail-timeout seconds.")
    var maxFails: Int = 2

    @Option(help: "Seconds over which --max-fails counts, and for which a failing dispatcher is left alone.")
    var failTimeout: Int = 5

    @Option(help: "nginx worker processes (\"auto\": one per core).")
    var workers: String = "auto"

    @Option(help: "Serve /media/KEY as a caching edge in front of this object store URL (http://HOST:PORT/BUCKET[/PREFIX]).")
    var mediaOrigin: String?

    @Option(help: "A file holding the media edge's secure_link secret (16 to 128 letters, digits, '-', '_'): /media URLs must be signed.")
    var mediaSecretFile: String?

    @Option(help: "The media cache's size on disk at most (MiB).")
    var mediaCacheMib: Int = 1_024

    @Option(help: "The nginx binary (default: nginx on PATH, else /usr/sbin/nginx).")
    var nginx: String?

    @Flag(help: "Render, make the certificates and check the configuration, then exit without starting nginx.")
    var renderOnly = false

    func run() async throws {
        let shutdown = ShutdownSignal.install()
        let plan = try makePlan()
        guard let nginxPath = nginx ?? locateProgram("nginx", extra: ["/usr/sbin", "/usr/local/sbin", "/sbin"]) else {
            throw ValidationError("nginx is not installed (Debian: apt-get install nginx-light; `make deps` installs it)")
        }
        guard let opensslPath = locateProgram("openssl", extra: []) else {
            throw ValidationError("openssl is not installed (Debian: apt-get install openssl)")
        }
        try render(plan, openssl: opensslPath, nginx: nginxPath)
        let paths = plan.paths
        if renderOnly {
            print("spool gateway: rendered \(paths.configuration) (checked by nginx -t); CA certificate \(paths.caCertificate)")
            return
        }
        let null = try openNull()
        let (child, exited) = try await ConfinedProcess.spawnLongLivedHelper(
            path: nginxPath, argv: ["nginx", "-p", paths.directory, "-c", paths.configuration, "-e", paths.errorLog],
            environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], fds: [null, 1, 2])
        close(null)
        print("spool gateway: nginx (pid \(child.pid)) serving https://\(plan.listen)/api/v1/ for \(plan.upstreams.map(\.description).joined(separator: ", ")); clients trust \(paths.caCertificate)")
        fflush(nil)
        shutdown.onSignal { signal in
            StandardError.write("spool gateway: \(ProcessSignals.name(signal)) received: nginx stops gracefully (a second signal stops it at once)\n")
            child.signal(SIGQUIT)
        }
        shutdown.onSecondSignal { _ in child.signal(SIGTERM) }
        let reloads = shutdown.reloadRequests()
        let reloader = Task {
            for await _ in reloads {
                do {
                    try render(plan, openssl: opensslPath, nginx: nginxPath)
                    child.signal(SIGHUP)
                    StandardError.write("spool gateway: SIGHUP: rendered again and reloaded nginx\n")
                } catch {
                    StandardError.write("spool gateway: SIGHUP: kept the running configuration: \(error)\n")
                }
            }
        }
        let status = await exited.value
        reloader.cancel()
        switch status {
        case .exited(0):
            print("spool gateway: nginx stopped")
        case .exited(let rc):
            StandardError.write("spool gateway: nginx ended with exit status \(rc) (log: \(paths.errorLog))\n")
            throw ExitCode(rc)
        case .signaled(let s):
            StandardError.write("spool gateway: nginx was killed by \(signalName(s)) (log: \(paths.errorLog))\n")
            throw ExitCode(1)
        }
    }

    func makePlan() throws -> GatewayPlan {
        do {
            let dir = try absolute(dataDir) + "/gateway"
            var plan = GatewayPlan(listen: try HostPort(listen, setting: "listen"),
                                   upstreams: try (upstreams.isEmpty ? ["127.0.0.1:8080"] : upstreams).map { u throws(GatewayError) in
                                       try HostPort(u, setting: "upstream")
                                   },
                                   directory: dir)
            plan.engineListen = try engineListen.map { e throws(GatewayError) in try HostPort(e, setting: "engine-listen") }
            if !certificateNames.isEmpty { plan.certificateNames = certificateNames }
            plan.ratePerKey = ratePerKey
            plan.burstPerKey = burstPerKey
            plan.ratePerAddress = ratePerAddress
            plan.burstPerAddress = burstPerAddress
            plan.maxFails = maxFails
            plan.failTimeoutSeconds = failTimeout
            plan.workers = workers
            if let mediaOrigin {
                var secret: String?
                if let mediaSecretFile {
                    guard let text = readSmallFile(mediaSecretFile) else { throw ValidationError("cannot read --media-secret-file \(mediaSecretFile)") }
                    secret = String(text.filter { !$0.isWhitespace })
                }
                var media = try MediaEdge(originURL: mediaOrigin, secret: secret)
                media.cacheMiB = mediaCacheMib
                plan.media = media
            } else if mediaSecretFile != nil {
                throw ValidationError("--media-secret-file needs --media-origin")
            }
            try plan.validate()
            return plan
        } catch let e as GatewayError {
            throw ValidationError(e.description)
        }
    }

    /// DATA_DIR made absolute (created 0700 if missing): nginx runs with its own prefix.
    func absolute(_ path: String) throws -> String {
        if unsafe mkdir(path, 0o700) != 0 && errno != EEXIST { throw ValidationError("cannot create \(path): errno \(errno)") }
        guard let real = unsafe realpath(path, nil) else { throw ValidationError("cannot resolve \(path)") }
        defer { unsafe free(real) }
        return unsafe String(cString: real)
    }

    /// The directory, certificates and configuration, checked by `nginx -t`.
    func render(_ plan: GatewayPlan, openssl: String, nginx: String) throws {
        let paths = plan.paths
        for dir in [paths.directory, paths.directory + "/logs", paths.temp] where unsafe mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw ValidationError("cannot create \(dir): errno \(errno)")
        }
        // Started as root, nginx's workers run as nobody: they must pass through the
        // directory to the temp and cache directories nginx makes for them (the keys and
        // everything else stay 0600/0700, unreadable to them).
        if geteuid() == 0 {
            for dir in [paths.directory, paths.temp] { _ = unsafe chmod(dir, 0o711) }
        }
        let log = paths.directory + "/logs/setup.log"
        var newAuthority = false
        if !exists(paths.caKey) || !exists(paths.caCertificate) {
            try runSteps(CertificateSteps.authority(paths), openssl: openssl, log: log)
            newAuthority = true
        }
        let extensions = CertificateSteps.serverExtensions(plan)
        if newAuthority || !exists(paths.serverKey) || !exists(paths.serverCertificate) || readSmallFile(paths.serverExtensions) != extensions {
            try writeAtomically(paths.serverExtensions, extensions)
            var rng = SystemRandomNumberGenerator()
            try runSteps(CertificateSteps.server(paths, serial: CertificateSteps.randomSerial(using: &rng)), openssl: openssl, log: log)
            _ = unsafe unlink(paths.serverRequest)
        }
        let text: String
        do { text = try NginxConfig.render(plan) } catch { throw ValidationError(error.description) }
        try writeAtomically(paths.configuration + ".new", text)
        let check = try runLogged(nginx, ["nginx", "-t", "-q", "-p", paths.directory, "-c", paths.configuration + ".new", "-e", paths.errorLog], log: log)
        guard check == .exited(0) else {
            throw ValidationError("nginx -t refused the rendered configuration (\(check)); see \(log)")
        }
        guard unsafe rename(paths.configuration + ".new", paths.configuration) == 0 else {
            throw ValidationError("cannot rename \(paths.configuration).new: errno \(errno)")
        }
    }

    func runSteps(_ steps: [CertificateStep], openssl: String, log: String) throws {
        for step in steps {
            let status = try runLogged(openssl, step.arguments, log: log)
            guard status == .exited(0) else { throw ValidationError("openssl could not make \(step.what) (\(status)); see \(log)") }
        }
    }

    /// Runs a helper with its output appended to `log`, and waits for it.
    func runLogged(_ path: String, _ argv: [String], log: String) throws -> ExitStatus {
        let out = unsafe open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw ValidationError("cannot open \(log): errno \(errno)") }
        defer { close(out) }
        let null = try openNull()
        defer { close(null) }
        return try ConfinedProcess.spawnHelper(path: path, argv: argv, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                                               fds: [null, out, out]).wait()
    }

    func openNull() throws -> Int32 {
        let fd = unsafe open("/dev/null", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open /dev/null: errno \(errno)") }
        return fd
    }

    func exists(_ path: String) -> Bool { unsafe access(path, F_OK) == 0 }

    /// A small file's text, or nil when it cannot be read.
    func readSmallFile(_ path: String) -> String? {
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = unsafe chunk.withUnsafeMutableBytes { unsafe read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `text` to `path` through a temporary file and a rename (mode 0600).
    func writeAtomically(_ path: String, _ text: String) throws {
        let tmp = path + ".tmp"
        let fd = unsafe open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot write \(tmp): errno \(errno)") }
        let bytes = Array(text.utf8)
        let written = unsafe bytes.withUnsafeBytes { unsafe write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, unsafe rename(tmp, path) == 0 else {
            throw ValidationError("cannot write \(path): errno \(errno)")
        }
    }
}
