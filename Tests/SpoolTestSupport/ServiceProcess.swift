// Starting the real services tests need (redis-server, PostgreSQL's initdb/pg_ctl/psql):
// posix_spawn and waitpid rather than Foundation's Process, whose exit monitoring (SIGCHLD
// on a run loop) hung waitUntilExit once a test had event loops running. The child gets an
// empty signal mask and default handlers: the calling thread may block signals (event-loop
// threads do, and CProcessStart blocks the stop signals before main), and a server that
// inherited that would ignore the SIGTERM that stops it.
import Foundation
import ProcFS
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public enum ServiceProcess {
    /// Starts `argv` (argv[0] is the executable's path) with stdin on /dev/null and stdout
    /// and stderr appended to `output` (/dev/null when nil); returns its pid.
    public static func spawn(_ argv: [String], output: String? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var args: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for a in args { free(a) } }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, argv[0], &actions, &attr, &args, environ)
        guard rc == 0 else { throw ServiceProcessError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        return child
    }

    /// Runs `argv` to completion; its exit status (128 + N when killed by signal N) and output.
    @discardableResult
    public static func run(_ argv: [String]) throws -> (status: Int32, output: String) {
        let log = NSTemporaryDirectory() + "spool-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        defer { unlink(log) }
        let pid = try spawn(argv, output: log)
        let status = wait(pid)
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// Waits for `pid` to end; its exit status (128 + N when killed by signal N).
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// The first executable named `name` on PATH, /usr/sbin or /usr/bin.
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/bin"] {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// `name` in the repository's Python venv (make test's .build/venv, installed from
    /// Tests/External/requirements.txt), found from the test binary's .build directory;
    /// nil when there is none.
    public static func venvExecutable(_ name: String) -> String? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<6 {
            if dir.lastPathComponent == ".build" {
                let p = dir.path + "/venv/bin/" + name
                return FileManager.default.isExecutableFile(atPath: p) ? p : nil
            }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// A loopback port for a service a test starts: free now and below the kernel's
    /// ephemeral range, so no outgoing connection takes it first (ProcFS.ListenPorts).
    public static func freePort() -> UInt16 {
        guard let port = ListenPorts.unused() else { fatalError("no free loopback port") }
        return port
    }

    /// Sends `request` to 127.0.0.1:`port` on a plain socket and returns what came back
    /// (up to 4 KiB, until the peer closes or `enough` bytes came), or nil when nothing
    /// connected. For probing servers without the clients under test.
    public static func exchange(port: UInt16, _ request: String, enough: Int = 4096) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { return nil }
        let msg = Array(request.utf8)
        guard write(fd, msg, msg.count) == msg.count else { return nil }
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while got.count < min(enough, 4096) {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            got += buf[0..<n]
        }
        return String(decoding: got, as: UTF8.self)
    }

    /// Skips the test when `what` is missing, or fails it when make test required the
    /// services (SPOOL_REQUIRE_SERVICES=1, after `make deps` installed them).
    public static func missing(_ what: String) -> any Error {
        if ProcessInfo.processInfo.environment["SPOOL_REQUIRE_SERVICES"] == "1" {
            return ServiceProcessError("\(what) is not installed (make deps installs it)")
        }
        return XCTSkip("\(what) is not installed (make deps installs it)")
    }
}

public struct ServiceProcessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
