// Cluster.ClusterLauncher: `spool cluster up|status|down`. Up starts, on loopback, in this
// order, each waited for before the next: PostgreSQL (the system of record), Redis (the
// queue and events), N dispatchers (`spool serve` on PostgreSQL and Redis, one shared data
// directory for the files), the gateway (`spool gateway`: nginx with TLS 1.3 in front of
// the dispatchers, and a plain-HTTP engine entry), M engines (`spool engine` through that
// entry). Then DIR/cluster.json. If a part fails, what started is stopped again and the
// error names the part's log. Down stops them in the reverse order (engines first: they
// drain their jobs). Secrets (admin key, join token, the database's and Redis's
// passwords) are made on the first up, kept in DIR (mode 0600), and reused; they reach the
// parts through their environment, never their command lines.
//
//   DIR/cluster.json  DIR/admin.key  DIR/server.url (dispatcher 1, for `spool submit`)
//   DIR/secrets/      DIR/logs/PART.log
//   DIR/postgres/     DIR/redis/     DIR/dispatch/ (files)   DIR/gateway/   DIR/engines/N/
import Glibc

public struct ClusterOptions: Sendable {
    public var dataDirectory: String
    public var dispatchers = 2
    public var engines = 2
    public var gateway = "127.0.0.1:8443"
    public var storage = "local"
    /// The gateway's rate limits (requests per second; nil: the gateway's defaults).
    public var ratePerKey: Int?
    public var ratePerAddress: Int?
    public init(dataDirectory: String) { self.dataDirectory = dataDirectory }
}

public final class ClusterLauncher: Sendable {
    public let directory: String
    let spool: String

    public var manifestPath: String { directory + "/cluster.json" }
    var logs: String { directory + "/logs" }
    var secrets: String { directory + "/secrets" }

    /// `directory` is made absolute (and created, mode 0700; 0711 as root, so the postgres
    /// user can reach its own subdirectory).
    public init(directory: String) throws(ClusterError) {
        try ClusterFiles.directory(directory)
        guard let real = realpath(directory, nil) else { throw ClusterError("cannot resolve \(directory)") }
        self.directory = String(cString: real)
        free(real)
        spool = try DetachedProcess.currentExecutable()
        if getuid() == 0 {
            chmod(self.directory, 0o711)
            // PostgreSQL runs as the postgres user: every directory above must let others pass.
            var path = self.directory
            while let slash = path.lastIndex(of: "/"), slash != path.startIndex {
                path = String(path[..<slash])
                var st = stat()
                if stat(path, &st) == 0 && st.st_mode & 0o001 == 0 {
                    throw ClusterError("PostgreSQL runs as the postgres user, which cannot reach \(self.directory): \(path) is mode \(String(st.st_mode & 0o777, radix: 8)) (others may not pass); choose a directory under one it can reach, or chmod o+x \(path)")
                }
            }
        }
    }

    /// The manifest of a cluster started here, or nil.
    public func manifest() throws(ClusterError) -> ClusterManifest? {
        guard let text = ClusterFiles.read(manifestPath) else { return nil }
        return try ClusterManifest(parsing: text)
    }

    // MARK: Up

