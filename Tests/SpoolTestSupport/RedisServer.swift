// A real redis-server for tests: started on a free loopback port in a temporary
// directory, stopped (and its directory removed) by `stop()`. When redis-server is not
// installed the test is skipped, unless SPOOL_REQUIRE_SERVICES=1 (make test sets it after
// `make deps` installed it), where a missing server is a failure.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public final class RedisServer: @unchecked Sendable {
    public let port: UInt16
    public let directory: String
    public let appendOnly: Bool
    private var pid: pid_t = 0

    public var url: String { "redis://127.0.0.1:\(port)" }

    /// Starts a server, or throws XCTSkip where redis-server is missing and not required.
    public static func start(appendOnly: Bool = false) throws -> RedisServer {
        guard let exe = ServiceProcess.find("redis-server") else { throw ServiceProcess.missing("redis-server") }
        let dir = NSTemporaryDirectory() + "spool-redis-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var lastError = ""
        for _ in 0..<5 {
            let port = ServiceProcess.freePort()
            let server = RedisServer(port: port, directory: dir, appendOnly: appendOnly)
            do {
                try server.launch(exe)
                return server
            } catch {
                lastError = "\(error)"
            }
        }
        throw NSError(domain: "RedisServer", code: 2, userInfo: [NSLocalizedDescriptionKey: "redis-server did not start: \(lastError)"])
    }

    private init(port: UInt16, directory: String, appendOnly: Bool) {
        self.port = port
        self.directory = directory
        self.appendOnly = appendOnly
    }

    private func launch(_ exe: String) throws {
        let args = [exe, "--port", String(port), "--bind", "127.0.0.1", "--dir", directory, "--save", "",
                    "--appendonly", appendOnly ? "yes" : "no", "--appendfsync", "always",
                    "--logfile", directory + "/redis.log", "--daemonize", "no"]
        let child = try ServiceProcess.spawn(args)
        pid = child
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(child, &status, WNOHANG) == child {
                pid = 0
                throw NSError(domain: "RedisServer", code: 3, userInfo: [NSLocalizedDescriptionKey: "redis-server exited: \(log())"])
            }
            if ping() { return }
            usleep(20_000)
        }
        halt()
        throw NSError(domain: "RedisServer", code: 4, userInfo: [NSLocalizedDescriptionKey: "redis-server did not answer within 10 s: \(log())"])
    }

    /// Stops the server (SIGTERM: with AOF on, what it acknowledged is on disk) and starts
    /// it again on the same port and directory.
    public func restart() throws {
        halt()
        guard let exe = ServiceProcess.find("redis-server") else { return }
        try launch(exe)
    }

    /// Stops the server, keeping its directory (for a restart).
    public func halt() {
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        pid = 0
    }

    public func stop() {
        halt()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func log() -> String { (try? String(contentsOfFile: directory + "/redis.log", encoding: .utf8)) ?? "" }

    /// A plain-socket PING (no client under test involved).
    func ping() -> Bool {
        ServiceProcess.exchange(port: port, "PING\r\n", enough: 7)?.hasPrefix("+PONG") == true
    }

}
