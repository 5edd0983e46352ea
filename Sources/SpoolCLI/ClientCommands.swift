// The client commands: `spool submit FILE --preset NAME --wait -o OUTDIR` (upload, submit
// with an Idempotency-Key, follow the job's event stream, download the outputs) and
// `spool jobs list|show|cancel|retry`. Server and key: --server/--key, else SPOOL_SERVER
// and SPOOL_API_KEY (SPOOL_ADMIN_KEY), else DIR/server.url and DIR/admin.key of a local
// `spool up`/`spool serve` (--data-dir, default ./spool-data). An https:// server (a
// `spool gateway`) is verified against --ca-file (SPOOL_CA_FILE) or the system's trust store.
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

/// Progress on stderr: a redrawn bar on a terminal, a line per 10 % otherwise.
final class ProgressLine {
    let tty = isatty(STDERR_FILENO) == 1
    var lastDecile = -1
    var drawn = false

    func show(_ label: String, fraction: Double, extra: String = "") {
        let f = min(1, max(0, fraction.isFinite ? fraction : 0))
        if tty {
            let width = 30, filled = Int(f * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            StandardError.write("\r\(label) [\(bar)] \(NumberFormat.fixed(f * 100, places: 1))% \(extra)\u{1B}[K")
            drawn = true
        } else {
            let d = Int(f * 10)
            if d != lastDecile {
                lastDecile = d
                StandardError.write("\(label) \(NumberFormat.fixed(f * 100, places: 1))% \(extra)\n")
            }
        }
    }

    func end() {
        if tty && drawn { StandardError.write("\n") }
        drawn = false
        lastDecile = -1
    }
}

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upload a file, submit a job for it, and (with --wait) follow it and download the outputs.",
        discussion: "Exit status with --wait: 0 when the job completed, 1 when it failed or was cancelled."
    )

    @Argument(help: "The media file to transcode.")
    var file: String

    @Option(help: "Preset: h264-1080p, h264-720p, h264-360p, hevc-1080p, vp9-720p, av1-720p, hls-ladder-h264.")
    var preset: String = "h264-720p"

    @Flag(help: "Measure PSNR/SSIM of the outputs (in the job's result).")
    var quality = false

    @Option(help: "Priority 0...9 (higher first).")
    var priority: Int = 5

    @Option(name: .customLong("require"), help: "A capability the engine must have (hevc, GPU:0, ...); repeatable.")
    var required: [String] = []

    @Flag(help: "Wait for the job to finish, showing its progress.")
    var wait = false

    @Option(name: [.customShort("o"), .customLong("output-dir")], help: "With --wait: download the outputs here.")
    var outputDir: String?

    @Option(help: "With --wait: give up after this many seconds.")
    var timeout: Int = 3_600

    @OptionGroup var target: ServerOptions

    func validate() throws {
        guard (0...9).contains(priority) else { throw ValidationError("--priority must be 0...9") }
        if outputDir != nil && !wait { throw ValidationError("-o needs --wait") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let server = try target.resolve()
        var st = stat()
        guard unsafe stat(file, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw ValidationError("\(file) is not a readable file")
        }
        let size = Int64(st.st_size)
        let (file, preset, quality, priority, required, wait, outputDir, timeout) =
            (self.file, self.preset, self.quality, self.priority, self.required, self.wait, self.outputDir, self.timeout)
        let ok = try await onLoop(server) { api async throws -> Bool in
            // 1. Upload, with a progress bar.
            let bar = ProgressLine()
            let fileID = try await upload(api, path: file, size: size, bar: bar)
            print("uploaded \(file) (\(NumberFormat.bytes(size))) as \(fileID)")
            // 2. Submit, with an Idempotency-Key (a retried submit never makes a second job).
            var w = JSONWriter()
            w.beginObject()
            w.key("input"); w.beginObject(); w.field("file_id", fileID); w.endObject()
            w.field("preset", preset)
            w.field("priority", priority)
            if quality { w.field("quality", true) }
            if !required.isEmpty { w.field("required_capabilities", required) }
            w.endObject()
            let job = try await api.call("POST", "/jobs", json: w.text, headers: [("Idempotency-Key", "submit-" + Hex.random(bytes: 16))])
            let jobID = try job.root["id"]?.string() ?? ""
            print("submitted job \(jobID) (preset \(preset))")
            guard wait else { return true }
            // 3. Follow its events until it finishes.
            let final = try await follow(api, jobID: jobID, bar: bar, deadline: timeout)
            let state = (try? final.root["state"]?.string()) ?? "?"
            guard state == "completed" else {
                let reason = (try? final.root["reason"]?.string()) ?? "no reason given"
                print("job \(jobID): \(state): \(reason)")
                return false
            }
            print("job \(jobID): completed")
            if let q = final.root["result"]?["quality_report"], !q.isNull { print("quality: \(q.rawText)") }
            // 4. Download the outputs.
            if let dir = outputDir, let outs = final.root["result"]?["outputs"] {
                var total: Int64 = 0
                for o in outs.elements {
                    guard let id = try? o["file_id"]?.string() else { continue }
                    let name = (try? o["name"]?.string()) ?? id
                    total += try await download(api, fileID: id, to: dir + "/" + name)
                }
                print("outputs: \(outs.count) file(s), \(NumberFormat.bytes(total)) in \(dir)")
            }
            return true
        }
        if !ok { throw ExitCode(1) }
    }
}

