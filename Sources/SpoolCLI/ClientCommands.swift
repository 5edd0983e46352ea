// `spool submit FILE --preset NAME --wait -o OUTDIR`: upload with a progress bar, submit
// with an Idempotency-Key, follow the job's event stream, download the outputs (the server
// and key: ServerConnection; `spool jobs`: JobsCommand).
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
