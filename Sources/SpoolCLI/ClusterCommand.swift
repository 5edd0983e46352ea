// `spool cluster up|status|down --data-dir DIR`: the distributed set-up on one machine, as
// real processes on loopback (PostgreSQL, Redis, N dispatchers, the nginx gateway, M
// engines), started and stopped by Cluster.ClusterLauncher; DIR/cluster.json says where
// each part is.
import ArgumentParser
import Cluster
import Lifecycle
#if canImport(Glibc)
import Glibc
#endif

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Start, inspect or stop a distributed Spool on this machine (PostgreSQL, Redis, dispatchers, gateway, engines).",
        subcommands: [ClusterUp.self, ClusterStatus.self, ClusterDown.self])
}

struct ClusterUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start every part on loopback, wait until each is ready, write DIR/cluster.json.")

    @Option(help: "The cluster's directory (created if missing): databases, files, keys, logs, cluster.json.")
    var dataDir: String

    @Option(help: "Dispatchers (spool serve) behind the gateway.")
    var dispatchers = 2

    @Option(help: "Engines (spool engine), entering through the gateway.")
    var engines = 2

    @Option(help: "Where the gateway takes clients over TLS 1.3 (HOST:PORT).")
    var gateway = "127.0.0.1:8443"

    @Option(help: "Where files are kept: local (the cluster directory) or s3 (the store in SPOOL_STORAGE_S3_*, else moto's test server started here; the gateway then serves outputs at /media as a caching edge).")
    var storage = "local"

    @Option(help: "The gateway's requests per second per API key before 429 (default: the gateway's).")
    var ratePerKey: Int?

    @Option(help: "The gateway's requests per second per client address before 429 (default: the gateway's).")
    var ratePerAddress: Int?

    func run() async throws {
        var o = ClusterOptions(dataDirectory: dataDir)
        o.dispatchers = dispatchers
        o.engines = engines
        o.gateway = gateway
        o.storage = storage
        o.ratePerKey = ratePerKey
        o.ratePerAddress = ratePerAddress
        try await withLauncher("up", dataDir) { launcher in
            let m = try await launcher.up(o, say: say)
            print("""
                spool cluster: up; \(launcher.manifestPath) lists every part.
                  Submit through the gateway (TLS, the generated CA):
                    KEY=$(cat \(m.adminKeyFile))
                    curl --cacert \(m.caCertificate) -H "Authorization: Bearer $KEY" --data-binary @clip.mp4 \(m.gatewayURL)/api/v1/files
                    curl --cacert \(m.caCertificate) -H "Authorization: Bearer $KEY" -H "Idempotency-Key: $(uuidgen)" \\
                         -d '{"input":{"file_id":"FILE_ID"},"preset":"h264-720p"}' \(m.gatewayURL)/api/v1/jobs
                  Or: spool submit clip.mp4 --preset h264-720p --wait -o out --data-dir \(launcher.directory)
                  Status: spool cluster status --data-dir \(launcher.directory)   Stop: spool cluster down --data-dir \(launcher.directory)
                """)
        }
    }
}

struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each part of the cluster started from DIR (exit 1 if any is down).")

    @Option(help: "The cluster's directory.")
    var dataDir: String

    func run() async throws {
        try await withLauncher("status", dataDir) { launcher in
            guard let (m, parts) = try await launcher.status() else {
                print("spool cluster: no cluster is running from \(launcher.directory) (no cluster.json)")
                throw ExitCode(1)
            }
            print("gateway \(m.gatewayURL) (CA \(m.caCertificate)); engines enter at \(m.engineURL)")
            for s in parts {
                let state = s.running ? "running" : "DOWN"
                let address = s.part.address.isEmpty ? "-" : s.part.address
                let detail = s.detail.isEmpty ? "" : ", " + s.detail
                print("\(s.part.name.padding(14)) \(s.part.kind.rawValue.padding(10)) \(address.padding(21)) pid \(String(s.part.pid).padding(8)) \(state)\(detail)")
            }
            if parts.contains(where: { !$0.running || $0.detail == "not ready" }) { throw ExitCode(1) }
        }
    }
}

struct ClusterDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop the cluster started from DIR: engines first (they drain), then the gateway, dispatchers, Redis, PostgreSQL.")

    @Option(help: "The cluster's directory.")
    var dataDir: String

    func run() async throws {
        try await withLauncher("down", dataDir) { launcher in
            try launcher.down(say: say)
            print("spool cluster: down (data kept in \(launcher.directory); `spool cluster up` starts it again)")
        }
    }
}

/// Runs `body` with the launcher of `dataDir`; a cluster's failure is printed after the
/// subcommand's name and exits 1.
private func withLauncher(_ command: String, _ dataDir: String, _ body: (ClusterLauncher) async throws -> Void) async throws {
    do {
        try await body(try ClusterLauncher(directory: dataDir))
    } catch let e as ClusterError {
        StandardError.write("spool cluster \(command): \(e)\n")
        throw ExitCode(1)
    }
}

/// One line of progress, at once.
private func say(_ line: String) {
    print("spool cluster: " + line)
    fflush(nil)
}