func upload(_ api: APIClient, path: String, size: Int64, bar: ProgressLine) async throws -> String {
    let label = "upload  "
    let progress = ProgressSink(bar: bar, label: label, total: size)
    let r = try await api.http.execute(ClientRequest(method: "POST", url: api.base + "/files",
                                                     headers: api.auth + [("Content-Type", "application/octet-stream")],
                                                     body: .stream { writer in
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        var sent: Int64 = 0
        while true {
            let n = unsafe buffer.withUnsafeMutableBytes { unsafe read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw ValidationError("reading \(path) failed") }
            if n == 0 { break }
            try await writer.write(Array(buffer[..<n]))
            sent += Int64(n)
            progress.update(sent)
        }
    }))
    bar.end()
    guard r.status == 201, let doc = try? JSONDocument(parsing: r.body), let id = try? doc.root["id"]?.string() else {
        throw APIClient.failure(r.status, r.body)
    }
    return id
}

/// Carries the upload's progress out of the body producer.
final class ProgressSink: @unchecked Sendable {
    let bar: ProgressLine, label: String, total: Int64
    init(bar: ProgressLine, label: String, total: Int64) { self.bar = bar; self.label = label; self.total = total }
    func update(_ sent: Int64) { bar.show(label, fraction: total > 0 ? Double(sent) / Double(total) : 1) }
}

/// Follows GET /jobs/ID/events (reconnecting with Last-Event-ID) until JobFinished; returns the job.
func follow(_ api: APIClient, jobID: String, bar: ProgressLine, deadline seconds: Int) async throws -> JSONDocument {
    let started = SystemClock.shared.now
    var lastEventID: String?
    var pending: [UInt8] = []
    while true {
        var finished = false
        let headers = api.auth + (lastEventID.map { [("Last-Event-ID", $0)] } ?? [])
        do {
            _ = try unsafe await api.http.execute(ClientRequest(url: api.base + "/jobs/\(jobID)/events", headers: headers,
                                                         timeout: .seconds(Int64(seconds)))) { bytes in
                unsafe pending.append(contentsOf: bytes)
                while let end = findBlankLine(pending) {
                    let block = String(decoding: pending[..<end], as: UTF8.self)
                    pending.removeFirst(end + 2)
                    var type = "", data = ""
                    for line in block.split(separator: "\n") {
                        if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
                        else if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
                        else if line.hasPrefix("id: ") { lastEventID = String(line.dropFirst(4)) }
                    }
                    guard !type.isEmpty, let doc = try? JSONDocument(parsing: data) else { continue }
                    let state = (try? doc.root["state"]?.string()) ?? ""
                    let progress = (try? doc.root["progress"]?.double()) ?? 0
                    switch type {
                    case "ProgressUpdated", "TranscodingStarted":
                        var extra = ""
                        if let fps = try? doc.root["fps"]?.double() { extra += "\(NumberFormat.fixed(fps, places: 0)) fps " }
                        if let speed = try? doc.root["speed"]?.double() { extra += "\(NumberFormat.fixed(speed, places: 2))x " }
                        if let eta = try? doc.root["eta_seconds"]?.double() { extra += "ETA \(NumberFormat.fixed(eta, places: 0)) s" }
                        bar.show("job     ", fraction: progress / 100, extra: extra)
                    case "JobFinished":
                        finished = true
                    default:
                        bar.end()
                        StandardError.write("job \(jobID): \(state)\((try? doc.root["reason"]?.string()).map { " (\($0))" } ?? "")\n")
                    }
                }
            }
        } catch {
            if SystemClock.shared.now - started > .seconds(Int64(seconds)) { throw ValidationError("gave up waiting after \(seconds) s") }
        }
        bar.end()
        let job = try await api.call("GET", "/jobs/\(jobID)")
        let state = (try? job.root["state"]?.string()) ?? ""
        if finished || ["completed", "failed", "cancelled"].contains(state) { return job }
        if SystemClock.shared.now - started > .seconds(Int64(seconds)) { throw ValidationError("gave up waiting after \(seconds) s") }
        try await Task.sleep(for: .seconds(1))
    }
}

