// Cluster.ClusterLauncher: `spool cluster up|status|down`. Up starts, on loopback, in this
// order, each waited for before the next: PostgreSQL (the system of record), Redis (the
// queue and events), with --storage s3 an S3 test server (ClusterS3; unless the caller
// names a store in SPOOL_STORAGE_S3_*), N dispatchers (`spool serve` on PostgreSQL and Redis, one shared data
// directory for the files), the gateway (`spool gateway`: nginx with TLS 1.3 in front of
// the dispatchers, and a plain-HTTP engine entry), M engines (`spool engine` through that
// entry). DIR/cluster.json is written as they start. If a part fails, what started is
// stopped again and the error names the part's log. `up` on a cluster some of whose parts
// died starts those again on the same addresses (a repair after a crash or a kill). Down stops them in the reverse order (engines first: they
// drain their jobs). Secrets (admin key, join token, the database's and Redis's
// passwords) are made on the first up, kept in DIR (mode 0600), and reused; they reach the
// parts through their environment, never their command lines.
//
//   DIR/cluster.json  DIR/admin.key  DIR/server.url (dispatcher 1, for `spool submit`)
//   DIR/secrets/      DIR/logs/PART.log
//   DIR/postgres/  DIR/postgres-replica/  DIR/redis/     DIR/dispatch/ (files)   DIR/gateway/   DIR/engines/N/
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

    func loadSecrets() throws(ClusterError) -> ClusterSecrets {
        try ClusterFiles.directory(secrets)
        return ClusterSecrets(admin: try ClusterFiles.secret(directory + "/admin.key"),
                              join: try ClusterFiles.secret(secrets + "/join.token"),
                              postgres: try ClusterFiles.secret(secrets + "/postgres.password"),
                              redis: try ClusterFiles.secret(secrets + "/redis.password"),
                              media: try ClusterFiles.secret(secrets + "/media.secret"),
                              s3: try ClusterFiles.secret(secrets + "/s3.secret"))
    }

    /// Starts a cluster; or, when cluster.json names parts of which some died, starts those
    /// again on their addresses (a repair: `up` after a crash). Refused when every part runs.
    public func up(_ o: ClusterOptions, say: (String) -> Void) async throws(ClusterError) -> ClusterManifest {
        try ClusterFiles.directory(logs)
        if let old = try manifest(), old.parts.contains(where: \.isRunning) {
            guard old.parts.contains(where: { !$0.isRunning }) else {
                throw ClusterError("a cluster is already running from \(directory) (see `spool cluster status --data-dir \(directory)`; stop it with `spool cluster down`)")
            }
            return try await repair(old, say: say)
        }
        guard (1...16).contains(o.dispatchers) else { throw ClusterError("--dispatchers must be 1 to 16") }
        guard (0...64).contains(o.engines) else { throw ClusterError("--engines must be 0 to 64") }
        guard o.storage == "local" || o.storage == "s3" else {
            throw ClusterError("--storage \(o.storage): must be local (the cluster directory) or s3 (an S3-compatible store)")
        }
        let gatewayParts = o.gateway.split(separator: ":")
        guard gatewayParts.count == 2, let gatewayPort = UInt16(gatewayParts[1]), gatewayPort > 0 else {
            throw ClusterError("--gateway must be HOST:PORT (e.g. 127.0.0.1:8443)")
        }
        if ClusterFiles.accepts(port: gatewayPort) && gatewayParts[0] == "127.0.0.1" {
            throw ClusterError("something already listens on \(o.gateway); choose another --gateway")
        }
        var dispatchers: [String] = []
        for _ in 0..<o.dispatchers { dispatchers.append("127.0.0.1:\(try ClusterFiles.freePort())") }
        var storage: ClusterStorage?
        if o.storage == "s3" {
            if let endpoint = getenv("SPOOL_STORAGE_S3_ENDPOINT").map({ String(cString: $0) }), !endpoint.isEmpty {
                guard let bucket = getenv("SPOOL_STORAGE_S3_BUCKET").map({ String(cString: $0) }), !bucket.isEmpty else {
                    throw ClusterError("SPOOL_STORAGE_S3_ENDPOINT names a store but SPOOL_STORAGE_S3_BUCKET no bucket")
                }
                var e = endpoint
                while e.hasSuffix("/") { e.removeLast() }
                storage = ClusterStorage(endpoint: e, bucket: bucket, testServerPort: nil)
            } else {
                let port = try ClusterFiles.freePort()
                storage = ClusterStorage(endpoint: "http://127.0.0.1:\(port)", bucket: S3Part.bucket, testServerPort: port)
            }
        }
        let context = ClusterContext(directory: directory, spool: spool, secrets: try loadSecrets(),
                                     postgresPort: try ClusterFiles.freePort(), replicaPort: try ClusterFiles.freePort(),
                                     redisPort: try ClusterFiles.freePort(),
                                     dispatchers: dispatchers, gateway: o.gateway, enginePort: try ClusterFiles.freePort(),
                                     ratePerKey: o.ratePerKey, ratePerAddress: o.ratePerAddress, storage: storage)
        var manifest = ClusterManifest(gatewayURL: "https://\(o.gateway)", engineURL: context.engineURL,
                                       caCertificate: directory + "/gateway/ca.pem", adminKeyFile: directory + "/admin.key",
                                       dataDirectory: directory, parts: context.plannedParts(engines: o.engines),
                                       ratePerKey: o.ratePerKey, ratePerAddress: o.ratePerAddress)
        if let storage {
            manifest.storage = "s3"
            manifest.s3Endpoint = storage.endpoint
            manifest.s3Bucket = storage.bucket
            manifest.mediaURL = context.mediaURL
        }
        // The replica is cloned afresh on every up: the primary's port changes, and a copy
        // costs a second or two.
        let replica = directory + "/postgres-replica"
        if access(replica, F_OK) == 0 {
            guard try DetachedProcess.run("/bin/rm", ["rm", "-rf", "--", replica], environment: ["PATH=/usr/bin:/bin"],
                                          log: logs + "/postgres-replica-ctl.log") == 0 else {
                throw ClusterError("cannot remove the old replica in \(replica)")
            }
        }
        do {
            try await startParts(&manifest, indices: Array(manifest.parts.indices), context: context, say: say)
        } catch {
            say("cluster up failed: stopping what started")
            stop(manifest.parts.filter { $0.pid > 0 }, say: say)
            throw error
        }
        try ClusterFiles.write(directory + "/server.url", "http://\(dispatchers[0])\n")
        return manifest
    }

    /// Starts the parts at `indices` (in start order), each waited for before the next,
    /// the engines together at the end; cluster.json is written after each start, so a
    /// `down` from elsewhere finds whatever runs.
    func startParts(_ manifest: inout ClusterManifest, indices: [Int], context: ClusterContext, say: (String) -> Void) async throws(ClusterError) {
        let probe = try ClusterProbe()
        defer { probe.shutdown() }
        for i in indices {
            let pid = try context.start(manifest.parts[i])
            manifest.parts[i].pid = pid
            try ClusterFiles.write(manifestPath, manifest.jsonText)
            let part = manifest.parts[i]
            try await waitFor(part.name, pids: [pid], log: part.log) { await context.isReady(part, probe: probe) }
            if part.kind != .engine { say("\(part.name.padded(12)) \(part.address.isEmpty ? "-" : part.address) (pid \(pid))") }
        }
        let engines = manifest.parts.filter { $0.kind == .engine }
        if indices.contains(where: { manifest.parts[$0].kind == .engine }), let first = manifest.parts.first(where: { $0.kind == .dispatcher }) {
            try await waitFor("engines", pids: engines.map(\.pid), log: engines[0].log) {
                await probe.onlineEngines("http://" + first.address, key: context.secrets.admin) >= engines.count
            }
            say("engines      \(engines.count) online (pids \(engines.map { String($0.pid) }.joined(separator: ", ")))")
        }
    }

    /// The context a started cluster runs in: its secrets and its parts' addresses.
    func context(of m: ClusterManifest) throws(ClusterError) -> ClusterContext {
        func port(_ address: String) -> UInt16 { UInt16(address.split(separator: ":").last ?? "") ?? 0 }
        guard let pg = m.parts.first(where: { $0.kind == .postgres }), let redis = m.parts.first(where: { $0.kind == .redis }),
              let gateway = m.parts.first(where: { $0.kind == .gateway }) else {
            throw ClusterError("cluster.json lacks a part every cluster has; stop it with `spool cluster down`")
        }
        var storage: ClusterStorage?
        if m.storage == "s3", let endpoint = m.s3Endpoint, let bucket = m.s3Bucket {
            storage = ClusterStorage(endpoint: endpoint, bucket: bucket,
                                     testServerPort: m.parts.first(where: { $0.kind == .s3 }).map { port($0.address) })
        }
        return ClusterContext(directory: directory, spool: spool, secrets: try loadSecrets(),
                              postgresPort: port(pg.address),
                              replicaPort: m.parts.first(where: { $0.kind == .replica }).map { port($0.address) },
                              redisPort: port(redis.address),
                              dispatchers: m.parts.filter { $0.kind == .dispatcher }.map(\.address), gateway: gateway.address,
                              enginePort: port(m.engineURL), ratePerKey: m.ratePerKey, ratePerAddress: m.ratePerAddress, storage: storage)
    }

    /// Starts the parts of `old` that died, on the addresses they had.
    func repair(_ old: ClusterManifest, say: (String) -> Void) async throws(ClusterError) -> ClusterManifest {
        let context = try self.context(of: old)
        var manifest = old
        let dead = manifest.parts.indices.filter { !manifest.parts[$0].isRunning }
        say("restarting \(dead.map { manifest.parts[$0].name }.joined(separator: ", "))")
        try await startParts(&manifest, indices: dead, context: context, say: say)
        return manifest
    }

    /// Polls `ready` every 100 ms for up to 90 s; fails at once when a process died.
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
        let context = try self.context(of: m)
        let probe = try ClusterProbe()
        defer { probe.shutdown() }
        var out: [PartStatus] = []
        for p in m.parts {
            let running = p.isRunning
            var detail = ""
            if running && p.kind != .postgres && p.kind != .replica && p.kind != .engine {
                detail = await context.isReady(p, probe: probe) ? "ready" : "not ready"
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
        let order: [ClusterPart.Kind] = [.engine, .gateway, .dispatcher, .s3, .redis, .replica, .postgres]
        for kind in order {
            let group = parts.filter { $0.kind == kind && $0.isRunning }
            guard !group.isEmpty else { continue }
            if kind == .postgres || kind == .replica, let pg = try? PostgresPart(directory: directory + "/" + group[0].name) {
                let clean = pg.stop(log: logs + "/\(group[0].name)-ctl.log")
                if !clean { for p in group { DetachedProcess.stop(p.pid, signal: SIGINT, grace: .seconds(30)) } }
                say("stopped \(group[0].name)")
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

extension String {
    func padded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
