// Cluster.ClusterParts: how each kind of part starts and when it counts as ready, from a
// ClusterContext (the secrets and every part's address), so `up` and the repair of a
// part that died start it the same way, on the same address.
import Glibc

struct ClusterSecrets {
    let admin: String
    let join: String
    let postgres: String
    let redis: String
    /// The media edge's secure_link secret (DIR/secrets/media.secret) and the S3 test
    /// server's secret key.
    let media: String
    let s3: String
}

/// Where a cluster with `--storage s3` keeps its files.
struct ClusterStorage: Equatable {
    /// The store's URL and bucket.
    var endpoint: String
    var bucket: String
    /// The S3 test server's port when the cluster runs one (nil: the caller's store, named
    /// by SPOOL_STORAGE_S3_* in the environment, which the dispatchers inherit).
    var testServerPort: UInt16?
    /// Where the gateway's media edge fetches objects (http://HOST:PORT/BUCKET), or nil
    /// when the store is not plain HTTP (nginx would need to sign for it).
    var mediaOrigin: String? { endpoint.hasPrefix("http://") ? endpoint + "/" + bucket : nil }
}

struct ClusterContext {
    let directory: String
    let spool: String
    let secrets: ClusterSecrets
    var postgresPort: UInt16
    /// The streaming replica's port (nil for a cluster started before replicas were part of one).
    var replicaPort: UInt16?
    var redisPort: UInt16
    /// The dispatchers' HOST:PORT, in order.
    var dispatchers: [String]
    var gateway: String
    var enginePort: UInt16
    var ratePerKey: Int?
    var ratePerAddress: Int?
    var storage: ClusterStorage?

    var logs: String { directory + "/logs" }
    var mediaSecretFile: String { directory + "/secrets/media.secret" }
    /// The base URL of outputs in job results when the gateway fronts the store.
    var mediaURL: String? { storage?.mediaOrigin == nil ? nil : "https://\(gateway)/media" }
    var databaseURL: String { "postgres://spool:\(secrets.postgres)@127.0.0.1:\(postgresPort)/spool" }
    var queueURL: String { "redis://:\(secrets.redis)@127.0.0.1:\(redisPort)" }
    var engineURL: String { "http://127.0.0.1:\(enginePort)" }
    var gatewayPort: UInt16 { UInt16(gateway.split(separator: ":").last ?? "") ?? 0 }

    /// The parts in start order, pids not known yet.
    func plannedParts(engines: Int) -> [ClusterPart] {
        var parts = [
            ClusterPart(kind: .postgres, name: "postgres", address: "127.0.0.1:\(postgresPort)", pid: 0, log: directory + "/postgres/server.log"),
        ]
        if let port = replicaPort {
            parts.append(ClusterPart(kind: .replica, name: "postgres-replica", address: "127.0.0.1:\(port)", pid: 0,
                                     log: directory + "/postgres-replica/server.log"))
        }
        parts.append(ClusterPart(kind: .redis, name: "redis", address: "127.0.0.1:\(redisPort)", pid: 0, log: logs + "/redis.log"))
        if let port = storage?.testServerPort {
            parts.append(ClusterPart(kind: .s3, name: "s3", address: "127.0.0.1:\(port)", pid: 0, log: logs + "/s3.log"))
        }
        for (i, d) in dispatchers.enumerated() {
            parts.append(ClusterPart(kind: .dispatcher, name: "dispatcher-\(i + 1)", address: d, pid: 0, log: logs + "/dispatcher-\(i + 1).log"))
        }
        parts.append(ClusterPart(kind: .gateway, name: "gateway", address: gateway, pid: 0, log: logs + "/gateway.log"))
        for i in 0..<engines {
            parts.append(ClusterPart(kind: .engine, name: "engine-\(i + 1)", address: "", pid: 0, log: logs + "/engine-\(i + 1).log"))
        }
        return parts
    }

