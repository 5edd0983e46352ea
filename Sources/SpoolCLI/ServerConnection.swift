// The client commands' way to a server: ServerOptions (--server/--key/--data-dir/--ca-file,
// else SPOOL_SERVER, SPOOL_API_KEY or SPOOL_ADMIN_KEY, SPOOL_CA_FILE, else DIR/server.url
// and DIR/admin.key of a local `spool up`/`spool serve`), the ServerTarget they resolve to
// (an https:// server, a `spool gateway`, is verified against the CA file or the system's
// trust store), and APIClient: bearer key, JSON errors as readable failures, on a loop of
// its own (onLoop).
import ArgumentParser
import JSON
import Lifecycle
import Ring
import ServerConfig
import Threads
import SpoolModel
import TLS
import Web
#if canImport(Glibc)
import Glibc
#endif

struct ServerOptions: ParsableArguments {
    @Option(help: "The server's URL (default: SPOOL_SERVER, else DIR/server.url).")
    var server: String?

    @Option(help: "The API key (default: SPOOL_API_KEY or SPOOL_ADMIN_KEY, else DIR/admin.key).")
    var key: String?

    @Option(help: "The data directory of a local `spool up` or `spool serve` to find the server and key in.")
    var dataDir: String = "./spool-data"

    @Option(help: "For an https:// server: the PEM file of the CA it is certified by (default: SPOOL_CA_FILE, else the system's trust store; a `spool cluster` gateway's is DIR/gateway/ca.pem).")
    var caFile: String?

    /// The server to talk to: its base URL without a trailing slash, the key, whom to trust.
    func resolve() throws -> ServerTarget {
        let env = ConfigLoader.processEnvironment()
        var url = server ?? env["SPOOL_SERVER"] ?? readSmall(dataDir + "/server.url")
        var key = self.key ?? env["SPOOL_API_KEY"] ?? env["SPOOL_ADMIN_KEY"] ?? readSmall(dataDir + "/admin.key")
        url = url?.trimmingWhitespace()
        key = key?.trimmingWhitespace()
        guard var u = url, !u.isEmpty else {
            throw ValidationError("no server: give --server URL, set SPOOL_SERVER, or --data-dir of a running `spool up`")
        }
        while u.hasSuffix("/") { u.removeLast() }
        guard u.hasPrefix("http://") || u.hasPrefix("https://") else { throw ValidationError("--server must be an http:// or https:// URL") }
        var trust: TLSContext?
        if let ca = caFile ?? env["SPOOL_CA_FILE"], !ca.isEmpty {
            do { trust = try TLSContext(caFile: ca) } catch { throw ValidationError("--ca-file: \(error.message)") }
        }
        return ServerTarget(url: u, key: key?.isEmpty == true ? nil : key, trust: trust)
    }
}

struct ServerTarget: Sendable {
    var url: String
    var key: String?
    /// nil: the system's trust store (https:// only).
    var trust: TLSContext?
}

func readSmall(_ path: String) -> String? {
    let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4_096)
    let n = unsafe buf.withUnsafeMutableBytes { unsafe read(fd, $0.baseAddress, $0.count) }
    return n > 0 ? String(decoding: buf[..<n], as: UTF8.self) : nil
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars.drop(while: { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" })
        var s = String(String.UnicodeScalarView(scalars))
        while let last = s.last, last == " " || last == "\n" || last == "\r" || last == "\t" { s.removeLast() }
        return s
    }
}

/// Runs `body` with an API client on a fresh event loop (the client lives there), closes
/// the client's connections, and returns the result.
func onLoop<T: Sendable>(_ server: ServerTarget, _ body: sending @escaping (APIClient) async throws -> T) async throws -> T {
    let loop = try EventLoop.start()
    defer { loop.shutdown() }
    return try await loop.spawn {
        let api = APIClient(base: server.url + "/api/v1", key: server.key, trust: server.trust)
        do {
            let result = try await body(api)
            await api.http.shutdown()
            return result
        } catch {
            await api.http.shutdown()
            throw error
        }
    }.value
}

/// A small API client: bearer key, JSON errors turned into readable failures.
final class APIClient {
    let base: String
    let key: String?
    let http: HTTPClient

    init(base: String, key: String?, trust: TLSContext? = nil) {
        self.base = base
        self.key = key
        var c = HTTPClientConfiguration()
        c.tlsContext = trust
        c.readTimeout = .seconds(120)
        c.totalTimeout = .seconds(24 * 3_600)
        // Downloads from a server with S3 storage answer 302 to a presigned URL (the key is
        // not sent there: the client drops Authorization when the origin changes).
        c.followRedirects = true
        http = HTTPClient(configuration: c)
    }

    var auth: [(name: String, value: String)] { key.map { [("Authorization", "Bearer " + $0)] } ?? [] }

    func call(_ method: String, _ path: String, json: String? = nil, headers: [(name: String, value: String)] = []) async throws -> JSONDocument {
        let r = try await http.execute(ClientRequest(method: method, url: base + path,
                                                     headers: auth + headers + (json == nil ? [] : [("Content-Type", "application/json")]),
                                                     body: json.map { .bytes(Array($0.utf8)) } ?? .none, timeout: .seconds(60)))
        guard (200..<300).contains(r.status) else { throw APIClient.failure(r.status, r.body) }
        return try JSONDocument(parsing: r.body.isEmpty ? Array("{}".utf8) : r.body)
    }

    static func failure(_ status: Int, _ body: [UInt8]) -> ValidationError {
        if let doc = try? JSONDocument(parsing: body), let m = try? doc.root["error"]?["message"]?.string() {
            let code = (try? doc.root["error"]?["code"]?.string()) ?? "error"
            return ValidationError("server answered \(status) \(code): \(m)")
        }
        return ValidationError("server answered \(status): \(String(decoding: body.prefix(300), as: UTF8.self))")
    }
}
