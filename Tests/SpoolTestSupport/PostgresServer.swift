// A real PostgreSQL server for tests: `initdb` into a temporary directory and `pg_ctl start`
// on a free loopback port (Debian's postgresql packages, /usr/lib/postgresql/VERSION/bin),
// trust authentication for the user `spool` on loopback only, fsync off (tests, not
// durability). As root the server runs as the `postgres` user (PostgreSQL refuses root),
// through runuser. `createDatabase` gives each test a database of its own; `stop()` stops
// the server and removes its directory. Missing packages skip the test, unless
// SPOOL_REQUIRE_SERVICES=1 (make test), where they fail it.
import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public final class PostgresServer: @unchecked Sendable {
    public let port: UInt16
    public let directory: String
    let bin: String
    let asPostgres: Bool
    private var running = false

    /// A URL for `database` as the superuser `spool`.
    public func url(_ database: String = "postgres") -> String { "postgres://spool@127.0.0.1:\(port)/\(database)" }

    /// initdb and start, or throw XCTSkip where PostgreSQL is missing and not required.
    public static func start() throws -> PostgresServer {
        guard let bin = binDirectory() else { throw ServiceProcess.missing("PostgreSQL (initdb, pg_ctl)") }
        let asPostgres = getuid() == 0
        let dir = NSTemporaryDirectory() + "spool-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if asPostgres {
            guard let pw = getpwnam("postgres") else { throw ServiceProcessError("running as root and there is no postgres user") }
            chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid)
            chmod(dir, 0o700)
        }
        let server = PostgresServer(port: ServiceProcess.freePort(), directory: dir, bin: bin, asPostgres: asPostgres)
        let initdb = try server.run([bin + "/initdb", "-D", dir + "/data", "-U", "spool", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        guard initdb.status == 0 else { throw ServiceProcessError("initdb failed (\(initdb.status)): \(initdb.output)") }
        try server.launch()
        return server
    }

    private init(port: UInt16, directory: String, bin: String, asPostgres: Bool) {
        self.port = port
        self.directory = directory
        self.bin = bin
        self.asPostgres = asPostgres
    }

    /// The newest /usr/lib/postgresql/N/bin with initdb and pg_ctl.
    static func binDirectory() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        for v in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(v)/bin/pg_ctl") { return "\(root)/\(v)/bin" }
        return nil
    }

    /// Runs a PostgreSQL program as the user that owns the data (postgres, when we are root).
    func run(_ argv: [String]) throws -> (status: Int32, output: String) {
        try ServiceProcess.run(asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + argv : argv)
    }

    private func launch() throws {
        let options = "-p \(port) -c listen_addresses=127.0.0.1 -c unix_socket_directories=\(directory) -c fsync=off "
            + "-c full_page_writes=off -c max_connections=200"
        let r = try run([bin + "/pg_ctl", "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "30", "-o", options, "start"])
        guard r.status == 0 else { throw ServiceProcessError("pg_ctl start failed (\(r.status)): \(r.output)\n\(log())") }
        running = true
    }

    /// Stops the server at once (`-m immediate`: like a crash; WAL replay at the next start).
    public func halt() {
        guard running else { return }
        _ = try? run([bin + "/pg_ctl", "-D", directory + "/data", "-m", "immediate", "-w", "stop"])
        running = false
    }

    /// Stops and starts the server again on the same port and data.
    public func restart() throws {
        halt()
        try launch()
    }

    public func stop() {
        halt()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Creates a database (named from `prefix` and a random suffix) and returns its URL.
    public func createDatabase(_ prefix: String = "t") throws -> String {
        let name = "\(prefix)_\(UInt32.random(in: 0...UInt32.max))"
        let r = try ServiceProcess.run([bin + "/psql", "-h", "127.0.0.1", "-p", String(port), "-U", "spool", "-d", "postgres",
                                        "-v", "ON_ERROR_STOP=1", "-q", "-c", "CREATE DATABASE \(name)"])
        guard r.status == 0 else { throw ServiceProcessError("CREATE DATABASE failed: \(r.output)") }
        return url(name)
    }

    public func log() -> String { (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "" }
}

extension PostgresServer {
    private static let perClass = Mutex<[ObjectIdentifier: PostgresServer]>([:])

    /// The server of the test class `owner`: started by its first test that asks (initdb
    /// costs a second or two), then shared by its tests, each on a database of its own.
    public static func shared(by owner: AnyClass) throws -> PostgresServer {
        if let s = perClass.withLock({ $0[ObjectIdentifier(owner)] }) { return s }
        let s = try start()
        perClass.withLock { $0[ObjectIdentifier(owner)] = s }
        return s
    }

    /// Stops the server of `owner` and removes its directory (the class's tearDown).
    public static func stopShared(by owner: AnyClass) {
        perClass.withLock { $0.removeValue(forKey: ObjectIdentifier(owner)) }?.stop()
    }
}

/// A streaming replica of a test server: pg_basebackup into a directory of its own, then
/// started on a free loopback port as a hot standby that follows the primary.
public final class PostgresReplica: @unchecked Sendable {
    public let port: UInt16
    public let directory: String
    let primary: PostgresServer
    private var running = false

    public var address: String { "127.0.0.1:\(port)" }

    public init(of primary: PostgresServer) throws {
        self.primary = primary
        port = ServiceProcess.freePort()
        directory = primary.directory + "-replica-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if primary.asPostgres, let pw = getpwnam("postgres") {
            chown(directory, pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
        chmod(directory, 0o700)
        let backup = try primary.run([primary.bin + "/pg_basebackup", "-h", "127.0.0.1", "-p", String(primary.port), "-U", "spool",
                                      "-D", directory + "/data", "-X", "stream", "-R", "--no-sync", "-c", "fast"])
        guard backup.status == 0 else { throw ServiceProcessError("pg_basebackup failed (\(backup.status)): \(backup.output)") }
        try start()
    }

    public func start() throws {
        let options = "-p \(port) -c listen_addresses=127.0.0.1 -c unix_socket_directories=\(directory) -c fsync=off "
            + "-c hot_standby=on -c max_connections=200"
        let r = try primary.run([primary.bin + "/pg_ctl", "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "30",
                                 "-o", options, "start"])
        guard r.status == 0 else { throw ServiceProcessError("replica pg_ctl start failed (\(r.status)): \(r.output)") }
        running = true
    }

    /// Killed at once (like a crash).
    public func halt() {
        guard running else { return }
        _ = try? primary.run([primary.bin + "/pg_ctl", "-D", directory + "/data", "-m", "immediate", "-w", "stop"])
        running = false
    }

    /// Runs one SQL statement on the replica (pg_wal_replay_pause(), say).
    public func sql(_ statement: String) throws -> String {
        let r = try ServiceProcess.run([primary.bin + "/psql", "-h", "127.0.0.1", "-p", String(port), "-U", "spool", "-d", "postgres",
                                        "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement])
        guard r.status == 0 else { throw ServiceProcessError("\(statement) on the replica: \(r.output)") }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func stop() {
        halt()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