    public func up(_ o: ClusterOptions, say: (String) -> Void) async throws(ClusterError) -> ClusterManifest {
        guard (1...16).contains(o.dispatchers) else { throw ClusterError("--dispatchers must be 1 to 16") }
        guard (0...64).contains(o.engines) else { throw ClusterError("--engines must be 0 to 64") }
        guard o.storage == "local" else {
            throw ClusterError("--storage \(o.storage): only local storage is available (S3-compatible storage is not built yet)")
        }
        let gatewayParts = o.gateway.split(separator: ":")
        guard gatewayParts.count == 2, let gatewayPort = UInt16(gatewayParts[1]), gatewayPort > 0 else {
            throw ClusterError("--gateway must be HOST:PORT (e.g. 127.0.0.1:8443)")
        }
        if let old = try manifest(), old.parts.contains(where: { DetachedProcess.isAlive($0.pid) }) {
            throw ClusterError("a cluster is already running from \(directory) (see `spool cluster status --data-dir \(directory)`; stop it with `spool cluster down`)")
        }
        if ClusterFiles.accepts(port: gatewayPort) && gatewayParts[0] == "127.0.0.1" {
            throw ClusterError("something already listens on \(o.gateway); choose another --gateway")
        }
        try ClusterFiles.directory(logs)
        try ClusterFiles.directory(secrets)
        let adminKey = try ClusterFiles.secret(directory + "/admin.key")
        let joinToken = try ClusterFiles.secret(secrets + "/join.token")
        let pgPassword = try ClusterFiles.secret(secrets + "/postgres.password")
        let redisPassword = try ClusterFiles.secret(secrets + "/redis.password")

        var started: [ClusterPart] = []
        let probe = try ClusterProbe()
        defer { probe.shutdown() }
        do {
            // PostgreSQL.
            let pg = try PostgresPart(directory: directory + "/postgres")
            let pgPort = try ClusterFiles.freePort()
            let pgLog = logs + "/postgres-ctl.log"
            try pg.initialize(password: pgPassword, log: pgLog)
            let pgPid = try pg.start(port: pgPort, log: pgLog)
            started.append(ClusterPart(kind: .postgres, name: "postgres", address: "127.0.0.1:\(pgPort)", pid: pgPid, log: pg.log))
            try pg.createDatabase("spool", url: "postgres://spool:\(pgPassword)@127.0.0.1:\(pgPort)/postgres")
            let databaseURL = "postgres://spool:\(pgPassword)@127.0.0.1:\(pgPort)/spool"
            say("postgres   127.0.0.1:\(pgPort) (pid \(pgPid))")

            // Redis.
            let redisPort = try ClusterFiles.freePort()
            let redisLog = logs + "/redis.log"
            let redisPid = try RedisPart.start(directory: directory + "/redis", port: redisPort, password: redisPassword, log: redisLog)
            started.append(ClusterPart(kind: .redis, name: "redis", address: "127.0.0.1:\(redisPort)", pid: redisPid, log: redisLog))
            try await waitFor("redis", pid: redisPid, log: redisLog) { RedisPart.answers(port: redisPort, password: redisPassword) }
            say("redis      127.0.0.1:\(redisPort) (pid \(redisPid), AOF on)")

            // Dispatchers: one data directory (the files) and one database between them.
            let environment = baseEnvironment() + [
                "SPOOL_DATABASE_URL=" + databaseURL,
                "SPOOL_QUEUE_URL=redis://:\(redisPassword)@127.0.0.1:\(redisPort)",
                "SPOOL_ADMIN_KEY=" + adminKey,
                "SPOOL_ENGINES_JOIN_TOKEN=" + joinToken,
            ]
            var dispatchers: [ClusterPart] = []
            for i in 1...o.dispatchers {
                let port = try ClusterFiles.freePort()
                let log = logs + "/dispatcher-\(i).log"
                let pid = try DetachedProcess.start(spool, ["spool", "serve", "--listen", "127.0.0.1:\(port)", "--data-dir", directory + "/dispatch"],
                                                    environment: environment, log: log)
                let part = ClusterPart(kind: .dispatcher, name: "dispatcher-\(i)", address: "127.0.0.1:\(port)", pid: pid, log: log)
                started.append(part)
                dispatchers.append(part)
            }
            for d in dispatchers {
                try await waitFor(d.name, pid: d.pid, log: d.log) { await probe.ready("http://" + d.address) }
                say("\(d.name) http://\(d.address) (pid \(d.pid))")
            }

            // The gateway.
            let enginePort = try ClusterFiles.freePort()
            let gatewayLog = logs + "/gateway.log"
            var gatewayArgs = ["spool", "gateway", "--data-dir", directory, "--listen", o.gateway, "--engine-listen", "127.0.0.1:\(enginePort)"]
            for d in dispatchers { gatewayArgs += ["--upstream", d.address] }
            if let r = o.ratePerKey { gatewayArgs += ["--rate-per-key", String(r), "--burst-per-key", String(r)] }
            if let r = o.ratePerAddress { gatewayArgs += ["--rate-per-address", String(r), "--burst-per-address", String(r)] }
            let gatewayPid = try DetachedProcess.start(spool, gatewayArgs, environment: baseEnvironment(), log: gatewayLog)
            started.append(ClusterPart(kind: .gateway, name: "gateway", address: o.gateway, pid: gatewayPid, log: gatewayLog))
            let engineURL = "http://127.0.0.1:\(enginePort)"
            try await waitFor("gateway", pid: gatewayPid, log: gatewayLog) {
                ClusterFiles.accepts(port: gatewayPort) ? await probe.ready(engineURL) : false
            }
            say("gateway    https://\(o.gateway) (pid \(gatewayPid)); engines enter at \(engineURL)")

            // Engines, through the gateway's engine entry.
            try ClusterFiles.directory(directory + "/engines")
            for i in 0..<o.engines {
                let log = logs + "/engine-\(i + 1).log"
                let pid = try DetachedProcess.start(spool, ["spool", "engine", "--server", engineURL, "--data-dir", directory + "/engines/\(i + 1)",
                                                            "--name", "engine-\(i + 1)"],
                                                    environment: baseEnvironment() + ["SPOOL_JOIN_TOKEN=" + joinToken], log: log)
                started.append(ClusterPart(kind: .engine, name: "engine-\(i + 1)", address: "", pid: pid, log: log))
            }
            if o.engines > 0 {
                let engines = started.filter { $0.kind == .engine }
                let base = "http://" + dispatchers[0].address
                try await waitFor("engines", pids: engines.map(\.pid), log: engines[0].log) {
                    await probe.onlineEngines(base, key: adminKey) >= o.engines
                }
                say("engines    \(o.engines) online (pids \(engines.map { String($0.pid) }.joined(separator: ", ")))")
            }

            let manifest = ClusterManifest(gatewayURL: "https://\(o.gateway)", engineURL: engineURL,
                                           caCertificate: directory + "/gateway/ca.pem", adminKeyFile: directory + "/admin.key",
                                           dataDirectory: directory, parts: started)
            try ClusterFiles.write(manifestPath, manifest.jsonText)
            try ClusterFiles.write(directory + "/server.url", "http://\(dispatchers[0].address)\n")
            return manifest
        } catch {
            say("cluster up failed: stopping what started")
            stop(started, say: say)
            throw error
        }
    }

