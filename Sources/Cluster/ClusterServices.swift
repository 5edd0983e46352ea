// Cluster.ClusterServices: the two services a cluster runs from Debian's packages.
// PostgreSQL: initdb once into DIR/postgres/data (user `spool`, SCRAM password auth on
// loopback, the password from DIR/secrets), started and stopped with pg_ctl on a loopback
// port (as the `postgres` user when we are root: PostgreSQL refuses root), then the
// database `spool` made if missing; its streaming replica cloned with pg_basebackup into
// DIR/postgres-replica and started the same way on a port of its own. Redis: redis-server with a config file in DIR/redis
// (AOF on, fsync every second, a password, loopback only), detached.
import Glibc
import Postgres
import ProcFS

struct PostgresPart {
    let directory: String
    let bin: String
    let asPostgres: Bool
    var data: String { directory + "/data" }
    var log: String { directory + "/server.log" }

    init(directory: String) throws(ClusterError) {
        guard let bin = Self.binDirectory() else {
            throw ClusterError("PostgreSQL is not installed (Debian: apt-get install postgresql; `make deps` installs it)")
        }
        self.directory = directory
        self.bin = bin
        asPostgres = getuid() == 0
    }

    /// The newest /usr/lib/postgresql/N/bin with pg_ctl.
    static func binDirectory() -> String? {
        var best: (Int, String)? = nil
        for name in ProcFile.directoryEntries("/usr/lib/postgresql") {
            if let v = Int(name), access("/usr/lib/postgresql/\(v)/bin/pg_ctl", X_OK) == 0, v > (best?.0 ?? -1) {
                best = (v, "/usr/lib/postgresql/\(v)/bin")
            }
        }
        return best?.1
    }

    /// A PostgreSQL program as the user that owns the data.
    private func run(_ argv: [String], log: String, environment: [String] = []) throws(ClusterError) -> Int32 {
        let full = asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + argv : argv
        return try DetachedProcess.run(full[0], full, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"] + environment, log: log)
    }

    /// A streaming replica's data, when DIR/postgres-replica/data does not exist yet:
    /// pg_basebackup from the primary on `primaryPort` with `-R` (standby.signal, and the
    /// connection it used as primary_conninfo, so it follows the primary from then on).
    func cloneReplica(primaryPort: UInt16, password: String, log: String) throws(ClusterError) {
        if access(data + "/PG_VERSION", F_OK) == 0 { return }
        try ClusterFiles.directory(directory)
        if asPostgres {
            guard let pw = getpwnam("postgres"), chown(directory, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else {
                throw ClusterError("cannot give \(directory) to the postgres user: errno \(errno)")
            }
        }
        let rc = try run([bin + "/pg_basebackup", "-h", "127.0.0.1", "-p", String(primaryPort), "-U", "spool", "-D", data,
                          "-X", "stream", "-R", "-c", "fast"], log: log, environment: ["PGPASSWORD=" + password])
        guard rc == 0 else { throw ClusterError("pg_basebackup of the replica failed (exit \(rc)); see \(log):\n\(ClusterFiles.tail(log))") }
    }

    /// initdb when DIR/postgres/data does not exist yet.
    func initialize(password: String, log: String) throws(ClusterError) {
        if access(data + "/PG_VERSION", F_OK) == 0 { return }
        try ClusterFiles.directory(directory)
        let pwfile = directory + "/.pwfile"
        try ClusterFiles.write(pwfile, password + "\n")
        defer { unlink(pwfile) }
        if asPostgres {
            guard let pw = getpwnam("postgres") else { throw ClusterError("running as root and there is no postgres user") }
            let uid = pw.pointee.pw_uid, gid = pw.pointee.pw_gid
            guard chown(directory, uid, gid) == 0, chown(pwfile, uid, gid) == 0 else {
                throw ClusterError("cannot give \(directory) to the postgres user: errno \(errno)")
            }
        }
        let rc = try run([bin + "/initdb", "-D", data, "-U", "spool", "--auth-local=peer", "--auth-host=scram-sha-256",
                          "--pwfile=" + pwfile, "-E", "UTF8", "--no-instructions"], log: log)
        guard rc == 0 else { throw ClusterError("initdb failed (exit \(rc)); see \(log):\n\(ClusterFiles.tail(log))") }
    }

    /// pg_ctl start on 127.0.0.1:`port`, waiting until it accepts connections; the pid.
    func start(port: UInt16, log: String) throws(ClusterError) -> Int32 {
        let options = "-p \(port) -c listen_addresses=127.0.0.1 -c unix_socket_directories=\(directory) -c max_connections=200"
        let rc = try run([bin + "/pg_ctl", "-D", data, "-l", self.log, "-w", "-t", "60", "-o", options, "start"], log: log)
        guard rc == 0 else { throw ClusterError("pg_ctl start failed (exit \(rc)); see \(self.log):\n\(ClusterFiles.tail(self.log))") }
        guard let first = ClusterFiles.read(data + "/postmaster.pid")?.split(separator: "\n").first, let pid = Int32(first) else {
            throw ClusterError("PostgreSQL started but \(data)/postmaster.pid names no pid")
        }
        return pid
    }

    /// Makes the database `name` unless it exists.
    func createDatabase(_ name: String, url: String) throws(ClusterError) {
        do {
            let c = try PostgresConnection.connect(url)
            if try c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]).isEmpty {
                try c.execute("CREATE DATABASE \(name)")
            }
        } catch {
            throw ClusterError("cannot create the database \(name): \(error)")
        }
    }

    /// pg_ctl stop -m fast (sessions are ended, then a clean shutdown).
    func stop(log: String) -> Bool {
        (try? run([bin + "/pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop"], log: log)) == 0
    }
}

enum RedisPart {
    /// Writes DIR/redis/redis.conf and starts redis-server detached; the pid.
    static func start(directory: String, port: UInt16, password: String, log: String) throws(ClusterError) -> Int32 {
        guard let server = DetachedProcess.locate("redis-server") else {
            throw ClusterError("redis-server is not installed (Debian: apt-get install redis-server; `make deps` installs it)")
        }
        try ClusterFiles.directory(directory)
        let conf = directory + "/redis.conf"
        try ClusterFiles.write(conf, """
            # Written by spool cluster up.
            bind 127.0.0.1
            port \(port)
            protected-mode yes
            dir \(directory)
            appendonly yes
            appendfsync everysec
            save ""
            requirepass \(password)
            daemonize no
            """ + "\n")
        return try DetachedProcess.start(server, ["redis-server", conf], environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], log: log)
    }

    /// True once redis answers AUTH and PING on 127.0.0.1:`port`.
    static func answers(port: UInt16, password: String) -> Bool {
        ClusterFiles.exchange(port: port, "AUTH \(password)\r\nPING\r\n", enough: 12)?.hasPrefix("+OK\r\n+PONG") == true
    }
}
