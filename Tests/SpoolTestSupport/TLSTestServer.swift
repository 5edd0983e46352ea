// An HTTPS server for client tests: Python's ssl module (the TLS stack is OpenSSL, but not
// ours driving it) behind http.server, with certificates made by the openssl command line
// for this test only: a CA, a server certificate for DNS:localhost and IP:127.0.0.1, and a
// second CA that signed nothing (to show an untrusted server is refused). It answers
// every request with the next status of a script (the last one repeats), logs each request
// as a JSON line (method, path, headers, body's SHA-256 and length), and serves
// `GET /bytes?n=N` (N pattern bytes) and `POST /echo-sha256`.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class TLSTestServer: @unchecked Sendable {
    public let directory: String
    public let port: UInt16
    /// The CA that signed the server's certificate.
    public let caFile: String
    /// A CA that signed nothing here.
    public let strangerCAFile: String
    let pid: pid_t
    private let stopped = NSLock()
    private var isStopped = false

    /// Starts the server on 127.0.0.1; `statuses` script the answers to other requests.
    public static func start(statuses: [Int] = [200], maxTLS12: Bool = false) throws -> TLSTestServer {
        guard let python = ServiceProcess.find("python3") else { throw ServiceProcess.missing("python3") }
        guard let openssl = ServiceProcess.find("openssl") else { throw ServiceProcess.missing("openssl") }
        let dir = NSTemporaryDirectory() + "spool-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func ssl(_ args: [String]) throws {
            let r = try ServiceProcess.run([openssl] + args)
            guard r.status == 0 else { throw ServiceProcessError("openssl \(args.first ?? ""): \(r.output)") }
        }
        for ca in ["ca", "stranger"] {
            try ssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(dir)/\(ca).key",
                     "-subj", "/CN=Spool test \(ca)", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign", "-out", "\(dir)/\(ca).pem"])
        }
        try "subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n"
            .write(toFile: "\(dir)/server.ext", atomically: true, encoding: .utf8)
        try ssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(dir)/server.key",
                 "-subj", "/CN=localhost", "-out", "\(dir)/server.csr"])
        try ssl(["x509", "-req", "-in", "\(dir)/server.csr", "-CA", "\(dir)/ca.pem", "-CAkey", "\(dir)/ca.key", "-set_serial", "0x1234",
                 "-days", "2", "-sha256", "-extfile", "\(dir)/server.ext", "-out", "\(dir)/server.pem"])
        try script.write(toFile: "\(dir)/server.py", atomically: true, encoding: .utf8)
        let port = ServiceProcess.freePort()
        let pid = try ServiceProcess.spawn([python, "\(dir)/server.py", dir, String(port), statuses.map(String.init).joined(separator: ","),
                                            maxTLS12 ? "1.2" : "any"], output: "\(dir)/server.out")
        let s = TLSTestServer(directory: dir, port: port, pid: pid)
        // Up when its port takes a connection (bounded wait).
        for _ in 0..<200 {
            if s.accepts() { return s }
            usleep(25_000)
        }
        s.stop()
        throw ServiceProcessError("the TLS test server did not start: \((try? String(contentsOfFile: "\(dir)/server.out", encoding: .utf8)) ?? "")")
    }

    init(directory: String, port: UInt16, pid: pid_t) {
        self.directory = directory
        self.port = port
        self.pid = pid
        caFile = directory + "/ca.pem"
        strangerCAFile = directory + "/stranger.pem"
    }

    private func accepts() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// The requests it has answered, oldest first.
    public func requests() -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: directory + "/requests.jsonl", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Stops the server (once: a second call does nothing, so a reaped pid is never signalled).
    public func stop() {
        let first = stopped.withLock { () -> Bool in
            defer { isStopped = true }
            return !isStopped
        }
        guard first else { return }
        kill(pid, SIGTERM)
        _ = ServiceProcess.wait(pid)
        try? FileManager.default.removeItem(atPath: directory)
    }

    static let script = #"""
import hashlib, http.server, json, os, ssl, sys, threading
directory, port, statuses, tls = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")], sys.argv[4]
lock = threading.Lock()
answered = [0]
def pattern(n):
    return bytes((i * 31 + 7) & 0xFF for i in range(n))
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""): pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))
    def answer(self, status, data):
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def handle_any(self):
        data = self.body()
        with lock:
            i = answered[0]; answered[0] += 1
            with open(os.path.join(directory, "requests.jsonl"), "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                                    "sha256": hashlib.sha256(data).hexdigest(), "length": len(data),
                                    "body": data.decode("utf-8", "replace") if len(data) < 65536 else ""}) + "\n")
        if self.path.startswith("/bytes?n="):
            return self.answer(200, pattern(int(self.path.split("=")[1])))
        if self.path == "/echo-sha256":
            return self.answer(200, hashlib.sha256(data).hexdigest().encode())
        self.answer(statuses[min(i, len(statuses) - 1)], b"ok")
    do_GET = do_POST = do_PUT = do_DELETE = handle_any
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(directory, "server.pem"), os.path.join(directory, "server.key"))
if tls == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""#
}