    func baseEnvironment() -> [String] {
        var env = ["PATH=" + (getenv("PATH").map { String(cString: $0) } ?? "/usr/sbin:/usr/bin:/sbin:/bin")]
        for name in ["HOME", "LANG", "SPOOL_IO_BACKEND", "SPOOL_LOG_LEVEL", "TMPDIR"] {
            if let v = getenv(name) { env.append(name + "=" + String(cString: v)) }
        }
        return env
    }

    /// Polls `ready` every 100 ms for up to 90 s; fails at once when the process died.
    func waitFor(_ what: String, pid: Int32, log: String, _ ready: () async -> Bool) async throws(ClusterError) {
        try await waitFor(what, pids: [pid], log: log, ready)
    }

    func waitFor(_ what: String, pids: [Int32], log: String, _ ready: () async -> Bool) async throws(ClusterError) {
        for _ in 0..<900 {
            if await ready() { return }
            if let dead = pids.first(where: { !DetachedProcess.isAlive($0) }) {
                throw ClusterError("\(what) (pid \(dead)) exited during start; its log \(log) ends:\n\(ClusterFiles.tail(log))")
            }
            usleep(100_000)
        }
        throw ClusterError("\(what) was not ready after 90 s; its log \(log) ends:\n\(ClusterFiles.tail(log))")
    }

    // MARK: Status and down

    public struct PartStatus: Sendable {
        public var part: ClusterPart
        public var running: Bool
        /// What a probe found ("ready", "not ready", "") beyond the process being there.
        public var detail: String
    }

    public func status() async throws(ClusterError) -> (ClusterManifest, [PartStatus])? {
        guard let m = try manifest() else { return nil }
        let probe = try ClusterProbe()
        defer { probe.shutdown() }
        var out: [PartStatus] = []
        for p in m.parts {
            let running = DetachedProcess.isAlive(p.pid)
            var detail = ""
            if running {
                switch p.kind {
                case .dispatcher: detail = await probe.ready("http://" + p.address) ? "ready" : "not ready"
                case .gateway: detail = await probe.ready(m.engineURL) ? "ready (through to a dispatcher)" : "not ready"
                case .redis:
                    let port = UInt16(p.address.split(separator: ":").last ?? "") ?? 0
                    let password = (try? ClusterFiles.secret(secrets + "/redis.password")) ?? ""
                    detail = RedisPart.answers(port: port, password: password) ? "ready" : "not ready"
                case .postgres, .engine: detail = ""
                }
            }
            out.append(PartStatus(part: p, running: running, detail: detail))
        }
        return (m, out)
    }

    /// Stops every part (engines first), then removes cluster.json.
    public func down(say: (String) -> Void) throws(ClusterError) {
        guard let m = try manifest() else { throw ClusterError("no cluster.json in \(directory): nothing to stop") }
        stop(m.parts, say: say)
        unlink(manifestPath)
    }

    func stop(_ parts: [ClusterPart], say: (String) -> Void) {
        let order: [ClusterPart.Kind] = [.engine, .gateway, .dispatcher, .redis, .postgres]
        for kind in order {
            let group = parts.filter { $0.kind == kind && DetachedProcess.isAlive($0.pid) }
            guard !group.isEmpty else { continue }
            if kind == .postgres, let pg = try? PostgresPart(directory: directory + "/postgres") {
                let clean = pg.stop(log: logs + "/postgres-ctl.log")
                if !clean { for p in group { DetachedProcess.stop(p.pid, signal: SIGINT, grace: .seconds(30)) } }
                say("stopped postgres")
                continue
            }
            // Engines drain (their running jobs finish or go back to the queue), so they get longer.
            let grace: Duration = kind == .engine ? .seconds(120) : .seconds(30)
            for p in group { kill(p.pid, SIGTERM) }
            for p in group {
                let clean = DetachedProcess.waitGone(p.pid, within: grace) || DetachedProcess.stop(p.pid, grace: .seconds(1))
                say("stopped \(p.name)\(clean ? "" : " (killed: it did not stop in time)")")
            }
        }
    }
}