    /// What every Spool part inherits: PATH and a few basics, and the SPOOL_* settings of
    /// the caller except those the cluster sets itself.
    func baseEnvironment() -> [String] {
        var own: Set<String> = ["SPOOL_DATABASE_URL", "SPOOL_DATABASE_REPLICAS", "SPOOL_QUEUE_URL", "SPOOL_ADMIN_KEY", "SPOOL_ENGINES_JOIN_TOKEN", "SPOOL_JOIN_TOKEN",
                                "SPOOL_SERVER", "SPOOL_API_KEY", "SPOOL_DATA_DIR", "SPOOL_LISTEN", "SPOOL_STORAGE_BACKEND",
                                "SPOOL_STORAGE_CDN_BASE_URL", "SPOOL_STORAGE_CDN_SECRET"]
        if storage?.testServerPort != nil {
            own.formUnion(["SPOOL_STORAGE_S3_ENDPOINT", "SPOOL_STORAGE_S3_BUCKET", "SPOOL_STORAGE_S3_ACCESS_KEY_ID", "SPOOL_STORAGE_S3_SECRET_ACCESS_KEY"])
        }
        var env: [String] = []
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            let name = String(text.prefix(while: { $0 != "=" }))
            if ["PATH", "HOME", "LANG", "TMPDIR"].contains(name) || (name.hasPrefix("SPOOL_") && !own.contains(name)) { env.append(text) }
            p += 1
        }
        if !env.contains(where: { $0.hasPrefix("PATH=") }) { env.append("PATH=/usr/sbin:/usr/bin:/sbin:/bin") }
        return env
    }

    /// Starts `part`; its pid.
    func start(_ part: ClusterPart) throws(ClusterError) -> Int32 {
        switch part.kind {
        case .postgres:
            let pg = try PostgresPart(directory: directory + "/postgres")
            try pg.initialize(password: secrets.postgres, log: logs + "/postgres-ctl.log")
            let pid = try pg.start(port: postgresPort, log: logs + "/postgres-ctl.log")
            try pg.createDatabase("spool", url: "postgres://spool:\(secrets.postgres)@127.0.0.1:\(postgresPort)/postgres")
            return pid
        case .replica:
            let replica = try PostgresPart(directory: directory + "/postgres-replica")
            try replica.cloneReplica(primaryPort: postgresPort, password: secrets.postgres, log: logs + "/postgres-replica-ctl.log")
            return try replica.start(port: replicaPort ?? 0, log: logs + "/postgres-replica-ctl.log")
        case .redis:
            return try RedisPart.start(directory: directory + "/redis", port: redisPort, password: secrets.redis, log: part.log)
        case .s3:
            return try S3Part.start(port: storage?.testServerPort ?? 0, log: part.log)
        case .dispatcher:
            // One data directory (the files, unless in S3) and one database between them.
            var env = baseEnvironment() + ["SPOOL_DATABASE_URL=" + databaseURL, "SPOOL_QUEUE_URL=" + queueURL,
                                           "SPOOL_ADMIN_KEY=" + secrets.admin, "SPOOL_ENGINES_JOIN_TOKEN=" + secrets.join]
            if let port = replicaPort { env.append("SPOOL_DATABASE_REPLICAS=127.0.0.1:\(port)") }
            if let storage {
                env.append("SPOOL_STORAGE_BACKEND=s3")
                if storage.testServerPort != nil {
                    env += ["SPOOL_STORAGE_S3_ENDPOINT=" + storage.endpoint, "SPOOL_STORAGE_S3_BUCKET=" + storage.bucket,
                            "SPOOL_STORAGE_S3_ACCESS_KEY_ID=" + S3Part.accessKeyID, "SPOOL_STORAGE_S3_SECRET_ACCESS_KEY=" + secrets.s3]
                }
                if let media = mediaURL { env += ["SPOOL_STORAGE_CDN_BASE_URL=" + media, "SPOOL_STORAGE_CDN_SECRET=" + secrets.media] }
            }
            return try DetachedProcess.start(spool, ["spool", "serve", "--listen", part.address, "--data-dir", directory + "/dispatch"],
                                             environment: env, log: part.log)
        case .gateway:
            var args = ["spool", "gateway", "--data-dir", directory, "--listen", gateway, "--engine-listen", "127.0.0.1:\(enginePort)"]
            for d in dispatchers { args += ["--upstream", d] }
            if let r = ratePerKey { args += ["--rate-per-key", String(r), "--burst-per-key", String(r)] }
            if let r = ratePerAddress { args += ["--rate-per-address", String(r), "--burst-per-address", String(r)] }
            if let origin = storage?.mediaOrigin { args += ["--media-origin", origin, "--media-secret-file", mediaSecretFile] }
            return try DetachedProcess.start(spool, args, environment: baseEnvironment(), log: part.log)
        case .engine:
            try ClusterFiles.directory(directory + "/engines")
            return try DetachedProcess.start(spool, ["spool", "engine", "--server", engineURL, "--data-dir", directory + "/engines/" + part.name.dropFirst(7),
                                                     "--name", part.name],
                                             environment: baseEnvironment() + ["SPOOL_JOIN_TOKEN=" + secrets.join], log: part.log)
        }
    }

    /// Whether `part` answers as it should: Redis to PING, a dispatcher's readiness, the
    /// gateway through to a dispatcher; PostgreSQL and its replica are ready when pg_ctl returns. Engines
    /// are counted together (see `onlineEngines`).
    func isReady(_ part: ClusterPart, probe: ClusterProbe) async -> Bool {
        switch part.kind {
        case .postgres, .replica, .engine: return true
        case .redis: return RedisPart.answers(port: redisPort, password: secrets.redis)
        case .s3: return S3Part.ready(port: storage?.testServerPort ?? 0)
        case .dispatcher: return await probe.ready("http://" + part.address)
        case .gateway: return ClusterFiles.accepts(port: gatewayPort) ? await probe.ready(engineURL) : false
        }
    }
}
