// A real S3-compatible server for tests: moto's server mode (PyPI `moto[server]`), started
// on a free loopback port, by default with authentication on. The first three requests (ours, made
// with boto3 in the same script) create an IAM user, an allow-all policy and an access
// key; from then on every request must carry a valid Signature V4 of that key, so the
// tests exercise Spool's signing for real. Python comes from SPOOL_TEST_PYTHON (make test
// points it at .build/venv, where Tests/External/requirements.txt installs moto), else the
// first python3 that imports moto. Missing moto skips the test, unless make test required
// the services (SPOOL_REQUIRE_SERVICES=1).
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public final class S3TestServer: @unchecked Sendable {
    public let port: UInt16
    public let accessKeyID: String
    public let secretAccessKey: String
    public let directory: String
    private var pid: pid_t

    public var endpoint: String { "http://127.0.0.1:\(port)" }

    static let script = #"""
import json, os, sys, time
port, out, authenticate = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
if authenticate:
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
from moto.server import ThreadedMotoServer
import boto3
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
if not authenticate:
    with open(out + ".tmp", "w") as f:
        f.write("spool-test-key spool-test-secret")
    os.rename(out + ".tmp", out)
    while True:
        time.sleep(3600)
iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="spool")
iam.put_user_policy(UserName="spool", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="spool")["AccessKey"]
with open(out + ".tmp", "w") as f:
    f.write(key["AccessKeyId"] + " " + key["SecretAccessKey"])
os.rename(out + ".tmp", out)
while True:
    time.sleep(3600)
"""#

    /// The python that has moto, or nil.
    static func python() -> String? {
        if let p = ProcessInfo.processInfo.environment["SPOOL_TEST_PYTHON"], FileManager.default.isExecutableFile(atPath: p) { return p }
        var candidates: [String] = []
        if let p = ServiceProcess.venvExecutable("python") { candidates.append(p) }
        if let p = ServiceProcess.find("python3") { candidates.append(p) }
        for p in candidates where FileManager.default.isExecutableFile(atPath: p) {
            if (try? ServiceProcess.run([p, "-c", "import moto.server, boto3"]))?.status == 0 { return p }
        }
        return nil
    }

    /// Starts a server, or throws XCTSkip where moto is missing and not required.
    /// `authenticate`: every request must be signed with the key made at start. Without
    /// it any request goes, which presigned URLs need: moto 5.2.1 answers 500 to a
    /// presigned URL when authentication is on (it looks for an Authorization header),
    /// and with it off checks no signature at all.
    public static func start(authenticate: Bool = true) throws -> S3TestServer {
        guard let python = python() else { throw ServiceProcess.missing("moto[server] (Python, from Tests/External/requirements.txt)") }
        let dir = NSTemporaryDirectory() + "spool-s3-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try script.write(toFile: dir + "/server.py", atomically: true, encoding: .utf8)
        var lastError = ""
        for _ in 0..<3 {
            let port = ServiceProcess.freePort()
            let keys = dir + "/keys-\(port)"
            let pid = try ServiceProcess.spawn([python, dir + "/server.py", String(port), keys, authenticate ? "1" : "0"], output: dir + "/server.log")
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid { break }
                if let text = try? String(contentsOfFile: keys, encoding: .utf8) {
                    let parts = text.split(separator: " ").map(String.init)
                    if parts.count == 2 { return S3TestServer(port: port, keys: parts, directory: dir, pid: pid) }
                }
                usleep(50_000)
            }
            kill(pid, SIGKILL)
            _ = ServiceProcess.wait(pid)
            lastError = (try? String(contentsOfFile: dir + "/server.log", encoding: .utf8)).map { String($0.suffix(2000)) } ?? "no log"
        }
        try? FileManager.default.removeItem(atPath: dir)
        throw ServiceProcessError("moto's S3 server did not start: \(lastError)")
    }

    private init(port: UInt16, keys: [String], directory: String, pid: pid_t) {
        self.port = port
        self.accessKeyID = keys[0]
        self.secretAccessKey = keys[1]
        self.directory = directory
        self.pid = pid
    }

    /// Creates `bucket` on a server without authentication (a plain PUT; with
    /// authentication on, tests create buckets with their signed client).
    public func createBucket(_ bucket: String) throws {
        let text = ServiceProcess.exchange(port: port, "PUT /\(bucket) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") ?? ""
        guard text.hasPrefix("HTTP/1.1 200") else { throw ServiceProcessError("creating bucket \(bucket): \(text.prefix(300))") }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a
    /// store that stalls; `resume` lets it go on.
    public func pause() { if pid > 0 { kill(pid, SIGSTOP) } }
    public func resume() { if pid > 0 { kill(pid, SIGCONT) } }

    /// Puts `body` (ASCII) at `bucket`/`key` and answers the status line; or, with no body,
    /// asks whether the object is there (HEAD). Without authentication only (the
    /// Authorization header is there so moto takes the request for a signed one, not an
    /// anonymous one its ACLs refuse; it checks nothing in it).
    public func object(_ bucket: String, _ key: String, put body: String? = nil) -> String {
        let auth = "Authorization: AWS4-HMAC-SHA256 Credential=\(accessKeyID)/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n"
        let request = body.map { "PUT /\(bucket)/\(key) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\(auth)Content-Length: \($0.utf8.count)\r\nConnection: close\r\n\r\n\($0)" }
            ?? "HEAD /\(bucket)/\(key) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\(auth)Connection: close\r\n\r\n"
        let answer = ServiceProcess.exchange(port: port, request) ?? ""
        return String(decoding: answer.utf8.prefix { $0 != 0x0D }, as: UTF8.self)
    }

    /// Stops the server and removes its directory. Idempotent.
    public func stop() {
        if pid > 0 {
            kill(pid, SIGKILL)
            _ = ServiceProcess.wait(pid)
            pid = 0
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }
}