func findBlankLine(_ b: [UInt8]) -> Int? {
    guard b.count >= 2 else { return nil }
    for i in 0..<(b.count - 1) where b[i] == 0x0A && b[i + 1] == 0x0A { return i }
    return nil
}

/// Downloads /files/ID into `path` (parent directories created); returns the bytes written.
func download(_ api: APIClient, fileID: String, to path: String) async throws -> Int64 {
    var dir = ""
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    for p in parts.dropLast() {
        dir += (dir.isEmpty && !path.hasPrefix("/") ? "" : "/") + p
        if !p.isEmpty { _ = unsafe mkdir(dir, 0o755) }
        if dir.hasPrefix("//") { dir.removeFirst() }
    }
    let tmp = path + ".part"
    let fd = unsafe open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ValidationError("cannot create \(tmp)") }
    var written: Int64 = 0
    let head: ClientResponseHead
    do {
        head = try unsafe await api.http.execute(ClientRequest(url: api.base + "/files/\(fileID)", headers: api.auth)) { bytes in
            var off = 0
            while off < bytes.count {
                let n = unsafe write(fd, bytes.baseAddress! + off, bytes.count - off)
                if n < 0 { if errno == EINTR { continue }; throw ValidationError("writing \(tmp) failed") }
                off += n
            }
            written += Int64(bytes.count)
        }
    } catch {
        close(fd); unsafe unlink(tmp)
        throw error
    }
    close(fd)
    guard head.status == 200 else { unsafe unlink(tmp); throw ValidationError("downloading \(fileID) answered \(head.status)") }
    guard unsafe rename(tmp, path) == 0 else { throw ValidationError("cannot rename \(tmp) to \(path)") }
    return written
}

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List, show, cancel or retry jobs.",
        subcommands: [List.self, Show.self, Cancel.self, Retry.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs (newest first).")
        @Option(help: "Only jobs in this state.") var state: String?
        @Option(help: "How many.") var limit: Int = 20
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            var q = "?limit=\(max(1, min(100, limit)))"
            if let state { q += "&state=\(state)" }
            let query = q
            let text = try await onLoop(server) { api async throws -> String in
                let doc = try await api.call("GET", "/jobs" + query)
                var lines = ["ID                              STATE        PROGRESS  TENANT     UPDATED"]
                for j in doc.root["data"]!.elements {
                    let id = (try? j["id"]?.string()) ?? "", st = (try? j["state"]?.string()) ?? ""
                    let p = (try? j["progress"]?.double()) ?? 0
                    let tenant = (try? j["tenant"]?.string()) ?? "", updated = (try? j["updated_at"]?.string()) ?? ""
                    lines.append("\(id.padding(32)) \(st.padding(12)) \(NumberFormat.fixed(p, places: 1).padding(8))  \(tenant.padding(10)) \(updated)")
                }
                lines.append("(\((try? doc.root["total_count"]?.int()) ?? 0) in all)")
                return lines.joined(separator: "\n")
            }
            print(text)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one job as JSON.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            let id = self.id
            print(try await onLoop(server) { api async throws -> String in
                try await api.call("GET", "/jobs/\(id)").root.rawText
            })
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a job.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            let id = self.id
            print(try await onLoop(server) { api async throws -> String in
                let doc = try await api.call("POST", "/jobs/\(id)/cancel")
                return "job \(id): \((try? doc.root["state"]?.string()) ?? "?")"
            })
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Retry a failed job.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            let id = self.id
            print(try await onLoop(server) { api async throws -> String in
                let doc = try await api.call("POST", "/jobs/\(id)/retry",
                                                                                      headers: [("Idempotency-Key", "retry-" + Hex.random(bytes: 16))])
                return "job \(id): \((try? doc.root["state"]?.string()) ?? "?")"
            })
        }
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
