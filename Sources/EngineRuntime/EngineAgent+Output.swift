// EngineRuntime.EngineAgent+Output: the other half of M29's stream route: a job's single
// output goes from the transcode straight into its upload (MISSION: "pipes HTTP input
// through libav straight into the HTTP upload"), with no file in between. The output is a
// FIFO in the work directory; the transcode writes it as a stream (fragmented MP4, Media's
// form for unseekable outputs), and an upload task reads it on the engine's stream pool
// and sends each piece as a chunk of the upload's body. The engine holds a write end of
// its own until the transcode has ended, so the reader never sees an early end (and never
// blocks opening). The body's last chunk goes only once the transcode succeeded and its
// input arrived whole; otherwise the body is cut short and the server keeps nothing.
import Glibc
import JSON
import Ring
import Synchronization
import Threads
import Web

extension EngineAgent {
    /// A single output streaming into its upload.
    final class StreamedOutput: Sendable {
        let name: String
        let path: String
        let pipe: OutputPipe
        let verdict: Verdict
        let upload: Task<String, any Error>

        init(name: String, path: String, pipe: OutputPipe, verdict: Verdict, upload: Task<String, any Error>) {
            self.name = name; self.path = path; self.pipe = pipe; self.verdict = verdict; self.upload = upload
        }

        /// Ends the output once the transcode has ended: the file id of the upload, or why
        /// there is none.
        func finish(transcodeSucceeded: Bool) async -> Result<String, any Error> {
            verdict.settle(transcodeSucceeded)
            pipe.endWriting()
            return await upload.result
        }
    }

    /// Makes the output FIFO and starts its upload, when the job has one output that can
    /// stream; nil otherwise (its outputs are then files, uploaded after the transcode).
    func startOutputStream(_ client: LoopBound<HTTPClient>, _ lease: Lease, in work: String) throws -> StreamedOutput? {
        guard let name = streamedOutputName(lease.spec) else { return nil }
        let path = work + "/output-stream"
        guard mkfifo(path, 0o600) == 0 else { throw EngineError("cannot make the output FIFO \(path): \(String(cString: strerror(errno)))") }
        let pipe = try OutputPipe(path: path)
        let verdict = Verdict()
        let url = try outputURL(lease, name: name), headers = try authorization(), pool = streamPool
        let upload = client.loop.spawn { [self] () async throws -> String in
            defer { pipe.close() }
            let r = try await client.value.execute(ClientRequest(method: "POST", url: url, headers: headers, body: .stream { writer in
                while true {
                    let piece = try await pool.run { () throws -> [UInt8] in try pipe.read(max: 256 << 10) }
                    if piece.isEmpty { break }
                    try await writer.write(piece)
                }
                guard await verdict.wait() else { throw EngineError("the transcode failed: its streamed output is dropped") }
            }))
            return try uploadedFileID(r, lease: lease, name: name)
        }
        let out = StreamedOutput(name: name, path: path, pipe: pipe, verdict: verdict, upload: upload)
        logger.info("job \(lease.jobID): output \(name) streams into its upload")
        return out
    }

    func outputURL(_ lease: Lease, name: String) throws -> String {
        guard let creds = state.withLock({ $0.credentials }) else { throw EngineError("not registered") }
        return api + "/engines/\(creds.engineID)/jobs/\(lease.jobID)/outputs?lease_epoch=\(lease.epoch)&name=\(name)"
    }

    /// The file id an output upload answered with (201), or the error it means.
    func uploadedFileID(_ r: ClientResponse, lease: Lease, name: String) throws -> String {
        if r.status == 409 { throw StaleLease(description: "lease lost while uploading \(name)") }
        guard r.status == 201, let doc = try? JSONDocument(parsing: r.body), let id = try? doc.root["file_id"]?.string() else {
            throw EngineError("output upload of \(name) answered \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))")
        }
        return id
    }
}

/// Whether the transcode succeeded, once it has ended; awaited by the upload.
final class Verdict: Sendable {
    private struct State {
        var value: Bool?
        var waiters: [CheckedContinuation<Bool, Never>] = []
    }
    private let state = Mutex(State())

    func settle(_ ok: Bool) {
        let waiters = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            guard s.value == nil else { return [] }
            s.value = ok
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: ok) }
    }

    func wait() async -> Bool {
        await withCheckedContinuation { c in
            let settled = state.withLock { s -> Bool? in
                if s.value == nil { s.waiters.append(c) }
                return s.value
            }
            if let settled { c.resume(returning: settled) }
        }
    }
}

/// The engine's ends of an output FIFO: a keeper write end (opened read-write, which never
/// blocks on Linux) held until the transcode has ended, and the read end the upload reads.
final class OutputPipe: @unchecked Sendable {
    // Reads happen on one pool thread at a time (each awaited before the next); the lock
    // guards the descriptors against the closes from the loop.
    private let fds = Mutex<(keeper: Int32, reader: Int32)>((-1, -1))

    init(path: String) throws {
        let keeper = open(path, O_RDWR | O_CLOEXEC)
        guard keeper >= 0 else { throw EngineError("cannot open the output FIFO \(path): \(String(cString: strerror(errno)))") }
        // A writer (the keeper) exists, so this open does not wait.
        let reader = open(path, O_RDONLY | O_CLOEXEC)
        guard reader >= 0 else {
            let e = errno
            Glibc.close(keeper)
            throw EngineError("cannot open the output FIFO \(path): \(String(cString: strerror(e)))")
        }
        fds.withLock { $0 = (keeper, reader) }
    }

    deinit { close() }

    /// Up to `max` bytes; empty at the end of the output.
    func read(max: Int) throws -> [UInt8] {
        let fd = fds.withLock { $0.reader }
        guard fd >= 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n >= 0 {
                buffer.removeLast(max - n)
                return buffer
            }
            if errno == EINTR { continue }
            throw EngineError("reading the output FIFO: \(String(cString: strerror(errno)))")
        }
    }

    /// The transcode has ended: once its own write end is closed, the reader sees the end.
    func endWriting() {
        fds.withLock { f in
            if f.keeper >= 0 { Glibc.close(f.keeper); f.keeper = -1 }
        }
    }

    /// Both ends (the upload stopped): a transcode still writing gets EPIPE.
    func close() {
        fds.withLock { f in
            if f.keeper >= 0 { Glibc.close(f.keeper); f.keeper = -1 }
            if f.reader >= 0 { Glibc.close(f.reader); f.reader = -1 }
        }
    }
}
